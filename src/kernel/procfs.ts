// procfs.ts: what /proc says about one process that the kernel's pidfd
// interface does not: start time (to tell a PID from its reuse), the
// executable, and the snap revision it executes.
import * as fs from 'node:fs';

/** Start time of a process in clock ticks since boot (/proc/PID/stat field 22), or null if gone. */
export function startTimeOf(pid: number): number | null {
  const rest = statFields(pid);
  return rest === null ? null : Number(rest[19]);
}

/** The fields of /proc/PID/stat from field 3 (state) on, or null if gone. */
function statFields(pid: number): string[] | null {
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/stat`, 'utf8');
  } catch {
    return null;
  }
  // Fields resume after the last ')' (comm may contain spaces and parens).
  // rest[0] is field 3 (state): field 22 (start time) is rest[19].
  return text.slice(text.lastIndexOf(')') + 2).split(' ');
}

/**
 * Like startTimeOf, but null for a zombie (or dead) process too: a zombie
 * keeps its PID and start time until it is reaped, yet it runs no more.
 */
export function liveStartTimeOf(pid: number): number | null {
  const rest = statFields(pid);
  if (rest === null || rest[0] === 'Z' || rest[0] === 'X' || rest[0] === 'x') return null;
  return Number(rest[19]);
}

/** The command name of a process (comm), or null if gone. */
export function commOf(pid: number): string | null {
  try {
    return fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trimEnd();
  } catch {
    return null;
  }
}

/** Revision directories look like `.../snap/NAME/REV/...` with REV `x3` or `42`. */
const REVISION_IN_PATH = /\/snap\/([a-z0-9-]+(?:_[a-z0-9]{1,10})?)\/(x?\d+)(?:\/|$)/;

/**
 * The snap revision a process executes: from its executable's path when that
 * lies in a revision directory, else from the SNAP_REVISION it was executed
 * with. Null when neither says (or the process is gone or not readable).
 */
export function revisionOf(pid: number): string | null {
  try {
    const exe = fs.readlinkSync(`/proc/${pid}/exe`);
    const m = REVISION_IN_PATH.exec(exe);
    if (m) return m[2];
  } catch {
    // kernel threads and processes of other users have no readable exe
  }
  try {
    const env = fs.readFileSync(`/proc/${pid}/environ`, 'latin1');
    const key = 'SNAP_REVISION=';
    let at = env.startsWith(key) ? 0 : env.indexOf(`\0${key}`);
    if (at >= 0) {
      if (at > 0) at += 1;
      const end = env.indexOf('\0', at);
      return env.slice(at + key.length, end < 0 ? undefined : end) || null;
    }
  } catch {
    // gone
  }
  return null;
}

/** The PID namespace of a process ("pid:[4026531836]"), or null if gone or not readable. */
export function pidNamespaceOf(pid: number | 'self'): string | null {
  try {
    return fs.readlinkSync(`/proc/${pid}/ns/pid`);
  } catch {
    return null;
  }
}

/**
 * The PIDs of a process in each PID namespace it is visible in, from the
 * reader's (first) to its own (last): /proc/PID/status `NSpid`.
 */
export function nsPidsOf(pid: number): number[] | null {
  try {
    const m = /^NSpid:\s*(.*)$/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
    return m ? m[1].trim().split(/\s+/).map(Number) : [pid];
  } catch {
    return null;
  }
}

/**
 * A PID recorded in PID namespace `pidns` (a supervisor that runs as a
 * container's PID 1 records its own namespace's PIDs), as this process sees
 * it: itself when the namespace is ours; else the one of `candidates` (PIDs
 * as we see them, e.g. a cgroup's members) whose last NSpid is `pid` and
 * whose own namespace is `pidns`. Null when none is.
 */
export function pidFromNamespace(pid: number, pidns: string | null | undefined, candidates: Iterable<number>): number | null {
  if (!pidns || pidns === pidNamespaceOf('self')) return pid;
  for (const c of candidates) {
    const ns = nsPidsOf(c);
    if (ns && ns[ns.length - 1] === pid && ns.length > 1 && pidNamespaceOf(c) === pidns) return c;
  }
  return null;
}
