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
//     clients queue in the backlog while it restarts; 0 failed;
//   - held sockets survive a supervisor restart (the fd holder), and the fd
//     store (FDSTORE=1) keeps an established connection across a service's
//     restart and a supervisor's.
// The supervisor runs in this process, with its own root and cgroup parent.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import * as net from 'node:net';
import { Supervisor } from '../src/supervisor/supervisor';
import { classifyCgroup } from '../src/process/classify';
import { revisionOf } from '../src/kernel/procfs';
import { cleanupParent, gate, makeCgroup, REPO, tmpdir, uniqueSnapName } from './helpers';
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
    // The master and its 2 workers (started just after it wrote its pid file).
    const deadline = Date.now() + 10_000;
    while (classifyCgroup(svc.cgroup).processes.length < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
    const workersA = classifyCgroup(svc.cgroup).processes.map((p) => p.pid).sort();
    assert.is(workersA.length, 3);
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

rootTest('haproxy -W: the master re-executes B in the same PID; counted as the hand-over, 0 failed, three refreshes in a row', async () => {
  await withSupervisor(async (sup) => {
    const name = uniqueSnapName('hap');
    const port = await freePort();
    const snap = (v: string) => writeHaproxySnap(tmpdir('snapproc-hap-'), { name, version: v, port, body: `rev ${v}` });
    await sup.installOrRefresh(snap('1'));
    const svc = sup.servicesOf(name)[0];
    const master = svc.record.mainPid!;
    await waitAnswer(port, '200 rev 1');
    // The third one runs after x1 was pruned: the master's working directory must not have been in it.
    for (const [v, rev] of [['2', 'x2'], ['3', 'x3'], ['4', 'x4']] as const) {
      const lines: string[] = [];
      const { value, load } = await loadDuring(port, () => sup.refresh(name, snap(v), {}, (l) => lines.push(l)));
      noFailures(`haproxy refresh to ${rev}`, load);
      assert.equal(value.handedOver, ['lb'], lines.join('\n'));
      assert.is(svc.record.mainPid, master, 'the same master PID');
      assert.is(revisionOf(master), rev, 'now executing the new revision');
      assert.match(lines.join('\n'), /same PID re-executed/);
      assert.equal(revisionsIn(svc.cgroup), [rev], 'the old workers left');
      assert.equal(await answers(port, 10), [`200 rev ${v}`]);
    }
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

rootTest('held sockets survive a supervisor restart: the new supervisor takes them from the fd holder; restart-mode refresh of nginx after it, 0 failed', async () => {
  const root = tmpdir('snapproc-real-root-');
  const cg = makeCgroup(`real-${++seq}`);
  const name = uniqueSnapName('ngr');
  const port = await freePort();
  const snap = (v: string) => writeNginxSnap(tmpdir('snapproc-ngr-'), { name, version: v, port, body: `rev ${v}`, mode: 'held' });
  let sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: () => {} });
  await sup.start();
  try {
    await sup.installOrRefresh(snap('1'));
    await waitAnswer(port, '200 rev 1');
    const holderFile = path.join(root, 'run', 'fd-holder.json');
    const holder = await waitForFile(holderFile, (d) => d.fds.some((f: { name: string }) => f.name === 'http'));
    const nginxMain = sup.servicesOf(name)[0].record.mainPid;
    await sup.shutdown(); // services keep running; the holder too
    assert.ok(fs.existsSync(`/proc/${holder.pid}`), 'the fd holder outlives the supervisor');
    const said: string[] = [];
    sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: (l) => said.push(l) });
    await sup.start();
    assert.is(sup.servicesOf(name)[0].record.mainPid, nginxMain, 'nginx re-adopted');
    assert.ok(said.some((l) => l.startsWith(`recovered 1 held fd(s) from fd holder ${holder.pid}`)), said.join('\n'));
    const { load } = await loadDuring(port, () => sup.refresh(name, snap('2')));
    noFailures('restart-mode refresh after a supervisor restart', load);
    assert.equal(await answers(port, 10), ['200 rev 2']);
  } finally {
    await sup.shutdown({ stopServices: true }).catch(() => undefined);
    unmountUnder(root);
    fs.rmSync(root, { recursive: true, force: true });
  }
});

rootTest('fd store: an established connection kept across the service\'s restart and a supervisor restart (FDSTORE=1, FDNAME=), dropped by FDSTOREREMOVE=1', async () => {
  const root = tmpdir('snapproc-real-root-');
  const cg = makeCgroup(`real-${++seq}`);
  const name = uniqueSnapName('fds');
  const port = await freePort();
  const dir = tmpdir('snapproc-fds-');
  fs.mkdirSync(path.join(dir, 'meta'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(path.join(dir, 'bin', 'svc'), `#!/bin/sh\nexec python3 ${path.join(REPO, 'test', 'fixtures', 'fdstore-service.py')}\n`, { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), [
    `name: ${name}`, "version: '1'", 'apps:', '  svc:', '    command: bin/svc', '    daemon: notify', '    stop-timeout: 5s',
    '    plugs: [network-bind]', // snapd requires it for sockets
    '    sockets:', '      http:', `        listen-stream: 127.0.0.1:${port}`,
  ].join('\n') + '\n');
  const holderFile = path.join(root, 'run', 'fd-holder.json');
  const stored = () => waitForFile(holderFile, (d) => d.fds.some((f: { kind: string; name: string }) => f.kind === 'store' && f.name === 'conn'));
  let sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: () => {} });
  await sup.start();
  let client: Awaited<ReturnType<typeof lineClient>> | null = null;
  try {
    await sup.installOrRefresh(dir);
    client = await lineClient(port);
    const p1 = sup.servicesOf(name)[0].record.mainPid!;
    client!.send('store');
    assert.is(await client!.line(), `stored by ${p1}`);
    await stored();
    // The service restarts: the same connection is passed to its successor.
    await sup.stopSnap(name, undefined, {}, true);
    await sup.startSnap(name);
    const p2 = sup.servicesOf(name)[0].record.mainPid!;
    assert.is.not(p2, p1);
    assert.is(await client!.line(), `resumed by ${p2}`);
    // The supervisor restarts: the store comes back from the fd holder.
    await sup.shutdown();
    sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: () => {} });
    await sup.start();
    await sup.stopSnap(name, undefined, {}, true);
    await sup.startSnap(name);
    const p3 = sup.servicesOf(name)[0].record.mainPid!;
    assert.is(await client!.line(), `resumed by ${p3}`, 'the stored connection survived the supervisor restart');
    // FDSTOREREMOVE=1: gone from the store; after the next restart the connection ends.
    const other = await lineClient(port);
    other.send('remove');
    assert.is(await other.line(), 'removed');
    await waitForFile(holderFile, (d) => !d.fds.some((f: { kind: string }) => f.kind === 'store'), true);
    await sup.stopSnap(name, undefined, {}, true);
    await sup.startSnap(name);
    assert.is(await client!.line(), null, 'the connection closed: nothing kept it');
  } finally {
    client?.close();
    if (process.env.KEEP_LOG) fs.cpSync(path.join(root, "log"), process.env.KEEP_LOG, { recursive: true });
    await sup.shutdown({ stopServices: true }).catch(() => undefined);
    fs.rmSync(root, { recursive: true, force: true });
  }
});

