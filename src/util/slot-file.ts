// slot-file.ts: records that change many times a second (the services'
// states) or at every step of a change (the journal) are updated in place,
// in two slots that take turns: FILE and FILE.1. Each write goes to the slot
// the previous one did not use, with a sequence number (`seq`) one higher; a
// reader takes the valid slot with the higher number. A write torn by a
// crash or a power cut leaves the previous version in the other slot, as a
// temporary file and rename(2) would, but without the rename, which on ext4
// also flushes the new file's data (auto_da_alloc: ~0.6-1 ms under load,
// against ~0.03 ms), and, when durable, with one fdatasync instead of an
// fsync, a rename and a directory fsync (~0.4 ms against ~7 ms under load).
// A write that is not flushed (`durable: false`) never goes to the slot that
// holds the last flushed version: a power cut can then lose the unflushed
// writes, never that version. And a slot is not shrunk by a shorter text
// (padded with spaces, which JSON ignores) unless it would be less than half
// its size: one write(2), no ftruncate, so a process killed between two
// system calls cannot leave a slot torn, and an fdatasync that changes no
// size flushes only the data block.
// Each version ends with a checksum of its text (`"check"`, the last key):
// a reader that was overtaken by a write in place (read(2) is not atomic
// against write(2)), or a slot whose pages a power cut wrote back only in
// part, can hold the start of one version and the end of another, which
// may well parse; its checksum does not match, and the other slot stands.
// An empty slot (created, never written) counts as absent.
// One writer per file at a time (the supervisor holds the root's lock). The
// slots are opened with O_NOFOLLOW: a symlink planted under R as a slot's
// name is refused, never written through (a rename over a name, as
// writeFileAtomic does, replaces a link; a write in place would follow it).
import { createHash } from 'node:crypto';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { fsyncDir, fsyncDirs } from './atomic-file';

const fsyncDirAsync = (dir: string) => fsyncDirs([dir]);

/** The second slot's name. */
export function otherSlot(file: string): string {
  return `${file}.1`;
}

const CHECK_TAIL = /,"check":"([0-9a-f]{16})"\}$/;

function checksum(text: string): string {
  return createHash('sha1').update(text).digest('hex').slice(0, 16);
}

/** `text` (a JSON object's text, ending in `}`) with its checksum as the last key. */
export function withChecksum(text: string): string {
  if (!text.endsWith('}') || /^\s*\{\s*\}$/.test(text)) throw new TypeError('a slot\'s text must be a JSON object with at least one key');
  return `${text.slice(0, -1)},"check":"${checksum(text)}"}`;
}

/**
 * What a slot's text holds: 'absent' (empty, or only blanks and NULs: a
 * slot created and never written), 'torn' (not JSON, not an object, or its
 * checksum does not match: a write cut short or overtaken), else the object
 * (its `check` removed). A text without a checksum (written by an older
 * snapproc) is taken if it parses.
 */
export function parseSlotText<T extends object>(text: string): T | 'absent' | 'torn' {
  const body = text.replace(/[\s\0]+$/, '');
  if (body === '') return 'absent';
  const tail = CHECK_TAIL.exec(body);
  if (tail && checksum(body.slice(0, tail.index) + '}') !== tail[1]) return 'torn';
  let doc: unknown;
  try {
    doc = JSON.parse(body);
  } catch {
    return 'torn';
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return 'torn';
  if ('check' in doc) {
    if (!tail) return 'torn'; // a check that is not the last key: not a text this writer made
    delete (doc as { check?: unknown }).check;
  }
  return doc as T;
}

/**
 * A slot's text, read without following a symlink and without blocking on
 * a FIFO planted as its name; null when there is none. Anything but a
 * regular file is an error naming the file.
 */
export function readSlotText(file: string): string | null {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return null;
    throw err;
  }
  try {
    if (!fs.fstatSync(fd).isFile()) throw Object.assign(new Error(`${file} is not a regular file`), { code: 'EFTYPE', path: file });
    return fs.readFileSync(fd, 'utf8');
  } finally {
    fs.closeSync(fd);
  }
}

