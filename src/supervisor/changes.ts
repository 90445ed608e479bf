// changes.ts: refresh, revert and remove as changes (see change-runner.ts): the
// steps of SPEC 5 and 7, in that order, each with its undo. The refresh is
// the heart of snapproc: enduring services are never touched (not even by an
// undo), restart-mode services are stopped by stop-mode, signal-mode services
// are told to upgrade in place once `current` points at the new revision and
// followed until their successor runs it, and any failure before the new
// revision is linked leaves the snap exactly as it was. The hand-over itself
// (signal, follow, drain, roll back) is in handover.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { ChangeRecord, crashPoint, runChange, Step } from './change-runner';
import { handOver, type HandoverSettings } from './handover';
import { classifyCgroup } from '../process/classify';
import { readEvent } from '../kernel/cgroupfs';
import { protectData, unprotectData } from '../snap/data-readonly';
import { findSnapCgroups } from '../process/find-cgroups';
import { SnapprocError } from '../util/errors';
import { killCgroup } from '../kernel/kill';
import { snapProcesses } from '../process/process-table';
import { snapYamlOfAsync } from '../snap/snap-from-path';
import { launchDir, retireLaunchDir } from '../snap/launch-files';
import { refreshSignal, type SnapYaml } from '../snap/snap-yaml';
import { logLine } from '../snap/app-logs';
import type { Service } from './service';
import type { ChangeHost } from './change-host';
import type { FlushQueue } from '../util/atomic-file';

export interface RefreshData {
  snap: string;
  source: string | null;
  ignoreRunning: boolean;
  from: string;
  to: string | null;
  /** Services of `from` stopped in step 3 (started again by its undo). */
  stopped: string[];
  /** Services of `from` that were not running when the refresh began (failed or stopped before it). */
  wasDown?: string[];
  /** Services left running with refresh-mode endure. */
  enduring: string[];
  /** Services left running to be signalled once `to` is current. */
  signalled: string[];
  /** How each of them is signalled and stopped: from revision `from`, whose process it is. */
  signalModes: Record<string, HandoverSettings>;
  movedAside: string | null;
  dataCopied: boolean;
  /** $SNAP_DATA of `from` is mounted read-only. */
  protected: boolean;
  /** Services started in step 8 (stopped by its undo). */
  started: string[];
  handedOver: string[];
  fellBack: string[];
  /** Signal-mode services whose successor failed while the old main served on (the refresh is undone). */
  rolledBack: string[];
  pruned: string[];
}

function newId(kind: string, snap: string): string {
  return `${new Date().toISOString().replace(/[:.]/g, '-')}-${kind}-${snap}-${randomBytes(2).toString('hex')}`;
}

export function newChange<D>(kind: string, snap: string, steps: Step<D>[], pointOfNoReturn: number, data: D): ChangeRecord<D> {
  return {
    id: newId(kind, snap),
    kind,
    snap,
    status: 'doing',
    pointOfNoReturn,
    steps: steps.map((s) => ({ name: s.name, status: 'todo' })),
    data,
    startedAt: new Date().toISOString(),
  };
}

/** Apps of `snap` (other than services) that run now, unless they may keep running. */
function busyApps(sup: ChangeHost, instance: string, yaml: SnapYaml): { apps: string[]; pids: number[] } {
  const apps = new Set<string>();
  const pids: number[] = [];
  for (const cg of findSnapCgroups(instance, { under: sup.cgroupParent })) {
    if (cg.kind !== 'app') continue;
    const app = yaml.apps[cg.app];
    if (app && !app.isService && app.refreshMode === 'ignore-running') continue;
    let procs;
    try {
      procs = classifyCgroup(cg.path).processes;
    } catch {
      continue;
    }
    if (procs.length === 0) continue;
    apps.add(cg.app);
    pids.push(...procs.map((p) => p.pid));
  }
  return { apps: [...apps].sort(), pids: pids.sort((a, b) => a - b) };
}

