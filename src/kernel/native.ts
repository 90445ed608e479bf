// native.ts: the one place that loads the addon. Tries build/Release, then
// build/Debug, and on failure throws one error listing the paths tried and
// the fix. Wraps every call so that an errno leaving C++ becomes a
// Node-shaped SnapprocError. The declaration below is internal: the public
// API is in index.ts.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SnapprocError } from '../util/errors';

/** Outcome of a wait that ran off the main thread. */
export type WaitOutcome = 'done' | 'timeout' | 'cancelled';
/** A wait that ends in a cgroup.kill at its deadline: 'killed' when the condition held only after it. */
export type KillWaitOutcome = WaitOutcome | 'killed';

interface Addon {
  kill(pid: number, sig: number): void;
  killpg(pgid: number, sig: number): void;
  pidfdOpen(pid: number): number;
  pidfdSendSignal(pidfd: number, sig: number): void;
  pidfdExitStatus(pidfd: number): number;
  cancelWait(token: number): void;
  syncfs(path: string): [Promise<WaitOutcome>, number];
  bindReadonly(path: string): void;
  spawnInCgroup(file: string, argv: string[], env: string[], cgroupFd: number, fds: number[], setsid: boolean): { pid: number; pidfd: number };
  setChildSubreaper(on: boolean): void;
  getChildSubreaper(): boolean;
  setPdeathsig(sig: number): void;
  getPdeathsig(): number;
  setName(name: string): void;
  getName(): string;
  readProcs(dir: string): Int32Array;
  procIds(pids: Int32Array): Int32Array;
  /** One thread waits on every watch; `cb` gets [token, rc, ...] for those whose condition holds (rc 1) or failed (rc -errno). */
  watchInit(cb: (ready: Int32Array) => void): void;
  watchPidfd(pidfd: number): number;
  /** 0: the key has that value already (nothing is watched). */
  watchEvent(dir: string, key: string, want: number, killAfterMs?: number): number;
  watchRemove(token: number): boolean;
  watchCheck(token: number): number;
  signalAll(dir: string, sig: number, freezeTimeoutMs: number, alsoCont: boolean, onlyIfFrozen?: boolean, refuseFrozen?: boolean): NativeFanout;
  signalFrozen(dir: string, sig: number, alsoCont: boolean): NativeFanout;
  writeFreeze(dir: string, frozen: boolean): void;
  lockFile(path: string): number;
  peerCred(fd: number): PeerCred;
  connectUnix(path: string): number;
  listenUnix(path: string, mode: number, backlog: number): number;
  listenTcp(host: string, port: number, backlog: number): number;
  socketName(fd: number): { family: 'unix' | 'IPv4' | 'IPv6'; address: string; port: number };
  /** The callback gets (pid, uid, text) per message, or (0, -1, '', errno, syscall) once if the receiving thread fails. */
  notifyListen(path: string, cb: (pid: number, uid: number, text: string, errno?: number, syscall?: string, fds?: number[]) => void): number;
  pidfdGetfd(pidfd: number, fd: number): number;
  notifyClose(id: number): boolean;
  reapChildren(exclude: Int32Array): Array<{ pid: number; status: number }>;
  copyTree(src: string, dst: string, flags: number): Promise<CopyStats>;
  procInfo(pids: Int32Array, revisions: boolean, viaStat: boolean): ProcInfo;
  makeDataDir(path: string, mode: number, subvolume: number): boolean;
  standbyMake(src: string, dir: string, label: string, flags: number, cancel: Int32Array): Promise<{ files: number; dirs: number; cloned: number; bytes: number }>;
  standbyApply(src: string, dir: string, label: string, marginNs: number, flags: number): Promise<StandbyApplyStats>;
  standbyInfo(dir: string): { label?: string; startedNs?: number; why?: string };
  execve(file: string, argv: string[], env: string[]): never;
  resetNiceOnFork(): void;
  mallocTrim(): boolean;
}

