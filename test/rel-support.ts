// rel-support.ts: what the reliability parts (rel-fork-storm, rel-crash-matrix,
// rel-soak) share: fixture snaps, a `snapproc daemon` of their own per state
// root (so it can be SIGKILLed and counted from outside), and cleanup that
// removes the root's mounts and the test's cgroups also after a failure.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync, type ChildProcess } from 'node:child_process';
import { request } from '../src/supervisor/client';
import { isTrashName } from '../src/snap/revision-store';
import { CLI, tmpdir } from './helpers';

export const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A snap directory with `apps` (YAML) and executable bin/ files. */
export function buildSnap(name: string, appsYaml: string, bins: Record<string, string>, version = '1.0'): string {
  const dir = tmpdir('rel-snap-');
  fs.mkdirSync(path.join(dir, 'meta', 'hooks'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), `name: ${name}\nversion: '${version}'\napps:\n${appsYaml}`);
  for (const [file, text] of Object.entries(bins)) fs.writeFileSync(path.join(dir, 'bin', file), text, { mode: 0o755 });
  return dir;
}

export interface Daemon {
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  done: boolean;
}

export function daemonEnv(root: string, cg: string, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, SNAPPROC_ROOT: root, SNAPPROC_CGROUP_PARENT: cg, SNAPPROC_NO_AUTOSTART: '1', ...extra };
  if (!('SNAPPROC_CRASH_AT' in extra)) delete env.SNAPPROC_CRASH_AT;
  return env;
}

/** Starts `snapproc daemon` for `root` (with `extra` in its environment) and resolves once it answers (after its recovery). */
export async function startDaemon(root: string, cg: string, log: string, extra: Record<string, string> = {}): Promise<Daemon> {
  const out = fs.openSync(log, 'a');
  const child = spawn(process.execPath, [CLI, '--root', root, 'daemon'], { env: daemonEnv(root, cg, extra), stdio: ['ignore', out, out] });
  fs.closeSync(out);
  const d: Daemon = { child, exit: null as never, done: false };
  d.exit = new Promise((r) => child.once('exit', (code, signal) => ((d.done = true), r({ code, signal }))));
  const deadline = Date.now() + 30_000;
  for (;;) {
    if (d.done) throw new Error(`snapproc daemon exited:\n${fs.readFileSync(log, 'utf8').slice(-2000)}`);
    try {
      await request(root, 'ping');
      return d;
    } catch {
      // not yet
    }
    if (Date.now() > deadline) throw new Error('snapproc daemon did not answer within 30 s');
    await sleep(20);
  }
}

/** The names in `dir`, sorted; [] when it does not exist. */
export function entries(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** Where the symlink `p` points, or null when there is none. */
export function link(p: string): string | null {
  try {
    return fs.readlinkSync(p);
  } catch {
    return null;
  }
}

/**
 * What of a snap's retired revisions is still in the trash (`.REV.trash-HEX`
 * under R/snap, R/var/snap, R/root/snap and R/state/launch): deleted in the background once
 * the change that retired it ended, so a change can be done and its trash
 * not yet gone.
 */
export function trashLeft(root: string, name: string): string[] {
  return ['snap', path.join('var', 'snap'), path.join('root', 'snap'), path.join('state', 'launch')].flatMap((d) => entries(path.join(root, d, name)).filter(isTrashName).map((e) => path.join(d, name, e)));
}

export async function killDaemon(d: Daemon | null): Promise<void> {
  if (!d || d.done) return;
  d.child.kill('SIGKILL');
  await d.exit;
}

/** Unmounts everything below `root` (read-only data binds), then removes it. */
export function removeRoot(root: string): void {
  for (let i = 0; i < 10; i++) {
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4]).filter((m) => m && (m === root || m.startsWith(root + '/')));
    if (mounts.length === 0) break;
    for (const m of new Set(mounts)) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
  }
  fs.rmSync(root, { recursive: true, force: true });
}

/** Kills everything in `cg` and removes it and its sub-cgroups. */
export async function removeCgroup(cg: string): Promise<void> {
  if (!fs.existsSync(cg)) return;
  try {
    fs.writeFileSync(path.join(cg, 'cgroup.kill'), '1');
  } catch {
    // gone
  }
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && /populated 1/.test(fs.readFileSync(path.join(cg, 'cgroup.events'), 'utf8'))) await sleep(10);
  const rm = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) rm(path.join(d, e.name));
    try {
      fs.rmdirSync(d);
    } catch {
      // reported by the test parent's cleanup
    }
  };
  rm(cg);
}

/** Members of a cgroup subtree. */
export function cgroupMembers(cg: string): number[] {
  const out: number[] = [];
  const walk = (d: string) => {
    try {
      out.push(...fs.readFileSync(path.join(d, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number));
      for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
    } catch {
      // removed meanwhile
    }
  };
  walk(cg);
  return out;
}

/** A median and the maximum of some numbers, for figures. */
export function stats(xs: number[]): { median: number; max: number } {
  const s = [...xs].sort((a, b) => a - b);
  return { median: s.length ? s[Math.floor(s.length / 2)] : NaN, max: s.length ? s[s.length - 1] : NaN };
}
