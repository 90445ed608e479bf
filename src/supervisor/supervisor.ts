// supervisor.ts: `snapproc daemon`, also embeddable in another Node program
// as `new Supervisor({ root }).start()`. It owns the services of the
// installed snaps: starts them into their cgroups in before/after order,
// watches their main processes, restarts them by restart-condition, holds
// their listening sockets, reads their notifications, reaps orphans as a
// child subreaper (or as PID 1), persists what it runs so that the next
// supervisor re-adopts it, and serves the control API.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { cgroup2Mount, cgroupOfPid, isInside, removeCgroupTree } from '../kernel/cgroupfs';
import { hasCode, SnapprocError, usageError } from '../util/errors';
import { runHook, type HookResult } from '../snap/hooks';
import { writeRevisionLaunchFiles } from '../snap/launch-files';
import { hookScopeName, serviceCgroupName } from '../process/cgroup-names';
import { findSnapCgroups } from '../process/find-cgroups';
import { native } from '../kernel/native';
import { isFrozen, thawCgroup } from '../kernel/freeze';
import { snapYamlOfAsync } from '../snap/snap-from-path';
import { checkInstanceName, validateAppName } from '../snap/names';
import { writeFileAtomic, type FlushQueue } from '../util/atomic-file';
import { FlushBatch } from '../util/flush-batch';
import { appEnvironment, snapctlDir, snapEnvironment } from '../snap/environment';
import { startOrder, type AppInfo, type SnapYaml } from '../snap/snap-yaml';
import { parseStopMode, type StopMode, type StopResult } from '../process/stop';
import { durationMs } from '../util/duration';
import { RevisionStore } from '../snap/revision-store';
import { StandbyJobs, type StandbyState } from '../snap/standby';
import { inhibit, release } from '../snap/inhibit';
import { ownChildPids, trackNodeChildren } from './children';
import { ControlServer, socketPath, type ControlLimits, type Method } from './control';
import { LogRotator, logLine } from '../snap/app-logs';
import { loadRecords, recordsWriter, saveRecords, serviceKey, type ServiceRecord } from './records';
import type { ChangeHost } from './change-host';
import { Service, type ServiceHost } from './service';
import { callerOf, describeAction, HookRuns, resolveServiceNames, type ServiceAction, type ServiceActionRequest } from './snapctl-server';
import type { RequestContext } from './control';
import type { InstallResult, RefreshResult } from './protocol';
import { FdHolder, type HeldFd } from './fd-holder';

/** systemd's FileDescriptorStoreMax for every service (systemd's default is 0: off; snapd sets none). */
export const FD_STORE_MAX = 64;
/** FDNAME=: what systemd accepts (printable ASCII, no ':', at most 255). */
const FDNAME = /^[\x21-\x39\x3b-\x7e]{1,255}$/;

export interface SupervisorOptions {
  /** State root R. */
  root: string;
  /** Cgroup under which service and scope cgroups are made (env SNAPPROC_CGROUP_PARENT; default <cgroup2>/snapproc.slice). */
  cgroupParent?: string;
  /** Turn SIGTERM/SIGINT into a shutdown (default true). As PID 1, services are stopped by stop-mode first. */
  handleSignals?: boolean;
  /** Rotate service logs above this size (default 1 MiB). */
  logMaxBytes?: number;
  /** Where to write the supervisor's own lines (default stderr). */
  log?: (line: string) => void;
  /** End the process after a `shutdown` request (what `snapproc daemon` does; an embedding program decides itself). */
  exitOnShutdown?: boolean;
  /** The control socket's limits on lines, slow and idle connections, unread output and connections (./control.ts). */
  controlLimits?: Partial<ControlLimits>;
  /**
   * Nice value for the supervisor's main thread, where stops, timeouts and
   * requests are handled (`snapproc daemon`: -5; default: left as it is).
   * Raised only from nice 0; the processes it starts (services, hooks, the
   * launcher) still start at nice 0 (SCHED_RESET_ON_FORK). Without it, a
   * service that saturates the CPU (a fork storm) delayed the SIGKILL at
   * its stop-timeout by up to 160 ms on 2 cores.
   */
  nice?: number;
  /**
   * Called once the supervisor has had no state-changing request for
   * IDLE_AFTER_MS after one: once per burst of requests, never while it
   * stays idle (no wake-ups). The daemon gives its memory back there
   * (./node-flags.ts compactMemory, which does so only when there is
   * enough to give back).
   */
  onIdle?: () => void;
}

/** How long after the last state-changing request the supervisor counts as idle (options.onIdle). */
export const IDLE_AFTER_MS = 500;

export function defaultCgroupParent(): string {
  return process.env.SNAPPROC_CGROUP_PARENT || path.join(cgroup2Mount(), 'snapproc.slice');
}

// Structurally a ServiceHost and a ChangeHost (what services and change steps
// may ask of it); the members only they use are marked internal (JSDoc), left out of the
// published declarations (tsconfig stripInternal), so the public surface is
// the documented one.
export class Supervisor {
  readonly root: string;
  readonly cgroupParent: string;
  /** @internal */
  readonly store: RevisionStore;
  /** @internal */
  readonly services = new Map<string, Service>();
  /** The same Service objects by snap, then app (start order): what one snap does costs the same however many others are installed. */
  private readonly servicesBySnap = new Map<string, Map<string, Service>>();
  /** @internal */
  notifySocket: string | null = null;
  private records = new Map<string, ServiceRecord>();
  private recordsFile;
  private lockFd: number | null = null;
  private control: ControlServer | null = null;
  private notifyHandle: number | null = null;
  private held = new Map<string, { fd: number; name: string }>();
  /** Each service's fd store (FDSTORE=1), by NAME.APP, in the order stored. */
  private stored = new Map<string, Array<{ name: string; fd: number }>>();
  private fdHolder: FdHolder;
  private reaped = new Map<number, number>();
  private rotator: LogRotator;
  private onSigchld = () => this.reap();
  private onStopSignal = (sig: NodeJS.Signals) => void this.handleStopSignal(sig);
  private say: (line: string) => void;
  private busy: Promise<unknown> = Promise.resolve();
  /** State-changing operations running or queued (ping reports it: "is it idle?"). */
  private pendingOperations = 0;
  private idleTimer: NodeJS.Timeout | null = null;
  private sweeping: Promise<void> = Promise.resolve();
  /** Standby copies of each snap's $SNAP_DATA, made in the background after a change (../snap/standby.ts). */
  private standbys: StandbyJobs;
  private savePending = false;
  private hookRuns = new HookRuns();
  /** Revisions kept per snap (SPEC 1: 2). */
  retain = 2;

  constructor(readonly options: SupervisorOptions) {
    this.root = path.resolve(options.root);
    this.cgroupParent = options.cgroupParent ?? defaultCgroupParent();
    this.store = new RevisionStore(this.root);
    this.recordsFile = recordsWriter(this.root);
    this.rotator = new LogRotator(options.logMaxBytes);
    this.say = options.log ?? ((line) => process.stderr.write(`snapproc: ${line}\n`));
    this.fdHolder = new FdHolder(this.root, this.cgroupParent, (l) => this.say(l));
    this.standbys = new StandbyJobs((snap, rev) => this.store.paths(snap, rev).data, (l) => this.say(l));
  }

