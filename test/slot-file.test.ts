// slot-file.test.ts: the two-slot record files (util/slot-file.ts) that the
// change journal and the service records are written to: an unflushed write
// never overwrites the last flushed version, shorter texts are padded rather
// than truncated (no torn slot between two system calls), the newer slot wins.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { otherSlot, parseSlotText, readSlotFile, SlotFile } from '../src/util/slot-file';
import { RevisionStore } from '../src/snap/revision-store';
import { tmpdir } from './helpers';

const seqOf = (file: string): number | null => {
  try {
    return JSON.parse(fs.readFileSync(file, 'utf8')).seq;
  } catch {
    return null;
  }
};

test('unflushed writes go to the other slot than the last flushed version, never over it', () => {
  const file = path.join(tmpdir('slot-'), 'j.json');
  const w = new SlotFile(file);
  w.write({ step: 'a' }, { durable: true });
  const flushed = [file, otherSlot(file)].find((f) => seqOf(f) === 1)!;
  assert.ok(flushed, 'the first write is in one slot');
  for (const step of ['b', 'c', 'd']) w.write({ step }, { durable: false });
  assert.is(seqOf(flushed), 1, 'the flushed version is still there after three unflushed writes');
  assert.equal(readSlotFile<{ step: string }>(file)!.step, 'd', 'a reader gets the newest');
  w.write({ step: 'e' }, { durable: true });
  const now = [file, otherSlot(file)].find((f) => seqOf(f) === 5)!;
  assert.is.not(now, flushed, 'a flushed write goes to the other slot too');
  w.write({ step: 'f' }, { durable: false });
  assert.is(seqOf(now), 5, 'and is kept in turn');
  w.close();
  assert.equal(readSlotFile<{ step: string }>(file)!.step, 'f');
});

test('durable writes alternate; a shorter text is padded (valid JSON, same size), a much shorter one shrinks the slot', () => {
  const file = path.join(tmpdir('slot-'), 'r.json');
  const w = new SlotFile(file);
  w.write({ pad: 'x'.repeat(300) }, { durable: true });
  w.write({ pad: 'x'.repeat(300) }, { durable: true });
  assert.equal([seqOf(file), seqOf(otherSlot(file))].sort(), [1, 2], 'one version in each slot');
  const size = fs.statSync(file).size;
  w.write({ pad: 'x'.repeat(250) }, { durable: true });
  w.write({ pad: 'x'.repeat(250) }, { durable: true });
  assert.is(fs.statSync(file).size, size, 'padded to the size it had');
  assert.is(readSlotFile<{ pad: string }>(file)!.pad.length, 250);
  w.write({ pad: '' }, { durable: true });
  w.write({ pad: '' }, { durable: true });
  assert.ok(fs.statSync(file).size < size / 2, 'shrunk once less than half');
  w.close();
  assert.is(readSlotFile<{ pad: string }>(file)!.pad, '');
});

test('a slot that holds the start of one version and the end of another (a read overtaken by a write, a power cut) is refused by its checksum', () => {
  const file = path.join(tmpdir('slot-'), 'm.json');
  const w = new SlotFile(file);
  w.write({ current: 'x1', at: '2026-12-03T10:00:00Z' }, { durable: true });
  w.write({ current: 'x2', at: '2026-12-03T10:00:01Z' }, { durable: true });
  w.write({ current: 'x3', at: '2026-12-03T10:00:02Z' }, { durable: true });
  w.close();
  const newer = [file, otherSlot(file)].find((f) => seqOf(f) === 3)!;
  const text = fs.readFileSync(newer, 'utf8');
  // Same length, so every offset agrees: the old version's first bytes, the new one's last (its seq and check).
  const mixed = text.replace('"x3"', '"x1"');
  assert.ok(JSON.parse(mixed).seq === 3, 'the mix parses, with the newer seq');
  fs.writeFileSync(newer, mixed);
  assert.is(parseSlotText(mixed), 'torn');
  assert.equal(readSlotFile<{ current: string; seq: number }>(file), { current: 'x2', at: '2026-12-03T10:00:01Z', seq: 2 }, 'the other slot stands');
  assert.not.ok('check' in readSlotFile<object>(file)!, 'the checksum is not part of what a reader gets');
});

test('empty slots (created, never written) count as absent; a FIFO or a symlink planted as a slot neither blocks nor is followed', () => {
  const dir = tmpdir('slot-');
  const file = path.join(dir, 'e.json');
  fs.writeFileSync(file, '');
  fs.writeFileSync(otherSlot(file), '\0\0\0 \n');
  assert.is(readSlotFile(file), null);
  const w = new SlotFile(file);
  w.write({ a: 1 }, { durable: true });
  w.close();
  assert.equal(readSlotFile(file), { a: 1, seq: 1 });

  const R = tmpdir('slot-root-');
  fs.mkdirSync(path.join(R, 'state'));
  fs.writeFileSync(path.join(R, 'state', 'snaps.json'), '');
  fs.writeFileSync(path.join(R, 'state', 'snaps.json.1'), '');
  assert.equal(new RevisionStore(R).list(), [], 'a root whose record was never written has no snaps');

  const fifo = path.join(dir, 'f.json');
  execFileSync('mkfifo', [fifo]);
  fs.writeFileSync(otherSlot(fifo), JSON.stringify({ b: 2, seq: 1 }));
  assert.equal(readSlotFile(fifo), { b: 2, seq: 1 }, 'the FIFO is passed over, without blocking');
  let err: (Error & { code?: string }) | null = null;
  try {
    new SlotFile(fifo).write({ b: 3 });
  } catch (e) {
    err = e as Error;
  }
  assert.is(err?.code, 'EFTYPE', 'the writer refuses it');
  fs.rmSync(path.join(R, 'state', 'snaps.json'));
  execFileSync('mkfifo', [path.join(R, 'state', 'snaps.json')]);
  assert.throws(() => new RevisionStore(R).list(), /cannot read .*snaps\.json: it is not a regular file/);
});

test.run();
