// signal-guard.ts: the one place every signal snapproc sends goes through. The rule
// (SPEC 4): never signal PID 0, 1, a negative PID, snapproc itself, or any
// process not verified to be in the snap's cgroup at the moment of
// signalling; never hit a recorded PID that died and was reused. Single
// processes are signalled through a pidfd opened before the membership check
// and still alive after it, so the check and the signal concern the same
// process. Whole cgroups are signalled by the native freeze-signal-thaw call,
// which applies the same rules inside one frozen snapshot.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cgroup2Mount, cgroupOfPid, cgroupSubtree, isInside } from './cgroupfs';
import { hasCode, SnapprocError } from '../util/errors';
import { native, type KillWaitOutcome, type NativeFanout } from './native';
import { startTimeOf } from './procfs';
import { identityOfPidfd } from './process-identity';

export type SignalOutcome = 'signalled' | 'gone';

const SIGCONT = 18;

/** Throws unless `dir` is a cgroup snapproc may act on as a whole. `own`: snapproc's cgroup, when the caller read it already (a batch of stops reads it once). */
export function assertActionableCgroup(dir: string, own: string | null = cgroupOfPid('self')): void {
  const mount = cgroup2Mount();
  const resolved = path.resolve(dir);
  if (!isInside(resolved, mount) || resolved === path.resolve(mount)) {
    throw new SnapprocError('ERR_SNAPPROC_REFUSED', `refusing to act on ${dir}: not a cgroup below the cgroup2 mount ${mount}`, { path: dir });
  }
  if (!fs.existsSync(path.join(resolved, 'cgroup.procs'))) {
    throw new SnapprocError('ENOENT', `ENOENT: no such cgroup '${dir}'`, { path: dir, errno: -2, syscall: 'open' });
  }
  if (own && isInside(own, resolved)) {
    throw new SnapprocError('ERR_SNAPPROC_REFUSED', `refusing to act on ${dir}: snapproc itself runs in it`, { path: dir });
  }
}

/** Throws for PIDs that are never signalled, whatever cgroup they seem to be in. */
export function assertSignallablePid(pid: number): void {
  if (!Number.isInteger(pid) || pid <= 1 || pid === process.pid) {
    throw new SnapprocError('ERR_SNAPPROC_REFUSED', `refusing to signal PID ${pid}: ${pid === process.pid ? 'that is snapproc itself' : 'not a process snapproc may signal'}`, { pid });
  }
}

/**
 * Sends `sig` to one process, after verifying (through a pidfd that pins it)
 * that it is in `cgroupDir` or below, and, when `startTime` is given, that it
 * is the same process that was recorded. 'gone' when it has already exited.
 */
export function signalVerified(pid: number, sig: number, cgroupDir: string, startTime?: number, identity?: string | null): SignalOutcome {
  assertSignallablePid(pid);
  let pidfd: number;
  try {
    pidfd = native.pidfdOpen(pid);
  } catch (err) {
    if (hasCode(err, 'ESRCH')) return 'gone';
    throw err;
  }
  try {
    return signalPidfdVerified(pidfd, pid, sig, cgroupDir, startTime, identity);
  } finally {
    fs.closeSync(pidfd);
  }
}

/** Like signalVerified, through a pidfd the caller holds (e.g. from spawn time). */
export function signalPidfdVerified(pidfd: number, pid: number, sig: number, cgroupDir: string, startTime?: number, identity?: string | null): SignalOutcome {
  assertSignallablePid(pid);
  // Not the whole hierarchy, nor a cgroup snapproc itself runs in.
  assertActionableCgroup(cgroupDir);
  const where = cgroupOfPid(pid);
  // The pidfd's identity (pidfs inode) tells a PID reused within the start time's 10 ms tick.
  const sameProcess = (startTime === undefined || startTimeOf(pid) === startTime) && (!identity || identityOfPidfd(pidfd) === identity);
  // Alive through the pidfd after the reads: the reads described this process.
  try {
    native.pidfdSendSignal(pidfd, 0);
  } catch (err) {
    if (hasCode(err, 'ESRCH')) return 'gone';
    throw err;
  }
  if (!sameProcess) return 'gone';
  if (where === null || !isInside(where, path.resolve(cgroupDir))) {
    throw new SnapprocError('ERR_SNAPPROC_NOT_MEMBER', `refusing to signal PID ${pid}: it is not in ${cgroupDir}${where ? ` (it is in ${where})` : ''}`, { pid, path: cgroupDir });
  }
  try {
    native.pidfdSendSignal(pidfd, sig);
    return 'signalled';
  } catch (err) {
    if (hasCode(err, 'ESRCH')) return 'gone';
    throw err;
  }
}

