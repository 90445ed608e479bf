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

/**
 * How long a log's watch rests after it fired. A service that writes without
 * pause (a shell loop echoing) made inotify fire on every write: ten such
 * services kept the daemon at ~0.5 s of CPU per second in stat calls and
 * 1 MiB copies, and a `start --all` beside them did not finish in 20 s.
 * Now a change is looked at once, then the watch is closed for this long
 * and the size looked at again when it ends: at most ~2 checks a second per
 * log, whatever the service writes. A log may outgrow the limit by what is
 * written in one rest, as with logrotate's periodic runs.
 */
export const LOG_CHECK_REST_MS = 1000;

/** Watches a log file and rotates it when it grows past the limit. */
export class LogRotator {
  private watchers = new Map<string, fs.FSWatcher>();
  /** Logs whose watch rests (LOG_CHECK_REST_MS), with the timer that looks again. */
  private resting = new Map<string, NodeJS.Timeout>();

  constructor(private maxBytes = DEFAULT_LOG_MAX_BYTES, private keep = DEFAULT_LOG_KEEP, private restMs = LOG_CHECK_REST_MS) {}

  watch(file: string): void {
    if (this.watchers.has(file) || this.resting.has(file)) return;
    // inotify needs the file: create it (empty) for a service that has not run yet.
    fs.closeSync(openLog(file));
    rotateIfLarge(file, this.maxBytes, this.keep);
    this.arm(file);
  }

  private arm(file: string): void {
    try {
      const w = fs.watch(file, { persistent: false }, () => this.changed(file));
      w.on('error', () => this.unwatch(file));
      this.watchers.set(file, w);
    } catch {
      // file vanished; the next start watches again
    }
  }

  private changed(file: string): void {
    const w = this.watchers.get(file);
    if (!w) return;
    w.close();
    this.watchers.delete(file);
    try {
      rotateIfLarge(file, this.maxBytes, this.keep);
    } catch {
      // a full disk or a vanished file: looked at again after the rest
    }
    const timer = setTimeout(() => {
      this.resting.delete(file);
      try {
        rotateIfLarge(file, this.maxBytes, this.keep);
      } catch {
        // as above
      }
      this.arm(file);
    }, this.restMs);
    timer.unref();
    this.resting.set(file, timer);
  }

  unwatch(file: string): void {
    this.watchers.get(file)?.close();
    this.watchers.delete(file);
    const timer = this.resting.get(file);
    if (timer) clearTimeout(timer);
    this.resting.delete(file);
  }

  close(): void {
    for (const file of [...this.watchers.keys(), ...this.resting.keys()]) this.unwatch(file);
  }
}
