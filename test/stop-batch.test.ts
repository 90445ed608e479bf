// Stops asked for together (process/stop-batch.ts) mean what each stop
// means alone (SPEC 4): every process of each -all cgroup gets its stop
// signal, one that ignores it is killed at its own stop-timeout while the
// others are done long before, a plain stop-mode reaches the main process
// only, a cgroup frozen on purpose is thawed and stopped, an empty one
// reports stopped with nothing signalled.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { stopCgroupBatched } from '../src/process/stop-batch';
import { freezeCgroup } from '../src/kernel/freeze';
import { readEvent } from '../src/kernel/cgroupfs';
import { native } from '../src/kernel/native';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { alive, cleanupParent, gate, makeCgroup, signalsOf, startTree, uniqueSnapName, waitFor } from './helpers';

const test = suite('stop-batch');
const rootTest = gate(test);
test.after(() => cleanupParent());

const TREE = ['--child', 'group', '--setsid-child', 'other'];
const ROLES = ['main', 'group', 'other'];
const cg = () => makeCgroup(`snap.${uniqueSnapName()}.svc.service`);

rootTest('a batch: each cgroup by its own stop-mode and stop-timeout', async () => {
  const plainDir = cg();
  const plain = await startTree(plainDir, TREE, ROLES);
  const trees = await Promise.all([0, 1, 2, 3].map(async () => {
    const dir = cg();
    return { dir, tree: await startTree(dir, TREE, ROLES) };
  }));
  const stubborn = cg();
  const st = await startTree(stubborn, ['--ignore', 'SIGTERM', '--child', 'group'], ['main', 'group']);
  const frozen = cg();
  const fz = await startTree(frozen, TREE, ROLES);
  assert.ok((await freezeCgroup(frozen)).done);
  const empty = cg();

  const t0 = performance.now();
  // All asked for in the same turn: one batch.
  const [rs, rStub, rFrozen, rEmpty, rPlain] = await Promise.all([
    Promise.all(trees.map((t) => stopCgroupBatched(t.dir, { mode: 'sigusr1-all', timeoutMs: 5000 }))),
    stopCgroupBatched(stubborn, { mode: 'sigterm-all', timeoutMs: 600 }).then((r) => ({ r, at: performance.now() - t0 })),
    stopCgroupBatched(frozen, { mode: 'sigterm-all', timeoutMs: 5000 }),
    stopCgroupBatched(empty, { mode: 'sigterm-all', timeoutMs: 5000 }),
    stopCgroupBatched(plainDir, { mode: 'sigterm', timeoutMs: 5000, main: plain.pids.main }),
  ]);
  for (const [i, r] of rs.entries()) {
    assert.equal({ target: r.target, signal: r.signal, signalled: r.signalled, stopped: r.stopped, forced: r.isForcefullyTerminated }, { target: 'cgroup', signal: 'SIGUSR1', signalled: 3, stopped: true, forced: false });
    for (const role of ROLES) assert.equal(signalsOf(trees[i].tree.log, role), ['SIGUSR1'], role);
    assert.is(readEvent(trees[i].dir, 'populated'), 0);
    // Done long before the stubborn one's timeout.
    assert.ok(r.durationMs < 600, `stopped in ${r.durationMs} ms`);
  }
  // The one that ignores SIGTERM: killed at its own timeout, and says so.
  assert.equal({ timedOut: rStub.r.timedOut, forced: rStub.r.isForcefullyTerminated, stopped: rStub.r.stopped, signalled: rStub.r.signalled }, { timedOut: true, forced: true, stopped: true, signalled: 2 });
  assert.ok(rStub.at >= 550, `killed after ${rStub.at} ms`);
  assert.equal(signalsOf(st.log, 'main'), ['SIGTERM']);
  assert.is(readEvent(stubborn, 'populated'), 0);
  // Frozen on purpose: thawed and stopped (stopCgroup's way).
  assert.equal({ stopped: rFrozen.stopped, signalled: rFrozen.signalled }, { stopped: true, signalled: 3 });
  for (const role of ROLES) assert.equal(signalsOf(fz.log, role), ['SIGTERM'], role);
  // Empty: nothing signalled, stopped.
  assert.equal({ stopped: rEmpty.stopped, signalled: rEmpty.signalled, timedOut: rEmpty.timedOut }, { stopped: true, signalled: 0, timedOut: false });
  // Plain: the main process only; its children stay.
  assert.equal({ target: rPlain.target, mainPid: rPlain.mainPid, signalled: rPlain.signalled }, { target: 'main', mainPid: plain.pids.main, signalled: 1 });
  await waitFor('plain main to exit', () => !alive(plain.pids.main));
  assert.ok(alive(plain.pids.group) && alive(plain.pids.other));
  assert.equal(signalsOf(plain.log, 'group'), []);
});

rootTest('a batch refuses a cgroup outside the mount, and the others still stop', async () => {
  const dir = cg();
  const t = await startTree(dir, TREE, ROLES);
  const [bad, good] = await Promise.allSettled([stopCgroupBatched('/tmp', {}), stopCgroupBatched(dir, { timeoutMs: 5000 })]);
  assert.is(bad.status, 'rejected');
  assert.match(String((bad as PromiseRejectedResult).reason), /refusing to act on \/tmp/);
  assert.is(good.status, 'fulfilled');
  assert.is((good as PromiseFulfilledResult<{ stopped: boolean }>).value.stopped, true);
  for (const role of ROLES) assert.equal(signalsOf(t.log, role), ['SIGTERM'], role);
});

rootTest('signalFrozen: one snapshot of a frozen cgroup and its sub-cgroups signalled, left frozen; empty when nobody is in it; writeFreeze errors name the file', async () => {
  const dir = cg();
  const t = await startTree(dir, TREE, ROLES);
  // One member in a sub-cgroup: the subtree is signalled, not the top cgroup alone.
  const sub = path.join(dir, 'sub');
  fs.mkdirSync(sub);
  fs.writeFileSync(path.join(sub, 'cgroup.procs'), String(t.pids.other));
  native.writeFreeze(dir, true);
  assert.is(await native.waitEvent(dir, 'frozen', 1, 5000).result, 'done');
  const fan = native.signalFrozen(dir, 15, true);
  assert.equal({ signalled: fan.signalled, gone: fan.gone, cgroups: fan.cgroups, empty: fan.empty }, { signalled: 3, gone: 0, cgroups: 2, empty: false });
  // Left frozen: nothing has acted on the signal yet.
  assert.is(readEvent(dir, 'frozen'), 1);
  assert.ok(alive(t.pids.main) && alive(t.pids.group) && alive(t.pids.other));
  native.writeFreeze(dir, false);
  await native.waitEmptyOrKill(dir, 5000, 10_000).result;
  for (const role of ROLES) assert.equal(signalsOf(t.log, role), ['SIGTERM'], role);
  fs.rmdirSync(sub);
  const empty = cg();
  native.writeFreeze(empty, true);
  assert.equal(native.signalFrozen(empty, 15, true).empty, true);
  native.writeFreeze(empty, false);
  const gone = path.join(empty, 'no-such');
  assert.throws(() => native.writeFreeze(gone, true), (e: NodeJS.ErrnoException & { path?: string }) => e.code === 'ENOENT' && e.syscall === 'open' && e.path === `${gone}/cgroup.freeze`);
});

test.run();
