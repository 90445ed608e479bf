// supervisor.bench.ts: the supervisor and CLI levels of BENCH.md, side by
// side with s6 (the fastest supervisor there is) and supervisord, all in this
// one run and on the same kind of service (a shell exec'ing `sleep`):
//  - restart of a one-service snap: request on the control socket until the
//    new main process is up, vs `s6-svc -r -wu`. Like with like: s6 reports
//    "up" once it spawned ./run, and so does a second snapproc daemon run
//    with SNAPPROC_SETTLE_MS=0 (the comparable mode, the goal row); snapproc's
//    default also waits for its settle sign (the main process executed the
//    command and sleeps waiting for work), and a third daemon with
//    SNAPPROC_SETTLE_EARLY=0 shows what the whole 100 ms settle time costs;
//  - refresh of that snap (a new revision whose daemon stops and starts at
//    once): its overhead beyond the restart it contains, on the control
//    socket and through the CLI, and the per-step breakdown from the journal;
//  - start / stop / restart through the CLI, vs `supervisorctl` and s6-svc;
//  - the supervisor's idle memory (RSS) and wake-ups per second.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { BenchCgroups, REPO, sleep, uniqueInstance, runBench } from './harness';
import { alternate, Contender, median, parseArgs, printTable, reportRows, Row, showRaw, wanted } from './table';
import { request } from '../src/supervisor/client';
import { loadChanges } from '../src/supervisor/change-runner';

const FILE = 'supervisor';
const args = parseArgs(process.argv.slice(2));
const REPS = args.reps ?? 15;
const CLI = path.join(REPO, 'bin', 'snapproc');
const bc = new BenchCgroups();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'snapproc-bench-sup-'));
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function writeSnap(dir: string, name: string, version: string): void {
  fs.mkdirSync(path.join(dir, 'meta'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), `name: ${name}\nversion: '${version}'\napps:\n  svc:\n    command: bin/svc\n    daemon: simple\n    stop-timeout: 5s\n`);
  fs.writeFileSync(path.join(dir, 'bin', 'svc'), '#!/bin/sh\nexec sleep 100000\n', { mode: 0o755 });
}

/** Sum of voluntary + involuntary context switches of every thread of a process. */
function switches(pid: number): number {
  let n = 0;
  for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
    const s = fs.readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
    n += Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(s)![1]) + Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(s)![1]);
  }
  return n;
}

function rssKiB(pid: number): number {
  return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
}

