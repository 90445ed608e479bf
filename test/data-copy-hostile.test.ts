// What the $SNAP_DATA copy meets where it is made, not in its source.
//
// A copy while something swaps the tree's files for FIFOs: the
// copy's workers open a file by name after the walker listed it, and a
// service that endures a refresh (or runs beside the standby job) can put a
// FIFO under that name. The open must not block (it did, for good: no cancel,
// no exit of the process helped): the copy ends, either copying a file that
// is still regular or failing on the one that is not.
//
// A default ACL on the directory the copy is made in: every entry made there
// inherits ACLs the source's entries do not have; the copy must carry the
// source's extended attributes only.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { spawnSync as run } from 'node:child_process';
import { copyTree } from '../src/snap/data-copy';
import { gateOn, haveCommand, REPO, tmpdir } from './helpers';

const test = suite('data-copy-hostile');

test('files swapped for FIFOs during a copy: the copy ends (copied or refused), it never blocks in open', async () => {
  const dir = tmpdir('copy-swap-');
  const src = path.join(dir, 'src');
  const dst = path.join(dir, 'dst');
  fs.mkdirSync(src);
  const n = 4000;
  for (let i = 0; i < n; i++) fs.writeFileSync(path.join(src, `f${i}`), 'x'.repeat(64));
  // The copy in a child (a copy blocked in open keeps even process.exit from ending a process; SIGKILL does).
  const script = `
    const { copyTree } = require(${JSON.stringify(path.join(REPO, 'dist', 'src', 'snap', 'data-copy.js'))});
    copyTree(${JSON.stringify(src)}, ${JSON.stringify(dst)}, { sync: false }).then(
      (s) => { process.stdout.write('copied ' + s.files + '\\n'); process.exit(0); },
      (e) => { process.stdout.write('refused ' + (e.cause && e.cause.code) + ' ' + e.message + '\\n'); process.exit(0); });`;
  // The swapper: as soon as the copy's hidden directory appears, every other file becomes a FIFO (mkfifo, rename over it).
  const swapper = [
    'import os, sys, time',
    'd, src, n = sys.argv[1], sys.argv[2], int(sys.argv[3])',
    'end = time.time() + 20',
    "while time.time() < end and not any(e.startswith('.dst.copying-') for e in os.listdir(d)):",
    '    pass',
    'for i in range(n - 1, 0, -2):',
    "    t = os.path.join(src, '.t%d' % i)",
    '    os.mkfifo(t)',
    "    os.rename(t, os.path.join(src, 'f%d' % i))",
    "print('swapped')",
  ].join('\n');
  const sw = spawn('python3', ['-c', swapper, dir, src, String(n)], { stdio: ['ignore', 'pipe', 'inherit'] });
  let swapped = '';
  sw.stdout!.on('data', (d) => (swapped += d));
  const child = spawn(process.execPath, ['-e', script], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const ended = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 30_000);
    child.once('exit', () => {
      clearTimeout(timer);
      resolve(true);
    });
  });
  if (!ended) child.kill('SIGKILL');
  await new Promise((r) => (sw.exitCode !== null ? r(null) : sw.once('exit', r)));
  try {
    assert.is(swapped, 'swapped\n', 'the swapper ran');
    assert.ok(ended, 'the copy ended within 30 s (it blocked in open on a FIFO)');
    assert.match(out, /^(copied \d+|refused EAGAIN .*f\d+.*)\n$/);
    if (out.startsWith('copied')) {
      // Copied before the swap reached it: every file copied is a regular file.
      for (const e of fs.readdirSync(dst)) assert.ok(fs.lstatSync(path.join(dst, e)).isFile(), e);
    } else {
      assert.not.ok(fs.existsSync(dst), 'a refused copy leaves nothing under its name');
      assert.equal(fs.readdirSync(dir).filter((e) => e.startsWith('.dst.copying-')), [], 'nor its hidden directory');
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

const attrTest = gateOn(test, haveCommand('setfattr') && haveCommand('getfattr') ? null : 'setfattr/getfattr missing (apt-get install attr)');

attrTest('a default ACL where the copy is made: the copy carries the source\'s ACLs (none), not the inherited ones', async () => {
  const dir = tmpdir('copy-acl-');
  try {
    const src = path.join(dir, 'src');
    fs.mkdirSync(path.join(src, 'sub'), { recursive: true });
    fs.writeFileSync(path.join(src, 'f'), 'f');
    fs.writeFileSync(path.join(src, 'sub', 'g'), 'g');
    fs.writeFileSync(path.join(src, 'acl'), 'a');
    const into = path.join(dir, 'into');
    fs.mkdirSync(into);
    // A default ACL: user::rwx, user:nobody:rwx, group::r-x, mask::rwx, other::r-x (the kernel's binary form).
    const acl = '0x02000000' + '01000700ffffffff' + '02000700feff0000' + '04000500ffffffff' + '10000700ffffffff' + '20000500ffffffff';
    const set = run('setfattr', ['-n', 'system.posix_acl_default', '-v', acl, into], { encoding: 'utf8' });
    if (set.status !== 0) return; // no ACLs on this file system (tmpfs without them): nothing to show
    // One source entry with an ACL of its own (user:nobody:r--): kept as it is.
    const own = '0x02000000' + '01000600ffffffff' + '02000400feff0000' + '04000400ffffffff' + '10000400ffffffff' + '20000400ffffffff';
    assert.is(run('setfattr', ['-n', 'system.posix_acl_access', '-v', own, path.join(src, 'acl')]).status, 0);
    const dst = path.join(into, 'copy');
    await copyTree(src, dst, { sync: false });
    const attrs = (p: string) => run('getfattr', ['-h', '-d', '-m', '-', '-e', 'hex', p], { encoding: 'utf8' }).stdout.split('\n').filter((l) => l && !l.startsWith('#')).sort();
    for (const rel of ['', 'f', 'sub', 'sub/g', 'acl']) assert.equal(attrs(path.join(dst, rel)), attrs(path.join(src, rel)), rel || '.');
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
});

test.run();
