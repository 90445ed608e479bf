// Reliability: the supervisor SIGKILLed in the middle of `stop --all` (a
// batch that freezes every service's cgroup, signals, thaws and waits).
// After a restart every service must be in one consistent state: its cgroup
// not left frozen, running and recorded active with a live main process in
// its cgroup, or empty and recorded stopped; a service that was stopped is
// not started again; and the next stop --all and start --all work for all.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { request } from '../src/supervisor/client';
import { loadRecords, RecordsWriter, type ServiceRecord } from '../src/supervisor/records';
import { cgroupOfPid, isInside } from '../src/kernel/cgroupfs';
import { alive, CLI, gate, makeCgroup, tmpdir, trials, uniqueSnapName } from './helpers';
import { buildSnap, daemonEnv, killDaemon, removeCgroup, removeRoot, sleep, startDaemon, type Daemon } from './rel-support';

const test = suite('rel-stop-crash');
const rootTest = gate(test);

const SNAPS = 6;
// One service that takes its stop-timeout (ignores SIGTERM), so that the stop lasts long enough to be interrupted anywhere.
const APPS = `  a:
    command: bin/run
    daemon: simple
    stop-timeout: 5s
  b:
    command: bin/run
    daemon: simple
    stop-timeout: 5s
    after: [a]
  slow:
    command: bin/slow
    daemon: simple
    stop-timeout: 400ms
`;
const RUN = '#!/bin/sh\nexec sleep 1000\n';
const SLOW = "#!/bin/sh\ntrap '' TERM\nwhile :; do sleep 1; done\n";

const frozenOf = (cg: string): boolean => {
  try {
    return /^frozen 1$/m.test(fs.readFileSync(path.join(cg, 'cgroup.events'), 'utf8'));
  } catch {
    return false;
  }
};
const populated = (cg: string): boolean => {
  try {
    return /^populated 1$/m.test(fs.readFileSync(path.join(cg, 'cgroup.events'), 'utf8'));
  } catch {
    return false;
  }
};

function cli(root: string, cg: string, ...args: string[]): Promise<number | null> {
  return new Promise((resolve) => {
    const c = spawn(process.execPath, [CLI, '--root', root, ...args], { env: daemonEnv(root, cg), stdio: 'ignore' });
    c.once('exit', (code) => resolve(code));
  });
}

async function trial(killAtMs: number): Promise<string | null> {
  const root = tmpdir('rel-stopcrash-root-');
  const cg = makeCgroup(`stopcrash-${uniqueSnapName('s')}`);
  const log = path.join(tmpdir('rel-stopcrash-log-'), 'daemon.log');
  let daemon: Daemon | null = null;
  try {
    daemon = await startDaemon(root, cg, log);
    for (let i = 0; i < SNAPS; i++) await request(root, 'install', { path: buildSnap(uniqueSnapName('sc'), APPS, { run: RUN, slow: SLOW }) });
    await request(root, 'start', { all: true });
    const before = (await request(root, 'status', {})) as ServiceRecord[];
    if (before.filter((r) => r.state === 'active').length !== SNAPS * 3) return `not all started: ${before.map((r) => `${r.snap}.${r.app}=${r.state}`).join(' ')}`;
    const stopping = cli(root, cg, 'stop', '--all');
    await sleep(killAtMs);
    await killDaemon(daemon);
    daemon = null;
    await stopping;
    daemon = await startDaemon(root, cg, log);
    // What the stop had begun may still be ending (a thawed member exiting on its SIGTERM): let it settle.
    await sleep(300);
    const after = (await request(root, 'status', {})) as ServiceRecord[];
    for (const r of after) {
      const name = `${r.snap}.${r.app}`;
      if (frozenOf(r.cgroup)) return `${name}: cgroup left frozen (recorded ${r.state})`;
      if (populated(r.cgroup)) {
        if (r.state !== 'active' || r.mainPid === null) return `${name}: runs but recorded ${r.state}, main ${r.mainPid}`;
        const where = cgroupOfPid(r.mainPid);
        if (!alive(r.mainPid) || where === null || !isInside(where, r.cgroup)) return `${name}: recorded main ${r.mainPid} is not alive in its cgroup`;
      } else if (r.state === 'active' || r.state === 'deactivating' || r.mainPid !== null) {
        return `${name}: nothing runs but recorded ${r.state}, main ${r.mainPid}`;
      }
      if (!r.wanted && r.state === 'activating') return `${name}: stopped, yet started again`;
    }
    if ((await cli(root, cg, 'stop', '--all')) !== 0) return 'stop --all after the restart failed';
    const stray = after.filter((r) => populated(r.cgroup)).filter((r) => populated(r.cgroup));
    if (stray.length) return `still running after stop --all: ${stray.map((r) => r.app).join(', ')}`;
    if ((await cli(root, cg, 'start', '--all')) !== 0) return 'start --all after the restart failed';
    const up = ((await request(root, 'status', {})) as ServiceRecord[]).filter((r) => r.state === 'active' && r.mainPid !== null).length;
    if (up !== SNAPS * 3) return `start --all after the restart: ${up} of ${SNAPS * 3} up`;
    await request(root, 'stop', { all: true });
    return null;
  } finally {
    await killDaemon(daemon);
    await removeCgroup(cg);
    removeRoot(root);
  }
}