  // ---------------------------------------------------------------- lifecycle

  async start(): Promise<void> {
    const mount = cgroup2Mount();
    // Every start would fail later (clone3: EBADF) with a parent that is no cgroup2 directory: say so now.
    const parent = path.resolve(this.cgroupParent);
    if (!isInside(parent, path.resolve(mount))) {
      throw new SnapprocError('ERR_SNAPPROC_CGROUP_PARENT', `cgroup parent ${this.cgroupParent} (SNAPPROC_CGROUP_PARENT) is not below the cgroup2 mount ${mount}`, { path: this.cgroupParent });
    }
    fs.mkdirSync(path.join(this.root, 'run'), { recursive: true, mode: 0o755 });
    fs.mkdirSync(path.join(this.root, 'state'), { recursive: true, mode: 0o755 });
    try {
      this.lockFd = native.lockFile(path.join(this.root, 'run', 'snapproc.lock'));
    } catch (err) {
      if (hasCode(err, 'EAGAIN', 'EACCES', 'EWOULDBLOCK')) {
        throw new SnapprocError('ERR_SNAPPROC_SUPERVISOR_RUNNING', `another snapproc supervisor is running for ${this.root} (it holds ${path.join(this.root, 'run', 'snapproc.lock')})`);
      }
      throw err;
    }
    // The one writer of R's record now (the lock is held): kept in memory, written in place.
    this.store.ownRecord();
    fs.mkdirSync(this.cgroupParent, { recursive: true });
    // `snapproc run` makes its scopes where this supervisor makes its cgroups, so that remove finds them.
    writeFileAtomic(path.join(this.root, 'run', 'cgroup-parent'), this.cgroupParent + '\n', 0o644, { durable: false });
    trackNodeChildren();
    if (process.pid !== 1) native.setChildSubreaper(true);
    this.raisePriority();
    process.on('SIGCHLD', this.onSigchld);
    if (this.options.handleSignals !== false) {
      process.on('SIGTERM', this.onStopSignal);
      process.on('SIGINT', this.onStopSignal);
    }
    this.notifySocket = path.join(this.root, 'run', 'notify.socket');
    this.notifyHandle = native.notifyListen(this.notifySocket, (pid, _uid, text, fds) => this.onNotify(pid, text, fds));
    this.recoverHeldFds();
    this.records = loadRecords(this.root);
    this.loadServices();
    // One file per snap from now on (also when the last supervisor wrote one file of all).
    this.saveAll();
    this.adoptRunning();
    await this.recoverChanges();
    // A recovery may have attached services (a crash between unlink and link
    // left no `current`): adopt what runs of them before starting the rest.
    this.adoptRunning();
    await this.startWanted();
    this.writeSnapctl();
    // What a crash left in the trash goes now, in the background.
    this.sweepTrash();
    // A standby copy of each snap's data, unless a complete one is there (what a crash left incomplete or used goes).
    for (const snap of this.store.list()) this.standbys.schedule(snap.name, snap.current, 0);
    this.control = new ControlServer(socketPath(this.root), this.methods(), this.options.controlLimits);
    await this.control.listen();
    this.say(`supervising ${this.services.size} service(s) under ${this.root} (cgroups in ${this.cgroupParent}), pid ${process.pid}`);
  }

  /** Stops serving. With `stopServices`, stops every service by stop-mode first (what PID 1 does). */
  async shutdown(options: { stopServices?: boolean } = {}): Promise<void> {
    this.control?.close();
    this.control = null;
    await this.standbys.close();
    if (options.stopServices) {
      for (const snap of this.store.list().reverse()) await this.stopSnap(snap.name, undefined, {}, true).catch((e) => this.say(`stopping ${snap.name}: ${e.message}`));
    }
    for (const svc of this.services.values()) svc.detach();
    this.saveAll();
    this.recordsFile.close();
    if (this.notifyHandle !== null) native.notifyClose(this.notifyHandle);
    this.notifyHandle = null;
    await this.fdHolder.settled();
    // Everything stopped: the holder goes too. Otherwise it stays, for the next supervisor.
    if (options.stopServices) await this.fdHolder.update([]);
    this.fdHolder.detach();
    for (const h of this.held.values()) fs.closeSync(h.fd);
    this.held.clear();
    for (const list of this.stored.values()) for (const e of list) fs.closeSync(e.fd);
    this.stored.clear();
    this.rotator.close();
    process.off('SIGCHLD', this.onSigchld);
    if (process.pid !== 1) native.setChildSubreaper(false);
    process.off('SIGTERM', this.onStopSignal);
    process.off('SIGINT', this.onStopSignal);
    this.store.releaseRecord();
    if (this.lockFd !== null) fs.closeSync(this.lockFd);
    this.lockFd = null;
  }

  private async handleStopSignal(sig: NodeJS.Signals): Promise<void> {
    // As a container's PID 1 the container ends with us: stop the snaps in order.
    // Otherwise leave the services running for the next supervisor to adopt.
    const stopServices = process.pid === 1;
    this.say(`${sig}: ${stopServices ? 'stopping all snaps, then exiting' : 'exiting; services keep running'}`);
    await this.shutdown({ stopServices });
    process.exit(0);
  }

  // ---------------------------------------------------------------- ServiceHost

  /**
   * @internal
   * Records are saved before anything else happens (in place, not flushed):
   * a crash right after a main process changed must find the new one on
   * disk, or the next supervisor would not re-adopt it. The changes of one
   * synchronous stretch (a start sets several fields) are written once, in
   * a microtask: before any timer, I/O callback or awaited step goes on, so
   * with 1000 services a start or stop does not rewrite every record per field.
   */
  changed(service: Service): void {
    // A service dropped meanwhile (removed, or gone from its snap's new
    // revision) settling late: its record must not bring back its snap's file.
    if (this.services.get(serviceKey(service.record.snap, service.record.app)) !== service) return;
    this.recordsFile.mark(service.record);
    if (this.savePending) return;
    this.savePending = true;
    queueMicrotask(() => {
      this.savePending = false;
      this.recordsFile.flush();
    });
  }

  /** @internal */
  reapedStatus(pid: number): number | undefined {
    this.reap();
    return this.reaped.get(pid);
  }

