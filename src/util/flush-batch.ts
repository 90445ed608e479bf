// flush-batch.ts: a refresh writes a dozen small things under R (the new
// revision's tree, its launch files, snaps.json's new name, the `current`
// links, the journal); flushed one after the other each costs a journal
// commit of the file system (1-5 ms each on a shared disk under load, ~20 in
// a row before). Writes whose durability may wait for a later point (the
// change's next flushed journal boundary, see ../supervisor/change-runner.ts)
// are queued here instead, and flushed all at once, by concurrent fsyncs
// that a journaling file system commits together: one round instead of one
// per write. What is queued is only made durable, never written: every write
// has happened (and survives a SIGKILL of the writer) before it is queued.
import * as fs from 'node:fs';
import { fsyncTree, type DeferredFlush, type FlushQueue } from './atomic-file';

/**
 * fsync of one path (a file or a directory; a symlink is not followed); a
 * path gone meanwhile (an undo removed it) is skipped. Opened and closed on
 * the calling thread (microseconds), so that only the fsync takes a trip
 * through libuv's thread pool: one trip per path instead of three.
 */
function fsyncPath(p: string): Promise<void> {
  let fd: number;
  try {
    fd = fs.openSync(p, fs.constants.O_RDONLY | fs.constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'ENOENT' || code === 'ENOTDIR') return Promise.resolve();
    return Promise.reject(err);
  }
  return new Promise<void>((resolve, reject) => {
    fs.fsync(fd, (err) => {
      fs.closeSync(fd);
      if (err) reject(err);
      else resolve();
    });
  });
}

export class FlushBatch implements FlushQueue {
  private paths = new Set<string>();
  private trees = new Set<string>();
  private writers = new Set<DeferredFlush>();

  /** `syncfs` flushes a whole file system (for a queued tree of many entries, see fsyncTree). */
  constructor(private readonly syncfs: (p: string) => Promise<unknown>) {}

  /** Queues files or directories (a directory's entries: after a create, rename or unlink in it). */
  add(...paths: string[]): void {
    for (const p of paths) this.paths.add(p);
  }

  /** Queues a tree just written: every regular file and directory in it. */
  addTree(dir: string): void {
    this.trees.add(dir);
  }

  /** Queues a record written in place (a SlotFile): its sync() flushes its last write, and the slots' names when never flushed. */
  addWriter(writer: DeferredFlush): void {
    this.writers.add(writer);
  }

  get empty(): boolean {
    return this.paths.size === 0 && this.trees.size === 0 && this.writers.size === 0;
  }

  /** Flushes everything queued so far, side by side; what is queued meanwhile waits for the next flush. */
  async flush(): Promise<void> {
    if (this.empty) return;
    const paths = [...this.paths];
    const trees = [...this.trees];
    const writers = [...this.writers];
    this.paths.clear();
    this.trees.clear();
    this.writers.clear();
    await Promise.all([
      ...paths.map(fsyncPath),
      ...writers.map((w) => w.sync()),
      ...trees.map((t) => fsyncTree(t, this.syncfs).catch((err) => {
        if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      })),
    ]);
  }
}