/** What native.procInfo read of each process that was still there, in the order given. */
/** What one native freeze-signal-thaw did (signalAll). */
export interface NativeFanout {
  /** Processes the signal was delivered to. */
  signalled: number;
  /** Members that exited before they could be signalled. */
  gone: number;
  /** Cgroups in the subtree. */
  cgroups: number;
  /** The subtree reached `frozen 1` before it was read and signalled. */
  frozen: boolean;
  /** The subtree had no member: nothing was done. */
  empty: boolean;
  /** cgroup.freeze read 1 before the call. */
  wasFrozen: boolean;
}

export interface ProcInfo {
  /** pid, ppid, pgid of each. */
  ids: Int32Array;
  /** /proc/PID/stat start time (clock ticks since boot) of each; only when read from /proc/PID/stat (`viaStat`, or a kernel without PIDFD_GET_INFO). */
  start?: Float64Array;
  /** 1 for a zombie (exited, not yet reaped); only with `start`. */
  zombie?: Uint8Array;
  /** With `revisions`: the snap revision each executes, or null. */
  revisions?: Array<string | null>;
}

/** How native.copyTree made its copy, and what it copied. */
export interface CopyStats {
  /** `snapshot`: one btrfs snapshot; `files`: file by file (clones where possible); `files-into-subvolume`: the same into a new btrfs subvolume. */
  method: 'files' | 'snapshot' | 'files-into-subvolume';
  files: number;
  dirs: number;
  symlinks: number;
  special: number;
  hardlinks: number;
  /** Regular files whose contents were cloned (FICLONE), not copied. */
  cloned: number;
  /** Bytes copied (not cloned). */
  bytes: number;
  xattrs: number;
}

/** What the checking pass of a standby copy did (native.standbyApply). */
export interface StandbyApplyStats {
  entries: number;
  kept: number;
  recreated: number;
  removed: number;
  fixed: number;
  retimed: number;
  linkSetsRedone: number;
}

/** Flags of native.copyTree. */
export const COPY = { NO_CLONE: 1, NO_SNAPSHOT: 2, SUBVOLUME: 4, NO_SYNC: 8, NO_XATTRS: 16 } as const;

/** Credentials of the process at the other end of a unix socket (SO_PEERCRED). */
export interface PeerCred {
  pid: number;
  uid: number;
  gid: number;
}

/** A listening socket for bindListen: a unix stream socket or TCP on a numeric address. */
export type ListenSpec =
  | { kind: 'unix'; path: string; mode?: number; backlog?: number }
  | { kind: 'tcp'; host: string; port: number; backlog?: number };

/** Where a socket is bound (getsockname). */
export type SocketName = { family: 'unix'; path: string } | { family: 'IPv4' | 'IPv6'; address: string; port: number };

/** One process reaped by reapChildren: its pid and raw wait status. */
export interface Reaped {
  pid: number;
  status: number;
}

/** SOMAXCONN on Linux 5.4 and later: the kernel caps larger values at net.core.somaxconn. */
const DEFAULT_BACKLOG = 4096;

const PACKAGE_ROOT = path.resolve(__dirname, '..', '..', '..');
const CANDIDATES = ['build/Release/snapproc.node', 'build/Debug/snapproc.node'];
const LAUNCHER_CANDIDATES = ['build/Release/snapproc-exec', 'build/Debug/snapproc-exec'];

let loaded: Addon | undefined;

function load(): Addon {
  if (loaded) return loaded;
  const tried: string[] = [];
  for (const rel of CANDIDATES) {
    const file = path.join(PACKAGE_ROOT, rel);
    tried.push(file);
    try {
      loaded = require(file) as Addon;
      return loaded;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== 'MODULE_NOT_FOUND') {
        throw new SnapprocError('ERR_SNAPPROC_ADDON', `snapproc's native addon failed to load from ${file}: ${(err as Error).message}; rebuild it with \`npm rebuild snapproc\``, { cause: err });
      }
    }
  }
  throw new SnapprocError(
    'ERR_SNAPPROC_ADDON',
    `snapproc's native addon is not built (tried ${tried.join(', ')}); build it with \`npm rebuild snapproc\` (needs python3, make and g++)`,
  );
}

let launcher: string | undefined;

/**
 * Path of the snapproc-exec launcher (built with the addon, a second
 * node-gyp target): build/Release, then build/Debug.
 */