  /** @internal */
  socketsFor(service: Service): { fds: number[]; names: string[] } {
    const fds: number[] = [];
    const names: string[] = [];
    for (const sock of Object.values(service.app.sockets)) {
      const key = `${service.name}.${sock.name}`;
      let held = this.held.get(key);
      if (!held) {
        let fd: number;
        if (sock.kind === 'unix') {
          const p = this.store.paths(service.record.snap, service.record.revision);
          // $XDG_RUNTIME_DIR of a system daemon is /run/snap.NAME under snapd; here R/run/snap.NAME. `@...` is abstract.
          const file = sock.path!.replace(/^\$SNAP_DATA/, p.data).replace(/^\$SNAP_COMMON/, p.common).replace(/^\$XDG_RUNTIME_DIR/, path.join(this.root, 'run', `snap.${service.record.snap}`));
          if (!file.startsWith('@')) fs.mkdirSync(path.dirname(file), { recursive: true });
          fd = native.bindListen({ kind: 'unix', path: file, mode: sock.socketMode ?? 0o666 });
        } else {
          fd = native.bindListen({ kind: 'tcp', host: sock.host ?? '::', port: sock.port! });
        }
        held = { fd, name: sock.name };
        this.held.set(key, held);
        void this.syncHolder();
      }
      fds.push(held.fd);
      names.push(held.name);
    }
    // Then the fd store, as systemd passes it: after the sockets, named by FDNAME=.
    for (const e of this.stored.get(service.name) ?? []) {
      fds.push(e.fd);
      names.push(e.name);
    }
    return { fds, names };
  }

  /** A service was stopped for good (not restarted): its fd store is flushed, as systemd does. */
  flushFdStore(service: Service): void {
    const list = this.stored.get(service.name);
    if (!list) return;
    for (const e of list) fs.closeSync(e.fd);
    this.stored.delete(service.name);
    logLine(service.logFile, `${service.name}: fd store flushed (${list.length} fd${list.length === 1 ? '' : 's'})`);
    void this.syncHolder();
  }

  /** What the fd holder must keep: every held socket and every stored fd. */
  private syncHolder(): Promise<void> {
    const all: HeldFd[] = [];
    for (const [key, h] of this.held) all.push({ kind: 'socket', service: key.slice(0, key.length - h.name.length - 1), name: h.name, fd: h.fd });
    for (const [service, list] of this.stored) for (const e of list) all.push({ kind: 'store', service, name: e.name, fd: e.fd });
    return this.fdHolder.update(all);
  }

  /** Held sockets and fd stores of a previous supervisor, back from its fd holder. */
  private recoverHeldFds(): void {
    const got = this.fdHolder.recover();
    for (const h of got) {
      if (h.kind === 'socket') this.held.set(`${h.service}.${h.name}`, { fd: h.fd, name: h.name });
      else {
        const list = this.stored.get(h.service) ?? [];
        list.push({ name: h.name, fd: h.fd });
        this.stored.set(h.service, list);
      }
    }
    if (got.length) this.say(`recovered ${got.length} held fd(s) from fd holder ${this.fdHolder.pid}`);
  }

  /** FDSTORE=1 / FDSTOREREMOVE=1 of a service (systemd's fd store); returns the fds it did not keep. */
  private fdStore(svc: Service, fields: Map<string, string>, fds: number[]): number[] {
    const name = fields.get('FDNAME') ?? 'stored';
    if (fields.get('FDSTOREREMOVE') === '1') {
      const list = this.stored.get(svc.name) ?? [];
      const keep = list.filter((e) => e.name !== name);
      for (const e of list) if (e.name === name) fs.closeSync(e.fd);
      if (keep.length !== list.length) {
        if (keep.length) this.stored.set(svc.name, keep);
        else this.stored.delete(svc.name);
        void this.syncHolder();
      }
    }
    if (fields.get('FDSTORE') !== '1' || fds.length === 0) return fds;
    if (!FDNAME.test(name)) {
      logLine(svc.logFile, `${svc.name}: FDSTORE=1 with an invalid FDNAME= refused`);
      return fds;
    }
    const list = this.stored.get(svc.name) ?? [];
    const room = Math.max(0, FD_STORE_MAX - list.length);
    for (const fd of fds.slice(0, room)) list.push({ name, fd });
    if (fds.length > room) logLine(svc.logFile, `${svc.name}: fd store full (${FD_STORE_MAX}): ${fds.length - room} fd(s) refused`);
    this.stored.set(svc.name, list);
    void this.syncHolder();
    return fds.slice(room);
  }

  // ---------------------------------------------------------------- services

  /** Writes every record (start, shutdown): only the snaps' files whose contents changed are written. */
  private saveAll(): void {
    saveRecords(this.recordsFile, [...this.services.values()].map((s) => s.record));
  }

  /** Writes the records of one snap (its set of services changed): the other snaps' files are not touched. */
  private saveSnap(instance: string): void {
    this.recordsFile.setSnap(instance, [...this.services.values()].filter((s) => s.record.snap === instance).map((s) => s.record));
  }

  private envOf(instance: string, revision: string, snap: SnapYaml) {
    const installed = this.store.get(instance);
    const base = snapEnvironment({
      root: this.root,
      instance,
      snapName: snap.name,
      instanceKey: installed?.instanceKey ?? '',
      revision,
      version: snap.version,
    });
    return (app: AppInfo | null) => appEnvironment(base, app ?? { environment: snap.environment });
  }

  /** Builds Service objects for the current revision of every installed snap. */
  private loadServices(): void {
    for (const snap of this.store.list()) {
      const rev = this.store.currentRevision(snap.name);
      if (rev) this.attachServices(snap.name, rev);
    }
  }

  /** @internal (Re)creates the Service objects of one snap for revision `rev`, keeping records of those that remain. */
  attachServices(instance: string, rev: string): Service[] {
    const yaml = this.store.readSnapYaml(instance, rev);
    const out: Service[] = [];
    for (const name of startOrder(yaml)) {
      const app = yaml.apps[name];
      const key = serviceKey(instance, name);
      const existing = this.services.get(key);
      if (existing) {
        existing.app = app;
        existing.record.revision = rev;
        out.push(existing);
        continue;
      }
      const record: ServiceRecord = this.records.get(key) ?? {
        snap: instance,
        app: name,
        revision: rev,
        cgroup: path.join(this.cgroupParent, serviceCgroupName(instance, name)),
        state: 'inactive',
        wanted: app.installMode !== 'disable',
        enabled: app.installMode !== 'disable',
        mainPid: null,
        mainStartTime: null,
        since: null,
        restarts: 0,
        lastExit: null,
        reason: null,
      };
      record.revision = rev;
      const svc = new Service(this, app, record);
      this.services.set(key, svc);
      const ofSnap = this.servicesBySnap.get(instance) ?? new Map<string, Service>();
      ofSnap.set(name, svc);
      this.servicesBySnap.set(instance, ofSnap);
      this.rotator.watch(svc.logFile);
      out.push(svc);
    }
    return out;
  }

  /** @internal Services of a snap in start order (optionally one app); throws for unknown names. */
  servicesOf(instance: string, app?: string, installed?: ReadonlySet<string>): Service[] {
    // `installed`: the installed snaps, when the caller read them once for many (start/stop of all).
    if (installed ? !installed.has(instance) : !this.store.get(instance)) throw new SnapprocError('ENOENT', `snap "${instance}" is not installed`);
    const all = [...(this.servicesBySnap.get(instance)?.values() ?? [])];
    if (app === undefined) return all;
    const one = all.filter((s) => s.record.app === app);
    if (one.length === 0) throw new SnapprocError('ENOENT', `snap "${instance}" has no service "${app}"`);
    return one;
  }

