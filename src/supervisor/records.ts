// records.ts: what the supervisor runs, on disk (R/state/services/), so
// that a new supervisor re-adopts running services after the old one died
// instead of stopping or duplicating them. Plain JSON, as s6-svstat output is
// plain: main PID (with start time, to tell it from a reused PID), state,
// restarts, last exit. One file per snap (R/state/services/NAME.json), so
// that what one snap does costs the same however many others are installed;
// each written in place in two slots that take turns (../util/slot-file.ts):
// a crash mid-write leaves the previous record.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { otherSlot, readSlotFile, SlotFile } from '../util/slot-file';

export type ServiceState = 'inactive' | 'activating' | 'active' | 'deactivating' | 'failed';

export interface ExitRecord {
  /** Exit code, or null when killed by a signal. */
  code: number | null;
  /** Signal name, or null on a normal exit. */
  signal: string | null;
  /** ISO time of the exit. */
  at: string;
}

export interface ServiceRecord {
  snap: string;
  app: string;
  revision: string;
  cgroup: string;
  state: ServiceState;
  /** Whether the service should be running (started and not stopped by a user). */
  wanted: boolean;
  /** Startup, as `snap services` shows it: false after `snapctl stop --disable` or with install-mode: disable (absent in old records: true). */
  enabled?: boolean;
  mainPid: number | null;
  /** /proc start time of mainPid (clock ticks since boot; the same in every PID namespace). */
  mainStartTime: number | null;
  /**
   * The PID namespace mainPid is a PID of (the supervisor's: "pid:[…]"), so
   * that a reader in another namespace (ps on the host of a container whose
   * PID 1 is the supervisor) finds the process through /proc/PID/status NSpid.
   */
  pidns?: string | null;
  /** The main process's identity (pidfs inode: tells a PID reused within one start-time tick). */
  mainIdentity?: string | null;
  /** ISO time the current main process started. */
  since: string | null;
  restarts: number;
  lastExit: ExitRecord | null;
  /** Why the service is failed, in words. */
  reason: string | null;
}

/** The records as one file (before per-snap files): still read, removed at the first full save. */
export function recordsFile(root: string): string {
  return path.join(root, 'state', 'services.json');
}

/** The directory of the per-snap record files, `NAME.json` (and its second slot `NAME.json.1`). */
export function recordsDir(root: string): string {
  return path.join(root, 'state', 'services');
}

export function serviceKey(snap: string, app: string): string {
  return `${snap}.${app}`;
}

/**
 * Every record under the root: the single file of older supervisors first,
 * then each snap's own file (which wins for its snap).
 */
