// The supervisor (`snapproc daemon`, SPEC 8, and the CLI of SPEC 9 that talks
// to it) on real services from fixture snaps built here: environment and
// cgroup placement, the four daemon types, restart-condition and the start
// limit, before/after ordering, logs, re-adoption by a new supervisor after
// the old one was SIGKILLed, the root-only control socket, orphan reaping,
// and bad input (missing commands, stale socket, a second supervisor).
//
// Tests that need a supervisor process of its own (SIGKILL, shutdown, a
// client as another user) run `snapproc daemon` as a child; the others embed
// `new Supervisor(...)` in this process. Daemon tests come first: once a
// Supervisor has been embedded, this process is a child subreaper.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { Supervisor } from '../src/supervisor/supervisor';
import { RevisionStore } from '../src/snap/revision-store';
import type { ServiceRecord } from '../src/supervisor/records';
import { request } from '../src/supervisor/client';
import { answers, socketPath } from '../src/supervisor/control';
import { serviceCgroupName } from '../src/process/cgroup-names';
import { cgroup2Mount, readEvent } from '../src/kernel/cgroupfs';
import { alive, CLI, cleanupParent, gate, makeCgroup, REPO, tmpdir, uniqueSnapName, waitFor } from './helpers';
import { recordOf, withSupervisor, type EmbeddedCtx } from './embedded';

const test = suite('supervisor');
const rootTest = gate(test);

const NOTIFY_FIXTURE = path.join(REPO, 'test', 'fixtures', 'sup-notify.py');

// ---------------------------------------------------------------- helpers

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitForAsync<T>(what: string, fn: () => Promise<T | undefined | null | false> | T | undefined | null | false, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const v = await fn();
    if (v) return v;
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await sleep(25);
  }
}

type Bin = string | { text: string | Buffer; mode: number };

/** A snap directory: meta/snap.yaml (name, version, `extra`, apps) and bin/ files (0755 unless given). */
function buildSnap(name: string, appsYaml: string, bins: Record<string, Bin>, extra = ''): string {
  const dir = tmpdir('sup-snap-');
  fs.mkdirSync(path.join(dir, 'meta'));
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), `name: ${name}\nversion: '1.0'\n${extra}apps:\n${appsYaml}`);
  for (const [file, bin] of Object.entries(bins)) {
    const { text, mode } = typeof bin === 'string' ? { text: bin, mode: 0o755 } : bin;
    fs.writeFileSync(path.join(dir, 'bin', file), text);
    fs.chmodSync(path.join(dir, 'bin', file), mode);
  }
  return dir;
}

/** apps: YAML from { app: { field: value } }; services get a short stop-timeout so cleanup is quick. */
function apps(spec: Record<string, Record<string, string | string[]>>): string {
  let out = '';
  for (const [app, fields] of Object.entries(spec)) {
    out += `  ${app}:\n`;
    const all = fields.daemon && !fields['stop-timeout'] ? { ...fields, 'stop-timeout': '2s' } : fields;
    for (const [k, v] of Object.entries(all)) out += `    ${k}: ${Array.isArray(v) ? `[${v.join(', ')}]` : v}\n`;
  }
  return out;
}

const notifyBin = (): Bin => ({ text: fs.readFileSync(NOTIFY_FIXTURE), mode: 0o755 });

function linesOf(file: string): string[] {
  try {
    return fs.readFileSync(file, 'utf8').split('\n').filter(Boolean);
  } catch {
    return [];
  }
}

/** Events of sup-notify.py logs: [event, name, pid]. */
function events(file: string): Array<[string, string, number]> {
  return linesOf(file).map((l) => {
    const [e, n, p] = l.split(' ');
    return [e, n, Number(p)];
  });
}

function procsOf(cg: string): number[] {
  try {
    return fs.readFileSync(path.join(cg, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number).sort((a, b) => a - b);
  } catch {
    return [];
  }
}

function statOf(pid: number): { state: string; ppid: number } | null {
  try {
    const s = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    const f = s.slice(s.lastIndexOf(')') + 2).split(' ');
    return { state: f[0], ppid: Number(f[1]) };
  } catch {
    return null;
  }
}

function zombieChildrenOf(ppid: number): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    const st = statOf(Number(e));
    if (st && st.state === 'Z' && st.ppid === ppid) out.push(Number(e));
  }
  return out;
}

function cgroupLineOf(text: string): string {
  return text.split('\n').find((l) => l.startsWith('0::'))?.slice(3) ?? '';
}

interface Run { code: number | null; signal: string | null; stdout: string; stderr: string }

/** Runs a command without blocking the event loop (an embedded supervisor must keep answering meanwhile). */
function run(cmd: string, args: string[], env: NodeJS.ProcessEnv = process.env, timeoutMs = 20_000): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code, signal) => {
      clearTimeout(timer);
      resolve({ code, signal, stdout, stderr });
    });
  });
}

function cliEnv(root: string, cg: string, extra: NodeJS.ProcessEnv = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, SNAPPROC_ROOT: root, SNAPPROC_CGROUP_PARENT: cg, NO_COLOR: '1' };
  delete env.SNAPPROC_NO_AUTOSTART;
  return { ...env, ...extra };
}

function cli(root: string, cg: string, args: string[], extra: NodeJS.ProcessEnv = {}): Promise<Run> {
  return run(process.execPath, [CLI, ...args], cliEnv(root, cg, extra));
}

// ---- supervisors as child processes

interface Daemon {
  child: ChildProcess;
  output: () => string;
  exited: Promise<{ code: number | null; signal: string | null }>;
}
const daemons: Daemon[] = [];

