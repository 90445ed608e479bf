// cgroupfs.ts: where cgroup v2 is mounted and plain file access to it. The
// mount point differs between unified (/sys/fs/cgroup) and hybrid
// (/sys/fs/cgroup/unified) hosts and inside containers, so it is read from
// /proc/self/mountinfo, never assumed.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SnapprocError } from '../util/errors';

let cachedMount: string | null | undefined;

/** Parses mountinfo text and returns the first cgroup2 mount point, or null. */
export function cgroup2MountFromMountinfo(text: string): string | null {
  for (const line of text.split('\n')) {
    const sep = line.indexOf(' - ');
    if (sep < 0) continue;
    const fstype = line.slice(sep + 3).split(' ')[0];
    if (fstype !== 'cgroup2') continue;
    const fields = line.slice(0, sep).split(' ');
    // Octal escapes (\040 for a space) as the kernel writes them.
    return fields[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
  }
  return null;
}

/** The cgroup2 mount point, or null when the host has none. */
export function findCgroup2Mount(): string | null {
  if (cachedMount === undefined) {
    let text = '';
    try {
      text = fs.readFileSync('/proc/self/mountinfo', 'utf8');
    } catch {
      cachedMount = null;
      return null;
    }
    cachedMount = process.env.SNAPPROC_CGROUP_ROOT || cgroup2MountFromMountinfo(text);
  }
  return cachedMount;
}

/** Like findCgroup2Mount, but throws a clear error when there is no cgroup2. */
export function cgroup2Mount(): string {
  const mount = findCgroup2Mount();
  if (!mount) {
    throw new SnapprocError('ERR_SNAPPROC_NO_CGROUP2', 'no cgroup v2 hierarchy is mounted (looked for a cgroup2 entry in /proc/self/mountinfo); snapproc needs cgroup v2');
  }
  return mount;
}

/** The cgroup (absolute directory) a process is in, from /proc/PID/cgroup. */
export function cgroupOfPid(pid: number | 'self'): string | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/cgroup`, 'utf8');
  } catch {
    return null;
  }
  const line = text.split('\n').find((l) => l.startsWith('0::'));
  if (!line) return null;
  return path.join(cgroup2Mount(), line.slice(3));
}

/** Reads one key of a cgroup's cgroup.events ("populated", "frozen"). */
export function readEvent(dir: string, key: 'populated' | 'frozen'): number {
  const text = fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8');
  const m = new RegExp(`^${key} (\\d+)$`, 'm').exec(text);
  return m ? Number(m[1]) : 0;
}

/**
 * Whether a cgroup holds any process; false also when the cgroup is gone (it
 * was removed under us: nothing can run in it). For the supervisor's checks
 * on exit and adoption, which must not crash on a cgroup someone removed.
 */
export function isPopulated(dir: string): boolean {
  try {
    return readEvent(dir, 'populated') === 1;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** True when `dir` is a cgroup2 directory. */
export function isCgroup(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'cgroup.procs'));
}

/** Whether the kernel has cgroup.kill (Linux 5.14+) for this cgroup. */
export function hasCgroupKill(dir: string): boolean {
  return fs.existsSync(path.join(dir, 'cgroup.kill'));
}

/** Moves a process into a cgroup. */
export function moveToCgroup(dir: string, pid: number): void {
  fs.writeFileSync(path.join(dir, 'cgroup.procs'), String(pid));
}

/** Removes an empty cgroup and its empty descendants (deepest first). */
export function removeCgroupTree(dir: string): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  for (const e of entries) if (e.isDirectory()) removeCgroupTree(path.join(dir, e.name));
  try {
    fs.rmdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

/** True when the cgroup (or any path) `child` is `parent` or lies below it. */
export function isInside(child: string, parent: string): boolean {
  const rel = path.relative(parent, child);
  return rel === '' || (!rel.startsWith('..') && !path.isAbsolute(rel));
}

/** Sub-cgroups of `dir`, `dir` first, depth first. */
export function cgroupSubtree(dir: string): string[] {
  const out = [dir];
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return out;
  }
  for (const e of entries) if (e.isDirectory()) out.push(...cgroupSubtree(path.join(dir, e.name)));
  return out;
}
