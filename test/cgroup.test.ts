// The cgroup process model (SPEC 3): finding the cgroup2 mount, snapd's
// cgroup names, finding a snap's cgroups anywhere in the tree, and
// classifying each process as main, group or other with its revision.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cgroup2MountFromMountinfo } from '../src/kernel/cgroupfs';
import { appScopeName, hookScopeName, parseCgroupName, serviceCgroupName, splitSnapApp } from '../src/process/cgroup-names';
import { findSnapCgroups } from '../src/process/find-cgroups';
import { classifyCgroup } from '../src/process/classify';
import { snapProcesses } from '../src/process/process-table';
import { killCgroup } from '../src/kernel/kill';
import { startTimeOf } from '../src/kernel/procfs';
import { cleanupParent, gate, makeCgroup, startTree, testParent, uniqueSnapName } from './helpers';

const test = suite('cgroup');
const rootTest = gate(test);
test.after(() => cleanupParent());

const UUID = '0f8fad5b-d9cb-469f-a165-70867728950e';

test('cgroup2 mount from mountinfo: unified, hybrid, escaped, absent', () => {
  const unified = '30 23 0:26 / /sys/fs/cgroup rw,nosuid,nodev,noexec,relatime shared:4 - cgroup2 cgroup2 rw,nsdelegate\n';
  assert.is(cgroup2MountFromMountinfo(unified), '/sys/fs/cgroup');
  const hybrid = [
    '31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755',
    '32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu',
    '41 31 0:38 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw',
  ].join('\n');
  assert.is(cgroup2MountFromMountinfo(hybrid), '/sys/fs/cgroup/unified');
  assert.is(cgroup2MountFromMountinfo('41 31 0:38 / /mnt/my\\040cg rw - cgroup2 none rw\n'), '/mnt/my cg');
  assert.is(cgroup2MountFromMountinfo('32 31 0:29 / /sys/fs/cgroup/cpu rw - cgroup cgroup rw,cpu\n'), null);
});

test('snapd cgroup names: build and parse', () => {
  assert.is(serviceCgroupName('lxd', 'daemon'), 'snap.lxd.daemon.service');
  assert.is(appScopeName('hello_foo', 'hello', UUID), `snap.hello_foo.hello-${UUID}.scope`);
  assert.is(hookScopeName('x', 'pre-refresh', UUID), `snap.x.hook.pre-refresh-${UUID}.scope`);
  assert.is(serviceCgroupName('a+b', 'svc'), 'snap.a\\x2bb.svc.service');
  assert.equal(parseCgroupName('snap.a\\x2bb.svc.service'), { instance: 'a+b', kind: 'service', app: 'svc' });
  assert.equal(parseCgroupName('snap.lxd.daemon.service'), { instance: 'lxd', kind: 'service', app: 'daemon' });
  assert.equal(parseCgroupName(`snap.hello_foo.my-app-${UUID}.scope`), { instance: 'hello_foo', kind: 'app', app: 'my-app', uuid: UUID });
  assert.equal(parseCgroupName(`snap.x.hook.post-refresh-${UUID}.scope`), { instance: 'x', kind: 'hook', app: 'post-refresh', uuid: UUID });
  for (const bad of ['snapd.service', 'snap.x.service', 'snap.x.a.b.service', 'snap.x.app.scope', 'snap-x.y.service', 'system.slice', `snap.x.-${UUID}.scope`]) {
    assert.is(parseCgroupName(bad), null, bad);
  }
  assert.equal(splitSnapApp('x.svc'), { instance: 'x', app: 'svc' });
  assert.equal(splitSnapApp('x_k'), { instance: 'x_k' });
});