  /** options.nice for the main thread (from nice 0 only), its children reset to nice 0; a refusal is said, not fatal. */
  private raisePriority(): void {
    const want = this.options.nice;
    if (want === undefined || want >= 0) return;
    try {
      if (os.getPriority(0) !== 0) return; // someone chose a nice value for us: theirs stands
      native.resetNiceOnFork();
      os.setPriority(0, want);
      // libuv starts its thread pool at the first request that needs it,
      // and a thread the main thread creates from now on starts at nice 0
      // (SCHED_RESET_ON_FORK covers threads too): the pool, which runs the
      // fsyncs and the addon's copies, ran at 0 beside a nice -5 main
      // thread, and a refresh under CPU load waited for it. This request
      // starts the pool now (libuv returns once its threads run), so that
      // the loop below finds them.
      fs.access(this.root, () => undefined);
      // Nice is per thread on Linux: the threads already running (libuv's
      // pool, the addon's waiting threads) take it too; the addon's later
      // threads copy it from the thread that starts them (TakeNice).
      for (const task of fs.readdirSync('/proc/self/task')) {
        const tid = Number(task);
        if (tid === process.pid) continue;
        try {
          os.setPriority(tid, want);
        } catch {
          // ended meanwhile
        }
      }
    } catch (err) {
      this.say(`running at the default priority: ${(err as Error).message}`);
    }
  }

  /** Re-adopts what runs from a previous supervisor: nothing is started before unfinished changes are settled. */
  private adoptRunning(): void {
    for (const svc of this.services.values()) {
      try {
        svc.adopt();
      } catch (err) {
        this.say(`${svc.name}: ${(err as Error).message}`);
      }
    }
  }

  private async startWanted(): Promise<void> {
    for (const svc of this.services.values()) {
      if (!svc.record.wanted || svc.mainAlive() || svc.record.state === 'failed') continue;
      await svc.start().catch((err) => this.say(`${svc.name}: ${(err as Error).message}`));
    }
  }

  /** Completes or undoes every change a crash left unfinished (SPEC 5). */
  private async recoverChanges(): Promise<void> {
    const { loadChanges, recoveryPlan } = await import('./change-runner');
    const { refreshSteps, revertSteps, removeSteps, runChange } = await import('./changes');
    for (const change of loadChanges(this.root)) {
      const plan = recoveryPlan(change);
      if (plan === 'none') continue;
      this.say(`${change.kind} of ${change.snap} (${change.id}) was interrupted: ${plan === 'complete' ? 'completing it' : 'undoing it'}`);
      if (plan === 'undo') change.status = 'undoing';
      // A change freezes a cgroup only for the moment of a signal: one found
      // frozen was left so by the crash, and its processes could act on nothing.
      for (const cg of findSnapCgroups(change.snap, { under: this.cgroupParent })) {
        try {
          if (isFrozen(cg.path)) {
            await thawCgroup(cg.path);
            this.say(`${cg.path}: thawed (left frozen by the interrupted ${change.kind})`);
          }
        } catch (err) {
          this.say(`${cg.path}: ${(err as Error).message}`);
        }
      }
      const steps = change.kind === 'refresh' ? refreshSteps(this) : change.kind === 'revert' ? revertSteps(this) : removeSteps(this);
      // A refresh queues some flushes until its next flushed boundary (see
      // refresh()): a crash (SIGKILL) left what it had queued unflushed, and
      // a power cut after this recovery must not lose it. One syncfs, at start-up.
      if (change.kind === 'refresh') await native.syncfs(this.root).catch((err) => this.say(`syncfs of ${this.root}: ${(err as Error).message}`));
      await runChange(this.root, change as never, steps as never, { progress: (l) => this.say(l), batch: change.kind === 'refresh' ? this.flushBatch() : undefined }).catch((err) => this.say((err as Error).message));
    }
  }

  private onNotify(pid: number, text: string, fds: number[] = []): void {
    const fields = new Map<string, string>();
    for (const line of text.split('\n')) {
      const eq = line.indexOf('=');
      if (eq > 0) fields.set(line.slice(0, eq), line.slice(eq + 1));
    }
    let unused = fds;
    try {
      const full = cgroupOfPid(pid);
      if (!full) return;
      for (const svc of this.services.values()) {
        if (isInside(full, svc.cgroup)) {
          unused = this.fdStore(svc, fields, fds);
          svc.onNotify(pid, fields);
          return;
        }
      }
    } finally {
      for (const fd of unused) fs.closeSync(fd);
    }
  }

  /** Reaps exited children that are not Node's own (orphans re-parented to us). */
  private reap(): void {
    for (const { pid, status } of native.reapChildren(ownChildPids())) {
      this.reaped.set(pid, status);
      if (this.reaped.size > 4096) this.reaped.delete(this.reaped.keys().next().value!);
    }
  }

  /** @internal One state-changing operation at a time: a refresh and a stop must not interleave. */
  serialize<T>(fn: () => Promise<T>): Promise<T> {
    this.pendingOperations += 1;
    if (this.idleTimer) clearTimeout(this.idleTimer);
    this.idleTimer = null;
    const run = this.busy.then(fn, fn).finally(() => {
      this.pendingOperations -= 1;
      const onIdle = this.options.onIdle;
      if (this.pendingOperations > 0 || !onIdle) return;
      this.idleTimer = setTimeout(() => {
        this.idleTimer = null;
        onIdle();
      }, IDLE_AFTER_MS);
      this.idleTimer.unref();
    });
    this.busy = run.catch(() => undefined);
    return run;
  }

  /** @internal The log a change of this snap writes to. */
  changeLog(instance: string): string {
    return path.join(this.root, 'log', instance, 'changes.log');
  }

  /** @internal Writes the launch files of a revision (its apps' and hooks' command lines and environment). */
  async writeLaunchFiles(instance: string, rev: string, batch?: FlushQueue | null): Promise<void> {
    const snap = this.store.readSnapYaml(instance, rev);
    await writeRevisionLaunchFiles(this.root, instance, rev, snap, this.envOf(instance, rev, snap), { batch: batch ?? undefined });
  }

  /** @internal Makes the set of Service objects of a snap that of revision `rev`: services gone from it are dropped (they were stopped). */
  syncServices(instance: string, rev: string): void {
    const yaml = this.store.readSnapYaml(instance, rev);
    for (const [key, svc] of this.services) {
      if (svc.record.snap !== instance) continue;
      if (!yaml.apps[svc.record.app]?.isService) {
        this.flushFdStore(svc);
        svc.detach();
        this.dropService(key, svc);
      }
    }
    this.attachServices(instance, rev);
    this.saveSnap(instance);
  }

  private dropService(key: string, svc: Service): void {
    this.services.delete(key);
    const ofSnap = this.servicesBySnap.get(svc.record.snap);
    ofSnap?.delete(svc.record.app);
    if (ofSnap?.size === 0) this.servicesBySnap.delete(svc.record.snap);
  }

