// Real faults seen on this machine (issue 10, "Real faults"), each with the
// test that failed before its fix: the kernel that SIGKILLs a child cloned
// into a cgroup once cgroup.kill'ed, starts that reported success for a
// service that died at once, a plain stop-mode that guessed a main process,
// a freeze that never completes (a reader blocked on a FUSE file system whose
// server does not answer), snaps stuck by a missing command, a cgroup parent
// outside cgroup2, zombies taken for alive, frozen cgroups and writable bind
// mounts left by a crash, and PIDs recorded in a container's PID namespace.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, execFileSync } from 'node:child_process';
import { request } from '../src/supervisor/client';
import { saveChange } from '../src/supervisor/change-runner';
import { newChange, refreshSteps } from '../src/supervisor/changes';
import { loadRecords, recordsWriter, saveRecords } from '../src/supervisor/records';
import { freezeCgroup } from '../src/kernel/freeze';
import { isReadOnlyMounted, protectData, unprotectData } from '../src/snap/data-readonly';
import { startTimeOf } from '../src/kernel/procfs';
import { signalApp } from '../src/process/signal-app';
import { REPO } from './helpers';
import { squash } from './hostile-corpus';
import { recordOf, withSupervisor, type EmbeddedCtx } from './embedded';
import { Supervisor } from '../src/supervisor/supervisor';
import type { ServiceRecord } from '../src/supervisor/records';
import { killCgroup } from '../src/kernel/kill';
import { readEvent } from '../src/kernel/cgroupfs';
import { alive, CLI, gate, makeCgroup, tmpdir, uniqueSnapName, waitFor } from './helpers';

const test = suite('faults');
const rootTest = gate(test);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A snap directory: meta/snap.yaml with `apps` (YAML text) and executable bin/ files. */
export function buildSnap(name: string, appsYaml: string, bins: Record<string, string | { text: string; mode: number }>, version = '1.0'): string {
  const dir = tmpdir('faults-snap-');
  fs.mkdirSync(path.join(dir, 'meta'));
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), `name: ${name}\nversion: '${version}'\napps:\n${appsYaml}`);
  for (const [file, bin] of Object.entries(bins)) {
    const { text, mode } = typeof bin === 'string' ? { text: bin, mode: 0o755 } : bin;
    fs.writeFileSync(path.join(dir, 'bin', file), text);
    fs.chmodSync(path.join(dir, 'bin', file), mode);
  }
  return dir;
}

let n = 0;
const embedded = (fn: (c: EmbeddedCtx) => Promise<void>) => withSupervisor({ prefix: 'faults' }, fn);
const rec = recordOf;

// Says when it ignores SIGTERM: a stop sent before the trap (a loaded machine) would simply end it.
const STUBBORN = '#!/bin/sh\ntrap "" TERM\ntouch "$SNAP_DATA/.trapped"\nwhile :; do sleep 0.2; done\n';
const FOREVER = '#!/bin/sh\nexec sleep 1000\n';

// ---------------------------------------------------------------- 1. clone3 into a cgroup once cgroup.kill'ed

rootTest('a service stopped with cgroup.kill (timeout) runs again on start, stays up, and restarts', async () => {
  await embedded(async ({ sup }) => {
    const name = uniqueSnapName('fq');
    await sup.install(buildSnap(name, '  svc:\n    command: bin/stubborn\n    daemon: simple\n    stop-timeout: 300ms\n    restart-condition: always\n    restart-delay: 50ms\n', { stubborn: STUBBORN }));
    const first = rec(sup, name, 'svc').mainPid!;
    const trapped = path.join(sup.store.paths(name, sup.store.currentRevision(name)!).data, '.trapped');
    await waitFor('the service to ignore SIGTERM', () => fs.existsSync(trapped));
    const [r] = await sup.stopSnap(name, 'svc', {});
    assert.ok(r.isForcefullyTerminated, 'the stop needed cgroup.kill');
    await sup.startSnap(name, 'svc');
    const pid = rec(sup, name, 'svc').mainPid!;
    assert.is.not(pid, first);
    await sleep(400);
    assert.ok(alive(pid), `the main process ${pid} still runs 400 ms after the start`);
    assert.is(rec(sup, name, 'svc').state, 'active');
    assert.is(rec(sup, name, 'svc').restarts, 0, 'it never had to be restarted');
    // An automatic restart into the same cgroup lives too.
    process.kill(pid, 'SIGKILL');
    const again = await waitFor('the automatic restart', () => {
      const m = rec(sup, name, 'svc').mainPid;
      return m !== null && m !== pid && rec(sup, name, 'svc').state === 'active' ? m : null;
    });
    await sleep(400);
    assert.ok(alive(again), 'the restarted main process runs');
    assert.is(rec(sup, name, 'svc').restarts, 1);
  });
});