async function startDaemon(root: string, cg: string): Promise<Daemon> {
  const child = spawn(process.execPath, [CLI, 'daemon'], { env: cliEnv(root, cg), stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  child.stderr!.on('data', (d) => (out += d));
  const exited = new Promise<{ code: number | null; signal: string | null }>((r) => child.once('exit', (code, signal) => r({ code, signal })));
  const d: Daemon = { child, output: () => out, exited };
  daemons.push(d);
  await waitForAsync('the daemon to answer', async () => {
    if (child.exitCode !== null || child.signalCode !== null) throw new Error(`snapproc daemon exited: ${out}`);
    return answers(socketPath(root), 300);
  });
  return d;
}

async function killDaemon(d: Daemon): Promise<void> {
  if (d.child.exitCode === null && d.child.signalCode === null) d.child.kill('SIGKILL');
  await d.exited;
}

/** PIDs of `snapproc ... daemon` processes for this root (a background supervisor a CLI child started). */
function daemonsFor(root: string): number[] {
  const out: number[] = [];
  for (const e of fs.readdirSync('/proc')) {
    if (!/^\d+$/.test(e)) continue;
    try {
      const argv = fs.readFileSync(`/proc/${e}/cmdline`, 'utf8').split('\0');
      if (argv.includes('daemon') && argv.some((a) => a === root)) out.push(Number(e));
    } catch {
      // gone
    }
  }
  return out;
}

async function statusOf(root: string, snap: string): Promise<Record<string, ServiceRecord>> {
  const list = (await request(root, 'status', { snap })) as ServiceRecord[];
  return Object.fromEntries(list.map((r) => [r.app, r]));
}

// ---- embedded supervisors

const embedded = (fn: (c: EmbeddedCtx) => Promise<void>, opts: { logMaxBytes?: number } = {}) => withSupervisor({ prefix: 'sup', ...opts }, fn);
const rec = recordOf;

const svcCg = (cg: string, snap: string, app: string) => path.join(cg, serviceCgroupName(snap, app));

test.after(async () => {
  for (const d of daemons) await killDaemon(d);
  cleanupParent();
});

// ---------------------------------------------------------------- fixtures

/** simple: records each start in $SNAP_DATA/APP.starts, then is the process itself. */
const STAY = `#!/bin/sh
echo $$ >> "$SNAP_DATA/$1.starts"
echo "$1 started as $$"
exec sleep 1000
`;

/** forking: the start command leaves a daemon behind (its PID in $SNAP_DATA/daemon.pid), takes 0.3 s, exits 0. */
const FORKER = `#!/bin/sh
echo "forker parent $$"
echo $$ >> "$SNAP_DATA/forker.starts"
sleep 1000 </dev/null >/dev/null 2>&1 &
echo $! > "$SNAP_DATA/daemon.pid"
sleep 0.3
exit 0
`;

// ---------------------------------------------------------------- daemon processes

rootTest('re-adoption: a new supervisor takes over what a SIGKILLed one ran, same PIDs, nothing restarted', async () => {
  const root = tmpdir('snapproc-sup-');
  const cg = makeCgroup('sup-adopt');
  const name = uniqueSnapName('ad');
  const dir = buildSnap(
    name,
    apps({
      plain: { command: 'bin/stay plain', daemon: 'simple' },
      forker: { command: 'bin/forker', daemon: 'forking' },
      notifier: { command: 'bin/sup-notify --name notifier --log $SNAP_COMMON/notify.log', daemon: 'notify' },
    }),
    { stay: STAY, forker: FORKER, 'sup-notify': notifyBin() },
  );
  const d1 = await startDaemon(root, cg);
  const inst = await cli(root, cg, ['install', dir]);
  assert.is(inst.code, 0, inst.stderr);
  assert.match(inst.stdout, new RegExp(`${name} x1 installed; started `));
  const before = await statusOf(root, name);
  const procsBefore: Record<string, number[]> = {};
  for (const app of ['plain', 'forker', 'notifier']) {
    assert.is(before[app].state, 'active', `${app}: ${JSON.stringify(before[app])}`);
    assert.type(before[app].mainPid, 'number');
    procsBefore[app] = procsOf(svcCg(cg, name, app));
    assert.ok(procsBefore[app].includes(before[app].mainPid!), `${app}: main ${before[app].mainPid} in its cgroup ${procsBefore[app]}`);
  }
  assert.is(before.forker.mainPid, Number(fs.readFileSync(path.join(root, 'var', 'snap', name, 'x1', 'daemon.pid'), 'utf8')));

  await killDaemon(d1);
  for (const app of ['plain', 'forker', 'notifier']) assert.ok(alive(before[app].mainPid!), `${app} outlives the supervisor`);
  assert.ok(fs.existsSync(socketPath(root)), 'the killed supervisor left its socket file behind');

  const d2 = await startDaemon(root, cg); // recovers the stale socket and the lock
  const after = await statusOf(root, name);
  for (const app of ['plain', 'forker', 'notifier']) {
    assert.is(after[app].state, 'active', app);
    assert.is(after[app].mainPid, before[app].mainPid, `${app}: same main PID`);
    assert.equal(procsOf(svcCg(cg, name, app)), procsBefore[app], `${app}: same processes, none started twice`);
  }
  const data = path.join(root, 'var', 'snap', name, 'x1');
  assert.is(linesOf(path.join(data, 'plain.starts')).length, 1, 'plain was not started again');
  assert.is(linesOf(path.join(data, 'forker.starts')).length, 1, 'forker was not started again');
  assert.is(events(path.join(root, 'var', 'snap', name, 'common', 'notify.log')).filter((e) => e[0] === 'start').length, 1, 'notifier was not started again');

  // The adopted main process is watched (pidfd): its death gets it restarted (restart-condition on-failure).
  process.kill(before.plain.mainPid!, 'SIGKILL');
  const restarted = await waitForAsync('plain restarted by the new supervisor', async () => {
    const s = (await statusOf(root, name)).plain;
    return s.state === 'active' && s.mainPid !== null && s.mainPid !== before.plain.mainPid && s;
  });
  assert.is(restarted.restarts, 1);
  await waitFor('the new plain to run', () => linesOf(path.join(data, 'plain.starts')).length === 2, 5000);
  assert.is(Number(linesOf(path.join(data, 'plain.starts'))[1]), restarted.mainPid);
  assert.ok(alive(restarted.mainPid!));

  const stop = await cli(root, cg, ['stop', name]);
  assert.is(stop.code, 0, stop.stderr);
  for (const app of ['plain', 'forker', 'notifier']) assert.is(readEvent(svcCg(cg, name, app), 'populated'), 0, `${app} stopped`);
  assert.equal(zombieChildrenOf(d2.child.pid!), [], 'the supervisor left no zombies');

  await request(root, 'shutdown', {});
  const end = await d2.exited;
  assert.is(end.code, 0, d2.output());
});

rootTest('control socket: reads are open to all, every state-changing call refuses non-root (SO_PEERCRED)', async () => {
  const root = tmpdir('snapproc-sup-');
  fs.chmodSync(root, 0o755); // nobody must reach R/run/snapproc.socket
  const cg = makeCgroup('sup-peercred');
  const name = uniqueSnapName('pc');
  const dir = buildSnap(name, apps({ svc: { command: 'bin/stay svc', daemon: 'simple' } }), { stay: STAY });
  const d = await startDaemon(root, cg);
  try {
    const inst = await cli(root, cg, ['install', dir], { NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt' });
    assert.is(inst.code, 0, inst.stderr);
    const pid = (await statusOf(root, name)).svc.mainPid!;
    const reads = [
      { id: 1, method: 'ping' },
      { id: 2, method: 'status', params: { snap: name } },
      { id: 3, method: 'list' },
      { id: 4, method: 'changes' },
    ];
    const writes = [
      { id: 10, method: 'stop', params: { snap: name } },
      { id: 11, method: 'start', params: { snap: name } },
      { id: 12, method: 'restart', params: { snap: name } },
      { id: 13, method: 'install', params: { path: dir } },
      { id: 14, method: 'refresh', params: { snap: name, from: dir } },
      { id: 15, method: 'revert', params: { snap: name } },
      { id: 16, method: 'remove', params: { snap: name } },
      { id: 17, method: 'shutdown', params: { stopServices: true } },
    ];
    // One connection, reads and writes interleaved: the check is per request, not per connection.
    const all = [reads[0], writes[0], reads[1], ...writes.slice(1), ...reads.slice(2)];
    const client = `
      const net = require('net');
      const reqs = JSON.parse(process.argv[2]);
      const s = net.connect(process.argv[1]);
      let buf = ''; const out = [];
      s.on('connect', () => { for (const r of reqs) s.write(JSON.stringify(r) + '\\n'); });
      s.on('data', (d) => {
        buf += d;
        let i;
        while ((i = buf.indexOf('\\n')) >= 0) { const m = JSON.parse(buf.slice(0, i)); buf = buf.slice(i + 1); if (m.progress === undefined) out.push(m); }
        if (out.length === reqs.length) { console.log(JSON.stringify(out)); process.exit(0); }
      });
      s.on('error', (e) => { console.log(JSON.stringify({ error: e.code })); process.exit(4); });
      setTimeout(() => { console.log(JSON.stringify({ timeout: out })); process.exit(3); }, 8000);
    `;
    const r = await run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, '-e', client, socketPath(root), JSON.stringify(all)]);
    assert.is(r.code, 0, r.stdout + r.stderr);
    const answers_ = JSON.parse(r.stdout) as Array<{ id: number; ok: boolean; result?: any; error?: { code: string; message: string } }>;
    const byId = new Map(answers_.map((a) => [a.id, a]));
    for (const q of reads) assert.is(byId.get(q.id)?.ok, true, `${q.method} is open to nobody: ${JSON.stringify(byId.get(q.id))}`);
    assert.is((byId.get(2)!.result as ServiceRecord[])[0].mainPid, pid);
    for (const q of writes) {
      const a = byId.get(q.id)!;
      assert.is(a.ok, false, `${q.method} must be refused for nobody: ${JSON.stringify(a)}`);
      assert.is(a.error!.code, 'EPERM', q.method);
      assert.match(a.error!.message, /permission denied/, q.method);
      assert.match(a.error!.message, /needs root/, q.method);
    }
    // Nothing changed.
    const st = await statusOf(root, name);
    assert.is(st.svc.state, 'active');
    assert.is(st.svc.mainPid, pid);
    assert.ok(alive(pid));
    assert.ok(fs.existsSync(path.join(root, 'snap', name, 'current')), 'still installed');
    assert.ok(await answers(socketPath(root)), 'the supervisor still serves');
    // root may.
    await request(root, 'stop', { snap: name });
    assert.is((await statusOf(root, name)).svc.state, 'inactive');
    await request(root, 'shutdown', { stopServices: true });
    assert.is((await d.exited).code, 0);
  } finally {
    await killDaemon(d);
  }
});

rootTest('CLI: with --no-autostart or SNAPPROC_NO_AUTOSTART=1 and no supervisor, commands fail clearly and start none', async () => {
  const root = tmpdir('snapproc-sup-');
  const cg = makeCgroup('sup-noauto');
  const name = uniqueSnapName('na');
  const dir = buildSnap(name, apps({ svc: { command: 'bin/stay svc', daemon: 'simple' } }), { stay: STAY });
  for (const [args, env] of [
    [['--no-autostart', 'install', dir], {}],
    [['install', dir], { SNAPPROC_NO_AUTOSTART: '1' }],
    [['--no-autostart', 'start', name], {}],
  ] as Array<[string[], NodeJS.ProcessEnv]>) {
    const r = await cli(root, cg, args, env);
    assert.is(r.code, 1, `${args.join(' ')}: ${r.stdout}${r.stderr}`);
    assert.match(r.stderr, /^error: no supervisor answers on .*snapproc\.socket.*autostart is off/, args.join(' '));
    assert.is(r.stderr.trim().split('\n').length, 1, 'one error line');
  }
  assert.not.ok(fs.existsSync(socketPath(root)), 'no supervisor was started');
  assert.not.ok(fs.existsSync(path.join(root, 'snap', name)), 'nothing was installed');
  assert.equal(fs.readdirSync(cg).filter((f) => f.startsWith('snap.')), [], 'no service cgroup was made');
});

rootTest('CLI: install starts a background supervisor (PM2-style); ps, stop, start, restart go through it', async () => {
  const root = tmpdir('snapproc-sup-');
  const cg = makeCgroup('sup-cli');
  const name = uniqueSnapName('cl');
  const dir = buildSnap(
    name,
    apps({
      second: { command: 'bin/stay second', daemon: 'simple', after: ['first'] },
      first: { command: 'bin/stay first', daemon: 'simple' },
    }),
    { stay: STAY },
  );
  let daemonPid: number | null = null;
  try {
    const inst = await cli(root, cg, ['install', dir]);
    assert.is(inst.code, 0, inst.stderr);
    assert.match(inst.stdout, new RegExp(`^${name} x1 installed; started ${name}\\.first, ${name}\\.second$`, 'm'));
    const ping = (await request(root, 'ping')) as { pid: number; root: string };
    daemonPid = ping.pid;
    assert.is(ping.root, root);
    assert.match(fs.readFileSync(`/proc/${daemonPid}/cmdline`, 'utf8').split('\0').join(' '), /snapproc.* daemon/);
    // Started without the certificates Node would parse at its start-up (node-flags.ts snapprocNodeEnv).
    assert.not.ok(fs.readFileSync(`/proc/${daemonPid}/environ`, 'utf8').split('\0').some((v) => v.startsWith('NODE_EXTRA_CA_CERTS=')), 'no NODE_EXTRA_CA_CERTS in the autostarted supervisor');
    let st = await statusOf(root, name);
    assert.is(st.first.state, 'active');
    assert.is(st.second.state, 'active');

    const ps = await cli(root, cg, ['ps', name, '--json']);
    assert.is(ps.code, 0, ps.stderr);
    const doc = JSON.parse(ps.stdout) as { apps: Array<{ app: string; kind: string; cgroup: string; mainPid: number | null }> };
    const byApp = Object.fromEntries(doc.apps.map((a) => [a.app, a]));
    for (const app of ['first', 'second']) {
      assert.is(byApp[app]?.kind, 'service', app);
      assert.is(byApp[app].cgroup, svcCg(cg, name, app));
      assert.is(byApp[app].mainPid, st[app].mainPid, `${app}: ps shows the supervisor's main PID`);
    }

    let r = await cli(root, cg, ['stop', `${name}.first`]);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`stopped ${name}\\.first \\(sigterm-all\\)`));
    let now = await statusOf(root, name);
    assert.is(now.first.state, 'inactive');
    assert.is(readEvent(svcCg(cg, name, 'first'), 'populated'), 0);
    assert.not.ok(alive(st.first.mainPid!));
    assert.is(now.second.mainPid, st.second.mainPid, 'the other service is untouched');

    r = await cli(root, cg, ['start', `${name}.first`]);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^started ${name}\\.first$`, 'm'));
    now = await statusOf(root, name);
    assert.is(now.first.state, 'active');
    assert.ok(now.first.mainPid !== null && now.first.mainPid !== st.first.mainPid && alive(now.first.mainPid));

    st = now;
    r = await cli(root, cg, ['restart', name]);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`^restarted ${name}\\.first, ${name}\\.second$`, 'm'));
    now = await statusOf(root, name);
    for (const app of ['first', 'second']) {
      assert.is(now[app].state, 'active', app);
      assert.ok(now[app].mainPid !== st[app].mainPid && alive(now[app].mainPid!), `${app} has a new main process`);
      assert.not.ok(alive(st[app].mainPid!), `${app}'s old main process is gone`);
    }

    // An error the supervisor answers with is not "no supervisor": no second one is started.
    for (const target of [`${name}.nosuch`, 'nosuchsnap']) {
      r = await cli(root, cg, ['start', target]);
      assert.is(r.code, 1);
      assert.match(r.stderr, target === 'nosuchsnap' ? /^error: snap "nosuchsnap" is not installed/ : new RegExp(`^error: snap "${name}" has no service "nosuch"`));
    }
    await sleep(1000); // a wrongly autostarted supervisor would be up (and refused by the lock) by now
    assert.equal(daemonsFor(root), [daemonPid], 'one supervisor, no autostart while one answers');
    const supLog = fs.readFileSync(path.join(root, 'log', 'snapproc.log'), 'utf8');
    assert.not.match(supLog, /another snapproc supervisor is running/, 'no second supervisor was attempted');

    await request(root, 'shutdown', { stopServices: true });
    await waitFor('the background supervisor to exit', () => !alive(daemonPid!));
    for (const app of ['first', 'second']) assert.is(readEvent(svcCg(cg, name, app), 'populated'), 0, `${app} stopped by the shutdown`);
    await sleep(500);
    assert.equal(daemonsFor(root), [], 'no supervisor left for this root');
  } finally {
    // Background supervisors our CLI children started for this root, if still there (also after a failure above).
    if (daemonsFor(root).length) {
      await request(root, 'shutdown', { stopServices: true }).catch(() => undefined);
      await waitFor('the background supervisor to exit', () => daemonsFor(root).length === 0, 3000).catch(() => undefined);
      for (const pid of daemonsFor(root)) process.kill(pid, 'SIGKILL');
    }
  }
});

