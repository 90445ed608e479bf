// real-servers.test.ts: unmodified real servers ride a refresh (SPEC 6),
// under wrk load on loopback with one request per connection, so every
// refused or reset connection counts:
//   - Debian's nginx (daemon: forking, refresh-mode sigusr2): its own binary
//     upgrade lands in B, the old master is drained with SIGQUIT, nothing of
//     A is left, and a second refresh works too; 0 failed requests;
//   - the zero-downtime rollback: B's config is broken, the refresh is undone,
//     the old master serves on untouched; 0 failed;
//   - HAProxy master-worker (-W) re-executes B in the same PID; 0 failed;
//   - nginx taking a held socket as NGINX="3;" with refresh-mode restart:
//     clients queue in the backlog while it restarts; 0 failed.
// The supervisor runs in this process, with its own root and cgroup parent.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Supervisor } from '../src/supervisor/supervisor';
import { classifyCgroup } from '../src/process/classify';
import { revisionOf } from '../src/kernel/procfs';
import { cleanupParent, gate, makeCgroup, tmpdir, uniqueSnapName } from './helpers';
import { failed, freePort, unmountUnder, get, haveHaproxy, haveNginx, loadDuring, WRK, writeHaproxySnap, writeNginxSnap, type WrkResult } from './servers';

const test = suite('real-servers');
const privileged = gate(test);
test.after(() => cleanupParent());

const have = haveNginx && haveHaproxy && WRK !== null;
const rootTest = have ? privileged : (name: string, fn: () => Promise<void>) => test.skip(`${name} (needs nginx, haproxy and wrk)`, fn);

let seq = 0;
async function withSupervisor(fn: (sup: Supervisor, ctx: { root: string; cg: string; said: string[] }) => Promise<void>): Promise<void> {
  const root = tmpdir('snapproc-real-root-');
  const cg = makeCgroup(`real-${++seq}`);
  const said: string[] = [];
  const sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: (l) => said.push(l) });
  await sup.start();
  try {
    await fn(sup, { root, cg, said });
  } finally {
    await sup.shutdown({ stopServices: true }).catch(() => undefined);
    unmountUnder(root);
    fs.rmSync(root, { recursive: true, force: true });
  }
}

function noFailures(what: string, r: WrkResult): void {
  assert.ok(r.requests > 0, `${what}: wrk made requests`);
  assert.is(failed(r), 0, `${what}: ${r.requests} requests, connect ${r.connectErrors}, read ${r.readErrors}, write ${r.writeErrors}, timeout ${r.timeouts}, non-2xx ${r.non2xx}`);
}

async function answers(port: number, n: number): Promise<string[]> {
  const out: string[] = [];
  for (let i = 0; i < n; i++) {
    const r = await get(port);
    out.push('error' in r ? `error ${r.error}` : `${r.status} ${r.body}`);
  }
  return [...new Set(out)];
}

function revisionsIn(cgroup: string): string[] {
  return [...new Set(classifyCgroup(cgroup, { revisions: true }).processes.map((p) => p.revision ?? '?'))].sort();
}

rootTest('nginx (forking, sigusr2): binary upgrade into B and C under load, old masters drained with SIGQUIT, 0 failed', async () => {
  await withSupervisor(async (sup) => {
    const name = uniqueSnapName('ngx');
    const port = await freePort();
    const snap = (v: string) => writeNginxSnap(tmpdir('snapproc-ngx-'), { name, version: v, port, body: `rev ${v}`, mode: 'upgrade' });
    await sup.installOrRefresh(snap('1'));
    const svc = sup.servicesOf(name)[0];
    const mainA = svc.record.mainPid!;
    assert.is(revisionOf(mainA), 'x1');
    assert.equal(await answers(port, 3), ['200 rev 1']);
    for (const [v, rev, prev] of [['2', 'x2', 'x1'], ['3', 'x3', 'x2']] as const) {
      const oldMain = svc.record.mainPid!;
      const lines: string[] = [];
      const { value, load } = await loadDuring(port, () => sup.refresh(name, snap(v), {}, (l) => lines.push(l)));
      noFailures(`refresh to ${rev}`, load);
      assert.equal(value.handedOver, ['web'], lines.join('\n'));
      const main = svc.record.mainPid!;
      assert.is.not(main, oldMain, 'a new master');
      assert.is(revisionOf(main), rev, 'the recorded main executes the new revision');
      assert.ok(!fs.existsSync(`/proc/${oldMain}`), `the old master ${oldMain} is gone`);
      assert.equal(revisionsIn(svc.cgroup), [rev], `nothing of ${prev} left in the cgroup`);
      assert.equal(await answers(port, 20), [`200 rev ${v}`], 'answers only from the new revision');
      assert.match(lines.join('\n'), /drain: SIGQUIT to old main/);
    }
    const stopped = await sup.stopSnap(name, undefined, {});
    assert.is(stopped[0].mode, 'sigquit');
    assert.equal(revisionsIn(svc.cgroup), [], 'stop leaves nothing running');
  });
});

