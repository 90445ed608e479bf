// stop-batch.ts: the stops of many cgroups asked for at once (`stop --all`
// of 1000 services, a shutdown as PID 1) done as one batch, step by step
// over all of them: freeze every cgroup, then signal each frozen snapshot
// and thaw it, then wait for all of them to empty side by side (the addon's
// one watching thread waits, and writes cgroup.kill at each one's timeout).
// Each stop means exactly what stopCgroup (./stop.ts) does for one cgroup,
// with its own stop-mode and stop-timeout; what the batch does not handle
// the common way (a plain stop-mode, a cgroup frozen on purpose, a freeze
// that does not complete within QUICK_FREEZE_MS, a kernel without
// cgroup.kill) goes to stopCgroup itself. One cgroup after the other, each stop's freeze had to
// be announced before its signal went out, and the supervisor's one thread
// spent ~1.3 ms a service (1000 services: 1.5 s against supervisord's 0.7 s).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cgroupOfPid } from '../kernel/cgroupfs';
import { assertActionableCgroup, FREEZE_TIMEOUT_MS } from '../kernel/signal-guard';
import { native } from '../kernel/native';
import { DEFAULT_STOP_MODE, DEFAULT_STOP_TIMEOUT_MS, parseStopMode, stopCgroup, type StopOptions, type StopResult, stopModeSignal } from './stop';

interface Queued {
  dir: string;
  options: StopOptions;
  resolve: (r: StopResult) => void;
  reject: (e: unknown) => void;
}

/** How long the batch waits for a cgroup's freeze before it leaves that stop to stopCgroup. */
const QUICK_FREEZE_MS = 100;

let queue: Queued[] = [];
let scheduled = false;
/** Whether this kernel has cgroup.kill (5.14+): learned from the first cgroup, the same for all below the mount. */
let hasKill: boolean | undefined;

/**
 * Stops the processes of one app cgroup by stop-mode, as stopCgroup does;
 * the stops asked for within one turn of the event loop are done together.
 */
export function stopCgroupBatched(dir: string, options: StopOptions = {}): Promise<StopResult> {
  return new Promise<StopResult>((resolve, reject) => {
    queue.push({ dir, options, resolve, reject });
    if (scheduled) return;
    scheduled = true;
    setImmediate(runBatch);
  });
}

function runBatch(): void {
  const batch = queue;
  queue = [];
  scheduled = false;
  // The supervisor's own cgroup, read once for the batch: no cgroup it runs in is acted on.
  let own: string | null = null;
  try {
    own = cgroupOfPid('self');
  } catch {
    // read again by each stopCgroup below
  }
  const common: Array<{ q: Queued; events: string }> = [];
  for (const q of batch) {
    try {
      const events = batchable(q, own);
      if (events === null) stopCgroup(q.dir, q.options).then(q.resolve, q.reject);
      else common.push({ q, events });
    } catch (err) {
      q.reject(err);
    }
  }
  // Frozen all first: by the time the last freeze is written the first ones are done.
  const frozen: Array<{ q: Queued; started: number }> = [];
  for (const { q, events } of common) {
    const started = performance.now();
    if (/^populated 0$/m.test(events)) {
      q.resolve(emptyResult(q.options));
      continue;
    }
    try {
      native.writeFreeze(path.resolve(q.dir), true);
      frozen.push({ q, started });
    } catch {
      // Cannot freeze it (removed meanwhile, a kernel quirk): the one-cgroup stop says why.
      stopCgroup(q.dir, q.options).then(q.resolve, q.reject);
    }
  }
  for (const { q, started } of frozen) {
    const dir = path.resolve(q.dir);
    const timeoutMs = q.options.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
    const freezeTimeoutMs = q.options.freezeTimeoutMs ?? Math.min(FREEZE_TIMEOUT_MS, Math.max(20, Math.round(timeoutMs / 2)));
    let wait;
    try {
      // A short wait: a cgroup whose freeze takes longer (under load, or never: a member in a FUSE
      // wait) goes to stopCgroup, which gives its freeze the whole freeze timeout and says so.
      wait = native.waitEvent(dir, 'frozen', 1, Math.min(freezeTimeoutMs, QUICK_FREEZE_MS)).result;
    } catch (err) {
      thawQuietly(dir);
      q.reject(err);
      continue;
    }
    wait.then(
      (outcome) => {
        if (outcome !== 'done') {
          // Not frozen quickly: thawed, and stopped by stopCgroup in what is left of the stop-timeout, with the
          // freeze timeout this stop has (when that freeze does not complete either, it signals without it and says so).
          thawQuietly(dir);
          const left = Math.max(0, Math.round(timeoutMs - (performance.now() - started)));
          return stopCgroup(q.dir, { ...q.options, timeoutMs: left, freezeTimeoutMs: Math.min(freezeTimeoutMs, left) }).then((r) => ({ ...r, durationMs: performance.now() - started }));
        }
        return signalAndWait(q, dir, started, timeoutMs);
      },
      (err) => {
        thawQuietly(dir);
        throw err;
      },
    ).then(q.resolve, q.reject);
  }
}

