// standby.test.ts: the standby copy of $SNAP_DATA (src/snap/standby.ts,
// native/copy.cc standby_make/standby_apply) on a real loop-mounted XFS
// image (reflink=1): after a standby is made, the source is changed in every
// way a service can change it (content of the same size with the mtime set
// back, append, truncate, chmod, chown, xattrs set and removed, rename,
// delete, new file/dir/symlink/fifo, hard links added and removed, a change
// within the racy margin) and the standby itself is tampered with; the
// checking pass must then give exactly what a fresh full copy gives, entry
// by entry (type, mode, owner, size, atime/mtime ns, content, link target,
// hard-link structure, xattrs, holes), and the result must be independent of
// the source. Then the supervisor's use of it: a refresh after the job took
// the standby (the change says so) and its data equals a full copy; a
// standby that cannot be used is never used (full copy). Also: no standby on
// a file system without clones (tmpfs), and SNAPPROC_STANDBY=0.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyTree } from '../src/snap/data-copy';
import { native } from '../src/kernel/native';
import { RACY_MARGIN_NS, isStandbyName } from '../src/snap/standby';
import { Supervisor } from '../src/supervisor/supervisor';
import { loadChanges } from '../src/supervisor/change-runner';
import { gateOn, haveCommand, testParent, tmpdir, uniqueSnapName } from './helpers';

const test = suite('standby');
const missing = !haveCommand('mkfs.xfs') ? 'mkfs.xfs missing (apt-get install xfsprogs)' : !haveCommand('getfattr') || !haveCommand('setfattr') ? 'getfattr/setfattr missing (apt-get install attr)' : null;
const xfsTest = gateOn(test, missing);

const mounts: string[] = [];
const images: string[] = [];
function cleanup(): void {
  for (const m of mounts.splice(0).reverse()) spawnSync('umount', ['-l', m]);
  for (const i of images.splice(0)) fs.rmSync(i, { force: true });
}
process.on('exit', cleanup);

/**
 * A loop-mounted XFS image (reflink=1), unmounted and removed at exit (also
 * after a failure). `noatime`: reads change no atime there, so that a
 * listing (which reads every file) or a copy (which reads every symlink:
 * readlink sets its atime, for any copy) leaves nothing to compare wrongly.
 */
function xfsImage(opts: { noatime?: boolean } = {}, sizeMiB = 320): string {
  const dir = tmpdir('snapproc-sb-');
  const img = path.join(dir, 'img');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  execFileSync('truncate', ['-s', `${sizeMiB}M`, img]);
  images.push(img);
  execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', img], { stdio: 'ignore' });
  execFileSync('mount', ['-o', opts.noatime ? 'loop,noatime' : 'loop', img, mnt]);
  mounts.push(mnt);
  return mnt;
}