  /** The names of the installed snaps, read once (for an operation on many). */
  private installedNames(): Set<string> {
    return new Set(this.store.list().map((s) => s.name));
  }

  /** @internal Drops every Service object of a snap (after its services were stopped). */
  forgetServices(instance: string): void {
    for (const [key, svc] of this.services) {
      if (svc.record.snap !== instance) continue;
      svc.detach();
      this.rotator.unwatch(svc.logFile);
      this.dropService(key, svc);
      this.records.delete(key);
    }
    this.saveSnap(instance);
  }

  /** @internal Deletes a snap's trash (retired revisions, discarded data) in the background, one sweep at a time. */
  sweepTrash(instance?: string): void {
    // Once the operation that asked for it (a refresh's prune) has ended: deleting
    // gigabytes beside its last flushes made them wait behind the deletions (XFS log, btrfs commits).
    this.sweeping = this.sweeping.then(() => this.busy).then(() => this.store.sweepTrash(instance)).then(
      () => undefined,
      (err) => this.say(`deleting old revisions${instance ? ` of ${instance}` : ''}: ${(err as Error).message} (tried again later)`),
    );
  }

  /** Resolves when the background deletions started so far are done (for tests and benchmarks). */
  trashSwept(): Promise<void> {
    return this.sweeping;
  }

  /** Resolves when no standby job (../snap/standby.ts) is scheduled or running (for tests and benchmarks). */
  standbysSettled(): Promise<void> {
    return this.standbys.settled();
  }

  /** A snap's standby copy: `ready` (of `revision`), `making`, `none`, `unsupported` (no clones there) or `off` (SNAPPROC_STANDBY=0). */
  standbyState(instance: string): { state: StandbyState; revision?: string } {
    return this.standbys.state(instance);
  }

  /** @internal Removes what snapproc kept about a removed snap: launch files, empty cgroups, held sockets. */
  removeSnapState(instance: string): void {
    fs.rmSync(path.join(this.root, 'state', 'launch', instance), { recursive: true, force: true });
    for (const [key, h] of this.held) {
      if (key.startsWith(`${instance}.`)) {
        fs.closeSync(h.fd);
        this.held.delete(key);
      }
    }
    for (const [key, list] of this.stored) {
      if (key.startsWith(`${instance}.`)) {
        for (const e of list) fs.closeSync(e.fd);
        this.stored.delete(key);
      }
    }
    void this.syncHolder();
    removeEmptyServiceCgroups(findSnapCgroups(instance, { under: this.cgroupParent }).map((c) => c.path));
  }

  /**
   * Where a refresh queues the flushes of its small writes (the new
   * revision's tree and launch files, the record's renames, the data copy,
   * the links): flushed together at its journal's flushed boundaries
   * (change-runner.ts), a few rounds of concurrent fsyncs instead of ~20
   * one after the other.
   */
  private flushBatch(): FlushBatch {
    return new FlushBatch((p) => native.syncfs(p));
  }

  /** Refresh (SPEC 5): to a new revision from `source`. */
  async refresh(instance: string, source: string | null, opts: { ignoreRunning?: boolean } = {}, progress: (line: string) => void = () => {}) {
    const { newChange, refreshSteps, runChange } = await import('./changes');
    const from = this.store.currentRevision(instance);
    if (!from) throw new SnapprocError('ENOENT', `snap "${instance}" is not installed`);
    if (!source) throw usageError(`refresh of ${instance} needs --from PATH (snapproc has no store to fetch from)`);
    const steps = refreshSteps(this);
    const change = newChange('refresh', instance, steps, 5, {
      snap: instance, source, ignoreRunning: !!opts.ignoreRunning, from, to: null,
      stopped: [], enduring: [], signalled: [], signalModes: {}, movedAside: null, dataCopied: false, protected: false,
      started: [], handedOver: [], fellBack: [], rolledBack: [], pruned: [],
    });
    const t0 = performance.now();
    // `snapproc run` of this snap waits meanwhile (snapd's inhibit lock).
    inhibit(this.root, instance, 'refresh');
    // A standby job still running is not waited for: the copy is then a full one.
    this.standbys.cancel(instance);
    const done = await runChange(this.root, change, steps, { progress, batch: this.flushBatch() }).finally(() => {
      release(this.root, instance);
      this.standbys.schedule(instance, this.store.currentRevision(instance));
    });
    progress(`refreshed ${instance} ${from} -> ${done.data.to} in ${(performance.now() - t0).toFixed(0)} ms`);
    return { snap: instance, from, to: done.data.to, change: done.id, enduring: done.data.enduring, handedOver: done.data.handedOver, fellBack: done.data.fellBack };
  }

  /** Revert: back to the previous retained revision, its data as it was left. */
  async revert(instance: string, progress: (line: string) => void = () => {}) {
    const { newChange, revertSteps, runChange } = await import('./changes');
    const from = this.store.currentRevision(instance);
    if (!from) throw new SnapprocError('ENOENT', `snap "${instance}" is not installed`);
    const revs = this.store.get(instance)!.revisions.map((r) => r.revision);
    const idx = revs.indexOf(from);
    const to = idx > 0 ? revs[idx - 1] : null;
    if (!to) throw new SnapprocError('ERR_SNAPPROC_NO_REVISION', `snap "${instance}" has no revision before ${from} to revert to`);
    const steps = revertSteps(this);
    const change = newChange('revert', instance, steps, 1, { snap: instance, from, to, stopped: [], enduring: [], started: [] });
    inhibit(this.root, instance, 'revert');
    this.standbys.cancel(instance);
    await runChange(this.root, change, steps, { progress }).finally(() => {
      release(this.root, instance);
      this.standbys.schedule(instance, this.store.currentRevision(instance));
    });
    return { snap: instance, from, to, change: change.id };
  }

  /** Remove (SPEC 7): nothing of the snap keeps running. */
  async remove(instance: string, opts: { purge?: boolean } = {}, progress: (line: string) => void = () => {}) {
    const { newChange, removeSteps, runChange } = await import('./changes');
    if (!this.store.get(instance)) throw new SnapprocError('ENOENT', `snap "${instance}" is not installed`);
    const steps = removeSteps(this);
    // No point of no return to reach: once journalled, a remove that a crash
    // interrupts is completed (its services may already be stopped; the user
    // asked for it to go), as snapd resumes an interrupted remove.
    const wanted = this.servicesOf(instance).filter((s) => s.record.wanted).map((s) => s.record.app);
    const change = newChange('remove', instance, steps, -1, { snap: instance, purge: !!opts.purge, revision: this.store.currentRevision(instance), killed: 0, wanted });
    // Its standby job ends first: it writes under the directory the remove deletes.
    await this.standbys.stop(instance);
    await runChange(this.root, change, steps, { progress });
    return { snap: instance, removed: true, killed: change.data.killed };
  }

  // ---------------------------------------------------------------- snap operations

  async startSnap(instance: string, app?: string, installed?: ReadonlySet<string>): Promise<string[]> {
    const started: string[] = [];
    const errors: string[] = [];
    for (const svc of this.servicesOf(instance, app, installed)) {
      try {
        await svc.start();
        started.push(svc.name);
      } catch (err) {
        errors.push((err as Error).message);
      }
    }
    if (errors.length) throw new SnapprocError('ERR_SNAPPROC_SERVICE_FAILED', errors.join('; '));
    return started;
  }

