// slot-file.test.ts: the two-slot record files (util/slot-file.ts) that the
// change journal and the service records are written to: an unflushed write
// never overwrites the last flushed version, shorter texts are padded rather
// than truncated (no torn slot between two system calls), the newer slot wins.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { otherSlot, readSlotFile, SlotFile } from '../src/util/slot-file';
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

test.run();
