// The standby jobs' scheduling (src/snap/standby.ts StandbyJobs): a cancel
// is seen at every step of a job, jobs of different snaps take turns, and a
// cancelled job that waits for its turn ends at once. A job's first step
// (deleting the standbys an earlier run left) is what these tests hold up:
// it runs on any file system, so no reflink file system is needed.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { StandbyJobs } from '../src/snap/standby';
import { gateOn, haveCommand, isRoot, tmpdir } from './helpers';

const test = suite('standby-jobs');
const xfsTest = gateOn(test, !isRoot ? 'needs root (loop mounts)' : !haveCommand('mkfs.xfs') ? 'mkfs.xfs missing (apt-get install xfsprogs)' : null);

/** R/var/snap/SNAP with x1's data (one file) and a leftover standby of `files` files. */
function snapDataWithLeftover(root: string, snap: string, files: number): string {
  const parent = path.join(root, snap);
  fs.mkdirSync(path.join(parent, 'x1'), { recursive: true });
  fs.writeFileSync(path.join(parent, 'x1', 'data'), 'x');
  const left = path.join(parent, '.standby-00000000', 'tree');
  fs.mkdirSync(left, { recursive: true });
  for (let d = 0; d < files / 1000; d++) {
    fs.mkdirSync(path.join(left, `d${d}`));
    for (let i = 0; i < 1000; i++) fs.writeFileSync(path.join(left, `d${d}`, `f${i}`), '');
  }
  return parent;
}