  /**
   * Starts the services of several snaps (or apps): the snaps side by side,
   * each snap's services in its start order. Resolves with the services
   * started; rejects naming every failure after all have been tried.
   */
  async startMany(targets: Target[]): Promise<string[]> {
    const started: string[] = [];
    const errors: string[] = [];
    const installed = this.installedNames();
    await Promise.all(
      bySnap(targets).map(async ([snap, apps]) => {
        for (const app of apps) {
          try {
            started.push(...(await this.startSnap(snap, app, installed)));
          } catch (err) {
            errors.push((err as Error).message);
          }
        }
      }),
    );
    if (errors.length) throw new SnapprocError('ERR_SNAPPROC_SERVICE_FAILED', errors.join('; '));
    return started;
  }

  /** Stops the services of several snaps (or apps) by stop-mode: the snaps side by side, each in reverse start order. */
  async stopMany(targets: Target[], opts: { mode?: StopMode; timeoutMs?: number }): Promise<Array<{ service: string } & StopResult>> {
    const out: Array<{ service: string } & StopResult> = [];
    const installed = this.installedNames();
    await Promise.all(
      bySnap(targets).map(async ([snap, apps]) => {
        for (const app of apps) out.push(...(await this.stopSnap(snap, app, opts, false, installed)));
      }),
    );
    return out;
  }

