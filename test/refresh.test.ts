// Refresh, revert and remove end to end (SPEC 1, 4, 5, 6, 7), against a real
// supervisor (`snapproc daemon` in a process of its own, driven over its
// control socket and through the CLI) and fixture snaps with two revisions
// whose every process records its signals and its revision to
// $SNAP_COMMON/events.log (test/fixtures/refresh-daemon.js):
//   - which PIDs are the same after a refresh, which are new and run B, which
//     children a plain stop-mode left and which an `-all` one took along;
//   - hook order and environment; the data copy; EROFS for an enduring
//     process on A's $SNAP_DATA while $SNAP_COMMON stays writable;
//   - failure injection (hooks, an unstartable service of B, a failing copy)
//     rolled back exactly; SIGKILL of the supervisor at every step boundary
//     of the refresh (SNAPPROC_CRASH_AT) recovered to a consistent state;
//   - remove leaves nothing running; busy-snap refusal and --ignore-running;
//     revert; the graceful hand-over and its fallback to a restart.
// Each test has its own state root and cgroup parent, removed afterwards
// (read-only bind mounts under the root are unmounted first).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { request } from '../src/supervisor/client';
import { loadChanges, type ChangeRecord } from '../src/supervisor/change-runner';
import { classifyCgroup } from '../src/process/classify';
import { isReadOnlyMounted } from '../src/snap/data-readonly';
import { findSnapCgroups } from '../src/process/find-cgroups';
import { hookScopeName } from '../src/process/cgroup-names';
import { revisionOf } from '../src/kernel/procfs';
import { dpkgArchitecture } from '../src/snap/environment';
import { refreshSteps } from '../src/supervisor/changes';
import { alive, cgroupMount, CLI, cleanupParent, gate, makeCgroup, REPO, startTree, tmpdir, uniqueSnapName, waitFor } from './helpers';

const test = suite('refresh');
const rootTest = gate(test);
test.after(() => cleanupParent());

const FIXTURE = path.join(REPO, 'test', 'fixtures', 'refresh-daemon.js');
const FAMILY = '--child group --setsid-child other';
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

// ------------------------------------------------------------------ fixture snaps

interface AppSpec {
  /** false: a plain app (not a daemon). */
  service?: boolean;
  /** Arguments of bin/daemon after `--app NAME`. */
  args?: string;
  /** Replaces the whole command line. */
  command?: string;
  refresh?: string;
  stop?: string;
  /** stop-timeout, default 2s for services. */
  timeout?: string;
}

interface SnapSpec {
  name: string;
  version: string;
  apps: Record<string, AppSpec>;
  /** Hook name -> extra arguments of the hook program ('' for a hook that succeeds). */
  hooks?: Record<string, string>;
}

/** Writes a snap directory whose programs all exec refresh-daemon.js. */
function writeSnap(spec: SnapSpec): string {
  const dir = tmpdir('snapproc-refresh-src-');
  fs.mkdirSync(path.join(dir, 'meta', 'hooks'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bin'));
  const script = (extra: string) => `#!/bin/sh\nexec "${process.execPath}" "${FIXTURE}" ${extra}"$@"\n`;
  fs.writeFileSync(path.join(dir, 'bin', 'daemon'), script(''), { mode: 0o755 });
  // A command that dies at once (within the supervisor's settle time).
  fs.writeFileSync(path.join(dir, 'bin', 'fail'), '#!/bin/sh\nexit 1\n', { mode: 0o755 });
  const y = [`name: ${spec.name}`, `version: '${spec.version}'`, 'summary: refresh test fixture', 'confinement: strict', 'apps:'];
  for (const [app, a] of Object.entries(spec.apps)) {
    y.push(`  ${app}:`, `    command: ${a.command ?? `bin/daemon --app ${app}${a.args ? ' ' + a.args : ''}`}`);
    if (a.service === false) {
      if (a.refresh) y.push(`    refresh-mode: ${a.refresh}`);
      continue;
    }
    y.push('    daemon: simple', `    stop-timeout: ${a.timeout ?? '2s'}`);
    if (a.refresh) y.push(`    refresh-mode: ${a.refresh}`);
    if (a.stop) y.push(`    stop-mode: ${a.stop}`);
  }
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), y.join('\n') + '\n');
  for (const [hook, extra] of Object.entries(spec.hooks ?? {})) {
    fs.writeFileSync(path.join(dir, 'meta', 'hooks', hook), script(`hook ${hook} ${extra ? extra + ' ' : ''}`), { mode: 0o755 });
  }
  return dir;
}

/** Revision A (1.0) and B (2.0) of the same snap; `changeB` adjusts B's spec. */
function snapPair(name: string, apps: Record<string, AppSpec>, hooks: Record<string, string> = {}, changeB: (s: SnapSpec) => void = () => {}) {
  const a = writeSnap({ name, version: '1.0', apps, hooks });
  const specB: SnapSpec = { name, version: '2.0', apps: JSON.parse(JSON.stringify(apps)), hooks: { ...hooks } };
  changeB(specB);
  return { a, b: writeSnap(specB) };
}

// ------------------------------------------------------------------ per-test state root, cgroup parent, supervisor

interface Daemon {
  child: ChildProcess;
  exit: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  exited: { code: number | null; signal: NodeJS.Signals | null } | null;
}

interface Ctx {
  root: string;
  cg: string;
  name: string;
  daemonLog: string;
  daemon: Daemon | null;
  /** Other processes this test started (snapproc run clients). */
  children: ChildProcess[];
}

let seq = 0;
function newCtx(): Ctx {
  const root = fs.mkdtempSync(path.join(os.tmpdir(), 'snapproc-refresh-root-'));
  const cg = makeCgroup(`refresh-${++seq}`);
  const daemonLog = path.join(tmpdir('snapproc-refresh-log-'), 'daemon.log');
  return { root, cg, name: uniqueSnapName('rf'), daemonLog, daemon: null, children: [] };
}

function baseEnv(ctx: Ctx, extra: Record<string, string> = {}): NodeJS.ProcessEnv {
  const env: NodeJS.ProcessEnv = { ...process.env, SNAPPROC_ROOT: ctx.root, SNAPPROC_CGROUP_PARENT: ctx.cg, SNAPPROC_NO_AUTOSTART: '1', ...extra };
  for (const k of ['SNAPPROC_CRASH_AT', 'SNAPPROC_HOOK_TIMEOUT_MS']) if (!(k in extra)) delete env[k];
  return env;
}

function tail(file: string, n = 25): string {
  try {
    return fs.readFileSync(file, 'utf8').trim().split('\n').slice(-n).join('\n');
  } catch {
    return '';
  }
}

/** Starts `snapproc daemon` for the test's root and waits until it answers (after its recovery of unfinished changes). */
async function startDaemon(ctx: Ctx, env: Record<string, string> = {}): Promise<Daemon> {
  const out = fs.openSync(ctx.daemonLog, 'a');
  const child = spawn(process.execPath, [CLI, '--root', ctx.root, 'daemon'], { stdio: ['ignore', out, out], env: baseEnv(ctx, env) });
  fs.closeSync(out);
  const d: Daemon = { child, exit: null as never, exited: null };
  d.exit = new Promise((resolve) => child.once('exit', (code, signal) => resolve((d.exited = { code, signal }))));
  ctx.daemon = d;
  const deadline = Date.now() + 20_000;
  for (;;) {
    if (d.exited) throw new Error(`snapproc daemon exited (${JSON.stringify(d.exited)}):\n${tail(ctx.daemonLog)}`);
    try {
      await request(ctx.root, 'ping');
      return d;
    } catch {
      // not listening yet
    }
    if (Date.now() > deadline) throw new Error(`snapproc daemon did not answer within 20 s:\n${tail(ctx.daemonLog)}`);
    await sleep(25);
  }
}