export function launcherPath(): string {
  if (launcher) return launcher;
  const tried: string[] = [];
  for (const rel of LAUNCHER_CANDIDATES) {
    const file = path.join(PACKAGE_ROOT, rel);
    tried.push(file);
    try {
      fs.accessSync(file, fs.constants.X_OK);
      launcher = file;
      return file;
    } catch {
      // try the next one
    }
  }
  throw new SnapprocError(
    'ERR_SNAPPROC_ADDON',
    `snapproc's launcher snapproc-exec is not built (tried ${tried.join(', ')}); build it with \`npm rebuild snapproc\` (needs python3, make, gcc and g++)`,
  );
}

/** Converts an error thrown by the addon (errno + syscall) into a SnapprocError. */
export function fromAddonError(err: unknown, detail: { path?: string; pid?: number } = {}): unknown {
  const e = err as { errno?: number; syscall?: string };
  if (typeof e?.errno === 'number' && typeof e.syscall === 'string') {
    return SnapprocError.fromErrno(e.errno, e.syscall, { ...detail, cause: err });
  }
  return err;
}

function call<T>(fn: () => T, detail: { path?: string; pid?: number } = {}): T {
  try {
    return fn();
  } catch (err) {
    throw fromAddonError(err, detail);
  }
}

/** A wait running on its own thread: await `result`, or `cancel()` it. */
export interface PendingWait<Outcome = WaitOutcome> {
  result: Promise<Outcome>;
  cancel(): void;
}

function pending(start: () => [Promise<WaitOutcome>, number], detail: { path?: string; pid?: number }): PendingWait {
  const [promise, token] = call(start, detail);
  let settled = false;
  const result = promise.then(
    (outcome) => {
      settled = true;
      return outcome;
    },
    (err) => {
      settled = true;
      throw fromAddonError(err, detail);
    },
  );
  return {
    result,
    cancel() {
      // The token is an eventfd that the addon closes when the wait settles:
      // never write to it after that, its number may belong to another file.
      if (!settled) load().cancelWait(token);
    },
  };
}

// ---- waits on the addon's one watching thread --------------------------------
// A wait per pidfd or cgroup.events key, all on one thread of the addon (an
// epoll set), instead of a thread per wait: a supervisor of 1000 services
// waits on 1000 main processes for as long as they run. Timeouts and
// cancelling are here; the addon reports each watch once, when its condition
// holds (or can no longer be read).

const watchers = new Map<number, (rc: number) => void>();
let watching = false;

function ensureWatcher(): void {
  if (watching) return;
  load().watchInit((ready) => {
    for (let i = 0; i < ready.length; i += 2) {
      const on = watchers.get(ready[i]);
      if (!on) continue; // ended meanwhile (timed out, cancelled)
      try {
        on(ready[i + 1]);
      } catch (err) {
        queueMicrotask(() => {
          throw err;
        });
      }
    }
  });
  watching = true;
}

/** setTimeout takes at most 2^31-1 ms (larger values fire at once). */
const MAX_TIMER_MS = 0x7fffffff;

/**
 * A wait on one watch: 'done' once the addon reports its condition, 'timeout'
 * after `timeoutMs` (negative: none), 'cancelled' by cancel(). `add` returns
 * the watch's token, or 0 when the condition holds already.
 */
