// The everyday CLI on a real supervised snap: `services` (startup, current
// state, notes: endured revision, last exit, frozen), `info` (revisions,
// apps, hooks from meta/hooks, processes per revision), `ps` (frozen, the
// revision each main runs), `logs` of every snap interleaved by time with a
// timestamp on every line, `changes` listing installs, exactly `retain`
// revisions after a revert and a refresh, `validate --json`, and `run`
// waiting while the snap is being refreshed.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { Supervisor } from '../src/supervisor/supervisor';
import { killCgroup } from '../src/kernel/kill';
import { inhibit, release } from '../src/snap/inhibit';
import { progressPrinter } from '../src/cli/progress';
import { CLI, cleanupParent, gate, makeCgroup, tmpdir, uniqueSnapName, waitFor } from './helpers';

const test = suite('status-cli');
const rootTest = gate(test);

interface Run { code: number | null; stdout: string; stderr: string }

function cli(root: string, cg: string, args: string[]): Promise<Run> {
  return new Promise((resolve) => {
    const env = { ...process.env, SNAPPROC_ROOT: root, SNAPPROC_CGROUP_PARENT: cg, SNAPPROC_NO_AUTOSTART: '1', NO_COLOR: '1' };
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code) => resolve({ code, stdout, stderr }));
  });
}