async function stopDaemon(ctx: Ctx): Promise<void> {
  const d = ctx.daemon;
  ctx.daemon = null;
  if (!d || d.exited) return;
  d.child.kill('SIGTERM'); // not PID 1: it exits and leaves the services (killed with the cgroup below)
  const t = setTimeout(() => d.exited || d.child.kill('SIGKILL'), 5000);
  await d.exit;
  clearTimeout(t);
}

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mount points at or below `dir`, deepest first. */
function mountsUnder(dir: string): string[] {
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => unescapeMountinfo(l.split(' ')[4]))
    .filter((m) => m === dir || m.startsWith(dir + '/'))
    .sort((a, b) => b.length - a.length);
}

function unmountUnder(dir: string): void {
  for (let i = 0; i < 20; i++) {
    const mounts = mountsUnder(dir);
    if (mounts.length === 0) return;
    for (const m of new Set(mounts)) spawnSync('umount', ['-R', '-l', m], { stdio: 'ignore' });
  }
  process.stderr.write(`warning: still mounted under ${dir}: ${mountsUnder(dir).join(' ')}\n`);
}

function populated(cg: string): boolean {
  try {
    return /populated 1/.test(fs.readFileSync(path.join(cg, 'cgroup.events'), 'utf8'));
  } catch {
    return false;
  }
}

function removeCgroupDirs(dir: string): void {
  if (!fs.existsSync(dir)) return;
  for (const e of fs.readdirSync(dir, { withFileTypes: true })) if (e.isDirectory()) removeCgroupDirs(path.join(dir, e.name));
  try {
    fs.rmdirSync(dir);
  } catch {
    // reported by cleanupParent at exit if it stays
  }
}

async function cleanupCtx(ctx: Ctx): Promise<void> {
  await stopDaemon(ctx).catch(() => undefined);
  for (const c of ctx.children) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  // Everything the test's services, apps and hooks left: all of it is in the test's own cgroup.
  if (fs.existsSync(ctx.cg)) {
    try {
      fs.writeFileSync(path.join(ctx.cg, 'cgroup.kill'), '1');
    } catch {
      // gone
    }
    const deadline = Date.now() + 5000;
    while (populated(ctx.cg) && Date.now() < deadline) await sleep(20);
    removeCgroupDirs(ctx.cg);
  }
  unmountUnder(ctx.root);
  fs.rmSync(ctx.root, { recursive: true, force: true });
}

/** Only the privileged tests whose name contains this (for working on one). */
const ONLY = process.env.SNAPPROC_REFRESH_TEST_ONLY;

/** A privileged test with its own state root and cgroup parent, always cleaned up. */
function rtest(name: string, fn: (ctx: Ctx) => Promise<void>): void {
  if (ONLY && !name.includes(ONLY)) return;
  rootTest(name, async () => {
    const ctx = newCtx();
    try {
      await fn(ctx);
    } catch (err) {
      process.stderr.write(`\n--- ${name}: supervisor log (last lines) ---\n${tail(ctx.daemonLog, 40)}\n---\n`);
      throw err;
    } finally {
      await cleanupCtx(ctx);
    }
  });
}

interface CallResult {
  ok: boolean;
  result: any; // eslint-disable-line @typescript-eslint/no-explicit-any
  error: (Error & { code?: string }) | null;
  progress: string[];
}

async function call(ctx: Ctx, method: string, params: Record<string, unknown> = {}): Promise<CallResult> {
  const progress: string[] = [];
  try {
    const result = await request(ctx.root, method, params, (l) => progress.push(l));
    return { ok: true, result, error: null, progress };
  } catch (error) {
    return { ok: false, result: null, error: error as Error, progress };
  }
}

async function mustCall(ctx: Ctx, method: string, params: Record<string, unknown> = {}): Promise<CallResult> {
  const r = await call(ctx, method, params);
  if (!r.ok) throw new Error(`${method} failed: ${r.error?.message}\nprogress:\n${r.progress.join('\n')}`);
  return r;
}

