// service.ts: one supervised service: starting it into its cgroup (through
// the launcher, so it is in the cgroup before the snap's code runs), knowing
// its main process (the launcher's PID for simple/notify, the process left in
// the cgroup for forking, MAINPID= from notify), noticing when that process
// exits (child exit for our own children, pidfd for adopted ones), applying
// restart-condition with restart-delay and a start limit, and stopping it by
// stop-mode with stop-command and post-stop-command around the stop.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { ChildProcess } from 'node:child_process';
import { spawn } from 'node:child_process';
import { classifyCgroup } from '../process/classify';
import { cgroupOfPid, isInside, isPopulated } from '../kernel/cgroupfs';
import { SnapprocError, hasCode } from '../util/errors';
import { launchFile } from '../snap/launch-files';
import { launcherPath, native, PendingWait } from '../kernel/native';
import { liveStartTimeOf, pidNamespaceOf, startTimeOf } from '../kernel/procfs';
import { cloneIntoKilledCgroupDies, recreateEmptyCgroup } from '../kernel/clone-quirk';
import { identityOf, identityOfPidfd } from '../kernel/process-identity';
import { idleWaitOf, idleWaitsKnown } from '../kernel/idle-wait';
import { isFrozen } from '../kernel/freeze';
import { signalName } from '../kernel/signal-names';
import type { AppInfo } from '../snap/snap-yaml';
import { signalVerified } from '../kernel/signal-guard';
import { stopCgroup, StopMode, StopResult, stopModeSignal } from '../process/stop';
import { stopCgroupBatched } from '../process/stop-batch';
import { appLogFile, logLine, openLog } from '../snap/app-logs';
import type { ServiceRecord, ServiceState } from './records';
import { readPidFile, servicePidFile } from './pid-file';
import { describeExit, ExitStatus, isCleanExit, shouldRestart, StartLimit } from './restart-policy';

/** What a service needs from the supervisor that owns it. */
export interface ServiceHost {
  root: string;
  /** Path of the NOTIFY_SOCKET, or null when none is open. */
  notifySocket: string | null;
  /** Listening sockets held for this service: fds and names for LISTEN_FDS. */
  socketsFor(service: Service): { fds: number[]; names: string[] };
  /** Wait statuses of processes the supervisor reaped as a subreaper. */
  reapedStatus(pid: number): number | undefined;
  /** Persist the records. */
  changed(service: Service): void;
  /** The service stopped for good (not to be restarted): drop its fd store. */
  flushFdStore(service: Service): void;
}

const BASE_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

/** Whether clone3(CLONE_INTO_CGROUP) works here; learned at the first start. */
let clone3IntoCgroup: boolean | undefined;

let ownNs: string | null | undefined;
function ownPidNamespace(): string | null {
  ownNs ??= pidNamespaceOf('self');
  return ownNs;
}

/**
 * The settle time of a `simple` service (SNAPPROC_SETTLE_MS, default 100 ms):
 * its main process must live that long after its start before the start
 * counts, so that a command that dies at once (a bad configuration, a
 * missing library, a kernel that kills it at birth) fails the start with its
 * exit status instead of reporting success. It ends early on a positive
 * sign (unless SNAPPROC_SETTLE_EARLY=0): once the main process executes the
 * snap's command (no longer the launcher) and sleeps waiting for work in an
 * event loop, accept, a timer or a signal wait (../kernel/idle-wait.ts),
 * it got past its start-up. Neither proves it keeps running: an exit
 * after the start counts is handled by restart-condition, as systemd's
 * Type=exec and supervisord's startsecs leave it too.
 */
export function settleMs(): number {
  const v = Number(process.env.SNAPPROC_SETTLE_MS);
  return Number.isFinite(v) && v >= 0 ? v : 100;
}

function settleEarly(): boolean {
  return process.env.SNAPPROC_SETTLE_EARLY !== '0';
}

let launcherExe: string | null | undefined;
/** The launcher as /proc/PID/exe names it (symbolic links resolved). */
function launcherReal(): string | null {
  if (launcherExe === undefined) {
    try {
      launcherExe = fs.realpathSync(launcherPath());
    } catch {
      launcherExe = null;
    }
  }
  return launcherExe;
}

/** How a start's settle time ended. */
type Settled = { exited: ExitStatus } | { up: string };