/** xattrs of every entry, by relative path (getfattr -R, hex values, no symlink following). */
function xattrs(root: string): Map<string, string> {
  const out = spawnSync('getfattr', ['-R', '-P', '-h', '-d', '-m', '-', '-e', 'hex', '.'], { cwd: root, encoding: 'latin1' }).stdout;
  const map = new Map<string, string>();
  for (const block of out.split('\n\n')) {
    const lines = block.split('\n').filter(Boolean);
    if (!lines.length) continue;
    map.set(lines[0].replace(/^# file: /, ''), lines.slice(1).sort().join(' '));
  }
  return map;
}

/** Every entry, by name bytes: type, mode, owner, size, blocks (holes), atime/mtime ns, content hash, link target, hard-link group, rdev, xattrs. */
function listing(root: string): string[] {
  const out: string[] = [];
  const inodes = new Map<bigint, string>();
  const walk = (dir: Buffer, rel: string) => {
    for (const name of fs.readdirSync(dir, { encoding: 'buffer' }).sort(Buffer.compare)) {
      const p = Buffer.concat([dir, Buffer.from('/'), name]);
      const st = fs.lstatSync(p, { bigint: true });
      const r = `${rel}/${name.toString('hex')}`;
      let what = '';
      if (st.isSymbolicLink()) what = `-> ${fs.readlinkSync(p, 'hex')}`;
      else if (st.isFile()) what = `${createHash('sha1').update(fs.readFileSync(p)).digest('hex')} blocks=${st.blocks}`;
      else if (st.isCharacterDevice() || st.isBlockDevice()) what = `rdev=${st.rdev}`;
      let group = '';
      if (!st.isDirectory() && st.nlink > 1n) {
        if (!inodes.has(st.ino)) inodes.set(st.ino, r);
        group = `link-of ${inodes.get(st.ino)}`;
      }
      out.push(`${r} ${st.mode.toString(8)} ${st.uid}:${st.gid} size=${st.isDirectory() ? '' : st.size} nlink=${st.isDirectory() ? '' : st.nlink} a=${st.atimeNs} m=${st.mtimeNs} ${what} ${group}`);
      if (st.isDirectory()) walk(p, r);
    }
  };
  walk(Buffer.from(root), '');
  const top = fs.lstatSync(root, { bigint: true });
  out.push(`. ${top.mode.toString(8)} ${top.uid}:${top.gid} a=${top.atimeNs} m=${top.mtimeNs}`);
  for (const [k, v] of xattrs(root)) out.push(`xattr ${k} ${v}`);
  return out;
}

function setfattr(p: string, name: string, value?: string): void {
  execFileSync('setfattr', value === undefined ? ['-h', '-x', name, p] : ['-h', '-n', name, '-v', value, p]);
}

const OLD = new Date('2010-01-02T03:04:05.678Z');

/** A source tree with every kind of entry, all of it older than the racy margin. */
function fill(src: string): void {
  fs.mkdirSync(src, { recursive: true });
  const f = (rel: string, data: string | Buffer, mode = 0o644) => {
    fs.mkdirSync(path.dirname(path.join(src, rel)), { recursive: true });
    fs.writeFileSync(path.join(src, rel), data, { mode });
    fs.chmodSync(path.join(src, rel), mode);
  };
  f('same-size', 'aaaaaaaaaa');
  f('append', 'start\n');
  f('truncate', 'x'.repeat(10000));
  f('chmod', 'm', 0o640);
  f('chown', 'o');
  f('xattr-set', 'x');
  f('xattr-rm', 'x');
  setfattr(path.join(src, 'xattr-rm'), 'user.gone', 'bye');
  f('rename-me', 'r');
  f('delete-me', 'd');
  f('racy', 'racy-1');
  f('untouched', 'u'.repeat(5000));
  f('tamper-content', 't'.repeat(100));
  f('tamper-delete', 'td');
  f('sub/deep/file', 'deep', 0o600);
  f('sub/keep', 'k');
  f('gone-dir/inner', 'gi');
  fs.mkdirSync(path.join(src, 'dir-chmod'));
  fs.mkdirSync(path.join(src, 'dir-xattr'));
  fs.mkdirSync(path.join(src, 'setgid-dir'));
  fs.chmodSync(path.join(src, 'setgid-dir'), 0o2775);
  fs.chownSync(path.join(src, 'setgid-dir'), 0, 4321);
  f('setgid-dir/existing', 'e');
  f('hl/a', 'hard');
  fs.linkSync(path.join(src, 'hl', 'a'), path.join(src, 'hl', 'b'));
  f('hl2/a', 'hard2');
  fs.linkSync(path.join(src, 'hl2', 'a'), path.join(src, 'hl2', 'b'));
  fs.linkSync(path.join(src, 'hl2', 'a'), path.join(src, 'sub', 'hl2-c'));
  f('hl3/a', 'hard3');
  fs.linkSync(path.join(src, 'hl3', 'a'), path.join(src, 'hl3', 'b'));
  fs.symlinkSync('untouched', path.join(src, 'link'));
  fs.symlinkSync('nowhere', path.join(src, 'link-retarget'));
  execFileSync('mkfifo', [path.join(src, 'fifo')]);
  // A sparse file: 1 MiB hole, 4 KiB of data, a hole at the end.
  const fd = fs.openSync(path.join(src, 'sparse'), 'w');
  fs.writeSync(fd, Buffer.alloc(4096, 9), 0, 4096, 1 << 20);
  fs.ftruncateSync(fd, 3 << 20);
  fs.closeSync(fd);
  fs.writeFileSync(Buffer.concat([Buffer.from(src + '/odd-'), Buffer.from([0xff, 0x0a, 0x01])]), 'odd name');
  f('big', Buffer.alloc(2 << 20, 3));
  // Everything old (times set back: the ctimes are what they are, older than the job's start by the time it runs).
  const all: Buffer[] = [];
  const walk = (d: Buffer) => {
    for (const name of fs.readdirSync(d, { encoding: 'buffer' })) {
      const p = Buffer.concat([d, Buffer.from('/'), name]);
      if (fs.lstatSync(p).isDirectory()) walk(p);
      all.push(p);
    }
  };
  walk(Buffer.from(src));
  for (const p of all) fs.lutimesSync(p, OLD, OLD);
  fs.utimesSync(src, OLD, OLD);
}

/** Changes the source in every way (after the standby was made). `racy`: also a change within the racy margin. */
function mutate(src: string): void {
  const p = (rel: string) => path.join(src, rel);
  fs.writeFileSync(p('same-size'), 'bbbbbbbbbb');
  fs.utimesSync(p('same-size'), OLD, OLD); // same size, same mtime: only the ctime shows it
  fs.appendFileSync(p('append'), 'more\n');
  fs.truncateSync(p('truncate'), 10);
  fs.chmodSync(p('chmod'), 0o4755);
  fs.chownSync(p('chown'), 1234, 5678);
  setfattr(p('xattr-set'), 'user.new', 'value');
  setfattr(p('xattr-rm'), 'user.gone');
  fs.renameSync(p('rename-me'), p('renamed'));
  fs.unlinkSync(p('delete-me'));
  fs.mkdirSync(p('new-dir/nested'), { recursive: true });
  fs.writeFileSync(p('new-dir/nested/file'), 'new');
  fs.writeFileSync(p('setgid-dir/new'), 'in a setgid dir');
  fs.symlinkSync('sub/keep', p('new-link'));
  fs.unlinkSync(p('link-retarget'));
  fs.symlinkSync('elsewhere', p('link-retarget'));
  execFileSync('mkfifo', [p('new-fifo')]);
  fs.chmodSync(p('dir-chmod'), 0o700);
  setfattr(p('dir-xattr'), 'user.d', 'dv');
  fs.rmSync(p('gone-dir'), { recursive: true });
  fs.writeFileSync(p('sub/deep/file'), 'deep and changed');
  // Hard links: one added to a set, one set split.
  fs.linkSync(p('hl/a'), p('hl/c'));
  fs.unlinkSync(p('hl2/b'));
  // A file turned into a directory, a directory into a file.
  fs.unlinkSync(p('fifo'));
  fs.mkdirSync(p('fifo'));
  fs.writeFileSync(p('fifo/now-a-dir'), 'x');
  // Swapped names (same sizes): only the inode numbers show it.
  fs.writeFileSync(p('swap-a'), '1');
  fs.writeFileSync(p('swap-b'), '2');
}

/** Resolves when `p` rejects with one of `codes`; fails otherwise. */
async function rejects(p: Promise<unknown>, codes: string[], what = ''): Promise<void> {
  try {
    await p;
  } catch (err) {
    assert.ok(codes.includes((err as NodeJS.ErrnoException).code ?? ''), `${what}: rejected with ${(err as NodeJS.ErrnoException).code} (${(err as Error).message}), expected ${codes.join('/')}`);
    return;
  }
  assert.unreachable(`${what}: resolved, expected a rejection with ${codes.join('/')}`);
}

async function makeStandby(src: string, label: string): Promise<string> {
  const dir = path.join(path.dirname(src), `.standby-${Math.random().toString(16).slice(2, 10).padEnd(8, '0')}`);
  await native.standbyMake(src, dir, label, new Int32Array(new SharedArrayBuffer(4)));
  return dir;
}

/** The checking pass's result against a fresh full copy of the source, entry by entry. */
async function assertFaithful(mnt: string, src: string, standby: string, label: string, what: string) {
  const r = await native.standbyApply(src, standby, label, RACY_MARGIN_NS);
  const full = path.join(mnt, `full-${Math.random().toString(16).slice(2)}`);
  await copyTree(src, full);
  const got = listing(path.join(standby, 'tree'));
  const want = listing(full);
  const diff = got.filter((l) => !want.includes(l)).concat(want.filter((l) => !got.includes(l)).map((l) => `missing: ${l}`));
  assert.equal(diff, [], `${what}: the standby after the checking pass equals a fresh full copy`);
  fs.rmSync(full, { recursive: true, force: true });
  return r;
}

xfsTest('XFS: after every kind of change to the source and tampering with the standby, the checking pass gives exactly a fresh full copy', async () => {
  const mnt = xfsImage({ noatime: true });
  const src = path.join(mnt, 'snap', 'x1');
  fill(src);
  fs.chownSync(path.join(src, 'sub'), 77, 88);
  // Older than the racy margin when the job starts.
  await new Promise((r) => setTimeout(r, 120));
  const standby = await makeStandby(src, 'x1');
  assert.ok(fs.existsSync(path.join(standby, 'manifest')), 'manifest written');
  assert.is(fs.statSync(standby).mode & 0o777, 0o700);
  // Unchanged: everything kept, nothing redone.
  const clean = await native.standbyApply(src, standby, 'x1', RACY_MARGIN_NS);
  assert.is(clean.recreated + clean.removed + clean.fixed, 0, `nothing to redo in an unchanged tree (${JSON.stringify(clean)})`);
  assert.not.ok(fs.existsSync(path.join(standby, 'manifest')), 'a used standby has no manifest');
  await rejects(native.standbyApply(src, standby, 'x1', RACY_MARGIN_NS), ['ESTALE'], 'a used standby is refused');
  fs.rmSync(standby, { recursive: true });

  // Every kind of change.
  const sb2 = await makeStandby(src, 'x1');
  mutate(src);
  // The standby tampered with: content (same size) with its times set back, an entry deleted, one added.
  const t = (rel: string) => path.join(sb2, 'tree', rel);
  fs.writeFileSync(t('tamper-content'), 'T'.repeat(100));
  fs.utimesSync(t('tamper-content'), OLD, OLD);
  fs.unlinkSync(t('tamper-delete'));
  fs.writeFileSync(t('sub/intruder'), 'not in the source');
  fs.unlinkSync(t('hl3/b'));
  const r = await assertFaithful(mnt, src, sb2, 'x1', 'every change');
  assert.ok(r.kept > 5, `unchanged entries kept (${JSON.stringify(r)})`);
  assert.ok(r.recreated > 5 && r.removed >= 1 && r.linkSetsRedone >= 2, `changes redone (${JSON.stringify(r)})`);
  // Independent: writing to the result leaves the source as it was.
  fs.writeFileSync(path.join(sb2, 'tree', 'big'), 'rewritten');
  fs.appendFileSync(path.join(sb2, 'tree', 'hl', 'a'), 'more');
  assert.is(fs.statSync(path.join(src, 'big')).size, 2 << 20, 'source untouched');
  assert.is(fs.readFileSync(path.join(src, 'hl', 'c'), 'utf8'), 'hard', 'source hard link untouched');
  fs.rmSync(sb2, { recursive: true });
});

xfsTest('XFS: a change in the same clock tick as the job\'s stat (within the racy margin) is redone; a stale, foreign or torn standby is refused', async () => {
  const mnt = xfsImage();
  const src = path.join(mnt, 'x1');
  fill(src);
  await new Promise((r) => setTimeout(r, 120));
  // Changed just before the job: its ctime is within the margin, so the checking pass must not trust it,
  // even though the job recorded the stat it has now and a later write of the same size kept it (simulated:
  // the file is rewritten right after the standby, then its mtime set back; with a coarse ctime the two could match).
  fs.writeFileSync(path.join(src, 'racy'), 'racy-2');
  const sb = await makeStandby(src, 'x1');
  const r = await native.standbyApply(src, sb, 'x1', RACY_MARGIN_NS);
  assert.ok(r.recreated >= 1, `the racy entry is made again (${JSON.stringify(r)})`);
  fs.rmSync(sb, { recursive: true });
  // The same check with a huge margin: every entry counts as changed, and the result is still exact.
  const sb1 = await makeStandby(src, 'x1');
  const all = await native.standbyApply(src, sb1, 'x1', 1e18);
  assert.is(all.kept, 0, 'nothing kept when everything is racy');
  fs.rmSync(sb1, { recursive: true });
  // Another revision's standby, a torn manifest, another source directory: refused (ESTALE), nothing used.
  const sb2 = await makeStandby(src, 'x1');
  await rejects(native.standbyApply(src, sb2, 'x2', RACY_MARGIN_NS), ['ESTALE']);
  fs.rmSync(sb2, { recursive: true });
  const sb3 = await makeStandby(src, 'x1');
  const m = fs.readFileSync(path.join(sb3, 'manifest'));
  m[m.length - 20] ^= 0xff;
  fs.writeFileSync(path.join(sb3, 'manifest'), m);
  assert.match(String(native.standbyInfo(sb3).why), /checksum/);
  await rejects(native.standbyApply(src, sb3, 'x1', RACY_MARGIN_NS), ['ESTALE']);
  fs.rmSync(sb3, { recursive: true });
  const sb4 = await makeStandby(src, 'x1');
  const other = path.join(mnt, 'x1-other');
  await copyTree(src, other);
  await rejects(native.standbyApply(other, sb4, 'x1', RACY_MARGIN_NS), ['ESTALE']);
  // Refused is used up (its manifest is gone: never checked again), like an incomplete one (a job killed, or running).
  assert.match(String(native.standbyInfo(sb4).why), /no manifest/);
  fs.rmSync(sb4, { recursive: true });
  // Cancelled: ECANCELED, and the job's directory is the caller's to remove.
  const dir = path.join(mnt, '.standby-cancel00');
  const flag = new Int32Array(new SharedArrayBuffer(4));
  Atomics.store(flag, 0, 1);
  await rejects(native.standbyMake(src, dir, 'x1', flag), ['ECANCELED']);
  assert.not.ok(fs.existsSync(path.join(dir, 'manifest')));
});

xfsTest('XFS (relatime): a read after the standby sets an atime and no ctime: the checking pass keeps the entry and gives it the new atime', async () => {
  const mnt = xfsImage();
  const src = path.join(mnt, 'x1');
  fill(src);
  await new Promise((r) => setTimeout(r, 120));
  const sb = await makeStandby(src, 'x1');
  const before = fs.lstatSync(path.join(src, 'untouched'), { bigint: true });
  fs.readFileSync(path.join(src, 'untouched')); // relatime: an atime older than a day is updated
  fs.readdirSync(path.join(src, 'sub'));
  const after = fs.lstatSync(path.join(src, 'untouched'), { bigint: true });
  assert.ok(after.atimeNs > before.atimeNs && after.ctimeNs === before.ctimeNs, 'the read set the atime only');
  const subAtime = fs.lstatSync(path.join(src, 'sub'), { bigint: true }).atimeNs;
  const r = await native.standbyApply(src, sb, 'x1', RACY_MARGIN_NS);
  assert.ok(r.retimed >= 2 && r.recreated === 0, `kept, times set (${JSON.stringify(r)})`);
  assert.is(fs.lstatSync(path.join(sb, 'tree', 'untouched'), { bigint: true }).atimeNs, after.atimeNs);
  assert.is(fs.lstatSync(path.join(sb, 'tree', 'sub'), { bigint: true }).atimeNs, subAtime);
  assert.is(fs.lstatSync(path.join(sb, 'tree', 'untouched'), { bigint: true }).mtimeNs, after.mtimeNs);
});

test('no standby where files are not clones (tmpfs): EOPNOTSUPP, nothing made', async () => {
  const base = tmpdir('snapproc-sb-tmp-');
  const src = path.join(base, 'x1');
  fs.mkdirSync(src);
  fs.writeFileSync(path.join(src, 'f'), 'data');
  const fstype = spawnSync('stat', ['-f', '-c', '%T', base], { encoding: 'utf8' }).stdout.trim();
  const dir = path.join(base, '.standby-0000aaaa');
  if (fstype === 'xfs' || fstype === 'btrfs') return; // the temp dir clones: nothing to show here
  await rejects(native.standbyMake(src, dir, 'x1', new Int32Array(new SharedArrayBuffer(4))), ['EOPNOTSUPP', 'ENOTSUP']);
  assert.not.ok(fs.existsSync(dir), 'nothing made');
  assert.ok(isStandbyName('.standby-0000aaaa') && !isStandbyName('.x1.trash-0000aaaa') && !isStandbyName('x1'));
});

function writeSnap(dir: string, name: string, version: string): string {
  fs.mkdirSync(path.join(dir, 'meta'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), `name: ${name}\nversion: '${version}'\napps:\n  svc:\n    command: bin/svc\n    daemon: simple\n    stop-timeout: 5s\n`);
  fs.writeFileSync(path.join(dir, 'bin', 'svc'), '#!/bin/sh\nexec sleep 100000\n', { mode: 0o755 });
  return dir;
}

xfsTest('supervisor on XFS: after a refresh the standby is made in the background; the next refresh uses it and its data equals a full copy; changed data is redone; SNAPPROC_STANDBY=0 copies in full', async () => {
  const mnt = xfsImage({ noatime: true });
  const root = path.join(mnt, 'root');
  const srcs = tmpdir('snapproc-sb-snaps-');
  const name = uniqueSnapName('sb');
  const sup = new Supervisor({ root, cgroupParent: path.join(testParent(), `sb-${process.pid}`), handleSignals: false, log: () => {} });
  await sup.start();
  try {
    await sup.install(writeSnap(path.join(srcs, 'v1'), name, '1'));
    const data = (rev: string) => sup.store.paths(name, rev).data;
    fill(data('x1'));
    await sup.refresh(name, writeSnap(path.join(srcs, 'v2'), name, '2'));
    await sup.standbysSettled();
    assert.equal(sup.standbyState(name), { state: 'ready', revision: 'x2' });
    const parent = path.dirname(data('x2'));
    assert.is(fs.readdirSync(parent).filter(isStandbyName).length, 1, 'one standby next to the data');
    // Changed while it waited (the service's data changes between refreshes).
    mutate(data('x2'));
    await sup.refresh(name, writeSnap(path.join(srcs, 'v3'), name, '3'));
    const change = loadChanges(root).filter((c) => c.kind === 'refresh' && c.snap === name).pop()!;
    const step = change.steps.find((s) => s.name === 'unlink-copy-data')!;
    assert.match(String(step.summary), /standby copy: \d+ kept, [1-9]\d* made again/, `the refresh used the standby: ${step.summary}`);
    const full = path.join(mnt, 'full-x2');
    await copyTree(data('x2'), full);
    assert.equal(listing(data('x3')), listing(full), 'x3 data equals a full copy of x2');
    fs.rmSync(full, { recursive: true });
    // Independent: x3's data written, x2's unchanged.
    fs.writeFileSync(path.join(data('x3'), 'untouched'), 'changed in x3');
    assert.is(fs.readFileSync(path.join(data('x2'), 'untouched'), 'utf8'), 'u'.repeat(5000));
    await sup.standbysSettled();
    assert.equal(sup.standbyState(name), { state: 'ready', revision: 'x3' });
    // A refresh started while a job is scheduled does not wait for it: it copies in full.
    process.env.SNAPPROC_STANDBY = '0';
    try {
      await sup.refresh(name, writeSnap(path.join(srcs, 'v4'), name, '4'));
    } finally {
      delete process.env.SNAPPROC_STANDBY;
    }
    const c4 = loadChanges(root).filter((c) => c.kind === 'refresh' && c.snap === name).pop()!;
    assert.not.match(String(c4.steps.find((s) => s.name === 'unlink-copy-data')!.summary), /standby/, 'off: full copy');
    await sup.standbysSettled();
    await sup.remove(name, { purge: true });
    assert.not.ok(fs.existsSync(parent), 'remove leaves no standby behind');
  } finally {
    await sup.shutdown();
  }
});

test.run();