// ---------------------------------------------------------------- embedded

rootTest('the daemon runs every thread at its nice -5, libuv\'s pool too (threads made after SCHED_RESET_ON_FORK start at 0)', async () => {
  const root = tmpdir('snapproc-sup-');
  const cg = makeCgroup('sup-nice');
  const d = await startDaemon(root, cg);
  try {
    // A request that uses the pool (the journal's and the record's flushes run there).
    const name = uniqueSnapName('nc');
    const dir = buildSnap(name, apps({ svc: { command: 'bin/stay svc', daemon: 'simple' } }), { stay: STAY });
    assert.is((await cli(root, cg, ['install', dir])).code, 0);
    const pid = d.child.pid!;
    const nices = fs.readdirSync(`/proc/${pid}/task`).map((t) => Number(fs.readFileSync(`/proc/${pid}/task/${t}/stat`, 'utf8').split(') ')[1].split(' ')[16]));
    assert.ok(nices.length >= 5, `the main thread, libuv's pool and others: ${nices.length} threads`);
    assert.equal([...new Set(nices)], [-5], `the daemon's threads' nice values: ${nices.join(' ')}`);
  } finally {
    await killDaemon(d);
  }
});

rootTest('a second supervisor on one root refuses with a clear error (lock file)', async () => {
  await embedded(async ({ root, cg }) => {
    const second = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: () => {} });
    let started = false;
    try {
      await second.start();
      started = true;
    } catch (err) {
      assert.match((err as Error).message, /another snapproc supervisor is running/);
      assert.match((err as Error).message, /snapproc\.lock/);
    }
    if (started) await second.shutdown();
    assert.not.ok(started, 'the second supervisor must not start');
    const r = await cli(root, cg, ['daemon']);
    assert.is(r.code, 1, r.stdout + r.stderr);
    assert.match(r.stderr, /^error: another snapproc supervisor is running for /);
    assert.is(r.stderr.trim().split('\n').length, 1);
    assert.ok(await answers(socketPath(root)), 'the first one still serves');
  });
});

