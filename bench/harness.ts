// harness.ts: what every benchmark shares. Each benchmark gets a cgroup
// parent of its own under the cgroup2 mount, `snapproc-bench-<pid>-<hex>`:
// run.ts makes it and starts the benchmark inside `<parent>/runner`, so that
// every helper the benchmark starts (ps, node, the CLI) lives there too; run
// alone, a benchmark makes its own. Process trees to measure on are started
// in sibling cgroups. Whatever happens (failure, Ctrl-C), the cleanup thaws,
// writes cgroup.kill, waits for `populated 0` and removes the directories.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { cgroupOfPid, cgroupSubtree as subtree, findCgroup2Mount, isInside } from '../src/kernel/cgroupfs';
import { native } from '../src/kernel/native';

export const REPO = path.resolve(__dirname, '..', '..');
/** Set by run.ts: the parent cgroup it made for one benchmark file. */
export const PARENT_ENV = 'SNAPPROC_BENCH_CGROUP';
/** Set by run.ts: a file each benchmark appends its rows to (JSON lines). */
export const RESULTS_ENV = 'SNAPPROC_BENCH_RESULTS';
const PARENT_NAME = /^snapproc-bench-(\d+)-[0-9a-f]{6}$/;

/** Why benchmarks cannot run here, or null when they can. */
export function preconditions(): string | null {
  if (process.getuid?.() !== 0) return 'the benchmarks need root (they create cgroups and signal process trees)';
  const mount = findCgroup2Mount();
  if (!mount) return 'no cgroup v2 hierarchy is mounted';
  if (!fs.existsSync(path.join(mount, 'cgroup.procs'))) return `${mount} is not a writable cgroup2 root`;
  return null;
}

export function mount(): string {
  const m = findCgroup2Mount();
  if (!m) throw new Error('no cgroup v2 hierarchy is mounted');
  return m;
}

export function newParentPath(): string {
  return path.join(mount(), `snapproc-bench-${process.pid}-${randomBytes(3).toString('hex')}`);
}

export const sleep = (ms: number) => new Promise<void>((r) => setTimeout(r, ms));

function sleepSync(ms: number): void {
  Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);
}


