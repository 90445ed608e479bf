// revision-store.ts: the installed revisions of every snap under the state root R, and
// the one record that says which exist. Everything else in snapproc (the
// supervisor, refresh, revert, remove) reads revisions through this class, so
// the on-disk layout (SPEC 1) is known in one place:
//   R/snap/NAME/REV/              the revision's files ($SNAP)
//   R/snap/NAME/current -> REV
//   R/var/snap/NAME/REV/          per-revision data ($SNAP_DATA)
//   R/var/snap/NAME/common/       shared data ($SNAP_COMMON)
//   R/var/snap/NAME/current -> REV
//   R/root/snap/NAME/REV|common/  root's $SNAP_USER_DATA / $SNAP_USER_COMMON (HOME, see environment.ts)
//   R/state/snaps.json(.1)        installed snaps, their revisions, versions, numbering
//   R/run/, R/log/                sockets and logs (made by ensureLayout, used by others)
//
// Rules it keeps:
//   - A snap is validated completely (snap.yaml, hooks, instance name) before
//     anything is written under R; a rejected snap changes nothing on disk.
//   - A revision appears under its final name only complete (copied into a
//     hidden `.REV.partial-HEX/` directory, flushed, then renamed), and is
//     recorded in snaps.json only after that; a failure removes what it made.
//   - snaps.json is written in two slots that take turns (snaps.json,
//     snaps.json.1; the newer valid one counts): a crash mid-write leaves
//     the previous record. Its one writer, the supervisor (ownRecord), writes
//     in place and keeps the record in memory; any other writer replaces the
//     older slot atomically (../util/atomic-file.ts).
//   - `current` links are replaced atomically, the data link before the snap
//     link; the links (not snaps.json) are the truth about what is current.
//   - Local revisions are x1, x2, ...; a number once used is never used again
//     for that instance name, also after the snap was removed (a stale journal,
//     log or launch file can then never be mistaken for a new revision).
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { SnapprocError, usageError } from '../util/errors';
import { fsyncDir, fsyncDirs, fsyncTree, isTempSibling, removeSymlink, replaceSymlinkAtomic, writeFileAtomic, type FlushQueue } from '../util/atomic-file';
import { checkCommands } from './command-check';
import { asideName, copyTree, restoreAside, syncFilesystem } from './data-copy';
import { takeStandby, type StandbyUse } from './standby';
import { checkSnapTree, checkUnpackFits, readTreeSnapYaml, treeHooks, unpackSize } from './snap-from-path';
import { revisionPaths } from './environment';
import { native } from '../kernel/native';
import { otherSlot, parseSlotText, readSlot, readSlotText, SlotFile, withChecksum } from '../util/slot-file';
import { validateInstanceName } from './snap-yaml';
import { parseSnapYamlCached } from './snap-yaml-cache';
import type { HookName, SnapYaml } from './snap-yaml';

export { defaultRoot, resolveRoot } from './state-root';

/** Creates R and its top-level directories (R/snap, R/var/snap, R/state, R/run, R/log). */
export function ensureLayout(root: string): void {
  for (const dir of [root, path.join(root, 'snap'), path.join(root, 'var', 'snap'), path.join(root, 'state'), path.join(root, 'run'), path.join(root, 'log')]) {
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  }
}

export const NOT_A_SNAP = 'ERR_SNAPPROC_NOT_A_SNAP';
export const INVALID_SNAP = 'ERR_SNAPPROC_INVALID_SNAP';

export interface InstalledRevision {
  revision: string;
  version: string;
  /** ISO 8601 time the revision was added. */
  installedAt: string;
}

export interface InstalledSnap {
  /** Instance name (`name` or `name_key`): the key of everything under R. */
  name: string;
  /** The name in snap.yaml. */
  snapName: string;
  /** '' when none. */
  instanceKey: string;
  /** In the order they were added (oldest first). */
  revisions: InstalledRevision[];
  /** From the `current` symlink; null when unlinked. */
  current: string | null;
}

export interface RevisionPaths {
  snap: string;
  data: string;
  common: string;
  userData: string;
  userCommon: string;
  snapCurrent: string;
  dataCurrent: string;
}

interface SnapRecord {
  name: string;
  snapName: string;
  instanceKey: string;
  revisions: InstalledRevision[];
  /** As last linked by this store (informational: the symlink is the truth). */
  current: string | null;
}

interface SnapsFile {
  format: 1;
  /** Which slot is newer (../util/slot-file.ts). */
  seq?: number;
  snaps: Record<string, SnapRecord>;
  /** Per instance name: the highest local revision number ever used (kept after removal). */
  highestLocalRevision: Record<string, number>;
}

const REVISION = /^x?[1-9][0-9]{0,9}$/;
/** Names in a snap's directories that belong to a revision: x3, .x3.partial-HEX, x3.snapproc-aside-N, .x3.copying-HEX. */
const LOCAL_REVISION_ENTRY = /^\.?x([1-9][0-9]{0,9})(?:\..*)?$/;

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return false;
    throw err;
  }
}

/** Names retireRevision gives to what is to be deleted: `.REV.trash-HEX`. */
export function isTrashName(base: string): boolean {
  return /^\.x?[1-9][0-9]{0,9}\.trash-[0-9a-f]{8}$/.test(base);
}

function isEmptyDir(p: string): boolean {
  try {
    return fs.lstatSync(p).isDirectory() && fs.readdirSync(p).length === 0;
  } catch {
    return false;
  }
}

