// stop.ts: stopping a service the way its snap.yaml says (SPEC 4).
//  - `sigX`: SIGX to the main process only, wait up to the stop timeout for
//    it to exit, then SIGKILL the main process only; its children stay (this
//    is systemd's KillMode=process).
//  - `sigX-all` (the default): SIGX to every process of the cgroup subtree at
//    once (freeze, signal, thaw), wait until the cgroup is empty (on
//    cgroup.events), then kill whatever is left (cgroup.kill).
import { constants } from 'node:os';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cgroupOfPid } from '../kernel/cgroupfs';
import { classifyCgroup, MainRecord } from './classify';
import { hasCode, usageError } from '../util/errors';
import { assertActionableCgroup, FREEZE_TIMEOUT_MS, signalCgroupAndWait, signalPidfdVerified } from '../kernel/signal-guard';
import { killCgroup } from '../kernel/kill';
import { native } from '../kernel/native';

export const STOP_MODES = [
  'sigterm', 'sigterm-all', 'sighup', 'sighup-all', 'sigusr1', 'sigusr1-all',
  'sigusr2', 'sigusr2-all', 'sigint', 'sigint-all',
  // snapproc extension: the graceful stop of nginx and others (SIGTERM is their fast shutdown).
  'sigquit', 'sigquit-all',
] as const;
export type StopMode = (typeof STOP_MODES)[number];

export const DEFAULT_STOP_MODE: StopMode = 'sigterm-all';
export const DEFAULT_STOP_TIMEOUT_MS = 30_000;

/** The signal a stop-mode sends and whether it goes to the whole cgroup. */
export function stopModeSignal(mode: StopMode): { signal: string; number: number; all: boolean } {
  const all = mode.endsWith('-all');
  const signal = (all ? mode.slice(0, -4) : mode).toUpperCase();
  return { signal, number: constants.signals[signal as keyof typeof constants.signals], all };
}

/** Validates a stop-mode given as text (CLI, API). */
export function parseStopMode(text: string): StopMode {
  if ((STOP_MODES as readonly string[]).includes(text)) return text as StopMode;
  const lower = text.toLowerCase();
  const hint = (STOP_MODES as readonly string[]).includes(lower) ? ` (did you mean "${lower}"?)` : '';
  throw usageError(`invalid stop-mode "${text}"${hint}; valid stop-modes: ${STOP_MODES.join(', ')}`);
}

export interface StopOptions {
  /** Stop-mode; default sigterm-all. */
  mode?: StopMode;
  /** How long to wait for an orderly exit before SIGKILL; default 30 s. */
  timeoutMs?: number;
  /** Send SIGKILL when the timeout passes (default true). */
  killAfterTimeout?: boolean;
  /** The main process from a supervisor's record (plain modes); null: the record says none (nothing is guessed); absent: found from the cgroup. */
  main?: MainRecord | number | null;
  /** A pidfd of the main process that the caller holds (e.g. since it spawned it). */
  mainPidfd?: number;
  /** How long to wait for the cgroup to empty after SIGKILL; default 10 s. */
  killTimeoutMs?: number;
  /** How long the freeze of an -all stop may take before the signal goes out without it; default 1 s. */
  freezeTimeoutMs?: number;
}

export interface StopResult {
  mode: StopMode;
  signal: string;
  /** 'main' for plain stop-modes, 'cgroup' for -all. */
  target: 'main' | 'cgroup';
  /** The main process aimed at (plain modes), or null when there was none. */
  mainPid: number | null;
  /** Processes the stop signal was delivered to. */
  signalled: number;
  /** Processes that had exited before they could be signalled. */
  gone: number;
  /** The stop timeout passed before the target exited. */
  timedOut: boolean;
  /** SIGKILL had to be sent after the timeout. */
  isForcefullyTerminated: boolean;
  /** -all: the freeze did not complete in time, the members were signalled without it. */
  freezeSkipped?: boolean;
  /** What else there is to say ("main process already gone", "freeze skipped: ..."). */
  note?: string;
  /** The target is gone at the end (main process exited / cgroup empty). */
  stopped: boolean;
  durationMs: number;
}