rootTest('SIGKILL of the supervisor during stop --all: every service consistent after the restart', async () => {
  const n = trials(3, 20);
  const failures: string[] = [];
  for (let i = 0; i < n; i++) {
    // From before the request arrives to after the slow services' kill at their timeout.
    const at = Math.round((i / Math.max(1, n - 1)) * 700) + Math.floor(Math.random() * 60);
    const why = await trial(at);
    if (why) failures.push(`killed at ${at} ms: ${why}`);
  }
  assert.equal(failures, [], failures.join('\n'));
});

rootTest('a supervisor killed between a stop\'s freeze and its thaw: the next one thaws that service, not one frozen on purpose', async () => {
  const root = tmpdir('rel-stopcrash-root-');
  const cg = makeCgroup(`stopcrash-${uniqueSnapName('s')}`);
  const log = path.join(tmpdir('rel-stopcrash-log-'), 'daemon.log');
  let daemon: Daemon | null = null;
  try {
    daemon = await startDaemon(root, cg, log);
    const name = uniqueSnapName('sf');
    await request(root, 'install', { path: buildSnap(name, APPS, { run: RUN, slow: SLOW }) });
    await request(root, 'start', { snap: name });
    await killDaemon(daemon);
    daemon = null;
    // What the killed supervisor left: `a` recorded as being stopped, its cgroup frozen by that stop; `b` frozen by a user (`snapproc freeze`).
    const recs = loadRecords(root);
    const a = recs.get(`${name}.a`)!;
    const b = recs.get(`${name}.b`)!;
    a.state = 'deactivating';
    a.wanted = false;
    const w = new RecordsWriter(root);
    w.saveAll(recs.values());
    w.close();
    for (const r of [a, b]) fs.writeFileSync(path.join(r.cgroup, 'cgroup.freeze'), '1');
    daemon = await startDaemon(root, cg, log);
    const after = Object.fromEntries(((await request(root, 'status', { snap: name })) as ServiceRecord[]).map((r) => [r.app, r]));
    assert.is(frozenOf(a.cgroup), false, 'the stop\'s freeze is undone');
    assert.is(after.a.state, 'active');
    assert.is(after.a.mainPid, a.mainPid);
    assert.is(after.a.wanted, false);
    assert.is(fs.readFileSync(path.join(b.cgroup, 'cgroup.freeze'), 'utf8').trim(), '1', 'a user\'s freeze stays');
    fs.writeFileSync(path.join(b.cgroup, 'cgroup.freeze'), '0');
    await request(root, 'stop', { all: true });
  } finally {
    await killDaemon(daemon);
    await removeCgroup(cg);
    removeRoot(root);
  }
});

test.run();