/**
 * Waits until the main process `pid` (whose start time `startTime()` gives) has settled:
 * it exited (the start failed), showed the positive sign, or lived `ms`.
 * The sign is looked for every millisecond for the first 10 ms, then every
 * 5 ms: only while a start waits, never while idle.
 */
function settle(pid: number, startTime: () => number | null, exited: Promise<ExitStatus>, ms: number): Promise<Settled> {
  const t0 = performance.now();
  return new Promise<Settled>((resolve) => {
    let timer: NodeJS.Timeout | null = null;
    let done = false;
    const finish = (s: Settled) => {
      if (done) return;
      done = true;
      if (timer) clearTimeout(timer);
      resolve(s);
    };
    void exited.then((status) => finish({ exited: status }));
    const early = settleEarly() && idleWaitsKnown();
    const check = () => {
      timer = null;
      if (done) return;
      const elapsed = performance.now() - t0;
      const started = startTime();
      if (early && started !== null) {
        const wait = idleWaitOf(pid);
        // Still the same process (not reaped and reused), and no longer the launcher.
        if (wait !== null && liveStartTimeOf(pid) === started && exeOf(pid) !== launcherReal()) {
          return finish({ up: `waiting in ${wait} after ${elapsed.toFixed(1)} ms` });
        }
      }
      if (elapsed >= ms) return finish({ up: `alive after ${ms} ms` });
      timer = setTimeout(check, early ? Math.min(elapsed < 10 ? 1 : 5, ms - elapsed) : ms - elapsed);
    };
    timer = setTimeout(check, early ? Math.min(1, ms) : ms);
  });
}

function exeOf(pid: number): string | null {
  try {
    return fs.readlinkSync(`/proc/${pid}/exe`);
  } catch {
    return null;
  }
}

/** Decodes a raw wait status. */
export function decodeWaitStatus(status: number): ExitStatus {
  const sig = status & 0x7f;
  return sig === 0 ? { code: (status >> 8) & 0xff, signal: null } : { code: null, signal: signalName(sig) };
}

export class Service {
  private limit = new StartLimit();
  private child: ChildProcess | null = null;
  private mainWait: PendingWait | null = null;
  private restartTimer: NodeJS.Timeout | null = null;
  private stopping = false;
  private handingOver = false;
  private ready: { resolve: () => void; reject: (e: Error) => void } | null = null;
  /** watchdog-timeout: the deadline for the next WATCHDOG=1, and whether it was missed (then the exit is a watchdog timeout). */
  private watchdogTimer: NodeJS.Timeout | null = null;
  private watchdogFired = false;

  constructor(
    readonly host: ServiceHost,
    public app: AppInfo,
    readonly record: ServiceRecord,
  ) {}

  get name(): string {
    return `${this.record.snap}.${this.record.app}`;
  }

  get cgroup(): string {
    return this.record.cgroup;
  }

  get logFile(): string {
    return appLogFile(this.host.root, this.record.snap, this.record.app);
  }

  private setState(state: ServiceState, reason: string | null = null): void {
    if (state === 'active' && this.record.state !== 'active') this.armWatchdog();
    if (state !== 'active') this.disarmWatchdog();
    this.record.state = state;
    this.record.reason = reason;
    this.host.changed(this);
  }

  private fail(reason: string): SnapprocError {
    logLine(this.logFile, `${this.name} failed: ${reason}`);
    this.record.mainPid = null;
    this.record.mainStartTime = null;
    this.record.mainIdentity = null;
    this.setState('failed', reason);
    return new SnapprocError('ERR_SNAPPROC_SERVICE_FAILED', `${this.name} failed: ${reason}`);
  }

  /** The program the launch file will execute, checked before starting. */
  private checkCommand(): string | null {
    const file = launchFile(this.host.root, this.record.snap, this.record.revision, this.record.app);
    let text: string;
    try {
      text = fs.readFileSync(file, 'utf8');
    } catch {
      return `no launch file ${file}`;
    }
    const argv0 = /^arg (.*)$/m.exec(text)?.[1];
    if (!argv0) return `empty command`;
    try {
      fs.accessSync(argv0, fs.constants.X_OK);
      if (!fs.statSync(argv0).isFile()) return `command is not a file: ${argv0}`;
    } catch (err) {
      return hasCode(err, 'ENOENT') ? `command not found: ${argv0}` : `command is not executable: ${argv0}`;
    }
    return null;
  }