/**
 * Starts a service for a change; when it does not come up, stops what is
 * left of it (and any restart its restart-condition scheduled) before the
 * change is undone: an undo must not race a restart of the failed service.
 */
async function startOrStop(svc: Service, leaveFailed = false): Promise<void> {
  try {
    await svc.start();
  } catch (err) {
    if (!leaveFailed) await svc.stop({ keepWanted: true }).catch(() => undefined);
    throw err;
  }
}

export function refreshSteps(sup: ChangeHost): Step<RefreshData>[] {
  const store = sup.store;
  const say = (d: RefreshData, line: string) => logLine(sup.changeLog(d.snap), line);
  return [
    {
      name: 'validate',
      journalsFirst: true,
      async do(d, ctx) {
        const fromYaml = store.readSnapYaml(d.snap, d.from);
        if (!d.ignoreRunning) {
          const busy = busyApps(sup, d.snap, fromYaml);
          if (busy.apps.length) {
            throw new SnapprocError('ERR_SNAPPROC_SNAP_BUSY', `snap "${d.snap}" has running apps (${busy.apps.join(', ')}), pids: ${busy.pids.join(',')}`);
          }
        }
        if (d.to === null) {
          if (!d.source) throw new SnapprocError('ERR_SNAPPROC_USAGE', `nothing to refresh ${d.snap} from: give --from PATH`);
          // The name is checked before anything is written: a snap of another name is no refresh of this one.
          const { name } = await snapYamlOfAsync(d.source);
          const expected = d.snap.split('_')[0];
          if (name !== expected) throw new SnapprocError('ERR_SNAPPROC_USAGE', `${d.source} is snap "${name}", not "${expected}"`);
          // The number reaches the journal before anything is written under it:
          // a crash anywhere in the copy leaves files the undo knows to remove.
          d.to = store.nextRevision(d.snap);
          await ctx.save();
          // Flushed with the journal before the old revision is unlinked (ctx.batch).
          await store.addRevision(d.source, { instanceKey: store.get(d.snap)?.instanceKey || undefined, revision: d.to, batch: ctx.batch ?? undefined });
          crashPoint('validate', 'written');
        } else {
          await ctx.save();
        }
        await sup.writeLaunchFiles(d.snap, d.to, ctx.batch);
        const v = store.readSnapYaml(d.snap, d.to).version;
        return `validate ${d.snap} ${v} (${d.to})`;
      },
      async undo(d) {
        if (d.to && d.to !== d.from) {
          store.removeRevision(d.snap, d.to);
          fs.rmSync(launchDir(sup.root, d.snap, d.to), { recursive: true, force: true });
        }
      },
    },
    {
      name: 'pre-refresh',
      writes: false,
      async do(d) {
        const r = await sup.runHook(d.snap, d.from, 'pre-refresh', (l) => say(d, l));
        return r.ran ? `pre-refresh hook of ${d.from}` : `no pre-refresh hook in ${d.from}`;
      },
    },
    {
      name: 'stop-services',
      writes: false,
      async do(d) {
        const toYaml = store.readSnapYaml(d.snap, d.to!);
        const parts: string[] = [];
        for (const svc of sup.servicesOf(d.snap).reverse()) {
          const app = svc.record.app;
          const still = toYaml.apps[app]?.isService === true;
          const mode = svc.app.refreshMode ?? 'restart';
          if (still && mode === 'endure') {
            if (!d.enduring.includes(app)) d.enduring.push(app);
            parts.push(`${app} (endure)`);
            continue;
          }
          const sig = refreshSignal(mode);
          if (still && sig) {
            if (!d.signalled.includes(app)) d.signalled.push(app);
            d.signalModes[app] = { ...sig, stopMode: svc.app.stopMode, stopTimeoutMs: svc.app.stopTimeoutMs, drainSignal: svc.app.drainSignal ?? null };
            parts.push(`${app} (${mode} later)`);
            continue;
          }
          const t0 = performance.now();
          if (!svc.mainAlive() && !(d.wasDown ??= []).includes(app)) d.wasDown.push(app);
          // keepWanted: the service is meant to run, in the new revision.
          const r = await svc.stop({ keepWanted: true });
          if (!d.stopped.includes(app)) d.stopped.push(app);
          parts.push(`${app} (${r.mode}${still ? '' : ', gone from ' + d.to} ${Math.round(performance.now() - t0)} ms)`);
        }
        return `stop services of ${d.from}: ${parts.join(', ') || 'none'}`;
      },
      async undo(d) {
        // `from` is current again (later undos relinked it): start what this step stopped, nothing else.
        sup.syncServices(d.snap, d.from);
        for (const svc of sup.servicesOf(d.snap)) {
          if (d.stopped.includes(svc.record.app)) await svc.start().catch((e) => say(d, `undo: ${(e as Error).message}`));
        }
      },
    },
    {
      name: 'unlink-copy-data',
      async do(d, ctx) {
        store.unlinkCurrent(d.snap);
        let how = '';
        if (!d.dataCopied) {
          // Flushed with the journal before the link.
          const r = await store.copyData(d.snap, d.from, d.to!, { batch: ctx.batch ?? undefined, say: (l) => say(d, l) });
          d.movedAside = r.movedAside ?? null;
          d.dataCopied = true;
          // From a standby copy (../snap/standby.ts): what its checking pass kept and redid.
          if (r.standby) how = ` (standby copy: ${r.standby.kept} kept, ${r.standby.recreated} made again, ${r.standby.removed} removed, ${r.standby.fixed + r.standby.retimed} fixed, checked in ${r.standby.ms.toFixed(1)} ms)`;
        }
        return `unlink ${d.from}, copy $SNAP_DATA ${d.from} -> ${d.to}${how}`;
      },
      async undo(d) {
        if (d.dataCopied || d.movedAside) {
          store.removeData(d.snap, d.to!);
          if (d.movedAside) store.restoreData(d.snap, d.to!, d.movedAside);
        }
        d.dataCopied = false;
        d.movedAside = null;
        store.linkCurrent(d.snap, d.from);
      },
    },
    {
      name: 'protect-old-data',
      writes: false, // a mount, gone with a reboot
      async do(d) {
        const yaml = store.readSnapYaml(d.snap, d.from);
        if (yaml.confinement !== 'strict') return `$SNAP_DATA of ${d.from} stays writable (${yaml.confinement} confinement)`;
        if (d.enduring.length === 0 && d.signalled.length === 0) return `nothing runs from ${d.from}: $SNAP_DATA left as is`;
        if (d.signalled.length) return `$SNAP_DATA of ${d.from} turns read-only after the hand-over`;
        protectData(store.paths(d.snap, d.from).data);
        d.protected = true;
        return `$SNAP_DATA of ${d.from} read-only for ${d.enduring.join(', ')}`;
      },
      async undo(d) {
        unprotectData(store.paths(d.snap, d.from).data);
        d.protected = false;
      },
    },
    {
      name: 'link',
      async do(d, ctx) {
        // Flushed before the journal says the refresh is done (ctx.batch), at the latest.
        store.linkCurrent(d.snap, d.to!, { batch: ctx.batch ?? undefined });
        return `link ${d.snap} ${d.to}`;
      },
      async undo(d) {
        store.unlinkCurrent(d.snap);
      },
    },
    {
      name: 'post-refresh',
      writes: false,
      async do(d) {
        const r = await sup.runHook(d.snap, d.to!, 'post-refresh', (l) => say(d, l));
        return r.ran ? `post-refresh hook of ${d.to}` : `no post-refresh hook in ${d.to}`;
      },
    },
    {
      name: 'start-services',
      writes: false,
      async do(d) {
        const parts: string[] = [];
        sup.syncServices(d.snap, d.to!);
        for (const svc of sup.servicesOf(d.snap)) {
          const app = svc.record.app;
          if (d.signalled.includes(app) && !d.handedOver.includes(app) && !d.fellBack.includes(app)) continue;
          if (d.enduring.includes(app) && svc.mainAlive()) {
            parts.push(`${app} endures (PID ${svc.record.mainPid})`);
            continue;
          }
          if (!svc.record.wanted) continue;
          if (svc.mainAlive()) continue;
          const t0 = performance.now();
          try {
            await startOrStop(svc, (d.wasDown ?? []).includes(app));
          } catch (err) {
            // Not running before the refresh either: B made nothing worse; say so, do not undo.
            if (!(d.wasDown ?? []).includes(app)) throw err;
            parts.push(`${app} did not come up (${(err as Error).message}); it was not running before the refresh either`);
            continue;
          }
          if (!d.started.includes(app)) d.started.push(app);
          parts.push(`${app} started (PID ${svc.record.mainPid ?? '-'}, ${Math.round(performance.now() - t0)} ms)`);
        }
        for (const svc of sup.servicesOf(d.snap)) {
          const app = svc.record.app;
          if (!d.signalled.includes(app) || d.handedOver.includes(app) || d.fellBack.includes(app)) continue;
          // A's settings: the process being told to upgrade is A's.
          const sig = d.signalModes[app] ?? { ...refreshSignal(svc.app.refreshMode)!, stopMode: svc.app.stopMode, stopTimeoutMs: svc.app.stopTimeoutMs, drainSignal: svc.app.drainSignal ?? null };
          const files = { to: svc.pidFile(d.to!), from: svc.pidFile(d.from) };
          const r = await handOver(svc, d.from, d.to!, sig, files);
          if (r.kind === 'already') {
            d.handedOver.push(app);
            parts.push(`${app}: already handed over to ${r.newMain} (${d.to})`);
          } else if (r.kind === 'handed-over') {
            d.handedOver.push(app);
            parts.push(`${app}: ${sig.signal} -> main ${r.oldMain} handed over to ${r.newMain} (${d.to}, ${r.how}) in ${r.ms} ms; drain: ${r.drain}`);
          } else if (r.kind === 'rolled-back') {
            // The undo relinks `from`; the old main, untouched, serves on.
            (d.rolledBack ??= []).push(app);
            throw new SnapprocError('ERR_SNAPPROC_HANDOVER_FAILED', `${svc.name}: ${r.why}; refresh undone, main process ${r.oldMain} of ${d.from} serves on untouched`);
          } else {
            d.fellBack.push(app);
            await startOrStop(svc);
            if (!d.started.includes(app)) d.started.push(app);
            parts.push(`${app}: ${r.why}; restarted into ${d.to} instead (PID ${svc.record.mainPid})`);
          }
        }
        // The hand-overs are over: now nothing of the old revision writes its data.
        if (d.signalled.length && !d.protected && store.readSnapYaml(d.snap, d.from).confinement === 'strict') {
          const stillOld = sup.servicesOf(d.snap).some((s) => d.enduring.includes(s.record.app) && s.mainAlive());
          if (stillOld || d.signalled.length) {
            protectData(store.paths(d.snap, d.from).data);
            d.protected = true;
          }
        }
        return `start services of ${d.to}: ${parts.join('; ') || 'none'}`;
      },
      async undo(d) {
        // What this step started, and what it handed over to `to`, goes; the
        // undo of stop-services then starts them again from `from`.
        for (const svc of sup.servicesOf(d.snap).reverse()) {
          const app = svc.record.app;
          if (!d.started.includes(app) && !d.handedOver.includes(app)) continue;
          // A failure here must show: starting `from` next to a running `to` would clash.
          await svc.stop({ keepWanted: true });
          if (d.handedOver.includes(app) && !d.stopped.includes(app)) d.stopped.push(app);
        }
        d.started = [];
        d.handedOver = [];
      },
    },
    {
      name: 'prune',
      // Best effort: the refresh is complete; a revision that cannot go now goes at the next refresh.
      async do(d, ctx) {
        try {
          return await pruneRevisions(d, ctx.batch);
        } catch (err) {
          return `prune: ${(err as Error).message} (left for the next refresh)`;
        }
      },
    },
  ];

  /** Drops revisions beyond the retained ones, never one that something still executes. */
  async function pruneRevisions(d: RefreshData, batch: FlushQueue | null): Promise<string> {
    const keep = new Set([d.from, d.to!]);
    // The refresh is done: B's data that was moved aside will not be restored.
    if (d.movedAside) store.discardMovedAside(d.snap, d.to!, d.movedAside);
    // An enduring process of an older revision keeps that revision.
    // So does a process whose working directory is in it (a server that re-executed
    // itself in place keeps the directory it was first started in).
    const here = store.paths(d.snap, d.to!);
    const revDirs = [here.snap, here.data].map((p) => path.dirname(p) + '/');
    for (const p of snapProcesses(d.snap, { under: sup.cgroupParent })) {
      for (const proc of p.processes) {
        if (proc.revision) keep.add(proc.revision);
        let cwd: string;
        try {
          cwd = fs.readlinkSync(`/proc/${proc.pid}/cwd`);
        } catch {
          continue;
        }
        for (const dir of revDirs) if (cwd.startsWith(dir)) keep.add(cwd.slice(dir.length).split('/')[0]);
      }
    }
    const all = store.get(d.snap)!.revisions.map((r) => r.revision);
    // As snapd: the revisions after `from` in the sequence (left by a revert) go first, then the oldest beyond retain.
    const at = all.indexOf(d.from);
    const ahead = at < 0 ? [] : all.slice(at + 1).filter((r) => r !== d.to);
    const revisions = all.filter((r) => !ahead.includes(r));
    // And what a crash in an earlier prune left unlisted with its files still there.
    const droppable = [...ahead, ...revisions.slice(0, Math.max(0, revisions.length - sup.retain)), ...store.unlistedRevisions(d.snap)].filter((r) => !keep.has(r));
    for (const rev of droppable) {
      unprotectData(store.paths(d.snap, rev).data);
      // Renamed to the trash now, deleted after the refresh has answered.
      store.retireRevision(d.snap, rev, { batch: batch ?? undefined, current: d.to! });
      retireLaunchDir(sup.root, d.snap, rev);
    }
    // The record's `current` (informational), unless a retirement wrote it: the link step left it (linkCurrent with a batch).
    if (batch) store.recordCurrent(d.snap, d.to!);
    if (droppable.length || d.movedAside) sup.sweepTrash(d.snap);
    d.pruned = droppable;
    return d.pruned.length ? `prune ${d.pruned.join(', ')}` : 'prune: nothing beyond the retained revisions';
  }
}

