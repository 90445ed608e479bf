// data-copy.test.ts: the $SNAP_DATA copy on the file systems where it costs
// nothing, on small loop-mounted images made here: on btrfs a subvolume is
// copied as one snapshot, on XFS (reflink=1) every file is a clone, and
// either way the copy is faithful (owners, modes, ns times, xattrs,
// symlinks, hard links, odd names) and independent (writing to the copy
// leaves the original as it was). Also: an empty tree is a plain directory
// (no btrfs commit), and the store's data directories become subvolumes.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { copyTree } from '../src/snap/data-copy';
import { native } from '../src/kernel/native';
import { gateOn, haveCommand, tmpdir } from './helpers';

const test = suite('data-copy');
const btrfsTest = gateOn(test, haveCommand('mkfs.btrfs') ? null : 'mkfs.btrfs missing (apt-get install btrfs-progs)');
const xfsTest = gateOn(test, haveCommand('mkfs.xfs') ? null : 'mkfs.xfs missing (apt-get install xfsprogs)');
const have = (cmd: string) => spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
const hasAttr = have('setfattr') && have('getfattr');

const mounts: string[] = [];
process.on('exit', () => {
  for (const m of mounts) spawnSync('umount', [m]);
});

/** A loop-mounted image of `kind`, removed at exit; null (with a note) when its mkfs is missing. */
function image(kind: 'btrfs' | 'xfs'): string | null {
  const mkfs = kind === 'btrfs' ? 'mkfs.btrfs' : 'mkfs.xfs';
  if (!have(mkfs)) {
    process.stdout.write(`  (${kind} not checked: ${mkfs} missing, apt-get install ${kind === 'btrfs' ? 'btrfs-progs' : 'xfsprogs'})\n`);
    return null;
  }
  const dir = tmpdir('snapproc-dc-');
  const img = path.join(dir, 'img');
  const mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  execFileSync('truncate', ['-s', kind === 'xfs' ? '320M' : '160M', img]);
  execFileSync(mkfs, kind === 'btrfs' ? ['-q', img] : ['-q', '-m', 'reflink=1', img], { stdio: 'ignore' });
  execFileSync('mount', ['-o', 'loop', img, mnt]);
  mounts.push(mnt);
  return mnt;
}

function fill(src: string): void {
  fs.writeFileSync(path.join(src, 'big'), Buffer.alloc(3 << 20, 7));
  fs.mkdirSync(path.join(src, 'sub'));
  fs.writeFileSync(path.join(src, 'sub', 'secret'), 'top secret');
  fs.chmodSync(path.join(src, 'sub', 'secret'), 0o4750);
  fs.chownSync(path.join(src, 'sub', 'secret'), 1234, 5678);
  fs.symlinkSync('../big', path.join(src, 'sub', 'link'));
  fs.linkSync(path.join(src, 'big'), path.join(src, 'big.hard'));
  fs.writeFileSync(Buffer.concat([Buffer.from(src + '/'), Buffer.from([0x6e, 0xff, 0x0a])]), 'odd');
  if (hasAttr) execFileSync('setfattr', ['-n', 'user.k', '-v', 'v', path.join(src, 'sub', 'secret')]);
  const t = new Date('2001-02-03T04:05:06.789Z');
  fs.utimesSync(path.join(src, 'sub', 'secret'), t, t);
  fs.utimesSync(path.join(src, 'sub'), t, t);
}

/** Type, mode, owner, size, mtime (ns), link target and content hash of every entry, by name (bytes). */
function listing(root: string): string[] {
  const out: string[] = [];
  const walk = (dir: Buffer, rel: string) => {
    for (const name of fs.readdirSync(dir, { encoding: 'buffer' }).sort(Buffer.compare)) {
      const p = Buffer.concat([dir, Buffer.from('/'), name]);
      const st = fs.lstatSync(p, { bigint: true });
      const r = `${rel}/${name.toString('hex')}`;
      const what = st.isSymbolicLink() ? `-> ${fs.readlinkSync(p, 'utf8')}` : st.isFile() ? `${fs.readFileSync(p).length}:${fs.readFileSync(p).subarray(0, 16).toString('hex')}` : '';
      out.push(`${r} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.isDirectory() ? '' : st.mtimeNs} ${st.nlink} ${what}`);
      if (st.isDirectory()) walk(p, r);
    }
  };
  walk(Buffer.from(root), '');
  return out;
}