rootTest('finds a snap\'s cgroups anywhere, not inside container payloads or other snaps', () => {
  const name = uniqueSnapName();
  const svc = makeCgroup('system.slice', serviceCgroupName(name, 'svc'));
  const app = makeCgroup('user.slice', 'user-1000.slice', appScopeName(name, 'cli', UUID));
  const hook = makeCgroup(hookScopeName(name, 'install', UUID));
  makeCgroup(serviceCgroupName(`${name}other`, 'svc'));
  makeCgroup(`lxc.payload.c1`, 'system.slice', serviceCgroupName(name, 'svc'));
  makeCgroup(serviceCgroupName(name, 'svc2'), serviceCgroupName(name, 'inner'));
  const found = findSnapCgroups(name, { under: testParent() });
  assert.equal(found.map((c) => [c.kind, c.app, c.path]), [
    ['service', 'svc', svc],
    ['service', 'svc2', path.join(testParent(), serviceCgroupName(name, 'svc2'))],
    ['app', 'cli', app],
    ['hook', 'install', hook],
  ]);
  // The whole tree from the cgroup2 mount finds the same.
  assert.is(findSnapCgroups(name).length, 4);
});

rootTest('classifies main, group and other, with the revision each executes', async () => {
  const name = uniqueSnapName();
  const cg = makeCgroup(serviceCgroupName(name, 'svc'));
  const tree = await startTree(cg, ['--child', 'group', '--setsid-child', 'other'], ['main', 'group', 'other'], { SNAP_REVISION: 'x7' });
  const r = classifyCgroup(cg, { revisions: true });
  assert.is(r.mainPid, tree.pids.main);
  assert.is(r.mainFrom, 'cgroup');
  const byPid = new Map(r.processes.map((p) => [p.pid, p]));
  assert.is(byPid.get(tree.pids.main)!.role, 'main');
  assert.is(byPid.get(tree.pids.group)!.role, 'group');
  assert.is(byPid.get(tree.pids.other)!.role, 'other');
  assert.is(byPid.get(tree.pids.group)!.ppid, tree.pids.main);
  assert.is(byPid.get(tree.pids.group)!.pgid, byPid.get(tree.pids.main)!.pgid);
  assert.is.not(byPid.get(tree.pids.other)!.pgid, byPid.get(tree.pids.main)!.pgid);
  for (const p of r.processes) assert.is(p.revision, 'x7');

  // A supervisor's record wins, and is verified by start time.
  const rec = classifyCgroup(cg, { main: { pid: tree.pids.main, startTime: startTimeOf(tree.pids.main)! } });
  assert.is(rec.mainFrom, 'record');
  const stale = classifyCgroup(cg, { main: { pid: tree.pids.main, startTime: 1 } });
  assert.is(stale.mainPid, null);
  assert.ok(stale.processes.every((p) => p.role === 'other'));

  const ps = snapProcesses(name);
  assert.is(ps.length, 1);
  assert.is(ps[0].mainPid, tree.pids.main);
  assert.is(ps[0].kind, 'service');
  await killCgroup(cg);
});

rootTest('revision from the executable path when it lies in a revision directory', async () => {
  const name = uniqueSnapName();
  const cg = makeCgroup(appScopeName(name, 'app', UUID));
  const dir = fs.mkdtempSync('/tmp/snapproc-rev-');
  const bin = path.join(dir, 'snap', name, 'x3', 'bin');
  fs.mkdirSync(bin, { recursive: true });
  fs.copyFileSync('/bin/sleep', path.join(bin, 'sleeper'));
  const { spawn } = await import('node:child_process');
  const child = spawn('/bin/sh', ['-c', `echo $$ > "${cg}/cgroup.procs" && exec "${bin}/sleeper" 30`], { stdio: 'ignore', env: { ...process.env, SNAP_REVISION: 'x1' } });
  try {
    const deadline = Date.now() + 5000;
    let rev: string | null = null;
    while (Date.now() < deadline) {
      const r = classifyCgroup(cg, { revisions: true });
      rev = r.processes[0]?.revision ?? null;
      if (rev === 'x3') break;
      await new Promise((res) => setTimeout(res, 20));
    }
    assert.is(rev, 'x3', 'the executable says x3 although the environment says x1');
  } finally {
    await killCgroup(cg);
    child.kill('SIGKILL');
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