function runCli(ctx: Ctx, args: string[]): Promise<{ code: number | null; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, '--root', ctx.root, '--no-autostart', ...args], { env: baseEnv(ctx), stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

// ------------------------------------------------------------------ reading what happened

interface Ev {
  pid: number;
  ppid: number;
  pgid: number;
  sid: number;
  app: string;
  role: string;
  rev: string | null;
  t: number;
  event: string;
  signal?: string;
  data?: string | null;
  common?: string;
  hook?: string;
  env?: Record<string, string | null>;
  cwd?: string;
  cgroup?: string;
  links?: { snap: string | null; data: string | null };
  services?: Record<string, number>;
  successor?: number;
}

const paths = (ctx: Ctx, rev = 'x1') => ({
  snapDir: path.join(ctx.root, 'snap', ctx.name),
  varDir: path.join(ctx.root, 'var', 'snap', ctx.name),
  snap: path.join(ctx.root, 'snap', ctx.name, rev),
  data: path.join(ctx.root, 'var', 'snap', ctx.name, rev),
  common: path.join(ctx.root, 'var', 'snap', ctx.name, 'common'),
  snapCurrent: path.join(ctx.root, 'snap', ctx.name, 'current'),
  dataCurrent: path.join(ctx.root, 'var', 'snap', ctx.name, 'current'),
});

function events(ctx: Ctx): Ev[] {
  const file = path.join(paths(ctx).common, 'events.log');
  if (!fs.existsSync(file)) return [];
  return fs
    .readFileSync(file, 'utf8')
    .split('\n')
    .filter(Boolean)
    .flatMap((l) => {
      try {
        return [JSON.parse(l) as Ev];
      } catch {
        return []; // a line being written
      }
    });
}

type Family = { main: number; group?: number; other?: number };

/** The processes of an app that started in `rev` (the last start per role). */
function family(evs: Ev[], app: string, rev: string): Partial<Family> {
  const out: Partial<Family> = {};
  for (const e of evs) if (e.event === 'start' && e.app === app && e.rev === rev) (out as Record<string, number>)[e.role] = e.pid;
  return out;
}

/** Waits until each app has started in `rev` with the roles given (default main, group, other), optionally with a main other than `not`. */
async function waitFamilies(ctx: Ctx, apps: string[], rev: string, roles: string[] = ['main', 'group', 'other'], not: Record<string, number> = {}): Promise<Record<string, Family>> {
  return waitFor(`start of ${apps.join(', ')} in ${rev}`, () => {
    const evs = events(ctx);
    const out: Record<string, Family> = {};
    for (const app of apps) {
      const starts = evs.filter((e) => e.event === 'start' && e.app === app && e.rev === rev);
      // the last main not excluded, and the children it started after it
      const mains = starts.filter((e) => e.role === 'main' && e.pid !== not[app]);
      if (mains.length === 0) return null;
      const main = mains[mains.length - 1];
      const fam: Record<string, number> = { main: main.pid };
      for (const r of roles.filter((r) => r !== 'main')) {
        const c = starts.filter((e) => e.role === r && e.ppid === main.pid);
        if (c.length === 0) return null;
        fam[r] = c[c.length - 1].pid;
      }
      out[app] = fam as Family;
    }
    return out;
  }, 15_000);
}

function signalsOfPid(evs: Ev[], pid: number): string[] {
  return evs.filter((e) => e.pid === pid && e.event === 'signal').map((e) => e.signal!);
}

function linkOf(p: string): string | null {
  try {
    return fs.readlinkSync(p);
  } catch {
    return null;
  }
}

function links(ctx: Ctx): { snap: string | null; data: string | null } {
  const p = paths(ctx);
  return { snap: linkOf(p.snapCurrent), data: linkOf(p.dataCurrent) };
}

interface Rec { app: string; revision: string; state: string; mainPid: number | null; wanted: boolean }
async function records(ctx: Ctx): Promise<Record<string, Rec>> {
  const r = await mustCall(ctx, 'status', { snap: ctx.name });
  return Object.fromEntries((r.result as Rec[]).map((x) => [x.app, x]));
}

function snapCgroups(ctx: Ctx) {
  return findSnapCgroups(ctx.name, { under: ctx.cg });
}

/** Revision executed by each process in the snap's cgroups. */
function runningRevisions(ctx: Ctx): Array<{ cgroup: string; pid: number; revision: string | null }> {
  const out: Array<{ cgroup: string; pid: number; revision: string | null }> = [];
  for (const cg of snapCgroups(ctx)) {
    try {
      for (const p of classifyCgroup(cg.path, { revisions: true }).processes) out.push({ cgroup: path.basename(cg.path), pid: p.pid, revision: p.revision });
    } catch {
      // removed meanwhile
    }
  }
  return out;
}

function serviceCgroupPids(ctx: Ctx, app: string): number[] {
  const cg = snapCgroups(ctx).find((c) => c.kind === 'service' && c.app === app);
  if (!cg) return [];
  return classifyCgroup(cg.path).processes.map((p) => p.pid);
}

function refreshChanges(ctx: Ctx): ChangeRecord<any>[] { // eslint-disable-line @typescript-eslint/no-explicit-any
  return loadChanges(ctx.root).filter((c) => c.kind === 'refresh' && c.snap === ctx.name);
}

/** A description of every entry of a data tree: type, mode, owner, times, content, link target, xattrs. */
function snapshot(dir: string, skip = /^(probe-|at-signal|history)/): Record<string, string> {
  const out: Record<string, string> = {};
  const walk = (rel: string) => {
    const full = path.join(dir, rel);
    const st = fs.lstatSync(full);
    const type = st.isSymbolicLink() ? 'link' : st.isDirectory() ? 'dir' : st.isFile() ? 'file' : 'other';
    let desc = `${type} mode=${(st.mode & 0o7777).toString(8)} uid=${st.uid} gid=${st.gid}`;
    // the top directory's mtime moves with every probe write; everything inside must be kept exactly
    if (rel !== '.') desc += ` mtime=${Math.floor(st.mtimeMs)}`;
    if (type === 'file') desc += ` sha=${createHash('sha1').update(fs.readFileSync(full)).digest('hex')}`;
    if (type === 'link') desc += ` -> ${fs.readlinkSync(full)}`;
    const x = spawnSync('getfattr', ['-h', '-d', '-m', '-', '--absolute-names', full], { encoding: 'utf8' });
    const attrs = (x.stdout ?? '').split('\n').filter((l) => l && !l.startsWith('#')).sort();
    if (attrs.length) desc += ` xattr=${attrs.join(',')}`;
    out[rel] = desc;
    if (type === 'dir') for (const e of fs.readdirSync(full).sort()) if (rel !== '.' || !skip.test(e)) walk(rel === '.' ? e : path.join(rel, e));
  };
  walk('.');
  return out;
}

/** Fills A's $SNAP_DATA with entries a faithful copy must keep. */
function populateData(dir: string): void {
  const when = new Date('2001-09-09T01:46:40Z');
  fs.writeFileSync(path.join(dir, 'marker'), 'data of x1\n');
  fs.writeFileSync(path.join(dir, 'f'), 'payload\n', { mode: 0o640 });
  fs.chmodSync(path.join(dir, 'f'), 0o640);
  fs.chownSync(path.join(dir, 'f'), 1234, 2345);
  spawnSync('setfattr', ['-n', 'user.snapproc', '-v', 'kept', path.join(dir, 'f')]);
  fs.utimesSync(path.join(dir, 'f'), when, when);
  fs.mkdirSync(path.join(dir, 'd'));
  fs.writeFileSync(path.join(dir, 'd', 'inner'), 'inner\n');
  fs.chmodSync(path.join(dir, 'd'), 0o710);
  fs.utimesSync(path.join(dir, 'd'), when, when);
  fs.symlinkSync('f', path.join(dir, 'l'));
  fs.symlinkSync('/nonexistent/target', path.join(dir, 'dangling'));
}

function dirEntries(dir: string): string[] {
  try {
    return fs.readdirSync(dir).sort();
  } catch {
    return [];
  }
}

/** The revision's expected environment (SPEC 5: what hooks get). */
function expectedEnv(ctx: Ctx, rev: string, version: string): Record<string, string> {
  const p = paths(ctx, rev);
  return {
    SNAP: p.snap,
    SNAP_NAME: ctx.name,
    SNAP_INSTANCE_NAME: ctx.name,
    SNAP_REVISION: rev,
    SNAP_VERSION: version,
    SNAP_DATA: p.data,
    SNAP_COMMON: p.common,
    SNAP_ARCH: dpkgArchitecture(),
  };
}

function pick<T extends object>(o: T | undefined, keys: string[]): Record<string, unknown> {
  return Object.fromEntries(keys.map((k) => [k, (o as Record<string, unknown> | undefined)?.[k]]));
}

// ------------------------------------------------------------------ the standard two-service snap

/** rs: restart-mode, stop-mode sigterm-all; en: endure (stop-mode sigterm); both with a child in their group and a setsid'd child. */
const STANDARD: Record<string, AppSpec> = {
  rs: { args: `${FAMILY} --note --probe`, refresh: 'restart', stop: 'sigterm-all' },
  en: { args: `${FAMILY} --probe`, refresh: 'endure', stop: 'sigterm' },
};
const HOOKS_OK = { 'pre-refresh': '', 'post-refresh': '' };

async function installStandard(ctx: Ctx, pair: { a: string }, daemonEnv: Record<string, string> = {}, beforeInstall: () => void = () => {}) {
  await startDaemon(ctx, daemonEnv);
  beforeInstall();
  await mustCall(ctx, 'install', { path: pair.a });
  const fams = await waitFamilies(ctx, ['rs', 'en'], 'x1');
  populateData(paths(ctx).data);
  return fams;
}

// ================================================================== tests

rtest('refresh: PIDs by refresh-mode x stop-mode: kept, new in B, children left (plain) or gone (-all)', async (ctx) => {
  const apps: Record<string, AppSpec> = {
    rterm: { args: FAMILY, refresh: 'restart', stop: 'sigterm' },
    rhup: { args: FAMILY, refresh: 'restart', stop: 'sighup' },
    rall: { args: FAMILY }, // the defaults: restart, sigterm-all
    rintall: { args: FAMILY, refresh: 'restart', stop: 'sigint-all' },
    enterm: { args: FAMILY, refresh: 'endure', stop: 'sigterm' },
    enusr1all: { args: FAMILY, refresh: 'endure', stop: 'sigusr1-all' },
  };
  const restartSignal: Record<string, [string, boolean]> = { rterm: ['SIGTERM', false], rhup: ['SIGHUP', false], rall: ['SIGTERM', true], rintall: ['SIGINT', true] };
  const enduring = ['enterm', 'enusr1all'];
  const pair = snapPair(ctx.name, apps);
  await startDaemon(ctx);
  await mustCall(ctx, 'install', { path: pair.a });
  const A = await waitFamilies(ctx, Object.keys(apps), 'x1');

  const r = await mustCall(ctx, 'refresh', { snap: ctx.name, from: pair.b });
  assert.is(r.result.from, 'x1');
  assert.is(r.result.to, 'x2');
  assert.equal([...r.result.enduring].sort(), enduring);
  const B = await waitFamilies(ctx, Object.keys(restartSignal), 'x2');
  await sleep(150); // late signals, if any, would show up in the log now
  const evs = events(ctx);
  const recs = await records(ctx);

  for (const [app, [sig, all]] of Object.entries(restartSignal)) {
    const a = A[app];
    const b = B[app];
    assert.equal(signalsOfPid(evs, a.main), [sig], `${app}: the old main process gets ${sig} once`);
    assert.not.ok(alive(a.main), `${app}: the old main process is gone`);
    for (const child of [a.group!, a.other!]) {
      if (all) {
        assert.equal(signalsOfPid(evs, child), [sig], `${app} (-all): child ${child} gets ${sig}`);
        assert.not.ok(alive(child), `${app} (-all): child ${child} is gone`);
      } else {
        assert.equal(signalsOfPid(evs, child), [], `${app} (plain): child ${child} is not signalled`);
        assert.ok(alive(child), `${app} (plain): child ${child} survives the stop`);
        assert.is(revisionOf(child), 'x1', `${app}: the surviving child still runs x1`);
        assert.ok(serviceCgroupPids(ctx, app).includes(child), `${app}: the surviving child stays in the service's cgroup`);
      }
    }
    for (const pid of [b.main, b.group!, b.other!]) {
      assert.ok(![a.main, a.group, a.other].includes(pid), `${app}: ${pid} is a new process`);
      assert.ok(alive(pid), `${app}: new process ${pid} runs`);
      assert.is(revisionOf(pid), 'x2', `${app}: new process ${pid} runs x2`);
    }
    assert.is(recs[app].mainPid, b.main, `${app}: the record's main PID is B's`);
    assert.is(recs[app].revision, 'x2');
    assert.is(recs[app].state, 'active');
    const expected = all ? [b.main, b.group!, b.other!] : [b.main, b.group!, b.other!, a.group!, a.other!];
    assert.equal(serviceCgroupPids(ctx, app).sort((x, y) => x - y), expected.sort((x, y) => x - y), `${app}: who is in the cgroup`);
  }
  for (const app of enduring) {
    const a = A[app];
    for (const pid of [a.main, a.group!, a.other!]) {
      assert.ok(alive(pid), `${app}: ${pid} endures`);
      assert.equal(signalsOfPid(evs, pid), [], `${app}: ${pid} is not signalled`);
      assert.is(revisionOf(pid), 'x1');
    }
    assert.equal(family(evs, app, 'x2'), {}, `${app}: nothing of it starts in x2`);
    assert.is(recs[app].mainPid, a.main, `${app}: the record keeps the enduring main PID`);
    assert.equal(serviceCgroupPids(ctx, app).sort((x, y) => x - y), [a.main, a.group!, a.other!].sort((x, y) => x - y));
  }

  // ps shows the mixed revisions (SPEC 3).
  const ps = spawnSync(process.execPath, [CLI, '--root', ctx.root, 'ps', ctx.name, '--json'], { encoding: 'utf8', env: baseEnv(ctx) });
  assert.is(ps.status, 0, ps.stderr);
  const doc = JSON.parse(ps.stdout) as { apps: Array<{ app: string; mainPid: number | null; processes: Array<{ pid: number; revision: string | null }> }> };
  const revs = (app: string) => Object.fromEntries(doc.apps.find((x) => x.app === app)!.processes.map((p) => [p.pid, p.revision]));
  assert.equal(revs('enterm'), { [A.enterm.main]: 'x1', [A.enterm.group!]: 'x1', [A.enterm.other!]: 'x1' });
  assert.equal(revs('rterm'), { [B.rterm.main]: 'x2', [B.rterm.group!]: 'x2', [B.rterm.other!]: 'x2', [A.rterm.group!]: 'x1', [A.rterm.other!]: 'x1' });
  assert.is(doc.apps.find((x) => x.app === 'rterm')!.mainPid, B.rterm.main);
});

rtest('refresh: hook order (pre-refresh of A before any stop, post-refresh of B after the link and before B starts) and hook environment', async (ctx) => {
  const pair = snapPair(ctx.name, STANDARD, HOOKS_OK);
  const A = await installStandard(ctx, pair);
  await mustCall(ctx, 'refresh', { snap: ctx.name, from: pair.b });
  await waitFamilies(ctx, ['rs'], 'x2');
  const evs = events(ctx);
  const hooks = evs.filter((e) => e.event === 'hook');
  assert.equal(hooks.map((h) => `${h.hook}@${h.rev}`), ['pre-refresh@x1', 'post-refresh@x2'], 'exactly A\'s pre-refresh and B\'s post-refresh ran');
  const [pre, post] = hooks;
  const keys = Object.keys(expectedEnv(ctx, 'x1', '1.0'));
  assert.equal(pick(pre.env, keys), expectedEnv(ctx, 'x1', '1.0'), 'pre-refresh runs in A\'s environment');
  assert.equal(pick(post.env, keys), expectedEnv(ctx, 'x2', '2.0'), 'post-refresh runs in B\'s environment');
  for (const h of hooks) {
    const full = path.join(cgroupMount!, h.cgroup!);
    assert.is(path.dirname(full), ctx.cg, `${h.hook} runs in a cgroup of the supervisor's parent`);
    assert.match(path.basename(full), new RegExp(`^snap\\.${ctx.name}\\.hook\\.${h.hook}-[0-9a-f-]{36}\\.scope$`), `${h.hook} has a hook scope of its own`);
  }
  // pre-refresh: A current, A's services up.
  assert.equal(pre.links, { snap: 'x1', data: 'x1' });
  assert.equal(pre.services, { rs: 3, en: 3 }, 'A\'s services are up while its pre-refresh hook runs');
  const iPre = evs.indexOf(pre);
  const firstSignal = evs.findIndex((e) => e.event === 'signal');
  assert.ok(firstSignal > iPre, 'no service of A is signalled before its pre-refresh hook ran');
  assert.equal(signalsOfPid(evs, A.rs.main), ['SIGTERM']);
  // post-refresh: B linked, B's services not started, A's restart-mode service stopped.
  assert.equal(post.links, { snap: 'x2', data: 'x2' }, 'post-refresh runs after both current links point at B');
  assert.equal({ rs: post.services?.rs ?? 0, en: post.services?.en }, { rs: 0, en: 3 }, 'post-refresh runs after A\'s rs stopped and before B\'s started');
  const iPost = evs.indexOf(post);
  const startsB = evs.map((e, i) => [e, i] as const).filter(([e]) => e.event === 'start' && e.rev === 'x2');
  assert.ok(startsB.length >= 3);
  for (const [, i] of startsB) assert.ok(i > iPost, 'every start in x2 comes after the post-refresh hook');
  const lastStopOfA = Math.max(...evs.map((e, i) => (e.event === 'signal' && e.rev === 'x1' ? i : -1)));
  assert.ok(lastStopOfA < iPost);
  assert.equal(snapCgroups(ctx).filter((c) => c.kind === 'hook'), [], 'hook scopes are removed after the hooks ran');
});

rtest('refresh: $SNAP_DATA copied faithfully; an enduring process gets EROFS on A\'s $SNAP_DATA, $SNAP_COMMON stays writable', async (ctx) => {
  const pair = snapPair(ctx.name, STANDARD, HOOKS_OK);
  const A = await installStandard(ctx, pair);
  const dataA = paths(ctx, 'x1').data;
  const dataB = paths(ctx, 'x2').data;
  const before = snapshot(dataA);
  const historyA = fs.readFileSync(path.join(dataA, 'history'), 'utf8');
  assert.match(before['f'], /uid=1234 gid=2345/);
  assert.match(before['f'], /xattr=user.snapproc="kept"/);
  await waitFor('en writes its data', () => events(ctx).some((e) => e.pid === A.en.main && e.event === 'probe' && e.data === 'ok'));

  await mustCall(ctx, 'refresh', { snap: ctx.name, from: pair.b });
  const B = await waitFamilies(ctx, ['rs'], 'x2');
  const copy = snapshot(dataB);
  assert.equal(copy, before, 'B\'s $SNAP_DATA is a faithful copy of A\'s (owners, modes, times, xattrs, symlinks)');
  assert.equal(snapshot(dataA), before, 'A\'s $SNAP_DATA is left as it was');
  const historyB = fs.readFileSync(path.join(dataB, 'history'), 'utf8');
  assert.ok(historyB.startsWith(historyA), 'B starts from A\'s data');
  assert.match(historyB.slice(historyA.length), new RegExp(`^started x2 ${B.rs.main}\\n$`));

  assert.ok(isReadOnlyMounted(dataA), 'A\'s $SNAP_DATA is read-only while x1 processes endure');
  assert.not.ok(isReadOnlyMounted(dataB));
  const probe = await waitFor('the enduring process sees EROFS on A\'s $SNAP_DATA', () =>
    events(ctx).find((e) => e.pid === A.en.main && e.event === 'probe' && e.data !== 'ok'),
  );
  assert.is(probe.data, 'EROFS', 'its write to A\'s $SNAP_DATA fails with EROFS');
  assert.is(probe.common, 'ok', 'its write to $SNAP_COMMON succeeds');
  assert.ok(alive(A.en.main));
  await waitFor('B\'s rs writes its own data', () => events(ctx).some((e) => e.pid === B.rs.main && e.event === 'probe' && e.data === 'ok' && e.common === 'ok'));
});

// ------------------------------------------------------------------ failure injection

interface Failure {
  name: string;
  hooks?: Record<string, string>;
  changeB?: (s: SnapSpec) => void;
  daemonEnv?: Record<string, string>;
  /** Set up before install (gets the state root's paths). */
  beforeInstall?: (ctx: Ctx) => void;
  /** After install and population of A's data. */
  afterInstall?: (ctx: Ctx) => void;
  error: (ctx: Ctx) => RegExp;
  /** Whether A's restart-mode service was stopped before the failure (and so started again by the undo). */
  stopped: boolean;
}

const FAILURES: Failure[] = [
  {
    name: 'the pre-refresh hook of A fails',
    hooks: { 'pre-refresh': '--exit 1', 'post-refresh': '' },
    changeB: (s) => (s.hooks = HOOKS_OK),
    error: (ctx) => new RegExp(`pre-refresh hook of ${ctx.name} x1 exited with status 1`),
    stopped: false,
  },
  {
    name: 'the pre-refresh hook of A times out',
    hooks: { 'pre-refresh': '--hang', 'post-refresh': '' },
    changeB: (s) => (s.hooks = HOOKS_OK),
    daemonEnv: { SNAPPROC_HOOK_TIMEOUT_MS: '700' },
    error: (ctx) => new RegExp(`pre-refresh hook of ${ctx.name} x1 timed out after 700 ms`),
    stopped: false,
  },
  {
    name: 'copying $SNAP_DATA fails (ENOSPC)',
    hooks: HOOKS_OK,
    beforeInstall: (ctx) => {
      // The snap's data on a small file system: A's data fits, a second copy does not.
      fs.mkdirSync(paths(ctx).varDir, { recursive: true });
      const r = spawnSync('mount', ['-t', 'tmpfs', '-o', 'size=4m', 'tmpfs', paths(ctx).varDir], { encoding: 'utf8' });
      if (r.status !== 0) throw new Error(`mount tmpfs: ${r.stderr}`);
    },
    afterInstall: (ctx) => fs.writeFileSync(path.join(paths(ctx).data, 'big'), Buffer.alloc(3 * 1024 * 1024, 7)),
    error: () => /cannot copy .*(No space left on device|ENOSPC)/,
    stopped: true,
  },
  {
    name: 'the post-refresh hook of B fails',
    hooks: HOOKS_OK,
    changeB: (s) => (s.hooks = { 'pre-refresh': '', 'post-refresh': '--exit 3' }),
    error: (ctx) => new RegExp(`post-refresh hook of ${ctx.name} x2 exited with status 3`),
    stopped: true,
  },
  {
    name: 'a service of B dies at once',
    hooks: HOOKS_OK,
    changeB: (s) => (s.apps.rs.command = 'bin/fail'),
    error: () => /rs failed: main process \d+ exited with status 1 within \d+ ms of its start/,
    stopped: true,
  },
  {
    name: 'a command of B is missing',
    hooks: HOOKS_OK,
    changeB: (s) => (s.apps.rs.command = 'bin/missing --app rs'),
    error: () => /app "rs" command "bin\/missing" does not exist in the snap/,
    stopped: false,
  },
];

for (const f of FAILURES) {
  rtest(`refresh failure rolled back exactly: ${f.name}`, async (ctx) => {
    const pair = snapPair(ctx.name, STANDARD, f.hooks ?? {}, f.changeB);
    const A = await installStandard(ctx, pair, f.daemonEnv, () => f.beforeInstall?.(ctx));
    f.afterInstall?.(ctx);
    const p = paths(ctx);
    const dataBefore = snapshot(p.data);
    const varBefore = dirEntries(p.varDir);
    const snapBefore = dirEntries(p.snapDir);

    const r = await call(ctx, 'refresh', { snap: ctx.name, from: pair.b });
    assert.not.ok(r.ok, 'the refresh fails');
    assert.match(r.error!.message, f.error(ctx));
    const change = refreshChanges(ctx)[0];
    const why = `change ${change?.status}: ${change?.error}; steps ${change?.steps.map((s) => `${s.name}=${s.status}`).join(' ')}`;
    assert.equal(links(ctx), { snap: 'x1', data: 'x1' }, `both current links point at A again (${why})`);
    assert.is(change.status, 'undone', why);
    const listed = (await mustCall(ctx, 'list')).result as Array<{ name: string; current: string; revisions: Array<{ revision: string }> }>;
    const me = listed.find((s) => s.name === ctx.name)!;
    assert.equal([me.current, me.revisions.map((x) => x.revision)], ['x1', ['x1']], 'B is no longer installed');
    assert.equal(dirEntries(p.snapDir), snapBefore, 'nothing of B is left under R/snap');
    assert.equal(dirEntries(p.varDir), varBefore, 'nothing of B (data, moved-aside or partial copies) is left under R/var/snap');
    assert.not.ok(isReadOnlyMounted(p.data), 'A\'s $SNAP_DATA is writable again');
    assert.equal(snapshot(p.data), dataBefore, 'A\'s data is as it was');

    const evs = events(ctx);
    for (const pid of [A.en.main, A.en.group!, A.en.other!]) {
      assert.ok(alive(pid), `enduring ${pid} still runs`);
      assert.equal(signalsOfPid(evs, pid), [], `enduring ${pid} is never signalled (not by the undo either)`);
    }
    let rsMain = A.rs.main;
    if (f.stopped) {
      assert.equal(signalsOfPid(evs, A.rs.main), ['SIGTERM'], 'A\'s rs was stopped by its stop-mode');
      rsMain = (await waitFamilies(ctx, ['rs'], 'x1', ['main', 'group', 'other'], { rs: A.rs.main })).rs.main;
    } else {
      assert.equal(signalsOfPid(evs, A.rs.main), [], 'nothing was stopped');
      assert.ok(alive(A.rs.main));
    }
    const recs = await records(ctx);
    assert.equal(pick(recs.rs, ['revision', 'state', 'mainPid']), { revision: 'x1', state: 'active', mainPid: rsMain }, 'A\'s rs runs');
    assert.equal(pick(recs.en, ['revision', 'state', 'mainPid']), { revision: 'x1', state: 'active', mainPid: A.en.main }, 'the enduring main PID is unchanged');
    await sleep(100);
    const wrong = runningRevisions(ctx).filter((x) => x.revision !== 'x1');
    assert.equal(wrong, [], 'only processes of A run in the snap\'s cgroups');
    assert.is(serviceCgroupPids(ctx, 'rs').length, 3, 'A\'s rs runs once (main, group, other)');
    assert.equal(snapCgroups(ctx).filter((c) => c.kind === 'hook'), [], 'no hook scope is left');
    if (f.stopped) {
      await waitFor('the enduring process can write A\'s $SNAP_DATA', () => {
        const probes = events(ctx).filter((e) => e.pid === A.en.main && e.event === 'probe');
        return probes.length > 0 && probes[probes.length - 1].data === 'ok';
      });
    }
  });
}

// ------------------------------------------------------------------ crash at every step boundary

// The step names come from the product: a renamed step cannot silently drop out of the loop.
const STEP_NAMES = refreshSteps({ store: null } as never).map((s) => s.name);

test('refresh steps are the SPEC 5 steps in order', () => {
  assert.equal(STEP_NAMES, ['validate', 'pre-refresh', 'stop-services', 'unlink-copy-data', 'protect-old-data', 'link', 'post-refresh', 'start-services', 'prune']);
});

/** The standard snap plus a service that upgrades in place (sigusr2-all hand-over). */
const CRASH_APPS: Record<string, AppSpec> = {
  ...STANDARD,
  hs: { args: `${FAMILY} --handover SIGUSR2`, refresh: 'sigusr2-all', stop: 'sigterm' },
};

for (const step of STEP_NAMES) {
  for (const when of ['before', 'after'] as const) {
    rtest(`SIGKILL of the supervisor at ${step}:${when} -> recovered to one consistent state`, async (ctx) => {
      const pair = snapPair(ctx.name, CRASH_APPS, HOOKS_OK);
      const A = await installStandard(ctx, pair, { SNAPPROC_CRASH_AT: `${step}:${when}` });
      const hsA = (await waitFamilies(ctx, ['hs'], 'x1')).hs;
      const crashed = ctx.daemon!;
      const r = await call(ctx, 'refresh', { snap: ctx.name, from: pair.b });
      assert.not.ok(r.ok, `the refresh must not complete: the supervisor dies at ${step}:${when} (got ${JSON.stringify(r.result)})`);
      const how = await Promise.race([crashed.exit, sleep(10_000).then(() => null)]);
      assert.is(how?.signal, 'SIGKILL', 'the supervisor was SIGKILLed at the crash point');

      await startDaemon(ctx); // recovers before it answers
      const changes = refreshChanges(ctx);
      // Before the first step ran, nothing may be journalled yet (then nothing may have changed either).
      const first = STEP_NAMES.indexOf(step) === 0 && when === 'before';
      assert.ok(first ? changes.length <= 1 : changes.length === 1, `one journal of the refresh, found ${changes.length}`);
      const c = changes[0] ?? { status: 'undone', steps: [], error: 'not journalled' };
      const steps = c.steps.map((st) => `${st.name}=${st.status}`).join(' ');
      assert.ok(c.status === 'done' || c.status === 'undone', `the change is settled, not ${c.status}: ${c.error ?? ''} (${steps})`);
      if (c.status === 'done') assert.ok(c.steps.every((st) => st.status === 'done' || st.status === 'skipped'), `every step done: ${steps}`);
      else assert.ok(c.steps.every((st) => st.status === 'todo' || st.status === 'undone' || st.status === 'skipped'), `every started step undone: ${steps}`);
      const rev = c.status === 'done' ? 'x2' : 'x1';
      assert.equal(links(ctx), { snap: rev, data: rev }, `both current links agree on ${rev} (change ${c.status})`);
      const p = paths(ctx);
      const listed = ((await mustCall(ctx, 'list')).result as Array<{ name: string; current: string; revisions: Array<{ revision: string }> }>).find((s) => s.name === ctx.name)!;
      assert.equal(listed.revisions.map((x) => x.revision), rev === 'x2' ? ['x1', 'x2'] : ['x1']);
      const leftovers = [...dirEntries(p.snapDir), ...dirEntries(p.varDir)].filter((e) => /^\.|aside|copying|partial/.test(e) || (rev === 'x1' && e.startsWith('x2')));
      assert.equal(leftovers, [], 'no partial or moved-aside directories, nothing of an undone B');

      // Services: exactly one revision up, besides the enduring one.
      // (wait until the recorded main processes run with their children, then look for duplicates)
      const up = await records(ctx);
      for (const app of ['rs', 'hs']) {
        const main = up[app]?.mainPid ?? null;
        assert.ok(main !== null && alive(main), `${app} has a live main process (record: ${JSON.stringify(up[app])})`);
        await waitFor(`${app}'s children`, () => {
          const evs = events(ctx);
          return ['group', 'other'].every((role) => evs.some((e) => e.event === 'start' && e.role === role && e.ppid === main));
        });
      }
      await sleep(200);
      const recs = await records(ctx);
      const evs = events(ctx);
      for (const app of ['rs', 'hs']) {
        assert.equal(pick(recs[app], ['revision', 'state']), { revision: rev, state: 'active' }, `${app} is active in ${rev}`);
        const main = recs[app].mainPid;
        assert.ok(main !== null && alive(main), `${app} has a live main process`);
        assert.is(revisionOf(main!), rev, `${app}'s main process runs ${rev}`);
        const pids = serviceCgroupPids(ctx, app);
        assert.is(pids.length, 3, `${app} runs once (main, group, other), not twice: ${pids.join(' ')}`);
        for (const pid of pids) assert.is(revisionOf(pid), rev, `${app} process ${pid} runs ${rev}`);
        const mainsB = evs.filter((e) => e.event === 'start' && e.app === app && e.role === 'main' && e.rev === 'x2');
        assert.is(mainsB.length, rev === 'x2' ? 1 : 0, `${app}: ${mainsB.length} main processes started in x2`);
      }
      const stopped = STEP_NAMES.indexOf(step) > STEP_NAMES.indexOf('stop-services') || (step === 'stop-services' && when === 'after');
      if (!stopped && rev === 'x1') {
        assert.is(recs.rs.mainPid, A.rs.main, 'rs was never stopped');
        assert.equal(signalsOfPid(evs, A.rs.main), []);
      }
      if (rev === 'x1') {
        assert.is(recs.hs.mainPid, hsA.main, 'hs was never signalled: it runs on in A');
        assert.equal(signalsOfPid(evs, hsA.main), []);
      } else {
        assert.equal(signalsOfPid(evs, hsA.main), ['SIGUSR2'], 'hs was signalled once and handed over');
      }
      for (const pid of [A.en.main, A.en.group!, A.en.other!]) {
        assert.ok(alive(pid), `enduring ${pid} still runs`);
        assert.equal(signalsOfPid(evs, pid), [], `enduring ${pid} is never signalled`);
      }
      assert.equal(pick(recs.en, ['state', 'mainPid']), { state: 'active', mainPid: A.en.main }, 'the enduring main is re-adopted');
      assert.is(evs.filter((e) => e.event === 'start' && e.app === 'en' && e.role === 'main').length, 1, 'en was never started again');

      // Data: nothing lost.
      assert.is(fs.readFileSync(path.join(paths(ctx, 'x1').data, 'marker'), 'utf8'), 'data of x1\n');
      if (rev === 'x2') {
        assert.is(fs.readFileSync(path.join(paths(ctx, 'x2').data, 'marker'), 'utf8'), 'data of x1\n', 'B has A\'s data');
        assert.ok(isReadOnlyMounted(paths(ctx, 'x1').data), 'A\'s data is read-only for the enduring process');
        assert.ok(evs.some((e) => e.event === 'hook' && e.hook === 'post-refresh' && e.rev === 'x2'), 'B\'s post-refresh hook ran');
      } else {
        assert.not.ok(isReadOnlyMounted(paths(ctx, 'x1').data), 'A\'s data is writable');
        assert.not.ok(evs.some((e) => e.event === 'hook' && e.hook === 'post-refresh'), 'no post-refresh hook ran for an undone refresh');
      }

      // The recovered state is one the next change can start from.
      const again = await call(ctx, 'refresh', { snap: ctx.name, from: pair.b });
      assert.ok(again.ok, `a refresh after the recovery succeeds: ${again.error?.message}`);
      const next = again.result.to as string;
      assert.ok(next !== 'x1' && next !== rev, `a new revision, not ${next}`);
      assert.equal(links(ctx), { snap: next, data: next });
    });
  }
}

// ------------------------------------------------------------------ remove

rtest('remove: nothing of the snap keeps running (plain stop-mode children, app scope, hook scope, fork loop) within stop-timeout + a small bound', async (ctx) => {
  const apps: Record<string, AppSpec> = {
    plain: { args: FAMILY, stop: 'sigterm' },
    stubborn: { args: `${FAMILY} --ignore SIGTERM`, stop: 'sigterm-all', timeout: '2s' },
    forker: { args: '--fork-loop' },
    tool: { service: false, args: FAMILY },
  };
  const pair = snapPair(ctx.name, apps, { remove: '' });
  await startDaemon(ctx);
  await mustCall(ctx, 'install', { path: pair.a });
  const fams = await waitFamilies(ctx, ['plain', 'stubborn'], 'x1');
  await waitFamilies(ctx, ['forker'], 'x1', ['main']);
  const run = spawn(process.execPath, [CLI, '--root', ctx.root, 'run', `${ctx.name}.tool`], { env: baseEnv(ctx), stdio: 'ignore' });
  ctx.children.push(run);
  const runExit = new Promise((resolve) => run.once('exit', resolve));
  const tool = (await waitFamilies(ctx, ['tool'], 'x1')).tool;
  // A hook scope something was left running in.
  const hookScope = makeCgroup(path.basename(ctx.cg), hookScopeName(ctx.name, 'configure'));
  const leftover = await startTree(hookScope, ['--child', 'group', '--setsid-child', 'other'], ['main', 'group', 'other']);
  await waitFor('the fork loop forks', () => serviceCgroupPids(ctx, 'forker').length > 5);
  const pids = [
    ...Object.values(fams).flatMap((f) => [f.main, f.group!, f.other!]),
    tool.main, tool.group!, tool.other!,
    ...Object.values(leftover.pids),
    ...serviceCgroupPids(ctx, 'forker'),
  ];
  assert.ok(populated(ctx.cg));

  const t0 = Date.now();
  const r = await call(ctx, 'remove', { snap: ctx.name });
  const ms = Date.now() - t0;
  assert.ok(r.ok, r.error?.message);
  assert.ok(ms < 2000 + 3000, `remove took ${ms} ms (stop-timeout 2 s + 3 s)`);
  assert.not.ok(populated(ctx.cg), `no process is left in any cgroup of the snap: ${runningRevisions(ctx).map((x) => `${x.cgroup}:${x.pid}`).join(' ')}`);
  for (const pid of pids) assert.not.ok(alive(pid), `${pid} is gone`);
  for (const cg of snapCgroups(ctx)) assert.not.ok(populated(cg.path), `${cg.path} is empty`);
  const evs = events(ctx);
  assert.ok(evs.some((e) => e.event === 'hook' && e.hook === 'remove' && e.rev === 'x1'), 'the remove hook ran');
  assert.not.ok(fs.existsSync(paths(ctx).snapDir), 'the revisions are removed');
  assert.not.ok(fs.existsSync(paths(ctx).data), 'the data is removed');
  assert.ok(fs.existsSync(paths(ctx).common), '$SNAP_COMMON is kept without --purge');
  const listed = (await mustCall(ctx, 'list')).result as Array<{ name: string }>;
  assert.not.ok(listed.some((s) => s.name === ctx.name));
  await Promise.race([runExit, sleep(5000)]);
  assert.ok(run.exitCode !== null || run.signalCode !== null, 'the `snapproc run` of the killed app returned');
});

// ------------------------------------------------------------------ busy snap

rtest('refresh refuses a busy snap (running apps, pids), unless ignore-running; --ignore-running refreshes and leaves the apps running', async (ctx) => {
  const apps: Record<string, AppSpec> = {
    svc: { args: FAMILY },
    a: { service: false, args: '--child group' },
    b: { service: false },
    c: { service: false, refresh: 'ignore-running' },
  };
  const pair = snapPair(ctx.name, apps);
  await startDaemon(ctx);
  await mustCall(ctx, 'install', { path: pair.a });
  const svc = (await waitFamilies(ctx, ['svc'], 'x1')).svc;
  for (const app of ['a', 'b', 'c']) {
    ctx.children.push(spawn(process.execPath, [CLI, '--root', ctx.root, 'run', `${ctx.name}.${app}`], { env: baseEnv(ctx), stdio: 'ignore' }));
  }
  const runs = { ...(await waitFamilies(ctx, ['a'], 'x1', ['main', 'group'])), ...(await waitFamilies(ctx, ['b', 'c'], 'x1', ['main'])) };
  const appPids = (app: string) => snapCgroups(ctx).filter((c) => c.kind === 'app' && c.app === app).flatMap((c) => classifyCgroup(c.path).processes.map((p) => p.pid));
  const busy = [...appPids('a'), ...appPids('b')].sort((x, y) => x - y);
  assert.equal(busy, [runs.a.main, runs.a.group!, runs.b.main].sort((x, y) => x - y));

  const refused = await runCli(ctx, ['refresh', ctx.name, '--from', pair.b]);
  assert.is(refused.code, 1);
  // One line with snapd's wording (snapd, too, puts what failed in front: `cannot refresh "x": snap "x" has running apps ...`).
  assert.match(refused.stderr, new RegExp(`^error: (.*: )?snap "${ctx.name}" has running apps \\(a, b\\), pids: ${busy.join(',')}\n$`));
  assert.equal(links(ctx), { snap: 'x1', data: 'x1' });
  assert.equal(dirEntries(paths(ctx).snapDir), ['current', 'x1'], 'nothing of B was written');
  assert.ok(alive(svc.main));
  const all = [svc.main, svc.group!, svc.other!, runs.a.main, runs.a.group!, runs.b.main, runs.c.main];
  assert.equal(all.flatMap((pid) => signalsOfPid(events(ctx), pid)), [], 'nothing was signalled');

  const done = await runCli(ctx, ['refresh', ctx.name, '--from', pair.b, '--ignore-running']);
  assert.is(done.code, 0, done.stderr);
  assert.match(done.stdout, /validate/);
  assert.match(done.stdout, new RegExp(`refreshed ${ctx.name} x1 -> x2`));
  assert.equal(links(ctx), { snap: 'x2', data: 'x2' });
  await waitFamilies(ctx, ['svc'], 'x2');
  for (const pid of [runs.a.main, runs.a.group!, runs.b.main, runs.c.main]) {
    assert.ok(alive(pid), `app process ${pid} keeps running`);
    assert.equal(signalsOfPid(events(ctx), pid), [], `app process ${pid} is not signalled`);
  }
});

// ------------------------------------------------------------------ revert

rtest('revert: back to the previous revision with its data as left, services restarted per refresh-mode', async (ctx) => {
  const pair = snapPair(ctx.name, STANDARD, HOOKS_OK);
  const A = await installStandard(ctx, pair);
  const dataA = paths(ctx, 'x1').data;
  const dataB = paths(ctx, 'x2').data;
  const historyA = fs.readFileSync(path.join(dataA, 'history'), 'utf8');
  await mustCall(ctx, 'refresh', { snap: ctx.name, from: pair.b });
  const B = await waitFamilies(ctx, ['rs'], 'x2');
  fs.writeFileSync(path.join(dataB, 'marker'), 'data of x2\n');
  await waitFor('EROFS for the enduring process', () => events(ctx).some((e) => e.pid === A.en.main && e.event === 'probe' && e.data === 'EROFS'));

  const r = await runCli(ctx, ['revert', ctx.name]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`${ctx.name} reverted from x2 to x1\\n$`));
  assert.equal(links(ctx), { snap: 'x1', data: 'x1' });
  const listed = ((await mustCall(ctx, 'list')).result as Array<{ name: string; current: string; revisions: Array<{ revision: string }> }>).find((s) => s.name === ctx.name)!;
  assert.equal([listed.current, listed.revisions.map((x) => x.revision)], ['x1', ['x1', 'x2']]);

  // Services per refresh-mode: rs (restart) stopped in B and started in A; en endured throughout.
  const A2 = await waitFamilies(ctx, ['rs'], 'x1', ['main', 'group', 'other'], { rs: A.rs.main });
  const evs = events(ctx);
  assert.equal(signalsOfPid(evs, B.rs.main), ['SIGTERM']);
  assert.not.ok(alive(B.rs.main));
  for (const pid of [A.en.main, A.en.group!, A.en.other!]) {
    assert.ok(alive(pid));
    assert.equal(signalsOfPid(evs, pid), [], 'the enduring service is not restarted by a revert');
  }
  const recs = await records(ctx);
  assert.equal(pick(recs.rs, ['revision', 'state', 'mainPid']), { revision: 'x1', state: 'active', mainPid: A2.rs.main });
  assert.equal(pick(recs.en, ['revision', 'state', 'mainPid']), { revision: 'x1', state: 'active', mainPid: A.en.main });
  await sleep(100);
  assert.equal(runningRevisions(ctx).filter((x) => x.revision !== 'x1'), [], 'nothing of x2 runs');

  // Data as A left it (not B's), B's data kept, A's data writable again.
  assert.is(fs.readFileSync(path.join(dataA, 'marker'), 'utf8'), 'data of x1\n');
  assert.is(fs.readFileSync(path.join(dataA, 'history'), 'utf8'), `${historyA}started x1 ${A2.rs.main}\n`, 'A\'s data continues where A left it');
  assert.is(fs.readFileSync(path.join(dataB, 'marker'), 'utf8'), 'data of x2\n');
  assert.not.ok(isReadOnlyMounted(dataA));
  await waitFor('the enduring process can write its data again', () => {
    const probes = events(ctx).filter((e) => e.pid === A.en.main && e.event === 'probe');
    return probes[probes.length - 1].data === 'ok';
  });
});