rootTest('beside a running supervisor, a RevisionStore of its own refuses to write the record it owns; reading works', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('ow');
    await sup.install(buildSnap(name, apps({ svc: { command: 'bin/stay svc', daemon: 'simple' } }), { stay: STAY }));
    const slots = [path.join(root, 'state', 'snaps.json'), path.join(root, 'state', 'snaps.json.1')];
    const before = slots.map((f) => fs.readFileSync(f, 'utf8'));
    const other = new RevisionStore(root);
    assert.equal(other.list().map((s) => s.name), [name], 'a reader sees what the supervisor wrote');
    let err = null as (Error & { code?: string }) | null;
    await other.addRevision(buildSnap(name, apps({ svc: { command: 'bin/stay svc', daemon: 'simple' } }), { stay: STAY })).catch((e) => (err = e));
    assert.ok(err, 'the write is refused');
    assert.is(err!.code, 'ERR_SNAPPROC_SUPERVISOR_RUNNING');
    assert.match(err!.message, /^cannot change the record of .*: a snapproc supervisor runs for it and owns it/);
    assert.equal(slots.map((f) => fs.readFileSync(f, 'utf8')), before, 'the record is unchanged');
    assert.not.ok(fs.existsSync(path.join(root, 'snap', name, 'x2')), 'no revision directory is left behind');
  });
});

rootTest('a refresh\'s prune also retires revisions that a crash left on disk without a record', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('or');
    const snap = () => buildSnap(name, apps({ svc: { command: 'bin/stay svc', daemon: 'simple' } }), { stay: STAY });
    await sup.install(snap());
    await sup.refresh(name, snap());
    // What a SIGKILL between the record's write and the renames to the trash leaves: x1's files, unlisted.
    for (const dir of [path.join(root, 'snap', name), path.join(root, 'var', 'snap', name)]) fs.mkdirSync(path.join(dir, 'x9', 'meta'), { recursive: true });
    // (The new revision is numbered past what is on disk: x10.)
    await sup.refresh(name, snap());
    await waitFor('the trash sweep', () => fs.readdirSync(path.join(root, 'snap', name)).every((e) => !e.startsWith('.')));
    assert.equal(fs.readdirSync(path.join(root, 'snap', name)).filter((e) => e !== 'current').sort(), ['x10', 'x2']);
    assert.equal(fs.readdirSync(path.join(root, 'var', 'snap', name)).filter((e) => /^x\d/.test(e)).sort(), ['x10', 'x2']);
  });
});