export interface FanoutResult {
  /** Processes the signal was delivered to. */
  signalled: number;
  /** Members that exited before they could be signalled. */
  gone: number;
  /** Cgroups in the subtree. */
  cgroups: number;
  /** Whether the subtree was frozen while it was read and signalled. */
  frozen: boolean;
}

/**
 * Delivers `sig` (and SIGCONT after it, when `alsoCont`, so that stopped
 * processes act on it) to every process of the cgroup subtree, atomically:
 * freeze, read, signal, thaw, in one native call.
 */
export function signalCgroupVerified(dir: string, sig: number, options: { freezeTimeoutMs?: number; alsoCont?: boolean } = {}): FanoutResult {
  assertActionableCgroup(dir);
  const res = native.signalAll(path.resolve(dir), sig, options.freezeTimeoutMs ?? 1000, options.alsoCont ?? false);
  return res;
}

/** Writes cgroup.kill (SIGKILL to the whole subtree, by the kernel). False where the kernel lacks it. */
export function killCgroupVerified(dir: string): boolean {
  assertActionableCgroup(dir);
  try {
    fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1');
    return true;
  } catch (err) {
    if (hasCode(err, 'ENOENT')) return false;
    throw SnapprocError.fromErrno((err as NodeJS.ErrnoException).errno ?? -5, 'write', { path: path.join(dir, 'cgroup.kill'), cause: err });
  }
}

export interface RobustFanoutResult extends FanoutResult {
  /** The freeze did not complete within its timeout: members were signalled without it. */
  freezeSkipped: boolean;
}

/** Default time a freeze gets to complete before a signal goes out without it. */
export const FREEZE_TIMEOUT_MS = 1000;

/** How long a fan-out waits for a freeze on the calling thread before it waits off it. */
export const INLINE_FREEZE_MS = 2;

/**
 * Like signalCgroupVerified, but a freeze that does not complete (a member
 * waiting in the kernel: a FUSE request nobody answers, a VM's vCPU thread,
 * uninterruptible I/O; systemd's FreezeUnit hangs on such cgroups) neither
 * hangs the caller nor skips the signal. The freeze is waited for off the
 * main thread; when it is not done within `freezeTimeoutMs` the cgroup is
 * thawed and every member is signalled one by one (each verified through a
 * pidfd), in rounds, until a round finds no new member. A cgroup someone
 * froze on purpose stays frozen.
 */
export async function signalCgroup(dir: string, sig: number, options: { freezeTimeoutMs?: number; alsoCont?: boolean } = {}): Promise<RobustFanoutResult> {
  assertActionableCgroup(dir);
  const resolved = path.resolve(dir);
  const freezeTimeoutMs = options.freezeTimeoutMs ?? FREEZE_TIMEOUT_MS;
  const alsoCont = options.alsoCont ?? false;
  const wasFrozen = fs.readFileSync(path.join(resolved, 'cgroup.freeze'), 'utf8').trim() === '1';
  // Frozen already: the native fan-out reads and signals one frozen snapshot, and it stays frozen.
  if (wasFrozen) return { ...native.signalAll(resolved, sig, freezeTimeoutMs, alsoCont), freezeSkipped: false };
  return freezeSignalThaw(resolved, sig, freezeTimeoutMs, alsoCont, true);
}