/** A loop-mounted XFS image (reflink=1) for `fn`, unmounted and removed afterwards (also after a failure). */
async function withXfs(fn: (mnt: string) => Promise<void>): Promise<void> {
  const dir = tmpdir('standby-jobs-xfs-');
  const img = path.join(dir, 'img');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  try {
    execFileSync('truncate', ['-s', '320M', img]);
    execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', img], { stdio: 'ignore' });
    execFileSync('mount', ['-o', 'loop', img, mnt]);
    await fn(mnt);
  } finally {
    spawnSync('umount', ['-l', mnt]);
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

test('a cancel while the job deletes old standbys is seen: the job goes no further (it made a standby through the refresh that cancelled it)', async () => {
  const root = tmpdir('standby-jobs-');
  try {
    snapDataWithLeftover(root, 'a', 8000);
    const said: string[] = [];
    const jobs = new StandbyJobs((snap, rev) => path.join(root, snap, rev), (l) => said.push(l));
    jobs.schedule('a', 'x1', 0);
    // Once the deletion is under way (the leftover's files start to go), cancel.
    const left = path.join(root, 'a', '.standby-00000000', 'tree');
    const t0 = Date.now();
    while (fs.existsSync(path.join(left, 'd0', 'f0')) && Date.now() - t0 < 10_000) await new Promise((r) => setImmediate(r));
    assert.is(jobs.state('a').state, 'making', 'the job runs');
    jobs.cancel('a');
    await jobs.settled();
    assert.is(jobs.state('a').state, 'none');
    // The job did not go on to make a standby (on this file system it would have said whether files clone here).
    assert.equal(said, [], `nothing made or tried after the cancel: ${said.join('; ')}`);
    assert.equal(fs.readdirSync(path.join(root, 'a')).filter((e) => e.startsWith('.standby-') && e !== '.standby-00000000'), [], 'no new standby directory');
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('jobs of two snaps take turns; stop() of a snap whose job waits for its turn returns at once', async () => {
  const root = tmpdir('standby-jobs-');
  try {
    snapDataWithLeftover(root, 'a', 8000);
    snapDataWithLeftover(root, 'b', 1000);
    const jobs = new StandbyJobs((snap, rev) => path.join(root, snap, rev));
    jobs.schedule('a', 'x1', 0);
    jobs.schedule('b', 'x1', 0);
    const leftA = path.join(root, 'a', '.standby-00000000', 'tree');
    const t0 = Date.now();
    while (fs.existsSync(path.join(leftA, 'd0', 'f0')) && Date.now() - t0 < 10_000) await new Promise((r) => setImmediate(r));
    // a's job deletes its leftover; b's has not started: b's leftover is untouched.
    assert.ok(fs.existsSync(path.join(root, 'b', '.standby-00000000', 'tree', 'd0', 'f0')), "b's job waits for a's");
    const s0 = Date.now();
    await jobs.stop('b');
    const stopMs = Date.now() - s0;
    assert.ok(fs.existsSync(path.join(root, 'a', '.standby-00000000')), "a's job still runs");
    assert.ok(stopMs < 200, `stop of b waited ${stopMs} ms for a's job`);
    assert.ok(fs.existsSync(path.join(root, 'b', '.standby-00000000', 'tree', 'd0', 'f0')), "b's cancelled job never ran");
    await jobs.close();
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

test('with no revision to stand by for, what an earlier run left is deleted', async () => {
  const root = tmpdir('standby-jobs-');
  try {
    snapDataWithLeftover(root, 'c', 1000);
    const jobs = new StandbyJobs((snap, rev) => path.join(root, snap, rev));
    jobs.schedule('c', null);
    await jobs.settled();
    assert.equal(fs.readdirSync(path.join(root, 'c')), ['x1']);
  } finally {
    fs.rmSync(root, { recursive: true, force: true });
  }
});

xfsTest('a file that does not clone (a tmpfs mounted inside the data) ends the job: no standby of copied bytes beside the data', () => withXfs(async (mnt) => {
  const inner = path.join(mnt, 'a', 'x1', 'inner');
  let tmpfs = false;
  try {
    fs.mkdirSync(inner, { recursive: true });
    fs.writeFileSync(path.join(mnt, 'a', 'x1', 'outer'), 'o'.repeat(4096));
    execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=64M', 'tmpfs', inner]);
    tmpfs = true;
    fs.writeFileSync(path.join(inner, 'big'), Buffer.alloc(32 << 20, 1));
    const used = () => Number(execFileSync('df', ['--output=used', '-B1', mnt], { encoding: 'utf8' }).trim().split('\n')[1]);
    const before = used();
    const said: string[] = [];
    const jobs = new StandbyJobs((snap, rev) => path.join(mnt, snap, rev), (l) => said.push(l));
    jobs.schedule('a', 'x1', 0);
    await jobs.settled();
    assert.is(jobs.state('a').state, 'unsupported', said.join('; '));
    assert.equal(fs.readdirSync(path.join(mnt, 'a')).filter((e) => e.startsWith('.standby-')), [], 'nothing left of the job');
    assert.ok(used() - before < 8 << 20, `the file system grew by ${used() - before} bytes`);
  } finally {
    if (tmpfs) spawnSync('umount', [inner]);
  }
}));

xfsTest('no standby on a file system with less than 10% free: what the services rewrite would stay allocated twice', () => withXfs(async (mnt) => {
  fs.mkdirSync(path.join(mnt, 'a', 'x1'), { recursive: true });
  fs.writeFileSync(path.join(mnt, 'a', 'x1', 'data'), 'd'.repeat(4096));
  const st = fs.statfsSync(mnt);
  // Leave ~5% of the blocks free.
  execFileSync('fallocate', ['-l', String(Math.floor((st.bavail - st.blocks * 0.05) * st.bsize)), path.join(mnt, 'filler')]);
  const said: string[] = [];
  const jobs = new StandbyJobs((snap, rev) => path.join(mnt, snap, rev), (l) => said.push(l));
  jobs.schedule('a', 'x1', 0);
  await jobs.settled();
  assert.is(jobs.state('a').state, 'none');
  assert.equal(said.length, 1);
  assert.match(said[0], /^standby copy of a x1 not made: only \d+\.\d% of the file system's blocks are free$/);
  assert.equal(fs.readdirSync(path.join(mnt, 'a')).filter((e) => e.startsWith('.standby-')), []);
}));

test.run();
