// data-copy.ts: the faithful copy of a data tree that a refresh makes of
// $SNAP_DATA (old revision -> new revision), and the "move aside" that keeps
// an existing target recoverable until the refresh is done or undone.
//
// The copy is GNU cp's `cp -a --preserve=xattr --no-target-directory`, run
// with execFile (no shell), rather than a walk in JavaScript, because:
//   - it keeps everything a service may rely on: owners, modes (setuid,
//     setgid, sticky), atime/mtime (directories' after their contents),
//     symlinks as links (never followed, dangling ones too), hard links
//     within the tree, FIFOs and device nodes, sparse files, and extended
//     attributes of every namespace the caller may read (user.*, trusted.*,
//     security.* such as file capabilities) — Node has no xattr API at all;
//   - it handles any byte string as a name (newlines, leading dashes,
//     non-UTF-8), which JavaScript strings cannot round-trip;
//   - it is what snapd itself runs for this copy (`cp -av`), and coreutils is
//     present wherever snapproc runs.
// `-a` alone makes a failure to keep owners, modes or times fatal but only
// warns when xattrs cannot be kept; the explicit `--preserve=xattr` makes
// that fatal too: a copy that silently lost a capability or a label is not
// faithful. (Source and target are in the same file system, so a tree whose
// xattrs could be read can be written back.)
//
// The copy is made under a hidden name next to the target
// (`.NAME.copying-HEX`), flushed to disk (syncfs), and renamed into place
// when complete; a failed copy
// removes it. The target therefore either is a complete copy or does not
// exist, also after a crash (which can leave only the hidden name behind).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { SnapprocError } from '../util/errors';
import { fsyncDir } from '../util/atomic-file';
import { native } from '../kernel/native';

export const COPY_FAILED = 'ERR_SNAPPROC_COPY_FAILED';

/** GNU cp's arguments for a faithful copy of the tree `src` to the new path `dst`. */
export function copyTreeArgs(src: string, dst: string, opts: { xattrs?: boolean } = {}): string[] {
  return ['-a', opts.xattrs === false ? '--no-preserve=xattr' : '--preserve=xattr', '--no-target-directory', '--', src, dst];
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
export async function copyTree(src: string, dst: string, opts: { xattrs?: boolean } = {}): Promise<void> {
  const srcStat = fs.lstatSync(src); // ENOENT here is the caller's error, shaped by fs
  if (!srcStat.isDirectory()) {
    throw new SnapprocError(COPY_FAILED, `cannot copy ${src} to ${dst}: ${src} is not a directory`, { path: src });
  }
  if (exists(dst)) {
    throw new SnapprocError('EEXIST', `cannot copy ${src} to ${dst}: ${dst} already exists`, { path: dst, syscall: 'copy' });
  }
  // cp writes under a hidden name that is renamed to `dst` when complete, so
  // even a SIGKILL mid-copy never leaves a partial tree at `dst`.
  const partial = path.join(path.dirname(dst), `.${path.basename(dst)}.copying-${randomBytes(4).toString('hex')}`);
  const failure = await new Promise<string | null>((resolve) => {
    execFile('cp', copyTreeArgs(src, partial, opts), { maxBuffer: 16 * 1024 * 1024 }, (err, _stdout, stderr) => {
      if (!err) return resolve(null);
      const e = err as NodeJS.ErrnoException & { signal?: string | null; code?: string | number | null };
      if (e.code === 'ENOENT') return resolve('cp (GNU coreutils) is not installed');
      const said = String(stderr).trim().split('\n').filter(Boolean);
      const first = said[0] ?? (e.signal ? `cp was killed by ${e.signal}` : `cp exited with status ${String(e.code)}`);
      resolve(said.length > 1 ? `${first} (and ${said.length - 1} more problem${said.length > 2 ? 's' : ''})` : first);
    });
  });
  if (failure === null) {
    try {
      await syncFilesystem(partial);
      fs.renameSync(partial, dst);
      fsyncDir(path.dirname(dst));
      return;
    } catch (err) {
      fs.rmSync(partial, { recursive: true, force: true });
      throw new SnapprocError(COPY_FAILED, `cannot copy ${src} to ${dst}: ${(err as Error).message}`, { path: src, cause: err });
    }
  }
  fs.rmSync(partial, { recursive: true, force: true });
  throw new SnapprocError(COPY_FAILED, `cannot copy ${src} to ${dst}: ${failure}`, { path: src });
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
