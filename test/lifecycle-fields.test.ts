// The snap.yaml lifecycle fields snapd has and snapproc now runs:
// watchdog-timeout (WATCHDOG_USEC in the environment, WATCHDOG=1 on
// NOTIFY_SOCKET, a missed deadline is SIGABRT and counts for
// restart-condition: on-watchdog), success-exit-status (an exit code that
// counts as success: no on-failure restart), command-chain (the command runs
// through it), and abstract listen-stream sockets (@snap.NAME.…).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import * as path from 'node:path';
import { Supervisor } from '../src/supervisor/supervisor';
import { cleanupParent, gate, tmpdir, uniqueSnapName, waitFor } from './helpers';
import { withSupervisor, type EmbeddedCtx } from './embedded';

const test = suite('lifecycle-fields');
const rootTest = gate(test);

function buildSnap(name: string, appsYaml: string, bins: Record<string, string>): string {
  const dir = tmpdir('lf-snap-');
  fs.mkdirSync(path.join(dir, 'meta'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), `name: ${name}\nversion: '1'\napps:\n${appsYaml}`);
  for (const [f, text] of Object.entries(bins)) fs.writeFileSync(path.join(dir, 'bin', f), text, { mode: 0o755 });
  return dir;
}

const embedded = (fn: (c: EmbeddedCtx) => Promise<void>) => withSupervisor({ prefix: 'lf', removeSnaps: true }, fn);

const rec = (sup: Supervisor, name: string, app: string) => sup.status(name).find((r) => r.app === app)!;

/** Pings the watchdog (python: sd_notify WATCHDOG=1) `pings` times every 0.2 s, then stops pinging and waits. */
const PINGER = `#!/usr/bin/env python3
import os, socket, sys, time, signal
signal.signal(signal.SIGABRT, lambda *a: (open(os.environ['SNAP_DATA'] + '/abrt', 'a').write('%d\\n' % os.getpid()), os._exit(134)))
with open(os.environ['SNAP_DATA'] + '/env', 'a') as f:
    f.write('%s %s\\n' % (os.environ.get('WATCHDOG_USEC'), 'NOTIFY_SOCKET' in os.environ))
pings = int(sys.argv[1])
for i in range(pings):
    s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    s.sendto(b'WATCHDOG=1', os.environ['NOTIFY_SOCKET'])
    s.close()
    time.sleep(0.2)
while True:
    time.sleep(1)
`;

rootTest('watchdog-timeout: WATCHDOG_USEC set, WATCHDOG=1 keeps it alive, a missed deadline is SIGABRT and restarts on-watchdog', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('wd');
    await sup.install(buildSnap(name, `  dog:\n    command: bin/pinger 6\n    daemon: simple\n    watchdog-timeout: 500ms\n    restart-condition: on-watchdog\n    restart-delay: 100ms\n    stop-timeout: 2s\n`, { pinger: PINGER }));
    const data = path.join(root, 'var', 'snap', name, 'x1');
    const first = rec(sup, name, 'dog').mainPid;
    // Six pings 0.2 s apart (1.2 s) keep a 0.5 s watchdog happy; then it misses the deadline.
    await waitFor('the watchdog restart', () => rec(sup, name, 'dog').restarts >= 1 && rec(sup, name, 'dog').state === 'active' && rec(sup, name, 'dog').mainPid !== first, 15_000);
    assert.equal(fs.readFileSync(path.join(data, 'env'), 'utf8').split('\n')[0], '500000 True');
    assert.match(fs.readFileSync(path.join(data, 'abrt'), 'utf8'), new RegExp(`^${first}\\n`), 'SIGABRT went to the main process');
    assert.match(fs.readFileSync(path.join(root, 'log', name, 'dog.log'), 'utf8'), /watchdog timeout \(no WATCHDOG=1 within 500 ms\): sending SIGABRT/);
  });
});

rootTest('success-exit-status: an exit code listed there is success (on-failure does not restart); others restart', async () => {
  await embedded(async ({ sup }) => {
    const name = uniqueSnapName('se');
    const exiter = '#!/bin/sh\nsleep 0.2\nexit "$1"\n';
    await sup.install(buildSnap(name, `  ok3:\n    command: bin/exiter 3\n    daemon: simple\n    success-exit-status: [3]\n  bad4:\n    command: bin/exiter 4\n    daemon: simple\n    success-exit-status: [3]\n    restart-delay: 100ms\n`, { exiter }));
    await waitFor('ok3 to end', () => rec(sup, name, 'ok3').state === 'inactive', 10_000);
    await waitFor('bad4 to be restarted', () => rec(sup, name, 'bad4').restarts >= 1, 10_000);
    assert.is(rec(sup, name, 'ok3').restarts, 0);
    assert.equal(rec(sup, name, 'ok3').lastExit?.code, 3);
  });
});

rootTest('command-chain: the command runs through each program of the chain, in order', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('cc');
    const wrap = '#!/bin/sh\necho "wrap $*" >> "$SNAP_DATA/chain"\nexec "$@"\n';
    const run = '#!/bin/sh\necho "run $*" >> "$SNAP_DATA/chain"\nexec sleep 1000\n';
    await sup.install(buildSnap(name, `  svc:\n    command: bin/run a b\n    command-chain: [bin/wrap]\n    daemon: simple\n    stop-timeout: 2s\n`, { wrap, run }));
    const file = path.join(root, 'var', 'snap', name, 'x1', 'chain');
    await waitFor('the chain', () => fs.existsSync(file) && fs.readFileSync(file, 'utf8').includes('run a b'));
    assert.equal(fs.readFileSync(file, 'utf8').split('\n').filter(Boolean), [`wrap ${root}/snap/${name}/x1/bin/run a b`, 'run a b']);
  });
});

rootTest('listen-stream @snap.NAME.x: an abstract socket is held and passed as LISTEN_FDS', async () => {
  await embedded(async ({ sup }) => {
    const name = uniqueSnapName('ab');
    const server = `#!/usr/bin/env node
const net = require('net');
const s = net.createServer((c) => c.end('hello from fd 3\\n'));
s.listen({ fd: 3 });
`;
    await sup.install(buildSnap(name, `  srv:\n    command: bin/server\n    daemon: simple\n    stop-timeout: 2s\n    plugs: [network-bind]\n    sockets:\n      abs:\n        listen-stream: "@snap.${name}.abs"\n`, { server }));
    // Node's net.connect cannot reach abstract addresses: python connects as any client would.
    const reply = await waitFor('a reply', () => {
      try {
        return execFileSync('python3', ['-c', `import socket; s=socket.socket(socket.AF_UNIX); s.connect('\\0snap.${name}.abs'); print(s.recv(100).decode(), end='')`], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
      } catch {
        return null;
      }
    });
    assert.is(reply, 'hello from fd 3\n');
  });
});

test.after(() => cleanupParent());
test.run();