function buildSnap(name: string, version: string, extraApps = ''): string {
  const dir = tmpdir('status-snap-');
  fs.mkdirSync(path.join(dir, 'meta', 'hooks'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(
    path.join(dir, 'meta', 'snap.yaml'),
    `name: ${name}
version: '${version}'
apps:
  keeper:
    command: bin/talk keeper
    daemon: simple
    refresh-mode: endure
    stop-timeout: 2s
  web:
    command: bin/talk web
    daemon: simple
    stop-timeout: 2s
  crash:
    command: bin/crash
    daemon: simple
    restart-condition: never
  tool:
    command: bin/talk tool
${extraApps}`,
  );
  fs.writeFileSync(path.join(dir, 'bin', 'talk'), '#!/bin/sh\necho "$1 up in $SNAP_REVISION"\nexec sleep 1000\n', { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'bin', 'crash'), '#!/bin/sh\necho "crash going down"\nexit 3\n', { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'meta', 'hooks', 'install'), '#!/bin/sh\necho installing\n', { mode: 0o755 });
  fs.writeFileSync(path.join(dir, 'meta', 'hooks', 'post-refresh'), '#!/bin/sh\necho refreshed\n', { mode: 0o755 });
  return dir;
}

test.after(() => cleanupParent());

test('progress: one line per step when piped; on a terminal a live line (step, elapsed) under the per-step lines, erased at the end', () => {
  let piped = '';
  const pipe = { isTTY: false, write: (t: string) => ((piped += t), true) } as unknown as NodeJS.WriteStream;
  const p1 = progressPrinter('refresh x', pipe);
  p1.line('[1/3] validate x 2 (x2) (3 ms)');
  p1.line('[2/3] pre-refresh hook of x1 (10 ms)');
  p1.done();
  assert.is(piped, '[1/3] validate x 2 (x2) (3 ms)\n[2/3] pre-refresh hook of x1 (10 ms)\n');
  let tty = '';
  const term = { isTTY: true, write: (t: string) => ((tty += t), true) } as unknown as NodeJS.WriteStream;
  const p2 = progressPrinter('refresh x', term);
  p2.line('[1/3] validate x 2 (x2) (3 ms)');
  p2.done();
  assert.match(tty, /^\r\x1b\[Krefresh x: starting \(0\.\d s\)\r\x1b\[K\[1\/3\] validate x 2 \(x2\) \(3 ms\)\n\r\x1b\[Krefresh x: step 2\/3 \(0\.\d s\)\r\x1b\[K$/);
});

rootTest('services, info, ps, logs, changes, retain, validate --json, run during a refresh', async () => {
  const root = tmpdir('status-root-');
  const cg = makeCgroup('status');
  const sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: () => {} });
  await sup.start();
  const name = uniqueSnapName('st');
  const second = uniqueSnapName('nd');
  try {
    await sup.install(buildSnap(name, '1'));
    await waitFor('crash to exit', () => sup.status(name).find((r) => r.app === 'crash')?.state === 'failed');

    let r = await cli(root, cg, ['services', name]);
    assert.is(r.code, 0, r.stderr);
    const line = (app: string) => r.stdout.split('\n').find((l) => l.startsWith(`${name}.${app} `)) ?? '';
    assert.match(r.stdout, /^Service\s+Startup\s+Current\s+Notes$/m);
    assert.match(line('keeper'), /enabled\s+active\s+-$/);
    assert.match(line('crash'), /enabled\s+failed\s+exited 3$/);
    assert.not.match(r.stdout, /\.tool /, 'apps are not services');

    // validate: the hooks found in meta/hooks count; --json.
    const dir2 = buildSnap(name, '2');
    r = await cli(root, cg, ['validate', dir2]);
    assert.match(r.stdout, /hooks: install, post-refresh/);
    r = await cli(root, cg, ['validate', '--json', dir2]);
    const v = JSON.parse(r.stdout);
    assert.is(v.ok, true);
    assert.equal(Object.keys(v.snap.hooks), ['install', 'post-refresh']);

    await sup.refresh(name, dir2);
    r = await cli(root, cg, ['services', `${name}.keeper`, '--json']);
    const rows = JSON.parse(r.stdout).services;
    assert.is(rows.length, 1);
    assert.is(rows[0].runs, 'x1');
    assert.equal(rows[0].notes, ['endured: runs x1, current x2']);

    r = await cli(root, cg, ['info', name]);
    assert.is(r.code, 0, r.stderr);
    assert.match(r.stdout, /^revisions:\s+x1 \(1\), x2 \(2\) current$/m);
    assert.match(r.stdout, /^  keeper: service daemon=simple refresh-mode=endure stop-mode=sigterm-all stop-timeout=2s restart-condition=on-failure$/m);
    assert.match(r.stdout, /^  tool: app refresh-mode=unset$/m);
    assert.match(r.stdout, /^hooks:\s+install, post-refresh$/m);
    assert.match(r.stdout, /^  x1: keeper \d+$/m);
    assert.match(r.stdout, /^  x2 \(current\): web \d+$/m);
    const info = JSON.parse((await cli(root, cg, ['info', name, '--json'])).stdout);
    assert.is(info.current, 'x2');
    assert.equal(Object.keys(info.processes).sort(), ['x1', 'x2']);

    // Frozen shows in services and ps; ps shows the revision the main process runs.
    r = await cli(root, cg, ['freeze', name]);
    assert.is(r.code, 0, r.stderr);
    try {
      r = await cli(root, cg, ['services', name]);
      assert.match(line('web'), /enabled\s+frozen/);
      r = await cli(root, cg, ['ps', name]);
      assert.match(r.stdout, new RegExp(`^${name}\\.keeper\\s+frozen\\s+\\d+\\s+0\\s+x1\\s+runs x1, current x2$`, 'm'));
    } finally {
      await cli(root, cg, ['thaw', name]);
    }

    // logs with no name: every snap, interleaved by time, every line stamped.
    await sup.install(buildSnap(second, '1'));
    await waitFor('second keeper output', () => fs.readFileSync(path.join(root, 'log', second, 'keeper.log'), 'utf8').includes('keeper up'));
    r = await cli(root, cg, ['logs', '-n', '3']);
    assert.is(r.code, 0, r.stderr);
    const lines = r.stdout.trimEnd().split('\n');
    for (const l of lines) assert.match(l, /^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z \S+: /, l);
    const stamps = lines.map((l) => l.split(' ')[0]);
    assert.equal(stamps, [...stamps].sort(), 'in time order');
    assert.ok(lines.some((l) => l.includes(` ${name}.`)) && lines.some((l) => l.includes(` ${second}.`)), 'both snaps');
    assert.ok(lines.findIndex((l) => l.includes(` ${second}.`)) > lines.findIndex((l) => l.includes(` ${name}.web: web up in x2`)), 'the later install after');

    // changes lists installs.
    r = await cli(root, cg, ['changes', second]);
    assert.match(r.stdout, new RegExp(`install ${second}\\s+done`));

    // revert, then refresh: exactly 2 revisions (the one reverted from goes, as in snapd).
    await sup.revert(name);
    await sup.refresh(name, buildSnap(name, '3'));
    const revs = sup.store.get(name)!.revisions.map((x) => x.revision);
    // x1 stays while its enduring keeper runs it; stopped, it is pruned by the next refresh.
    assert.ok(!revs.includes('x2'), `x2 (reverted from) is dropped: ${revs}`);
    await sup.stopSnap(name, 'keeper', {});
    await sup.startSnap(name, 'keeper');
    await sup.refresh(name, buildSnap(name, '4'));
    assert.equal(sup.store.get(name)!.revisions.map((x) => x.revision), ['x3', 'x4']);

    // run while the snap is being refreshed waits, saying so.
    inhibit(root, name, 'refresh');
    const runner = spawn(process.execPath, [CLI, 'run', `${name}.tool`], { env: { ...process.env, SNAPPROC_ROOT: root, SNAPPROC_CGROUP_PARENT: cg }, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    let out = '';
    runner.stderr.on('data', (d) => (err += d));
    runner.stdout.on('data', (d) => (out += d));
    await waitFor('the waiting message', () => err.includes(`snap "${name}" is being refreshed; waiting for it to finish`));
    assert.is(out, '', 'not started while inhibited');
    release(root, name);
    await waitFor('the app to run', () => out.includes('tool up in x4'));
    runner.kill('SIGTERM');
  } finally {
    for (const s of sup.store.list()) await sup.remove(s.name, { purge: true }).catch(() => undefined);
    await sup.shutdown({ stopServices: true }).catch(() => undefined);
    await killCgroup(cg, { timeoutMs: 3000 }).catch(() => undefined);
  }
});

test.run();