btrfsTest('btrfs: a subvolume is copied as one snapshot, faithful and independent; an empty one as a plain directory', async () => {
  const mnt = image('btrfs');
  if (!mnt) return;
  const src = path.join(mnt, 'x1');
  assert.is(native.makeDataDir(src, 0o755, true), true, 'made as a subvolume');
  assert.is(fs.statSync(src).ino, 256, 'a subvolume root');
  const emptyCopy = await copyTree(src, path.join(mnt, 'x0'), { subvolume: true });
  assert.is(emptyCopy.method, 'files', 'empty: no snapshot (no commit)');
  fill(src);
  const r = await copyTree(src, path.join(mnt, 'x2'), { subvolume: true });
  assert.is(r.method, 'snapshot');
  assert.equal(listing(path.join(mnt, 'x2')), listing(src));
  fs.writeFileSync(path.join(mnt, 'x2', 'sub', 'secret'), 'changed in the copy');
  assert.is(fs.readFileSync(path.join(src, 'sub', 'secret'), 'utf8'), 'top secret', 'the original is untouched');
  if (hasAttr) assert.match(execFileSync('getfattr', ['--absolute-names', '-d', path.join(mnt, 'x2', 'sub', 'secret')], { encoding: 'utf8' }), /user\.k="v"/);
  // A plain directory with data becomes a subvolume when copied with { subvolume: true }: its next copy is a snapshot.
  const plain = path.join(mnt, 'plain');
  fs.mkdirSync(plain);
  fill(plain);
  const into = await copyTree(plain, path.join(mnt, 'x3'), { subvolume: true });
  assert.is(into.method, 'files-into-subvolume');
  assert.ok(into.cloned > 0, 'files cloned on btrfs');
  assert.equal(listing(path.join(mnt, 'x3')), listing(plain));
  assert.is((await copyTree(path.join(mnt, 'x3'), path.join(mnt, 'x4'))).method, 'snapshot');
  assert.equal(fs.readdirSync(mnt).filter((n) => n.includes('copying')), [], 'no hidden copy left');
});

xfsTest('XFS (reflink): every file is a clone; faithful and independent', async () => {
  const mnt = image('xfs');
  if (!mnt) return;
  const src = path.join(mnt, 'x1');
  fs.mkdirSync(src);
  fill(src);
  const r = await copyTree(src, path.join(mnt, 'x2'));
  assert.is(r.method, 'files');
  assert.is(r.cloned, r.files, 'every regular file cloned');
  assert.is(r.bytes, 0, 'no byte copied');
  assert.is(r.hardlinks, 1);
  assert.equal(listing(path.join(mnt, 'x2')), listing(src));
  fs.writeFileSync(path.join(mnt, 'x2', 'big'), 'rewritten');
  assert.is(fs.statSync(path.join(src, 'big')).size, 3 << 20, 'the original is untouched');
  assert.is(fs.readFileSync(path.join(mnt, 'x2', 'big.hard'), 'utf8'), 'rewritten', 'the copy\'s hard link is the copy\'s');
  const plain = await copyTree(src, path.join(mnt, 'x3'), { plain: true });
  assert.is(plain.cloned, 0);
  assert.ok(plain.bytes >= 3 << 20, 'plain: bytes copied');
  assert.equal(listing(path.join(mnt, 'x3')), listing(src));
});

