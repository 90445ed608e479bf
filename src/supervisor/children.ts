// children.ts: the supervisor's own child processes, spawned through Node.
// As a child subreaper (or PID 1) the supervisor must reap orphans that
// re-parent to it, but never a child that libuv waits for itself: Node would
// then never see that child exit. trackNodeChildren() wraps
// ChildProcess.prototype.spawn, so every asynchronous child of this process
// (child_process.spawn, execFile, fork, whoever calls them) is known to the
// reaper. spawnSync children are reaped before it returns.
import { ChildProcess } from 'node:child_process';

const own = new Set<number>();
let tracking = false;

/** Starts tracking every child Node spawns from now on (idempotent, process-wide). */
export function trackNodeChildren(): void {
  if (tracking) return;
  tracking = true;
  // `spawn` is on the prototype but not in @types/node's declaration.
  const proto = ChildProcess.prototype as unknown as { spawn: (this: ChildProcess, ...args: unknown[]) => unknown };
  const original = proto.spawn;
  proto.spawn = function (this: ChildProcess, ...args: unknown[]) {
    const result = original.apply(this, args);
    const pid = this.pid;
    if (pid !== undefined) {
      own.add(pid);
      this.once('exit', () => own.delete(pid));
    }
    return result;
  };
}

/** PIDs that libuv reaps itself. */
export function ownChildPids(): Int32Array {
  return Int32Array.from(own);
}