export function loadRecords(root: string): Map<string, ServiceRecord> {
  const legacy = readSlotFile<{ services: ServiceRecord[] }>(recordsFile(root))?.services ?? [];
  const own = new Map<string, ServiceRecord[]>();
  let names: string[] = [];
  try {
    names = fs.readdirSync(recordsDir(root));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
  for (const name of names) {
    if (!name.endsWith('.json')) continue;
    const doc = readSlotFile<{ services: ServiceRecord[] }>(path.join(recordsDir(root), name));
    if (doc) own.set(name.slice(0, -'.json'.length), doc.services ?? []);
  }
  const out = new Map<string, ServiceRecord>();
  for (const r of legacy) if (!own.has(r.snap)) out.set(serviceKey(r.snap, r.app), r);
  for (const list of own.values()) for (const r of list) out.set(serviceKey(r.snap, r.app), r);
  return out;
}

/** One snap's file: its records' JSON texts by app, and the slots they go to. */
interface SnapFile {
  slots: SlotFile;
  texts: Map<string, string>;
  /** What was written last (a save of unchanged records writes nothing). */
  written: string | null;
}

/**
 * The writer of a root's records (one per supervisor: close it at shutdown).
 * Each snap has a file of its own, and each record's JSON is kept and made
 * again only for the records marked changed: with 1000 services, a state
 * change of one writes the ten records of its snap, not all 1000 (one file
 * of all records made a start or stop of everything quadratic: ~8000 saves
 * of 400 KB each for 1000 services).
 */
export class RecordsWriter {
  private readonly snaps = new Map<string, SnapFile>();
  private readonly dirty = new Map<string, Map<string, ServiceRecord>>();
  private legacyRemoved = false;

  constructor(readonly root: string) {}

  /** This record changed: it is written at the next flush (with the rest of its snap's records, as they were last written). */
  mark(record: ServiceRecord): void {
    let m = this.dirty.get(record.snap);
    if (!m) this.dirty.set(record.snap, (m = new Map()));
    m.set(record.app, record);
  }

  /** Writes the snaps with records marked changed since the last flush. */
  flush(): void {
    const dirty = [...this.dirty];
    this.dirty.clear();
    for (const [snap, records] of dirty) {
      const f = this.file(snap);
      for (const [app, r] of records) f.texts.set(app, JSON.stringify(r));
      this.write(snap, f);
    }
  }

  /** The records of `snap` are exactly these from now on (none: its file goes). Written now. */
  setSnap(snap: string, records: Iterable<ServiceRecord>): void {
    this.dirty.delete(snap);
    const list = [...records];
    if (list.length === 0) {
      this.removeSnap(snap);
      return;
    }
    const f = this.file(snap);
    f.texts.clear();
    for (const r of list) f.texts.set(r.app, JSON.stringify(r));
    this.write(snap, f);
  }

  /**
   * Writes every record: these are all there are. Files of snaps without a
   * record are removed, and so is the single file of older supervisors.
   */
  saveAll(records: Iterable<ServiceRecord>): void {
    const bySnap = new Map<string, ServiceRecord[]>();
    for (const r of records) {
      const list = bySnap.get(r.snap) ?? [];
      list.push(r);
      bySnap.set(r.snap, list);
    }
    for (const [snap, list] of bySnap) this.setSnap(snap, list);
    let names: string[] = [];
    try {
      names = fs.readdirSync(recordsDir(this.root));
    } catch {
      // none yet
    }
    for (const name of names) {
      const m = /^(.*)\.json$/.exec(name);
      if (m && !bySnap.has(m[1])) this.removeSnap(m[1]);
    }
    if (!this.legacyRemoved) {
      // Every record is in the per-snap files now.
      for (const f of [recordsFile(this.root), otherSlot(recordsFile(this.root))]) fs.rmSync(f, { force: true });
      this.legacyRemoved = true;
    }
  }

  close(): void {
    for (const f of this.snaps.values()) f.slots.close();
    this.snaps.clear();
  }

  private file(snap: string): SnapFile {
    let f = this.snaps.get(snap);
    if (!f) {
      fs.mkdirSync(recordsDir(this.root), { recursive: true });
      f = { slots: new SlotFile(path.join(recordsDir(this.root), `${snap}.json`)), texts: new Map(), written: null };
      this.snaps.set(snap, f);
    }
    return f;
  }

  private write(snap: string, f: SnapFile): void {
    const services = [...f.texts.keys()].sort().map((app) => f.texts.get(app)!).join(',\n');
    if (services === f.written) return;
    f.written = services;
    f.slots.writeText((seq) => `{"seq":${seq},"services":[\n${services}\n]}`);
  }

  private removeSnap(snap: string): void {
    this.dirty.delete(snap);
    const f = this.snaps.get(snap);
    f?.slots.close();
    this.snaps.delete(snap);
    const file = path.join(recordsDir(this.root), `${snap}.json`);
    for (const p of [file, otherSlot(file)]) fs.rmSync(p, { force: true });
  }
}

export function recordsWriter(root: string): RecordsWriter {
  return new RecordsWriter(root);
}

/** Writes every record (all there are), as a new supervisor or a test does. */
export function saveRecords(writer: RecordsWriter, records: Iterable<ServiceRecord>): void {
  writer.saveAll(records);
}
