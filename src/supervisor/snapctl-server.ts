// snapctl-server.ts: the supervisor's side of `snapctl`, the command a snap's
// own hooks and apps use to manage its services (snapd's snapctl services,
// start, stop, restart). Two things make it safe and deadlock-free:
//   - Who asks is learned from the cgroup of the peer's PID (SO_PEERCRED),
//     never from what the request says: a process may act only on the snap
//     whose cgroup it is in, whatever its uid, and a process in no snap
//     cgroup under this supervisor's parent is refused.
//   - A hook runs inside a change (install, refresh, remove), and the change
//     waits for the hook. A service command from that hook that waited for
//     the change would wait forever; as in snapd it is queued into the change
//     instead and runs right after the hook returns.
import * as path from 'node:path';
import { cgroupOfPid, isInside } from '../kernel/cgroupfs';
import { parseCgroupName, type CgroupKind } from '../process/cgroup-names';
import { SnapprocError } from '../util/errors';

export type ServiceAction = 'start' | 'stop' | 'restart';

export interface ServiceActionRequest {
  action: ServiceAction;
  /** App names of the snap; undefined: every service. */
  apps?: string[];
  /** start --enable: also start it from now on (startup enabled). */
  enable?: boolean;
  /** stop --disable: also keep it stopped from now on (startup disabled). */
  disable?: boolean;
}

export interface Caller {
  instance: string;
  kind: CgroupKind;
  /** The app, or for a hook the hook's name. */
  app: string;
  /** The caller's snap cgroup (directly under the supervisor's cgroup parent). */
  cgroup: string;
}

/** The snap whose cgroup `pid` is in, below `cgroupParent`; null for any other process. */
export function callerOf(pid: number, cgroupParent: string): Caller | null {
  if (!Number.isInteger(pid) || pid <= 0) return null;
  const cg = cgroupOfPid(pid);
  if (!cg || !isInside(cg, cgroupParent)) return null;
  const first = path.relative(cgroupParent, cg).split(path.sep)[0];
  if (!first) return null;
  const parsed = parseCgroupName(first);
  if (!parsed) return null;
  return { instance: parsed.instance, kind: parsed.kind, app: parsed.app, cgroup: path.join(cgroupParent, first) };
}

interface HookRun {
  instance: string;
  hook: string;
  queue: ServiceActionRequest[];
}

/** The hooks running now, by scope cgroup, and the service commands queued by each. */
export class HookRuns {
  private runs = new Map<string, HookRun>();

  begin(scope: string, instance: string, hook: string): void {
    this.runs.set(scope, { instance, hook, queue: [] });
  }

  /** Ends a hook run; returns what it queued. */
  end(scope: string): ServiceActionRequest[] {
    const run = this.runs.get(scope);
    this.runs.delete(scope);
    return run?.queue ?? [];
  }

  /** The running hook whose scope holds this cgroup. */
  find(cgroup: string): HookRun | null {
    for (const [scope, run] of this.runs) if (isInside(cgroup, scope)) return run;
    return null;
  }
}

/**
 * snapctl's service names, as snapd reads them: `NAME` means every service
 * of the snap, `NAME.APP` one; anything else (another snap, an app that is
 * not a service) is snapd's `unknown service: "x"`. No names: every service.
 */
export function resolveServiceNames(instance: string, names: readonly string[], services: readonly string[]): string[] | undefined {
  if (names.length === 0) return undefined;
  const out: string[] = [];
  for (const n of names) {
    if (n === instance) return undefined;
    const app = n.startsWith(`${instance}.`) ? n.slice(instance.length + 1) : null;
    if (app === null || !services.includes(app)) throw new SnapprocError('ERR_SNAPPROC_UNKNOWN_SERVICE', `unknown service: ${JSON.stringify(n)}`);
    if (!out.includes(app)) out.push(app);
  }
  return out;
}

/** The one-line description of a queued or run request: `restart of x.a, x.b`. */
export function describeAction(instance: string, req: ServiceActionRequest): string {
  const what = req.apps === undefined ? `every service of ${instance}` : req.apps.map((a) => `${instance}.${a}`).join(', ');
  const flag = req.enable ? ' --enable' : req.disable ? ' --disable' : '';
  return `${req.action}${flag} of ${what}`;
}
