// Stop semantics (SPEC 4) on real process trees in real cgroups: who gets
// which signal for every stop-mode, escalation after the timeout, and the
// safety rules (never a process outside the cgroup, never a reused PID).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { stopCgroup, STOP_MODES, stopModeSignal, parseStopMode } from '../src/process/stop';
import { signalApp } from '../src/process/signal-app';
import { signalVerified } from '../src/kernel/signal-guard';
import { freezeCgroup, thawCgroup } from '../src/kernel/freeze';
import { killCgroup } from '../src/kernel/kill';
import { readEvent } from '../src/kernel/cgroupfs';
import { startTimeOf } from '../src/kernel/procfs';
import { alive, cleanupParent, gate, makeCgroup, signalsOf, startTree, uniqueSnapName, waitFor } from './helpers';

const test = suite('stop');
const rootTest = gate(test);
test.after(() => cleanupParent());

const TREE = ['--child', 'group', '--setsid-child', 'other'];
const ROLES = ['main', 'group', 'other'];

function serviceCgroup(): string {
  return makeCgroup(`snap.${uniqueSnapName()}.svc.service`);
}

test('stop-mode names map to signals and scope', () => {
  assert.equal(stopModeSignal('sigterm'), { signal: 'SIGTERM', number: 15, all: false });
  assert.equal(stopModeSignal('sigusr2-all'), { signal: 'SIGUSR2', number: 12, all: true });
  assert.throws(() => parseStopMode('SIGTERM'), /invalid stop-mode "SIGTERM" \(did you mean "sigterm"\?\)/);
  assert.throws(() => parseStopMode('term'), /valid stop-modes: sigterm, sigterm-all/);
});

for (const mode of STOP_MODES) {
  rootTest(`${mode}: the right signal reaches exactly the right processes`, async () => {
    const cg = serviceCgroup();
    const tree = await startTree(cg, TREE, ROLES);
    const { signal, all } = stopModeSignal(mode);
    const r = await stopCgroup(cg, { mode, timeoutMs: 5000 });
    assert.is(r.timedOut, false);
    assert.is(r.stopped, true);
    assert.is(r.signal, signal);
    await waitFor('main to exit', () => !alive(tree.pids.main));
    assert.equal(signalsOf(tree.log, 'main'), [signal]);
    if (all) {
      assert.is(r.target, 'cgroup');
      assert.is(r.signalled, 3);
      assert.equal(signalsOf(tree.log, 'group'), [signal]);
      assert.equal(signalsOf(tree.log, 'other'), [signal]);
      assert.is(readEvent(cg, 'populated'), 0);
    } else {
      assert.is(r.target, 'main');
      assert.is(r.mainPid, tree.pids.main);
      assert.is(r.signalled, 1);
      // KillMode=process: the children stay, unsignalled.
      assert.equal(signalsOf(tree.log, 'group'), []);
      assert.equal(signalsOf(tree.log, 'other'), []);
      assert.ok(alive(tree.pids.group));
      assert.ok(alive(tree.pids.other));
      await killCgroup(cg);
    }
  });
}

rootTest('plain mode: main is SIGKILLed after the timeout, its children are left alone', async () => {
  const cg = serviceCgroup();
  const tree = await startTree(cg, [...TREE, '--ignore', 'SIGTERM'], ROLES);
  const r = await stopCgroup(cg, { mode: 'sigterm', timeoutMs: 300 });
  assert.is(r.timedOut, true);
  assert.is(r.isForcefullyTerminated, true);
  assert.is(r.stopped, true);
  assert.ok(r.durationMs >= 290, `waited ${r.durationMs} ms`);
  assert.not.ok(alive(tree.pids.main));
  assert.ok(alive(tree.pids.group));
  assert.ok(alive(tree.pids.other));
  await killCgroup(cg);
});

rootTest('-all mode: what ignores the signal is killed after the timeout, cgroup ends empty', async () => {
  const cg = serviceCgroup();
  const tree = await startTree(cg, [...TREE, '--ignore', 'SIGTERM'], ROLES);
  const r = await stopCgroup(cg, { mode: 'sigterm-all', timeoutMs: 300 });
  assert.is(r.timedOut, true);
  assert.is(r.isForcefullyTerminated, true);
  assert.is(r.stopped, true);
  for (const role of ROLES) assert.equal(signalsOf(tree.log, role), ['SIGTERM'], role);
  assert.is(readEvent(cg, 'populated'), 0);
});

