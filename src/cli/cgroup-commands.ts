// cgroup-commands.ts: the CLI commands that act on cgroups directly and need
// no supervisor: ps, signal, freeze, thaw, stop (SPEC 8: they work where
// snapd/systemd or a test made the cgroups, and start no supervisor).
import * as fs from 'node:fs';
import { loadRecords } from '../supervisor/records';
import type { GlobalOptions } from './common';
import { printTable, requireRoot } from './common';
import { cgroupPids, type MainRecord } from '../process/classify';
import { findSnapCgroups, SnapCgroup } from '../process/find-cgroups';
import { durationMs } from '../util/duration';
import { SnapprocError, usageError } from '../util/errors';
import { freezeCgroup, thawCgroup } from '../kernel/freeze';
import { cgroup2Mount, readEvent } from '../kernel/cgroupfs';
import { pidFromNamespace, pidNamespaceOf, revisionOf, liveStartTimeOf } from '../kernel/procfs';
import { identityOf } from '../kernel/process-identity';
import { checkInstanceName, parseSnapTarget } from '../snap/names';
import { signalApp } from '../process/signal-app';
import { snapProcesses } from '../process/process-table';
import { parseStopMode, stopCgroup, StopMode } from '../process/stop';
import { parseSignal } from '../kernel/signal-names';

function cgroupsOf(instance: string, app?: string, kinds: SnapCgroup['kind'][] = ['service', 'app', 'hook']): SnapCgroup[] {
  const all = findSnapCgroups(instance).filter((c) => kinds.includes(c.kind) && (app === undefined || c.app === app));
  if (all.length === 0) {
    const what = app ? `${instance}.${app}` : instance;
    throw new SnapprocError('ENOENT', `no cgroup of snap "${what}" under ${cgroup2Mount()} (is it running?)`);
  }
  return all;
}

interface RecordSummary { snap: string; app: string; cgroup: string; state: string; mainPid: number | null; mainStartTime: number | null; pidns?: string | null; mainIdentity?: string | null; restarts: number; revision: string; reason: string | null }

/** The supervisor's records of its services (state, restarts, main process), if one has run under this root. */
function loadServiceRecords(root: string): RecordSummary[] {
  try {
    return [...loadRecords(root).values()];
  } catch {
    return [];
  }
}

/**
 * Main processes by cgroup as the supervisor records them (verified against
 * the cgroup by classify); null where it records none (then none is
 * guessed). A record made in another PID namespace (the supervisor is a
 * container's PID 1) is translated to ours, by its pidfs identity or else
 * through NSpid: `mainPid` of such a record is rewritten to the PID we see,
 * or null when it runs no more.
 */
function recordedMains(records: RecordSummary[]): Map<string, MainRecord | null> {
  const out = new Map<string, MainRecord | null>();
  for (const s of records) {
    if (s.mainPid !== null && s.pidns) {
      let members: Iterable<number> = [];
      try {
        members = cgroupPids(s.cgroup);
      } catch {
        // no cgroup: nothing runs
      }
      // The pidfs identity is the same in every namespace: it finds the main
      // whichever side recorded it (also a service in a deeper namespace than
      // its supervisor); NSpid is for kernels without pidfs.
      const byIdentity = s.mainIdentity && s.pidns !== pidNamespaceOf('self') ? [...members].find((c) => identityOf(c) === s.mainIdentity) : undefined;
      s.mainPid = byIdentity ?? pidFromNamespace(s.mainPid, s.pidns, members);
    }
    out.set(s.cgroup, s.mainPid === null ? null : { pid: s.mainPid, startTime: s.mainStartTime ?? undefined, identity: s.mainIdentity });
  }
  return out;
}