/** Stops the processes of one app cgroup by stop-mode. */
export async function stopCgroup(dir: string, options: StopOptions = {}): Promise<StopResult> {
  const mode = options.mode ?? DEFAULT_STOP_MODE;
  const { signal, number, all } = stopModeSignal(parseStopMode(mode));
  const timeoutMs = options.timeoutMs ?? DEFAULT_STOP_TIMEOUT_MS;
  const killAfterTimeout = options.killAfterTimeout ?? true;
  const killTimeoutMs = options.killTimeoutMs ?? 10_000;
  const started = performance.now();
  // An -all stop leaves the check that snapproc is not in the cgroup to the
  // native fan-out, which reads the members anyway (and refuses alike).
  assertActionableCgroup(dir, all ? null : cgroupOfPid('self'));
  const base = { mode, signal, durationMs: 0 };

  if (all) {
    const result: StopResult = { ...base, target: 'cgroup', mainPid: null, signalled: 0, gone: 0, timedOut: false, isForcefullyTerminated: false, stopped: true };
    // The freeze gets at most half the stop-timeout (which counts from the
    // start of the stop): a freeze that does not complete must not make a
    // stop outlast its timeout (a fork storm under load once waited 1 s
    // for it with a 300 ms stop-timeout).
    const freezeTimeoutMs = options.freezeTimeoutMs ?? Math.min(FREEZE_TIMEOUT_MS, Math.max(20, Math.round(timeoutMs / 2)));
    // The stop-timeout runs from the start of the stop (as systemd's TimeoutStopSec), freeze and fan-out included.
    const left = Math.max(0, Math.round(timeoutMs - (performance.now() - started)));
    // What is left at the timeout is killed from the addon's waiting thread at that moment.
    // A stop thaws a service frozen on purpose first (as systemd does): frozen processes cannot act on the signal.
    const fan = await signalCgroupAndWait(dir, number, { alsoCont: true, freezeTimeoutMs, timeoutMs: left, killTimeoutMs: killAfterTimeout ? killTimeoutMs : undefined, own: null, thawFrozen: true });
    if (fan.empty) return result;
    result.signalled = fan.signalled;
    result.gone = fan.gone;
    if (fan.freezeSkipped) {
      result.freezeSkipped = true;
      result.note = `freeze did not complete within ${freezeTimeoutMs} ms: signalled without it`;
    }
    if (fan.killArmed && fan.outcome !== 'done') {
      // cgroup.kill written at the timeout ('timeout' here: not empty within the kill timeout either).
      result.timedOut = true;
      result.isForcefullyTerminated = true;
      result.stopped = fan.outcome === 'killed';
    } else if (fan.outcome !== 'done') {
      result.timedOut = true;
      result.stopped = false;
      if (killAfterTimeout) {
        result.isForcefullyTerminated = true;
        result.stopped = (await killCgroup(dir, { timeoutMs: killTimeoutMs })).empty;
      }
    }
    result.durationMs = performance.now() - started;
    return result;
  }

  // Plain stop-mode: the main process only.
  let mainPid: number | null;
  let startTime: number | undefined;
  const identity = typeof options.main === 'object' && options.main ? options.main.identity : undefined;
  // A caller's pidfd is used only together with the record it belongs to.
  if (options.mainPidfd !== undefined && options.main != null) {
    mainPid = typeof options.main === 'number' ? options.main : options.main.pid;
    startTime = typeof options.main === 'number' ? undefined : options.main.startTime;
  } else {
    const found = classifyCgroup(dir, { main: options.main });
    mainPid = found.mainPid;
    startTime = typeof options.main === 'object' && options.main ? options.main.startTime : undefined;
  }
  const result: StopResult = { ...base, target: 'main', mainPid, signalled: 0, gone: 0, timedOut: false, isForcefullyTerminated: false, stopped: true };
  // No main process: a plain stop-mode signals nothing (KillMode=process), never a guess.
  if (mainPid === null) {
    result.note = 'main process already gone';
    return result;
  }

  let pidfd = options.main != null ? options.mainPidfd : undefined;
  const ownPidfd = pidfd === undefined;
  if (pidfd === undefined) {
    try {
      pidfd = native.pidfdOpen(mainPid);
    } catch (err) {
      if (!hasCode(err, 'ESRCH')) throw err;
      result.gone = 1;
      return result;
    }
  }
  try {
    const outcome = signalPidfdVerified(pidfd, mainPid, number, dir, startTime, identity);
    if (outcome === 'gone') {
      result.gone = 1;
      return result;
    }
    result.signalled = 1;
    signalPidfdVerified(pidfd, mainPid, constants.signals.SIGCONT, dir);
    const waited = await native.pidfdWait(pidfd, timeoutMs).result;
    if (waited !== 'done') {
      result.timedOut = true;
      result.stopped = false;
      if (killAfterTimeout) {
        result.isForcefullyTerminated = signalPidfdVerified(pidfd, mainPid, constants.signals.SIGKILL, dir) === 'signalled';
        result.stopped = (await native.pidfdWait(pidfd, killTimeoutMs).result) === 'done';
      }
    }
  } finally {
    if (ownPidfd) fs.closeSync(pidfd);
    result.durationMs = performance.now() - started;
  }
  return result;
}