async function waitFor(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(10);
  }
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const footer: string[] = [];
  const snap = uniqueInstance('sup');
  const root = path.join(tmp, 'root');
  const env = { ...process.env, SNAPPROC_ROOT: root, SNAPPROC_CGROUP_PARENT: bc.make('snapproc'), SNAPPROC_NO_AUTOSTART: '1' };

  // snapproc: a daemon and the snap installed (default settle), and two more
  // daemons with their own roots: up at spawn (SNAPPROC_SETTLE_MS=0, what
  // s6-svc -wu waits for) and the whole settle time (SNAPPROC_SETTLE_EARLY=0).
  const revA = path.join(tmp, 'a');
  const revB = path.join(tmp, 'b');
  writeSnap(revA, snap, '1');
  writeSnap(revB, snap, '2');
  const startDaemon = async (dir: string, extra: Record<string, string>, cg: string): Promise<ChildProcess> => {
    const d = spawn(process.execPath, [CLI, '--root', dir, 'daemon'], { env: { ...env, SNAPPROC_ROOT: dir, SNAPPROC_CGROUP_PARENT: bc.make(cg), ...extra }, stdio: ['ignore', 'ignore', 'inherit'] });
    children.push(d);
    await waitFor('the snapproc daemon', () => request(dir, 'ping').then(() => true, () => false));
    await request(dir, 'install', { path: revA });
    return d;
  };
  const daemon = await startDaemon(root, {}, 'snapproc');
  const spawnRoot = path.join(tmp, 'root-spawn');
  const fullRoot = path.join(tmp, 'root-full');
  // Only the control-socket section compares the three.
  const started = [root];
  if (wanted(args, ['restart', 'refresh', 'supervisor'])) {
    await startDaemon(spawnRoot, { SNAPPROC_SETTLE_MS: '0' }, 'snapproc-spawn');
    await startDaemon(fullRoot, { SNAPPROC_SETTLE_EARLY: '0' }, 'snapproc-full');
    started.push(spawnRoot, fullRoot);
  }

  // s6: a scandir with the same service.
  const s6 = have('s6-svscan') && have('s6-svc');
  const s6dir = path.join(tmp, 's6');
  let svscan: ChildProcess | null = null;
  if (s6) {
    fs.mkdirSync(path.join(s6dir, 'svc'), { recursive: true });
    fs.writeFileSync(path.join(s6dir, 'svc', 'run'), '#!/bin/sh\nexec sleep 100000\n', { mode: 0o755 });
    const cg = bc.make('s6');
    svscan = spawn('/bin/sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec s6-svscan ${s6dir}`], { stdio: 'ignore' });
    children.push(svscan);
    await waitFor('s6-supervise', () => spawnSync('s6-svstat', [path.join(s6dir, 'svc')]).stdout?.toString().startsWith('up') ?? false);
  } else footer.push('s6 is missing (apt-get install s6): its rows are skipped');

  // supervisord: its own config, socket and program.
  const sv = have('supervisord') && have('supervisorctl');
  const svConf = path.join(tmp, 'supervisord.conf');
  let supervisord: ChildProcess | null = null;
  if (sv) {
    fs.writeFileSync(svConf, [
      '[unix_http_server]', `file=${tmp}/supervisor.sock`, '',
      '[supervisord]', `logfile=${tmp}/supervisord.log`, `pidfile=${tmp}/supervisord.pid`, 'nodaemon=true', '',
      '[rpcinterface:supervisor]', 'supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface', '',
      '[supervisorctl]', `serverurl=unix://${tmp}/supervisor.sock`, '',
      '[program:svc]', 'command=/bin/sleep 100000', 'startsecs=0', 'autorestart=false', 'stopsignal=TERM', '',
    ].join('\n'));
    const cg = bc.make('supervisord');
    supervisord = spawn('/bin/sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec supervisord -c ${svConf}`], { stdio: 'ignore' });
    children.push(supervisord);
    await waitFor('supervisord', () => /RUNNING/.test(spawnSync('supervisorctl', ['-c', svConf, 'status', 'svc']).stdout?.toString() ?? ''), 20_000);
  } else footer.push('supervisor is missing (apt-get install supervisor): its rows are skipped');

  // The CLI as a user runs it: bin/snapproc executed (its shell line starts
  // node); `viaNode` runs `node bin/snapproc` instead, which keeps
  // NODE_EXTRA_CA_CERTS if it is set (shown for information).
  const cli = (...a: string[]) => cliAs(false, ...a);
  const cliAs = (viaNode: boolean, ...a: string[]) => () => {
    const argv = ['--root', root, ...a];
    const r = viaNode ? spawnSync(process.execPath, [CLI, ...argv], { env, stdio: 'ignore' }) : spawnSync(CLI, argv, { env, stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`snapproc ${a.join(' ')} exited ${r.status}`);
  };
  const ctl = (...a: string[]) => () => {
    spawnSync('supervisorctl', ['-c', svConf, ...a], { stdio: 'ignore' });
  };
  const s6svc = (...a: string[]) => () => {
    const r = spawnSync('s6-svc', [...a, path.join(s6dir, 'svc')], { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`s6-svc ${a.join(' ')} exited ${r.status}`);
  };

  // ---- supervisor level: restart, and refresh overhead
  if (wanted(args, ['restart', 'refresh', 'supervisor'])) {
    const next = new Map<string, string>();
    const refreshOf = (dir: string) => async () => {
      const from = next.get(dir) ?? revB;
      await request(dir, 'refresh', { snap, from });
      next.set(dir, from === revB ? revA : revB);
    };
    const contenders: Contender[] = [
      { name: 'restart', run: () => request(root, 'restart', { snap, app: 'svc' }) },
      { name: 'refresh', run: refreshOf(root) },
      { name: 'restart-spawn', run: () => request(spawnRoot, 'restart', { snap, app: 'svc' }) },
      { name: 'refresh-spawn', run: refreshOf(spawnRoot) },
      { name: 'restart-full', run: () => request(fullRoot, 'restart', { snap, app: 'svc' }) },
    ];
    // s6-supervise waits 1 s before it respawns a service that ran for less
    // than that: each s6 restart gets 1.1 s of (untimed) rest before it.
    if (s6) contenders.push({ name: 's6', run: s6svc('-r', '-wu'), before: () => sleep(1100) });
    const t = await alternate(contenders, REPS);
    showRaw('supervisor-level', t);
    const restart = median(t.get('restart')!);
    const refresh = median(t.get('refresh')!);
    const restartSpawn = median(t.get('restart-spawn')!);
    const refreshSpawn = median(t.get('refresh-spawn')!);
    const s6ms = s6 ? median(t.get('s6')!) : null;
    const like = 'like with like: s6-svc -wu returns once s6-supervise spawned ./run; this snapproc daemon runs with SNAPPROC_SETTLE_MS=0, up once the launcher runs in its cgroup';
    const settleNote = "snapproc's default: up once the main process executed the command and sleeps waiting for work (here sleep(1) in clock_nanosleep), at most SNAPPROC_SETTLE_MS=100 after its start; s6 waits for no such sign";
    rows.push({ measure: 'restart via control socket, up at spawn (SNAPPROC_SETTLE_MS=0) vs s6-svc -r -wu', n: REPS, snapproc: restartSpawn, baseline: s6ms, goal: 2, note: s6 ? like : 's6 missing' });
    rows.push({ measure: 'restart via control socket, default settle (early sign) vs s6-svc -r -wu', n: REPS, snapproc: restart, baseline: s6ms, goal: 2, note: s6 ? settleNote : 's6 missing' });
    rows.push({ measure: 'restart via control socket, whole 100 ms settle (SNAPPROC_SETTLE_EARLY=0) vs s6-svc -r -wu', n: REPS, snapproc: median(t.get('restart-full')!), baseline: s6ms });
    rows.push({ measure: 'refresh via control socket vs s6-svc -r -wu (issue 5: no slower than the plain restart)', n: REPS, snapproc: refresh, baseline: s6ms, goal: 1 });
    rows.push({ measure: "refresh's own overhead (refresh - restart), control socket, default settle, vs 30 ms budget", n: REPS, snapproc: refresh - restart, baseline: 30, goal: 1 });
    rows.push({ measure: "refresh's own overhead (refresh - restart), control socket, up at spawn, vs 30 ms budget", n: REPS, snapproc: refreshSpawn - restartSpawn, baseline: 30, goal: 1 });
    // Per-step breakdown from the journal of the refreshes just run.
    const changes = loadChanges(root).filter((c) => c.kind === 'refresh' && c.status === 'done').slice(-REPS);
    const steps = new Map<string, number[]>();
    for (const c of changes) for (const s of c.steps) if (s.ms !== undefined) steps.set(s.name, [...(steps.get(s.name) ?? []), s.ms]);
    footer.push(`refresh steps (median ms over ${changes.length}): ${[...steps].map(([n, xs]) => `${n} ${median(xs)}`).join(', ')}`);
  }

  // ---- CLI level: a refresh's own overhead through the command line
  if (wanted(args, ['cli', 'refresh'])) {
    let from = revB;
    const t = await alternate([
      { name: 'restart', run: cli('restart', `${snap}.svc`) },
      {
        name: 'refresh',
        run: () => {
          cli('refresh', snap, '--from', from)();
          from = from === revB ? revA : revB;
        },
      },
    ], REPS);
    showRaw('cli-refresh', t);
    rows.push({ measure: "refresh's own overhead through the CLI (snapproc refresh - snapproc restart) vs 30 ms budget", n: REPS, snapproc: median(t.get('refresh')!) - median(t.get('restart')!), baseline: 30, goal: 1 });
  }

  // ---- CLI level: start / stop / restart through the command line
  if (wanted(args, ['cli', 'start', 'stop'])) {
    for (const verb of ['stop', 'start', 'restart'] as const) {
      const contenders: Contender[] = [{ name: 'snapproc', run: cli(verb, `${snap}.svc`) }];
      const caSet = process.env.NODE_EXTRA_CA_CERTS !== undefined;
      if (caSet) contenders.push({ name: 'snapproc via node', run: cliAs(true, verb, `${snap}.svc`) });
      if (sv) contenders.push({ name: 'supervisorctl', run: ctl(verb, 'svc') });
      if (s6) contenders.push({ name: 's6', run: verb === 'stop' ? s6svc('-d', '-wD') : verb === 'start' ? s6svc('-u', '-wu') : s6svc('-r', '-wu') });
      // stop and start must alternate with their opposite: pair each stop with a start outside the timing.
      const undo: Record<string, () => void> | null = verb === 'stop' ? { snapproc: cli('start', `${snap}.svc`), 'snapproc via node': cli('start', `${snap}.svc`), supervisorctl: ctl('start', 'svc'), s6: s6svc('-u', '-wu') }
        : verb === 'start' ? { snapproc: cli('stop', `${snap}.svc`), 'snapproc via node': cli('stop', `${snap}.svc`), supervisorctl: ctl('stop', 'svc'), s6: s6svc('-d', '-wD') } : null;
      const wrapped: Contender[] = contenders.map((c) => ({ ...c, run: c.run }));
      const times = new Map<string, number[]>(wrapped.map((c) => [c.name, []]));
      for (let r = 0; r < Math.min(REPS, 10); r++) {
        for (const c of wrapped) {
          if (verb === 'start') undo![c.name]();
          if (c.name === 's6') await sleep(1100); // s6-supervise's respawn delay, untimed
          const t0 = performance.now();
          c.run();
          times.get(c.name)!.push(performance.now() - t0);
          if (verb === 'stop') undo![c.name]();
        }
      }
      showRaw(`cli-${verb}`, times);
      const mine = median(times.get('snapproc')!);
      if (sv) rows.push({ measure: `snapproc ${verb} (CLI) vs supervisorctl ${verb}`, n: Math.min(REPS, 10), snapproc: mine, baseline: median(times.get('supervisorctl')!), goal: 0.5 });
      if (sv && caSet) rows.push({ measure: `  info: \`node bin/snapproc ${verb}\` (NODE_EXTRA_CA_CERTS kept) vs supervisorctl ${verb}`, n: Math.min(REPS, 10), snapproc: median(times.get('snapproc via node')!), baseline: median(times.get('supervisorctl')!) });
      if (s6) rows.push({ measure: `snapproc ${verb} (CLI) vs s6-svc (info: no Node start-up in s6)`, n: Math.min(REPS, 10), snapproc: mine, baseline: median(times.get('s6')!) });
    }
  }

  // ---- idle: memory and wake-ups
  if (wanted(args, ['idle', 'rss', 'wakeups'])) {
    await sleep(1000);
    const pids: Array<[string, number[]]> = [['snapproc daemon', [daemon.pid!]]];
    if (svscan) {
      const sup = spawnSync('sh', ['-c', `cat ${bc.parent}/s6/cgroup.procs`]).stdout.toString().trim().split('\n').map(Number).filter((p) => p && p !== svscan!.pid && /s6-/.test(fs.readFileSync(`/proc/${p}/comm`, 'utf8')));
      pids.push(['s6-svscan + s6-supervise', [svscan.pid!, ...sup]]);
    }
    if (supervisord) pids.push(['supervisord', [supervisord.pid!]]);
    const before = pids.map(([, ps]) => ps.reduce((n, p) => n + switches(p), 0));
    const seconds = 5;
    await sleep(seconds * 1000);
    const after = pids.map(([, ps]) => ps.reduce((n, p) => n + switches(p), 0));
    const lines = pids.map(([name, ps], i) => `${name}: RSS ${(ps.reduce((n, p) => n + rssKiB(p), 0) / 1024).toFixed(1)} MiB, ${((after[i] - before[i]) / seconds).toFixed(1)} wake-ups/s`);
    footer.push(`idle over ${seconds} s (no request): ${lines.join('; ')}`);
    const wake = (after[0] - before[0]) / seconds;
    rows.push({ measure: 'supervisor idle wake-ups/s (goal: none, no polling)', n: seconds, snapproc: wake, baseline: 1, goal: 0.2, unit: '/s', note: 'wake-ups (context switches) per second over 5 s' });
  }

  for (const dir of started) {
    await request(dir, 'remove', { snap, purge: true }).catch(() => undefined);
    await request(dir, 'shutdown', {}).catch(() => undefined);
  }
  footer.push(`the CLI runs as a user runs it: bin/snapproc executed, its shell line starting node${process.env.NODE_EXTRA_CA_CERTS !== undefined ? ' without NODE_EXTRA_CA_CERTS (set here: Node parses that file at every start-up)' : ''}`);
  if (sv) footer.push('supervisord runs its program with startsecs=0 (counted as running at spawn, as s6-svc -wu); its default startsecs=1 would make supervisorctl start/restart wait 1 s');
  printTable('supervisor and CLI benchmarks (ratio = snapproc / baseline; goal is on the ratio)', rows, footer);
  reportRows(FILE, rows);
}

runBench('supervisor', main);
