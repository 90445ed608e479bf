// records.ts: what the supervisor runs, on disk (R/state/services.json), so
// that a new supervisor re-adopts running services after the old one died
// instead of stopping or duplicating them. Plain JSON, as s6-svstat output is
// plain: main PID (with start time, to tell it from a reused PID), state,
// restarts, last exit. Written in place in two slots that take turns
// (../util/slot-file.ts): a crash mid-write leaves the previous record.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readSlotFile, SlotFile } from '../util/slot-file';

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

export function recordsFile(root: string): string {
  return path.join(root, 'state', 'services.json');
}

export function serviceKey(snap: string, app: string): string {
  return `${snap}.${app}`;
}

export function loadRecords(root: string): Map<string, ServiceRecord> {
  const doc = readSlotFile<{ services: ServiceRecord[] }>(recordsFile(root));
  return new Map((doc?.services ?? []).map((r) => [serviceKey(r.snap, r.app), r]));
}

/**
 * The writer of a root's records (one per supervisor: close it at shutdown).
 * Each record's JSON is kept and made again only for the services marked
 * changed: with 1000 services, a state change of one does not stringify and
 * sort the other 999 (which made a stop of all quadratic).
 */
export class RecordsWriter {
  private readonly slots: SlotFile;
  private readonly texts = new Map<string, string>();
  private readonly dirty = new Set<string>();
  private all = true;

  constructor(root: string) {
    this.slots = new SlotFile(recordsFile(root));
  }

  /** The record of this service changed (undefined: any may have). */
  mark(key?: string): void {
    if (key === undefined) this.all = true;
    else this.dirty.add(key);
  }

  /** Writes every record (in place, not flushed: after a power loss no service runs, so nothing is left to re-adopt). */
  save(records: Iterable<ServiceRecord>): void {
    const keep = new Map<string, string>();
    for (const r of records) {
      const key = serviceKey(r.snap, r.app);
      let text = this.all || this.dirty.has(key) ? undefined : this.texts.get(key);
      if (text === undefined) text = JSON.stringify(r);
      keep.set(key, text);
    }
    this.texts.clear();
    for (const key of [...keep.keys()].sort()) this.texts.set(key, keep.get(key)!);
    this.dirty.clear();
    this.all = false;
    const services = [...this.texts.values()].join(',\n');
    this.slots.writeText((seq) => `{"seq":${seq},"services":[\n${services}\n]}`);
  }

  close(): void {
    this.slots.close();
  }
}

export function recordsWriter(root: string): RecordsWriter {
  return new RecordsWriter(root);
}

export function saveRecords(writer: RecordsWriter, records: Iterable<ServiceRecord>): void {
  writer.save(records);
}