/**
 * Freezes `dir` (given `freezeTimeoutMs`), signals one frozen snapshot of its
 * members natively, and thaws; when the freeze does not complete in time,
 * thaws and signals without it, in rounds. `waitThaw`: until `frozen 0`,
 * else the thaw is only written. `thawFrozen`: a cgroup frozen on purpose is
 * thawed first (a stop: frozen members could not act on the signal).
 */
async function freezeSignalThaw(dir: string, sig: number, freezeTimeoutMs: number, alsoCont: boolean, waitThaw: boolean, thawFrozen = false): Promise<RobustFanoutResult & { empty: boolean }> {
  // Most freezes complete within a millisecond: first on this thread, for up
  // to INLINE_FREEZE_MS, freeze, signal and thaw in one native call (no trip
  // through the watching thread and back, ~0.5 ms of a 100-process stop);
  // only a freeze that takes longer is waited for off this thread. The same
  // call says whether there is anything to stop and whether the cgroup was
  // frozen on purpose, so nothing reads cgroup.events or cgroup.freeze
  // before it (cold, each such read cost ~0.05 ms of a stop).
  const inlineMs = Math.min(INLINE_FREEZE_MS, freezeTimeoutMs);
  let inline = signalAllOrRefuse(dir, sig, inlineMs, alsoCont, true, thawFrozen);
  if (!inline.empty && inline.wasFrozen && thawFrozen) {
    await native.setFrozen(dir, false, 5000).result;
    inline = signalAllOrRefuse(dir, sig, inlineMs, alsoCont, true, false);
  }
  if (inline.empty) return { signalled: 0, gone: 0, cgroups: inline.cgroups, frozen: false, freezeSkipped: false, empty: true };
  let fan = inline.frozen ? inline : null;
  if (!fan && (await native.setFrozen(dir, true, Math.max(0, freezeTimeoutMs - inlineMs)).result) === 'done') fan = signalAllOrRefuse(dir, sig, freezeTimeoutMs, alsoCont, false, false);
  // Thawed by the inline call already, unless it found the cgroup frozen;
  // after a freeze off this thread the thaw is written here.
  if (waitThaw) await native.setFrozen(dir, false, freezeTimeoutMs).result;
  else if (fan !== inline || inline.wasFrozen) native.writeFreeze(dir, false);
  const done = fan ? { signalled: fan.signalled, gone: fan.gone, cgroups: fan.cgroups, frozen: fan.frozen, freezeSkipped: false } : { ...signalWithoutFreeze(dir, sig, alsoCont, freezeTimeoutMs), freezeSkipped: true };
  return { ...done, empty: false };
}

/** native.signalAll, its refusal to freeze the cgroup snapproc runs in said as the guard says it. */
function signalAllOrRefuse(dir: string, sig: number, freezeTimeoutMs: number, alsoCont: boolean, onlyIfFrozen: boolean, refuseFrozen: boolean): NativeFanout {
  try {
    return native.signalAll(dir, sig, freezeTimeoutMs, alsoCont, onlyIfFrozen, refuseFrozen);
  } catch (err) {
    if (hasCode(err, 'EDEADLK')) throw new SnapprocError('ERR_SNAPPROC_REFUSED', `refusing to act on ${dir}: snapproc itself runs in it`, { path: dir });
    throw err;
  }
}

export interface StopFanoutResult extends RobustFanoutResult {
  /** How the wait for the cgroup to empty ended ('killed': emptied after the cgroup.kill at `timeoutMs`). */
  outcome: KillWaitOutcome;
  /** The cgroup.kill at `timeoutMs` was armed (asked for, and the kernel has cgroup.kill): a 'timeout' came after it. */
  killArmed: boolean;
  /** The cgroup had no member: nothing was signalled or waited for. */
  empty: boolean;
}