// ---------------------------------------------------------------- 2. never report success for a service that did not come up

rootTest('a start of a service that dies at once fails with its exit status; a refresh to it is undone saying why', async () => {
  // A settle time no loaded machine outlasts: `exit 3` of a shell always dies within it.
  process.env.SNAPPROC_SETTLE_MS = '1500';
  await embedded(async ({ sup }) => {
    const name = uniqueSnapName('fs');
    const bad = '#!/bin/sh\nexit 3\n';
    await sup.install(buildSnap(name, '  svc:\n    command: bin/svc\n    daemon: simple\n    restart-condition: never\n', { svc: FOREVER }));
    const a = rec(sup, name, 'svc').mainPid!;
    let err = null as Error | null;
    await sup.refresh(name, buildSnap(name, '  svc:\n    command: bin/svc\n    daemon: simple\n    restart-condition: never\n', { svc: bad }, '2.0')).catch((e) => (err = e));
    assert.ok(err, 'the refresh fails');
    assert.match(err!.message, /exited with status 3/);
    assert.match(err!.message, /undone/);
    assert.is(sup.store.currentRevision(name), 'x1');
    const now = rec(sup, name, 'svc');
    assert.is(now.state, 'active');
    assert.ok(now.mainPid !== null && alive(now.mainPid) && now.mainPid !== a, 'x1 runs again');

    const other = uniqueSnapName('fs');
    await sup.install(buildSnap(other, '  svc:\n    command: bin/svc\n    daemon: simple\n    restart-condition: never\n', { svc: bad }));
    assert.is(rec(sup, other, 'svc').state, 'failed');
    let startErr = null as Error | null;
    await sup.startSnap(other, 'svc').catch((e) => (startErr = e));
    assert.ok(startErr, 'start says it failed');
    assert.match(startErr!.message, /exited with status 3/);
  }).finally(() => delete process.env.SNAPPROC_SETTLE_MS);
});

// ---------------------------------------------------------------- 3. a plain stop-mode never guesses the main process

rootTest('plain stop-mode with the main process gone signals nothing, says so, and leaves the rest', async () => {
  await embedded(async ({ cg, sup }) => {
    const name = uniqueSnapName('fp');
    const yaml = '  svc:\n    command: bin/parent\n    daemon: simple\n    stop-mode: sigterm\n    restart-condition: never\n';
    await sup.install(buildSnap(name, yaml, { parent: '#!/bin/sh\nsleep 1000 &\necho $! > "$SNAP_DATA/child"\nsleep 0.3\nexit 0\n' }));
    const childFile = path.join(sup.root, 'var', 'snap', name, 'x1', 'child');
    const child = await waitFor('the child', () => fs.existsSync(childFile) && Number(fs.readFileSync(childFile, 'utf8')));
    await waitFor('the main process to exit', () => rec(sup, name, 'svc').mainPid === null && rec(sup, name, 'svc').lastExit !== null);
    const [r] = await sup.stopSnap(name, 'svc', {});
    assert.is(r.mainPid, null);
    assert.is(r.signalled, 0, 'nothing signalled');
    assert.is(r.note, 'main process already gone');
    await sleep(100);
    assert.ok(alive(child), `the child ${child} was not taken for the main process`);
    assert.ok(fs.readFileSync(path.join(cg, `snap.${name}.svc.service`, 'cgroup.procs'), 'utf8').includes(String(child)));
  });
});

// ---------------------------------------------------------------- 5. stuck snaps

