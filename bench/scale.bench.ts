// scale.bench.ts: many services under one supervisor (issue 12, goal 6),
// side by side with supervisord and s6 supervising the same number of
// equivalent programs (a shell exec'ing `sleep`) in the same run:
//  - start all, stop all (snapproc start/stop --all; supervisorctl start/stop
//    all; s6-svc -u/-d on every service directory, then s6-svwait for all);
//  - status of everything (snapproc list and ps; supervisorctl status);
//  - one snap's refresh and one snap's restart with all the others
//    installed, against the same on a second snapproc supervisor that has
//    that one snap only: their cost must not grow with the other snaps;
//  - each supervisor's RSS and idle wake-ups with everything running.
// Default 1000 services as 100 snaps x 10 (--services=N, a multiple of 10).
// Everything runs in cgroups of this benchmark and is gone when it ends.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { BenchCgroups, REPO, sleep, uniqueInstance, runBench } from './harness';
import { median, printTable, reportRows, Row, showRaw, timeOnce } from './table';
import { request } from '../src/supervisor/client';

const FILE = 'scale';
const argv = process.argv.slice(2);
const num = (name: string, dflt: number) => {
  const m = argv.map((a) => new RegExp(`^--${name}=(\\d+)$`).exec(a)).find(Boolean);
  return m ? Number(m[1]) : dflt;
};
const PER_SNAP = 10;
const SERVICES = Math.max(PER_SNAP, Math.round(num('services', 1000) / PER_SNAP) * PER_SNAP);
const SNAPS = SERVICES / PER_SNAP;
// The last round's start leaves everything running, so stop all has REPS - 1 samples: 3 rounds give it two
// (with 2, the stop row was one sample per contender, and supervisord's stop all ranged 0.85-2.3 s between runs).
const REPS = Math.max(2, num('reps', 3));
// One snap's refresh and restart take ~0.2-0.4 s each: 15 samples per side, or 5 medians drift by a third under load.
const ONE_SNAP_REPS = Math.max(REPS, 15);
const CLI = path.join(REPO, 'bin', 'snapproc');
const bc = new BenchCgroups();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'snapproc-bench-scale-'));
const children: ChildProcess[] = [];
process.on('exit', () => {
  for (const c of children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  fs.rmSync(tmp, { recursive: true, force: true });
});
const T0 = Date.now();
const progress = (t: string) => process.stderr.write(`  [scale ${((Date.now() - T0) / 1000).toFixed(0).padStart(4)} s] ${t}\n`);

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

async function waitFor(what: string, fn: () => boolean | Promise<boolean>, timeoutMs = 60_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await fn())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(20);
  }
}

function switches(pid: number): number {
  let n = 0;
  for (const v of threadSwitches(pid).values()) n += v;
  return n;
}

/** Context switches of each thread of `pid`, by "comm (tid)": which of them woke while idle. */
function threadSwitches(pid: number): Map<string, number> {
  const out = new Map<string, number>();
  try {
    for (const t of fs.readdirSync(`/proc/${pid}/task`)) {
      try {
        const s = fs.readFileSync(`/proc/${pid}/task/${t}/status`, 'utf8');
        const comm = /^Name:\s+(.*)$/m.exec(s)?.[1] ?? '?';
        out.set(`${comm} (${t})`, Number(/voluntary_ctxt_switches:\s+(\d+)/.exec(s)![1]) + Number(/nonvoluntary_ctxt_switches:\s+(\d+)/.exec(s)![1]));
      } catch {
        // that thread is gone
      }
    }
  } catch {
    // gone
  }
  return out;
}

function rssKiB(pid: number): number {
  try {
    return Number(/VmRSS:\s+(\d+)/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))![1]);
  } catch {
    return 0;
  }
}

/** Resident memory split as the kernel counts it (smaps_rollup, KiB): anonymous (the process's own) and file-backed (its binary and libraries, shared in the page cache), and PSS. */
function memSplit(pid: number): { anon: number; file: number; pss: number } {
  try {
    const t = fs.readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8');
    const f = (k: string) => Number(new RegExp(`^${k}:\\s+(\\d+)`, 'm').exec(t)?.[1] ?? 0);
    return { anon: f('Anonymous'), file: f('Rss') - f('Anonymous'), pss: f('Pss') };
  } catch {
    return { anon: 0, file: 0, pss: 0 };
  }
}

