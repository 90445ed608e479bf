// freeze.ts: freeze and thaw a cgroup and wait until the kernel says it is
// done. Writing cgroup.freeze only asks; a freeze is complete when
// cgroup.events says `frozen 1` (snapd reads back cgroup.freeze, which does
// not wait). The wait runs off the main thread.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { assertActionableCgroup } from './signal-guard';
import { native } from './native';

export interface FreezeResult {
  /** Whether cgroup.events reached the wanted state within the timeout. */
  done: boolean;
  durationMs: number;
}

async function setFrozen(dir: string, frozen: boolean, timeoutMs: number): Promise<FreezeResult> {
  assertActionableCgroup(dir);
  const started = performance.now();
  const outcome = await native.setFrozen(path.resolve(dir), frozen, timeoutMs).result;
  return { done: outcome === 'done', durationMs: performance.now() - started };
}

/** Freezes the cgroup subtree; resolves once `frozen 1` (or after `timeoutMs`). */
export function freezeCgroup(dir: string, options: { timeoutMs?: number } = {}): Promise<FreezeResult> {
  return setFrozen(dir, true, options.timeoutMs ?? 5000);
}

/** Thaws the cgroup subtree; resolves once `frozen 0` (or after `timeoutMs`). */
export function thawCgroup(dir: string, options: { timeoutMs?: number } = {}): Promise<FreezeResult> {
  return setFrozen(dir, false, options.timeoutMs ?? 5000);
}

/** Whether the cgroup has been asked to freeze (cgroup.freeze reads 1). */
export function isFrozen(dir: string): boolean {
  return fs.readFileSync(path.join(dir, 'cgroup.freeze'), 'utf8').trim() === '1';
}
