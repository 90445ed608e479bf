// restart-policy.ts: whether a service that exited is started again
// (restart-condition, as systemd's Restart= reads it) and the start limit
// that turns a crash loop into a failed service instead of a busy loop.
import type { RestartCondition } from '../snap/snap-yaml';

export interface ExitStatus {
  code: number | null;
  signal: string | null;
}

// systemd counts these signals as a clean exit for a service.
const CLEAN_SIGNALS = new Set(['SIGHUP', 'SIGINT', 'SIGTERM', 'SIGPIPE']);

/** A clean exit: status 0 or one of `successCodes` (success-exit-status), or a signal systemd counts as clean. */
export function isCleanExit(s: ExitStatus, successCodes: readonly number[] = []): boolean {
  return s.signal === null ? s.code === 0 || (s.code !== null && successCodes.includes(s.code)) : CLEAN_SIGNALS.has(s.signal);
}

/**
 * Whether `condition` restarts a service that exited with `status`
 * (systemd's Restart= table). `watchdog`: it was killed because it missed its
 * watchdog deadline, which restarts on-failure, on-abnormal, on-watchdog and always.
 */
export function shouldRestart(condition: RestartCondition, status: ExitStatus, successCodes: readonly number[] = [], watchdog = false): boolean {
  if (watchdog) return condition === 'always' || condition === 'on-failure' || condition === 'on-abnormal' || condition === 'on-watchdog';
  const clean = isCleanExit(status, successCodes);
  const uncleanSignal = status.signal !== null && !clean;
  switch (condition) {
    case 'never':
      return false;
    case 'always':
      return true;
    case 'on-success':
      return clean;
    case 'on-failure':
      return !clean;
    case 'on-abnormal':
      return uncleanSignal;
    case 'on-abort':
      // systemd: any unclean signal (SIGKILL included); unlike on-abnormal, not a watchdog timeout.
      return uncleanSignal;
    case 'on-watchdog':
      return false; // only a watchdog timeout (above)
  }
}

/** systemd's default start limit: at most `burst` starts within `intervalMs`. */
export class StartLimit {
  private starts: number[] = [];

  constructor(readonly burst = 5, readonly intervalMs = 10_000) {}

  /** Records a start; false when it is one too many within the interval. */
  allow(now = Date.now()): boolean {
    this.starts = this.starts.filter((t) => now - t < this.intervalMs);
    if (this.starts.length >= this.burst) return false;
    this.starts.push(now);
    return true;
  }

  reset(): void {
    this.starts = [];
  }
}

export function describeExit(s: ExitStatus): string {
  return s.signal ? `killed by ${s.signal}` : `exited with status ${s.code}`;
}