function writeSnap(dir: string, name: string, version: string): void {
  fs.mkdirSync(path.join(dir, 'meta'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  const apps = Array.from({ length: PER_SNAP }, (_, i) => `  s${i}:\n    command: bin/svc\n    daemon: simple\n    stop-timeout: 5s\n    install-mode: disable\n`).join('');
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), `name: ${name}\nversion: '${version}'\napps:\n${apps}`);
  fs.writeFileSync(path.join(dir, 'bin', 'svc'), '#!/bin/sh\nexec sleep 100000\n', { mode: 0o755 });
}

/** A snapproc daemon under its own root and cgroup parent. */
async function daemon(label: string): Promise<{ root: string; env: NodeJS.ProcessEnv; proc: ChildProcess }> {
  const root = path.join(tmp, `root-${label}`);
  const env = { ...process.env, SNAPPROC_ROOT: root, SNAPPROC_CGROUP_PARENT: bc.make(`snapproc-${label}`), SNAPPROC_NO_AUTOSTART: '1' };
  const proc = spawn(process.execPath, [CLI, '--root', root, 'daemon'], { env, stdio: ['ignore', 'ignore', 'inherit'] });
  children.push(proc);
  await waitFor(`snapproc daemon ${label}`, () => request(root, 'ping').then(() => true, () => false));
  return { root, env, proc };
}

