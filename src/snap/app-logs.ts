// app-logs.ts: per-app log files (R/log/NAME/APP.log). Services write straight
// into them through an O_APPEND descriptor, so their output does not depend
// on the supervisor being alive (a supervisor restart must not cut a service
// off from its stdout). Rotation by size is copy-and-truncate, triggered by
// inotify on the file (no polling while a service is quiet).
import * as fs from 'node:fs';
import * as path from 'node:path';

export const DEFAULT_LOG_MAX_BYTES = 1 << 20;
export const DEFAULT_LOG_KEEP = 3;

export function logDir(root: string, snap: string): string {
  return path.join(root, 'log', snap);
}

export function appLogFile(root: string, snap: string, app: string): string {
  return path.join(logDir(root, snap), `${app}.log`);
}

export function hookLogFile(root: string, snap: string): string {
  return path.join(logDir(root, snap), 'hooks.log');
}

/** Opens a log file for appending (creating its directory); the caller closes the fd. */
export function openLog(file: string): number {
  fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o750 });
  return fs.openSync(file, 'a', 0o640);
}

/** Appends one line written by snapproc itself (not the service) to a log. */
export function logLine(file: string, text: string): void {
  const line = `[snapproc ${new Date().toISOString()}] ${text}\n`;
  try {
    try {
      fs.appendFileSync(file, line, { mode: 0o640 });
    } catch (err) {
      // The directory is made only when it is missing: a stop of 1000 services logs 1000 lines.
      if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
      fs.mkdirSync(path.dirname(file), { recursive: true, mode: 0o750 });
      fs.appendFileSync(file, line, { mode: 0o640 });
    }
  } catch {
    // logging must never take the supervisor down
  }
}

/** Rotates `file` when larger than `maxBytes`: file.N-1 -> file.N, ..., copy file -> file.1, truncate file. */
export function rotateIfLarge(file: string, maxBytes = DEFAULT_LOG_MAX_BYTES, keep = DEFAULT_LOG_KEEP): boolean {
  let size: number;
  try {
    size = fs.statSync(file).size;
  } catch {
    return false;
  }
  if (size <= maxBytes) return false;
  for (let i = keep - 1; i >= 1; i--) {
    try {
      fs.renameSync(`${file}.${i}`, `${file}.${i + 1}`);
    } catch {
      // not there yet
    }
  }
  fs.copyFileSync(file, `${file}.1`);
  // Writers hold O_APPEND descriptors: after the truncate they go on at the new end.
  fs.truncateSync(file, 0);
  return true;
}

/** Watches a log file and rotates it when it grows past the limit. */
export class LogRotator {
  private watchers = new Map<string, fs.FSWatcher>();

  constructor(private maxBytes = DEFAULT_LOG_MAX_BYTES, private keep = DEFAULT_LOG_KEEP) {}

  watch(file: string): void {
    if (this.watchers.has(file)) return;
    // inotify needs the file: create it (empty) for a service that has not run yet.
    fs.closeSync(openLog(file));
    rotateIfLarge(file, this.maxBytes, this.keep);
    try {
      const w = fs.watch(file, { persistent: false }, () => rotateIfLarge(file, this.maxBytes, this.keep));
      w.on('error', () => this.unwatch(file));
      this.watchers.set(file, w);
    } catch {
      // file vanished; the next start watches again
    }
  }

  unwatch(file: string): void {
    this.watchers.get(file)?.close();
    this.watchers.delete(file);
  }

  close(): void {
    for (const w of this.watchers.values()) w.close();
    this.watchers.clear();
  }
}