rootTest('install refuses an app whose command is missing or not executable, and writes nothing', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('fc');
    const missing = buildSnap(name, '  svc:\n    command: bin/nope --flag\n    daemon: simple\n', {});
    await sup.install(missing).then(() => assert.unreachable('installed'), (e) => assert.match(e.message, /app "svc" command "bin\/nope" does not exist in the snap/));
    const noexec = buildSnap(name, '  svc:\n    command: bin/x\n    daemon: simple\n', { x: { text: '#!/bin/sh\n', mode: 0o644 } });
    await sup.install(noexec).then(() => assert.unreachable('installed'), (e) => assert.match(e.message, /command "bin\/x" is not executable/));
    const stopCmd = buildSnap(name, '  svc:\n    command: bin/x\n    stop-command: $SNAP/bin/gone\n    daemon: simple\n', { x: FOREVER });
    await sup.install(stopCmd).then(() => assert.unreachable('installed'), (e) => assert.match(e.message, /stop-command "bin\/gone" does not exist/));
    assert.not.ok(fs.existsSync(path.join(root, 'snap', name)) && fs.readdirSync(path.join(root, 'snap', name)).length > 0, 'nothing under R/snap');
    assert.is(sup.store.get(name), undefined);
    // validate says the same
    const v = await runCli([CLI, 'validate', missing]);
    assert.is.not(v.code, 0);
    assert.match(v.stderr, /does not exist in the snap/);
    // and of the same snap packed as a .snap (its files are unpacked for the check)
    const vs = await runCli([CLI, 'validate', squash(missing)]);
    assert.is.not(vs.code, 0);
    assert.match(vs.stderr, /hostile\.snap: app "svc" command "bin\/nope" does not exist in the snap/);
  });
});

rootTest('stop and remove work for a service that never started (no cgroup)', async () => {
  await embedded(async ({ sup }) => {
    const name = uniqueSnapName('fn');
    await sup.install(buildSnap(name, '  svc:\n    command: bin/x\n    daemon: simple\n    install-mode: disable\n', { x: FOREVER }));
    assert.is(rec(sup, name, 'svc').state, 'inactive');
    const [r] = await sup.stopSnap(name, 'svc', {});
    assert.ok(r.stopped);
    const removed = await sup.remove(name);
    assert.ok(removed.removed);
    assert.is(sup.store.get(name), undefined);
  });
});

// ---------------------------------------------------------------- 6. a cgroup parent outside cgroup2

rootTest('a cgroup parent outside the cgroup2 mount is refused at supervisor start', async () => {
  const root = tmpdir('faults-root-');
  const sup = new Supervisor({ root, cgroupParent: path.join(tmpdir('not-a-cgroup-'), 'parent'), handleSignals: false, log: () => {} });
  await sup.start().then(() => assert.unreachable('started'), (e) => assert.match(e.message, /is not below the cgroup2 mount/));
  await sup.shutdown().catch(() => undefined);
});

// ---------------------------------------------------------------- 7. crashes inside a step

interface Run { code: number | null; stdout: string; stderr: string }
function runCli(args: string[], env: NodeJS.ProcessEnv = process.env, cmd = process.execPath): Promise<Run> {
  return new Promise((resolve) => {
    const child = spawn(cmd, args, { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

rootTest('a zombie main process is not alive: a new supervisor starts the service again', async () => {
  const root = tmpdir('faults-root-');
  const cg = makeCgroup(`faults-${++n}`);
  const name = uniqueSnapName('fz');
  let sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: () => {} });
  await sup.start();
  let holder: ReturnType<typeof spawn> | null = null;
  try {
    await sup.install(buildSnap(name, '  svc:\n    command: bin/x\n    daemon: simple\n', { x: FOREVER }));
    await sup.shutdown({ stopServices: true });
    // A zombie: a child whose parent lives on and never reaps it.
    holder = spawn('python3', ['-c', 'import os, time\np = os.fork()\nif p == 0: os._exit(0)\nprint(p, flush=True)\ntime.sleep(30)'], { stdio: ['ignore', 'pipe', 'ignore'] });
    const zombie = await new Promise<number>((r) => holder!.stdout!.once('data', (d) => r(Number(String(d).trim()))));
    await waitFor('the zombie', () => /\) Z /.test(fs.readFileSync(`/proc/${zombie}/stat`, 'utf8')));
    const recs = loadRecords(root);
    const r = recs.get(`${name}.svc`)!;
    Object.assign(r, { state: 'deactivating', wanted: true, mainPid: zombie, mainStartTime: startTimeOf(zombie) });
    const writer = recordsWriter(root);
    saveRecords(writer, recs.values());
    writer.close();
    sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: () => {} });
    await sup.start();
    const now = rec(sup, name, 'svc');
    assert.is.not(now.mainPid, zombie, 'the zombie is not taken for the main process');
    assert.ok(now.mainPid !== null && alive(now.mainPid), 'the service runs again');
    assert.is(now.state, 'active');
  } finally {
    holder?.kill('SIGKILL');
    await sup.shutdown({ stopServices: true }).catch(() => undefined);
    await killCgroup(cg, { timeoutMs: 3000 }).catch(() => undefined);
  }
});

