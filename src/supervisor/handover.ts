// handover.ts: the graceful refresh of a signal-mode service (SPEC 6), on its
// own because it is a protocol of its own: signal the old main process, follow
// the hand-over until a main process executes the new revision, drain the old
// generation, and decide what a failed hand-over means (roll back, the old
// main untouched, or restart into the new revision). changes.ts calls it from
// the start-services step of a refresh.
import * as fs from 'node:fs';
import { constants } from 'node:os';
import { classifyCgroup } from '../process/classify';
import { signalCgroup, signalVerified } from '../kernel/signal-guard';
import { stopCgroup, type StopMode } from '../process/stop';
import { liveStartTimeOf, revisionOf } from '../kernel/procfs';
import { readPidFile } from './pid-file';
import type { Service } from './service';

const SIGNALS = constants.signals as Record<string, number>;

/** How a signal-mode service is told to upgrade and stopped: revision A's settings (it is A's process). */
export interface HandoverSettings {
  signal: string;
  all: boolean;
  stopMode: StopMode;
  stopTimeoutMs: number;
  /** What the old main gets once the successor is recorded (snapproc's `drain-signal`); null: it is left to leave by itself. */
  drainSignal?: string | null;
}

/** Pid files the successor may write to: B's, and A's (a pid file in $SNAP_COMMON is the same file). */
export interface HandoverPidFiles {
  to: string | null;
  from: string | null;
}

export type HandoverOutcome =
  /** A main process executes `to` (newMain); it is recorded, and the old generation drained. */
  | { kind: 'handed-over'; oldMain: number | null; newMain: number; how: string; ms: number; drain: string }
  /** Resumed after a crash: the main already ran `to`. */
  | { kind: 'already'; newMain: number }
  /** No successor, and the old main is gone: the old generation was stopped; the caller starts `to`. */
  | { kind: 'fell-back'; oldMain: number | null; ms: number; why: string }
  /** No successor while the old main still serves: it is left untouched; the caller undoes the refresh. */
  | { kind: 'rolled-back'; oldMain: number; ms: number; why: string };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Whether a process has exited (no such process, or a zombie). */
function gone(pid: number): boolean {
  try {
    const stat = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3) === 'Z';
  } catch {
    return true;
  }
}

/**
 * Whether the process still runs: a zombie does not. An old main whose
 * supervisor crashed was re-parented outside snapproc (PID 1 or another
 * subreaper), which may reap it late; as a zombie it serves nothing, and its
 * children (the successor) are re-parented already, so counting it alive
 * would hide the successor and "roll back" to a dead main.
 */
function alive(pid: number | null, startTime?: number): boolean {
  if (pid === null) return false;
  const st = liveStartTimeOf(pid);
  return st !== null && (startTime === undefined || st === startTime);
}

/**
 * Where the successor is, if there is one yet (in this order):
 *  - MAINPID= told the service's record a new main process that runs `to`;
 *  - the pid file names a process of the cgroup that runs `to` (nginx's new
 *    master writes nginx.pid once its configuration loaded);
 *  - the old main itself now executes `to`, with a process of `to` beside it
 *    or nothing of `from` left (HAProxy -W re-executes in the same PID);
 *  - without a pid file: the old main is gone and a process of `to` whose
 *    parent is outside the cgroup is left; or a child of the old main runs
 *    `to` and has started a child of its own (a master with its workers:
 *    not merely a binary that was executed and may yet fail its config).
 */
function findSuccessor(svc: Service, to: string, oldMain: number | null, oldAlive: boolean, files: HandoverPidFiles): { pid: number; how: string } | null {
  const main = svc.record.mainPid;
  if (main !== null && main !== oldMain && revisionOf(main) === to) return { pid: main, how: 'MAINPID=' };
  for (const f of [files.to, files.from]) {
    if (!f) continue;
    const pid = readPidFile(f, svc.cgroup);
    if (pid !== null && revisionOf(pid) === to && (pid !== oldMain || oldAlive)) return { pid, how: `pid file ${f}` };
  }
  const found = classifyCgroup(svc.cgroup, { revisions: true });
  const procs = found.processes;
  if (oldAlive && oldMain !== null && revisionOf(oldMain) === to) {
    const others = procs.filter((p) => p.pid !== oldMain);
    if (others.some((p) => p.revision === to) || !others.some((p) => p.revision !== to && p.revision !== null)) return { pid: oldMain, how: 'same PID re-executed' };
  }
  if (files.to || files.from) return null;
  const members = new Set(procs.map((p) => p.pid));
  if (!oldAlive) {
    const c = procs.find((p) => p.revision === to && !members.has(p.ppid));
    if (c) return { pid: c.pid, how: 'left in the cgroup' };
  } else if (oldMain !== null) {
    for (const c of procs) {
      if (c.revision !== to || c.ppid !== oldMain) continue;
      if (procs.some((g) => g.ppid === c.pid && g.revision === to)) return { pid: c.pid, how: 'child of the old main, with children' };
    }
  }
  return null;
}