// ------------------------------------------------------------------ graceful hand-over

rtest('graceful refresh (sigX / sigX-all): the successor runs B\'s environment, the old main leaves', async (ctx) => {
  const handover: Record<string, [string, boolean]> = {
    husr2: ['SIGUSR2', false],
    hhup: ['SIGHUP', false],
    husr1: ['SIGUSR1', false],
    husr2all: ['SIGUSR2', true],
    hhupall: ['SIGHUP', true],
    husr1all: ['SIGUSR1', true],
  };
  const apps: Record<string, AppSpec> = {};
  for (const [app, [sig, all]] of Object.entries(handover)) {
    apps[app] = { args: `${FAMILY} --handover ${sig}`, refresh: `${sig.toLowerCase()}${all ? '-all' : ''}`, stop: 'sigterm' };
  }
  const pair = snapPair(ctx.name, apps, HOOKS_OK);
  await startDaemon(ctx);
  await mustCall(ctx, 'install', { path: pair.a });
  const A = await waitFamilies(ctx, Object.keys(apps), 'x1');

  const r = await mustCall(ctx, 'refresh', { snap: ctx.name, from: pair.b });
  const B = await waitFamilies(ctx, Object.keys(apps), 'x2', ['main']);
  await sleep(150);
  const evs = events(ctx);
  const iPost = evs.findIndex((e) => e.event === 'hook' && e.hook === 'post-refresh' && e.rev === 'x2');
  assert.ok(iPost >= 0);
  const recs = await records(ctx);
  const fails: string[] = [];
  for (const [app, [sig, all]] of Object.entries(handover)) {
    const a = A[app];
    const sigs = signalsOfPid(evs, a.main);
    const hand = evs.find((e) => e.pid === a.main && e.event === 'handover');
    const succ = hand ? evs.find((e) => e.pid === hand.successor && e.event === 'start') : undefined;
    const problems: string[] = [];
    if (sigs.join() !== sig) problems.push(`old main got ${sigs.join(',') || 'nothing'}, not ${sig} only`);
    const iSig = evs.findIndex((e) => e.pid === a.main && e.event === 'signal');
    if (iSig >= 0 && iSig < iPost) problems.push('signalled before B was linked and its post-refresh hook ran');
    if (iSig >= 0 && evs[iSig].data !== 'ok') problems.push(`A's $SNAP_DATA was ${evs[iSig].data} at the signal (read-only only after the hand-over)`);
    if (!succ) problems.push('no successor started');
    else {
      if (!r.result.handedOver.includes(app)) problems.push(`not reported as handed over (fellBack: ${r.result.fellBack.join(',')})`);
      if (recs[app].mainPid !== succ.pid) problems.push(`recorded main ${recs[app].mainPid}, not the successor ${succ.pid}`);
      if (!alive(succ.pid)) problems.push('successor died');
      if (revisionOf(succ.pid) !== 'x2') problems.push(`successor runs ${revisionOf(succ.pid)}`);
      const want = { ...pick(expectedEnv(ctx, 'x2', '2.0'), ['SNAP', 'SNAP_REVISION', 'SNAP_VERSION', 'SNAP_DATA', 'SNAP_COMMON']) };
      if (JSON.stringify(succ.env) !== JSON.stringify(want)) problems.push(`successor env ${JSON.stringify(succ.env)}`);
      // Signal-mode services run in $SNAP_COMMON (a working directory in A's data would go with A).
      if (succ.cwd !== paths(ctx, 'x2').common) problems.push(`successor cwd ${succ.cwd}`);
    }
    const mainsB = evs.filter((e) => e.event === 'start' && e.app === app && e.role === 'main' && e.rev === 'x2');
    if (mainsB.length !== 1) problems.push(`${mainsB.length} main processes started in x2 (${mainsB.map((e) => e.pid).join(',')}): a hand-over plus a restart`);
    if (alive(a.main)) problems.push('old main still runs');
    for (const child of [a.group!, a.other!]) {
      const cs = signalsOfPid(evs, child);
      if (all && (cs.join() !== sig || alive(child))) problems.push(`-all: old child ${child} got ${cs.join(',') || 'nothing'}${alive(child) ? ' and runs' : ''}`);
      if (!all && (cs.length > 0 || !alive(child))) problems.push(`plain: old child ${child} got ${cs.join(',') || 'nothing'}${alive(child) ? '' : ' and is gone'}`);
    }
    if (problems.length) fails.push(`${app} (${all ? sig.toLowerCase() + '-all' : sig.toLowerCase()}): ${problems.join('; ')}`);
  }
  assert.ok(isReadOnlyMounted(paths(ctx, 'x1').data), 'A\'s $SNAP_DATA is read-only after the hand-overs (old children still run x1)');
  assert.equal(fails, [], `hand-over problems:\n  ${fails.join('\n  ')}`);
});