/** One slot's version, or null when it holds none: missing, empty, torn, a symlink or not a regular file (the other slot stands). */
export function readSlot<T extends object>(file: string): T | null {
  let text: string | null;
  try {
    text = readSlotText(file);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ELOOP' || (err as NodeJS.ErrnoException).code === 'EFTYPE') return null; // not a slot this writer made: the other one stands
    throw err;
  }
  if (text === null) return null;
  const doc = parseSlotText<T>(text);
  return typeof doc === 'string' ? null : doc; // torn by a crash mid-write, or never written: the other slot stands
}

/** The newer valid version of FILE (FILE or FILE.1), or null when neither holds one. */
export function readSlotFile<T extends object>(file: string): T | null {
  const a = readSlot<T & Seq>(file);
  const b = readSlot<T & Seq>(otherSlot(file));
  if (!a) return b;
  if (!b) return a;
  return (b.seq ?? 0) > (a.seq ?? 0) ? b : a;
}

interface Seq {
  seq?: number;
}

/** The writer of one slot file; keeps both slots open until close(). */
export class SlotFile {
  private fds: [number, number] | null = null;
  private sizes: [number, number] = [0, 0];
  private seq = 0;
  /** The slot holding the last version that was flushed (null: none flushed by this writer yet). */
  private flushedSlot: 0 | 1 | null = null;

  /**
   * `keepNewest`: a write that would overwrite the newest version while it
   * is not flushed (two writes in a row with `durable: false`) flushes that
   * version first and goes to the other slot. Without it the newest
   * unflushed version is overwritten in place: a write(2) cut short (a
   * SIGKILL lands between two of its pages; a record of many pages, such as
   * snaps.json with many snaps) then leaves the last flushed version, and
   * the unflushed one before it is lost. For a record whose every write
   * must survive its writer's death; the cost is one fdatasync in that case.
   */
  constructor(
    readonly file: string,
    private readonly mode = 0o644,
    private readonly options: { keepNewest?: boolean } = {},
  ) {}

  /**
   * Writes `doc` (its `seq` set to the next number) to the next slot. With
   * `durable`, flushed before it returns (the slots' names are made durable
   * at the first durable write); without, it survives the writer's death
   * (SIGKILL), not a power cut, and the last flushed version stays as it was.
   */
  write(doc: object, options: { durable?: boolean } = {}): void {
    const d = doc as Seq;
    this.writeText((seq) => {
      d.seq = seq;
      return JSON.stringify(doc, null, 2);
    }, options, d.seq ?? 0);
  }