function runCli(root: string, env: NodeJS.ProcessEnv, ...a: string[]): void {
  const r = spawnSync(process.execPath, [CLI, '--root', root, ...a], { env, stdio: ['ignore', 'ignore', 'pipe'], encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`snapproc ${a.join(' ')} exited ${r.status}: ${r.stderr.trim().split('\n')[0]}`);
}

async function main(): Promise<void> {
  const rows: Row[] = [];
  const footer: string[] = [];
  const s6 = have('s6-svscan') && have('s6-svc') && have('s6-svwait');
  const sv = have('supervisord') && have('supervisorctl');
  if (!s6) footer.push('s6 is missing (apt-get install s6): its figures are skipped');
  if (!sv) footer.push('supervisor is missing (apt-get install supervisor): its figures are skipped');

  // ---- snapproc: the big one (SNAPS snaps) and a small one (the same first snap alone)
  const big = await daemon('big');
  const small = await daemon('small');
  const names = Array.from({ length: SNAPS }, () => uniqueInstance('sc'));
  const src = (name: string, v: string) => {
    const d = path.join(tmp, 'src', `${name}-${v}`);
    if (!fs.existsSync(d)) writeSnap(d, name, v);
    return d;
  };
  progress(`installing ${SNAPS} snaps x ${PER_SNAP} services into snapproc`);
  for (const n of names) await request(big.root, 'install', { path: src(n, '1') });
  await request(small.root, 'install', { path: src(names[0], '1') });
  await request(small.root, 'start', { snap: names[0] });

  // ---- s6: one scandir, SERVICES service directories, down at first
  const s6dir = path.join(tmp, 's6');
  const s6svcs: string[] = [];
  let svscan: ChildProcess | null = null;
  if (s6) {
    for (let i = 0; i < SERVICES; i++) {
      const d = path.join(s6dir, `p${i}`);
      fs.mkdirSync(d, { recursive: true });
      fs.writeFileSync(path.join(d, 'run'), '#!/bin/sh\nexec sleep 100000\n', { mode: 0o755 });
      fs.writeFileSync(path.join(d, 'down'), '');
      s6svcs.push(d);
    }
    const cg = bc.make('s6');
    svscan = spawn('/bin/sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec s6-svscan -c ${SERVICES + 100} ${s6dir}`], { stdio: 'ignore' });
    children.push(svscan);
    progress(`s6-svscan with ${SERVICES} services`);
    await waitFor('s6-supervise for every service', () => s6svcs.every((d) => fs.existsSync(path.join(d, 'supervise', 'status'))), 120_000);
  }
  fs.writeFileSync(path.join(tmp, 's6-list'), s6svcs.join('\n') + '\n');
  const s6all = (flag: '-u' | '-d', wait: '-u' | '-D') => () => {
    const r = spawnSync('/bin/sh', ['-c', `while read d; do s6-svc ${flag} "$d" || exit 1; done < "$0"; xargs s6-svwait -a ${wait} -t 120000 < "$0"`, path.join(tmp, 's6-list')], { stdio: 'ignore' });
    if (r.status !== 0) throw new Error(`s6 ${flag} of all failed (${r.status})`);
  };

  // ---- supervisord: SERVICES programs, not started at first
  const svConf = path.join(tmp, 'supervisord.conf');
  let supervisord: ChildProcess | null = null;
  if (sv) {
    const programs = Array.from({ length: SERVICES }, (_, i) => `[program:p${i}]\ncommand=/bin/sh -c "exec sleep 100000"\nautostart=false\nstartsecs=0\nautorestart=false\nstopsignal=TERM\n`).join('\n');
    fs.writeFileSync(svConf, [
      '[unix_http_server]', `file=${tmp}/supervisor.sock`, '',
      '[supervisord]', `logfile=${tmp}/supervisord.log`, `pidfile=${tmp}/supervisord.pid`, 'nodaemon=true', `childlogdir=${tmp}`, 'minfds=4096', '',
      '[rpcinterface:supervisor]', 'supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface', '',
      '[supervisorctl]', `serverurl=unix://${tmp}/supervisor.sock`, '',
      programs,
    ].join('\n'));
    const cg = bc.make('supervisord');
    supervisord = spawn('/bin/sh', ['-c', `echo $$ > ${cg}/cgroup.procs && exec supervisord -c ${svConf}`], { stdio: 'ignore' });
    children.push(supervisord);
    progress(`supervisord with ${SERVICES} programs`);
    await waitFor('supervisord', () => spawnSync('supervisorctl', ['-c', svConf, 'status', 'p0']).stdout?.toString().includes('p0') ?? false, 120_000);
  }
  const ctl = (...a: string[]) => () => {
    spawnSync('supervisorctl', ['-c', svConf, ...a], { stdio: 'ignore', maxBuffer: 64 << 20 });
  };

  // ---- start all / stop all, alternated: snapproc, supervisord, s6; each start followed by its stop
  const t = new Map<string, number[]>();
  const add = (k: string, v: number) => t.set(k, [...(t.get(k) ?? []), v]);
  const contenders: Array<{ name: string; start: () => void; stop: () => void }> = [
    { name: 'snapproc', start: () => runCli(big.root, big.env, 'start', '--all'), stop: () => runCli(big.root, big.env, 'stop', '--all') },
  ];
  if (sv) contenders.push({ name: 'supervisord', start: ctl('start', 'all'), stop: ctl('stop', 'all') });
  if (s6) contenders.push({ name: 's6', start: s6all('-u', '-u'), stop: s6all('-d', '-D') });
  for (let r = 0; r < REPS; r++) {
    for (const c of r % 2 ? [...contenders].reverse() : contenders) {
      progress(`round ${r + 1}/${REPS}: ${c.name} start all`);
      add(`${c.name} start`, await timeOnce(c.start));
      if (r === REPS - 1) break; // the last round leaves them running, for the figures below
      add(`${c.name} stop`, await timeOnce(c.stop));
    }
  }
  // Running: everything of the last round. Those whose turn in the last round came before the break are up;
  // make sure all three are up for the status, refresh and idle figures.
  for (const c of contenders) {
    if ((t.get(`${c.name} start`)?.length ?? 0) < REPS) c.start();
  }
  // Verify: every service runs.
  const running = (await request(big.root, 'status', {}) as Array<{ state: string; mainPid: number | null }>).filter((s) => s.mainPid !== null).length;
  if (running !== SERVICES) throw new Error(`snapproc runs ${running} of ${SERVICES} services after start --all`);

  // ---- status of everything, alternated
  progress('status of everything');
  const statusC: Array<[string, () => void]> = [
    ['snapproc list', () => runCli(big.root, big.env, 'list')],
    ['snapproc ps', () => runCli(big.root, big.env, 'ps')],
  ];
  if (sv) statusC.push(['supervisorctl status', ctl('status')]);
  for (let r = 0; r < Math.max(REPS, 5); r++) for (const [n, f] of statusC) add(n, await timeOnce(f));

  // ---- one snap's refresh and restart, with everything installed (big) vs alone (small), alternated
  progress(`refresh and restart of one snap: among ${SNAPS} snaps vs alone`);
  const next = new Map<string, string>([[big.root, '2'], [small.root, '2']]);
  for (let r = 0; r < ONE_SNAP_REPS + 1; r++) {
    for (const [label, d] of r % 2 ? [['alone', small], ['among', big]] as const : [['among', big], ['alone', small]] as const) {
      const v = next.get(d.root)!;
      next.set(d.root, v === '2' ? '1' : '2');
      const ms = await timeOnce(() => request(d.root, 'refresh', { snap: names[0], from: src(names[0], v) }));
      const rs = await timeOnce(() => request(d.root, 'restart', { snap: names[0] }));
      if (r > 0) { // the first round is a warm-up
        add(`refresh ${label}`, ms);
        add(`restart ${label}`, rs);
      }
    }
  }

  // ---- idle: RSS and wake-ups with everything running
  progress('idle RSS and wake-ups');
  await sleep(1000);
  const groups: Array<[string, number[]]> = [['snapproc', [big.proc.pid!]]];
  if (svscan) {
    const procs = fs.readFileSync(path.join(bc.parent, 's6', 'cgroup.procs'), 'utf8').trim().split('\n').map(Number);
    groups.push(['s6', procs.filter((p) => { try { return /^s6-/.test(fs.readFileSync(`/proc/${p}/comm`, 'utf8')); } catch { return false; } })]);
  }
  if (supervisord) groups.push(['supervisord', [supervisord.pid!]]);
  const before = groups.map(([, ps]) => ps.reduce((n, p) => n + switches(p), 0));
  const threadsBefore = threadSwitches(big.proc.pid!);
  const seconds = 5;
  await sleep(seconds * 1000);
  const after = groups.map(([, ps]) => ps.reduce((n, p) => n + switches(p), 0));
  const threadsAfter = threadSwitches(big.proc.pid!);
  const woke = [...threadsAfter].filter(([k, v]) => v !== (threadsBefore.get(k) ?? 0)).map(([k, v]) => `${k} x${v - (threadsBefore.get(k) ?? 0)}`);
  const idle = new Map(groups.map(([n, ps], i) => {
    const split = ps.map(memSplit).reduce((a, b) => ({ anon: a.anon + b.anon, file: a.file + b.file, pss: a.pss + b.pss }), { anon: 0, file: 0, pss: 0 });
    return [n, { rss: ps.reduce((a, p) => a + rssKiB(p), 0) / 1024, wake: (after[i] - before[i]) / seconds, procs: ps.length, split }];
  }));
  showRaw('scale', t);

  // ---- the table
  const m = (k: string) => (t.get(k)?.length ? median(t.get(k)!) : null);
  const N = `${SNAPS}x${PER_SNAP}`;
  rows.push({ measure: `start all ${SERVICES} services vs supervisorctl start all`, n: N, snapproc: m('snapproc start'), baseline: m('supervisord start'), goal: 1, note: 'snapproc start --all (one CLI call; snaps side by side, each snap\'s services in order, each counted started once its launcher is in its cgroup) / supervisorctl start all / s6-svc -u on every service directory, then s6-svwait -a -u on all. Alternated, each start followed by its stop.' });
  rows.push({ measure: `start all ${SERVICES} services vs s6 (s6-svc -u each, s6-svwait)`, n: N, snapproc: m('snapproc start'), baseline: m('s6 start'), goal: 2 });
  rows.push({ measure: `stop all ${SERVICES} services vs supervisorctl stop all`, n: N, snapproc: m('snapproc stop'), baseline: m('supervisord stop'), goal: 1, note: 'snapproc stop --all (by stop-mode sigterm-all: freeze, signal, thaw, until each cgroup is empty) / supervisorctl stop all / s6-svc -d each, then s6-svwait -a -D.' });
  rows.push({ measure: `stop all ${SERVICES} services vs s6 (info)`, n: N, snapproc: m('snapproc stop'), baseline: m('s6 stop') });
  rows.push({ measure: 'snapproc list (CLI) vs supervisorctl status', n: N, snapproc: m('snapproc list'), baseline: m('supervisorctl status'), goal: 1, note: 'Everything running. snapproc list: installed snaps and revisions (reads the store); snapproc ps: every snap cgroup with its processes, roles and revisions; supervisorctl status: every program.' });
  rows.push({ measure: 'snapproc ps (CLI, all snaps) vs supervisorctl status', n: N, snapproc: m('snapproc ps'), baseline: m('supervisorctl status'), goal: 1 });
  rows.push({ measure: `refresh of one snap among ${SNAPS} vs the same snap alone`, n: ONE_SNAP_REPS, snapproc: m('refresh among'), baseline: m('refresh alone'), goal: 1.2, note: `On the control socket: the refresh (and the restart) of one ${PER_SNAP}-service snap on the supervisor running all ${SERVICES} services, against the same on a second supervisor that has only that snap (${PER_SNAP} services), alternated. Goal: no growth with the other snaps (within 1.2x, for noise).` });
  rows.push({ measure: `restart of one snap among ${SNAPS} vs the same snap alone`, n: ONE_SNAP_REPS, snapproc: m('restart among'), baseline: m('restart alone'), goal: 1.2 });
  const rss = (n: string) => idle.get(n)?.rss ?? null;
  rows.push({ measure: `supervisor RSS with ${SERVICES} running vs supervisord (MiB)`, n: N, snapproc: rss('snapproc'), baseline: rss('supervisord'), goal: 1, unit: 'MiB', note: 'VmRSS of the supervisor process (snapproc daemon; supervisord; s6: s6-svscan plus every s6-supervise, summed), idle, everything running.' });
  const part = (n: string, k: 'anon' | 'pss') => { const v = idle.get(n)?.split[k]; return v === undefined ? null : v / 1024; };
  rows.push({ measure: '  part: anonymous memory (its own) vs supervisord\'s (MiB, info)', n: N, snapproc: part('snapproc', 'anon'), baseline: part('supervisord', 'anon'), unit: 'MiB' });
  rows.push({ measure: '  part: PSS (shared pages divided among their users) vs supervisord\'s (MiB, info)', n: N, snapproc: part('snapproc', 'pss'), baseline: part('supervisord', 'pss'), unit: 'MiB' });
  rows.push({ measure: `supervisor RSS vs s6-svscan + ${SERVICES} s6-supervise (MiB, info)`, n: N, snapproc: rss('snapproc'), baseline: rss('s6'), unit: 'MiB' });
  const wake = idle.get('snapproc')!.wake;
  rows.push({ measure: 'idle wake-ups/s with everything running (goal: none)', n: seconds, snapproc: wake, baseline: 1, goal: 0.2, unit: '/s', note: 'Wake-ups (context switches) per second over 5 s with no request.' });
  footer.push(`snapproc's threads that woke while idle: ${woke.length ? woke.join(', ') : 'none'}`);
  footer.push(`idle over ${seconds} s: ${[...idle].map(([n, v]) => `${n}: RSS ${v.rss.toFixed(1)} MiB in ${v.procs} process${v.procs === 1 ? '' : 'es'} (anonymous ${(v.split.anon / 1024).toFixed(1)}, file-backed ${(v.split.file / 1024).toFixed(1)}, PSS ${(v.split.pss / 1024).toFixed(1)} MiB), ${v.wake.toFixed(1)} wake-ups/s`).join('; ')}`);
  footer.push('', `Medians of ${REPS} rounds (stop all: ${REPS - 1}; status: ${Math.max(REPS, 5)}, refresh and restart: ${ONE_SNAP_REPS}); contenders alternated. Node ${process.version}, kernel ${fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}, ${os.availableParallelism()} CPUs; ${((Date.now() - T0) / 1000).toFixed(0)} s.`);

  // ---- clean up: stop everything (the cgroups are removed by the harness in any case)
  progress('cleaning up');
  for (const c of contenders) try { c.stop(); } catch { /* removed with the cgroups anyway */ }
  for (const d of [big, small]) await request(d.root, 'shutdown', {}).catch(() => undefined);
  printTable(`${SERVICES} services: snapproc, supervisord and s6 side by side (ratio = snapproc / baseline; goal is on the ratio)`, rows, footer);
  reportRows(FILE, rows);
}

runBench('scale', main);