rootTest('a cgroup left frozen by a crashed refresh is thawed when the refresh is undone', async () => {
  const root = tmpdir('faults-root-');
  const cg = makeCgroup(`faults-${++n}`);
  const name = uniqueSnapName('ff');
  let sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: () => {} });
  await sup.start();
  try {
    await sup.install(buildSnap(name, '  svc:\n    command: bin/x\n    daemon: simple\n', { x: FOREVER }));
    const main = rec(sup, name, 'svc').mainPid!;
    await sup.shutdown();
    // The journal a supervisor killed inside pre-refresh leaves, and the freeze of a signal it was sending.
    const steps = refreshSteps(sup as never);
    const change = newChange('refresh', name, steps, 5, {
      snap: name, source: null, ignoreRunning: false, from: 'x1', to: null,
      stopped: [], enduring: [], signalled: [], signalModes: {}, movedAside: null, dataCopied: false, protected: false,
      started: [], handedOver: [], fellBack: [], pruned: [], rolledBack: [],
    } as never);
    change.steps[0].status = 'done';
    saveChange(root, change);
    const svcCg = path.join(cg, `snap.${name}.svc.service`);
    assert.ok((await freezeCgroup(svcCg)).done);
    sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: () => {} });
    await sup.start();
    assert.is(fs.readFileSync(path.join(svcCg, 'cgroup.freeze'), 'utf8').trim(), '0', 'thawed');
    assert.is(readEvent(svcCg, 'frozen'), 0);
    assert.is(rec(sup, name, 'svc').mainPid, main, 'the service was adopted, not restarted');
  } finally {
    await sup.shutdown({ stopServices: true }).catch(() => undefined);
    await killCgroup(cg, { timeoutMs: 3000 }).catch(() => undefined);
  }
});

rootTest('SIGKILL of the supervisor after the new revision is written, inside validate: the undo removes it', async () => {
  const root = tmpdir('faults-root-');
  const cg = makeCgroup(`faults-${++n}`);
  const name = uniqueSnapName('fj');
  const env = { ...process.env, SNAPPROC_CGROUP_PARENT: cg, SNAPPROC_CRASH_AT: 'validate:written' };
  const daemon = spawn(process.execPath, [CLI, '--root', root, 'daemon'], { env, stdio: 'ignore' });
  const exited = new Promise<string | null>((r) => daemon.once('exit', (_c, sig) => r(sig)));
  let sup: Supervisor | null = null;
  try {
    await waitFor('the daemon', () => fs.existsSync(path.join(root, 'run', 'snapproc.socket')));
    await sleep(200);
    const yaml = '  svc:\n    command: bin/x\n    daemon: simple\n';
    await request(root, 'install', { path: buildSnap(name, yaml, { x: FOREVER }) });
    await request(root, 'refresh', { snap: name, from: buildSnap(name, yaml, { x: FOREVER }, '2.0') }).catch(() => undefined);
    assert.is(await exited, 'SIGKILL');
    assert.ok(fs.existsSync(path.join(root, 'snap', name, 'x2')), 'the crash came after x2 was written');
    sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: () => {} });
    await sup.start();
    const left = [...fs.readdirSync(path.join(root, 'snap', name)), ...fs.readdirSync(path.join(root, 'var', 'snap', name))].filter((e) => e.includes('x2'));
    assert.equal(left, [], 'nothing of x2 is left');
    assert.equal(sup.store.get(name)!.revisions.map((r) => r.revision), ['x1']);
    assert.is(sup.store.currentRevision(name), 'x1');
  } finally {
    if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill('SIGKILL');
    await sup?.shutdown({ stopServices: true }).catch(() => undefined);
    await killCgroup(cg, { timeoutMs: 3000 }).catch(() => undefined);
  }
});

rootTest('a writable bind mount left between bind and remount is removed; protecting races no writer (no EBUSY)', async () => {
  const dir = path.join(tmpdir('faults-data-'), 'x1');
  fs.mkdirSync(dir);
  try {
    execFileSync('mount', ['--bind', dir, dir]);
    assert.not.ok(isReadOnlyMounted(dir));
    unprotectData(dir);
    const left = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => l.split(' ')[4] === dir);
    assert.is(left.length, 0, 'the writable bind mount is gone');
    // A process that keeps opening files for writing in the directory (an enduring service's data).
    const writer = spawn('/bin/sh', ['-c', `while :; do echo x >> "${dir}/f"; done`], { stdio: 'ignore' });
    try {
      for (let i = 0; i < 30; i++) {
        protectData(dir);
        assert.ok(isReadOnlyMounted(dir));
        unprotectData(dir);
      }
    } finally {
      writer.kill('SIGKILL');
    }
  } finally {
    for (let i = 0; i < 5; i++) spawn('umount', ['-l', dir], { stdio: 'ignore' });
  }
});