function readdirOrEmpty(dir: string): string[] {
  try {
    return fs.readdirSync(dir);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT' || (err as NodeJS.ErrnoException).code === 'ENOTDIR') return [];
    throw err;
  }
}

function removeTree(p: string): void {
  fs.rmSync(p, { recursive: true, force: true });
}

/** rmdir that only succeeds on an empty directory; false otherwise. */
function rmdirIfEmpty(dir: string): boolean {
  try {
    fs.rmdirSync(dir);
    return true;
  } catch {
    return false;
  }
}

function checkInstance(name: string): void {
  const bad = validateInstanceName(name);
  if (bad !== null) throw usageError(bad.startsWith('invalid') ? bad : `invalid instance name "${name}": ${bad}`);
}

function checkRevision(rev: string): void {
  if (!REVISION.test(rev)) throw usageError(`invalid revision: "${rev}" (expected x1, x2, ... or a number)`);
}

// ---------------------------------------------------------------- reading a snap tree

type SourceKind = 'directory' | 'squashfs';

/** Directory or squashfs file (magic `hsqs` at offset 0); anything else is not a snap. */
function sourceKind(source: string): SourceKind {
  let st: fs.Stats;
  try {
    st = fs.statSync(source);
  } catch (err) {
    if (hasErrno(err, 'ENOENT', 'ENOTDIR')) throw new SnapprocError(NOT_A_SNAP, `not a snap: ${source} does not exist`, { path: source, cause: err });
    throw err;
  }
  if (st.isDirectory()) return 'directory';
  if (st.isFile()) {
    const head = Buffer.alloc(4);
    const fd = fs.openSync(source, 'r');
    try {
      fs.readSync(fd, head, 0, 4, 0);
    } finally {
      fs.closeSync(fd);
    }
    if (head.toString('latin1') === 'hsqs') return 'squashfs';
    if (path.basename(source) === 'snap.yaml') {
      throw new SnapprocError(NOT_A_SNAP, `not a snap: ${source} is a snap.yaml, not a snap (install the directory that holds meta/snap.yaml; \`snapproc validate\` checks a snap.yaml alone)`, { path: source });
    }
  }
  throw new SnapprocError(NOT_A_SNAP, `not a snap: ${source} is neither a directory nor a squashfs file`, { path: source });
}

function hasErrno(err: unknown, ...codes: string[]): boolean {
  return codes.includes((err as NodeJS.ErrnoException)?.code ?? '');
}

/**
 * The root's supervisor lock (R/run/snapproc.lock), taken for one write of
 * the record by a store that does not own it; null when no supervisor ever
 * ran for R (no lock file). Held by a running supervisor: refused.
 */
function lockRecordOrRefuse(root: string): number | null {
  const file = path.join(root, 'run', 'snapproc.lock');
  if (!exists(file)) return null;
  try {
    return native.lockFile(file);
  } catch (err) {
    if (hasErrno(err, 'EAGAIN', 'EACCES', 'EWOULDBLOCK')) {
      throw new SnapprocError('ERR_SNAPPROC_SUPERVISOR_RUNNING', `cannot change the record of ${root}: a snapproc supervisor runs for it and owns it (it holds ${file}); ask it through its control socket`, { path: file });
    }
    throw err;
  }
}

/**
 * Reads and checks a snap tree: meta/snap.yaml (a regular file, valid), and
 * every file in meta/hooks/ named like a known hook must be an executable
 * regular file (./snap-from-path.ts). Hooks present as files but not declared in snap.yaml are
 * added to `hooks` (snapd's implicit hooks). `label` names the source in
 * messages (the .snap file for an unpacked squashfs). The tree itself
 * (special files, setuid bits, links out of it) is checked by checkSnapTree.
 */
export function inspectSnapTree(dir: string, label: string = dir): SnapYaml {
  const files = treeHooks(dir, label);
  // default-configure is no hook snapproc runs, but snapd's rule about it (it needs configure) counts the file too.
  const dc = fs.existsSync(path.join(dir, 'meta', 'hooks', 'default-configure')) ? ['default-configure'] : [];
  const snap = parseSnapYamlCached(readTreeSnapYaml(dir, label), path.join(label, 'meta', 'snap.yaml'), { hookFiles: [...files, ...dc] });
  for (const hook of files) {
    if (!snap.hooks[hook as HookName]) snap.hooks[hook as HookName] = { name: hook as HookName };
  }
  return snap;
}

/** Unpacks a squashfs file (all of it, or only `only`) into the new directory `dest`. */
function unsquash(file: string, dest: string, only: string[] = []): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('unsquashfs', ['-n', '-no-xattrs', '-d', dest, file, ...only], { maxBuffer: 64 * 1024 * 1024 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      if (hasErrno(err, 'ENOENT') && (err as NodeJS.ErrnoException).path === 'unsquashfs') {
        return reject(new SnapprocError('ENOENT', `cannot unpack ${file}: unsquashfs is not installed (install the Debian package squashfs-tools)`, { path: file, cause: err }));
      }
      const said = String(stderr).trim().split('\n').filter(Boolean)[0] ?? `unsquashfs exited with status ${String((err as { code?: unknown }).code)}`;
      reject(new SnapprocError(NOT_A_SNAP, `cannot unpack ${file}: ${said}`, { path: file, cause: err }));
    });
  });
}

// ---------------------------------------------------------------- the store

