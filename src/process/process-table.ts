// process-table.ts: the process table of one snap or of every snap, as `ps` shows
// it: each app cgroup with its kind, main process and classified members.
import { classifyCgroup, MainRecord, ProcessInfo } from './classify';
import { findSnapCgroups, FindOptions } from './find-cgroups';
import { CgroupKind } from './cgroup-names';

export interface AppProcesses {
  snap: string;
  app: string;
  kind: CgroupKind;
  cgroup: string;
  mainPid: number | null;
  processes: ProcessInfo[];
}

export interface SnapProcessesOptions extends FindOptions {
  /** Look up the revision each process executes (default true). */
  revisions?: boolean;
  /** Recorded main processes by cgroup path, from a supervisor (null: it records none). */
  mainRecords?: Map<string, MainRecord | null>;
  /** Include cgroups that have no process (default false). */
  includeEmpty?: boolean;
}

/** Discovers and classifies the processes of a snap (or of all snaps). */
export function snapProcesses(instance?: string, options: SnapProcessesOptions = {}): AppProcesses[] {
  const out: AppProcesses[] = [];
  for (const cg of findSnapCgroups(instance, options)) {
    let found;
    try {
      const record = options.mainRecords?.get(cg.path);
      found = classifyCgroup(cg.path, { main: record, revisions: options.revisions ?? true });
    } catch {
      continue; // removed while we looked
    }
    if (found.processes.length === 0 && !options.includeEmpty) continue;
    out.push({ snap: cg.instance, app: cg.app, kind: cg.kind, cgroup: cg.path, mainPid: found.mainPid, processes: found.processes });
  }
  return out;
}