rootTest('a stale file or dead socket at R/run/snapproc.socket is recovered', async () => {
  const root = tmpdir('snapproc-sup-');
  const cg = makeCgroup('sup-stale');
  const sock = socketPath(root);
  fs.mkdirSync(path.dirname(sock), { recursive: true });
  const make = [
    async () => fs.writeFileSync(sock, 'left over\n'),
    async () => {
      const r = await run('python3', ['-c', 'import socket,sys; s=socket.socket(socket.AF_UNIX); s.bind(sys.argv[1]); s.listen(1)', sock]);
      assert.is(r.code, 0, r.stderr);
      assert.ok(fs.lstatSync(sock).isSocket());
    },
  ];
  for (const occupy of make) {
    await occupy();
    const sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: () => {} });
    try {
      await sup.start();
      assert.ok(fs.lstatSync(sock).isSocket());
      const ping = (await request(root, 'ping')) as { pid: number };
      assert.is(ping.pid, process.pid);
    } finally {
      await sup.shutdown();
    }
  }
});

rootTest('services get the SPEC environment, run in $SNAP_DATA, in snap.NAME.APP.service from their first instruction', async () => {
  await embedded(async ({ root, cg, sup }) => {
    const name = uniqueSnapName('en');
    const dir = buildSnap(
      name,
      apps({ envdump: { command: 'bin/envdump', daemon: 'simple' } }),
      {
        envdump: `#!/bin/sh
cat /proc/self/cgroup > "$SNAP_COMMON/cgroup"
pwd > "$SNAP_COMMON/pwd"
env > "$SNAP_COMMON/env"
echo "envdump ready"
exec sleep 1000
`,
      },
      'environment:\n  GREETING: hello-$SNAP_NAME\n',
    );
    process.env.SUP_LEAK_CANARY = 'leaked';
    try {
      await sup.install(dir);
    } finally {
      delete process.env.SUP_LEAK_CANARY;
    }
    const common = path.join(root, 'var', 'snap', name, 'common');
    await waitFor('envdump to run', () => fs.existsSync(path.join(common, 'env')) && linesOf(path.join(root, 'log', name, 'envdump.log')).some((l) => l === 'envdump ready'));
    const expectedCg = svcCg(cg, name, 'envdump');
    const rel = '/' + path.relative(cgroup2Mount(), expectedCg);
    assert.is(cgroupLineOf(fs.readFileSync(path.join(common, 'cgroup'), 'utf8')), rel, 'its very first command already ran in the service cgroup');
    const r = rec(sup, name, 'envdump');
    assert.is(r.cgroup, expectedCg);
    assert.is(cgroupLineOf(fs.readFileSync(`/proc/${r.mainPid}/cgroup`, 'utf8')), rel);
    assert.equal(procsOf(expectedCg), [r.mainPid]);

    const data = path.join(root, 'var', 'snap', name, 'x1');
    assert.is(fs.readFileSync(path.join(common, 'pwd'), 'utf8').trim(), data, 'working directory is $SNAP_DATA');
    const env = Object.fromEntries(linesOf(path.join(common, 'env')).map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    const snapDir = path.join(root, 'snap', name, 'x1');
    assert.equal(
      { SNAP: env.SNAP, SNAP_NAME: env.SNAP_NAME, SNAP_INSTANCE_NAME: env.SNAP_INSTANCE_NAME, SNAP_INSTANCE_KEY: env.SNAP_INSTANCE_KEY, SNAP_REVISION: env.SNAP_REVISION, SNAP_VERSION: env.SNAP_VERSION, SNAP_DATA: env.SNAP_DATA, SNAP_COMMON: env.SNAP_COMMON, SNAP_USER_DATA: env.SNAP_USER_DATA, SNAP_USER_COMMON: env.SNAP_USER_COMMON, HOME: env.HOME, GREETING: env.GREETING },
      {
        SNAP: snapDir,
        SNAP_NAME: name,
        SNAP_INSTANCE_NAME: name,
        SNAP_INSTANCE_KEY: '',
        SNAP_REVISION: 'x1',
        SNAP_VERSION: '1.0',
        SNAP_DATA: data,
        SNAP_COMMON: common,
        SNAP_USER_DATA: path.join(root, 'root', 'snap', name, 'x1'),
        SNAP_USER_COMMON: path.join(root, 'root', 'snap', name, 'common'),
        HOME: path.join(root, 'root', 'snap', name, 'x1'),
        GREETING: `hello-${name}`,
      },
    );
    assert.ok(env.SNAP_ARCH, 'SNAP_ARCH is set');
    assert.ok(env.PATH.split(':').includes(`${snapDir}/bin`), `PATH ${env.PATH}`);
    assert.is(env.SUP_LEAK_CANARY, undefined, "the supervisor's own environment does not leak into services");
    assert.is(env.NOTIFY_SOCKET, undefined, 'NOTIFY_SOCKET only for notify services');
  });
});

const CONDITIONS = ['never', 'on-success', 'on-failure', 'on-abnormal', 'on-abort', 'on-watchdog', 'always'] as const;
// systemd.service(5), "Exit causes and the effect of the Restart= settings".
// SIGTERM is a clean signal (like SIGHUP, SIGINT, SIGPIPE); SIGKILL is not.
const OUTCOMES = {
  ok: { how: 'exits 0', restartedBy: ['on-success', 'always'], exit: { code: 0, signal: null }, state: 'inactive' },
  fail: { how: 'exits 3', restartedBy: ['on-failure', 'always'], exit: { code: 3, signal: null }, state: 'failed' },
  term: { how: 'SIGTERM', restartedBy: ['on-success', 'always'], exit: { code: null, signal: 'SIGTERM' }, state: 'inactive' },
  kill: { how: 'SIGKILL', restartedBy: ['on-failure', 'on-abnormal', 'on-abort', 'always'], exit: { code: null, signal: 'SIGKILL' }, state: 'failed' },
} as const;

rootTest('restart-condition table: each condition x clean exit, non-zero exit, clean signal, unclean signal', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('rc');
    const spec: Record<string, Record<string, string>> = {};
    for (const c of CONDITIONS) {
      for (const o of Object.keys(OUTCOMES)) spec[`${c}-${o}`] = { command: `bin/outcome ${c}-${o} ${o}`, daemon: 'simple', 'restart-condition': c, 'restart-delay': '100ms' };
    }
    const dir = buildSnap(name, apps(spec), {
      outcome: `#!/bin/sh
# outcome APP HOW: the first run ends by HOW, later runs stay up.
f="$SNAP_DATA/$1.starts"
echo $$ >> "$f"
if [ "$(wc -l < "$f")" -gt 1 ]; then exec sleep 1000; fi
case "$2" in
  ok) exit 0 ;;
  fail) exit 3 ;;
  term) kill -TERM $$ ;;
  kill) kill -KILL $$ ;;
esac
sleep 5
`,
    });
    await sup.install(dir);
    const data = path.join(root, 'var', 'snap', name, 'x1');
    const starts = (app: string) => linesOf(path.join(data, `${app}.starts`)).length;
    const settled = (app: string) => {
      const r = rec(sup, name, app);
      return (r.lastExit !== null && (r.state === 'inactive' || r.state === 'failed')) || (starts(app) >= 2 && r.state === 'active');
    };
    await waitFor('every service to settle', () => Object.keys(spec).every(settled), 15_000);
    await sleep(600); // several restart-delays: a restart that should not happen would show by now
    const expected: Record<string, boolean> = {};
    const actual: Record<string, boolean> = {};
    for (const c of CONDITIONS) {
      for (const [o, out] of Object.entries(OUTCOMES)) {
        const app = `${c}-${o}`;
        expected[app] = (out.restartedBy as readonly string[]).includes(c);
        actual[app] = starts(app) >= 2;
      }
    }
    assert.equal(actual, expected, 'which services were restarted');
    for (const c of CONDITIONS) {
      for (const [o, out] of Object.entries(OUTCOMES)) {
        const app = `${c}-${o}`;
        const r = rec(sup, name, app);
        assert.equal({ code: r.lastExit?.code, signal: r.lastExit?.signal }, out.exit, `${app}: recorded exit`);
        if (expected[app]) {
          assert.is(r.state, 'active', app);
          assert.is(r.restarts, 1, app);
          assert.is(starts(app), 2, `${app} restarted once`);
        } else {
          assert.is(r.state, out.state, `${app}: ${JSON.stringify(r)}`);
          if (out.state === 'failed') assert.match(r.reason ?? '', /exited with status 3|SIGKILL/, app);
        }
      }
    }
  });
});