export class RevisionStore {
  readonly root: string;
  /** The record's first slot; the second is `${stateFile}.1` (../util/slot-file.ts). */
  readonly stateFile: string;
  /**
   * Set by ownRecord(): this process is the record's one writer, and the
   * record is kept here, as last written, instead of read and parsed again
   * at every look (a refresh looked a dozen times; with 100 snaps installed
   * each look parsed all of them).
   */
  private owned: { slots: SlotFile; record: SnapsFile | null } | null = null;

  constructor(root: string) {
    this.root = path.resolve(root);
    this.stateFile = path.join(this.root, 'state', 'snaps.json');
  }

  // ------------------------------------------------------------ record

  /**
   * Makes this store the record's one writer, for a process that holds the
   * root's lock (the supervisor): the record is kept in memory from its
   * first read on and written in place, in two slots that take turns
   * (snaps.json and snaps.json.1, the newer valid one counts; see
   * ../util/slot-file.ts): one write(2) where a replacement by rename made
   * a temporary file, an fsync on the calling thread, a rename and a
   * directory fsync, and a write that may wait for its flush (a refresh's
   * batch) no longer flushes before it returns. Readers in other processes
   * (`snapproc list`, `info`) read both slots. Until releaseRecord().
   */
  ownRecord(): void {
    if (this.owned) return;
    this.owned = { slots: new SlotFile(this.stateFile, 0o644, { keepNewest: true }), record: null };
  }

  /** Ends ownRecord(): the slots are closed, and every look reads the record again. */
  releaseRecord(): void {
    this.owned?.slots.close();
    this.owned = null;
  }

  /** The record as it is now, not to be changed (see load()). */
  private view(): SnapsFile {
    if (!this.owned) return this.read();
    return (this.owned.record ??= this.read());
  }

  /** The record, to be changed and passed to save(). */
  private load(): SnapsFile {
    return this.owned ? structuredClone(this.view()) : this.read();
  }

  /** Reads the record from disk: the newer valid slot (or none: nothing installed yet). */
  private read(attempt = 0): SnapsFile {
    let newest: (Partial<SnapsFile> & { seq?: number }) | null = null;
    let unreadable: { file: string; why: string } | null = null;
    let torn = false;
    for (const file of [this.stateFile, otherSlot(this.stateFile)]) {
      let text: string | null;
      try {
        // Not through a symlink planted as the record's name (nor its content in a message), nor blocked on a FIFO.
        text = readSlotText(file);
      } catch (err) {
        if (hasErrno(err, 'ELOOP')) throw new SnapprocError('ERR_SNAPPROC_STATE', `cannot read ${file}: it is a symbolic link, not snapproc's record`, { path: file, cause: err });
        if (hasErrno(err, 'EFTYPE')) throw new SnapprocError('ERR_SNAPPROC_STATE', `cannot read ${file}: it is not a regular file`, { path: file, cause: err });
        throw err;
      }
      if (text === null) continue;
      const parsed = parseSlotText<Partial<SnapsFile>>(text);
      // Empty: created and never written (a crash before the first write).
      if (parsed === 'absent') continue;
      if (parsed === 'torn') {
        // A slot torn by a crash mid-write, or overtaken by the owner's write as it was read: the other one stands.
        unreadable ??= { file, why: 'it is not valid JSON, or its "check" does not match its text (torn by a crash; after an edit by hand, remove the "check" key)' };
        torn = true;
        continue;
      }
      if (typeof parsed.snaps !== 'object' || parsed.snaps === null) {
        unreadable ??= { file, why: 'it has no "snaps" object' };
        continue;
      }
      const doc = parsed as Partial<SnapsFile> & { seq?: number };
      if (!newest || (doc.seq ?? 0) > (newest.seq ?? 0)) newest = doc;
    }
    if (newest) return { format: 1, snaps: newest.snaps ?? {}, highestLocalRevision: newest.highestLocalRevision ?? {}, ...(newest.seq !== undefined ? { seq: newest.seq } : {}) };
    // Both overtaken by writes in a row (the owner writes in place): read again, a few times.
    if (torn && attempt < 3) return this.read(attempt + 1);
    if (unreadable) throw new SnapprocError('ERR_SNAPPROC_STATE', `cannot read ${unreadable.file}: ${unreadable.why}`, { path: unreadable.file });
    return { format: 1, snaps: {}, highestLocalRevision: {} };
  }

  /**
   * Writes the record. Owned (ownRecord), in place: flushed before it
   * returns when durable without a batch, else queued in the batch or not
   * flushed at all (`durable: false`). Not owned, the older slot is
   * replaced by rename (../util/atomic-file.ts) with the next sequence
   * number, so the newer slot stands until the rename.
   */
  private save(file: SnapsFile, options: { durable?: boolean; batch?: FlushQueue } = {}): void {
    const durable = options.durable ?? true;
    if (this.owned) {
      if (this.owned.record === null) ensureLayout(this.root);
      this.owned.slots.write(file, { durable: durable && !options.batch });
      if (durable && options.batch) options.batch.addWriter(this.owned.slots);
      this.owned.record = file;
      return;
    }
    ensureLayout(this.root);
    // Never beside a supervisor of this root: it owns the record, keeps it in memory and writes
    // it in place, so a write here would be lost at its next one (or overwrite its slot).
    const lock = lockRecordOrRefuse(this.root);
    try {
      const slots = [this.stateFile, otherSlot(this.stateFile)];
      const seqs = slots.map((f) => {
        try {
          const doc = readSlot<{ seq?: unknown }>(f);
          return doc === null ? -1 : typeof doc.seq === 'number' ? doc.seq : 0;
        } catch {
          return -1; // missing, torn or not a regular file: the slot to replace
        }
      });
      const older = seqs[1] < seqs[0] ? 1 : 0;
      writeFileAtomic(slots[older], withChecksum(JSON.stringify({ ...file, seq: Math.max(seqs[0], seqs[1], 0) + 1 }, null, 2)) + '\n', 0o644, options);
    } finally {
      if (lock !== null) fs.closeSync(lock);
    }
  }

