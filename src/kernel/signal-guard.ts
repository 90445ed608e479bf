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
import { cgroup2Mount, cgroupOfPid, isInside } from './cgroupfs';
import { hasCode, SnapprocError } from '../util/errors';
import { native } from './native';
import { startTimeOf } from './procfs';

export type SignalOutcome = 'signalled' | 'gone';

/** Throws unless `dir` is a cgroup snapproc may act on as a whole. */
export function assertActionableCgroup(dir: string): void {
  const mount = cgroup2Mount();
  const resolved = path.resolve(dir);
  if (!isInside(resolved, mount) || resolved === path.resolve(mount)) {
    throw new SnapprocError('ERR_SNAPPROC_REFUSED', `refusing to act on ${dir}: not a cgroup below the cgroup2 mount ${mount}`, { path: dir });
  }
  if (!fs.existsSync(path.join(resolved, 'cgroup.procs'))) {
    throw new SnapprocError('ENOENT', `ENOENT: no such cgroup '${dir}'`, { path: dir, errno: -2, syscall: 'open' });
  }
  const own = cgroupOfPid('self');
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
export function signalVerified(pid: number, sig: number, cgroupDir: string, startTime?: number): SignalOutcome {
  assertSignallablePid(pid);
  let pidfd: number;
  try {
    pidfd = native.pidfdOpen(pid);
  } catch (err) {
    if (hasCode(err, 'ESRCH')) return 'gone';
    throw err;
  }
  try {
    return signalPidfdVerified(pidfd, pid, sig, cgroupDir, startTime);
  } finally {
    fs.closeSync(pidfd);
  }
}

/** Like signalVerified, through a pidfd the caller holds (e.g. from spawn time). */
export function signalPidfdVerified(pidfd: number, pid: number, sig: number, cgroupDir: string, startTime?: number): SignalOutcome {
  assertSignallablePid(pid);
  // Not the whole hierarchy, nor a cgroup snapproc itself runs in.
  assertActionableCgroup(cgroupDir);
  const where = cgroupOfPid(pid);
  const sameProcess = startTime === undefined || startTimeOf(pid) === startTime;
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