rootTest('a service that exits at once under restart-condition: always is throttled, marked failed, says so, no busy loop', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('cl');
    const dir = buildSnap(
      name,
      apps({
        crasher: { command: 'bin/crasher', daemon: 'simple', 'restart-condition': 'always', 'restart-delay': '100ms' },
        steady: { command: 'bin/stay steady', daemon: 'simple' },
      }),
      { crasher: '#!/bin/sh\ndate +%s%N >> "$SNAP_DATA/crasher.starts"\necho "crasher giving up"\nexit 1\n', stay: STAY },
    );
    const t0 = Date.now();
    await sup.install(dir);
    const failed = await waitFor('crasher to be marked failed', () => {
      const r = rec(sup, name, 'crasher');
      return r.state === 'failed' && r;
    }, 15_000);
    const elapsed = Date.now() - t0;
    assert.match(failed.reason ?? '', /too quickly|start limit|crash loop/i, `reason: ${failed.reason}`);
    const file = path.join(root, 'var', 'snap', name, 'x1', 'crasher.starts');
    const times = linesOf(file).map((l) => Number(BigInt(l) / 1_000_000n));
    assert.ok(times.length >= 2 && times.length <= 6, `${times.length} starts before giving up (systemd's default burst is 5)`);
    for (let i = 1; i < times.length; i++) assert.ok(times[i] - times[i - 1] >= 80, `restart-delay kept between starts ${i} and ${i + 1}: ${times[i] - times[i - 1]} ms`);
    assert.ok(elapsed < 10_000, `gave up in ${elapsed} ms`);
    await sleep(1500);
    assert.is(linesOf(file).length, times.length, 'no start after it was marked failed');
    assert.is(rec(sup, name, 'crasher').state, 'failed');
    const log = fs.readFileSync(path.join(root, 'log', name, 'crasher.log'), 'utf8');
    assert.match(log, /failed: .*(too quickly|start limit|crash loop)/i, 'the service log says why it is not restarted');
    const steady = rec(sup, name, 'steady');
    assert.is(steady.state, 'active');
    assert.ok(alive(steady.mainPid!));
  });
});

rootTest('a missing or non-executable command: install refuses the snap, naming the app and the command', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('bc');
    for (const [app, bin, why] of [['missing', 'bin/nope', /does not exist in the snap/], ['noexec', 'bin/noexec', /is not executable/]] as const) {
      const dir = buildSnap(
        name,
        apps({ [app]: { command: bin, daemon: 'simple' }, good: { command: 'bin/stay good', daemon: 'simple' } }),
        { noexec: { text: '#!/bin/sh\nexec sleep 1000\n', mode: 0o644 }, stay: STAY },
      );
      try {
        await sup.install(dir);
        assert.unreachable('installed');
      } catch (err) {
        assert.match((err as Error).message, why);
        assert.ok((err as Error).message.includes(`app "${app}" command "${bin}"`), (err as Error).message);
      }
      assert.is(sup.store.get(name), undefined, 'nothing installed');
      assert.not.ok(fs.existsSync(path.join(root, 'snap', name, 'x1')));
    }
  });
});

rootTest('notify: start waits for READY=1; no READY within start-timeout fails the service and stops it', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('nt');
    const log = '$SNAP_COMMON/notify.log';
    const dir = buildSnap(
      name,
      apps({
        slow: { command: `bin/sup-notify --name slow --log ${log} --delay 0.6`, daemon: 'notify', 'install-mode': 'disable' },
        mute: { command: `bin/sup-notify --name mute --log ${log} --no-ready`, daemon: 'notify', 'start-timeout': '1s', 'install-mode': 'disable' },
      }),
      { 'sup-notify': notifyBin() },
    );
    await sup.install(dir);
    const file = path.join(root, 'var', 'snap', name, 'common', 'notify.log');
    let t0 = Date.now();
    let during: string | null = null;
    setTimeout(() => (during = rec(sup, name, 'slow').state), 300);
    await sup.startSnap(name, 'slow');
    const took = Date.now() - t0;
    assert.ok(took >= 550, `start returned after ${took} ms, before READY=1`);
    assert.is(during, 'activating', 'activating until READY=1');
    const slow = rec(sup, name, 'slow');
    assert.is(slow.state, 'active');
    assert.equal(events(file).filter((e) => e[1] === 'slow').map((e) => e[0]), ['start', 'ready']);
    assert.is(slow.mainPid, events(file)[0][2]);

    t0 = Date.now();
    try {
      await sup.startSnap(name, 'mute');
      assert.unreachable('a notify service that never says READY=1 does not start');
    } catch (err) {
      assert.match((err as Error).message, /READY/);
    }
    const waited = Date.now() - t0;
    assert.ok(waited >= 900 && waited < 5000, `gave up after ${waited} ms (start-timeout 1s)`);
    const mute = rec(sup, name, 'mute');
    assert.is(mute.state, 'failed');
    assert.match(mute.reason ?? '', /READY/);
    const mutePid = events(file).find((e) => e[1] === 'mute')![2];
    await waitFor('mute to be gone', () => !alive(mutePid), 5000);
    assert.is(readEvent(svcCg(path.dirname(slow.cgroup), name, 'mute'), 'populated'), 0);
  });
});