  private toInstalled(rec: SnapRecord): InstalledSnap {
    return {
      name: rec.name,
      snapName: rec.snapName,
      instanceKey: rec.instanceKey,
      revisions: rec.revisions.map((r) => ({ ...r })),
      current: this.currentRevision(rec.name),
    };
  }

  /** Installed snaps (instances), by name. Reads only; an absent root has none. */
  list(): InstalledSnap[] {
    const file = this.view();
    return Object.keys(file.snaps).sort().map((name) => this.toInstalled(file.snaps[name]));
  }

  get(name: string): InstalledSnap | undefined {
    checkInstance(name);
    const rec = this.view().snaps[name];
    return rec ? this.toInstalled(rec) : undefined;
  }

  /** Paths of checked (name, revision) pairs: a refresh asked for the same few some fifty times. */
  private pathsOf = new Map<string, Readonly<RevisionPaths>>();
  /** readSnapYaml's results, by revision directory, with the stamp of what they were read from. */
  private yamlOf = new Map<string, { stamp: string; snap: SnapYaml }>();

  paths(name: string, rev: string): RevisionPaths {
    const key = `${name}/${rev}`;
    let p = this.pathsOf.get(key);
    if (!p) {
      checkInstance(name);
      checkRevision(rev);
      p = {
        ...revisionPaths(this.root, name, rev),
        snapCurrent: path.join(this.root, 'snap', name, 'current'),
        dataCurrent: path.join(this.root, 'var', 'snap', name, 'current'),
      };
      if (this.pathsOf.size >= 1024) this.pathsOf.clear();
      this.pathsOf.set(key, p);
    }
    return { ...p };
  }

  /**
   * The snap.yaml of an installed revision, with its implicit hooks. Kept
   * by revision and read again when any of meta/, meta/snap.yaml or
   * meta/hooks/ is not the same file as before or changed (inode, size,
   * times in nanoseconds): a refresh read the same two a dozen times. A
   * hook whose mode alone changed (chmod) after it was read is not seen
   * until then; running it fails as it would.
   */
  readSnapYaml(name: string, rev: string): SnapYaml {
    const p = this.paths(name, rev);
    const meta = path.join(p.snap, 'meta');
    const stamp = [meta, path.join(meta, 'snap.yaml'), path.join(meta, 'hooks')].map((f) => {
      const st = fs.lstatSync(f, { bigint: true, throwIfNoEntry: false });
      return st ? `${st.ino}:${st.mode}:${st.size}:${st.mtimeNs}:${st.ctimeNs}` : '-';
    }).join('/');
    if (stamp.split('/')[1] === '-') {
      this.yamlOf.delete(p.snap);
      throw new SnapprocError('ENOENT', `revision ${rev} of snap "${name}" is not installed (no ${path.join(meta, 'snap.yaml')})`, { path: p.snap });
    }
    const had = this.yamlOf.get(p.snap);
    if (had && had.stamp === stamp) return structuredClone(had.snap);
    const snap = inspectSnapTree(p.snap);
    if (this.yamlOf.size >= 64) this.yamlOf.delete(this.yamlOf.keys().next().value!);
    this.yamlOf.set(p.snap, { stamp, snap: structuredClone(snap) });
    return snap;
  }

  /** One past the highest local revision ever used for `name` (recorded, or found on disk). */
  nextRevision(name: string): string {
    checkInstance(name);
    const file = this.view();
    let highest = file.highestLocalRevision[name] ?? 0;
    for (const r of file.snaps[name]?.revisions ?? []) {
      const m = LOCAL_REVISION_ENTRY.exec(r.revision);
      if (m) highest = Math.max(highest, Number(m[1]));
    }
    // Also what a crash may have left without a record.
    for (const dir of this.revisionParents(name)) {
      for (const entry of readdirOrEmpty(dir)) {
        const m = LOCAL_REVISION_ENTRY.exec(entry);
        if (m) highest = Math.max(highest, Number(m[1]));
      }
    }
    return `x${highest + 1}`;
  }

