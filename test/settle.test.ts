// settle.test.ts: when a start of a `simple` service counts (supervisor/service.ts
// settle, kernel/idle-wait.ts): at once when its main process executed the
// snap's command and sleeps waiting for work, else once it lived
// SNAPPROC_SETTLE_MS; a wrapper waiting on a child that then fails gets no
// early end; SNAPPROC_SETTLE_EARLY=0 keeps the whole settle time.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { idleWaitOf, idleWaitsKnown } from '../src/kernel/idle-wait';
import { recordOf, withSupervisor } from './embedded';
import { gate, tmpdir, uniqueSnapName, waitFor } from './helpers';

const test = suite('settle');
const rootTest = gate(test);

function snapDir(name: string, bin: string): string {
  const dir = tmpdir('settle-snap-');
  fs.mkdirSync(path.join(dir, 'meta'));
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), `name: ${name}\nversion: '1'\napps:\n  svc:\n    command: bin/svc\n    daemon: simple\n    restart-condition: never\n    stop-timeout: 2s\n`);
  fs.writeFileSync(path.join(dir, 'bin', 'svc'), bin, { mode: 0o755 });
  return dir;
}

function withEnv<T>(env: Record<string, string>, fn: () => Promise<T>): Promise<T> {
  const old = Object.fromEntries(Object.keys(env).map((k) => [k, process.env[k]]));
  Object.assign(process.env, env);
  return fn().finally(() => {
    for (const [k, v] of Object.entries(old)) if (v === undefined) delete process.env[k];
    else process.env[k] = v;
  });
}


(idleWaitsKnown() ? rootTest : test.skip)('idleWaitOf: a sleeping process waits in a timer; one blocked reading a pipe or running does not count', async () => {
  const sleeper = spawn('sleep', ['30'], { stdio: 'ignore' });
  const reader = spawn('cat', [], { stdio: ['pipe', 'ignore', 'ignore'] });
  const busy = spawn('sh', ['-c', 'while :; do :; done'], { stdio: 'ignore' });
  try {
    assert.match(await waitFor('sleep to sleep', () => idleWaitOf(sleeper.pid!)), /nanosleep/);
    await new Promise((r) => setTimeout(r, 100));
    assert.is(idleWaitOf(reader.pid!), null, 'read(2) on a pipe is no idle wait');
    assert.is(idleWaitOf(busy.pid!), null, 'a running process is not waiting');
    assert.is(idleWaitOf(2 ** 22 + 12345), null, 'no such process');
  } finally {
    for (const c of [sleeper, reader, busy]) c.kill('SIGKILL');
  }
});

rootTest('a service that sleeps waiting counts as up long before the settle time', async () => {
  await withEnv({ SNAPPROC_SETTLE_MS: '5000' }, () => withSupervisor({ prefix: 'settle' }, async ({ sup }) => {
    const name = uniqueSnapName('se');
    const t0 = performance.now();
    await sup.install(snapDir(name, '#!/bin/sh\nexec sleep 1000\n'));
    const ms = performance.now() - t0;
    assert.ok(ms < 2500, `install with its start took ${ms.toFixed(0)} ms: the settle time of 5 s was not ended early`);
    assert.is(recordOf(sup, name, 'svc').state, 'active');
  }));
});

rootTest('a wrapper waiting for a child gets no early end: its failure within the settle time fails the start', async () => {
  await withEnv({ SNAPPROC_SETTLE_MS: '1500' }, () => withSupervisor({ prefix: 'settle' }, async ({ sup }) => {
    const name = uniqueSnapName('se');
    await sup.install(snapDir(name, '#!/bin/sh\nsleep 0.3\nexit 4\n'));
    assert.is(recordOf(sup, name, 'svc').state, 'failed');
    let err: Error | null = null;
    await sup.startSnap(name, 'svc').catch((e) => (err = e));
    assert.ok(err, 'the start fails');
    assert.match(String(err), /exited with status 4 within 1500 ms/);
  }));
});

rootTest('SNAPPROC_SETTLE_EARLY=0 waits the whole settle time', async () => {
  await withEnv({ SNAPPROC_SETTLE_MS: '400', SNAPPROC_SETTLE_EARLY: '0' }, () => withSupervisor({ prefix: 'settle' }, async ({ sup }) => {
    const name = uniqueSnapName('se');
    await sup.install(snapDir(name, '#!/bin/sh\nexec sleep 1000\n'));
    await sup.stopSnap(name, 'svc', {}, true);
    const t0 = performance.now();
    await sup.startSnap(name, 'svc');
    const ms = performance.now() - t0;
    assert.ok(ms >= 400, `the start took ${ms.toFixed(0)} ms, less than the settle time`);
  }));
});

test.run();
