// cgroup.bench.ts: the library-level figures of the cgroup process model,
// each against the kernel floor measured in the same run (BENCH.md), for
// N = 100, 1000, 4000 processes in one service cgroup:
//  - discover + classify a snap's processes (what `snapproc ps` does) vs one
//    read of cgroup.procs, a /proc walk, pidtree and tree-kill's method;
//  - SIGKILL all until empty vs cgroup.kill + `populated 0`;
//  - SIGTERM all until empty (freeze, signal, thaw) vs the same floor and a
//    JavaScript process.kill loop;
// and the CLI's start-up against a bare `node -e 0`.
// Sections: discover, kill (sigkill, sigterm), startup; e.g.
// `npm run bench -- discover --n=1000`.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { snapProcesses } from '../src/process/process-table';
import { findSnapCgroups } from '../src/process/find-cgroups';
import { classifyCgroup, cgroupPids } from '../src/process/classify';
import { revisionOf } from '../src/kernel/procfs';
import { killCgroup } from '../src/kernel/kill';
import { stopCgroup } from '../src/process/stop';
import { native } from '../src/kernel/native';
import { INLINE_FREEZE_MS } from '../src/kernel/signal-guard';
import { BenchCgroups, killTree, mount, preconditions, REPO, settle, startTree, Tree, uniqueInstance } from './harness';
import { alternate, Contender, median, parseArgs, printTable, reportRows, Row, showRaw, timeOnce, wanted } from './table';

const FILE = 'cgroup';
const args = parseArgs(process.argv.slice(2));
const NS = args.ns ?? [100, 1000, 4000];
const rows: Row[] = [];
const footer: string[] = [];

/** Issue 12: within 4x of a native floor that reads each member's /proc/PID/stat once, and at least 5x faster than a /proc walk. */
const GOAL_DISCOVER = 4;
const GOAL_VS_PROCWALK = 0.2;
const GOAL_SIGKILL = 1.15;
const GOAL_SIGTERM = 1.5;
const GOAL_STARTUP = 1.6;
const INLINE_FREEZE_NOTE = `stopCgroup waits up to ${INLINE_FREEZE_MS} ms for a freeze on its own thread, then off it`;

/** tree-kill spawns `ps` once per process, each reading all of /proc: ~0.45 s at N=100, 10-130 s at N=1000 (so only at N=100: the whole bench stays within minutes). */
const treeKillRounds = (n: number) => (n <= 100 ? 3 : 0);

const T0 = Date.now();
function progress(text: string): void {
  process.stderr.write(`  [cgroup ${((Date.now() - T0) / 1000).toFixed(1).padStart(5)} s] ${text}\n`);
}

const unavailable = new Map<string, string>();
function optional<T>(name: string): T | null {
  try {
    return require(name) as T;
  } catch (err) {
    unavailable.set(name, (err as NodeJS.ErrnoException).code === 'MODULE_NOT_FOUND' ? 'not installed' : `not loadable (${(err as Error).message.split('\n')[0]})`);
    return null;
  }
}

type TreeKill = (pid: number, signal: number | string, cb: (err?: Error) => void) => void;
type PidTree = (pid: number, options?: { root?: boolean }) => Promise<number[]>;
const treeKill = optional<TreeKill>('tree-kill');
const pidtreeModule = optional<{ default?: PidTree; pidtree?: PidTree }>('pidtree');
const pidtree = pidtreeModule ? pidtreeModule.default ?? pidtreeModule.pidtree ?? null : null;
const MISSING = (pkg: string) => `not measured: ${pkg} is ${unavailable.get(pkg) ?? 'not installed'}; \`npm install -D ${pkg}\` (or \`npm install\`) adds it`;

/** The environment snapd gives an app: revisionOf finds SNAP_REVISION in it. */
function snapEnv(instance: string): NodeJS.ProcessEnv {
  return { SNAP: `/snap/${instance}/x1`, SNAP_NAME: instance, SNAP_INSTANCE_NAME: instance, SNAP_REVISION: 'x1' };
}