  /**
   * Adds a revision from a directory holding meta/snap.yaml or a squashfs
   * .snap file, as the next local revision. Validates everything before
   * writing anything; does not link `current` (the caller decides).
   * `batch`: the flushes of the new tree, its data directories and the
   * record's rename are queued there instead of run here (a refresh flushes
   * them with its journal, before it links the revision: a crash before
   * that removes the revision, see changes.ts); the revision then reaches
   * its final name and the record before it is on disk.
   */
  async addRevision(sourcePath: string, opts: { instanceKey?: string; revision?: string; batch?: FlushQueue } = {}): Promise<{ snap: SnapYaml; instance: string; revision: string; dir: string }> {
    const source = path.resolve(sourcePath);
    const kind = sourceKind(source);
    let snap: SnapYaml;
    // A .snap is unpacked whole outside R (a private 0700 directory) and its
    // tree checked there, so that a refused one writes nothing under R; the
    // unpacked tree is then moved into R (or, across file systems, unpacked again).
    let stage: string | null = null;
    if (kind === 'squashfs') {
      // Bounded first (a few KiB can claim terabytes): it must fit where it is staged and into R.
      checkUnpackFits(source, await unpackSize(source), [os.tmpdir(), this.root]);
      stage = fs.mkdtempSync(path.join(os.tmpdir(), 'snapproc-unpack-'));
      try {
        await unsquash(source, path.join(stage, 'tree'));
        checkSnapTree(path.join(stage, 'tree'), source, { strip: true });
        snap = inspectSnapTree(path.join(stage, 'tree'), source);
        checkCommands(path.join(stage, 'tree'), snap, source);
      } catch (err) {
        removeTree(stage);
        throw err;
      }
    } else {
      checkSnapTree(source, source);
      snap = inspectSnapTree(source);
      checkCommands(source, snap);
    }
    try {
      return await this.installTree(source, kind, stage, snap, opts);
    } finally {
      if (stage !== null) removeTree(stage);
    }
  }

  private async installTree(source: string, kind: SourceKind, stage: string | null, checked: SnapYaml, opts: { instanceKey?: string; revision?: string; batch?: FlushQueue }): Promise<{ snap: SnapYaml; instance: string; revision: string; dir: string }> {
    let snap = checked;
    const key = opts.instanceKey ?? '';
    const instance = key === '' ? snap.name : `${snap.name}_${key}`;
    checkInstance(instance);

    // Valid: from here on R is written, and a failure removes what was made.
    ensureLayout(this.root);
    // A revision the caller reserved (and journalled) must still be free.
    const revision = opts.revision ?? this.nextRevision(instance);
    if (opts.revision !== undefined && (!REVISION.test(revision) || this.nextRevision(instance) !== revision)) {
      throw new SnapprocError('ERR_SNAPPROC_INTERNAL', `revision ${revision} of snap "${instance}" is not the next free one (${this.nextRevision(instance)})`);
    }
    const p = this.paths(instance, revision);
    const snapParent = path.dirname(p.snap);
    const made: string[] = []; // directories this call created, removed again on failure
    const mkdir = (dir: string, mode = 0o755, subvolume = false) => {
      if (exists(dir)) return;
      // $SNAP_DATA and $SNAP_USER_DATA: btrfs subvolumes where they can be, so that a refresh's copy is one snapshot.
      native.makeDataDir(dir, mode, subvolume);
      made.push(dir);
    };
    // The partial directory, made before the first await, also reserves the
    // number: a concurrent addRevision's nextRevision sees it and moves on.
    const partial = path.join(snapParent, `.${revision}.partial-${randomBytes(4).toString('hex')}`);
    const staged = path.join(partial, 'tree');
    try {
      mkdir(snapParent);
      fs.mkdirSync(partial, { mode: 0o700 });
      if (kind === 'squashfs') {
        try {
          fs.renameSync(path.join(stage!, 'tree'), staged);
        } catch (err) {
          if (!hasErrno(err, 'EXDEV')) throw err;
          await unsquash(source, staged);
        }
        await syncFilesystem(staged);
      } else {
        // Flushed below, every file and directory at once (fsyncTree), not one after the other.
        await copyTree(source, staged, { xattrs: false, sync: false });
      }
      // What was copied is what gets installed: check and read it again (the
      // source may have changed meanwhile): no special files, no links out of
      // it, setuid/setgid bits cleared, before it gets its world-readable name.
      checkSnapTree(staged, source, { strip: true });
      const copied = inspectSnapTree(staged, source);
      checkCommands(staged, copied, source);
      if (copied.name !== snap.name) {
        throw new SnapprocError(INVALID_SNAP, `${source} changed while it was copied (snap "${snap.name}" became "${copied.name}")`, { path: source });
      }
      snap = copied;
      if (kind !== 'squashfs' && !opts.batch) await fsyncTree(staged, (d) => syncFilesystem(d));
      fs.renameSync(staged, p.snap);
      if (kind !== 'squashfs') opts.batch?.addTree(p.snap);
      made.push(p.snap);
      fs.rmdirSync(partial);
      mkdir(path.dirname(p.data));
      mkdir(p.data, 0o755, true);
      mkdir(p.common);
      mkdir(path.join(this.root, 'root'), 0o700);
      mkdir(path.join(this.root, 'root', 'snap'));
      mkdir(path.dirname(p.userData));
      mkdir(p.userData, 0o755, true);
      mkdir(p.userCommon);
      // The revision's name and its data directories, in one flush.
      const names = [snapParent, path.dirname(p.data), path.dirname(p.userData)];
      if (opts.batch) opts.batch.add(...names);
      else await fsyncDirs(names);

      const file = this.load();
      const rec: SnapRecord = file.snaps[instance] ?? { name: instance, snapName: snap.name, instanceKey: key, revisions: [], current: null };
      rec.revisions.push({ revision, version: snap.version, installedAt: new Date().toISOString() });
      file.snaps[instance] = rec;
      file.highestLocalRevision[instance] = Math.max(file.highestLocalRevision[instance] ?? 0, Number(revision.slice(1)));
      this.save(file, { batch: opts.batch });
    } catch (err) {
      removeTree(partial);
      for (const dir of made.reverse()) removeTree(dir);
      throw err;
    }
    return { snap, instance, revision, dir: p.snap };
  }

