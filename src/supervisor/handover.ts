// handover.ts: the graceful refresh of a signal-mode service (SPEC 6), on its
// own because it is a protocol of its own: signal the old main process, follow
// the hand-over until a main process executes the new revision, drain the old
// generation, and decide what a failed hand-over means (roll back, the old
// main untouched, or restart into the new revision). changes.ts calls it from
// the start-services step of a refresh.
import * as fs from 'node:fs';
import { constants } from 'node:os';
import { classifyCgroup } from '../process/classify';
import { readEvent } from '../kernel/cgroupfs';
import { signalCgroup, signalVerified } from '../kernel/signal-guard';
import { stopCgroup, type StopMode } from '../process/stop';
import { revisionOf } from '../kernel/procfs';
import type { Service } from './service';

const SIGNALS = constants.signals as Record<string, number>;

/** How a signal-mode service is told to upgrade and stopped: revision A's settings (it is A's process). */
export interface HandoverSettings {
  signal: string;
  all: boolean;
  stopMode: StopMode;
  stopTimeoutMs: number;
}

export type HandoverOutcome =
  /** A main process executes `to` (newMain); it is recorded. */
  | { kind: 'handed-over'; oldMain: number | null; newMain: number; ms: number }
  /** Resumed after a crash: the main already ran `to`. */
  | { kind: 'already'; newMain: number }
  /** No successor: the old generation was stopped; the caller starts `to`. */
  | { kind: 'fell-back'; oldMain: number | null; ms: number };

/**
 * Follows a graceful hand-over: after the signal, within the stop timeout,
 * the main process must become one that executes revision `to` — learned
 * from MAINPID= (the service updates its record), or, once the old main has
 * gone, from the process left in the cgroup whose parent is outside it.
 */
async function followHandover(svc: Service, to: string, oldMain: number | null, timeoutMs: number): Promise<number | null> {
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    const main = svc.record.mainPid;
    if (main !== null && main !== oldMain && revisionOf(main) === to) return main;
    const oldGone = oldMain === null || main !== oldMain || !fs.existsSync(`/proc/${oldMain}`);
    if (oldGone && readEvent(svc.cgroup, 'populated') === 1) {
      // The successor: a process executing `to` whose parent is outside the cgroup
      // (not merely the oldest such process: plain stop-modes leave old children).
      const found = classifyCgroup(svc.cgroup, { revisions: true });
      const members = new Set(found.processes.map((p) => p.pid));
      const candidate = found.processes.find((p) => p.revision === to && !members.has(p.ppid));
      if (candidate) {
        svc.adoptMain(candidate.pid);
        return candidate.pid;
      }
    }
    // nginx-style: the successor is a child of the old main, which lives on
    // (draining) until told to quit; it runs `to` and is the new main.
    if (oldMain !== null && fs.existsSync(`/proc/${oldMain}`)) {
      const found = classifyCgroup(svc.cgroup, { revisions: true });
      const candidate = found.processes.find((p) => p.revision === to && p.ppid === oldMain);
      if (candidate) {
        svc.adoptMain(candidate.pid);
        return candidate.pid;
      }
    }
    // Bounded to the hand-over window; the notify path answers without waiting for this.
    await new Promise((r) => setTimeout(r, 20));
  }
  return null;
}

/** Signals a signal-mode service of revision `from` to upgrade itself to `to`, and follows it. */
export async function handOver(svc: Service, to: string, sig: HandoverSettings): Promise<HandoverOutcome> {
  const t0 = performance.now();
  const oldMain = svc.record.mainPid;
  const oldStart = svc.record.mainStartTime ?? undefined;
  // Resumed after a crash: a main that already runs `to` was handed over before it.
  if (oldMain !== null && revisionOf(oldMain) === to) return { kind: 'already', newMain: oldMain };
  svc.beginHandover();
  let newMain: number | null = null;
  try {
    if (sig.all) await signalCgroup(svc.cgroup, SIGNALS[sig.signal]);
    else if (oldMain !== null) signalVerified(oldMain, SIGNALS[sig.signal], svc.cgroup, oldStart);
    newMain = await followHandover(svc, to, oldMain, sig.stopTimeoutMs);
    if (newMain === null) {
      // No successor in time: fall back to a restart, and say so. The old
      // main process is stopped by its stop-mode (as recorded, never guessed),
      // and a successor that started but never took over goes too.
      await stopCgroup(svc.cgroup, { mode: sig.stopMode, timeoutMs: sig.stopTimeoutMs, main: oldMain === null ? null : { pid: oldMain, startTime: oldStart } });
      for (const p of classifyCgroup(svc.cgroup, { revisions: true }).processes) {
        if (p.revision === to) signalVerified(p.pid, SIGNALS.SIGKILL, svc.cgroup);
      }
    }
  } finally {
    svc.endHandover();
  }
  const ms = Math.round(performance.now() - t0);
  return newMain !== null ? { kind: 'handed-over', oldMain, newMain, ms } : { kind: 'fell-back', oldMain, ms };
}