rootTest('nginx: B with a broken config rolls back with zero downtime; the old master serves on untouched', async () => {
  await withSupervisor(async (sup, { root }) => {
    const name = uniqueSnapName('ngx');
    const port = await freePort();
    await sup.installOrRefresh(writeNginxSnap(tmpdir('snapproc-ngx-'), { name, version: '1', port, body: 'rev 1', mode: 'upgrade' }));
    const svc = sup.servicesOf(name)[0];
    const mainA = svc.record.mainPid!;
    const workersA = classifyCgroup(svc.cgroup).processes.map((p) => p.pid).sort();
    const bad = writeNginxSnap(tmpdir('snapproc-ngx-'), { name, version: '2', port, body: 'rev 2', mode: 'upgrade', brokenConfig: true });
    const { value, load } = await loadDuring(port, () => sup.refresh(name, bad).then(() => null, (e: Error) => e));
    noFailures('rollback', load);
    assert.ok(value instanceof Error, 'the refresh failed');
    assert.match(value!.message, /refresh undone, main process \d+ of x1 serves on untouched/);
    assert.is(svc.record.mainPid, mainA, 'the old master is still the main process');
    assert.equal(classifyCgroup(svc.cgroup).processes.map((p) => p.pid).sort(), workersA, 'the old master and its workers, untouched');
    assert.is(fs.readlinkSync(path.join(root, 'snap', name, 'current')), 'x1');
    assert.is(svc.record.revision, 'x1');
    assert.equal(await answers(port, 10), ['200 rev 1']);
    // And a good B after it still upgrades in place.
    const { load: again } = await loadDuring(port, () => sup.refresh(name, writeNginxSnap(tmpdir('snapproc-ngx-'), { name, version: '3', port, body: 'rev 3', mode: 'upgrade' })));
    noFailures('refresh after the rollback', again);
    assert.equal(await answers(port, 10), ['200 rev 3']);
  });
});

rootTest('haproxy -W: the master re-executes B in the same PID; counted as the hand-over, 0 failed', async () => {
  await withSupervisor(async (sup) => {
    const name = uniqueSnapName('hap');
    const port = await freePort();
    const snap = (v: string) => writeHaproxySnap(tmpdir('snapproc-hap-'), { name, version: v, port, body: `rev ${v}` });
    await sup.installOrRefresh(snap('1'));
    const svc = sup.servicesOf(name)[0];
    const master = svc.record.mainPid!;
    await waitAnswer(port, '200 rev 1');
    const lines: string[] = [];
    const { value, load } = await loadDuring(port, () => sup.refresh(name, snap('2'), {}, (l) => lines.push(l)));
    noFailures('haproxy refresh', load);
    assert.equal(value.handedOver, ['lb'], lines.join('\n'));
    assert.is(svc.record.mainPid, master, 'the same master PID');
    assert.is(revisionOf(master), 'x2', 'now executing B');
    assert.match(lines.join('\n'), /same PID re-executed/);
    assert.equal(revisionsIn(svc.cgroup), ['x2'], 'the old workers left');
    assert.equal(await answers(port, 20), ['200 rev 2']);
  });
});

rootTest('nginx on a held socket (NGINX="3;"), refresh-mode restart with stop-mode sigquit: clients queue, 0 failed', async () => {
  await withSupervisor(async (sup) => {
    const name = uniqueSnapName('ngh');
    const port = await freePort();
    const snap = (v: string) => writeNginxSnap(tmpdir('snapproc-ngh-'), { name, version: v, port, body: `rev ${v}`, mode: 'held' });
    await sup.installOrRefresh(snap('1'));
    await waitAnswer(port, '200 rev 1');
    const lines: string[] = [];
    const { load } = await loadDuring(port, () => sup.refresh(name, snap('2'), {}, (l) => lines.push(l)));
    noFailures('restart-mode refresh on a held socket', load);
    assert.match(lines.join('\n'), /web \(sigquit/);
    assert.equal(await answers(port, 20), ['200 rev 2']);
  });
});

async function waitAnswer(port: number, want: string): Promise<void> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    const a = await answers(port, 1);
    if (a[0] === want) return;
    if (Date.now() > deadline) throw new Error(`no answer "${want}" on port ${port}: ${a[0]}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

test.run();