  // ------------------------------------------------------------ current

  /** The revision `R/snap/NAME/current` points at; null when there is no link. */
  currentRevision(name: string): string | null {
    checkInstance(name);
    try {
      return path.basename(fs.readlinkSync(path.join(this.root, 'snap', name, 'current')));
    } catch (err) {
      if (hasErrno(err, 'ENOENT', 'ENOTDIR', 'EINVAL')) return null;
      throw err;
    }
  }

  /**
   * Points both `current` links at `rev`, atomically each: the data link
   * first, then the snap link. Each is flushed before the next, or with
   * `batch` both renames are queued there (a refresh flushes them before its
   * journal says it is done; until then a crash undoes the refresh, which
   * links the old revision again whichever of the two renames reached the disk).
   * With `batch` the record's (informational) `current` is left to the
   * caller too: recordCurrent, with its other change of the record (a
   * refresh's prune), one rewrite of snaps.json instead of two.
   */
  linkCurrent(name: string, rev: string, opts: { batch?: FlushQueue } = {}): void {
    const p = this.paths(name, rev);
    if (!exists(p.snap)) throw new SnapprocError('ENOENT', `cannot link revision ${rev} of snap "${name}": it is not installed`, { path: p.snap });
    this.ensureDataDirs(p);
    this.removeStaleLinkTemps(p);
    replaceSymlinkAtomic(p.dataCurrent, rev, opts);
    replaceSymlinkAtomic(p.snapCurrent, rev, opts);
    if (!opts.batch) this.setRecordedCurrent(name, rev);
  }

  /**
   * A writer killed between making a new `current` link under its temporary
   * name and renaming it over the old one (SIGKILL) left that name behind
   * (`.current.tmp-PID-HEX`, see replaceSymlinkAtomic): removed at the next
   * link, when the process that made it is gone. Not flushed (nothing
   * refers to it; the link that follows flushes the directory).
   */
  private removeStaleLinkTemps(p: RevisionPaths): void {
    for (const link of [p.dataCurrent, p.snapCurrent]) {
      const dir = path.dirname(link);
      const prefix = `.${path.basename(link)}.tmp-`;
      for (const entry of readdirOrEmpty(dir)) {
        if (!entry.startsWith(prefix) || !isTempSibling(entry)) continue;
        const pid = Number(entry.slice(prefix.length).split('-')[0]);
        if (pid === process.pid || fs.existsSync(`/proc/${pid}`)) continue;
        fs.rmSync(path.join(dir, entry), { force: true });
      }
    }
  }

  /** Records `rev` as last linked (informational, not flushed), unless retireRevision already did. */
  recordCurrent(name: string, rev: string): void {
    checkInstance(name);
    this.setRecordedCurrent(name, rev);
  }

  /**
   * Removes both `current` links (the snap link first); no error when there
   * are none. The record keeps the revision last linked (it says no more):
   * a refresh unlinks and links again at once, and a rewrite of snaps.json
   * costs it a flush of the file's data by the file system (ext4's rename).
   * Not flushed either: every caller's next step makes the links durable
   * (linkCurrent renames new ones over them and flushes the directories) or
   * removes the snap's directory with them (removeSnap), and a removal that a
   * power cut undid leaves the links as they were before it, which is what
   * an undo restores.
   */
  unlinkCurrent(name: string): void {
    checkInstance(name);
    removeSymlink(path.join(this.root, 'snap', name, 'current'), { durable: false });
    removeSymlink(path.join(this.root, 'var', 'snap', name, 'current'), { durable: false });
  }

  /** $SNAP_DATA and root's $SNAP_USER_DATA of a revision exist (R/root private to root). */
  private ensureDataDirs(p: RevisionPaths): void {
    const home = path.join(this.root, 'root');
    if (!exists(home)) {
      fs.mkdirSync(home, { mode: 0o700 });
      fs.chmodSync(home, 0o700);
    }
    for (const dir of [p.data, p.userData]) if (!exists(dir)) fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
  }

  private setRecordedCurrent(name: string, rev: string | null): void {
    const file = this.load();
    const rec = file.snaps[name];
    if (!rec || rec.current === rev) return;
    rec.current = rev;
    // Informational (the links are the truth, and they are flushed): atomic, not flushed.
    this.save(file, { durable: false });
  }

  // ------------------------------------------------------------ data