  /** Writes the JSON text that `render` makes for the next sequence number (it must hold `"seq": seq`). */
  writeText(render: (seq: number) => string, options: { durable?: boolean } = {}, atLeast = 0): void {
    if (!this.fds) {
      fs.mkdirSync(path.dirname(this.file), { recursive: true });
      const slots = [readSlot<Seq>(this.file), readSlot<Seq>(otherSlot(this.file))] as const;
      const newest: 0 | 1 | null = slots[1] && (!slots[0] || (slots[1].seq ?? 0) > (slots[0].seq ?? 0)) ? 1 : slots[0] ? 0 : null;
      const first = this.open(this.file);
      let second: number | null = null;
      try {
        second = this.open(otherSlot(this.file));
        const sizes: [number, number] = [fs.fstatSync(first).size, fs.fstatSync(second).size];
        if (newest !== null) {
          // A previous writer (killed) may have left its last version unflushed,
          // and which slot holds the last flushed one is not known: both are
          // flushed once, so that the next write, to the other slot than the
          // newest, never overwrites the only flushed version.
          fs.fdatasyncSync(first);
          fs.fdatasyncSync(second);
        }
        // Only once all of it succeeded: a failure leaves this writer as it was (nothing open).
        this.fds = [first, second];
        this.sizes = sizes;
      } catch (err) {
        fs.closeSync(first);
        if (second !== null) fs.closeSync(second);
        throw err;
      }
      this.seq = Math.max(newest === null ? 0 : slots[newest]?.seq ?? 0, atLeast);
      this.flushedSlot = newest;
      this.lastSlot = null;
      this.namesFlushed = false;
    }
    if (options.durable && !this.namesFlushed) {
      fsyncDir(path.dirname(this.file));
      this.namesFlushed = true;
    }
    if (this.options.keepNewest && this.lastSlot !== null && this.lastSlot !== this.flushedSlot) {
      fs.fdatasyncSync(this.fds[this.lastSlot]);
      this.flushedSlot = this.lastSlot;
    }
    const slot: 0 | 1 = this.flushedSlot === null ? (((this.seq + 1) % 2) as 0 | 1) : this.flushedSlot === 0 ? 1 : 0;
    const text = withChecksum(render(this.seq + 1)) + '\n';
    const length = Buffer.byteLength(text);
    // Much shorter than the slot (a record that lost most of its services): shrunk after all.
    const shrink = length * 2 < this.sizes[slot];
    const data = Buffer.from(length < this.sizes[slot] && !shrink ? text + ' '.repeat(this.sizes[slot] - length) : text);
    const fd = this.fds[slot];
    // The slot's size is no longer known once a write failed part way (ENOSPC as it grows):
    // it is torn now, and the next write must not count on it.
    this.sizes[slot] = Infinity;
    if (this.lastSlot === slot) this.lastSlot = null;
    if (this.flushedSlot === slot) this.flushedSlot = null;
    for (let done = 0; done < data.length; ) done += fs.writeSync(fd, data, done, data.length - done, done);
    if (shrink) fs.ftruncateSync(fd, data.length);
    this.seq += 1;
    this.sizes[slot] = data.length;
    this.lastSlot = slot;
    if (options.durable) {
      fs.fdatasyncSync(fd);
      this.flushedSlot = slot;
    }
  }

  private namesFlushed = false;
  /** The slot of the last write, and its sequence number (for sync()). */
  private lastSlot: 0 | 1 | null = null;

  /**
   * Flushes the last write (made with `durable: false`) off the main thread,
   * and the slots' names with it when they were never flushed (fdatasync and
   * the directory's fsync side by side, one journal commit): a durable write
   * in one round, which a caller can run beside other flushes.
   */
  async sync(): Promise<void> {
    if (!this.fds || this.lastSlot === null) return;
    const slot = this.lastSlot;
    const seq = this.seq;
    const fd = this.fds[slot];
    const names = this.namesFlushed ? null : fsyncDirAsync(path.dirname(this.file));
    await Promise.all([new Promise<void>((resolve, reject) => fs.fdatasync(fd, (err) => (err ? reject(err) : resolve()))), names]);
    this.namesFlushed = true;
    // A write made meanwhile (none in a change's runner) is not what was flushed.
    if (this.seq === seq) this.flushedSlot = slot;
  }

  close(): void {
    if (!this.fds) return;
    for (const fd of this.fds) fs.closeSync(fd);
    this.fds = null;
    this.flushedSlot = null;
    this.lastSlot = null;
  }

  private open(file: string): number {
    const fd = fs.openSync(file, fs.constants.O_RDWR | fs.constants.O_CREAT | fs.constants.O_NOFOLLOW | fs.constants.O_NONBLOCK, this.mode);
    try {
      if (!fs.fstatSync(fd).isFile()) throw Object.assign(new Error(`cannot write ${file}: it is not a regular file`), { code: 'EFTYPE', path: file });
      fs.fchmodSync(fd, this.mode);
    } catch (err) {
      fs.closeSync(fd);
      throw err;
    }
    return fd;
  }
}
