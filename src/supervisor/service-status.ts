// service-status.ts: what `snapproc services` and `snapctl services` show,
// as `snap services` does: each service with its startup (enabled or
// disabled), its current state (active, inactive, frozen, failed) and notes
// a person needs — the revision an enduring main process still runs, why an
// inactive service ended, how often it was restarted. Read from the
// supervisor's records on disk and checked against the live processes and
// cgroups, so it works with or without a supervisor answering.
import * as fs from 'node:fs';
import { readEvent } from '../kernel/cgroupfs';
import { revisionOf, liveStartTimeOf } from '../kernel/procfs';
import { RevisionStore } from '../snap/revision-store';
import { loadRecords, serviceKey, type ExitRecord } from './records';

export type ServiceCurrent = 'active' | 'inactive' | 'frozen' | 'failed' | 'activating' | 'deactivating';

export interface ServiceStatusRow {
  /** NAME.APP */
  service: string;
  snap: string;
  app: string;
  startup: 'enabled' | 'disabled';
  current: ServiceCurrent;
  /** The revision the snap's `current` points at. */
  currentRevision: string;
  /** The revision the main process executes (null when none runs). */
  runs: string | null;
  mainPid: number | null;
  restarts: number;
  lastExit: ExitRecord | null;
  /** Words for the Notes column; empty for none. */
  notes: string[];
}

/** `exited 3`, `killed by SIGKILL`. */
export function exitWords(e: { code: number | null; signal: string | null }): string {
  return e.signal ? `killed by ${e.signal}` : `exited ${e.code}`;
}

/** Every service of the installed snaps (or of one), in snap then start order of its snap.yaml. */
export function serviceStatus(root: string, instance?: string, app?: string): ServiceStatusRow[] {
  const store = new RevisionStore(root);
  if (!fs.existsSync(root)) return [];
  let records: ReturnType<typeof loadRecords>;
  try {
    records = loadRecords(root);
  } catch {
    records = new Map();
  }
  const rows: ServiceStatusRow[] = [];
  for (const snap of store.list()) {
    if (instance !== undefined && snap.name !== instance) continue;
    const rev = snap.current;
    if (!rev) continue;
    const yaml = store.readSnapYaml(snap.name, rev);
    for (const a of Object.values(yaml.apps)) {
      if (!a.isService || (app !== undefined && a.name !== app)) continue;
      const rec = records.get(serviceKey(snap.name, a.name));
      const enabled = rec ? rec.enabled !== false : a.installMode !== 'disable';
      let mainPid = rec?.mainPid ?? null;
      // A record is only as good as the process behind it (a supervisor may have died since).
      if (mainPid !== null && (rec?.mainStartTime == null || liveStartTimeOf(mainPid) !== rec.mainStartTime)) mainPid = null;
      let current: ServiceCurrent = rec?.state ?? 'inactive';
      if ((current === 'active' || current === 'activating') && mainPid === null && !(a.daemon === 'oneshot' && current === 'active')) current = 'inactive';
      let populated = 0;
      let frozen = 0;
      if (rec) {
        try {
          populated = readEvent(rec.cgroup, 'populated');
          frozen = readEvent(rec.cgroup, 'frozen');
        } catch {
          // no cgroup: nothing runs
        }
      }
      if (populated === 1 && frozen === 1) current = 'frozen';
      const runs = mainPid !== null ? revisionOf(mainPid) : null;
      const notes: string[] = [];
      if (runs !== null && runs !== rev) notes.push(`endured: runs ${runs}, current ${rev}`);
      if ((current === 'inactive' || current === 'failed') && rec?.lastExit) notes.push(exitWords(rec.lastExit));
      if (current === 'failed' && rec?.reason && !/^(exited with status \d+|killed by SIG\w+)$/.test(rec.reason)) notes.push(rec.reason);
      if (rec && rec.restarts > 0) notes.push(`restarts: ${rec.restarts}`);
      rows.push({
        service: `${snap.name}.${a.name}`,
        snap: snap.name,
        app: a.name,
        startup: enabled ? 'enabled' : 'disabled',
        current,
        currentRevision: rev,
        runs,
        mainPid,
        restarts: rec?.restarts ?? 0,
        lastExit: rec?.lastExit ?? null,
        notes,
      });
    }
  }
  return rows;
}

/** The `snap services` table: Service, Startup, Current, Notes. */
export function serviceTable(rows: ServiceStatusRow[]): string[][] {
  const out = [['Service', 'Startup', 'Current', 'Notes']];
  for (const r of rows) out.push([r.service, r.startup, r.current, r.notes.join('; ') || '-']);
  return out;
}