  /**
   * Copies $SNAP_DATA (and root's $SNAP_USER_DATA) of `fromRev` to `toRev`.
   * A target that holds anything is first moved aside to
   * `REV.snapproc-aside-N` (one N for both), returned as `movedAside` (the
   * $SNAP_DATA one); an empty target is simply replaced. On failure the
   * targets are as they were. Undo with removeData + restoreData.
   * $SNAP_DATA comes from a standby copy of `fromRev` when one is ready
   * (./standby.ts: the checking pass redoes what changed since it was made,
   * and flushes that), else from a full copy; `standby` says what the
   * checking pass did.
   */
  async copyData(name: string, fromRev: string, toRev: string, opts: { batch?: FlushQueue; say?: (line: string) => void } = {}): Promise<{ movedAside?: string; standby?: StandbyUse }> {
    const from = this.paths(name, fromRev);
    const to = this.paths(name, toRev);
    if (fromRev === toRev) throw usageError(`cannot copy the data of revision ${fromRev} of snap "${name}" onto itself`);
    const pairs: Array<[string, string]> = [[from.data, to.data], [from.userData, to.userData]];
    let stamp = Date.now();
    while (pairs.some(([, dst]) => exists(asideName(dst, stamp)))) stamp += 1;
    let movedAny = false;
    const done: Array<{ dst: string; aside: string | null; wasEmptyDir: boolean }> = [];
    let standby: StandbyUse | undefined;
    try {
      for (const [src, dst] of pairs) {
        if (!exists(src)) {
          this.ensureDataDirs(to);
          continue;
        }
        let aside: string | null = null;
        const wasEmptyDir = isEmptyDir(dst);
        if (wasEmptyDir) {
          fs.rmdirSync(dst);
        } else if (exists(dst)) {
          aside = asideName(dst, stamp);
          fs.renameSync(dst, aside);
          fsyncDir(path.dirname(dst));
          movedAny = true;
        }
        done.push({ dst, aside, wasEmptyDir });
        if (src === from.data) {
          const used = await takeStandby(src, fromRev, dst, { flushDir: opts.batch ? (d) => opts.batch!.add(d) : undefined, say: opts.say });
          if (used) {
            standby = used;
            continue;
          }
        }
        const stats = await copyTree(src, dst, { subvolume: true, sync: !opts.batch });
        if (opts.batch) {
          // Flushed with the caller's batch: the copy (a btrfs snapshot is on
          // disk once made) and its rename.
          if (stats.method !== 'snapshot') opts.batch.addTree(dst);
          opts.batch.add(path.dirname(dst));
        }
      }
    } catch (err) {
      for (const d of done.reverse()) {
        removeTree(d.dst);
        if (d.aside) restoreAside(d.aside, d.dst);
        else if (d.wasEmptyDir && !exists(d.dst)) fs.mkdirSync(d.dst, { mode: 0o755 });
      }
      throw err;
    }
    return { ...(movedAny ? { movedAside: asideName(to.data, stamp) } : {}), ...(standby ? { standby } : {}) };
  }

  /** Removes $SNAP_DATA and root's $SNAP_USER_DATA of `rev` (not their moved-aside copies). */
  removeData(name: string, rev: string): void {
    const p = this.paths(name, rev);
    for (const dir of [p.data, p.userData]) {
      removeTree(dir);
      if (exists(path.dirname(dir))) fsyncDir(path.dirname(dir));
    }
  }

  private asidePair(name: string, rev: string, movedAside: string): { dir: string; aside: string }[] {
    const p = this.paths(name, rev);
    const base = path.basename(movedAside);
    if (path.resolve(movedAside) !== path.join(path.dirname(p.data), base) || !new RegExp(`^${rev}\\.snapproc-aside-\\d+$`).test(base)) {
      throw usageError(`"${movedAside}" is not a moved-aside data directory of revision ${rev} of snap "${name}"`);
    }
    return [
      { dir: p.data, aside: path.join(path.dirname(p.data), base) },
      { dir: p.userData, aside: path.join(path.dirname(p.userData), base) },
    ];
  }

  /** Puts the data that copyData moved aside back in place of whatever is at `rev`'s data now. */
  restoreData(name: string, rev: string, movedAside: string): void {
    for (const { dir, aside } of this.asidePair(name, rev, movedAside)) if (exists(aside)) restoreAside(aside, dir);
  }

  /** Deletes what copyData moved aside, once the refresh that moved it is done (renamed to the trash at once: see sweepTrash). */
  discardMovedAside(name: string, rev: string, movedAside: string): void {
    for (const { aside } of this.asidePair(name, rev, movedAside)) this.toTrash(aside, rev);
  }

  // ------------------------------------------------------------ removal

  /** A revision that is current cannot be removed or retired. */
  private refuseCurrent(name: string, rev: string): void {
    if (this.currentRevision(name) === rev) {
      throw new SnapprocError('ERR_SNAPPROC_BUSY', `cannot remove revision ${rev} of snap "${name}": it is the current revision`);
    }
  }

  /**
   * Drops a revision from the record, first of all: a crash then leaves
   * unlisted files (harmless, numbering skips them), never a listed revision
   * without files.
   */
  private unlistRevision(name: string, rev: string, batch?: FlushQueue, current?: string): void {
    const file = this.load();
    const rec = file.snaps[name];
    if (rec && rec.revisions.some((r) => r.revision === rev)) {
      rec.revisions = rec.revisions.filter((r) => r.revision !== rev);
      if (rec.current === rev) rec.current = null;
      if (current !== undefined && rec.revisions.some((r) => r.revision === current)) rec.current = current;
      this.save(file, { batch });
    }
  }

  /**
   * Removes one revision: its files, data, root's user data, anything moved
   * aside for it, and its record. Refuses the current revision.
   */
  removeRevision(name: string, rev: string): void {
    const p = this.paths(name, rev);
    this.refuseCurrent(name, rev);
    this.unlistRevision(name, rev);
    for (const dir of [path.dirname(p.snap), path.dirname(p.data), path.dirname(p.userData)]) {
      let changed = false;
      for (const entry of readdirOrEmpty(dir)) {
        if (entry === rev || entry.startsWith(`${rev}.snapproc-aside-`) || entry.startsWith(`.${rev}.`)) {
          removeTree(path.join(dir, entry));
          changed = true;
        }
      }
      if (changed) fsyncDir(dir);
    }
  }

