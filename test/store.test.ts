// The revision store (SPEC 1, SPEC 5 steps 4 and 6) on real files: layout
// and numbering, atomic `current` links under a concurrent reader, a faithful
// $SNAP_DATA copy (owners, modes, times, xattrs, links, odd names), moved-
// aside targets, squashfs snaps, bad input that must leave R untouched,
// failing copies that must leave nothing behind, pruning, and snaps.json
// surviving a crash mid-write. Also the snap environment built from the
// same paths.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { RevisionStore, defaultRoot, ensureLayout, isTrashName, resolveRoot } from '../src/snap/revision-store';
import { copyTree, moveAside, restoreAside } from '../src/snap/data-copy';
import { replaceSymlinkAtomic, tempSibling, writeFileAtomic } from '../src/util/atomic-file';
import { appEnvironment, dpkgArchitecture, snapEnvironment } from '../src/snap/environment';
import { hasCode } from '../src/util/errors';
import { readSlotFile } from '../src/util/slot-file';

const test = suite('store');

const isRoot = process.getuid?.() === 0;
const saidSkip = new Set<string>();
/** Runs `fn` only when `reason` is '' ; otherwise skips it, printing why once per reason. */
function gated(reason: string) {
  return (name: string, fn: () => void | Promise<void>) => {
    if (reason === '') return test(name, fn);
    if (!saidSkip.has(reason)) {
      process.stdout.write(`  (skipping: ${reason})\n`);
      saidSkip.add(reason);
    }
    test.skip(name, fn);
  };
}
function have(tool: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${tool}`], { stdio: 'ignore' }).status === 0;
}
const rootTest = gated(isRoot ? '' : 'not root: owners cannot be set');
const squashTest = gated(have('mksquashfs') && have('unsquashfs') ? '' : 'mksquashfs/unsquashfs missing (apt-get install -y squashfs-tools)');
const hasSetfattr = have('setfattr') && have('getfattr');

const made: string[] = [];
function tmp(prefix = 'snapproc-store-'): string {
  const d = fs.mkdtempSync(path.join(os.tmpdir(), prefix));
  made.push(d);
  return d;
}
test.after(() => {
  for (const d of made) fs.rmSync(d, { recursive: true, force: true });
});

interface SnapFixture {
  name?: string;
  version?: string;
  yaml?: string;
  hooks?: Record<string, number>;
  files?: Record<string, string>;
}

/** A snap directory: meta/snap.yaml, hooks with the given modes, extra files. */
function makeSnapDir(opts: SnapFixture = {}): string {
  const dir = tmp('snapproc-src-');
  fs.mkdirSync(path.join(dir, 'meta', 'hooks'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bin'));
  const yaml = opts.yaml ?? [
    `name: ${opts.name ?? 'hello'}`,
    `version: '${opts.version ?? '1.0'}'`,
    'apps:',
    '  svc:',
    '    command: bin/svc',
    '    daemon: simple',
    '    environment:',
    '      GREETING: hi',
    '',
  ].join('\n');
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), yaml);
  fs.writeFileSync(path.join(dir, 'bin', 'svc'), '#!/bin/sh\nexec sleep 1000\n', { mode: 0o755 });
  fs.symlinkSync('svc', path.join(dir, 'bin', 'svc-link'));
  for (const [hook, mode] of Object.entries(opts.hooks ?? {})) {
    fs.writeFileSync(path.join(dir, 'meta', 'hooks', hook), '#!/bin/sh\nexit 0\n');
    fs.chmodSync(path.join(dir, 'meta', 'hooks', hook), mode);
  }
  for (const [rel, text] of Object.entries(opts.files ?? {})) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), text);
  }
  return dir;
}

/** Every entry under `root` (Buffer names, so any byte survives) with type, mode, owner, size, link target, content hash. */
function listing(root: string, withTimes = false): string[] {
  const out: string[] = [];
  if (!fs.existsSync(root)) return out;
  const walk = (dir: Buffer, rel: string) => {
    for (const name of (fs.readdirSync(dir, { encoding: 'buffer' }) as Buffer[]).sort(Buffer.compare)) {
      const full = Buffer.concat([dir, Buffer.from('/'), name]);
      const r = `${rel}/${name.toString('hex')}`;
      const st = fs.lstatSync(full, { bigint: true });
      let line = `${r} ${(st.mode).toString(8)} ${st.uid}:${st.gid}`;
      if (st.isSymbolicLink()) line += ` -> ${fs.readlinkSync(full, { encoding: 'buffer' }).toString('hex')}`;
      else if (st.isFile()) line += ` ${st.size} ${createHash('sha256').update(fs.readFileSync(full)).digest('hex').slice(0, 16)} nlink=${st.nlink}`;
      if (withTimes) line += ` m=${st.mtimeNs}`;
      out.push(line);
      if (st.isDirectory()) walk(full, r);
    }
  };
  walk(Buffer.from(root), '');
  return out;
}

async function rejects(p: Promise<unknown>, check: RegExp | ((e: Error) => boolean), what: string): Promise<Error> {
  try {
    await p;
  } catch (err) {
    const e = err as Error;
    if (check instanceof RegExp) assert.match(e.message, check, `${what}: message`);
    else assert.ok(check(e), `${what}: unexpected error ${e.message}`);
    return e;
  }
  assert.unreachable(`${what}: expected a rejection`);
  throw new Error('unreachable');
}

/** Runs `script` (CommonJS, may require the built modules by absolute path) in a child node with a file size limit. */
function runWithFileSizeLimit(script: string, blocks = 64): { status: number | null; stdout: string; stderr: string } {
  const r = spawnSync('/bin/sh', ['-c', `ulimit -f ${blocks} && exec "$0" -e "$1"`, process.execPath, script], { encoding: 'utf8' });
  return { status: r.status, stdout: r.stdout, stderr: r.stderr };
}
const built = (m: string) => JSON.stringify(path.join(__dirname, '..', 'src', m));

// ---------------------------------------------------------------- root and layout

test('resolveRoot: flag, then $SNAPPROC_ROOT, then the default', () => {
  const saved = process.env.SNAPPROC_ROOT;
  try {
    delete process.env.SNAPPROC_ROOT;
    assert.is(resolveRoot(), defaultRoot);
    assert.is(defaultRoot, '/var/lib/snapproc');
    process.env.SNAPPROC_ROOT = '/tmp/from-env';
    assert.is(resolveRoot(), '/tmp/from-env');
    assert.is(resolveRoot('/tmp/flag'), '/tmp/flag');
    assert.is(resolveRoot('rel'), path.resolve('rel'));
    assert.throws(() => resolveRoot(''), /--root needs a directory/);
  } finally {
    if (saved === undefined) delete process.env.SNAPPROC_ROOT;
    else process.env.SNAPPROC_ROOT = saved;
  }
});

test('layout: revisions x1, x2, x3 with data, common, record; current only when linked', async () => {
  const R = tmp();
  ensureLayout(R);
  for (const d of ['snap', 'var/snap', 'state', 'run', 'log']) assert.ok(fs.statSync(path.join(R, d)).isDirectory(), d);
  const store = new RevisionStore(R);
  assert.equal(store.list(), []);
  const src = makeSnapDir({ hooks: { install: 0o755 } });
  const a = await store.addRevision(src);
  assert.is(a.revision, 'x1');
  assert.is(a.instance, 'hello');
  assert.is(a.dir, path.join(R, 'snap', 'hello', 'x1'));
  assert.is(a.snap.apps.svc.command, 'bin/svc');
  assert.ok(a.snap.hooks.install, 'implicit install hook from meta/hooks');
  assert.is(fs.readlinkSync(path.join(R, 'snap/hello/x1/bin/svc-link')), 'svc', 'symlink kept as a link');
  assert.is(fs.statSync(path.join(R, 'snap/hello/x1/bin/svc')).mode & 0o777, 0o755);
  for (const d of ['var/snap/hello/x1', 'var/snap/hello/common', 'root/snap/hello/x1', 'root/snap/hello/common']) {
    assert.ok(fs.statSync(path.join(R, d)).isDirectory(), d);
  }
  assert.is(fs.statSync(path.join(R, 'root')).mode & 0o777, 0o700);
  assert.is(store.currentRevision('hello'), null, 'addRevision does not link');
  assert.not.ok(fs.existsSync(path.join(R, 'snap/hello/current')));

  assert.is((await store.addRevision(makeSnapDir({ version: '2.0' }))).revision, 'x2');
  assert.is((await store.addRevision(makeSnapDir({ version: '3.0' }))).revision, 'x3');
  store.linkCurrent('hello', 'x2');
  assert.is(fs.readlinkSync(path.join(R, 'snap/hello/current')), 'x2', 'relative link');
  assert.is(fs.readlinkSync(path.join(R, 'var/snap/hello/current')), 'x2');
  assert.is(store.currentRevision('hello'), 'x2');
  const p = store.paths('hello', 'x2');
  assert.equal(p, {
    snap: path.join(R, 'snap/hello/x2'),
    data: path.join(R, 'var/snap/hello/x2'),
    common: path.join(R, 'var/snap/hello/common'),
    userData: path.join(R, 'root/snap/hello/x2'),
    userCommon: path.join(R, 'root/snap/hello/common'),
    snapCurrent: path.join(R, 'snap/hello/current'),
    dataCurrent: path.join(R, 'var/snap/hello/current'),
  });
  const [hello] = store.list();
  assert.is(hello.name, 'hello');
  assert.is(hello.current, 'x2');
  assert.equal(hello.revisions.map((r) => `${r.revision}=${r.version}`), ['x1=1.0', 'x2=2.0', 'x3=3.0']);
  const record = readSlotFile<{ snaps: Record<string, { current: string }> }>(path.join(R, 'state/snaps.json'))!;
  assert.is(record.snaps.hello.current, 'x2');
  assert.is(store.readSnapYaml('hello', 'x3').version, '3.0');

  store.unlinkCurrent('hello');
  assert.is(store.currentRevision('hello'), null);
  assert.not.ok(fs.existsSync(path.join(R, 'var/snap/hello/current')));
  store.unlinkCurrent('hello'); // idempotent
});

test('numbering: a removed number is never used again, also after the snap was removed', async () => {
  const R = tmp();
  const store = new RevisionStore(R);
  for (let i = 1; i <= 3; i++) await store.addRevision(makeSnapDir());
  store.removeRevision('hello', 'x3');
  assert.not.ok(fs.existsSync(path.join(R, 'snap/hello/x3')));
  assert.not.ok(fs.existsSync(path.join(R, 'var/snap/hello/x3')));
  assert.is(store.nextRevision('hello'), 'x4');
  assert.is((await store.addRevision(makeSnapDir())).revision, 'x4');
  store.removeSnap('hello', { purge: true });
  assert.is(store.get('hello'), undefined);
  assert.is((await store.addRevision(makeSnapDir())).revision, 'x5');
  // Concurrent adds get distinct numbers (the partial directory reserves its number).
  const both = await Promise.all([store.addRevision(makeSnapDir()), store.addRevision(makeSnapDir())]);
  assert.equal(both.map((r) => r.revision).sort(), ['x6', 'x7']);
  assert.equal(fs.readdirSync(path.join(R, 'snap/hello')).sort(), ['x5', 'x6', 'x7']);
  // A revision left on disk without a record (a crash between rename and record) is skipped too.
  fs.mkdirSync(path.join(R, 'snap/hello/x9'));
  assert.is(store.nextRevision('hello'), 'x10');
  assert.equal(store.get('hello')!.revisions.map((r) => r.revision).sort(), ['x5', 'x6', 'x7'], 'both recorded (in the order they finished)');
});

test('instances: NAME_KEY has its own tree and environment', async () => {
  const R = tmp();
  const store = new RevisionStore(R);
  const r = await store.addRevision(makeSnapDir(), { instanceKey: 'blue' });
  assert.is(r.instance, 'hello_blue');
  assert.is(r.revision, 'x1');
  assert.ok(fs.existsSync(path.join(R, 'snap/hello_blue/x1/meta/snap.yaml')));
  assert.is(store.get('hello_blue')?.instanceKey, 'blue');
  assert.is(store.get('hello_blue')?.snapName, 'hello');
  assert.is(store.get('hello'), undefined);
});

// ---------------------------------------------------------------- atomic links and files

test('current is never missing for a concurrent reader across 2000 replacements', async () => {
  const R = tmp();
  const store = new RevisionStore(R);
  await store.addRevision(makeSnapDir());
  await store.addRevision(makeSnapDir());
  store.linkCurrent('hello', 'x1');
  const link = store.paths('hello', 'x1').snapCurrent;
  const stop = path.join(R, 'stop');
  const ready = path.join(R, 'ready');
  const reader = `
    const fs = require('fs');
    const [link, stop, ready] = process.argv.slice(1);
    let reads = 0, missing = 0; const seen = {};
    fs.writeFileSync(ready, '');
    for (;;) {
      for (let i = 0; i < 200; i++) {
        reads++;
        try { seen[fs.readlinkSync(link)] = 1; fs.statSync(link + '/meta/snap.yaml'); } catch (e) { missing++; }
      }
      if (fs.existsSync(stop)) break;
    }
    process.stdout.write(JSON.stringify({ reads, missing, seen: Object.keys(seen).sort() }));
  `;
  const child = spawn(process.execPath, ['-e', reader, link, stop, ready], { stdio: ['ignore', 'pipe', 'inherit'] });
  let out = '';
  child.stdout.on('data', (d) => (out += d));
  const exited = new Promise<number | null>((resolve) => child.on('close', resolve));
  while (!fs.existsSync(ready)) await new Promise((r) => setTimeout(r, 5));
  for (let i = 0; i < 2000; i++) {
    replaceSymlinkAtomic(link, i % 2 === 0 ? 'x2' : 'x1');
    if (i % 50 === 0) await new Promise((r) => setImmediate(r));
  }
  fs.writeFileSync(stop, '');
  assert.is(await exited, 0);
  const result = JSON.parse(out) as { reads: number; missing: number; seen: string[] };
  assert.is(result.missing, 0, `reader saw current missing ${result.missing} times in ${result.reads} reads`);
  assert.equal(result.seen, ['x1', 'x2'], 'the reader saw both targets');
  assert.ok(fs.readdirSync(path.dirname(link)).every((n) => !n.includes('.tmp-')), 'no temporary links left');
});

test('writeFileAtomic: exact mode despite umask, content, no temporary file left', () => {
  const dir = tmp();
  const file = path.join(dir, 'f.json');
  const old = process.umask(0o077);
  try {
    writeFileAtomic(file, 'one', 0o644);
  } finally {
    process.umask(old);
  }
  assert.is(fs.statSync(file).mode & 0o777, 0o644);
  writeFileAtomic(file, Buffer.from('two'), 0o600);
  assert.is(fs.readFileSync(file, 'utf8'), 'two');
  assert.is(fs.statSync(file).mode & 0o777, 0o600);
  assert.equal(fs.readdirSync(dir), ['f.json']);
});

test('snaps.json survives a crash mid-write: a stray temporary file is ignored', async () => {
  const R = tmp();
  const store = new RevisionStore(R);
  await store.addRevision(makeSnapDir());
  const before = fs.readFileSync(store.stateFile, 'utf8');
  // A real crash: a process starts replacing snaps.json and is SIGKILLed before the rename.
  const script = `
    const fs = require('fs');
    const { tempSibling } = require(${built('util/atomic-file.js')});
    const fd = fs.openSync(tempSibling(process.argv[1]), 'wx');
    fs.writeSync(fd, '{"format":1,"snaps":{"hello":{"name":"hel');
    process.kill(process.pid, 'SIGKILL');
  `;
  const r = spawnSync(process.execPath, ['-e', script, store.stateFile]);
  assert.is(r.signal, 'SIGKILL');
  const stray = fs.readdirSync(path.join(R, 'state')).filter((n) => n !== 'snaps.json');
  assert.is(stray.length, 1, 'the crashed writer left its temporary file');
  assert.match(stray[0], /^\.snaps\.json\.tmp-/);
  assert.is(fs.readFileSync(store.stateFile, 'utf8'), before, 'the record is intact');
  assert.equal(store.list().map((s) => s.revisions.map((x) => x.revision)), [['x1']]);
  assert.is((await store.addRevision(makeSnapDir())).revision, 'x2', 'the store goes on writing');
  assert.ok(tempSibling('/a/b').startsWith('/a/.b.tmp-'));
});

test('the owned record: kept in memory, written in place, read by others from the newer slot', async () => {
  const R = tmp();
  const owner = new RevisionStore(R);
  owner.ownRecord();
  await owner.addRevision(makeSnapDir({ version: '1.0' }));
  await owner.addRevision(makeSnapDir({ version: '2.0' }));
  const slots = [owner.stateFile, `${owner.stateFile}.1`];
  const inodes = slots.map((f) => fs.statSync(f).ino);
  owner.linkCurrent('hello', 'x2');
  owner.removeRevision('hello', 'x1');
  assert.equal(slots.map((f) => fs.statSync(f).ino), inodes, 'written in place: no rename');
  assert.equal(fs.readdirSync(path.join(R, 'state')).sort(), ['snaps.json', 'snaps.json.1'], 'no temporary file');
  const reader = new RevisionStore(R);
  assert.equal(reader.list().map((s) => [s.current, s.revisions.map((r) => r.revision)]), [['x2', ['x2']]]);
  // A torn newer slot: the other one stands, for readers and for a new owner.
  const seqOf = (f: string) => (JSON.parse(fs.readFileSync(f, 'utf8')) as { seq: number }).seq;
  const newer = seqOf(slots[0]) > seqOf(slots[1]) ? 0 : 1;
  fs.writeFileSync(slots[newer], '{"format":1,"snaps":{"hel');
  assert.equal(reader.list().map((s) => s.revisions.map((r) => r.revision)), [['x1', 'x2']], 'the older slot: before the removal');
  assert.equal(owner.list().map((s) => s.revisions.map((r) => r.revision)), [['x2']], 'the owner keeps what it wrote');
  owner.releaseRecord();
  // Both slots unreadable: one line naming the file, not an empty store.
  fs.writeFileSync(slots[1 - newer], 'not json');
  assert.throws(() => reader.list(), (e: Error & { code?: string }) => e.code === 'ERR_SNAPPROC_STATE' && /cannot read .*snaps\.json/.test(e.message));
});

test('the owned record: a write after an unflushed one keeps that one (SIGKILLed writer, then a torn slot)', async () => {
  // Two writes in a row that are not flushed (recordCurrent), then the
  // writer is SIGKILLed; the slot of the last write is then torn (what a
  // write(2) cut short between two pages leaves). The write before it must
  // still be there, not only the last flushed version.
  const R = tmp();
  const store = new RevisionStore(R);
  await store.addRevision(makeSnapDir({ version: '1.0' }));
  await store.addRevision(makeSnapDir({ version: '2.0' }));
  const script = `
    const { RevisionStore } = require(${built('snap/revision-store.js')});
    const s = new RevisionStore(process.argv[1]);
    s.ownRecord();
    s.list();
    s.recordCurrent('hello', 'x1');
    s.recordCurrent('hello', 'x2');
    process.kill(process.pid, 'SIGKILL');
  `;
  const r = spawnSync(process.execPath, ['-e', script, R]);
  assert.is(r.signal, 'SIGKILL', String(r.stderr));
  const slots = [store.stateFile, `${store.stateFile}.1`];
  const docs = slots.map((f) => JSON.parse(fs.readFileSync(f, 'utf8')) as { seq: number; snaps: { hello: { current: string | null } } });
  const newest = docs[0].seq > docs[1].seq ? 0 : 1;
  assert.is(docs[newest].snaps.hello.current, 'x2', 'the last write');
  assert.is(docs[1 - newest].snaps.hello.current, 'x1', 'the write before it, in the other slot');
  fs.writeFileSync(slots[newest], '{"format":1,"sn');
  const rec = readSlotFile<{ snaps: { hello: { current: string } } }>(store.stateFile)!;
  assert.is(rec.snaps.hello.current, 'x1');
});

test('the owned record refuses a symlink planted as a slot and writes nothing through it', async () => {
  const R = tmp();
  const victim = path.join(tmp(), 'victim');
  fs.writeFileSync(victim, 'precious\n');
  await new RevisionStore(R).addRevision(makeSnapDir());
  fs.rmSync(`${path.join(R, 'state', 'snaps.json')}.1`, { force: true });
  fs.symlinkSync(victim, `${path.join(R, 'state', 'snaps.json')}.1`);
  const owner = new RevisionStore(R);
  owner.ownRecord();
  assert.throws(() => owner.recordCurrent('hello', 'x1'), (e: Error & { code?: string }) => e.code === 'ERR_SNAPPROC_STATE' && /snaps\.json\.1: it is a symbolic link/.test(e.message));
  assert.is(fs.readFileSync(victim, 'utf8'), 'precious\n');
  owner.releaseRecord();
});

test('a record of an older snapproc (one snaps.json, no seq) is read and written on', async () => {
  const R = tmp();
  await new RevisionStore(R).addRevision(makeSnapDir());
  const file = path.join(R, 'state', 'snaps.json');
  const legacy = JSON.parse(fs.readFileSync(file, 'utf8'));
  delete legacy.seq;
  delete legacy.check;
  fs.rmSync(`${file}.1`, { force: true });
  fs.writeFileSync(file, JSON.stringify(legacy, null, 2) + '\n');
  const owner = new RevisionStore(R);
  owner.ownRecord();
  assert.equal(owner.list().map((s) => s.revisions.map((r) => r.revision)), [['x1']]);
  await owner.addRevision(makeSnapDir());
  owner.releaseRecord();
  assert.equal(new RevisionStore(R).list().map((s) => s.revisions.map((r) => r.revision)), [['x1', 'x2']]);
});

// ---------------------------------------------------------------- data copy

rootTest('copyTree keeps owners, modes, times, xattrs, symlinks, hard links and odd names', async () => {
  const base = tmp();
  const src = path.join(base, 'src');
  fs.mkdirSync(src);
  const at = (rel: string) => path.join(src, rel);
  fs.mkdirSync(at('sg'));
  fs.chmodSync(at('sg'), 0o2775);
  fs.writeFileSync(at('sg/inside'), 'in setgid dir');
  fs.writeFileSync(at('secret'), 'top secret');
  fs.chmodSync(at('secret'), 0o600);
  fs.writeFileSync(at('owned'), 'owned by 1234:5678');
  fs.chownSync(at('owned'), 1234, 5678);
  fs.chownSync(at('sg'), 1234, 5678);
  fs.symlinkSync('nowhere/at/all', at('dangling'));
  fs.symlinkSync('/etc/hostname', at('absolute'));
  fs.symlinkSync('secret', at('relative'));
  fs.symlinkSync('sg', at('dirlink'));
  fs.lchownSync(at('relative'), 1234, 5678);
  fs.writeFileSync(at('hard1'), 'one inode, two names');
  fs.linkSync(at('hard1'), at('hard2'));
  execFileSync('mkfifo', [at('fifo')]);
  const odd = ['with\nnewline', 'with space', '-leading-dash', '--', '*glob?'];
  for (const n of odd) fs.writeFileSync(at(n), n);
  const nonUtf8 = Buffer.concat([Buffer.from(src + '/'), Buffer.from([0x66, 0xff, 0xfe, 0x0a, 0x80])]);
  fs.writeFileSync(nonUtf8, 'bytes');
  fs.mkdirSync(Buffer.concat([nonUtf8, Buffer.from('-dir')]));
  if (hasSetfattr) {
    execFileSync('setfattr', ['-n', 'user.snapproc', '-v', 'x', at('secret')]);
    execFileSync('setfattr', ['-n', 'user.onDir', '-v', 'y', at('sg')]);
  } else {
    process.stdout.write('  (xattrs not checked: setfattr/getfattr missing, apt-get install -y attr)\n');
  }
  // Times last, directories after their contents, symlinks themselves (lutimes).
  const stamp = new Date('2001-02-03T04:05:06.789Z');
  const astamp = new Date('2000-01-01T00:00:00.000Z');
  for (const rel of ['secret', 'owned', 'hard1', 'sg/inside', 'fifo', ...odd]) fs.utimesSync(at(rel), astamp, stamp);
  fs.utimesSync(nonUtf8, astamp, stamp);
  for (const rel of ['dangling', 'absolute', 'relative', 'dirlink']) fs.lutimesSync(at(rel), astamp, stamp);
  fs.utimesSync(at('sg'), astamp, stamp);
  fs.utimesSync(src, astamp, stamp);

  const dst = path.join(base, 'dst');
  await copyTree(src, dst);
  const expected = listing(src, true); // after the copy: listing reads the files, which moves their atime
  // atime before anything reads the copy (reading updates it).
  assert.is(fs.lstatSync(path.join(dst, 'secret'), { bigint: true }).atimeNs, BigInt(astamp.getTime()) * 1_000_000n, 'atime');
  assert.equal(listing(dst, true), expected, 'types, modes, owners, sizes, contents, link targets, mtimes');
  const st = (rel: string) => fs.lstatSync(path.join(dst, rel), { bigint: true });
  assert.is(Number(st('sg').mode & 0o7777n), 0o2775, 'setgid dir');
  assert.is(Number(st('secret').mode & 0o7777n), 0o600);
  assert.equal([st('owned').uid, st('owned').gid], [1234n, 5678n]);
  assert.equal([st('relative').uid, st('relative').gid], [1234n, 5678n], 'owner of the symlink itself');
  assert.is(fs.readlinkSync(path.join(dst, 'dangling')), 'nowhere/at/all', 'dangling link copied as a link');
  assert.is(fs.readlinkSync(path.join(dst, 'absolute')), '/etc/hostname', 'absolute link not followed');
  assert.ok(st('dirlink').isSymbolicLink(), 'link to a directory stays a link');
  assert.is(st('hard1').ino, st('hard2').ino, 'hard links stay one inode');
  assert.ok(st('fifo').isFIFO());
  for (const rel of ['secret', 'sg', 'relative', '']) {
    assert.is(st(rel).mtimeNs, BigInt(stamp.getTime()) * 1_000_000n, `mtime of ${rel || 'the root'}`);
  }
  assert.is(fs.readFileSync(Buffer.concat([Buffer.from(dst + '/'), Buffer.from([0x66, 0xff, 0xfe, 0x0a, 0x80])]), 'utf8'), 'bytes');
  if (hasSetfattr) {
    const attrs = execFileSync('getfattr', ['--absolute-names', '-d', '-m', 'user.', path.join(dst, 'secret'), path.join(dst, 'sg')], { encoding: 'utf8' });
    assert.match(attrs, /user\.snapproc="x"/);
    assert.match(attrs, /user\.onDir="y"/);
  }
  assert.equal(fs.readdirSync(base).sort(), ['dst', 'src'], 'no hidden copy left');
  await rejects(copyTree(src, dst), /already exists/, 'copy onto an existing target');
});

test('a failing copy leaves nothing at the target', () => {
  const base = tmp();
  const src = path.join(base, 'src');
  fs.mkdirSync(path.join(src, 'a'), { recursive: true });
  fs.writeFileSync(path.join(src, 'a', 'first'), 'small');
  fs.writeFileSync(path.join(src, 'a', 'big'), Buffer.alloc(2 * 1024 * 1024, 1));
  const dst = path.join(base, 'dst');
  // cp is stopped by a file size limit half-way (SIGXFSZ): a real, partial copy.
  const r = runWithFileSizeLimit(`
    require(${built('snap/data-copy.js')}).copyTree(${JSON.stringify(src)}, ${JSON.stringify(dst)})
      .then(() => console.log('copied'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })));
  `);
  const result = JSON.parse(r.stdout) as { code: string; message: string };
  assert.is(result.code, 'ERR_SNAPPROC_COPY_FAILED');
  assert.match(result.message, new RegExp(`cannot copy ${src} to ${dst}: `));
  assert.equal(fs.readdirSync(base), ['src'], 'neither the target nor a hidden partial copy is left');
});

test('moveAside and restoreAside', () => {
  const base = tmp();
  const dir = path.join(base, 'x2');
  assert.is(moveAside(dir), null, 'nothing to move');
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'f'), 'old');
  const aside = moveAside(dir)!;
  assert.match(path.basename(aside), /^x2\.snapproc-aside-\d+$/);
  assert.not.ok(fs.existsSync(dir));
  fs.mkdirSync(dir);
  fs.writeFileSync(path.join(dir, 'f'), 'new');
  restoreAside(aside, dir);
  assert.is(fs.readFileSync(path.join(dir, 'f'), 'utf8'), 'old');
  assert.equal(fs.readdirSync(base), ['x2']);
  assert.throws(() => restoreAside(aside, dir), /is gone/);
});

test('copyData: an existing target is moved aside and restored on undo', async () => {
  const R = tmp();
  const store = new RevisionStore(R);
  await store.addRevision(makeSnapDir());
  await store.addRevision(makeSnapDir());
  const a = store.paths('hello', 'x1');
  const b = store.paths('hello', 'x2');
  fs.writeFileSync(path.join(a.data, 'state'), 'from x1');
  fs.writeFileSync(path.join(a.userData, '.config'), 'home of x1');
  // The empty data dir made by addRevision is replaced, nothing to move aside.
  let r = await store.copyData('hello', 'x1', 'x2');
  assert.is(r.movedAside, undefined);
  assert.is(fs.readFileSync(path.join(b.data, 'state'), 'utf8'), 'from x1');
  assert.is(fs.readFileSync(path.join(b.userData, '.config'), 'utf8'), 'home of x1', '$SNAP_USER_DATA copied too');
  // Now x2 has data of its own: a second copy moves it aside.
  fs.writeFileSync(path.join(b.data, 'state'), 'x2 own');
  fs.writeFileSync(path.join(a.data, 'state'), 'from x1 again');
  r = await store.copyData('hello', 'x1', 'x2');
  assert.ok(r.movedAside);
  assert.is(path.dirname(r.movedAside!), path.dirname(b.data));
  assert.is(fs.readFileSync(path.join(r.movedAside!, 'state'), 'utf8'), 'x2 own');
  assert.is(fs.readFileSync(path.join(b.data, 'state'), 'utf8'), 'from x1 again');
  // Undo as a refresh does it.
  store.removeData('hello', 'x2');
  store.restoreData('hello', 'x2', r.movedAside!);
  assert.is(fs.readFileSync(path.join(b.data, 'state'), 'utf8'), 'x2 own');
  assert.not.ok(fs.existsSync(r.movedAside!));
  assert.ok(fs.existsSync(path.join(b.userData, '.config')), 'user data restored too');
  assert.throws(() => store.restoreData('hello', 'x2', '/etc'), /is not a moved-aside data directory/);
  // A refresh that succeeded drops what it moved aside.
  r = await store.copyData('hello', 'x1', 'x2');
  store.discardMovedAside('hello', 'x2', r.movedAside!);
  // At once renamed to the trash (hidden, off the refresh's path), deleted by the sweep.
  assert.equal(fs.readdirSync(path.dirname(b.data)).filter((n) => !isTrashName(n)).sort(), ['common', 'x1', 'x2']);
  assert.is(await store.sweepTrash('hello'), 2, 'data and user data');
  assert.equal(fs.readdirSync(path.dirname(b.data)).sort(), ['common', 'x1', 'x2']);
});

test('copyData: a failing copy restores the moved-aside target', async () => {
  const R = tmp();
  const store = new RevisionStore(R);
  await store.addRevision(makeSnapDir());
  await store.addRevision(makeSnapDir());
  const a = store.paths('hello', 'x1');
  const b = store.paths('hello', 'x2');
  fs.writeFileSync(path.join(a.data, 'big'), Buffer.alloc(2 * 1024 * 1024, 1));
  fs.writeFileSync(path.join(b.data, 'keep'), 'x2 own');
  const before = listing(R);
  const r = runWithFileSizeLimit(`
    const { RevisionStore } = require(${built('snap/revision-store.js')});
    new RevisionStore(${JSON.stringify(R)}).copyData('hello', 'x1', 'x2')
      .then(() => console.log('{}'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })));
  `);
  assert.is(JSON.parse(r.stdout).code, 'ERR_SNAPPROC_COPY_FAILED', r.stdout + r.stderr);
  assert.equal(listing(R), before, 'x2 data as it was, no aside and no partial copy');
});

// ---------------------------------------------------------------- squashfs

squashTest('a squashfs .snap is unpacked with its files, modes and hooks', async () => {
  const src = makeSnapDir({ version: '4.2', hooks: { install: 0o755, 'post-refresh': 0o750 }, files: { 'share/doc.txt': 'docs' } });
  const file = path.join(tmp(), 'hello_4.2_amd64.snap');
  execFileSync('mksquashfs', [src, file, '-noappend', '-all-root', '-no-progress', '-quiet']);
  const R = tmp();
  const store = new RevisionStore(R);
  const r = await store.addRevision(file);
  assert.is(r.revision, 'x1');
  assert.is(r.snap.version, '4.2');
  assert.equal(Object.keys(r.snap.hooks).sort(), ['install', 'post-refresh']);
  assert.is(fs.readFileSync(path.join(r.dir, 'share/doc.txt'), 'utf8'), 'docs');
  assert.is(fs.statSync(path.join(r.dir, 'meta/hooks/post-refresh')).mode & 0o777, 0o750);
  assert.is(fs.readlinkSync(path.join(r.dir, 'bin/svc-link')), 'svc');
  assert.equal(fs.readdirSync(path.join(R, 'snap/hello')), ['x1'], 'no partial directory left');
  // Where unsquashfs is not installed, the error says which package provides it.
  const R2 = tmp();
  const r2 = spawnSync(process.execPath, ['-e', `
    const { RevisionStore } = require(${built('snap/revision-store.js')});
    new RevisionStore(${JSON.stringify(R2)}).addRevision(${JSON.stringify(file)})
      .then(() => console.log('installed'), (e) => console.log(e.message));
  `], { encoding: 'utf8', env: { PATH: path.join(R2, 'no-such-dir') } });
  assert.is(r2.stdout.trim(), `cannot unpack ${file}: unsquashfs is not installed (install the Debian package squashfs-tools)`);
  assert.equal(fs.readdirSync(R2), []);
});

squashTest('a squashfs without meta/snap.yaml is refused, R untouched', async () => {
  const empty = tmp();
  fs.writeFileSync(path.join(empty, 'README'), 'no meta here');
  const file = path.join(tmp(), 'nometa.snap');
  execFileSync('mksquashfs', [empty, file, '-noappend', '-no-progress', '-quiet']);
  const R = tmp();
  const before = listing(R);
  await rejects(new RevisionStore(R).addRevision(file), new RegExp(`^not a snap: ${file} has no meta/snap.yaml$`), 'squashfs without meta');
  assert.equal(listing(R), before);
});

// ---------------------------------------------------------------- bad input

test('bad input is refused with one clear line and nothing written under R', async () => {
  const R = tmp();
  const store = new RevisionStore(R);
  await store.addRevision(makeSnapDir({ name: 'other' }));
  const before = listing(R, true);
  const cases: Array<[string, string, RegExp | ((e: Error) => boolean), { instanceKey?: string }?]> = [];

  const junk = path.join(tmp(), 'junk.snap');
  fs.writeFileSync(junk, 'PK\x03\x04 not squashfs');
  cases.push(['not squashfs', junk, new RegExp(`^not a snap: ${junk} is neither a directory nor a squashfs file$`)]);

  const yamlOnly = makeSnapDir();
  cases.push(['a bare snap.yaml', path.join(yamlOnly, 'meta', 'snap.yaml'), /^not a snap: .*snap\.yaml is a snap\.yaml, not a snap/]);

  const noMeta = tmp();
  cases.push(['no meta/snap.yaml', noMeta, new RegExp(`^not a snap: ${noMeta} has no meta/snap.yaml$`)]);

  cases.push(['missing path', path.join(noMeta, 'nope'), /^not a snap: .*nope does not exist$/]);

  const malformed = makeSnapDir({ yaml: 'name: hello\nversion: 1\napps:\n  svc:\n    command: [unclosed\n' });
  cases.push(['malformed yaml', malformed, (e) => hasCode(e, 'ERR_SNAPPROC_INVALID_SNAP_YAML') && Array.isArray((e as { problems?: unknown }).problems)]);

  const badStopMode = makeSnapDir({ yaml: 'name: hello\nversion: "1"\napps:\n  svc:\n    command: bin/svc\n    daemon: simple\n    stop-mode: sigkill\n' });
  cases.push(['invalid field', badStopMode, (e) => hasCode(e, 'ERR_SNAPPROC_INVALID_SNAP_YAML') && /stop-mode/.test(e.message)]);

  const hook = makeSnapDir({ hooks: { install: 0o644 } });
  cases.push(['non-executable hook', hook, new RegExp(`^hook "install" is not executable: ${hook}/meta/hooks/install$`)]);

  const hookDir = makeSnapDir();
  fs.mkdirSync(path.join(hookDir, 'meta', 'hooks', 'remove'));
  cases.push(['hook that is a directory', hookDir, /^hook "remove" is not a regular file: /]);

  const dotdot = makeSnapDir({ yaml: 'name: ../x\nversion: "1"\n' });
  cases.push(['snap name ../x', dotdot, (e) => hasCode(e, 'ERR_SNAPPROC_INVALID_SNAP_YAML') && /invalid snap name/.test(e.message)]);

  cases.push(['instance key ../x', makeSnapDir(), /invalid instance key: "\.\.\/x"/, { instanceKey: '../x' }]);
  cases.push(['instance key too long', makeSnapDir(), /invalid instance key/, { instanceKey: 'abcdefghijk' }]);

  for (const [what, source, check, opts] of cases) {
    const e = await rejects(store.addRevision(source, opts), check, what);
    if (!hasCode(e, 'ERR_SNAPPROC_INVALID_SNAP_YAML')) assert.not.match(e.message, /\n/, `${what}: one line`);
    assert.equal(listing(R, true), before, `${what}: nothing written under R`);
  }
  assert.throws(() => store.paths('../x', 'x1'), /invalid snap name/);
  assert.throws(() => store.paths('other', '../x1'), /invalid revision/);
});

test('a snap is refused before R even exists', async () => {
  const R = path.join(tmp(), 'not-yet');
  await rejects(new RevisionStore(R).addRevision(makeSnapDir({ hooks: { configure: 0o600 } })), /hook "configure" is not executable/, 'hook');
  assert.not.ok(fs.existsSync(R));
});

test('a failing copy during addRevision removes the partial revision, record unchanged', async () => {
  const R = tmp();
  const store = new RevisionStore(R);
  await store.addRevision(makeSnapDir());
  const src = makeSnapDir({ files: { 'big/blob': '' } });
  fs.writeFileSync(path.join(src, 'big', 'blob'), Buffer.alloc(2 * 1024 * 1024, 7));
  // (Directory mtimes change: the partial copy was there for a while.)
  const before = listing(R);
  const r = runWithFileSizeLimit(`
    const { RevisionStore } = require(${built('snap/revision-store.js')});
    new RevisionStore(${JSON.stringify(R)}).addRevision(${JSON.stringify(src)})
      .then(() => console.log('{}'), (e) => console.log(JSON.stringify({ code: e.code, message: e.message })));
  `);
  const result = JSON.parse(r.stdout) as { code?: string; message?: string };
  assert.is(result.code, 'ERR_SNAPPROC_COPY_FAILED', r.stdout + r.stderr);
  assert.equal(listing(R), before, 'no partial directory, no data dirs, snaps.json unchanged');
  // And for a snap that was not installed yet, not even its directories stay.
  const fresh = makeSnapDir({ name: 'fresh', files: { 'big/blob': '' } });
  fs.writeFileSync(path.join(fresh, 'big', 'blob'), Buffer.alloc(2 * 1024 * 1024, 7));
  runWithFileSizeLimit(`
    const { RevisionStore } = require(${built('snap/revision-store.js')});
    new RevisionStore(${JSON.stringify(R)}).addRevision(${JSON.stringify(fresh)}).catch(() => {});
  `);
  assert.equal(listing(R), before);
});

// ---------------------------------------------------------------- prune and removal

test('prune keeps the newest revisions and never the current one', async () => {
  const R = tmp();
  const store = new RevisionStore(R);
  for (let i = 1; i <= 4; i++) await store.addRevision(makeSnapDir({ version: `${i}.0` }));
  store.linkCurrent('hello', 'x2'); // as after a revert
  assert.equal(store.prune('hello', 2), ['x1', 'x3']);
  assert.equal(store.get('hello')!.revisions.map((r) => r.revision), ['x2', 'x4']);
  assert.not.ok(fs.existsSync(path.join(R, 'snap/hello/x1')));
  assert.not.ok(fs.existsSync(path.join(R, 'var/snap/hello/x3')));
  assert.equal(store.prune('hello', 1), ['x4'], 'retain 1 keeps only the current revision');
  assert.equal(store.prune('hello'), []);
  assert.is(store.currentRevision('hello'), 'x2');
  assert.throws(() => store.removeRevision('hello', 'x2'), /it is the current revision/);
  assert.throws(() => store.prune('hello', 0), /retain must be a whole number of at least 1/);
  assert.equal(store.prune('absent'), []);
});

test('removeSnap removes everything; common survives unless purged', async () => {
  const R = tmp();
  const store = new RevisionStore(R);
  await store.addRevision(makeSnapDir());
  await store.addRevision(makeSnapDir());
  store.linkCurrent('hello', 'x2');
  fs.writeFileSync(path.join(store.paths('hello', 'x2').common, 'keep'), 'shared');
  store.removeSnap('hello', { purge: false });
  assert.is(store.get('hello'), undefined);
  assert.not.ok(fs.existsSync(path.join(R, 'snap/hello')));
  assert.equal(fs.readdirSync(path.join(R, 'var/snap/hello')), ['common']);
  assert.equal(fs.readdirSync(path.join(R, 'root/snap/hello')), ['common']);
  await store.addRevision(makeSnapDir());
  assert.is(fs.readFileSync(path.join(R, 'var/snap/hello/common/keep'), 'utf8'), 'shared', 'common kept for a reinstall');
  store.removeSnap('hello', { purge: true });
  assert.not.ok(fs.existsSync(path.join(R, 'var/snap/hello')));
  assert.not.ok(fs.existsSync(path.join(R, 'root/snap/hello')));
  assert.equal(store.list(), []);
});

// ---------------------------------------------------------------- environment

test('snapEnvironment and appEnvironment', () => {
  const base = snapEnvironment({ root: '/R', instance: 'hello_blue', revision: 'x3', version: '1.2' });
  assert.equal(base, {
    SNAP: '/R/snap/hello_blue/x3',
    SNAP_NAME: 'hello',
    SNAP_INSTANCE_NAME: 'hello_blue',
    SNAP_INSTANCE_KEY: 'blue',
    SNAP_REVISION: 'x3',
    SNAP_VERSION: '1.2',
    SNAP_ARCH: dpkgArchitecture(),
    SNAP_DATA: '/R/var/snap/hello_blue/x3',
    SNAP_COMMON: '/R/var/snap/hello_blue/common',
    SNAP_USER_DATA: '/R/root/snap/hello_blue/x3',
    SNAP_USER_COMMON: '/R/root/snap/hello_blue/common',
    HOME: '/R/root/snap/hello_blue/x3',
    PATH: '/R/snap/hello_blue/x3/usr/sbin:/R/snap/hello_blue/x3/usr/bin:/R/snap/hello_blue/x3/sbin:/R/snap/hello_blue/x3/bin:/R/run/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin',
  });
  assert.is(snapEnvironment({ root: '/R', instance: 'hello', revision: 'x1', version: '1', arch: 'armhf' }).SNAP_INSTANCE_KEY, '');
  assert.is(dpkgArchitecture('x64'), 'amd64');
  assert.is(dpkgArchitecture('arm'), 'armhf');
  assert.is(dpkgArchitecture('ia32'), 'i386');
  assert.is(dpkgArchitecture('ppc64'), 'ppc64el');
  const env = appEnvironment(base, {
    environment: { CONF: '$SNAP_DATA/etc', LOG: '${CONF}/log', PATH: '$SNAP/opt/bin:$PATH', EMPTY: '$NOT_SET', PLAIN: 'x' },
  });
  assert.is(env.CONF, '/R/var/snap/hello_blue/x3/etc');
  assert.is(env.LOG, '/R/var/snap/hello_blue/x3/etc/log', 'later entries see earlier ones');
  assert.ok(env.PATH.startsWith('/R/snap/hello_blue/x3/opt/bin:/R/snap/hello_blue/x3/usr/sbin:'));
  assert.is(env.EMPTY, '');
  assert.is(env.PLAIN, 'x');
  assert.is(base.PATH.includes('/opt/bin'), false, 'base not modified');
});

test.run();