/** Reads R/run/fd-holder.json until `ok` holds (or, with `gone`, also when the file is gone). */
// eslint-disable-next-line @typescript-eslint/no-explicit-any
async function waitForFile(file: string, ok: (doc: any) => boolean, gone = false): Promise<any> {
  const deadline = Date.now() + 10_000;
  for (;;) {
    try {
      const doc = JSON.parse(fs.readFileSync(file, 'utf8'));
      if (ok(doc)) return doc;
    } catch {
      if (gone && !fs.existsSync(file)) return null;
    }
    if (Date.now() > deadline) throw new Error(`${file} never matched`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

/** A TCP client that reads lines; line() resolves null at EOF. */
async function lineClient(port: number): Promise<{ send(s: string): void; line(): Promise<string | null>; close(): void }> {
  const sock = net.connect(port, '127.0.0.1');
  await new Promise<void>((resolve, reject) => {
    sock.once('connect', resolve);
    sock.once('error', reject);
  });
  let buf = '';
  let ended = false;
  const waiters: Array<() => void> = [];
  const wake = () => waiters.splice(0).forEach((w) => w());
  sock.setEncoding('utf8');
  sock.on('data', (c) => ((buf += c), wake()));
  sock.on('end', () => ((ended = true), wake()));
  sock.on('error', () => ((ended = true), wake()));
  return {
    send: (s) => sock.write(s),
    close: () => sock.destroy(),
    async line() {
      const deadline = Date.now() + 10_000;
      for (;;) {
        const nl = buf.indexOf('\n');
        if (nl >= 0) {
          const l = buf.slice(0, nl);
          buf = buf.slice(nl + 1);
          return l;
        }
        if (ended) return null;
        if (Date.now() > deadline) throw new Error('no line within 10 s');
        await new Promise<void>((r) => {
          waiters.push(r);
          setTimeout(r, 200);
        });
      }
    },
  };
}

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