/** cgroup.events of a stop the batch does the common way, or null for stopCgroup. Throws what stopCgroup would throw at once. */
function batchable(q: Queued, own: string | null): string | null {
  const { all } = stopModeSignal(parseStopMode(q.options.mode ?? DEFAULT_STOP_MODE));
  if (!all || q.options.killAfterTimeout === false || own === null) return null;
  assertActionableCgroup(q.dir, own);
  const dir = path.resolve(q.dir);
  hasKill ??= fs.existsSync(path.join(dir, 'cgroup.kill'));
  if (!hasKill) return null;
  const events = fs.readFileSync(path.join(dir, 'cgroup.events'), 'utf8');
  // Frozen on purpose: stopCgroup thaws it first (frozen processes cannot act on the signal).
  return /^frozen 1$/m.test(events) ? null : events;
}

function emptyResult(options: StopOptions): StopResult {
  const mode = options.mode ?? DEFAULT_STOP_MODE;
  return { mode, signal: stopModeSignal(mode).signal, durationMs: 0, target: 'cgroup', mainPid: null, signalled: 0, gone: 0, timedOut: false, isForcefullyTerminated: false, stopped: true };
}

/** One frozen cgroup: its members signalled in the frozen snapshot (with SIGCONT), thawed, and waited for up to its timeout, then cgroup.kill. */
async function signalAndWait(q: Queued, dir: string, started: number, timeoutMs: number): Promise<StopResult> {
  const mode = q.options.mode ?? DEFAULT_STOP_MODE;
  const { signal, number } = stopModeSignal(mode);
  const killTimeoutMs = q.options.killTimeoutMs ?? 10_000;
  let fan;
  try {
    // Frozen already (and seen so): the native fan-out reads and signals that snapshot and leaves it frozen.
    fan = native.signalFrozen(dir, number, true);
  } finally {
    // The thaw is written, not waited for: what the stop waits for is the cgroup to empty.
    thawQuietly(dir);
  }
  const left = Math.max(0, Math.round(timeoutMs - (performance.now() - started)));
  const outcome = await native.waitEmptyOrKill(dir, left, left + killTimeoutMs).result;
  const result: StopResult = { mode, signal, durationMs: 0, target: 'cgroup', mainPid: null, signalled: fan.signalled, gone: fan.gone, timedOut: false, isForcefullyTerminated: false, stopped: true };
  if (outcome !== 'done') {
    // cgroup.kill written at the timeout ('timeout': not empty within the kill timeout either).
    result.timedOut = true;
    result.isForcefullyTerminated = true;
    result.stopped = outcome === 'killed';
  }
  result.durationMs = performance.now() - started;
  return result;
}

function thawQuietly(dir: string): void {
  try {
    native.writeFreeze(dir, false);
  } catch {
    // removed meanwhile
  }
}