rootTest('notify: MAINPID= moves the main process; STOPPING=1 and RELOADING=1 are heard', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('nm');
    const log = '$SNAP_COMMON/notify.log';
    const dir = buildSnap(
      name,
      apps({
        forkmain: { command: `bin/sup-notify --name forkmain --log ${log} --mainpid`, daemon: 'notify', 'restart-condition': 'never' },
        quitter: { command: `bin/sup-notify --name quitter --log ${log} --stop-after 0.4`, daemon: 'notify', 'install-mode': 'disable' },
        reloader: { command: `bin/sup-notify --name reloader --log ${log} --reload`, daemon: 'notify' },
      }),
      { 'sup-notify': notifyBin() },
    );
    await sup.install(dir);
    const file = path.join(root, 'var', 'snap', name, 'common', 'notify.log');
    const ev = (n: string, e: string) => events(file).find((x) => x[1] === n && x[0] === e);

    // MAINPID
    const child = ev('forkmain', 'mainpid')![2];
    const starter = ev('forkmain', 'start')![2];
    await waitFor('MAINPID to be taken', () => rec(sup, name, 'forkmain').mainPid === child);
    await waitFor('the notifying parent to exit', () => !alive(starter), 5000);
    await sleep(200);
    let fm = rec(sup, name, 'forkmain');
    assert.is(fm.state, 'active', 'the parent leaving is not the service ending');
    assert.is(fm.mainPid, child);
    assert.match(fs.readFileSync(path.join(root, 'log', name, 'forkmain.log'), 'utf8'), new RegExp(`main process is now PID ${child}`));
    process.kill(child, 'SIGKILL');
    fm = await waitFor('the MAINPID process death to be noticed', () => {
      const r = rec(sup, name, 'forkmain');
      return r.state === 'failed' && r;
    }, 5000);
    assert.equal({ code: fm.lastExit?.code, signal: fm.lastExit?.signal }, { code: null, signal: 'SIGKILL' }, 'exit status of the MAINPID process');

    // STOPPING=1: deactivating until it exits; a clean exit under on-failure then leaves it inactive.
    await sup.startSnap(name, 'quitter');
    assert.is(rec(sup, name, 'quitter').state, 'active');
    await waitFor('STOPPING=1 to be heard', () => rec(sup, name, 'quitter').state === 'deactivating', 3000);
    await waitFor('quitter to end', () => rec(sup, name, 'quitter').state === 'inactive', 3000);
    assert.equal({ code: rec(sup, name, 'quitter').lastExit?.code }, { code: 0 });

    // RELOADING=1 then READY=1.
    const rl = rec(sup, name, 'reloader');
    assert.is(rl.state, 'active');
    process.kill(rl.mainPid!, 'SIGHUP');
    await waitFor('RELOADING=1 to be heard', () => /reloading/.test(fs.readFileSync(path.join(root, 'log', name, 'reloader.log'), 'utf8')), 3000);
    await sleep(400);
    assert.is(rec(sup, name, 'reloader').state, 'active');
    assert.is(rec(sup, name, 'reloader').mainPid, rl.mainPid);
  });
});

rootTest('forking: start waits for the start command, the process it leaves is the main one, tracked by pidfd', async () => {
  await embedded(async ({ root, cg, sup }) => {
    const name = uniqueSnapName('fk');
    const dir = buildSnap(
      name,
      apps({
        forker: { command: 'bin/forker', daemon: 'forking', 'install-mode': 'disable' },
        badfork: { command: 'bin/badfork', daemon: 'forking', 'install-mode': 'disable' },
      }),
      { forker: FORKER, badfork: '#!/bin/sh\necho "cannot daemonise" >&2\nexit 2\n' },
    );
    await sup.install(dir);
    const data = path.join(root, 'var', 'snap', name, 'x1');
    const t0 = Date.now();
    await sup.startSnap(name, 'forker');
    assert.ok(Date.now() - t0 >= 250, 'start waited for the start command to exit');
    const daemon = Number(fs.readFileSync(path.join(data, 'daemon.pid'), 'utf8'));
    const parent = Number(linesOf(path.join(data, 'forker.starts'))[0]);
    const r = rec(sup, name, 'forker');
    assert.is(r.state, 'active');
    assert.is(r.mainPid, daemon, 'main PID is the process left in the cgroup');
    assert.not.ok(alive(parent));
    assert.equal(procsOf(svcCg(cg, name, 'forker')), [daemon]);

    // Its death (not our child) is noticed; on-failure restarts it.
    process.kill(daemon, 'SIGKILL');
    const again = await waitFor('forker restarted', () => {
      const x = rec(sup, name, 'forker');
      return x.state === 'active' && x.mainPid !== null && x.mainPid !== daemon && x;
    }, 8000);
    assert.is(again.restarts, 1);
    assert.equal({ code: again.lastExit?.code, signal: again.lastExit?.signal }, { code: null, signal: 'SIGKILL' });
    assert.is(again.mainPid, Number(fs.readFileSync(path.join(data, 'daemon.pid'), 'utf8')));

    try {
      await sup.startSnap(name, 'badfork');
      assert.unreachable('a failing start command fails the service');
    } catch (err) {
      assert.match((err as Error).message, /status 2/);
    }
    assert.is(rec(sup, name, 'badfork').state, 'failed');
    assert.match(fs.readFileSync(path.join(root, 'log', name, 'badfork.log'), 'utf8'), /cannot daemonise/);
  });
});

rootTest('before/after: services start in order (each after the previous is ready), stop in reverse, also on restart', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('or');
    const cmd = (n: string) => `bin/sup-notify --name ${n} --log $SNAP_COMMON/order.log --delay 0.15`;
    const dir = buildSnap(
      name,
      apps({
        web: { command: cmd('web'), daemon: 'notify', after: ['api'] },
        api: { command: cmd('api'), daemon: 'notify', after: ['db'] },
        db: { command: cmd('db'), daemon: 'notify' },
        early: { command: cmd('early'), daemon: 'notify', before: ['db'] },
      }),
      { 'sup-notify': notifyBin() },
    );
    const r = await sup.install(dir);
    assert.equal(r.started, ['early', 'db', 'api', 'web'].map((a) => `${name}.${a}`));
    const file = path.join(root, 'var', 'snap', name, 'common', 'order.log');
    const seq = () => events(file).map((e) => `${e[0]} ${e[1]}`);
    const up = ['early', 'db', 'api', 'web'].flatMap((a) => [`start ${a}`, `ready ${a}`]);
    assert.equal(seq(), up);

    await sup.stopSnap(name, undefined, {});
    const down = ['web', 'api', 'db', 'early'].map((a) => `stop ${a}`);
    assert.equal(seq(), [...up, ...down]);

    await sup.startSnap(name);
    fs.writeFileSync(file, '');
    await request(root, 'restart', { snap: name });
    assert.equal(seq(), [...down, ...up], 'restart: reverse stop, then ordered start');
  });
});