// ---------------------------------------------------------------- 4. a freeze that does not complete

/** A FUSE file system whose server answers nothing (test/fixtures/fuse-silent.py), mounted at a fresh directory. */
async function silentFuse(): Promise<{ mnt: string; close: () => void }> {
  const mnt = tmpdir('faults-fuse-');
  const server = spawn('python3', [path.join(REPO, 'test', 'fixtures', 'fuse-silent.py'), mnt], { stdio: ['ignore', 'pipe', 'inherit'] });
  await new Promise<void>((resolve, reject) => {
    server.stdout!.once('data', () => resolve());
    server.once('exit', (code) => reject(new Error(`fuse-silent.py exited with ${code}`)));
  });
  return {
    mnt,
    close: () => {
      server.kill('SIGKILL');
      spawn('umount', ['-l', mnt], { stdio: 'ignore' });
    },
  };
}

/** PIDs of the cgroup that wait in FUSE (state D, wchan fuse_*). */
function fuseWaiters(cg: string): number[] {
  const pids = fs.readFileSync(path.join(cg, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
  return pids.filter((p) => {
    try {
      return fs.readFileSync(`/proc/${p}/wchan`, 'utf8').startsWith('fuse') || / D /.test(fs.readFileSync(`/proc/${p}/stat`, 'utf8'));
    } catch {
      return false;
    }
  });
}

rootTest('a freeze blocked by an unanswered FUSE read: stop, signal --all and remove signal without it, say so, and never block', async () => {
  const fuse = await silentFuse();
  try {
    await embedded(async ({ cg, sup }) => {
      const name = uniqueSnapName('fu');
      const reader = `#!/bin/sh\n(trap '' TERM; exec cat "${fuse.mnt}/file") &\nexec sleep 1000\n`;
      await sup.install(buildSnap(name, '  svc:\n    command: bin/reader\n    daemon: simple\n    stop-timeout: 500ms\n    restart-condition: never\n', { reader }));
      const svcCg = path.join(cg, `snap.${name}.svc.service`);
      await waitFor('the reader to wait in FUSE', () => fuseWaiters(svcCg).length > 0);
      // The event loop stays free: a 20 ms timer is never late by much while the freeze waits.
      let worst = 0;
      let last = performance.now();
      const tick = setInterval(() => {
        const now = performance.now();
        worst = Math.max(worst, now - last - 20);
        last = now;
      }, 20);
      try {
        const sig = await signalApp(svcCg, 'SIGCONT', { all: false });
        assert.is(sig.target, 'main');
        const all = await signalApp(svcCg, 'SIGCONT', { all: true });
        assert.ok(all.freezeSkipped, 'signal --all: the freeze was skipped');
        assert.ok(all.signalled >= 2, `signal --all reached the members: ${all.signalled}`);
        const t0 = performance.now();
        const [r] = await sup.stopSnap(name, 'svc', {});
        const took = performance.now() - t0;
        assert.ok(r.freezeSkipped, 'stop: the freeze was skipped');
        assert.match(r.note ?? '', /freeze did not complete within 250 ms: signalled without it/);
        assert.ok(r.signalled >= 2, `the SIGTERM went out: ${r.signalled}`);
        assert.ok(r.isForcefullyTerminated && r.stopped, 'cgroup.kill after the stop-timeout ended the FUSE reader');
        // The freeze gets half the stop-timeout, which counts from the start of the stop.
        assert.ok(took < 500 + 1500, `stop took ${took.toFixed(0)} ms`);
        assert.is(readEvent(svcCg, 'populated'), 0);
      } finally {
        clearInterval(tick);
      }
      assert.ok(worst < 400, `the event loop was blocked for ${worst.toFixed(0)} ms`);
      // remove of a snap whose service waits in FUSE
      await sup.startSnap(name, 'svc');
      await waitFor('the reader to wait in FUSE again', () => fuseWaiters(svcCg).length > 0);
      const removed = await sup.remove(name);
      assert.ok(removed.removed);
      assert.not.ok(fs.existsSync(svcCg) && readEvent(svcCg, 'populated') === 1, 'nothing of it runs');
    });
  } finally {
    fuse.close();
  }
});

// ---------------------------------------------------------------- 8. PID namespaces

rootTest('supervisor as PID 1 of its own PID namespace: ps is right from the host and from inside', async () => {
  const root = tmpdir('faults-root-');
  const cg = makeCgroup(`faults-${++n}`);
  const name = uniqueSnapName('fn');
  const env: NodeJS.ProcessEnv = { ...process.env, SNAPPROC_ROOT: root, SNAPPROC_CGROUP_PARENT: cg, SNAPPROC_NO_AUTOSTART: '1' };
  delete env.SNAPPROC_CRASH_AT;
  const ns = spawn('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, CLI, '--root', root, 'daemon'], { env, stdio: 'ignore' });
  let init = 0;
  try {
    init = await waitFor('the namespace init', () => {
      try {
        return Number(fs.readFileSync(`/proc/${ns.pid}/task/${ns.pid}/children`, 'utf8').trim().split(' ')[0]) || 0;
      } catch {
        return 0;
      }
    });
    await waitFor('the supervisor', () => fs.existsSync(path.join(root, 'run', 'snapproc.socket')), 20_000);
    await sleep(300);
    await request(root, 'install', { path: buildSnap(name, '  svc:\n    command: bin/x\n    daemon: simple\n', { x: '#!/bin/sh\nsleep 1000 &\nexec sleep 1000\n' }) });
    const svcCg = path.join(cg, `snap.${name}.svc.service`);
    const [record] = (await request(root, 'status', { snap: name })) as ServiceRecord[];
    assert.ok(record.mainPid !== null && record.mainPid < 100, `the supervisor records its namespace's PID (${record.mainPid})`);
    const hostPids = fs.readFileSync(path.join(svcCg, 'cgroup.procs'), 'utf8').split('\n').filter(Boolean).map(Number);
    const hostMain = hostPids.find((p) => {
      const m = /^NSpid:\s*(.*)$/m.exec(fs.readFileSync(`/proc/${p}/status`, 'utf8'));
      return m && Number(m[1].trim().split(/\s+/).pop()) === record.mainPid;
    });
    assert.ok(hostMain, 'the main process is visible from the host');
    const ps = await runCli([CLI, 'ps', name, '--json'], env);
    const app = (JSON.parse(ps.stdout) as { apps: Array<{ mainPid: number | null; processes: Array<{ pid: number; role: string }> }> }).apps[0];
    assert.is(app.mainPid, hostMain, `ps from the host: main is host PID ${hostMain} (${ps.stdout} ${ps.stderr})`);
    assert.equal(app.processes.map((p) => p.role).sort(), ['group', 'main']);
    const inside = await runCli(['-t', String(init), '-p', '-m', process.execPath, CLI, 'ps', name, '--json'], env, 'nsenter');
    const inApp = (JSON.parse(inside.stdout) as { apps: Array<{ mainPid: number | null }> }).apps[0];
    assert.is(inApp.mainPid, record.mainPid, `ps from inside: main is PID ${record.mainPid} (${inside.stderr})`);
  } finally {
    if (init) process.kill(init, 'SIGKILL');
    ns.kill('SIGKILL');
    await killCgroup(cg, { timeoutMs: 3000 }).catch(() => undefined);
  }
});

// ---------------------------------------------------------------- a service cgroup removed under the supervisor

rootTest('a service whose cgroup is killed and removed under the supervisor: the supervisor survives, records the exit, and keeps answering', async () => {
  await embedded(async ({ sup, said }) => {
    const name = uniqueSnapName('fr');
    await sup.install(buildSnap(name, '  svc:\n    command: bin/forever\n    daemon: simple\n    restart-condition: never\n', { forever: FOREVER }));
    const r = rec(sup, name, 'svc');
    const main = r.mainPid!;
    assert.ok(alive(main));
    // Someone else (an admin, a test harness) empties the cgroup and removes it.
    await killCgroup(r.cgroup, { timeoutMs: 3000 });
    fs.rmdirSync(r.cgroup);
    await waitFor('the exit recorded', () => rec(sup, name, 'svc').mainPid === null, 5000);
    assert.is(rec(sup, name, 'svc').state, 'failed', said.join('\n'));
    assert.ok(sup.status(name).length === 1, 'the supervisor still answers');
  });
});

test.run();