function populated(dir: string): boolean {
  try {
    return /^populated 1$/m.test(fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8'));
  } catch {
    return false;
  }
}

/**
 * Empties and removes a bench cgroup and everything below it (synchronous, so
 * it also runs in an exit handler). Refuses a directory that is not below the
 * cgroup2 mount, and one that holds this process. True when it is gone.
 */
export function destroyCgroup(dir: string): boolean {
  const root = mount();
  if (!isInside(dir, root) || path.resolve(dir) === path.resolve(root)) throw new Error(`refusing to destroy ${dir}: not below ${root}`);
  if (!fs.existsSync(dir)) return true;
  const own = cgroupOfPid('self');
  if (own && isInside(own, dir)) throw new Error(`refusing to destroy ${dir}: this process runs in it`);
  const dirs = subtree(dir);
  for (const d of dirs) {
    try { fs.writeFileSync(path.join(d, 'cgroup.freeze'), '0'); } catch { /* gone, or the root of a delegation */ }
  }
  let canKill = true;
  try {
    fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1');
  } catch {
    canKill = false; // kernels before 5.14: SIGKILL each member listed (they are ours: they are in our cgroup)
  }
  const deadline = Date.now() + 10_000;
  while (populated(dir) && Date.now() < deadline) {
    if (!canKill) {
      for (const d of dirs) {
        let pids: Int32Array;
        try { pids = native.readProcs(d); } catch { continue; }
        for (const pid of pids) {
          if (pid > 1 && pid !== process.pid) try { process.kill(pid, 'SIGKILL'); } catch { /* gone */ }
        }
      }
    }
    sleepSync(10);
  }
  for (const d of dirs.reverse()) {
    try { fs.rmdirSync(d); } catch { /* reported below if it stays */ }
  }
  const gone = !fs.existsSync(dir);
  if (!gone) process.stderr.write(`warning: could not remove bench cgroup ${dir}\n`);
  return gone;
}

/** Removes the cgroups of earlier bench runs whose process no longer exists (killed before it could clean up). */
export function sweepStale(): string[] {
  const root = mount();
  const swept: string[] = [];
  for (const name of fs.readdirSync(root)) {
    const m = PARENT_NAME.exec(name);
    if (!m || fs.existsSync(`/proc/${m[1]}`)) continue;
    if (destroyCgroup(path.join(root, name))) swept.push(name);
  }
  return swept;
}

/**
 * The cgroups of one benchmark process: its parent (from run.ts, or its own
 * when run alone) and the tree cgroups it makes below it, all removed at exit.
 */
export class BenchCgroups {
  readonly parent: string;
  private readonly ownParent: boolean;
  private readonly made = new Set<string>();
  private cleaned = false;

  constructor() {
    const given = process.env[PARENT_ENV];
    if (given) {
      if (!PARENT_NAME.test(path.basename(given)) || path.dirname(given) !== mount()) throw new Error(`${PARENT_ENV}=${given} is not a bench cgroup`);
      this.parent = given;
      this.ownParent = false;
    } else {
      this.parent = newParentPath();
      fs.mkdirSync(this.parent);
      this.ownParent = true;
    }
    process.on('exit', () => this.cleanup());
    for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
      process.on(sig, () => {
        process.stderr.write(`\n${sig}: removing the bench cgroups\n`);
        process.exit(130);
      });
    }
  }

  /** Makes (or reuses) a cgroup below the parent. */
  make(name: string): string {
    const dir = path.join(this.parent, name);
    fs.mkdirSync(dir, { recursive: true });
    this.made.add(dir);
    return dir;
  }

  /** Empties and removes one cgroup made by make(). */
  remove(dir: string): void {
    destroyCgroup(dir);
    this.made.delete(dir);
  }

  cleanup(): void {
    if (this.cleaned) return;
    this.cleaned = true;
    for (const dir of this.made) {
      try { destroyCgroup(dir); } catch (err) { process.stderr.write(`warning: ${(err as Error).message}\n`); }
    }
    if (this.ownParent) {
      try { destroyCgroup(this.parent); } catch (err) { process.stderr.write(`warning: ${(err as Error).message}\n`); }
    }
  }
}

export function uniqueInstance(prefix = 'bench'): string {
  return `${prefix}${randomBytes(4).toString('hex')}`;
}

export interface Tree {
  dir: string;
  n: number;
  /** The shell that moved itself into `dir`: parent of all the others. */
  mainPid: number;
  /** Every member, once all n are there. */
  pids: Int32Array;
  /** What we spawned: the reaper (or, without one, the shell itself). */
  child: ChildProcess;
  exited: Promise<void>;
}

/** prctl(2)'s syscall number, for the perl reaper. */
const SYS_PRCTL: Partial<Record<string, number>> = { x64: 157, arm64: 167, riscv64: 167, ia32: 172, arm: 172, s390x: 172, ppc64: 171 };
const PR_SET_CHILD_SUBREAPER = 36;

/**
 * A reaper for the trees, when perl is there: it makes itself a child
 * subreaper, forks the tree's shell, says its PID, and once its stdin closes
 * (settle() closes it, after the timed part) reaps until it has no child
 * left. So the orphans of a killed tree are reaped promptly, but not during
 * the measurement (`populated 0` comes at exit, before reaping), and not by
 * whatever PID 1 is (here, one that reaps every ~2 s).
 */
const REAPER = [
  'my ($nr, @cmd) = @ARGV; $| = 1;',
  `syscall($nr, ${PR_SET_CHILD_SUBREAPER}, 1, 0, 0, 0) == 0 or die "prctl: $!";`,
  'my $pid = fork() // die "fork: $!";',
  'if ($pid == 0) { exec { $cmd[0] } @cmd or exit 127 }',
  'print "$pid\\n"; my $go = <STDIN>; 1 while wait() != -1;',
].join(' ');

let reaperCmd: string | null | undefined;
/** The perl that runs the reaper, or null (then PID 1 reaps). */
export function reaper(): string | null {
  if (reaperCmd === undefined) {
    const ok = SYS_PRCTL[process.arch] !== undefined && spawnSync('perl', ['-e', 'exit 0']).status === 0;
    reaperCmd = ok ? 'perl' : null;
  }
  return reaperCmd;
}