// Many files: the pooled copy (worker threads, one syncfs) must keep every
// mode exactly whatever the process's umask (files are made with their final
// mode when the kernel gives them their owner anyway), setuid/setgid bits,
// owners other than ours, holes, empty files, hard links across directories,
// and each directory's times after its contents.
test('a tree of many files: exact modes despite the umask, owners, holes, hard links across directories, dir times', async () => {
  const base = tmpdir('snapproc-dc-many-');
  const src = path.join(base, 'src');
  fs.mkdirSync(src);
  const modes = [0o644, 0o755, 0o666, 0o777, 0o600, 0o000, 0o444, 0o4755, 0o2755, 0o1777, 0o640, 0o711];
  const t = new Date('2003-04-05T06:07:08.123Z');
  for (let d = 0; d < 6; d++) {
    const dir = path.join(src, `d${d}`);
    fs.mkdirSync(dir);
    for (let i = 0; i < 60; i++) {
      const f = path.join(dir, `f${i}`);
      fs.writeFileSync(f, i % 7 === 0 ? '' : `file ${d}/${i}\n`.repeat(i + 1));
      fs.chmodSync(f, modes[i % modes.length]);
      if (i % 5 === 0) fs.chownSync(f, 1000 + i, 2000 + d);
      fs.utimesSync(f, t, t);
    }
    fs.chmodSync(dir, [0o755, 0o777, 0o700, 0o2770, 0o1777, 0o555][d]);
  }
  // A sparse file: 1 MiB hole, 4 KiB of data, 1 MiB hole at the end.
  const sparse = path.join(src, 'd0', 'sparse');
  const fd = fs.openSync(sparse, 'w');
  fs.writeSync(fd, Buffer.alloc(4096, 9), 0, 4096, 1 << 20);
  fs.ftruncateSync(fd, 2 << 20);
  fs.closeSync(fd);
  fs.linkSync(path.join(src, 'd1', 'f3'), path.join(src, 'd4', 'also-f3'));
  fs.linkSync(path.join(src, 'd1', 'f3'), path.join(src, 'd5', 'again-f3'));
  for (let d = 0; d < 6; d++) fs.utimesSync(path.join(src, `d${d}`), t, t);
  const dst = path.join(base, 'dst');
  const old = process.umask(0o077); // a umask that would spoil any mode made through it
  let r;
  try {
    r = await copyTree(src, dst);
  } finally {
    process.umask(old);
  }
  assert.is(r.files, 6 * 60 + 1, 'every file'); // the hard links' other names are links
  assert.is(r.hardlinks, 2);
  assert.equal(listing(dst), listing(src));
  for (let d = 0; d < 6; d++) {
    assert.is(fs.statSync(path.join(dst, `d${d}`), { bigint: true }).mtimeNs, BigInt(t.getTime()) * 1_000_000n, `mtime of d${d} after its contents`);
  }
  const st = fs.statSync(path.join(dst, 'd0', 'sparse'));
  assert.ok(st.blocks * 512 < 64 * 1024, `holes stay holes (${st.blocks} blocks)`);
  assert.equal(fs.readFileSync(path.join(dst, 'd0', 'sparse')), fs.readFileSync(sparse));
  assert.is(fs.statSync(path.join(dst, 'd1', 'f3')).ino, fs.statSync(path.join(dst, 'd5', 'again-f3')).ino, 'hard link across directories');
});

// The pool copies a directory's files as one batch (a large directory in
// batches of 256) while the walker walks on, and sets directories' modes
// and times once their files are done, children first, at the end or
// whenever it holds 256 directories open: a tree wider and deeper than that,
// with a directory of more than one batch, must come out exactly the same.
test('a tree of more directories than the copy holds open, and a directory of several batches: every entry, mode and directory time', async () => {
  const base = tmpdir('snapproc-dc-wide-');
  const src = path.join(base, 'src');
  fs.mkdirSync(src);
  const t = new Date('2004-05-06T07:08:09.456Z');
  const dirs: string[] = [];
  for (let a = 0; a < 20; a++) {
    for (let b = 0; b < 16; b++) {
      const dir = path.join(src, `a${a}`, `b${b}`);
      fs.mkdirSync(dir, { recursive: true });
      fs.writeFileSync(path.join(dir, 'f'), `${a}/${b}\n`);
      fs.chmodSync(path.join(dir, 'f'), [0o644, 0o600, 0o755, 0o4711][b % 4]);
      fs.mkdirSync(path.join(dir, 'empty'));
      dirs.push(path.join(dir, 'empty'), dir);
    }
    dirs.push(path.join(src, `a${a}`));
  }
  const big = path.join(src, 'many');
  fs.mkdirSync(big);
  for (let i = 0; i < 700; i++) fs.writeFileSync(path.join(big, `f${i}`), `${i}\n`);
  fs.linkSync(path.join(big, 'f5'), path.join(src, 'a19', 'b15', 'link-to-f5'));
  dirs.push(big);
  for (const [i, d] of dirs.entries()) {
    fs.chmodSync(d, [0o755, 0o700, 0o2775, 0o1777, 0o555][i % 5]);
    fs.utimesSync(d, t, new Date(t.getTime() + i));
  }
  const dst = path.join(base, 'dst');
  const r = await copyTree(src, dst);
  assert.is(r.files, 20 * 16 + 700, 'every file');
  assert.is(r.hardlinks, 1);
  assert.equal(listing(dst), listing(src));
  for (const d of dirs) {
    const rel = path.relative(src, d);
    assert.is(fs.statSync(path.join(dst, rel), { bigint: true }).mtimeNs, fs.statSync(d, { bigint: true }).mtimeNs, `mtime of ${rel} after its contents`);
  }
});

test.run();
