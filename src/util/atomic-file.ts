// atomic-file.ts: replacing a file or a symlink so that a crash or a
// concurrent reader never sees a half state. snapproc's records (snaps.json,
// journals, launch files) and the `current` links are read by other processes
// while they change and must survive a power cut: the new content goes under
// a temporary name in the same directory, is fsynced, rename(2)d over the old
// name (atomic within one file system), and the directory is fsynced so the
// rename itself is durable. A crash before the rename leaves the old content
// and a stray `.NAME.tmp-*` file that readers never look at.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';

/**
 * Where a durable write may queue what it would flush itself (the directory
 * of a rename), to be flushed with other writes at once: a FlushBatch
 * (./flush-batch.ts).
 */
export interface FlushQueue {
  add(...paths: string[]): void;
  addTree(dir: string): void;
  /** A writer whose last write is to be flushed by its own sync() (a SlotFile, ./slot-file.ts, written with `durable: false`). */
  addWriter(writer: DeferredFlush): void;
}

/** What flushes its own last write, off the main thread (SlotFile). */
export interface DeferredFlush {
  sync(): Promise<void>;
}

/** A name in the same directory as `file`, unique to this call: `.BASE.tmp-PID-HEX`. */
export function tempSibling(file: string): string {
  return path.join(path.dirname(file), `.${path.basename(file)}.tmp-${process.pid}-${randomBytes(4).toString('hex')}`);
}

/** True for the temporary names tempSibling makes (for cleanup and for readers that list directories). */
export function isTempSibling(base: string): boolean {
  return /^\..+\.tmp-\d+-[0-9a-f]{8}$/.test(base);
}

/** Makes the directory entries of `dir` durable (after a create, rename or unlink in it). */
export function fsyncDir(dir: string): void {
  const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    fs.fsyncSync(fd);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Makes the entries of several directories durable at once: the fsyncs run
 * side by side (libuv's threads), and a journaling file system commits them
 * together (one ext4 journal commit for all, ~4x less than one after the
 * other).
 */
export async function fsyncDirs(dirs: Iterable<string>): Promise<void> {
  await Promise.all([...new Set(dirs)].map((dir) => fsyncFd(fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY))));
}

/**
 * Flushes a tree just written (every regular file and directory in it, the
 * top too) with concurrent fsyncs, which a journaling file system commits
 * together; a tree of more than `maxEntries` gets one syncfs(2) instead
 * (`syncfs`, given by the caller: it runs off the main thread in the addon).
 * Symbolic links are not opened (that would follow them); the fsync of
 * their directory makes them durable.
 */
export async function fsyncTree(dir: string, syncfs: (p: string) => Promise<unknown>, maxEntries = 256): Promise<void> {
  const files: string[] = [dir];
  const stack = [dir];
  while (stack.length) {
    const d = stack.pop()!;
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      if (!e.isDirectory() && !e.isFile()) continue;
      const p = path.join(d, e.name);
      files.push(p);
      if (e.isDirectory()) stack.push(p);
      if (files.length > maxEntries) {
        await syncfs(dir);
        return;
      }
    }
  }
  // Opened and closed here (microseconds), fsynced on libuv's threads: one
  // trip through the thread pool per entry instead of three.
  await Promise.all(files.map((p) => fsyncFd(fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW))));
}

/** fsync(2) of `fd` on libuv's thread pool; closes it either way. */
function fsyncFd(fd: number): Promise<void> {
  return new Promise<void>((resolve, reject) => {
    fs.fsync(fd, (err) => {
      fs.closeSync(fd);
      if (err) reject(err);
      else resolve();
    });
  });
}

/**
 * Replaces `file` with `data` atomically and durably. `mode` is applied
 * exactly (not filtered by the umask); default 0644. With `durable: false`
 * the write is still atomic (a reader, or a process killed mid-write, never
 * sees half a file) but not flushed: for records that a power loss makes
 * moot anyway, such as which processes are running. With `batch`, a durable
 * write flushes the new file before the rename as always, and queues the
 * flush of the rename (its directory) in the batch.
 */
export function writeFileAtomic(file: string, data: string | Uint8Array, mode = 0o644, options: { durable?: boolean; batch?: FlushQueue } = {}): void {
  const durable = options.durable ?? true;
  const temp = tempSibling(file);
  let fd: number | null = fs.openSync(temp, fs.constants.O_WRONLY | fs.constants.O_CREAT | fs.constants.O_EXCL, mode);
  try {
    fs.fchmodSync(fd, mode);
    fs.writeFileSync(fd, data);
    if (durable) fs.fsyncSync(fd);
    fs.closeSync(fd);
    fd = null;
    fs.renameSync(temp, file);
  } catch (err) {
    if (fd !== null) fs.closeSync(fd);
    fs.rmSync(temp, { force: true });
    throw err;
  }
  if (durable) {
    // The new content is flushed before the rename in any case (a power cut
    // must never find the name holding an unflushed file); the rename itself
    // may wait for the caller's batch.
    if (options.batch) options.batch.add(path.dirname(file));
    else fsyncDir(path.dirname(file));
  }
}

/**
 * Points the symlink `linkPath` at `target` (written as given: pass a
 * relative target for links that must survive the tree being moved). The new
 * link is made under a temporary name and renamed over the old one, so a
 * concurrent reader sees either the old target or the new one, never a
 * missing link. Fails (EISDIR) if `linkPath` is a real directory. The
 * rename is flushed (its directory fsynced) before this returns, or with
 * `batch` queued there for the caller to flush with its other writes.
 */
export function replaceSymlinkAtomic(linkPath: string, target: string, options: { batch?: FlushQueue } = {}): void {
  const temp = tempSibling(linkPath);
  fs.symlinkSync(target, temp);
  try {
    fs.renameSync(temp, linkPath);
  } catch (err) {
    fs.rmSync(temp, { force: true });
    throw err;
  }
  if (options.batch) options.batch.add(path.dirname(linkPath));
  else fsyncDir(path.dirname(linkPath));
}

/**
 * Removes the symlink `linkPath`, durably unless `durable: false` (for a
 * caller whose next durable step supersedes the removal anyway); false when
 * there was none. Never removes a directory.
 */
export function removeSymlink(linkPath: string, options: { durable?: boolean } = {}): boolean {
  try {
    fs.unlinkSync(linkPath);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return false;
    throw err;
  }
  if (options.durable ?? true) fsyncDir(path.dirname(linkPath));
  return true;
}