  /**
   * Stops the services of a snap (or one app) by stop-mode, side by side
   * except where before/after orders them: a service stops once every
   * service ordered after it has stopped (systemd stops units so, and snapd
   * stops a snap's services in one systemctl call). Results in reverse start
   * order; a service whose stop failed keeps those ordered before it running,
   * and the first failure is thrown once the others are done.
   */
  async stopSnap(instance: string, app?: string, opts: { mode?: StopMode; timeoutMs?: number } = {}, keepWanted = false, installed?: ReadonlySet<string>): Promise<Array<{ service: string } & StopResult>> {
    const services = this.servicesOf(instance, app, installed);
    const byApp = new Map(services.map((s) => [s.record.app, s]));
    // startsAfter.get(x): the services that start after x, so stop before it.
    const startsAfter = new Map<Service, Service[]>(services.map((s) => [s, []]));
    for (const s of services) {
      for (const b of s.app.before ?? []) if (byApp.has(b)) startsAfter.get(s)!.push(byApp.get(b)!);
      for (const a of s.app.after ?? []) if (byApp.has(a)) startsAfter.get(byApp.get(a)!)!.push(s);
    }
    const stops = new Map<Service, Promise<StopResult>>();
    const stopOf = (svc: Service, path: Set<Service>): Promise<StopResult> => {
      const known = stops.get(svc);
      if (known) return known;
      // validate refuses cycles; should one slip through, it does not wait on itself.
      const within = new Set(path).add(svc);
      const first = startsAfter.get(svc)!.filter((d) => !within.has(d)).map((d) => stopOf(d, within));
      const p = Promise.all(first).then(() => svc.stop({ ...opts, keepWanted }));
      stops.set(svc, p);
      return p;
    };
    const order = [...services].reverse();
    const settled = await Promise.allSettled(order.map((svc) => stopOf(svc, new Set())));
    const failed = settled.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed) throw failed.reason;
    return order.map((svc, i) => ({ service: svc.name, ...(settled[i] as PromiseFulfilledResult<StopResult>).value }));
  }

  /** `install PATH`: a first install, or over an installed snap of that name a refresh (SPEC 1). */
  async installOrRefresh(source: string, progress: (line: string) => void = () => {}): Promise<InstallResult | RefreshResult> {
    const { name } = await snapYamlOfAsync(source);
    if (this.store.currentRevision(name)) return this.refresh(name, source, {}, progress);
    return this.install(source, progress);
  }

  /** First install of a snap (an install over an installed snap is a refresh); journalled as a change, so `changes` lists it. */
  async install(source: string, progress: (line: string) => void = () => {}): Promise<{ snap: string; revision: string; started: string[] }> {
    const { saveChange } = await import('./change-runner');
    const startedAt = new Date().toISOString();
    const steps: Array<{ name: string; status: 'done' | 'error'; summary?: string }> = [];
    const journal = (snap: string | null, status: 'done' | 'undone', error?: string) => {
      if (!snap) return;
      const id = `${startedAt.replace(/[:.]/g, '-')}-install-${snap}-${process.pid.toString(16)}`;
      saveChange(this.root, { id, kind: 'install', snap, status, pointOfNoReturn: 0, steps, data: { source }, startedAt, endedAt: new Date().toISOString(), error });
    };
    const say = (line: string) => {
      const m = /^\[\d+\/\d+\] (.*)$/.exec(line);
      if (m) steps.push({ name: m[1].split(' ')[0], status: 'done', summary: m[1] });
      progress(line);
    };
    try {
      const r = await this.installNow(source, say);
      journal(r.snap, 'done');
      this.standbys.schedule(r.snap, r.revision);
      return r;
    } catch (err) {
      // Refused at its first step (validate and unpack: bad input, or a copy
      // that failed and was removed): nothing was installed, and nothing is
      // left on disk for it, not even a journal (issue 10, item 13).
      if (steps.length <= 1) throw err;
      if (steps.length) steps[steps.length - 1].status = 'error';
      let name: string | null = null;
      try {
        name = (await snapYamlOfAsync(source)).name;
      } catch {
        // not even a snap: nothing to list it under
      }
      journal(name, 'undone', (err as Error).message);
      throw err;
    }
  }

  private async installNow(source: string, progress: (line: string) => void): Promise<{ snap: string; revision: string; started: string[] }> {
    const t0 = performance.now();
    const step = (n: number, total: number, text: string) => progress(`[${n}/${total}] ${text}`);
    step(1, 4, `validate and unpack ${source}`);
    const added = await this.store.addRevision(source);
    const { instance, revision, snap } = added;
    if (this.store.currentRevision(instance)) {
      throw new SnapprocError('ERR_SNAPPROC_INTERNAL', `snap "${instance}" is installed`);
    }
    try {
      await writeRevisionLaunchFiles(this.root, instance, revision, snap, this.envOf(instance, revision, snap));
      this.store.linkCurrent(instance, revision);
      // Known before the hook runs: it may start, stop or restart them through snapctl.
      this.attachServices(instance, revision);
      step(2, 4, `install hook of ${instance} ${revision}`);
      await this.runHook(instance, revision, 'install', progress);
    } catch (err) {
      this.forgetServices(instance);
      this.store.unlinkCurrent(instance);
      this.store.removeSnap(instance, { purge: true });
      throw err;
    }
    step(3, 4, `services of ${instance}`);
    const services = this.attachServices(instance, revision);
    const started: string[] = [];
    for (const svc of services) {
      if (!svc.record.wanted) continue;
      await svc.start().then(() => started.push(svc.name), (err) => progress(`  ${(err as Error).message}`));
    }
    this.saveSnap(instance);
    step(4, 4, `installed ${instance} ${snap.version} (${revision}) in ${(performance.now() - t0).toFixed(0)} ms`);
    return { snap: instance, revision, started };
  }

  /**
   * @internal
   * Runs a hook of a revision in its own scope. Service commands the hook
   * asks for through snapctl meanwhile are queued and run right after it
   * returns (snapd's way: the change that runs the hook waits for it, so
   * they cannot wait for the change); a hook that fails drops them.
   */
  async runHook(instance: string, revision: string, hook: string, progress: (line: string) => void = () => {}): Promise<HookResult> {
    const scope = path.join(this.cgroupParent, hookScopeName(instance, hook));
    this.hookRuns.begin(scope, instance, hook);
    let queued: ServiceActionRequest[];
    let result: HookResult;
    try {
      result = await runHook({ root: this.root, instance, revision, hook, cgroupParent: this.cgroupParent, scope });
    } finally {
      queued = this.hookRuns.end(scope);
    }
    if (queued.length && hook === 'remove') {
      // The snap is going: nothing it asks to start may outlive its removal.
      for (const req of queued) progress(`  remove hook asked for ${describeAction(instance, req)}: ignored (the snap is being removed)`);
      queued = [];
    }
    if (queued.length) {
      // What is current now (after post-refresh: the new revision) is what a restart starts.
      const current = this.store.currentRevision(instance);
      if (current) this.syncServices(instance, current);
      for (const req of queued) {
        const done = await this.serviceAction(instance, req);
        progress(`  ${hook} hook asked for ${describeAction(instance, req)}: done (${done.join(', ') || 'nothing'})`);
      }
    }
    return result;
  }

  /** @internal start, stop or restart services of one snap now (the caller holds the change lock or is a queued hook command). */
  async serviceAction(instance: string, req: ServiceActionRequest): Promise<string[]> {
    const services = req.apps === undefined ? this.servicesOf(instance) : req.apps.flatMap((a) => this.servicesOf(instance, a));
    const done: string[] = [];
    const errors: string[] = [];
    if (req.action !== 'start') {
      for (const svc of [...services].reverse()) {
        if (req.disable) svc.record.enabled = false;
        await svc.stop({ keepWanted: req.action === 'restart' });
        if (req.action === 'stop') done.push(svc.name);
      }
    }
    if (req.action !== 'stop') {
      for (const svc of services) {
        if (req.enable) svc.record.enabled = true;
        try {
          await svc.start();
          done.push(svc.name);
        } catch (err) {
          errors.push((err as Error).message);
        }
      }
    }
    this.saveSnap(instance);
    if (errors.length) throw new SnapprocError('ERR_SNAPPROC_SERVICE_FAILED', errors.join('; '));
    return done;
  }

  /**
   * A state-changing request from inside a running hook: a service command
   * for the hook's own snap is queued to run right after the hook; anything
   * else would wait for the change that waits for the hook, and is refused.
   * Returns null when the caller is no running hook.
   */
  private fromRunningHook(ctx: RequestContext, method: string, instance: string | undefined, req?: ServiceActionRequest): { queued: string } | null {
    const caller = callerOf(ctx.pid, this.cgroupParent);
    if (!caller || caller.kind !== 'hook') return null;
    const run = this.hookRuns.find(caller.cgroup);
    if (!run) return null;
    if (req && instance === run.instance) {
      // Unknown names fail now, in the hook, not later in the change.
      if (req.apps === undefined) this.servicesOf(instance);
      else for (const a of req.apps) this.servicesOf(instance, a);
      run.queue.push(req);
      return { queued: `${describeAction(instance, req)} queued to run after the ${run.hook} hook of ${run.instance}` };
    }
    throw new SnapprocError('ERR_SNAPPROC_HOOK_CALL', `cannot ${method}${instance ? ` "${instance}"` : ''} from the ${run.hook} hook of "${run.instance}": the change running the hook waits for it (a hook may only start, stop or restart services of its own snap, which then happens after the hook)`);
  }

  /** `snapctl` on the PATH of the snaps' hooks and apps: a wrapper that knows this root. */
  private writeSnapctl(): void {
    const dir = snapctlDir(this.root);
    fs.mkdirSync(dir, { recursive: true, mode: 0o755 });
    const q = (s: string) => `'${s.replace(/'/g, `'\\''`)}'`;
    const script = path.resolve(__dirname, '..', 'cli', 'snapctl.js');
    writeFileAtomic(path.join(dir, 'snapctl'), `#!/bin/sh\n# snapctl for the snaps of the snapproc supervisor of ${this.root}\nSNAPPROC_ROOT=${q(this.root)} exec ${q(process.execPath)} ${q(script)} "$@"\n`, 0o755, { durable: false });
  }

  /** What `snapctl` asks (services, start, stop, restart), for the snap the caller's cgroup belongs to. */
  private async snapctl(p: Record<string, unknown>, ctx: RequestContext): Promise<unknown> {
    const caller = callerOf(ctx.pid, this.cgroupParent);
    if (!caller) throw new SnapprocError('EPERM', `snapctl: PID ${ctx.pid} is not a process of a snap run by this supervisor (its cgroup is not a snap's under ${this.cgroupParent})`);
    const instance = caller.instance;
    if (!this.store.get(instance)) throw new SnapprocError('ENOENT', `snap "${instance}" is not installed`);
    const command = p.command;
    const names = Array.isArray(p.names) ? p.names.map(String) : [];
    const serviceNames = this.servicesOf(instance).map((s) => s.record.app);
    const apps = resolveServiceNames(instance, names, serviceNames);
    if (command === 'services') {
      const { serviceStatus } = await import('./service-status');
      return serviceStatus(this.root, instance).filter((row) => apps === undefined || apps.includes(row.app));
    }
    if (command !== 'start' && command !== 'stop' && command !== 'restart') throw usageError(`snapctl: unknown command ${JSON.stringify(command)}; commands: services, start, stop, restart`);
    if (names.length === 0) throw usageError(`snapctl ${command}: the required argument <service> was not provided`);
    const req: ServiceActionRequest = { action: command as ServiceAction, apps, enable: command === 'start' && p.enable === true, disable: command === 'stop' && p.disable === true };
    const queued = this.fromRunningHook(ctx, command, instance, req);
    if (queued) return queued;
    return { done: await this.serialize(() => this.serviceAction(instance, req)) };
  }

  status(instance?: string): ServiceRecord[] {
    return [...this.services.values()].map((s) => s.record).filter((r) => instance === undefined || r.snap === instance);
  }

  // ---------------------------------------------------------------- control API

  private methods(): Record<string, Method> {
    const str = (v: unknown, what: string): string => {
      if (typeof v !== 'string' || v === '') throw usageError(`"${what}" must be a non-empty string`);
      return v;
    };
    const opt = (v: unknown, what: string): string | undefined => (v === undefined || v === null ? undefined : str(v, what));
    // Names are checked before anything touches a file (../names.ts), whoever the client is.
    const snapName = (v: unknown): string => checkInstanceName(v);
    const optSnap = (v: unknown): string | undefined => (v === undefined || v === null ? undefined : checkInstanceName(v));
    const optApp = (v: unknown): string | undefined => {
      if (v === undefined || v === null) return undefined;
      const bad = validateAppName(str(v, 'app'));
      if (bad !== null) throw usageError(bad);
      return v as string;
    };
    const stopOpts = (p: Record<string, unknown>) => ({
      mode: p.mode === undefined ? undefined : parseStopMode(str(p.mode, 'mode')),
      timeoutMs: p.timeout === undefined ? undefined : durationMs(str(p.timeout, 'timeout'), (m) => usageError(`invalid timeout: ${m}`)),
    });
    const isMany = (p: Record<string, unknown>): boolean => p.all === true || p.targets !== undefined;
    const targetsOf = (p: Record<string, unknown>): Target[] => {
      let targets: Target[];
      if (p.all === true) targets = this.store.list().map((snap) => ({ snap: snap.name }));
      else if (p.targets !== undefined) {
        if (!Array.isArray(p.targets) || p.targets.length === 0 || p.targets.length > 100_000) throw usageError('"targets" must be a non-empty list of {snap, app}');
        targets = p.targets.map((t: unknown, i: number) => {
          if (typeof t !== 'object' || t === null) throw usageError(`"targets[${i}]" must be an object {snap, app}`);
          const o = t as Record<string, unknown>;
          return { snap: snapName(o.snap), app: optApp(o.app) };
        });
      } else targets = [{ snap: snapName(p.snap), app: optApp(p.app) }];
      // Every name is checked before anything is done: a bad one changes nothing.
      const installed = this.installedNames();
      for (const t of targets) this.servicesOf(t.snap, t.app, installed);
      return targets;
    };
    return {
      ping: { read: true, handler: () => ({ pid: process.pid, root: this.root, operations: this.pendingOperations }) },
      status: { read: true, handler: (p) => this.status(optSnap(p.snap)) },
      list: { read: true, handler: () => this.store.list() },
      install: { read: false, handler: (p, ctx) => (this.fromRunningHook(ctx, 'install', undefined), this.serialize(() => this.installOrRefresh(str(p.path, 'path'), ctx.progress))) },
      refresh: {
        read: false,
        handler: (p, ctx) => (this.fromRunningHook(ctx, 'refresh', snapName(p.snap)), this.serialize(() => this.refresh(snapName(p.snap), opt(p.from, 'from') ?? null, { ignoreRunning: p.ignoreRunning === true }, ctx.progress))),
      },
      revert: { read: false, handler: (p, ctx) => (this.fromRunningHook(ctx, 'revert', snapName(p.snap)), this.serialize(() => this.revert(snapName(p.snap), ctx.progress))) },
      remove: { read: false, handler: (p, ctx) => (this.fromRunningHook(ctx, 'remove', snapName(p.snap)), this.serialize(() => this.remove(snapName(p.snap), { purge: p.purge === true }, ctx.progress))) },
      // Open to every user: it acts only on the caller's own snap, found from the caller's cgroup.
      snapctl: { read: true, handler: (p, ctx) => this.snapctl(p, ctx) },
      changes: { read: true, handler: async (p) => {
        const { loadChanges } = await import('./change-runner');
        const snap = optSnap(p.snap);
        return loadChanges(this.root).filter((c) => snap === undefined || c.snap === snap).slice(-20);
      } },
      start: {
        read: false,
        handler: (p, ctx) => {
          // Several ({targets: [{snap, app?}, ...]}) or every installed snap ({all: true}): side by side.
          // From a running hook several targets cannot be queued as one command: refused (it would wait for the hook's change).
          if (isMany(p)) return this.fromRunningHook(ctx, 'start several snaps', undefined), this.serialize(() => this.startMany(targetsOf(p)));
          const snap = snapName(p.snap);
          const app = optApp(p.app);
          return this.fromRunningHook(ctx, 'start', snap, { action: 'start', apps: app === undefined ? undefined : [app] }) ?? this.serialize(() => this.startSnap(snap, app));
        },
      },
      stop: {
        read: false,
        handler: (p, ctx) => {
          if (isMany(p)) {
            this.fromRunningHook(ctx, 'stop several snaps', undefined);
            const targets = targetsOf(p);
            return this.serialize(() => this.stopMany(targets, stopOpts(p)));
          }
          const snap = snapName(p.snap);
          const app = optApp(p.app);
          const o = stopOpts(p);
          // A stop with its own mode or timeout cannot be queued as a plain service command.
          const queue = o.mode === undefined && o.timeoutMs === undefined ? { action: 'stop' as const, apps: app === undefined ? undefined : [app] } : undefined;
          return this.fromRunningHook(ctx, 'stop', snap, queue) ?? this.serialize(() => this.stopSnap(snap, app, o));
        },
      },
      restart: {
        read: false,
        handler: (p, ctx) =>
          isMany(p)
            ? (this.fromRunningHook(ctx, 'restart several snaps', undefined), this.serialize(async () => {
                const targets = targetsOf(p);
                await this.stopMany(targets, {});
                return this.startMany(targets);
              }))
            : this.fromRunningHook(ctx, 'restart', snapName(p.snap), { action: 'restart', apps: optApp(p.app) === undefined ? undefined : [optApp(p.app)!] }) ??
          this.serialize(async () => {
            const snap = snapName(p.snap);
            const app = optApp(p.app);
            // Stopped to be started again: wanted throughout, its fd store kept (as systemd's restart).
            await this.stopSnap(snap, app, {}, true);
            return this.startSnap(snap, app);
          }),
      },
      shutdown: {
        read: false,
        handler: (p) => {
          setImmediate(() => void this.shutdown({ stopServices: p.stopServices === true }).then(() => this.options.exitOnShutdown && process.exit(0)));
          return { stopping: true };
        },
      },
    };
  }
}

/** A snap, or one app of it, named in a start/stop/restart request. */
export interface Target {
  snap: string;
  app?: string;
}

/** Targets grouped by snap, in the order given; a snap named whole once covers its apps. */
function bySnap(targets: Target[]): Array<[string, Array<string | undefined>]> {
  const m = new Map<string, Array<string | undefined>>();
  for (const t of targets) {
    const apps = m.get(t.snap) ?? [];
    if (apps.includes(undefined)) continue;
    if (t.app === undefined) apps.length = 0;
    if (!apps.includes(t.app)) apps.push(t.app);
    m.set(t.snap, apps);
  }
  return [...m];
}

/** Removes the cgroups of a snap's services that are empty (after a remove). */
export function removeEmptyServiceCgroups(cgroups: string[]): void {
  for (const cg of cgroups) {
    try {
      removeCgroupTree(cg);
    } catch {
      // busy: not ours to force
    }
  }
}

/** Compile-time check: a Supervisor is what its services and change steps are given. */
export type _SupervisorIsHost = Supervisor extends ServiceHost & ChangeHost ? true : never;