// ---- discover + classify ------------------------------------------------------

/** What ps-based tools do: every /proc/PID/stat, kept when /proc/PID/cgroup names the cgroup. */
function procWalk(cgroupLine: string): number[][] {
  const out: number[][] = [];
  for (const name of fs.readdirSync('/proc')) {
    const c = name.charCodeAt(0);
    if (c < 48 || c > 57) continue;
    let stat: string, cg: string;
    try {
      stat = fs.readFileSync(`/proc/${name}/stat`, 'latin1');
      cg = fs.readFileSync(`/proc/${name}/cgroup`, 'latin1');
    } catch {
      continue; // exited meanwhile
    }
    if (!cg.includes(cgroupLine)) continue;
    const f = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    out.push([Number(name), Number(f[1]), Number(f[2])]);
  }
  return out;
}

/** tree-kill with signal 0: its own per-node `ps --ppid` discovery, then kill(pid, 0) (existence check) for each. */
function treeKillDryRun(pid: number): Promise<void> {
  return new Promise((resolve, reject) => treeKill!(pid, 0, (err) => (err ? reject(err) : resolve())));
}

async function discover(cgs: BenchCgroups, n: number): Promise<void> {
  const instance = uniqueInstance();
  const dir = cgs.make(`snap.${instance}.svc.service`);
  progress(`discover N=${n}: starting ${n} processes`);
  const tree = await startTree(dir, n, snapEnv(instance));
  try {
    const cgroupLine = `0::${dir.slice(mount().length) || '/'}\n`;
    // Check every contender's answer once before timing it.
    const apps = snapProcesses(instance);
    const ps = apps[0]?.processes ?? [];
    if (apps.length !== 1 || ps.length !== n || apps[0].mainPid !== tree.mainPid || ps.filter((p) => p.role === 'main').length !== 1 || ps.some((p) => p.revision !== 'x1')) {
      throw new Error(`snapProcesses(${instance}) gave a wrong answer: ${apps.length} apps, ${ps.length} processes, main ${apps[0]?.mainPid} (want ${n} processes, main ${tree.mainPid}, revision x1)`);
    }
    if (native.readProcs(dir).length !== n) throw new Error('cgroup.procs does not list the tree');
    if (procWalk(cgroupLine).length !== n) throw new Error(`the /proc walk did not find the ${n} processes (${cgroupLine.trim()})`);
    if (pidtree && (await pidtree(tree.mainPid)).length !== n - 1) throw new Error('pidtree did not find the tree');

    const rounds = args.reps ?? (n >= 4000 ? 9 : 15);
    const contenders: Contender[] = [
      { name: 'snapproc', run: () => snapProcesses(instance) },
      { name: 'floor', run: () => native.readProcs(dir) },
      { name: 'statfloor', run: () => native.procInfo(native.readProcs(dir), false, true) },
      { name: 'procwalk', run: () => procWalk(cgroupLine) },
    ];
    if (pidtree) contenders.push({ name: 'pidtree', run: () => pidtree(tree.mainPid) });
    if (treeKill && treeKillRounds(n) > 0) contenders.push({ name: 'treekill', run: () => treeKillDryRun(tree.mainPid), rounds: Math.min(rounds, treeKillRounds(n)), noWarmup: n > 100 });
    progress(`discover N=${n}: ${rounds} rounds of ${contenders.map((c) => c.name).join(', ')}`);
    const t = await alternate(contenders, rounds);
    showRaw(`discover N=${n}`, t);
    const m = (name: string) => (t.get(name)?.length ? median(t.get(name)!) : null);
    const snap = m('snapproc');
    const floor = m('floor');
    rows.push({ measure: 'discover+classify vs native stat floor', n, snapproc: snap, baseline: m('statfloor'), goal: GOAL_DISCOVER, note: 'snapProcesses(instance) (what `snapproc ps NAME` does): walks the cgroup2 mount for the snap\'s cgroups, reads cgroup.procs, then one native call (native.procInfo) gets each member\'s ppid (pidfd + PIDFD_GET_INFO) and pgid (getpgid) and its revision (readlink /proc/PID/exe, and /proc/PID/environ when the exe path names no revision, as for these `sleep`s of the base), split over up to 4 threads from 512 members on. Native stat floor: cgroup.procs of the known cgroup, then /proc/PID/stat of each member read once, natively, on one thread (native.procInfo without revisions, viaStat).' });
    rows.push({ measure: 'discover+classify vs cgroup.procs read', n, snapproc: snap, baseline: floor, note: 'cgroup.procs floor: native.readProcs(dir) of the known cgroup, once.' });
    rows.push({ measure: 'discover+classify vs /proc walk', n, snapproc: snap, baseline: m('procwalk'), goal: GOAL_VS_PROCWALK, note: '/proc walk: readdir /proc, then /proc/PID/stat and /proc/PID/cgroup of every process, keeping the cgroup\'s (what ps-based tools do). Goal: at least 5x faster (ratio <= 0.2x).' });
    rows.push({ measure: 'discover+classify vs pidtree', n, snapproc: snap, baseline: m('pidtree'), note: pidtree ? 'pidtree(mainPid): one `ps -A -o ppid,pid`, then a walk of the parent map.' : MISSING('pidtree') });
    rows.push({
      measure: 'discover+classify vs tree-kill (ps per node)',
      n,
      snapproc: snap,
      baseline: m('treekill'),
      note: !treeKill
        ? MISSING('tree-kill')
        : `tree-kill(mainPid, 0): its own discovery (\`ps -o pid --no-headers --ppid PID\` spawned per process, each reading all of /proc), then process.kill(pid, 0) per process (signal 0: nothing delivered). Capped: ${treeKillRounds(100)} rounds at N=100, not run above (10-130 s per run at N=1000 here: it grows faster than N).`,
    });

    // Where snapProcesses spends its time: each part timed alone, alternated.
    const pids = cgroupPids(dir);
    const parts: Contender[] = [
      { name: 'floor', run: () => native.readProcs(dir) },
      { name: 'find', run: () => findSnapCgroups(instance) },
      { name: 'pids', run: () => cgroupPids(dir) },
      { name: 'procIds', run: () => native.procIds(pids) },
      { name: 'procInfo', run: () => native.procInfo(pids, true) },
      { name: 'classify', run: () => classifyCgroup(dir, { revisions: false }) },
      { name: 'classifyRev', run: () => classifyCgroup(dir, { revisions: true }) },
      { name: 'snapproc', run: () => snapProcesses(instance) },
      { name: 'revisionOf', run: () => { for (const pid of pids) revisionOf(pid); } },
      { name: 'exe', run: () => { for (const pid of pids) try { fs.readlinkSync(`/proc/${pid}/exe`); } catch { /* gone */ } } },
      { name: 'environ', run: () => { for (const pid of pids) try { fs.readFileSync(`/proc/${pid}/environ`, 'latin1'); } catch { /* gone */ } } },
    ];
    const p = await alternate(parts, rounds);
    showRaw(`discover parts N=${n}`, p);
    const pm = (name: string) => median(p.get(name)!);
    const pf = pm('floor');
    const part = (measure: string, name: string, note?: string) => rows.push({ measure: `  part: ${measure}`, n, snapproc: pm(name), baseline: pf, note });
    part('findSnapCgroups (walk the mount)', 'find', 'Parts, each timed alone against the cgroup.procs floor, alternated in their own rounds: findSnapCgroups(instance); cgroupPids(dir); native.procIds(pids) (pidfd_open + PIDFD_GET_INFO + getpgid + pidfd_send_signal 0 + close per process, what classify used before); native.procInfo(pids, true) (what classify uses now: the same pidfd + PIDFD_GET_INFO + getpgid, with the revision reads in between, threads from 512 members on); classifyCgroup(dir, { revisions: false }) (= cgroupPids + procInfo + JS); revisionOf(pid) for every pid, and its two reads alone (readlink /proc/PID/exe, then /proc/PID/environ when the exe path names no revision, as for any process running a base-snap binary).');
    part('cgroupPids', 'pids');
    part('native.procIds (pidfd per process; no longer used by ps)', 'procIds');
    part('native.procInfo with revisions', 'procInfo');
    part('classifyCgroup, no revisions', 'classify');
    part('classifyCgroup with revisions', 'classifyRev');
    part('snapProcesses (the whole, among the parts)', 'snapproc');
    part('revisionOf x N (JS; no longer used by ps)', 'revisionOf');
    part('  readlink /proc/PID/exe x N', 'exe');
    part('  read /proc/PID/environ x N', 'environ');
  } finally {
    await killTree(tree);
  }
}