export function psCommand(g: GlobalOptions, name: string | undefined, opts: { json?: boolean }): void {
  if (name !== undefined) checkInstanceName(name);
  cgroup2Mount();
  const records = loadServiceRecords(g.root).filter((r) => name === undefined || r.snap === name);
  const apps = snapProcesses(name, { mainRecords: recordedMains(records) });
  if (opts.json) {
    process.stdout.write(JSON.stringify({ apps }) + '\n');
    return;
  }
  if (records.length) {
    // What the supervisor knows: state, main process and restarts of each service.
    const rows = [['SERVICE', 'STATE', 'MAIN', 'RESTARTS', 'REV', 'NOTE']];
    for (const r of records) {
      // The state the kernel shows (a frozen cgroup), and the revision the main process really executes (an enduring one runs the old).
      let state = r.state;
      try {
        if (readEvent(r.cgroup, 'frozen') === 1 && readEvent(r.cgroup, 'populated') === 1) state = 'frozen';
      } catch {
        // no cgroup: nothing runs
      }
      const runs = r.mainPid !== null && liveStartTimeOf(r.mainPid) === r.mainStartTime ? revisionOf(r.mainPid) : null;
      rows.push([`${r.snap}.${r.app}`, state, r.mainPid === null ? '-' : String(r.mainPid), String(r.restarts), runs ?? r.revision, runs && runs !== r.revision ? `runs ${runs}, current ${r.revision}${r.reason ? `; ${r.reason}` : ''}` : r.reason ?? '']);
    }
    printTable(rows);
    process.stdout.write('\n');
  }
  if (apps.length === 0) {
    process.stdout.write(name ? `no processes of snap "${name}"\n` : 'no snap processes\n');
    return;
  }
  const rows = [['APP', 'KIND', 'PID', 'PPID', 'PGID', 'ROLE', 'REV']];
  for (const a of apps) {
    for (const p of a.processes) {
      rows.push([`${a.snap}.${a.app}`, a.kind, String(p.pid), String(p.ppid), String(p.pgid), p.role, p.revision ?? '-']);
    }
  }
  printTable(rows);
}

export async function signalCommand(g: GlobalOptions, target: string, signal: string, opts: { all?: boolean }): Promise<void> {
  const { instance, app } = parseSnapTarget(target, { app: 'required', what: 'signal' }) as { instance: string; app: string };
  const sig = parseSignal(signal);
  requireRoot('snapproc signal');
  const cgroups = cgroupsOf(instance, app, ['service', 'app']);
  // The supervisor's record of the main process wins over a guess (after MAINPID= or a hand-over they differ).
  const mains = recordedMains(loadServiceRecords(g.root));
  for (const cg of cgroups) {
    const r = await signalApp(cg.path, sig.number, { all: opts.all, main: mains.get(cg.path) });
    if (r.freezeSkipped) process.stdout.write(`${instance}.${app}: the freeze did not complete within 1 s: signalled without it\n`);
    const who = r.target === 'cgroup' ? `${r.signalled} process${r.signalled === 1 ? '' : 'es'}` : r.mainPid === null ? 'no main process' : `main process ${r.mainPid}`;
    process.stdout.write(`${sig.name} -> ${instance}.${app} (${cg.kind}): ${r.signalled ? who : r.mainPid === null && r.target === 'main' ? 'nothing sent: main process already gone' : `nothing sent (${r.gone} already gone)`}\n`);
  }
}

export async function freezeCommand(_g: GlobalOptions, name: string, freeze: boolean): Promise<void> {
  const { instance, app } = parseSnapTarget(name);
  requireRoot(`snapproc ${freeze ? 'freeze' : 'thaw'}`);
  for (const cg of cgroupsOf(instance, app)) {
    const r = freeze ? await freezeCgroup(cg.path) : await thawCgroup(cg.path);
    if (!r.done) throw new SnapprocError('ETIMEDOUT', `${cg.path} did not report ${freeze ? 'frozen 1' : 'frozen 0'} within 5s`);
    process.stdout.write(`${freeze ? 'frozen' : 'thawed'} ${cg.path.split('/').pop()} (${r.durationMs.toFixed(1)} ms)\n`);
  }
}

export async function stopCommand(_g: GlobalOptions, name: string, opts: { mode?: string; timeout?: string }): Promise<void> {
  const mode: StopMode | undefined = opts.mode === undefined ? undefined : parseStopMode(opts.mode);
  const timeoutMs = opts.timeout === undefined ? undefined : durationMs(opts.timeout, (m) => usageError(`invalid --timeout: ${m}`));
  const { instance, app } = parseSnapTarget(name);
  requireRoot('snapproc stop');
  const services = cgroupsOf(instance, app, ['service']);
  for (const cg of services) {
    const r = await stopCgroup(cg.path, { mode, timeoutMs });
    const what = r.target === 'main' ? (r.mainPid === null ? 'nothing sent, main process already gone' : `main process ${r.mainPid}`) : `${r.signalled} process${r.signalled === 1 ? '' : 'es'}`;
    const end = r.isForcefullyTerminated ? `killed after ${r.timedOut ? 'timeout' : 'signal'}` : r.stopped ? 'stopped' : 'still running';
    process.stdout.write(`stopped ${instance}.${cg.app} (${r.mode}): ${r.signal} -> ${what}; ${end} in ${r.durationMs.toFixed(0)} ms\n`);
  }
}
