// helpers.ts: what the tests share: privilege gates that report why a test
// was skipped, a uniquely named cgroup parent per test file that is always
// removed (also after a failure), and real process trees to signal.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { findCgroup2Mount } from '../src/kernel/cgroupfs';

export const REPO = path.resolve(__dirname, '..', '..');
export const RECORDER = path.join(REPO, 'test', 'fixtures', 'recorder.js');
export const CLI = path.join(REPO, 'bin', 'snapproc');

export const isRoot = process.getuid?.() === 0;
export const cgroupMount = findCgroup2Mount();
export const privileged = isRoot && cgroupMount !== null && fs.existsSync(path.join(cgroupMount, 'cgroup.procs'));
export const skipReason = !isRoot ? 'not root' : cgroupMount === null ? 'no cgroup v2 mounted' : '';

/** Wraps uvu's `test` so privileged tests are skipped, saying why, when they cannot run. */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function gate(test: { (name: string, fn: () => any): void; skip: (name: string, fn?: () => any) => void }) {
  let said = false;
  return (name: string, fn: () => void | Promise<void>) => {
    if (privileged) return test(name, fn);
    if (!said) {
      process.stdout.write(`  (skipping privileged tests: ${skipReason})\n`);
      said = true;
    }
    test.skip(name, fn);
  };
}

/** Whether a command is on the PATH. */
export function haveCommand(cmd: string): boolean {
  return require('node:child_process').spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

/**
 * Like `gate`, and also skipped (counted as skipped, saying why) when
 * something the test needs is missing: `missing` is null when all is there,
 * else what to install. A test that cannot check what it claims must never
 * count as passed.
 */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
export function gateOn(test: { (name: string, fn: () => any): void; skip: (name: string, fn?: () => any) => void }, missing: string | null) {
  const privilegedTest = gate(test);
  return (name: string, fn: () => void | Promise<void>) => {
    if (missing === null) return privilegedTest(name, fn);
    process.stdout.write(`  (skipping "${name}": ${missing})\n`);
    test.skip(name, fn);
  };
}

/** A cgroup parent unique to this test process, created on first use and removed at exit. */
let parent: string | null = null;
export function testParent(): string {
  if (parent) return parent;
  parent = path.join(cgroupMount!, `snapproc-test-${process.pid}-${randomBytes(3).toString('hex')}`);
  fs.mkdirSync(parent);
  process.on('exit', () => cleanupParent());
  for (const sig of ['SIGINT', 'SIGTERM'] as const) process.on(sig, () => process.exit(1));
  return parent;
}

/** Kills everything left under the test parent and removes it (synchronous: runs at exit too). */
export function cleanupParent(): void {
  if (!parent || !fs.existsSync(parent)) return;
  const dirs: string[] = [];
  const walk = (d: string) => {
    dirs.push(d);
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) walk(path.join(d, e.name));
  };
  walk(parent);
  for (const d of dirs) {
    try { fs.writeFileSync(path.join(d, 'cgroup.freeze'), '0'); } catch { /* gone */ }
  }
  try { fs.writeFileSync(path.join(parent, 'cgroup.kill'), '1'); } catch { /* gone */ }
  const deadline = Date.now() + 5000;
  while (Date.now() < deadline && /populated 1/.test(fs.readFileSync(path.join(parent, 'cgroup.events'), 'utf8'))) {
    Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
  }
  for (const d of dirs.reverse()) {
    try { fs.rmdirSync(d); } catch { /* reported below if it stays */ }
  }
  if (fs.existsSync(parent)) process.stderr.write(`warning: could not remove test cgroup ${parent}\n`);
}

/** Creates a cgroup below the test parent (e.g. `snap.x.svc.service`), optionally nested. */
export function makeCgroup(...names: string[]): string {
  const dir = path.join(testParent(), ...names);
  fs.mkdirSync(dir, { recursive: true });
  return dir;
}

export function uniqueSnapName(prefix = 't'): string {
  return `${prefix}${randomBytes(4).toString('hex')}`.replace(/^[0-9]/, 'a');
}

export interface LogLine { pid: number; role: string; rev: string | null; event?: string; signal?: string; ppid?: number }

export function readLog(file: string): LogLine[] {
  if (!fs.existsSync(file)) return [];
  return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as LogLine);
}

