// kill.ts: empty a cgroup for good. cgroup.kill (Linux 5.14+) makes the
// kernel SIGKILL the whole subtree, including processes forked meanwhile;
// older kernels get freeze + SIGKILL every member + thaw, repeated until the
// cgroup is empty. The wait is on cgroup.events, not a sleep loop.
import { readEvent } from './cgroupfs';
import { killCgroupVerified, signalCgroupVerified } from './signal-guard';
import { native } from './native';
import { constants } from 'node:os';
import { hasCode } from '../util/errors';

export interface KillResult {
  /** True once the cgroup reported `populated 0`. */
  empty: boolean;
  /** How the kill was done. */
  method: 'cgroup.kill' | 'freeze-kill';
  durationMs: number;
}

/** SIGKILLs everything in the cgroup subtree and waits (up to `timeoutMs`) until it is empty. */
export async function killCgroup(dir: string, options: { timeoutMs?: number } = {}): Promise<KillResult> {
  const started = performance.now();
  const timeoutMs = options.timeoutMs ?? 10_000;
  try {
    if (readEvent(dir, 'populated') === 0) return { empty: true, method: 'cgroup.kill', durationMs: 0 };
    if (killCgroupVerified(dir)) {
      const outcome = await native.waitEvent(dir, 'populated', 0, timeoutMs).result;
      return { empty: outcome === 'done', method: 'cgroup.kill', durationMs: performance.now() - started };
    }
    const deadline = started + timeoutMs;
    for (;;) {
      signalCgroupVerified(dir, constants.signals.SIGKILL);
      const left = Math.max(0, Math.min(100, deadline - performance.now()));
      const outcome = await native.waitEvent(dir, 'populated', 0, left).result;
      if (outcome === 'done') return { empty: true, method: 'freeze-kill', durationMs: performance.now() - started };
      if (performance.now() >= deadline) return { empty: false, method: 'freeze-kill', durationMs: performance.now() - started };
    }
  } catch (err) {
    // Removed by its owner as it emptied (a `run` scope, a hook scope): empty it is.
    if (hasCode(err, 'ENOENT', 'ENODEV')) return { empty: true, method: 'cgroup.kill', durationMs: performance.now() - started };
    throw err;
  }
}
