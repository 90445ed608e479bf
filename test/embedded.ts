// embedded.ts: a Supervisor embedded in the test process, in its own state
// root and cgroup parent, always shut down and its cgroups emptied after the
// test (also after a failure). Shared by the test files that drive the
// supervisor's methods directly instead of through the CLI.
import { Supervisor } from '../src/supervisor/supervisor';
import type { SupervisorOptions } from '../src/supervisor/supervisor';
import type { ServiceRecord } from '../src/supervisor/records';
import { killCgroup } from '../src/kernel/kill';
import { makeCgroup, tmpdir } from './helpers';

export interface EmbeddedCtx { root: string; cg: string; sup: Supervisor; said: string[] }

export interface EmbeddedOptions {
  /** Prefix of the temporary state root and of the cgroup's name. */
  prefix: string;
  /** Remove every installed snap before the shutdown (unmounts the read-only $SNAP_DATA a refresh left for enduring processes). */
  removeSnaps?: boolean;
  logMaxBytes?: SupervisorOptions['logMaxBytes'];
}

let count = 0;
export async function withSupervisor(options: EmbeddedOptions, fn: (c: EmbeddedCtx) => Promise<void>): Promise<void> {
  const root = tmpdir(`${options.prefix}-root-`);
  const cg = makeCgroup(`${options.prefix}-${++count}`);
  const said: string[] = [];
  const sup = new Supervisor({ root, cgroupParent: cg, handleSignals: false, log: (l) => said.push(l), logMaxBytes: options.logMaxBytes });
  await sup.start();
  try {
    await fn({ root, cg, sup, said });
  } finally {
    if (options.removeSnaps) for (const s of sup.store.list()) await sup.remove(s.name, { purge: true }).catch(() => undefined);
    await sup.shutdown({ stopServices: true }).catch(() => undefined);
    await killCgroup(cg, { timeoutMs: 3000 }).catch(() => undefined);
  }
}

/** The supervisor's record of one service; throws when there is none. */
export function recordOf(sup: Supervisor, snap: string, app: string): ServiceRecord {
  const r = sup.status(snap).find((x) => x.app === app);
  if (!r) throw new Error(`no record of ${snap}.${app}`);
  return r;
}