  /**
   * Starts the service; resolves once it is up as its daemon type defines it.
   * The start limit counts automatic restarts: a start someone asks for
   * (`auto` false) begins a new count, as supervisord's startretries does.
   */
  async start(options: { auto?: boolean } = {}): Promise<void> {
    // One start at a time: a second caller waits for the first.
    if (this.starting) return this.starting;
    this.starting = this.startOnce(options).finally(() => (this.starting = null));
    return this.starting;
  }

  private starting: Promise<void> | null = null;

  private async startOnce(options: { auto?: boolean }): Promise<void> {
    if (!options.auto) this.limit.reset();
    this.record.wanted = true;
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = null;
    }
    if ((this.record.state === 'active' || this.record.state === 'activating') && this.mainAlive()) return;
    if (!this.limit.allow()) {
      throw this.fail(`start request repeated too quickly (${this.limit.burst} starts within ${this.limit.intervalMs / 1000}s); not restarting`);
    }
    const bad = this.checkCommand();
    if (bad) throw this.fail(bad);
    fs.mkdirSync(this.cgroup, { recursive: true });
    this.stopping = false;
    this.setState('activating');

    const sockets = this.host.socketsFor(this);
    const env: Record<string, string> = { PATH: BASE_PATH };
    const watchdog = this.app.watchdogTimeoutMs > 0;
    if ((this.app.daemon === 'notify' || watchdog) && this.host.notifySocket) env.NOTIFY_SOCKET = this.host.notifySocket;
    // systemd's WatchdogSec=: the service learns the interval from WATCHDOG_USEC (sd_watchdog_enabled).
    if (watchdog) env.WATCHDOG_USEC = String(this.app.watchdogTimeoutMs * 1000);
    this.disarmWatchdog();
    this.watchdogFired = false;
    if (sockets.fds.length) {
      env.LISTEN_FDS = String(sockets.fds.length);
      env.LISTEN_FDNAMES = sockets.names.join(':');
    }
    let pid: number;
    let exitedOrDetached: Promise<ExitStatus | null>;
    let identity: string | null | undefined;
    try {
      ({ pid, exited: exitedOrDetached, identity } = await this.spawnLauncher(env, sockets.fds));
    } catch (err) {
      throw this.fail(`could not start the launcher: ${(err as Error).message}`);
    }
    // null: the supervisor let go of the service (detach) before it exited.
    const exited = exitedOrDetached.then((s) => s ?? new Promise<ExitStatus>(() => {}));
    logLine(this.logFile, `started ${this.name} (${this.record.revision}) as PID ${pid}`);