// ---- SIGKILL / SIGTERM fan-out --------------------------------------------------

async function fanout(cgs: BenchCgroups, n: number, warmup: boolean): Promise<void> {
  const instance = uniqueInstance();
  const dir = cgs.make(`snap.${instance}.svc.service`);
  const events = path.join(dir, 'cgroup.events');
  const waitEmpty = async () => {
    const outcome = await native.waitEvent(dir, 'populated', 0, 10_000).result;
    if (outcome !== 'done') throw new Error(`${dir} did not empty within 10 s`);
  };
  /** SIGTERM by process.kill to each member; the pids come from the cgroup itself: every one is ours. */
  const sigtermEach = () => {
    const text = fs.readFileSync(path.join(dir, 'cgroup.procs'), 'latin1');
    for (const line of text.split('\n')) {
      const pid = Number(line);
      if (pid > 1 && pid !== process.pid) process.kill(pid, 'SIGTERM');
    }
  };
  const killFloor = async () => {
    fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1');
    await waitEmpty();
  };
  const contenders: { name: string; run: (tree: Tree) => Promise<void> }[] = [
    {
      name: 'sigkill',
      run: async () => {
        const r = await killCgroup(dir);
        if (!r.empty || r.method !== 'cgroup.kill') throw new Error(`killCgroup: ${JSON.stringify(r)}`);
      },
    },
    { name: 'floor', run: killFloor },
    // The floor again, for n <= 1000: how far apart two identical contenders land (A/A).
    ...(n <= 1000 ? [{ name: 'floor2', run: killFloor }] : []),
    {
      name: 'sigterm',
      run: async (tree) => {
        const r = await stopCgroup(dir, { mode: 'sigterm-all', timeoutMs: 10_000 });
        if (!r.stopped || r.isForcefullyTerminated || r.signalled !== tree.n) throw new Error(`stopCgroup: ${JSON.stringify(r)}`);
      },
    },
    {
      // SPEC 4's mechanism with nothing of snapproc's around it: what an atomic `-all` stop costs at least.
      name: 'freezeloop',
      run: async () => {
        if ((await native.setFrozen(dir, true, 5000).result) !== 'done') throw new Error('freeze timed out');
        sigtermEach();
        fs.writeFileSync(path.join(dir, 'cgroup.freeze'), '0');
        await waitEmpty();
      },
    },
    {
      name: 'jsloop',
      run: async () => {
        sigtermEach();
        await waitEmpty();
      },
    },
  ];
  const rounds = warmup ? 3 : args.reps ?? (n >= 4000 ? 9 : n >= 1000 ? 9 : 21);
  const times = new Map<string, number[]>(contenders.map((c) => [c.name, []]));

  // How long stopCgroup spends in its one native fan-out call (freeze,
  // signal each member, thaw): native.signalAll, wrapped to time it.
  const signalAll = native.signalAll;
  // One call, or two where the freeze outlasts the inline wait (the first returns unfrozen, having signalled nothing).
  const inSignalAll: { ms: number; end: number }[] = [];
  native.signalAll = (...a: Parameters<typeof signalAll>) => {
    const t0 = performance.now();
    try {
      return signalAll(...a);
    } finally {
      const end = performance.now();
      inSignalAll.push({ ms: end - t0, end });
    }
  };
  const signalAllT: number[] = [];
  let twoCalls = 0;
  const afterSignalAll: number[] = [];

  progress(`${warmup ? 'warm-up' : `kill N=${n}`}: ${rounds} rounds of ${contenders.map((c) => c.name).join(', ')}, a new tree each`);
  try {
    for (let r = 0; r < rounds; r++) {
      // A B C D, then B C D A, ...: no contender always follows the same one.
      for (let k = 0; k < contenders.length; k++) {
        const c = contenders[(r + k) % contenders.length];
        const tree = await startTree(dir, n);
        inSignalAll.length = 0;
        const t = await timeOnce(() => c.run(tree));
        const runEnd = performance.now();
        times.get(c.name)!.push(t);
        if (c.name === 'sigterm') {
          if (inSignalAll.length < 1 || inSignalAll.length > 2) throw new Error(`stopCgroup called native.signalAll ${inSignalAll.length} times`);
          if (inSignalAll.length === 2) twoCalls += 1;
          signalAllT.push(inSignalAll.reduce((sum, c) => sum + c.ms, 0));
          afterSignalAll.push(runEnd - inSignalAll[inSignalAll.length - 1].end);
        }
        if (/populated 1/.test(fs.readFileSync(events, 'utf8'))) throw new Error(`${c.name} left ${dir} populated`);
        await settle(tree);
      }
    }
  } finally {
    native.signalAll = signalAll;
  }
  showRaw(`kill N=${n}`, new Map([...times, ['(signalAll in sigterm)', signalAllT], ['(after signalAll)', afterSignalAll]]));
  if (!warmup && twoCalls > 0) footer.push(`N=${n}: in ${twoCalls} of ${rounds} SIGTERM stops the freeze outlasted the inline wait (${INLINE_FREEZE_NOTE}): native.signalAll ran twice (the first returned unfrozen, signalling nothing); the part counts both.`);
  if (warmup) {
    cgs.remove(dir);
    return;
  }

  // The parts of the fan-out on one more tree, which they leave alive:
  // freeze until `frozen 1`, thaw until `frozen 0`, and the whole native
  // fan-out with signal 0 (freeze, read, pidfds, re-read, kill(0), thaw).
  const tree = await startTree(dir, n);
  const freezeT: number[] = [];
  const thawT: number[] = [];
  try {
    const parts: Contender[] = [
      {
        name: 'freezethaw',
        run: async () => {
          const t0 = performance.now();
          if ((await native.setFrozen(dir, true, 5000).result) !== 'done') throw new Error('freeze timed out');
          const t1 = performance.now();
          if ((await native.setFrozen(dir, false, 5000).result) !== 'done') throw new Error('thaw timed out');
          freezeT.push(t1 - t0);
          thawT.push(performance.now() - t1);
        },
      },
      {
        name: 'signal0',
        run: () => {
          const r = native.signalAll(dir, 0, 5000, false);
          if (r.signalled !== n || !r.frozen) throw new Error(`signalAll(0): ${JSON.stringify(r)}`);
        },
      },
    ];
    const p = await alternate(parts, rounds);
    showRaw(`kill parts N=${n}`, new Map([...p, ['(freeze)', freezeT], ['(thaw)', thawT]]));
    freezeT.splice(0, freezeT.length - rounds); // drop the warm-up
    thawT.splice(0, thawT.length - rounds);
    const m = (name: string) => median(times.get(name)!);
    const floor = m('floor');
    rows.push({ measure: 'SIGKILL all until empty vs cgroup.kill (floor)', n, snapproc: m('sigkill'), baseline: floor, goal: GOAL_SIGKILL, note: 'killCgroup(dir) until it resolves (cgroup.kill + `populated 0` on cgroup.events). Floor: write cgroup.kill, native.waitEvent(populated 0). A new tree for every run; only the kill is timed.' });
    if (times.has('floor2')) rows.push({ measure: '  noise: the floor vs itself (A/A)', n, snapproc: m('floor2'), baseline: floor, note: 'The floor run twice per round as two contenders: how far apart identical runs land here, i.e. how much of a ratio is noise.' });
    rows.push({ measure: 'SIGTERM all until empty vs cgroup.kill (floor)', n, snapproc: m('sigterm'), baseline: floor, goal: GOAL_SIGTERM, note: 'stopCgroup(dir, { mode: \'sigterm-all\' }): freeze, SIGTERM (+ SIGCONT) each member through a pidfd, thaw, wait for `populated 0`; the sleeps die of SIGTERM.' });
    rows.push({ measure: 'SIGTERM all until empty vs JS process.kill loop', n, snapproc: m('sigterm'), baseline: m('jsloop'), note: 'JS loop: read cgroup.procs, process.kill(pid, \'SIGTERM\') for each, native.waitEvent(populated 0) (not race-free: no freeze, no pidfd).' });
    rows.push({ measure: 'SIGTERM all until empty vs freeze + JS loop + thaw (info)', n, snapproc: m('sigterm'), baseline: m('freezeloop'), note: 'The mechanism SPEC 4 asks of an `-all` stop, bare: write cgroup.freeze 1 and wait for `frozen 1`, read cgroup.procs, process.kill(pid, \'SIGTERM\') for each, write cgroup.freeze 0, native.waitEvent(populated 0) (no pidfd, no verification). Against the kill floor it is what the freeze itself costs.' });
    rows.push({ measure: '  part: freeze + JS loop + thaw vs cgroup.kill (floor)', n, snapproc: m('freezeloop'), baseline: floor });
    const part = (measure: string, value: number, note?: string) => rows.push({ measure: `  part: ${measure}`, n, snapproc: value, baseline: floor, note });
    part('native.signalAll in stopCgroup', median(signalAllT), 'Parts of the SIGTERM stop, against the kill floor: the time stopCgroup spent inside native.signalAll (freeze, SIGTERM + SIGCONT through pidfds, thaw; timed by wrapping it) and after it (until `populated 0`), in the same runs; then, on a tree left alive, freeze alone (until `frozen 1`), thaw alone (until `frozen 0`), and native.signalAll with signal 0 (the fan-out without deaths).');
    part('stopCgroup after signalAll', median(afterSignalAll));
    part('freeze (until frozen 1)', median(freezeT));
    part('thaw (until frozen 0)', median(thawT));
    part('native.signalAll, signal 0', median(p.get('signal0')!));
  } finally {
    await killTree(tree);
    cgs.remove(dir);
  }
}