function watchedWait(add: () => number, timeoutMs: number, syscall: string, detail: { path?: string; pid?: number }): PendingWait<KillWaitOutcome> {
  let settle!: (outcome: KillWaitOutcome) => void;
  let reject!: (err: unknown) => void;
  const result = new Promise<KillWaitOutcome>((res, rej) => {
    settle = res;
    reject = rej;
  });
  let token = 0;
  let timer: NodeJS.Timeout | undefined;
  let over = false;
  const end = (): boolean => {
    if (over) return false;
    over = true;
    if (timer) clearTimeout(timer);
    if (token) {
      watchers.delete(token);
      load().watchRemove(token);
    }
    return true;
  };
  const finish = (outcome: KillWaitOutcome) => end() && settle(outcome);
  try {
    ensureWatcher();
    try {
      token = add();
    } catch (err) {
      // The watching thread ended on an error (it told its open watches so) and
      // its watcher is gone: a new one for this and later waits.
      if ((err as { syscall?: string }).syscall !== 'watchInit') throw err;
      watching = false;
      ensureWatcher();
      token = add();
    }
  } catch (err) {
    over = true;
    reject(fromAddonError(err, detail));
    return { result, cancel() {} };
  }
  if (token === 0) {
    over = true;
    settle('done');
    return { result, cancel() {} };
  }
  watchers.set(token, (rc) => {
    if (rc >= 0) finish(rc === 2 ? 'killed' : 'done');
    else if (end()) reject(SnapprocError.fromErrno(rc, syscall, detail));
  });
  if (timeoutMs >= 0) {
    timer = setTimeout(() => {
      // The report may be on its way: what holds now decides.
      let now = 0;
      try {
        now = load().watchCheck(token);
      } catch {
        // failed: reported as such by the addon, or a timeout it is
      }
      finish(now === 2 ? 'killed' : now === 1 ? 'done' : 'timeout');
    }, Math.min(timeoutMs, MAX_TIMER_MS));
  }
  return { result, cancel: () => finish('cancelled') };
}

/** Writes cgroup.freeze (not waited for); a failure is a SnapprocError naming the file. */
function writeFreeze(dir: string, frozen: boolean): void {
  call(() => load().writeFreeze(dir, frozen), { path: `${dir}/cgroup.freeze` });
}

/** Writes cgroup.freeze and waits until `frozen` follows. */
function setFrozen(dir: string, frozen: boolean, timeoutMs: number): PendingWait {
  try {
    writeFreeze(dir, frozen);
  } catch (err) {
    return { result: Promise.reject(err), cancel() {} };
  }
  return watchedWait(() => load().watchEvent(dir, 'frozen', frozen ? 1 : 0), timeoutMs, 'read', { path: dir }) as PendingWait;
}

function invalid(message: string): SnapprocError {
  return new SnapprocError('ERR_INVALID_ARG_VALUE', message);
}

function checkBacklog(backlog: number | undefined): number {
  if (backlog === undefined) return DEFAULT_BACKLOG;
  if (!Number.isInteger(backlog) || backlog < 1) throw invalid(`Expected the "backlog" option to be a positive integer, got ${String(backlog)}`);
  return Math.min(backlog, 0x7fffffff);
}

function bindListen(spec: ListenSpec): number {
  if (spec?.kind === 'unix') {
    if (typeof spec.path !== 'string' || spec.path === '') throw invalid(`Expected the "path" option to be a non-empty string, got ${String(spec.path)}`);
    // sun_path holds 108 bytes with the terminating NUL.
    if (Buffer.byteLength(spec.path) > 107) throw invalid(`Expected the "path" option to be at most 107 bytes (a unix socket address), got ${Buffer.byteLength(spec.path)}: ${spec.path}`);
    const mode = spec.mode ?? 0o666;
    if (!Number.isInteger(mode) || mode < 0 || mode > 0o7777) throw invalid(`Expected the "mode" option to be a file mode between 0 and 0o7777, got ${String(spec.mode)}`);
    const backlog = checkBacklog(spec.backlog);
    return call(() => load().listenUnix(spec.path, mode, backlog), { path: spec.path });
  }
  if (spec?.kind === 'tcp') {
    if (!Number.isInteger(spec.port) || spec.port < 0 || spec.port > 65535) throw invalid(`Expected the "port" option to be an integer from 0 to 65535, got ${String(spec.port)}`);
    const host = spec.host === 'localhost' ? '127.0.0.1' : spec.host;
    const bare = typeof host === 'string' ? host.replace(/^\[(.*)\]$/, '$1').replace(/%.*$/, '') : '';
    // node:net only here: the CLI's fast path loads this module without it (client-sync.ts).
    if ((require('node:net') as typeof import('node:net')).isIP(bare) === 0) throw invalid(`Expected the "host" option to be a numeric IPv4 or IPv6 address (or localhost), got ${String(spec.host)}`);
    const backlog = checkBacklog(spec.backlog);
    try {
      return load().listenTcp(host, spec.port, backlog);
    } catch (err) {
      // Name the address in the message, as Node's EADDRINUSE does; `path` is for files.
      const e = fromAddonError(err);
      if (e instanceof SnapprocError && e.errno !== undefined) {
        const where = host.includes(':') && !host.startsWith('[') ? `[${host}]:${spec.port}` : `${host}:${spec.port}`;
        throw new SnapprocError(e.code, `${e.code}: ${e.syscall} failed ${where}`, { errno: e.errno, syscall: e.syscall, cause: err });
      }
      throw e;
    }
  }
  throw invalid(`Expected the "kind" option to be 'unix' or 'tcp', got ${String((spec as { kind?: unknown })?.kind)}`);
}