rtest('graceful refresh without a successor while the old main serves on: refresh undone, old main untouched', async (ctx) => {
  // nohand ignores the signal and serves on: nginx's own rollback, the refresh is undone.
  const pair = snapPair(ctx.name, { nohand: { args: `${FAMILY} --ignore SIGUSR1`, refresh: 'sigusr1' } }, HOOKS_OK);
  await startDaemon(ctx);
  await mustCall(ctx, 'install', { path: pair.a });
  const A = await waitFamilies(ctx, ['nohand'], 'x1');
  const r = await call(ctx, 'refresh', { snap: ctx.name, from: pair.b });
  assert.not.ok(r.ok, 'the refresh failed');
  assert.match(r.error!.message, /nohand: no process of x2 took over within 2000 ms after SIGUSR1; refresh undone, main process \d+ of x1 serves on untouched/);
  const evs = events(ctx);
  assert.equal(signalsOfPid(evs, A.nohand.main), ['SIGUSR1'], 'the old main got the refresh signal only');
  assert.ok(alive(A.nohand.main), 'the old main serves on');
  for (const child of [A.nohand.group!, A.nohand.other!]) assert.ok(alive(child), `its child ${child} too`);
  const recs = await records(ctx);
  assert.is(recs.nohand.mainPid, A.nohand.main, 'still the recorded main');
  assert.is(fs.readlinkSync(path.join(ctx.root, 'snap', ctx.name, 'current')), 'x1');
  assert.not.ok(isReadOnlyMounted(paths(ctx, 'x1').data), 'A\'s data stays writable');
  assert.equal(evs.filter((e) => e.event === 'start' && e.rev === 'x2'), [], 'nothing of x2 runs');
});

rtest('graceful refresh without a successor after the old main exited: restart into B, and says so', async (ctx) => {
  const pair2 = snapPair(ctx.name, { quits: { args: FAMILY, refresh: 'sigusr1', stop: 'sigterm' } }, HOOKS_OK);
  await startDaemon(ctx);
  await mustCall(ctx, 'install', { path: pair2.a });
  const Q = await waitFamilies(ctx, ['quits'], 'x1');
  const r2 = await mustCall(ctx, 'refresh', { snap: ctx.name, from: pair2.b });
  assert.equal(r2.result.fellBack, ['quits']);
  assert.ok(r2.progress.some((l) => /quits: main process \d+ exited after SIGUSR1 and left no successor; restarted into x2 instead/.test(l) || /quits: no process of x2 took over within 2000 ms after SIGUSR1; restarted into x2 instead/.test(l)), r2.progress.join('\n'));
  assert.not.ok(alive(Q.quits.main), 'the old main is gone');
  const recs2 = await records(ctx);
  assert.is(revisionOf(recs2.quits.mainPid!), 'x2', 'restarted into B');
});

test.run();