// ---- CLI start-up -------------------------------------------------------------

async function startup(): Promise<void> {
  const cli = path.join(REPO, 'bin', 'snapproc');
  const version = (JSON.parse(fs.readFileSync(path.join(REPO, 'package.json'), 'utf8')) as { version: string }).version;
  const env: NodeJS.ProcessEnv = { ...process.env, SNAPPROC_NO_AUTOSTART: '1' };
  const caSet = env.NODE_EXTRA_CA_CERTS !== undefined;
  const bare = { ...env };
  delete bare.NODE_EXTRA_CA_CERTS;
  // file: process.execPath runs `node ARGV`; the CLI runs as a user runs it (bin/snapproc executed, its shell line starting node).
  const run = (file: string, argv: string[], check?: (out: string) => boolean, e: NodeJS.ProcessEnv = env) => () => {
    const r = spawnSync(file, argv, { encoding: 'utf8', env: e });
    if (r.status !== 0 || (check && !check(r.stdout))) throw new Error(`${file} ${argv.join(' ')} failed (status ${r.status}): ${(r.stderr.split('\n').find((l) => /^\w*Error\b/.test(l)) ?? r.stderr.trim().split('\n')[0]).trim()}`);
  };
  const contenders: Contender[] = [
    { name: 'node', run: run(process.execPath, ['-e', '0']) },
    { name: 'version', run: run(cli, ['--version'], (out) => out.trim() === version) },
    { name: 'ps', run: run(cli, ['ps', '--json'], (out) => out.startsWith('{')) },
  ];
  if (caSet) contenders.push({ name: 'node bare', run: run(process.execPath, ['-e', '0'], undefined, bare) });
  // `ps --json` is shown for information: when it fails, say so and go on.
  let psFailure: string | null = null;
  try {
    contenders[2].run();
  } catch (err) {
    psFailure = (err as Error).message;
    contenders.splice(2, 1);
  }
  const rounds = args.reps ?? 20;
  progress(`startup: ${rounds} rounds of node -e 0, snapproc --version, snapproc ps --json${caSet ? ', node -e 0 without NODE_EXTRA_CA_CERTS' : ''}`);
  const t = await alternate(contenders, rounds, 2);
  showRaw('startup', t);
  const m = (name: string) => median(t.get(name)!);
  // The goal is held against Node's own start-up as snapproc's processes have it: without NODE_EXTRA_CA_CERTS, which bin/snapproc drops.
  const floor = caSet ? 'node bare' : 'node';
  const floorName = caSet ? 'node -e 0 without NODE_EXTRA_CA_CERTS' : 'node -e 0';
  rows.push({ measure: `CLI start-up: snapproc --version vs ${floorName}`, n: '-', snapproc: m('version'), baseline: m(floor), goal: GOAL_STARTUP, note: `spawnSync of bin/snapproc (executed, as a user runs it) until exit, alternated with ${floorName} (the node binary that runs the bench).` });
  if (caSet) rows.push({ measure: 'CLI start-up: snapproc --version vs node -e 0 (NODE_EXTRA_CA_CERTS set, as here)', n: '-', snapproc: m('version'), baseline: m('node'), note: 'Node parses the NODE_EXTRA_CA_CERTS file at every start-up; bin/snapproc starts node without it (snapproc makes no TLS connections).' });
  rows.push({ measure: `CLI start-up: snapproc ps --json vs ${floorName}`, n: '-', snapproc: psFailure ? null : m('ps'), baseline: m(floor), note: psFailure ? `not measured: ${psFailure}` : undefined });
}