rootTest('logs: stdout and stderr go to per-app log files; `logs` -n, all apps, -f; rotated by size', async () => {
  await embedded(
    async ({ root, cg, sup }) => {
      const name = uniqueSnapName('lg');
      const dir = buildSnap(
        name,
        apps({
          talker: { command: 'bin/talker', daemon: 'simple' },
          chatty: { command: 'bin/chatty', daemon: 'simple' },
        }),
        {
          talker: `#!/bin/sh
trap 'echo "tick from $$"' USR1
sleep 0.3
echo "talker out 1"
echo "talker err 1" >&2
echo "talker out 2"
echo "talker out 3"
while :; do sleep 1 & wait $!; done
`,
          chatty: `#!/bin/sh
i=0
while [ $i -lt 200 ]; do echo "chatty line $i ................................................"; i=$((i+1)); done
exec sleep 1000
`,
        },
      );
      await sup.install(dir);
      const logFile = (app: string) => path.join(root, 'log', name, `${app}.log`);
      await waitFor('talker output', () => linesOf(logFile('talker')).includes('talker out 3'), 5000);
      const talker = linesOf(logFile('talker'));
      assert.ok(talker.includes('talker out 1'), 'stdout captured');
      assert.ok(talker.includes('talker err 1'), 'stderr captured');

      let r = await cli(root, cg, ['logs', `${name}.talker`, '-n', '2']);
      assert.is(r.code, 0, r.stderr);
      // Every line with its time (ISO 8601, UTC), oldest first.
      assert.match(r.stdout, /^\d{4}-\d\d-\d\dT[\d:.]+Z talker out 2\n\d{4}-\d\d-\d\dT[\d:.]+Z talker out 3\n$/);
      r = await cli(root, cg, ['logs', name, '-n', '1']);
      assert.is(r.code, 0, r.stderr);
      assert.match(r.stdout, new RegExp(`^\\S+Z ${name}\\.talker: talker out 3$`, 'm'));
      const chattyLast = linesOf(logFile('chatty')).slice(-1)[0]; // may be empty: just rotated
      if (chattyLast !== undefined) assert.ok(r.stdout.split('\n').some((l) => l.endsWith(` ${name}.chatty: ${chattyLast}`)), r.stdout);
      r = await cli(root, cg, ['logs', `${name}.nosuch`]);
      assert.is(r.code, 1);
      assert.match(r.stderr, /^error: no log of /);

      // -f: what the service writes later shows up.
      const follow = spawn(process.execPath, [CLI, 'logs', `${name}.talker`, '-f', '-n', '1'], { env: cliEnv(root, cg), stdio: ['ignore', 'pipe', 'pipe'] });
      let followed = '';
      follow.stdout!.on('data', (d) => (followed += d));
      try {
        await waitFor('logs -f to print the last line', () => followed.includes('talker out 3'), 5000);
        await sleep(200);
        process.kill(rec(sup, name, 'talker').mainPid!, 'SIGUSR1');
        await waitFor('logs -f to print the new line', () => /tick from \d+/.test(followed), 5000);
      } finally {
        follow.kill('SIGTERM');
      }

      // Rotation (logMaxBytes 4096 here): chatty wrote ~12 KiB.
      // Done writing once it has executed sleep. (Copy-and-truncate rotation may
      // drop lines written between the copy and the truncate, and several
      // rotations may have happened: the last line is not looked for.)
      const chattyPid = rec(sup, name, 'chatty').mainPid!;
      await waitFor('chatty to finish writing', () => fs.readFileSync(`/proc/${chattyPid}/comm`, 'utf8').trim() === 'sleep', 5000);
      // A log is looked at when it changes, then again when its watch has rested (LOG_CHECK_REST_MS, 1 s).
      await waitFor('chatty.log rotated below the limit', () => fs.existsSync(`${logFile('chatty')}.1`) && fs.statSync(logFile('chatty')).size <= 4096, 3000);
      assert.not.ok(fs.existsSync(`${logFile('chatty')}.4`), 'keeps at most 3 rotated files');
    },
    { logMaxBytes: 4096 },
  );
});

rootTest('run NAME.APP: a fresh snap.NAME.APP-UUID.scope each time, exit status passed through', async () => {
  await embedded(async ({ root, cg, sup }) => {
    const name = uniqueSnapName('rn');
    const dir = buildSnap(name, apps({ tool: { command: 'bin/tool' } }), {
      tool: `#!/bin/sh
echo "cgroup $(grep '^0::' /proc/self/cgroup | cut -c4-)"
echo "args $*"
echo "data $SNAP_DATA"
case "$1" in die) kill -TERM $$ ;; esac
exit "\${1:-0}"
`,
    });
    await sup.install(dir);
    const rel = '/' + path.relative(cgroup2Mount(), cg);
    const scopeRe = new RegExp(`^cgroup ${rel.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}/snap\\.${name}\\.tool-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})\\.scope$`, 'm');
    const a = await cli(root, cg, ['run', `${name}.tool`, '7', 'x y']);
    assert.is(a.code, 7, a.stderr);
    assert.match(a.stdout, /^args 7 x y$/m);
    assert.match(a.stdout, new RegExp(`^data ${path.join(root, 'var', 'snap', name, 'x1')}$`, 'm'));
    const m1 = scopeRe.exec(a.stdout);
    assert.ok(m1, `scope cgroup in: ${a.stdout}`);
    const b = await cli(root, cg, ['run', `${name}.tool`, '0']);
    assert.is(b.code, 0, b.stderr);
    const m2 = scopeRe.exec(b.stdout);
    assert.ok(m2 && m2[1] !== m1![1], 'a fresh scope for each run');
    const c = await cli(root, cg, ['run', `${name}.tool`, 'die']);
    assert.is(c.code, 128 + 15, 'killed by SIGTERM: 143, as a shell reports it');
    assert.equal(fs.readdirSync(cg).filter((f) => f.startsWith(`snap.${name}.tool-`)), [], 'scopes are removed after the run');
    const u = await cli(root, cg, ['run', name]);
    assert.is(u.code, 2, 'NAME without .APP is a usage error');
  });
});

rootTest('orphans re-parent to the supervisor (child subreaper) and are reaped: no zombies', async () => {
  await embedded(async ({ root, sup }) => {
    const baseline = new Set(zombieChildrenOf(process.pid));
    const name = uniqueSnapName('op');
    const dir = buildSnap(name, apps({ spawner: { command: 'bin/spawner', daemon: 'simple' } }), {
      spawner: `#!/bin/sh
for i in 1 2 3 4 5; do
  ( sleep 0.6 & echo $! >> "$SNAP_DATA/orphans" )
done
( sh -c 'exit 3' & sleep 0.1; echo $! >> "$SNAP_DATA/orphans" )
exec sleep 1000
`,
    });
    await sup.install(dir);
    const file = path.join(root, 'var', 'snap', name, 'x1', 'orphans');
    await waitFor('five orphans', () => linesOf(file).length >= 5, 5000);
    const first = linesOf(file).slice(0, 5).map(Number);
    for (const pid of first) {
      const st = statOf(pid);
      assert.ok(st, `orphan ${pid} exists`);
      assert.is(st!.ppid, process.pid, `orphan ${pid} was re-parented to the supervisor`);
    }
    await waitFor('the sixth', () => linesOf(file).length === 6, 5000);
    const all = linesOf(file).map(Number);
    await waitFor('every orphan to be reaped', () => all.every((p) => !fs.existsSync(`/proc/${p}`)), 5000);
    await sleep(200);
    const left = zombieChildrenOf(process.pid).filter((p) => !baseline.has(p));
    assert.equal(left, [], 'no zombies left');
    const r = rec(sup, name, 'spawner');
    assert.is(r.state, 'active');
    assert.ok(alive(r.mainPid!));
  });
});

test.run();