function socketName(fd: number): SocketName {
  const n = call(() => load().socketName(fd));
  return n.family === 'unix' ? { family: 'unix', path: n.address } : { family: n.family, address: n.address, port: n.port };
}

/**
 * Opens systemd's NOTIFY_SOCKET at `file` and calls `onMessage` with each
 * datagram and its sender's pid and uid (kernel-supplied, SCM_CREDENTIALS).
 * Keeps the event loop alive until notifyClose. A callback that throws is
 * reported as an uncaught exception; a failure of the receiving thread goes to
 * `onError` (or is thrown the same way) and ends the listener.
 */
function notifyListen(file: string, onMessage: (pid: number, uid: number, text: string, fds: number[]) => void, onError?: (err: unknown) => void): number {
  const raise = (err: unknown) => queueMicrotask(() => { throw err; });
  return call(
    () =>
      load().notifyListen(file, (pid, uid, text, errno, syscall, fds) => {
        try {
          if (errno !== undefined) {
            const err = SnapprocError.fromErrno(errno, syscall ?? 'recvmsg', { path: file });
            if (onError) onError(err);
            else raise(err);
            return;
          }
          // Attached descriptors (FDSTORE=1) are the callback's: it keeps or closes them.
          onMessage(pid, uid, text, fds ?? []);
        } catch (err) {
          raise(err);
        }
      }),
    { path: file },
  );
}