// ---- main ---------------------------------------------------------------------

async function main(): Promise<void> {
  const why = preconditions();
  if (why) {
    process.stdout.write(`cgroup benchmarks not run: ${why}\n`);
    process.exitCode = 1;
    return;
  }
  const cgs = new BenchCgroups();
  const started = Date.now();
  const sections = { discover: wanted(args, ['discover', 'classify', 'ps']), kill: wanted(args, ['kill', 'sigkill', 'sigterm', 'fanout', 'stop']), startup: wanted(args, ['startup', 'cli', 'version']) };
  if (!sections.discover && !sections.kill && !sections.startup) {
    process.stdout.write(`cgroup benchmarks: no section matches ${args.filters.join(' ')} (sections: discover, kill, sigkill, sigterm, startup)\n`);
    return;
  }
  if (sections.discover) for (const n of NS) await discover(cgs, n);
  if (sections.kill) {
    await fanout(cgs, 100, true);
    for (const n of NS) await fanout(cgs, n, false);
  }
  if (sections.startup) await startup();
  const kernel = fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim();
  footer.push(
    '',
    `Medians; contenders alternated (A B A B ...) in the same run. Node ${process.version}, kernel ${kernel}, ${os.availableParallelism()} CPUs, cgroup2 at ${mount()}; bench cgroup ${cgs.parent}. ${((Date.now() - started) / 1000).toFixed(0)} s.`,
  );
  printTable('cgroup benchmarks (ratio = snapproc / baseline; goal is on the ratio)', rows, footer);
  reportRows(FILE, rows);
}

main().catch((err) => {
  process.stderr.write(`cgroup benchmark failed: ${(err as Error).stack ?? err}\n`);
  process.exitCode = 1;
});