/** Signals a signal-mode service of revision `from` to upgrade itself to `to`, and follows it (SPEC 6). */
export async function handOver(svc: Service, from: string, to: string, sig: HandoverSettings, files: HandoverPidFiles = { to: null, from: null }): Promise<HandoverOutcome> {
  const t0 = performance.now();
  const ms = () => Math.round(performance.now() - t0);
  const oldMain = svc.record.mainPid;
  const oldStart = svc.record.mainStartTime ?? undefined;
  const oldIdentity = svc.record.mainIdentity;
  // Resumed after a crash: a main that already runs `to` was handed over before it.
  if (oldMain !== null && revisionOf(oldMain) === to) return { kind: 'already', newMain: oldMain };
  svc.beginHandover();
  try {
    if (sig.all) await signalCgroup(svc.cgroup, SIGNALS[sig.signal]);
    else if (oldMain !== null) signalVerified(oldMain, SIGNALS[sig.signal], svc.cgroup, oldStart, oldIdentity);
    const deadline = Date.now() + sig.stopTimeoutMs;
    // Processes seen executing `to`: the successor failed only once every one of them is really gone
    // (a process in the middle of an exec may read as no revision at all for a moment).
    const seenTo = new Set<number>();
    let why = `no process of ${to} took over within ${sig.stopTimeoutMs} ms after ${sig.signal}`;
    let successor: { pid: number; how: string } | null = null;
    while (Date.now() < deadline) {
      const oldAlive = alive(oldMain, oldStart);
      successor = findSuccessor(svc, to, oldMain, oldAlive, files);
      if (successor) break;
      const procs = classifyCgroup(svc.cgroup, { revisions: true }).processes;
      const ofTo = procs.filter((p) => p.revision === to && p.pid !== oldMain);
      for (const p of ofTo) seenTo.add(p.pid);
      if (ofTo.length === 0 && seenTo.size > 0 && oldAlive && [...seenTo].every(gone)) {
        why = `the successor executing ${to} exited before it took over`;
        break;
      }
      if (!oldAlive && procs.length === 0) {
        why = `main process ${oldMain} exited after ${sig.signal} and left no successor`;
        break;
      }
      await sleep(20);
    }
    if (successor) {
      svc.adoptMain(successor.pid);
      const drain = await drainOld(svc, from, oldMain, oldStart, successor.pid, sig);
      return { kind: 'handed-over', oldMain, newMain: successor.pid, how: successor.how, ms: ms(), drain };
    }
    if (oldMain !== null && alive(oldMain, oldStart)) {
      // Zero-downtime rollback: the old main still serves; what ran `to` goes, the old main is untouched.
      for (const p of classifyCgroup(svc.cgroup, { revisions: true }).processes) {
        if (p.revision === to && p.pid !== oldMain) signalVerified(p.pid, SIGNALS.SIGKILL, svc.cgroup);
      }
      if (svc.record.mainPid !== oldMain) svc.adoptMain(oldMain);
      return { kind: 'rolled-back', oldMain, ms: ms(), why };
    }
    // The old main is gone without a successor: fall back to a restart. What is
    // left of the old generation goes by its stop-mode (the main as recorded,
    // never guessed), and a successor that started but never took over too.
    await stopCgroup(svc.cgroup, { mode: sig.stopMode, timeoutMs: sig.stopTimeoutMs, main: oldMain === null ? null : { pid: oldMain, startTime: oldStart, identity: oldIdentity } });
    for (const p of classifyCgroup(svc.cgroup, { revisions: true }).processes) {
      if (p.revision === to) signalVerified(p.pid, SIGNALS.SIGKILL, svc.cgroup);
    }
    return { kind: 'fell-back', oldMain, ms: ms(), why };
  } finally {
    svc.endHandover();
  }
}

/**
 * Drains the old generation once the successor is recorded. With a drain
 * signal, an `-all` refresh-mode, or a same-PID re-exec, the old generation
 * is every process still executing `from` (nginx's old master and workers,
 * HAProxy's old workers): the old main (if it still runs and is not the
 * successor) gets the drain signal, they all have stop-timeout to leave, and
 * what is left is killed. With a plain refresh-mode and no drain signal only
 * the old main is waited for (and killed if it stays): its children stay, as
 * a plain stop-mode leaves them (systemd's KillMode=process). Returns what
 * happened, in words.
 */
async function drainOld(svc: Service, from: string, oldMain: number | null, oldStart: number | undefined, newMain: number, sig: HandoverSettings): Promise<string> {
  const parts: string[] = [];
  const oldRuns = () => oldMain !== null && oldMain !== newMain && alive(oldMain, oldStart);
  if (oldRuns() && sig.drainSignal) {
    signalVerified(oldMain!, SIGNALS[sig.drainSignal], svc.cgroup, oldStart);
    parts.push(`${sig.drainSignal} to old main ${oldMain}`);
  }
  const generation = sig.all || !!sig.drainSignal || oldMain === newMain;
  const t0 = performance.now();
  const deadline = Date.now() + sig.stopTimeoutMs;
  const left = (): number[] =>
    generation
      ? classifyCgroup(svc.cgroup, { revisions: true }).processes.filter((p) => p.pid !== newMain && p.revision === from).map((p) => p.pid)
      : oldRuns() ? [oldMain!] : [];
  let pids = left();
  while (pids.length && Date.now() < deadline) {
    await sleep(20);
    pids = left();
  }
  const what = generation ? `of ${from}` : `(the old main)`;
  if (pids.length) {
    for (const pid of pids) signalVerified(pid, SIGNALS.SIGKILL, svc.cgroup, pid === oldMain ? oldStart : undefined);
    parts.push(`${pids.length} process${pids.length === 1 ? '' : 'es'} ${what} still there after ${sig.stopTimeoutMs} ms: killed (${pids.join(', ')})`);
  } else if (generation) {
    parts.push(`nothing of ${from} left after ${Math.round(performance.now() - t0)} ms`);
  } else {
    parts.push(`old main gone after ${Math.round(performance.now() - t0)} ms`);
  }
  return parts.join(', ');
}
