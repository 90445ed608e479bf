// hooks.ts: running a snap's hooks (install, pre-refresh, post-refresh,
// remove, ...) the way snapd does: the revision's environment, a cgroup of
// their own (snap.NAME.hook.HOOK-UUID.scope) entered before the hook's code
// runs, output to the snap's hook log, and a timeout after which the whole
// hook cgroup is killed. A hook that fails or times out throws.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { removeCgroupTree } from '../kernel/cgroupfs';
import { SnapprocError } from '../util/errors';
import { killCgroup } from '../kernel/kill';
import { hookLaunchFile } from './launch-files';
import { hookScopeName } from '../process/cgroup-names';
import { launcherPath } from '../kernel/native';
import { hookLogFile, logLine, openLog } from './app-logs';

export const DEFAULT_HOOK_TIMEOUT_MS = 10 * 60_000;

export interface HookRun {
  root: string;
  instance: string;
  revision: string;
  hook: string;
  /** Where hook scopes are created. */
  cgroupParent: string;
  timeoutMs?: number;
  /** The hook's scope cgroup (default: a new snap.NAME.hook.HOOK-UUID.scope under cgroupParent), so a caller can know it before the hook runs. */
  scope?: string;
}

export interface HookResult {
  /** False when the revision has no such hook. */
  ran: boolean;
  durationMs: number;
}

/** True when the revision has this hook. */
export function hasHook(root: string, instance: string, revision: string, hook: string): boolean {
  return fs.existsSync(hookLaunchFile(root, instance, revision, hook));
}

export async function runHook(run: HookRun): Promise<HookResult> {
  const started = performance.now();
  if (!hasHook(run.root, run.instance, run.revision, run.hook)) return { ran: false, durationMs: 0 };
  const timeoutMs = run.timeoutMs ?? (Number(process.env.SNAPPROC_HOOK_TIMEOUT_MS) || DEFAULT_HOOK_TIMEOUT_MS);
  const scope = run.scope ?? path.join(run.cgroupParent, hookScopeName(run.instance, run.hook));
  fs.mkdirSync(scope, { recursive: true });
  const log = hookLogFile(run.root, run.instance);
  logLine(log, `running ${run.hook} hook of ${run.instance} ${run.revision}`);
  const out = openLog(log);
  try {
    const child = spawn(launcherPath(), ['--cgroup', scope, '--launch', hookLaunchFile(run.root, run.instance, run.revision, run.hook)], {
      stdio: ['ignore', out, out],
      env: { PATH: '/usr/sbin:/usr/bin:/sbin:/bin' },
    });
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      killCgroup(scope).catch(() => undefined); // the exit wait below reports the outcome
    }, timeoutMs);
    const status = await new Promise<{ code: number | null; signal: string | null }>((resolve, reject) => {
      child.once('error', reject);
      child.once('exit', (code, signal) => resolve({ code, signal }));
    });
    clearTimeout(timer);
    // What the hook left behind (daemonised children) does not outlive it.
    await killCgroup(scope, { timeoutMs: 5000 });
    const what = `${run.hook} hook of ${run.instance} ${run.revision}`;
    if (timedOut) {
      logLine(log, `${what} timed out after ${timeoutMs} ms`);
      throw new SnapprocError('ETIMEDOUT', `${what} timed out after ${timeoutMs} ms (see ${log})`);
    }
    if (status.code !== 0) {
      const how = status.signal ? `was killed by ${status.signal}` : `exited with status ${status.code}`;
      logLine(log, `${what} ${how}`);
      throw new SnapprocError('ERR_SNAPPROC_HOOK_FAILED', `${what} ${how} (see ${log})`);
    }
    logLine(log, `${what} done`);
    return { ran: true, durationMs: performance.now() - started };
  } finally {
    fs.closeSync(out);
    try {
      removeCgroupTree(scope);
    } catch {
      // still busy: left for remove to kill
    }
  }
}