rootTest('-all mode reaches a fork loop and processes in sub-cgroups', async () => {
  const cg = serviceCgroup();
  const sub = path.join(cg, 'payload');
  fs.mkdirSync(sub);
  const tree = await startTree(cg, [...TREE, '--fork-loop'], ROLES);
  const nested = await startTree(sub, [], ['main']);
  const r = await stopCgroup(cg, { mode: 'sigterm-all', timeoutMs: 5000 });
  assert.is(r.stopped, true);
  assert.is(r.timedOut, false, 'the fork loop died of SIGTERM, no SIGKILL needed');
  assert.ok(r.signalled >= 5, `signalled ${r.signalled}`);
  assert.equal(signalsOf(nested.log, 'main'), ['SIGTERM']);
  assert.equal(signalsOf(tree.log, 'other'), ['SIGTERM']);
  assert.is(readEvent(cg, 'populated'), 0);
});

rootTest('an -all stop leaves the calling thread\'s scheduling as it was (nice, policy, reset-on-fork)', async () => {
  // The fan-out runs as SCHED_FIFO for a moment (native/sys.cc, UnpreemptedByWakees).
  // In a process of its own: the test runner's own thread stays untouched.
  const cg = serviceCgroup();
  const tree = await startTree(cg, TREE, ROLES);
  const script = `
    const os = require('node:os');
    const { execFileSync } = require('node:child_process');
    const { native } = require(${JSON.stringify(path.join(__dirname, '..', 'src', 'kernel', 'native'))});
    const { stopCgroup } = require(${JSON.stringify(path.join(__dirname, '..', 'src', 'process', 'stop'))});
    // stat fields after the comm: nice is the 19th, policy the 41st
    const fields = (text) => text.slice(text.lastIndexOf(')') + 2).split(' ');
    const self = () => { const f = fields(require('node:fs').readFileSync('/proc/thread-self/stat', 'latin1')); return { nice: Number(f[16]), policy: Number(f[38]), rtPriority: Number(f[37]) }; };
    os.setPriority(-5);
    native.resetNiceOnFork();
    const before = self();
    stopCgroup(process.argv[1], { mode: 'sigterm-all', timeoutMs: 5000 }).then((r) => {
      const after = self();
      const child = fields(execFileSync('/bin/cat', ['/proc/self/stat'], { encoding: 'latin1' }));
      process.stdout.write(JSON.stringify({ stopped: r.stopped, signalled: r.signalled, before, after, childNice: Number(child[16]) }));
    });`;
  const out = spawnSync(process.execPath, ['-e', script, cg], { encoding: 'utf8', timeout: 20_000 });
  assert.is(out.status, 0, out.stderr);
  const got = JSON.parse(out.stdout);
  assert.is(got.stopped, true);
  assert.is(got.signalled, 3);
  assert.equal(got.before, { nice: -5, policy: 0, rtPriority: 0 });
  assert.equal(got.after, got.before, 'nice and SCHED_OTHER back after the fan-out');
  assert.is(got.childNice, 0, 'SCHED_RESET_ON_FORK kept: a child starts at nice 0');
  for (const role of ROLES) assert.equal(signalsOf(tree.log, role), ['SIGTERM'], role);
});

rootTest('an empty cgroup stops at once', async () => {
  const cg = serviceCgroup();
  for (const mode of ['sigterm', 'sigterm-all'] as const) {
    const r = await stopCgroup(cg, { mode });
    assert.is(r.stopped, true);
    assert.is(r.signalled, 0);
  }
});

rootTest('an -all stop thaws a cgroup frozen on purpose, then stops it', async () => {
  const cg = serviceCgroup();
  const tree = await startTree(cg, TREE, ROLES);
  assert.is((await freezeCgroup(cg)).done, true);
  const r = await stopCgroup(cg, { mode: 'sigterm-all', timeoutMs: 5000 });
  assert.is(r.stopped, true);
  assert.is(r.timedOut, false, 'each acted on its SIGTERM: none needed the kill');
  assert.is(r.signalled, 3);
  for (const role of ROLES) assert.equal(signalsOf(tree.log, role), ['SIGTERM'], role);
  assert.is(fs.readFileSync(path.join(cg, 'cgroup.freeze'), 'utf8').trim(), '0');
});

rootTest('an -all stop of the cgroup snapproc runs in is refused, and leaves it as it was', async () => {
  const cg = serviceCgroup();
  // A separate process joins the cgroup and asks to stop it: were the check
  // missing, it would freeze itself (the test then kills it, in its cgroup).
  const script = `
    const fs = require('fs');
    fs.writeFileSync(${JSON.stringify(path.join(cg, 'cgroup.procs'))}, String(process.pid));
    require(${JSON.stringify(path.join(__dirname, '..', 'src', 'process', 'stop.js'))}).stopCgroup(${JSON.stringify(cg)}, { mode: 'sigterm-all' })
      .then(() => console.log('stopped'), (e) => console.log(e.code + ': ' + e.message));`;
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout!.on('data', (d: Buffer) => (out += d.toString()));
  const exited = new Promise<void>((resolve) => child.on('exit', () => resolve()));
  const timer = setTimeout(() => fs.writeFileSync(path.join(cg, 'cgroup.kill'), '1'), 10_000);
  await exited;
  clearTimeout(timer);
  assert.is(out.trim(), `ERR_SNAPPROC_REFUSED: refusing to act on ${cg}: snapproc itself runs in it`);
  assert.is(fs.readFileSync(path.join(cg, 'cgroup.freeze'), 'utf8').trim(), '0', 'never frozen');
});