export interface RevertData {
  snap: string;
  from: string;
  to: string;
  stopped: string[];
  enduring: string[];
  started: string[];
  /** Services that were not running when the revert began. */
  wasDown?: string[];
}

export function revertSteps(sup: ChangeHost): Step<RevertData>[] {
  const store = sup.store;
  return [
    {
      name: 'stop-services',
      writes: false,
      async do(d) {
        const toYaml = store.readSnapYaml(d.snap, d.to);
        const parts: string[] = [];
        for (const svc of sup.servicesOf(d.snap).reverse()) {
          const app = svc.record.app;
          if (toYaml.apps[app]?.isService && svc.app.refreshMode === 'endure') {
            if (!d.enduring.includes(app)) d.enduring.push(app);
            continue;
          }
          if (!svc.mainAlive() && !(d.wasDown ??= []).includes(app)) d.wasDown.push(app);
          await svc.stop({ keepWanted: true });
          if (!d.stopped.includes(app)) d.stopped.push(app);
          parts.push(app);
        }
        return `stop services of ${d.from}: ${parts.join(', ') || 'none'}`;
      },
      async undo(d) {
        sup.syncServices(d.snap, d.from);
        for (const svc of sup.servicesOf(d.snap)) if (d.stopped.includes(svc.record.app)) await svc.start().catch(() => undefined);
      },
    },
    {
      name: 'link',
      async do(d) {
        // Going back to `to`: its data is its own again (lift the read-only mount of a past refresh).
        unprotectData(store.paths(d.snap, d.to).data);
        store.unlinkCurrent(d.snap);
        store.linkCurrent(d.snap, d.to);
        return `link ${d.snap} ${d.to} (data as ${d.to} left it)`;
      },
      async undo(d) {
        store.unlinkCurrent(d.snap);
        store.linkCurrent(d.snap, d.from);
      },
    },
    {
      name: 'start-services',
      writes: false,
      async do(d) {
        sup.syncServices(d.snap, d.to);
        const parts: string[] = [];
        for (const svc of sup.servicesOf(d.snap)) {
          if (!svc.record.wanted || svc.mainAlive()) continue;
          try {
            await startOrStop(svc, (d.wasDown ?? []).includes(svc.record.app));
          } catch (err) {
            if (!(d.wasDown ?? []).includes(svc.record.app)) throw err;
            parts.push(`${svc.record.app} did not come up (${(err as Error).message}); it was not running before the revert either`);
            continue;
          }
          d.started.push(svc.record.app);
          parts.push(`${svc.record.app} (PID ${svc.record.mainPid ?? '-'})`);
        }
        return `start services of ${d.to}: ${parts.join(', ') || 'none'}`;
      },
      async undo(d) {
        for (const svc of sup.servicesOf(d.snap).reverse()) if (d.started.includes(svc.record.app)) await svc.stop({ keepWanted: true }).catch(() => undefined);
      },
    },
  ];
}