/**
 * Starts n processes in `dir`: one shell that moves itself into the cgroup
 * and then starts n-1 `sleep 1000` in the background and waits. The shape is
 * a service's: a main process whose parent (the reaper) is outside the
 * cgroup, and its children. SIGTERM kills every member (default action).
 * Resolves once all n are in the cgroup and every child has executed sleep.
 */
export async function startTree(dir: string, n: number, env: NodeJS.ProcessEnv = {}, timeoutMs = 60_000): Promise<Tree> {
  const script = 'echo $$ > "$0/cgroup.procs" || exit 125; for i in $(seq "$1"); do sleep 1000 & done; wait';
  const sh = ['/bin/sh', '-c', script, dir, String(n - 1)];
  const perl = reaper();
  const child = spawn(perl ?? sh[0], perl ? ['-e', REAPER, String(SYS_PRCTL[process.arch]), ...sh] : sh.slice(1), {
    stdio: [perl ? 'pipe' : 'ignore', perl ? 'pipe' : 'ignore', 'inherit'],
    env: { PATH: process.env.PATH ?? '/usr/bin:/bin', ...env },
    detached: true, // a session of its own, as a service has; Ctrl-C is for the bench to handle
  });
  let exitCode: number | null | undefined;
  const exited = new Promise<void>((resolve) => child.on('exit', (code, signal) => {
    exitCode = code ?? (signal ? -1 : null);
    resolve();
  }));
  let mainPid = perl ? undefined : child.pid;
  if (perl) {
    let out = '';
    child.stdout!.on('data', (d: Buffer) => {
      out += d.toString();
      if (/^\d+\n/.test(out)) mainPid = Number(out.split('\n')[0]);
    });
  }
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (exitCode !== undefined) throw new Error(`the tree's ${perl ? 'reaper' : 'shell'} exited early (status ${exitCode}) in ${dir}`);
    const pids = native.readProcs(dir);
    if (mainPid !== undefined && pids.length === n && pids.every((pid) => pid === mainPid || commOf(pid) === 'sleep')) {
      return { dir, n, mainPid, pids, child, exited };
    }
    if (pids.length > n) throw new Error(`${dir} has ${pids.length} processes, more than the ${n} started`);
    if (Date.now() > deadline) throw new Error(`timed out starting ${n} processes in ${dir} (${pids.length} there)`);
    await sleep(pids.length === n ? 5 : 20);
  }
}

function commOf(pid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'latin1').trimEnd();
  } catch {
    return null;
  }
}

function isZombie(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'latin1');
    return stat[stat.lastIndexOf(')') + 2] === 'Z';
  } catch {
    return false;
  }
}

/**
 * After a tree was killed: waits until its reaper has reaped them all and
 * exited (without a reaper: until PID 1 has reaped the orphans), so that
 * reaping thousands of zombies does not run during the next measurement.
 * Not timed.
 */
export async function settle(tree: Tree, timeoutMs = 15_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  if (populated(tree.dir)) throw new Error(`settle: ${tree.dir} is not empty`);
  tree.child.stdin?.end(); // the reaper's go
  await Promise.race([tree.exited, sleep(timeoutMs)]);
  let left = Array.from(tree.pids);
  while (left.length > 0 && Date.now() < deadline) {
    left = left.filter(isZombie);
    if (left.length > 0) await sleep(20);
  }
}

/** Kills a tree the plain way (cgroup.kill, wait for `populated 0`) and settles. */
export async function killTree(tree: Tree): Promise<void> {
  fs.writeFileSync(path.join(tree.dir, 'cgroup.kill'), '1');
  const outcome = await native.waitEvent(tree.dir, 'populated', 0, 10_000).result;
  if (outcome !== 'done') throw new Error(`${tree.dir} did not empty after cgroup.kill`);
  await settle(tree);
}

/**
 * Runs a bench file's main and ends the process: 0 when it resolved, 1 with
 * its stack when it threw (what it started is its own cleanup's to stop; a
 * forced exit keeps a forgotten handle from holding the run open).
 */
export function runBench(name: string, main: () => Promise<void>): void {
  main().then(
    () => process.exit(0),
    (err) => {
      process.stderr.write(`${name} bench failed: ${(err as Error).stack}\n`);
      process.exit(1);
    },
  );
}
