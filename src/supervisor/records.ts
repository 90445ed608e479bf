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
  /** /proc start time of mainPid (clock ticks since boot). */
  mainStartTime: number | null;
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

/** The writer of a root's records (one per supervisor: close it at shutdown). */
export function recordsWriter(root: string): SlotFile {
  return new SlotFile(recordsFile(root));
}

export function saveRecords(writer: SlotFile, records: Iterable<ServiceRecord>): void {
  const services = [...records].sort((a, b) => serviceKey(a.snap, a.app).localeCompare(serviceKey(b.snap, b.app)));
  // Not flushed: after a power loss no service runs, so nothing is left to re-adopt.
  // Compact: with 1000 services the indented form is twice the bytes to write at every change.
  writer.write({ services }, { compact: true });
}