export interface RemoveData {
  snap: string;
  purge: boolean;
  revision: string | null;
  killed: number;
  /** Services wanted up when the remove began: a failed remove starts them again. */
  wanted?: string[];
}

export function removeSteps(sup: ChangeHost): Step<RemoveData>[] {
  const store = sup.store;
  return [
    {
      name: 'stop-services',
      writes: false,
      async do(d) {
        const parts: string[] = [];
        for (const svc of sup.servicesOf(d.snap).reverse()) {
          const r = await svc.stop();
          parts.push(`${svc.record.app} (${r.mode})`);
        }
        return `stop services: ${parts.join(', ') || 'none'}`;
      },
      async undo(d) {
        // Only a failure comes here (a crash completes a remove): what was up is up again.
        for (const svc of sup.servicesOf(d.snap)) {
          if (!d.wanted?.includes(svc.record.app) || svc.mainAlive()) continue;
          await svc.start().catch(() => undefined);
        }
      },
    },
    {
      name: 'kill-everything',
      async do(d) {
        // Everything left in any cgroup of the snap snapproc made: children a plain
        // stop-mode left, app scopes, hook scopes, escapees, fork loops.
        let left = 0;
        for (const cg of findSnapCgroups(d.snap, { under: sup.cgroupParent })) {
          if (readEvent(cg.path, 'populated') === 0) continue;
          left += classifyCgroup(cg.path).processes.length;
          const r = await killCgroup(cg.path, { timeoutMs: 10_000 });
          if (!r.empty) throw new SnapprocError('ERR_SNAPPROC_KILL', `${cg.path} is not empty 10 s after SIGKILL`);
        }
        d.killed = left;
        return `kill what was left: ${left} process${left === 1 ? '' : 'es'}`;
      },
    },
    {
      name: 'remove-hook',
      async do(d) {
        if (!d.revision) return 'no remove hook';
        try {
          const r = await sup.runHook(d.snap, d.revision, 'remove', (l) => logLine(sup.changeLog(d.snap), l));
          return r.ran ? `remove hook of ${d.revision}` : 'no remove hook';
        } catch (err) {
          // As snapd: a failing remove hook does not keep the snap installed.
          return `remove hook failed (ignored): ${(err as Error).message}`;
        }
      },
    },
    {
      name: 'remove-files',
      async do(d) {
        for (const r of store.get(d.snap)?.revisions ?? []) unprotectData(store.paths(d.snap, r.revision).data);
        sup.forgetServices(d.snap);
        store.removeSnap(d.snap, { purge: d.purge });
        sup.removeSnapState(d.snap);
        return `remove revisions and data${d.purge ? ' (purged common)' : ''}`;
      },
    },
  ];
}

export { runChange };
