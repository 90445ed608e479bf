// classify.ts: who is who in an app's cgroup (SPEC 3). A stop-mode without
// `-all` must hit the main process only, so snapproc has to know which
// process that is, which ones share its process group, and which escaped it
// (setsid, daemonised, double-forked). Discovery reads cgroup.procs of the
// subtree, then in one native call each member's ppid and pgid (through a
// pidfd, or one read of /proc/PID/stat) and, when asked, the revision it
// executes; start times only where they decide something.
import { cgroupSubtree } from '../kernel/cgroupfs';
import { hasCode } from '../util/errors';
import { native } from '../kernel/native';
import { identityOf } from '../kernel/process-identity';
import { startTimeOf } from '../kernel/procfs';

export type ProcessRole = 'main' | 'group' | 'other';

export interface ProcessInfo {
  pid: number;
  ppid: number;
  pgid: number;
  role: ProcessRole;
  /** Revision executed (`x2`), when `revisions` was asked for and known. */
  revision: string | null;
}

/** A main process as a supervisor records it: PID plus its start time, so a reused PID is not taken for it. */
export interface MainRecord {
  pid: number;
  /** /proc/PID/stat start time (clock ticks since boot); checked when given. */
  startTime?: number;
  /** The process's identity (pidfs inode, kernel/process-identity.ts); checked when given. */
  identity?: string | null;
}

export interface ClassifyOptions {
  /**
   * The main process from a supervisor's record; verified against the
   * cgroup. null: the supervisor records none (it exited): then there is no
   * main process, and none is guessed. Absent: no record, the main process
   * is found from the cgroup.
   */
  main?: MainRecord | number | null;
  /** Also look up the revision each process executes (reads /proc per process). */
  revisions?: boolean;
}

export interface CgroupProcesses {
  /** The main process's PID, or null when there is none (or it has exited). */
  mainPid: number | null;
  /** How mainPid was learned. */
  mainFrom: 'record' | 'cgroup' | null;
  processes: ProcessInfo[];
}

/** PIDs of every process in the cgroup and its sub-cgroups. */
export function cgroupPids(dir: string): Int32Array {
  const dirs = cgroupSubtree(dir);
  if (dirs.length === 1) return native.readProcs(dir);
  const parts: Int32Array[] = [];
  for (const d of dirs) {
    try {
      parts.push(native.readProcs(d));
    } catch (err) {
      if (!(d !== dir && hasCode(err, 'ENOENT'))) throw err;
    }
  }
  const all = new Int32Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    all.set(p, at);
    at += p.length;
  }
  return all;
}

/**
 * Classifies every process of an app cgroup (subtree included) as main,
 * group or other. Without a record, the main process is the one whose parent
 * is outside the cgroup (the earliest started, if several are).
 */
export function classifyCgroup(dir: string, options: ClassifyOptions = {}): CgroupProcesses {
  const pids = cgroupPids(dir);
  const info = native.procInfo(pids, options.revisions === true);
  const ids = info.ids;
  const members = new Map<number, number>(); // pid -> index
  for (let i = 0, k = 0; i < ids.length; i += 3, k++) members.set(ids[i], k);

  const record = typeof options.main === 'number' ? { pid: options.main } : options.main ?? null;
  const recordedNone = options.main === null;
  let mainPid: number | null = null;
  let mainFrom: CgroupProcesses['mainFrom'] = null;
  // The record holds when its process is alive, in the cgroup, and the same process (start time).
  const k = record ? members.get(record.pid) : undefined;
  const startOf = (j: number, pid: number) => (info.start ? info.start[j] : startTimeOf(pid));
  if (record && k !== undefined && (record.startTime === undefined || startOf(k, record.pid) === record.startTime) && (!record.identity || identityOf(record.pid) === record.identity)) {
    mainPid = record.pid;
    mainFrom = 'record';
  } else if (!record && !recordedNone) {
    // Without a record: the process whose parent is outside the cgroup (the earliest started, if several are).
    const candidates: number[] = [];
    for (let i = 0, j = 0; i < ids.length; i += 3, j++) if (!members.has(ids[i + 1])) candidates.push(j);
    let best = -1;
    let bestStart = 0;
    for (const j of candidates) {
      // Start times only to choose among several (gone meanwhile: last).
      const start = candidates.length === 1 ? 0 : startOf(j, ids[j * 3]) ?? Infinity;
      if (best < 0 || start < bestStart || (start === bestStart && ids[j * 3] < ids[best * 3])) {
        best = j;
        bestStart = start;
      }
    }
    if (best >= 0) {
      mainPid = ids[best * 3];
      mainFrom = 'cgroup';
    }
  }
  // A record whose process has gone means: no main process now. Guessing
  // another would aim a main-only stop at a process the author did not mean.

  let mainPgid = -1;
  for (let i = 0; i < ids.length; i += 3) if (ids[i] === mainPid) mainPgid = ids[i + 2];

  const processes: ProcessInfo[] = [];
  for (let i = 0, j = 0; i < ids.length; i += 3, j++) {
    const pid = ids[i];
    const pgid = ids[i + 2];
    const role: ProcessRole = pid === mainPid ? 'main' : pgid === mainPgid ? 'group' : 'other';
    processes.push({ pid, ppid: ids[i + 1], pgid, role, revision: info.revisions ? info.revisions[j] : null });
  }
  processes.sort((a, b) => a.pid - b.pid);
  return { mainPid, mainFrom, processes };
}