const tmpdirs: string[] = [];
/** A temporary directory, removed when the test process exits. */
export function tmpdir(prefix = 'snapproc-test-'): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  if (tmpdirs.length === 0) process.on('exit', () => tmpdirs.forEach((d) => fs.rmSync(d, { recursive: true, force: true })));
  tmpdirs.push(dir);
  return dir;
}

export async function waitFor<T>(what: string, fn: () => T | undefined | null | false | Promise<T | undefined | null | false>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // An async condition is awaited (a pending promise is not "true").
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

export interface Tree {
  child: ChildProcess;
  log: string;
  /** PIDs by role, once each has logged its start. */
  pids: Record<string, number>;
}

/**
 * Starts a recorder tree inside `cgroup`: the shell moves itself into the
 * cgroup before it executes the recorder, so every process starts inside.
 */
export async function startTree(cgroup: string, args: string[], roles: string[], env: NodeJS.ProcessEnv = {}): Promise<Tree> {
  const log = path.join(tmpdir(), 'signals.log');
  const child = spawn('/bin/sh', ['-c', `echo $$ > "${cgroup}/cgroup.procs" && exec "${process.execPath}" "${RECORDER}" --log "${log}" "$@"`, 'sh', ...args], {
    stdio: 'ignore',
    env: { ...process.env, ...env },
  });
  const pids = await waitFor(`tree start (${roles.join(', ')})`, () => {
    const starts = readLog(log).filter((l) => l.event === 'start');
    if (!roles.every((r) => starts.some((s) => s.role === r))) return null;
    return Object.fromEntries(starts.map((s) => [s.role, s.pid])) as Record<string, number>;
  });
  return { child, log, pids };
}

export function signalsOf(log: string, role: string): string[] {
  return readLog(log).filter((l) => l.role === role && l.signal).map((l) => l.signal!);
}

export function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/\) Z /.test(stat);
  } catch {
    return false;
  }
}

/**
 * The reliability suite (test/rel-*.test.ts) runs a bounded number of trials
 * inside `npm test` and the full number under `npm run test:reliability`
 * (SNAPPROC_RELIABILITY=full). Each part prints its figure either way.
 */
export const reliabilityFull = process.env.SNAPPROC_RELIABILITY === 'full';
export function trials(bounded: number, full: number): number {
  return reliabilityFull ? full : bounded;
}

/**
 * The CLI as another user (nobody) can run it. A checkout in a 0700
 * directory (a root user's home) is not readable by nobody: then what the
 * CLI needs at run time (bin/, dist/src/, the addon and launcher, package.json,
 * commander and yaml) is copied once to a world-readable temporary directory,
 * removed at exit.
 */
let nobodyCli: string | null = null;
export function cliForNobody(): string {
  if (nobodyCli) return nobodyCli;
  const probe = spawnSync('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, '-e', `require(${JSON.stringify(path.join(REPO, 'dist', 'src', 'cli', 'program.js'))})`], { stdio: 'ignore' });
  if (probe.status === 0) return (nobodyCli = CLI);
  const dir = tmpdir('snapproc-cli-copy-');
  fs.chmodSync(dir, 0o755);
  const copy = (rel: string) => fs.cpSync(path.join(REPO, rel), path.join(dir, rel), { recursive: true });
  for (const rel of ['bin', 'package.json', path.join('dist', 'src'), path.join('node_modules', 'commander'), path.join('node_modules', 'yaml')]) copy(rel);
  fs.mkdirSync(path.join(dir, 'build', 'Release'), { recursive: true });
  for (const f of ['snapproc.node', 'snapproc-exec']) fs.copyFileSync(path.join(REPO, 'build', 'Release', f), path.join(dir, 'build', 'Release', f));
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const p = path.join(d, e.name);
      if (e.isDirectory()) {
        fs.chmodSync(p, 0o755);
        walk(p);
      } else fs.chmodSync(p, fs.statSync(p).mode & 0o111 ? 0o755 : 0o644);
    }
  };
  walk(dir);
  return (nobodyCli = path.join(dir, 'bin', 'snapproc'));
}

/** Every file under `dir` (relative paths, sorted; [] when `dir` does not exist), to show that nothing was written. */
export function listTree(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      out.push(path.join(rel, e.name));
      if (e.isDirectory()) walk(path.join(d, e.name), path.join(rel, e.name));
    }
  };
  if (fs.existsSync(dir)) walk(dir, '');
  return out.sort();
}
