// data-copy.ts: the faithful copy of a data tree that a refresh makes of
// $SNAP_DATA (old revision -> new revision), and the "move aside" that keeps
// an existing target recoverable until the refresh is done or undone.
//
// The copy is made in one native call (native/copy.cc), on a thread of its
// own, with no child process on the refresh's path. It keeps what GNU cp's
// `cp -a --preserve=xattr` keeps (what snapd runs for this copy): owners,
// modes (setuid, setgid, sticky), nanosecond atime/mtime (directories' after
// their contents), symlinks as links (never followed, dangling ones too),
// hard links within the tree, FIFOs, sockets and device nodes, sparse files'
// holes, extended attributes of every namespace the caller may read
// (user.*, trusted.*, security.* such as file capabilities), and any byte
// string as a name. Failing to keep any of them fails the copy: a copy that
// silently lost a capability or a label is not faithful. And it costs what
// the file system makes it cost:
//   - btrfs: a revision's $SNAP_DATA is a subvolume (made so by the first
//     copy, or by makeDataDir), and its copy is one writable snapshot;
//   - XFS with reflink, btrfs outside a subvolume, bcachefs: every regular
//     file is a clone (FICLONE), its extents shared until either side writes;
//   - elsewhere (ext4): copy_file_range of each data extent (holes stay holes).
// Either way the copy is independent: writing to one side leaves the other
// as it was.
//
// The copy is made under a hidden name next to the target
// (`.NAME.copying-HEX`), flushed to disk (each file with data and each
// directory fsynced, or one syncfs for a tree of many files; a snapshot is
// committed by the kernel), and renamed into place when complete; a failed
// copy removes it. The target therefore either is a complete copy or does
// not exist, also after a crash (which can leave only the hidden name behind).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { SnapprocError } from '../util/errors';
import { fsyncDir } from '../util/atomic-file';
import { COPY, native, type CopyStats } from '../kernel/native';

export const COPY_FAILED = 'ERR_SNAPPROC_COPY_FAILED';

export interface CopyOptions {
  /** On btrfs, make the copy a subvolume (so that the next copy of it is one snapshot): for $SNAP_DATA. */
  subvolume?: boolean;
  /** Never clone or snapshot (a full copy of every byte): for tests and benchmarks. */
  plain?: boolean;
  /** Keep extended attributes (default true; an install does not keep a snap's, so no file capability takes effect). */
  xattrs?: boolean;
  /** false: flush nothing (the caller flushes the tree and its rename, e.g. with fsyncTree, at once with its other writes). */
  sync?: boolean;
}

function exists(p: string): boolean {
  try {
    fs.lstatSync(p);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
}

/** True for the hidden names copyTree copies under before the rename. */
export function isCopyingName(base: string): boolean {
  return /^\..+\.copying-[0-9a-f]{8}$/.test(base);
}

/**
 * Copies the tree `src` to `dst`, which must not exist yet (its parent must).
 * On failure nothing is left at `dst` and a SnapprocError (code
 * ERR_SNAPPROC_COPY_FAILED) names both paths and what cp reported.
 * `xattrs: false` (a snap's files, whose file capabilities must not take
 * effect, as a nosuid mount ignores them) copies no extended attributes.
 */
export async function copyTree(src: string, dst: string, options: CopyOptions = {}): Promise<CopyStats> {
  const srcStat = fs.lstatSync(src); // ENOENT here is the caller's error, shaped by fs
  if (!srcStat.isDirectory()) {
    throw new SnapprocError(COPY_FAILED, `cannot copy ${src} to ${dst}: ${src} is not a directory`, { path: src });
  }
  if (exists(dst)) {
    throw new SnapprocError('EEXIST', `cannot copy ${src} to ${dst}: ${dst} already exists`, { path: dst, syscall: 'copy' });
  }
  // Written under a hidden name that is renamed to `dst` when complete, so
  // even a SIGKILL mid-copy never leaves a partial tree at `dst`.
  const partial = path.join(path.dirname(dst), `.${path.basename(dst)}.copying-${randomBytes(4).toString('hex')}`);
  const flags = (options.subvolume ? COPY.SUBVOLUME : 0) | (options.plain ? COPY.NO_CLONE | COPY.NO_SNAPSHOT : 0) | (options.xattrs === false ? COPY.NO_XATTRS | COPY.NO_SNAPSHOT : 0) | (options.sync === false ? COPY.NO_SYNC : 0);
  let stats: CopyStats;
  try {
    stats = await native.copyTree(src, partial, flags);
    fs.renameSync(partial, dst);
    if (options.sync !== false) fsyncDir(path.dirname(dst));
  } catch (err) {
    removeTree(partial);
    throw new SnapprocError(COPY_FAILED, `cannot copy ${src} to ${dst}: ${(err as Error).message}`, { path: src, cause: err });
  }
  return stats;
}

/** Removes a tree that may hold btrfs subvolumes (rmdir removes an empty subvolume as root). */
function removeTree(p: string): void {
  fs.rmSync(p, { recursive: true, force: true });
}

/**
 * Flushes the file system holding `p` (syncfs(2), off the main thread): cp
 * writes without fsync, and a copy must be on disk before it is renamed into
 * place and recorded, or a crash could leave a complete-looking tree of
 * empty files.
 */
export async function syncFilesystem(p: string): Promise<void> {
  try {
    await native.syncfs(p);
  } catch (err) {
    throw new SnapprocError('EIO', `cannot flush the file system of ${p}: ${(err as Error).message}`, { path: p, syscall: 'syncfs', cause: err });
  }
}

/** The name `dir` is moved aside to: `DIR.snapproc-aside-<ms since epoch>`. */
export function asideName(dir: string, now = Date.now()): string {
  return `${dir}.snapproc-aside-${now}`;
}

/** True when `base` is a name made by asideName (for listings that must skip them). */
export function isAsideName(base: string): boolean {
  return /\.snapproc-aside-\d+$/.test(base);
}

/**
 * Renames an existing `dir` to an unused aside name next to it and returns
 * that name; null when `dir` does not exist (nothing to keep).
 */
export function moveAside(dir: string): string | null {
  if (!exists(dir)) return null;
  let now = Date.now();
  while (exists(asideName(dir, now))) now += 1;
  const aside = asideName(dir, now);
  fs.renameSync(dir, aside);
  fsyncDir(path.dirname(dir));
  return aside;
}

/** Puts a moved-aside directory back at `dir`, replacing whatever is at `dir` now. */
export function restoreAside(aside: string, dir: string): void {
  if (!exists(aside)) {
    throw new SnapprocError('ENOENT', `cannot restore ${dir}: the copy moved aside to ${aside} is gone`, { path: aside, syscall: 'rename' });
  }
  fs.rmSync(dir, { recursive: true, force: true });
  fs.renameSync(aside, dir);
  fsyncDir(path.dirname(dir));
}