export const native = {
  kill: (pid: number, sig: number) => call(() => load().kill(pid, sig), { pid }),
  killpg: (pgid: number, sig: number) => call(() => load().killpg(pgid, sig), { pid: pgid }),
  pidfdOpen: (pid: number) => call(() => load().pidfdOpen(pid), { pid }),
  /** A copy (O_CLOEXEC) of fd `fd` of the process behind `pidfd` (pidfd_getfd(2)). */
  pidfdGetfd: (pidfd: number, fd: number): number => call(() => load().pidfdGetfd(pidfd, fd)),
  pidfdSendSignal: (pidfd: number, sig: number) => call(() => load().pidfdSendSignal(pidfd, sig)),
  pidfdExitStatus: (pidfd: number) => call(() => load().pidfdExitStatus(pidfd)),
  /** Starts a child inside a cgroup from its first instant (clone3 CLONE_INTO_CGROUP); fds[i] becomes its fd i. */
  spawnInCgroup: (file: string, argv: string[], env: string[], cgroupFd: number, fds: number[], setsid: boolean) =>
    call(() => load().spawnInCgroup(file, argv, env, cgroupFd, fds, setsid), { path: file }),
  /** Bind-mounts `path` read-only over itself in one step (open_tree + mount_setattr + move_mount). */
  bindReadonly: (file: string) => call(() => load().bindReadonly(file), { path: file }),
  /**
   * Copies the directory tree `src` to the new path `dst` faithfully (owners,
   * modes, ns times, xattrs, symlinks, hard links, special files, holes, any
   * name), off the main thread: one snapshot for a btrfs subvolume, else
   * file by file with clones where the file system has them; flushed when it
   * resolves. Rejects with a SnapprocError naming the entry that failed.
   */
  copyTree: (src: string, dst: string, flags = 0): Promise<CopyStats> =>
    call(() => load().copyTree(src, dst, flags), { path: src }).catch((err: unknown) => {
      const where = (err as { where?: string })?.where;
      throw fromAddonError(err, { path: where ? path.join(src, where) : src });
    }),
  /**
   * The standby copy (see src/snap/standby.ts): clones `src` into `dir`/tree
   * at the lowest priority and writes `dir`/manifest last; `cancel[0] = 1`
   * (an Int32Array on a SharedArrayBuffer) stops it (ECANCELED); EOPNOTSUPP
   * where files cannot be cloned.
   */
  standbyMake: (src: string, dir: string, label: string, cancel: Int32Array, flags = 0) =>
    call(() => load().standbyMake(src, dir, label, flags, cancel), { path: dir }).catch((err: unknown) => {
      throw fromAddonError(err, { path: dir });
    }),
  /** The checking pass: `dir`/tree becomes what copyTree(src) would make now; ESTALE (SnapprocError) when it cannot be used. */
  standbyApply: (src: string, dir: string, label: string, marginNs: number, flags = 0): Promise<StandbyApplyStats> =>
    call(() => load().standbyApply(src, dir, label, marginNs, flags), { path: dir }).catch((err: unknown) => {
      const e = err as { where?: string; why?: string; errno?: number };
      // ESTALE (libuv has no name for it): the standby cannot be used, `why` says why.
      if (e?.errno === -116) throw new SnapprocError('ESTALE', `standby ${dir} cannot be used: ${e.why ?? 'stale'}`, { errno: -116, syscall: 'standby', path: dir, cause: err });
      const out = fromAddonError(err, { path: e?.where ? path.join(dir, 'tree', e.where) : dir });
      if (e?.why && out instanceof Error) out.message = `${e.why}`;
      throw out;
    }),
  /** The label and start time of a complete standby in `dir`, or why there is none. */
  standbyInfo: (dir: string) => call(() => load().standbyInfo(dir), { path: dir }),
  /** Makes the directory `dir` with exactly `mode`; a btrfs subvolume when `subvolume` and on btrfs (true then). */
  makeDataDir: (dir: string, mode: number, subvolume: boolean): boolean => call(() => load().makeDataDir(dir, mode, subvolume ? 1 : 0), { path: dir }),
  /** Flushes the file system holding `path` (syncfs(2)), off the main thread. */
  syncfs: (path: string) => pending(() => load().syncfs(path), { path }).result,
  /** Waits until the process behind `pidfd` exits ('done'), `timeoutMs` passes (negative: no limit) or it is cancelled. */
  pidfdWait: (pidfd: number, timeoutMs: number): PendingWait => watchedWait(() => load().watchPidfd(pidfd), timeoutMs, 'poll', {}) as PendingWait,
  setChildSubreaper: (on: boolean) => call(() => load().setChildSubreaper(on)),
  getChildSubreaper: () => call(() => load().getChildSubreaper()),
  setPdeathsig: (sig: number) => call(() => load().setPdeathsig(sig)),
  getPdeathsig: () => call(() => load().getPdeathsig()),
  setName: (name: string) => call(() => load().setName(name)),
  getName: () => call(() => load().getName()),
  /** Processes this thread creates from now on start at nice 0 if it runs at a negative nice (SCHED_RESET_ON_FORK). */
  resetNiceOnFork: () => call(() => load().resetNiceOnFork()),
  /** malloc_trim(0): the free memory of every malloc arena back to the kernel; true when some was. */
  mallocTrim: () => call(() => load().mallocTrim()),
  /** Replaces this process (same PID) by `file` with `argv` and `env` (KEY=VALUE); returns only by throwing. */
  execve: (file: string, argv: string[], env: string[]): never => call(() => load().execve(file, argv, env), { path: file }),
  readProcs: (dir: string) => call(() => load().readProcs(dir), { path: dir }),
  procIds: (pids: Int32Array) => call(() => load().procIds(pids)),
  /**
   * ppid and pgid of each process (through a pidfd where the kernel has
   * PIDFD_GET_INFO; else, or with `viaStat`, from one read of
   * /proc/PID/stat, which gives start times too), and with `revisions` the
   * revision it executes (exe path, else SNAP_REVISION).
   */
  procInfo: (pids: Int32Array, revisions = false, viaStat = false): ProcInfo => call(() => load().procInfo(pids, revisions, viaStat)),
  /** Writes cgroup.freeze and waits (up to `timeoutMs`) until cgroup.events says `frozen` followed. */
  setFrozen,
  /** Writes cgroup.freeze without waiting for cgroup.events to follow. */
  writeFreeze,
  /** Waits until `key` of cgroup.events has value `want` (event-driven), `timeoutMs` passes (negative: no limit) or it is cancelled. */
  waitEvent: (dir: string, key: 'populated' | 'frozen', want: number, timeoutMs: number): PendingWait =>
    watchedWait(() => load().watchEvent(dir, key, want), timeoutMs, 'read', { path: dir }) as PendingWait,
  /**
   * Waits until the cgroup is empty; if it is not after `killAfterMs`, the
   * addon's waiting thread writes its cgroup.kill itself (no trip through
   * this thread, which a fork storm may keep off the CPU) and the wait goes
   * on, up to `timeoutMs` in all: 'done' (emptied before), 'killed' (emptied
   * after the kill), 'timeout'. ENOENT (syscall open): the kernel has no
   * cgroup.kill. The caller verifies `dir` (the guard) first.
   */
  waitEmptyOrKill: (dir: string, killAfterMs: number, timeoutMs: number): PendingWait<KillWaitOutcome> =>
    watchedWait(() => load().watchEvent(dir, 'populated', 0, Math.max(0, Math.round(killAfterMs))), timeoutMs, 'read', { path: dir }),
  /**
   * Freezes `dir` (waiting up to `freezeTimeoutMs` on this thread), signals
   * one frozen snapshot of its members through pidfds, thaws (unless it was
   * frozen before). With `onlyIfFrozen`, a freeze not complete in time is
   * left requested and nothing is signalled (`frozen` false). With
   * `refuseFrozen`, a cgroup that was frozen before the call is left as it
   * is and nothing is signalled (`wasFrozen` true). `empty`: the subtree had
   * no member, nothing was done. EDEADLK: snapproc itself is a member.
   */
  signalAll: (dir: string, sig: number, freezeTimeoutMs: number, alsoCont = false, onlyIfFrozen = false, refuseFrozen = false): NativeFanout =>
    call(() => load().signalAll(dir, sig, freezeTimeoutMs, alsoCont, onlyIfFrozen, refuseFrozen), { path: dir }),
  /**
   * signalAll's signalling alone, for a cgroup the caller froze and saw
   * `frozen 1` of (a batch of stops): one snapshot of its members signalled
   * through pidfds, no freeze, no thaw (it stays frozen), no read before it.
   */
  signalFrozen: (dir: string, sig: number, alsoCont = false): NativeFanout => call(() => load().signalFrozen(dir, sig, alsoCont), { path: dir }),
  /** Opens (creating, 0644) `path` and takes an exclusive OFD lock on it; keep the returned fd open to hold it. EAGAIN: another holds it. */
  lockFile: (file: string): number => call(() => load().lockFile(file), { path: file }),
  /** SO_PEERCRED of a connected unix socket (for a net.Socket: `socket._handle.fd`). */
  peerCred: (fd: number): PeerCred => call(() => load().peerCred(fd)),
  /** A connected, blocking unix stream socket to `file` (close-on-exec), for plain read(2)/write(2). */
  connectUnix: (file: string): number => call(() => load().connectUnix(file), { path: file }),
  /** Binds and listens (backlog 4096 by default); the fd is for passing on (LISTEN_FDS), never for libuv to accept on. */
  bindListen,
  /** Where a socket fd is bound: a unix path, or address and port. */
  socketName,
  notifyListen,
  /** Stops a notify listener and closes its socket; false if it was closed already. Messages not yet delivered are dropped. */
  notifyClose: (id: number): boolean => call(() => load().notifyClose(id)),
  /**
   * Reaps every exited child of this process except those in `exclude`
   * (children Node spawned: libuv reaps those itself and must see them exit).
   */
  reapChildren: (exclude: Int32Array | readonly number[]): Reaped[] =>
    call(() => load().reapChildren(exclude instanceof Int32Array ? exclude : Int32Array.from(exclude))),
};
