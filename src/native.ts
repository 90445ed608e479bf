// native.ts: the one place that loads the addon. Tries build/Release, then
// build/Debug, and on failure throws one error listing the paths tried and
// the fix. Wraps every call so that an errno leaving C++ becomes a
// Node-shaped SnapprocError. The declaration below is internal: the public
// API is in index.ts.
import * as path from 'node:path';
import { SnapprocError } from './errors';

/** Outcome of a wait that ran off the main thread. */
export type WaitOutcome = 'done' | 'timeout' | 'cancelled';

interface Addon {
  kill(pid: number, sig: number): void;
  killpg(pgid: number, sig: number): void;
  pidfdOpen(pid: number): number;
  pidfdSendSignal(pidfd: number, sig: number): void;
  pidfdExitStatus(pidfd: number): number;
  pidfdWait(pidfd: number, timeoutMs: number): [Promise<WaitOutcome>, number];
  cancelWait(token: number): void;
  setChildSubreaper(on: boolean): void;
  getChildSubreaper(): boolean;
  setPdeathsig(sig: number): void;
  getPdeathsig(): number;
  setName(name: string): void;
  getName(): string;
  readProcs(dir: string): Int32Array;
  procIds(pids: Int32Array): Int32Array;
  setFrozen(dir: string, frozen: number, timeoutMs: number): [Promise<WaitOutcome>, number];
  waitEvent(dir: string, key: string, want: number, timeoutMs: number): [Promise<WaitOutcome>, number];
  signalAll(dir: string, sig: number, freezeTimeoutMs: number, alsoCont: boolean): { signalled: number; gone: number; cgroups: number; frozen: boolean };
}

const PACKAGE_ROOT = path.resolve(__dirname, '..', '..');
const CANDIDATES = ['build/Release/snapproc.node', 'build/Debug/snapproc.node'];

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
export interface PendingWait {
  result: Promise<WaitOutcome>;
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

export const native = {
  kill: (pid: number, sig: number) => call(() => load().kill(pid, sig), { pid }),
  killpg: (pgid: number, sig: number) => call(() => load().killpg(pgid, sig), { pid: pgid }),
  pidfdOpen: (pid: number) => call(() => load().pidfdOpen(pid), { pid }),
  pidfdSendSignal: (pidfd: number, sig: number) => call(() => load().pidfdSendSignal(pidfd, sig)),
  pidfdExitStatus: (pidfd: number) => call(() => load().pidfdExitStatus(pidfd)),
  pidfdWait: (pidfd: number, timeoutMs: number) => pending(() => load().pidfdWait(pidfd, timeoutMs), {}),
  setChildSubreaper: (on: boolean) => call(() => load().setChildSubreaper(on)),
  getChildSubreaper: () => call(() => load().getChildSubreaper()),
  setPdeathsig: (sig: number) => call(() => load().setPdeathsig(sig)),
  getPdeathsig: () => call(() => load().getPdeathsig()),
  setName: (name: string) => call(() => load().setName(name)),
  getName: () => call(() => load().getName()),
  readProcs: (dir: string) => call(() => load().readProcs(dir), { path: dir }),
  procIds: (pids: Int32Array) => call(() => load().procIds(pids)),
  setFrozen: (dir: string, frozen: boolean, timeoutMs: number) => pending(() => load().setFrozen(dir, frozen ? 1 : 0, timeoutMs), { path: dir }),
  waitEvent: (dir: string, key: 'populated' | 'frozen', want: number, timeoutMs: number) =>
    pending(() => load().waitEvent(dir, key, want, timeoutMs), { path: dir }),
  signalAll: (dir: string, sig: number, freezeTimeoutMs: number, alsoCont = false) => call(() => load().signalAll(dir, sig, freezeTimeoutMs, alsoCont), { path: dir }),
};