    switch (this.app.daemon) {
      case 'oneshot': {
        this.setMain(pid);
        const status = await exited;
        this.clearMain(pid);
        if (status.code !== 0) {
          this.record.lastExit = { ...status, at: new Date().toISOString() };
          throw this.fail(describeExit(status));
        }
        this.setState('active'); // remains active after a successful run, as snapd's oneshot units do
        return;
      }
      case 'forking': {
        const status = await exited;
        if (status.code !== 0) throw this.fail(`the forking start command ${describeExit(status)}`);
        const mainPid = await this.forkedMain();
        if (mainPid === null) {
          throw this.fail(this.pidFile() ? `no process of the cgroup in ${this.pidFile()} within ${this.app.startTimeoutMs} ms after the start command exited` : 'the forking start command exited and left no process in the cgroup');
        }
        this.setMain(mainPid);
        this.watchByPidfd(mainPid);
        this.setState('active');
        return;
      }
      case 'notify': {
        this.setMain(pid);
        void exited.then((s) => this.onExit(pid, s));
        const timeoutMs = this.app.startTimeoutMs;
        try {
          await new Promise<void>((resolve, reject) => {
            const timer = setTimeout(() => reject(new Error(`no READY=1 within ${timeoutMs} ms`)), timeoutMs);
            const done = () => clearTimeout(timer);
            const mine = { resolve: () => (done(), resolve()), reject: (e: Error) => (done(), reject(e)) };
            this.ready = mine;
            // Only this start's process fails this start: the exit of the previous
            // main, reported late (its status is polled), must not reject it.
            exited.then((s) => mine.reject(new Error(`exited before READY=1: ${describeExit(s)}`)));
          });
        } catch (err) {
          this.ready = null;
          this.stopping = true;
          await stopCgroup(this.cgroup, { mode: this.app.stopMode, timeoutMs: this.app.stopTimeoutMs });
          this.stopping = false;
          throw this.fail((err as Error).message);
        }
        this.ready = null;
        if (this.record.state === 'activating') this.setState('active');
        return;
      }
      default: {
        // The start time is read at the first look during the settle time
        // (1 ms on), not now: /proc/PID/stat of a child still in execve waits
        // until the kernel has closed every close-on-exec descriptor the child
        // inherited, ~0.2-0.4 ms per start with 1000 services (~2000 pidfds).
        // Until then the main process is known by PID and pidfs identity.
        this.setMain(pid, identity);
        // Up only once it settled (see settleMs): an exit before is a failed start.
        const ms = settleMs();
        const settled = ms > 0 ? await settle(pid, () => this.mainStartTimeNow(pid), exited, ms) : null;
        this.mainStartTimeNow(pid);
        if (settled && 'exited' in settled) {
          // Not up: the start fails and says why. What follows is the
          // restart-condition's (with the start limit), as for any exit.
          await this.onExit(pid, settled.exited);
          if (options.auto) return;
          throw new SnapprocError('ERR_SNAPPROC_SERVICE_FAILED', `${this.name} failed: main process ${pid} ${describeExit(settled.exited)} within ${ms} ms of its start`);
        }
        void exited.then((s) => this.onExit(pid, s));
        this.setState('active');
      }
    }
  }

  /** The service's pid file (snapproc's `pid-file`), or null. */
  pidFile(revision = this.record.revision): string | null {
    return servicePidFile(this.host.root, this.record.snap, revision, this.app);
  }

  /**
   * The main process of a forking daemon once its start command exited: the
   * PID in its pid file (which a daemon may write a moment after its parent
   * exits: waited for within start-timeout, as systemd does), else the one
   * process of the cgroup whose parent is outside it (the daemonised child).
   */
  private async forkedMain(): Promise<number | null> {
    const file = this.pidFile();
    if (!file) return classifyCgroup(this.cgroup).mainPid;
    const deadline = Date.now() + this.app.startTimeoutMs;
    for (;;) {
      const pid = readPidFile(file, this.cgroup);
      if (pid !== null) return pid;
      if (Date.now() >= deadline || !isPopulated(this.cgroup)) return null;
      await new Promise((r) => setTimeout(r, 10));
    }
  }

  /** The main process (our own child) whose start time setMain left for mainStartTimeNow. */
  private startTimeLater: number | null = null;

  /**
   * `spawnedIdentity`: the pidfs identity from the pidfd of our own spawn of
   * `pid`. With one, the start time is left for mainStartTimeNow (the process
   * is known by its identity meanwhile); without (no pidfs), it is read now.
   */
  private setMain(pid: number, spawnedIdentity?: string | null): void {
    const later = spawnedIdentity != null;
    this.record.mainPid = pid;
    this.record.pidns = ownPidNamespace();
    this.record.mainStartTime = later ? null : startTimeOf(pid);
    this.record.mainIdentity = later ? spawnedIdentity : identityOf(pid);
    this.startTimeLater = later ? pid : null;
    this.record.since = new Date().toISOString();
    this.host.changed(this);
  }

  /** The recorded start time of main process `pid`, read now if setMain left it for later; null once `pid` is no longer the main. */
  private mainStartTimeNow(pid: number): number | null {
    if (this.record.mainPid !== pid) return null;
    if (this.startTimeLater === pid) {
      this.startTimeLater = null;
      const startTime = startTimeOf(pid);
      // Read after the start time, the identity says both were our child's
      // (not a process that reused the PID after ours was reaped).
      if (startTime !== null && identityOf(pid) === this.record.mainIdentity) {
        this.record.mainStartTime = startTime;
        this.host.changed(this);
      }
    }
    return this.record.mainStartTime;
  }

  private clearMain(pid: number): void {
    if (this.record.mainPid !== pid) return;
    this.record.mainPid = null;
    this.record.mainStartTime = null;
    this.record.mainIdentity = null;
  }

  /** Whether the recorded main process is alive and the same process. */
  mainAlive(): boolean {
    const pid = this.record.mainPid;
    if (pid === null) return this.app.daemon === 'oneshot' && this.record.state === 'active';
    const startTime = this.mainStartTimeNow(pid);
    // A zombie keeps its start time: it is not alive (the service must start again).
    if (startTime === null || liveStartTimeOf(pid) !== startTime) return false;
    return !this.record.mainIdentity || identityOf(pid) === this.record.mainIdentity;
  }

  /** Watches a main process that is not our direct child (adopted, forked, MAINPID=). */
  private watchByPidfd(pid: number): void {
    let pidfd: number;
    try {
      pidfd = native.pidfdOpen(pid);
    } catch {
      void this.onExit(pid, { code: null, signal: null });
      return;
    }
    void this.exitThroughPidfd(pid, pidfd).then((status) => status && this.onExit(pid, status));
  }

  /** Waits (off the main thread) for the process behind `pidfd` to exit: its status, or null if the wait was cancelled. Closes the pidfd. */
  private exitThroughPidfd(pid: number, pidfd: number): Promise<ExitStatus | null> {
    this.mainWait?.cancel();
    const wait = native.pidfdWait(pidfd, -1);
    this.mainWait = wait;
    return wait.result.then(
      async (outcome) => {
        const status = outcome === 'done' ? await this.exitStatusOf(pid, pidfd) : null;
        fs.closeSync(pidfd);
        if (this.mainWait === wait) this.mainWait = null;
        return status;
      },
      () => {
        fs.closeSync(pidfd);
        return null;
      },
    );
  }

  /**
   * Starts the launcher for this service inside its cgroup. Where the kernel
   * has clone3(CLONE_INTO_CGROUP) (5.7+) the child is created in the cgroup;
   * elsewhere Node spawns the launcher, which moves itself in (--cgroup) and
   * says so on a pipe (--ready-fd), and only then counts as started.
   * `identity`: the launcher's pidfs identity, from the pidfd of the clone3
   * spawn (undefined after Node's spawn).
   */
  private async spawnLauncher(env: Record<string, string>, socketFds: number[]): Promise<{ pid: number; exited: Promise<ExitStatus | null>; identity?: string | null }> {
    const args = ['--resolve', this.host.root, this.record.snap, this.record.app];
    const out = openLog(this.logFile);
    try {
      // Where the kernel kills children cloned into a cgroup that was once
      // cgroup.kill'ed, clone only into a freshly re-created one; a cgroup
      // that cannot be re-created (not empty) gets the launcher moved in.
      let cloneHere = clone3IntoCgroup !== false;
      if (cloneHere && (await cloneIntoKilledCgroupDies(path.dirname(this.cgroup), (p) => this.host.reapedStatus(p)))) {
        cloneHere = recreateEmptyCgroup(this.cgroup);
      }
      if (cloneHere) {
        const cgroupFd = fs.openSync(this.cgroup, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
        try {
          const envList = Object.entries(env).map(([k, v]) => `${k}=${v}`);
          const { pid, pidfd } = native.spawnInCgroup(launcherPath(), [launcherPath(), ...args], envList, cgroupFd, [-1, out, out, ...socketFds], true);
          clone3IntoCgroup = true;
          this.child = null;
          const identity = identityOfPidfd(pidfd);
          return { pid, exited: this.exitThroughPidfd(pid, pidfd), identity };
        } catch (err) {
          if (!hasCode(err, 'ENOSYS', 'E2BIG', 'EINVAL', 'EPERM')) throw err;
          clone3IntoCgroup = false;
        } finally {
          fs.closeSync(cgroupFd);
        }
      }
      // A pipe after the sockets: the launcher writes to it once it is in the cgroup.
      const readyFd = 3 + socketFds.length;
      const child = spawn(launcherPath(), ['--cgroup', this.cgroup, '--ready-fd', String(readyFd), ...args], {
        stdio: ['ignore', out, out, ...socketFds, 'pipe'],
        env,
        detached: true, // own session and process group: the main process leads it
      });
      this.child = child;
      const exited = new Promise<ExitStatus | null>((resolve) => {
        child.once('exit', (code, signal) => resolve({ code, signal }));
        child.once('error', () => resolve({ code: 127, signal: null }));
      });
      // Not started until it is in its cgroup: a stop right after must find it there.
      const readyPipe = child.stdio[readyFd] as NodeJS.ReadableStream | null;
      if (readyPipe) {
        await new Promise<void>((resolve) => {
          readyPipe.once('data', () => resolve());
          readyPipe.once('close', () => resolve());
          readyPipe.once('error', () => resolve());
          child.once('error', () => resolve());
        });
        (readyPipe as unknown as { destroy(): void }).destroy();
      }
      if (child.pid === undefined) throw new SnapprocError('ERR_SNAPPROC_SPAWN', `could not start ${launcherPath()}`);
      return { pid: child.pid, exited };
    } finally {
      fs.closeSync(out);
    }
  }

  /** The exit status of a process that is not our Node child: reaped by us as subreaper, or told by its pidfd once reaped. */
  private async exitStatusOf(pid: number, pidfd: number): Promise<ExitStatus> {
    for (let i = 0; i < 40; i++) {
      const reaped = this.host.reapedStatus(pid);
      if (reaped !== undefined) return decodeWaitStatus(reaped);
      try {
        return decodeWaitStatus(native.pidfdExitStatus(pidfd));
      } catch {
        // not reaped yet by its parent
      }
      await new Promise((r) => setTimeout(r, 25));
    }
    return { code: null, signal: null };
  }

  /** Notification from NOTIFY_SOCKET, sent by `pid` (already known to be in our cgroup). */
  onNotify(pid: number, fields: Map<string, string>): void {
    const mainpid = fields.get('MAINPID');
    if (mainpid !== undefined) {
      const n = Number(mainpid);
      const where = Number.isInteger(n) && n > 1 ? cgroupOfPid(n) : null;
      if (where && isInside(where, this.cgroup) && n !== this.record.mainPid) {
        logLine(this.logFile, `${this.name}: main process is now PID ${n} (MAINPID from ${pid})`);
        this.setMain(n);
        if (this.child?.pid !== n) this.watchByPidfd(n);
      }
    }
    if (fields.get('READY') === '1') {
      if (this.ready) this.ready.resolve();
      else if (this.record.state === 'activating') this.setState('active');
    }
    if (fields.get('WATCHDOG') === '1' && this.record.state === 'active') this.armWatchdog();
    if (fields.get('STOPPING') === '1' && !this.stopping) this.setState('deactivating');
    if (fields.get('RELOADING') === '1') logLine(this.logFile, `${this.name}: reloading`);
  }

  /** (Re)starts the watchdog-timeout deadline: missed, the main process gets SIGABRT (systemd's WatchdogSignal), then SIGKILL after stop-timeout. */
  private armWatchdog(): void {
    this.disarmWatchdog();
    const ms = this.app.watchdogTimeoutMs;
    if (!(ms > 0) || this.app.daemon === 'oneshot') return;
    this.watchdogTimer = setTimeout(() => {
      this.watchdogTimer = null;
      const pid = this.record.mainPid;
      if (pid === null || this.stopping || this.handingOver) return;
      this.watchdogFired = true;
      logLine(this.logFile, `${this.name}: watchdog timeout (no WATCHDOG=1 within ${ms} ms): sending SIGABRT to main process ${pid}`);
      try {
        this.signalMain(6);
      } catch {
        // gone meanwhile: its exit is handled as a watchdog timeout all the same
      }
      const kill = setTimeout(() => {
        if (this.record.mainPid === pid && this.mainAlive()) {
          logLine(this.logFile, `${this.name}: main process ${pid} still runs ${this.app.stopTimeoutMs} ms after SIGABRT: SIGKILL`);
          try {
            this.signalMain(9);
          } catch {
            // gone
          }
        }
      }, this.app.stopTimeoutMs);
      kill.unref();
    }, ms);
    this.watchdogTimer.unref();
  }

  private disarmWatchdog(): void {
    if (this.watchdogTimer) clearTimeout(this.watchdogTimer);
    this.watchdogTimer = null;
  }

  /** A process that was our main process exited. */
  private async onExit(pid: number, status: ExitStatus): Promise<void> {
    if (this.record.mainPid !== pid) return; // an old main after a hand-over, or already handled
    // A notify service that dies before READY=1: start() reports it as a failed start.
    if (this.ready) return;
    this.record.lastExit = { code: status.code, signal: status.signal, at: new Date().toISOString() };
    this.clearMain(pid);
    // Stopping, or the old main leaving during a hand-over: not the service ending.
    if (this.stopping || this.handingOver) return;
    logLine(this.logFile, `${this.name}: main process ${pid} ${describeExit(status)}`);
    // The service is down: with a -all stop-mode, what it left in the cgroup goes too.
    if (stopModeSignal(this.app.stopMode).all && isPopulated(this.cgroup)) {
      await stopCgroup(this.cgroup, { mode: this.app.stopMode, timeoutMs: this.app.stopTimeoutMs });
    }
    const watchdog = this.watchdogFired;
    this.watchdogFired = false;
    if (this.record.wanted && shouldRestart(this.app.restartCondition, status, this.app.successExitStatus, watchdog)) {
      this.setState('activating', `restarting in ${this.app.restartDelayMs} ms after it ${describeExit(status)}`);
      this.restartTimer = setTimeout(() => {
        this.restartTimer = null;
        this.record.restarts += 1;
        this.start({ auto: true }).catch(() => {
          // the failure is in the record and the log
        });
      }, this.app.restartDelayMs);
      return;
    }
    if (watchdog) this.setState('failed', `watchdog timeout, then ${describeExit(status)}`);
    else if (isCleanExit(status, this.app.successExitStatus)) this.setState('inactive');
    else this.setState('failed', describeExit(status));
  }

  /** A graceful refresh signals the main process, which hands over to a successor: its exit is not the service's. */
  beginHandover(): void {
    this.handingOver = true;
  }

  endHandover(): void {
    this.handingOver = false;
  }

  /** Takes `pid` (verified in the cgroup by the caller) as the main process from now on. */
  adoptMain(pid: number): void {
    if (this.record.mainPid === pid) return;
    this.setMain(pid);
    // Even our own child is watched by pidfd here: its exit event was bound to the old role.
    this.watchByPidfd(pid);
  }

  /** Re-adopts the service after a supervisor restart; false when nothing of it runs. */
  adopt(): boolean {
    const rec = this.record;
    // The last supervisor died while stopping it, between the stop's freeze
    // and its thaw (a stop of many freezes them all before it signals and
    // thaws each): that freeze was the stop's, not a user's, and is undone.
    if (rec.state === 'deactivating') {
      try {
        if (isFrozen(this.cgroup)) native.writeFreeze(this.cgroup, false);
      } catch {
        // no cgroup (any more): nothing frozen
      }
    }
    if (!isPopulated(this.cgroup)) {
      if (this.app.daemon === 'oneshot' && rec.state === 'active') return true;
      return this.notAdopted();
    }
    const found = classifyCgroup(this.cgroup, {
      main: rec.mainPid !== null ? { pid: rec.mainPid, startTime: rec.mainStartTime ?? undefined, identity: rec.mainIdentity } : undefined,
    });
    let mainPid = found.mainPid;
    // Guess a main process only without a record: a recorded main that died
    // means the service exited (what is left are its children, not it).
    if (mainPid === null && rec.mainPid === null) {
      const file = this.pidFile();
      mainPid = (file && readPidFile(file, this.cgroup)) || classifyCgroup(this.cgroup).mainPid;
    }
    if (mainPid === null) return this.notAdopted();
    if (mainPid !== rec.mainPid) this.setMain(mainPid);
    logLine(this.logFile, `${this.name}: adopted running main process ${mainPid}`);
    this.watchByPidfd(mainPid);
    if (rec.state !== 'active') this.setState('active');
    return true;
  }

  /**
   * Nothing to adopt: a record that still says the service runs (or was
   * being started or stopped when the last supervisor died) is stale. It
   * becomes inactive, so that a wanted service is started again and a
   * stopped one is not shown as "deactivating" for ever.
   */
  private notAdopted(): false {
    const rec = this.record;
    if (rec.state === 'active' || rec.state === 'activating' || rec.state === 'deactivating') {
      const was = rec.mainPid;
      rec.mainPid = null;
      rec.mainStartTime = null;
      rec.mainIdentity = null;
      logLine(this.logFile, `${this.name}: ${was === null ? 'nothing runs' : `main process ${was} is gone`} (recorded ${rec.state} by the previous supervisor)`);
      this.setState('inactive');
    }
    return false;
  }

  /** Stops the service by stop-mode (or the one given), running stop-command before and post-stop-command after. */
  async stop(options: { mode?: StopMode; timeoutMs?: number; keepWanted?: boolean } = {}): Promise<StopResult> {
    if (!options.keepWanted) this.record.wanted = false;
    if (this.restartTimer) {
      clearTimeout(this.restartTimer);
      this.restartTimer = null;
    }
    this.stopping = true;
    this.setState('deactivating');
    const timeoutMs = options.timeoutMs ?? this.app.stopTimeoutMs;
    try {
      // Never started (no cgroup yet): nothing runs, nothing to stop. A stop,
      // refresh or remove of such a service must not fail on it.
      if (!fs.existsSync(path.join(this.cgroup, 'cgroup.procs'))) {
        this.record.mainPid = null;
        this.record.mainStartTime = null;
        this.record.mainIdentity = null;
        this.setState('inactive');
        const { signal, all } = stopModeSignal(options.mode ?? this.app.stopMode);
        return { mode: options.mode ?? this.app.stopMode, signal, target: all ? 'cgroup' : 'main', mainPid: null, signalled: 0, gone: 0, timedOut: false, isForcefullyTerminated: false, stopped: true, durationMs: 0, note: 'never started' };
      }
      if (this.app.stopCommand) await this.runAuxiliary('stop', timeoutMs);
      const main = this.record.mainPid !== null ? { pid: this.record.mainPid, startTime: this.record.mainStartTime ?? undefined, identity: this.record.mainIdentity } : null;
      // Batched with the other stops asked for in this turn (stop --all): all signalled first, then waited for side by side.
      const result = await stopCgroupBatched(this.cgroup, { mode: options.mode ?? this.app.stopMode, timeoutMs, main });
      this.mainWait?.cancel();
      this.mainWait = null;
      if (this.app.postStopCommand) await this.runAuxiliary('post-stop', timeoutMs).catch(() => undefined);
      const to = result.target === 'main' ? (result.mainPid === null ? 'nobody: main process already gone' : `main process ${result.mainPid}`) : `${result.signalled} processes`;
      logLine(this.logFile, `stopped ${this.name} (${result.mode}: ${result.signal} to ${to}${result.isForcefullyTerminated ? ', SIGKILL after timeout' : ''}${result.note && result.mainPid !== null ? `; ${result.note}` : ''})`);
      this.record.mainPid = null;
      this.record.mainStartTime = null;
      this.record.mainIdentity = null;
      this.setState('inactive');
      if (!options.keepWanted) this.host.flushFdStore(this);
      return result;
    } finally {
      this.stopping = false;
    }
  }

  /** Runs stop-command / post-stop-command in the service's cgroup with the service's environment. */
  private async runAuxiliary(which: 'stop' | 'post-stop', timeoutMs: number): Promise<void> {
    const file = launchFile(this.host.root, this.record.snap, this.record.revision, `${this.record.app}.${which}`);
    if (!fs.existsSync(file)) return;
    fs.mkdirSync(this.cgroup, { recursive: true });
    const out = openLog(this.logFile);
    try {
      const child = spawn(launcherPath(), ['--cgroup', this.cgroup, '--launch', file], { stdio: ['ignore', out, out], env: { PATH: BASE_PATH } });
      // Through the guard, and the command's whole process group goes with it.
      const timer = setTimeout(() => {
        if (child.pid !== undefined) signalVerified(child.pid, 9, this.cgroup);
      }, timeoutMs);
      const status = await new Promise<ExitStatus>((resolve) => {
        child.once('exit', (code, signal) => resolve({ code, signal }));
        child.once('error', () => resolve({ code: 127, signal: null }));
      });
      clearTimeout(timer);
      if (status.code !== 0) logLine(this.logFile, `${which}-command of ${this.name} ${describeExit(status)}`);
    } finally {
      fs.closeSync(out);
    }
  }

  /** Sends a signal to the main process (or the cgroup), through the guard. */
  signalMain(sig: number): void {
    if (this.record.mainPid === null) return;
    signalVerified(this.record.mainPid, sig, this.cgroup, this.record.mainStartTime ?? undefined, this.record.mainIdentity);
  }

  /** Forgets timers and waits (supervisor shutdown without stopping services). */
  detach(): void {
    this.disarmWatchdog();
    if (this.restartTimer) clearTimeout(this.restartTimer);
    this.restartTimer = null;
    this.mainWait?.cancel();
    this.mainWait = null;
    this.child?.unref();
  }
}