rootTest('signal: main only, or with all every process', async () => {
  const cg = serviceCgroup();
  const tree = await startTree(cg, [...TREE, '--ignore', 'SIGUSR1', '--ignore', 'SIGUSR2'], ROLES);
  const one = await signalApp(cg, 'usr1');
  assert.equal(one, { signal: 'SIGUSR1', target: 'main', mainPid: tree.pids.main, signalled: 1, gone: 0 });
  const every = await signalApp(cg, 12, { all: true });
  assert.equal(every, { signal: 'SIGUSR2', target: 'cgroup', mainPid: null, signalled: 3, gone: 0, freezeSkipped: false });
  await waitFor('signals logged', () => signalsOf(tree.log, 'other').length === 1 && signalsOf(tree.log, 'group').length === 1 && signalsOf(tree.log, 'main').length === 2);
  // Both may be pending at once: Node runs their handlers in either order.
  assert.equal(signalsOf(tree.log, 'main').sort(), ['SIGUSR1', 'SIGUSR2']);
  assert.equal(signalsOf(tree.log, 'group'), ['SIGUSR2']);
  assert.equal(signalsOf(tree.log, 'other'), ['SIGUSR2']);
  await killCgroup(cg);
});

rootTest('a recorded main PID whose start time differs (reused PID) is not hit', async () => {
  const cg = serviceCgroup();
  const tree = await startTree(cg, [], ['main']);
  const real = startTimeOf(tree.pids.main)!;
  assert.is(signalVerified(tree.pids.main, 0, cg, real + 1), 'gone');
  const r = await stopCgroup(cg, { mode: 'sigterm', main: { pid: tree.pids.main, startTime: real + 1 } });
  assert.is(r.mainPid, null, 'no main process: the record does not hold');
  assert.ok(alive(tree.pids.main));
  await killCgroup(cg);
});

rootTest('never signals a process outside the cgroup, PID 1, or itself', async () => {
  const cg = serviceCgroup();
  const outsider = spawn('/bin/sleep', ['30'], { stdio: 'ignore' });
  try {
    assert.throws(() => signalVerified(outsider.pid!, 15, cg), (e: any) => e.code === 'ERR_SNAPPROC_NOT_MEMBER');
    assert.ok(alive(outsider.pid!));
    assert.throws(() => signalVerified(1, 15, cg), (e: any) => e.code === 'ERR_SNAPPROC_REFUSED');
    assert.throws(() => signalVerified(process.pid, 15, cg), /snapproc itself/);
    assert.throws(() => signalVerified(-5, 15, cg), (e: any) => e.code === 'ERR_SNAPPROC_REFUSED');
    assert.throws(() => signalVerified(0, 15, cg), (e: any) => e.code === 'ERR_SNAPPROC_REFUSED');
  } finally {
    outsider.kill('SIGKILL');
  }
});

rootTest('freeze waits for frozen 1; signals wait until thaw', async () => {
  const cg = serviceCgroup();
  const tree = await startTree(cg, ['--ignore', 'SIGUSR1'], ['main']);
  const f = await freezeCgroup(cg);
  assert.is(f.done, true);
  assert.is(readEvent(cg, 'frozen'), 1);
  await signalApp(cg, 'SIGUSR1');
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(signalsOf(tree.log, 'main'), [], 'frozen: the handler has not run');
  const t = await thawCgroup(cg);
  assert.is(t.done, true);
  assert.is(readEvent(cg, 'frozen'), 0);
  await waitFor('the signal after thaw', () => signalsOf(tree.log, 'main').length === 1);
  await killCgroup(cg);
});

rootTest('killCgroup empties a cgroup and reports it', async () => {
  const cg = serviceCgroup();
  await startTree(cg, [...TREE, '--fork-loop', '--ignore', 'SIGTERM'], ROLES);
  const r = await killCgroup(cg, { timeoutMs: 5000 });
  assert.is(r.empty, true);
  assert.is(r.method, 'cgroup.kill');
  assert.is(readEvent(cg, 'populated'), 0);
});

test.run();