  /**
   * Retires one revision as removeRevision removes it (the record first, then
   * the files), except that its files (snap, data, root's user data, what was
   * moved aside for it) are only renamed to hidden trash names
   * (`.REV.trash-HEX`) next to where they were: deleting gigabytes is left to
   * sweepTrash, off the caller's path. A crash before the sweep leaves trash
   * that the next sweep deletes; the revision number stays used. `batch`:
   * the record's rename and the renames to the trash are flushed there
   * (the record's new content is flushed before its rename in any case).
   * `current`: also records that revision as last linked (see recordCurrent),
   * in the same write.
   */
  retireRevision(name: string, rev: string, opts: { batch?: FlushQueue; current?: string } = {}): void {
    const p = this.paths(name, rev);
    this.refuseCurrent(name, rev);
    this.unlistRevision(name, rev, opts.batch, opts.current);
    for (const dir of [path.dirname(p.snap), path.dirname(p.data), path.dirname(p.userData)]) {
      for (const entry of readdirOrEmpty(dir)) {
        if (entry === rev || entry.startsWith(`${rev}.snapproc-aside-`) || (entry.startsWith(`.${rev}.`) && !isTrashName(entry))) {
          this.toTrash(path.join(dir, entry), rev);
          opts.batch?.add(dir);
        }
      }
    }
  }

  /**
   * The revisions that have files under R (the snap's tree, its data, root's
   * user data) but no record: what a crash between unlistRevision and the
   * renames that follow it left. A refresh's prune retires them too.
   */
  unlistedRevisions(name: string): string[] {
    checkInstance(name);
    const listed = new Set((this.view().snaps[name]?.revisions ?? []).map((r) => r.revision));
    const found = new Set<string>();
    for (const dir of this.revisionParents(name)) {
      for (const entry of readdirOrEmpty(dir)) if (REVISION.test(entry) && !listed.has(entry)) found.add(entry);
    }
    return [...found];
  }

  /** The directories a snap's revisions are entries of: its trees, its data, root's user data. */
  private revisionParents(name: string): string[] {
    return [path.join(this.root, 'snap', name), path.join(this.root, 'var', 'snap', name), path.join(this.root, 'root', 'snap', name)];
  }

  private toTrash(p: string, rev: string): void {
    try {
      fs.renameSync(p, path.join(path.dirname(p), `.${rev}.trash-${randomBytes(4).toString('hex')}`));
    } catch (err) {
      if (!hasErrno(err, 'ENOENT')) throw err;
    }
  }

  /**
   * Deletes the trash of one snap (or of every snap): what retireRevision
   * and discardMovedAside renamed, and what a crash left of it. Resolves with
   * the number of trees deleted; runs on libuv's threads, not the caller's path.
   */
  async sweepTrash(name?: string): Promise<number> {
    // And the retired revisions' launch files (../snap/launch-files.ts retireLaunchDir).
    const parents = [path.join(this.root, 'snap'), path.join(this.root, 'var', 'snap'), path.join(this.root, 'root', 'snap'), path.join(this.root, 'state', 'launch')];
    let n = 0;
    for (const parent of parents) {
      const snaps = name === undefined ? readdirOrEmpty(parent) : [name];
      for (const snap of snaps) {
        const dir = path.join(parent, snap);
        for (const entry of readdirOrEmpty(dir)) {
          if (!isTrashName(entry)) continue;
          await fs.promises.rm(path.join(dir, entry), { recursive: true, force: true }).then(() => n++, () => undefined);
        }
      }
    }
    return n;
  }

  /**
   * Removes the oldest revisions so that at most `retain` are left, counting
   * the current one, which is always kept. Returns the removed revisions.
   */
  prune(name: string, retain = 2): string[] {
    if (!Number.isInteger(retain) || retain < 1) throw usageError(`retain must be a whole number of at least 1, got ${retain}`);
    const snap = this.get(name);
    if (!snap) return [];
    const keep = new Set<string>();
    if (snap.current) keep.add(snap.current);
    for (let i = snap.revisions.length - 1; i >= 0 && keep.size < retain; i--) keep.add(snap.revisions[i].revision);
    const drop = snap.revisions.map((r) => r.revision).filter((r) => !keep.has(r));
    for (const rev of drop) this.removeRevision(name, rev);
    return drop;
  }

  /**
   * Removes a snap: `current` links, every revision, its data and its record
   * (the revision numbering is kept). `purge` also removes $SNAP_COMMON and
   * root's $SNAP_USER_COMMON, which are kept otherwise.
   */
  removeSnap(name: string, opts: { purge?: boolean } = {}): void {
    checkInstance(name);
    this.unlinkCurrent(name);
    const file = this.load();
    if (file.snaps[name]) {
      delete file.snaps[name];
      this.save(file);
    }
    removeTree(path.join(this.root, 'snap', name));
    for (const dir of [path.join(this.root, 'var', 'snap', name), path.join(this.root, 'root', 'snap', name)]) {
      if (opts.purge) {
        removeTree(dir);
      } else {
        for (const entry of readdirOrEmpty(dir)) if (entry !== 'common') removeTree(path.join(dir, entry));
        rmdirIfEmpty(dir);
      }
    }
    for (const parent of ['snap', 'var/snap', 'root/snap']) {
      const dir = path.join(this.root, parent);
      if (exists(dir)) fsyncDir(dir);
    }
  }
}