/**
 * An `-all` stop's signal and wait: like signalCgroup (freeze, read,
 * signal through pidfds, thaw; without the freeze, in rounds, when it does
 * not complete in time), then a wait for `populated 0` that ends
 * `timeoutMs` after the call. The thaw is written and not waited for: what
 * the stop waits for is the cgroup to empty (waiting for `frozen 0` first
 * cost a notification of its own, and cgroup.events announces one change
 * per interval). A cgroup frozen on purpose is thawed first with
 * `thawFrozen` (frozen members could not act on the signal), else signalled
 * frozen and left so. An empty cgroup returns at once (`empty`).
 *
 * With `killTimeoutMs`, what is left at `timeoutMs` is killed there and
 * then (cgroup.kill, written by the addon's waiting thread, not after a
 * trip through this one) and the wait goes on up to `killTimeoutMs` more;
 * where the kernel has no cgroup.kill the outcome is 'timeout' and the
 * caller kills.
 */
export async function signalCgroupAndWait(dir: string, sig: number, options: { freezeTimeoutMs?: number; alsoCont?: boolean; timeoutMs: number; killTimeoutMs?: number; own?: string | null; thawFrozen?: boolean }): Promise<StopFanoutResult> {
  assertActionableCgroup(dir, options.own);
  const resolved = path.resolve(dir);
  const freezeTimeoutMs = options.freezeTimeoutMs ?? FREEZE_TIMEOUT_MS;
  const started = performance.now();
  const left = () => Math.max(0, Math.round(options.timeoutMs - (performance.now() - started)));
  const fan = await freezeSignalThaw(resolved, sig, freezeTimeoutMs, options.alsoCont ?? false, false, options.thawFrozen);
  if (fan.empty) return { ...fan, outcome: 'done', killArmed: false };
  if (options.killTimeoutMs !== undefined) {
    const until = left();
    try {
      const outcome = await native.waitEmptyOrKill(resolved, until, until + options.killTimeoutMs).result;
      return { ...fan, outcome, killArmed: true };
    } catch (err) {
      if (!(hasCode(err, 'ENOENT') && fs.existsSync(path.join(resolved, 'cgroup.events')))) throw err;
      // No cgroup.kill in this kernel: the wait alone, and the caller kills.
    }
  }
  const outcome = await native.waitEvent(resolved, 'populated', 0, left()).result;
  return { ...fan, outcome, killArmed: false };
}

function subtreePids(dir: string): { pids: number[]; cgroups: number } {
  const dirs = cgroupSubtree(dir);
  const pids: number[] = [];
  for (const d of dirs) {
    try {
      pids.push(...native.readProcs(d));
    } catch (err) {
      if (!(d !== dir && hasCode(err, 'ENOENT'))) throw err;
    }
  }
  return { pids, cgroups: dirs.length };
}

/** Signals every member, round after round, until a round finds none it has not signalled (bounded by `boundMs`). */
function signalWithoutFreeze(dir: string, sig: number, alsoCont: boolean, boundMs: number): FanoutResult {
  const seen = new Set<number>();
  let signalled = 0;
  let gone = 0;
  let cgroups = 0;
  const deadline = performance.now() + boundMs;
  for (;;) {
    const round = subtreePids(dir);
    cgroups = round.cgroups;
    let fresh = 0;
    for (const pid of round.pids) {
      if (pid <= 1 || pid === process.pid || seen.has(pid)) continue; // 0: outside our PID namespace
      seen.add(pid);
      fresh += 1;
      let outcome: SignalOutcome;
      try {
        outcome = signalVerified(pid, sig, dir);
      } catch (err) {
        // Left the cgroup (or died and was reused) between the read and the signal.
        if (err instanceof SnapprocError && err.code === 'ERR_SNAPPROC_NOT_MEMBER') outcome = 'gone';
        else throw err;
      }
      if (outcome === 'signalled') {
        signalled += 1;
        if (alsoCont) {
          try {
            signalVerified(pid, SIGCONT, dir);
          } catch {
            // gone meanwhile
          }
        }
      } else {
        gone += 1;
      }
    }
    if (fresh === 0 || performance.now() > deadline) break;
  }
  return { signalled, gone, cgroups, frozen: false };
}
