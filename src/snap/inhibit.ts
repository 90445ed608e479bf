// inhibit.ts: "this snap is being refreshed", as snapd's inhibit lock says it
// to `snap run`: while a refresh or revert of a snap runs, the supervisor
// keeps R/run/inhibit/NAME (its PID and what it does), and `snapproc run`
// waits until it is gone instead of starting an app of a revision that is
// about to be unlinked. A file whose supervisor has died does not inhibit.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { writeFileAtomic } from '../util/atomic-file';

export function inhibitFile(root: string, instance: string): string {
  return path.join(root, 'run', 'inhibit', instance);
}

export function inhibit(root: string, instance: string, what: string): void {
  const file = inhibitFile(root, instance);
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o755 });
  writeFileAtomic(file, JSON.stringify({ pid: process.pid, what }) + '\n', 0o644, { durable: false });
}

export function release(root: string, instance: string): void {
  fs.rmSync(inhibitFile(root, instance), { force: true });
}

/** What inhibits the snap now (`refresh`), or null; a lock left by a dead supervisor does not count. */
export function inhibitedBy(root: string, instance: string): string | null {
  let doc: { pid?: number; what?: string };
  try {
    doc = JSON.parse(fs.readFileSync(inhibitFile(root, instance), 'utf8'));
  } catch {
    return null;
  }
  if (typeof doc.pid !== 'number' || doc.pid <= 0) return null;
  try {
    process.kill(doc.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return null;
  }
  return doc.what ?? 'change';
}

/** Resolves once nothing inhibits the snap; `onWait` is told once, when it has to wait. */
export async function waitUninhibited(root: string, instance: string, onWait: (what: string) => void): Promise<void> {
  const what = inhibitedBy(root, instance);
  if (what === null) return;
  onWait(what);
  const dir = path.dirname(inhibitFile(root, instance));
  await new Promise<void>((resolve) => {
    let watcher: fs.FSWatcher | null = null;
    const check = () => {
      if (inhibitedBy(root, instance) !== null) return;
      clearInterval(timer);
      watcher?.close();
      resolve();
    };
    try {
      watcher = fs.watch(dir, check);
    } catch {
      watcher = null;
    }
    // Also notices a supervisor that died holding the lock.
    const timer = setInterval(check, 1000);
    check();
  });
}
