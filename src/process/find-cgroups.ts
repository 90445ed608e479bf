// find-cgroups.ts: finds a snap's cgroups wherever they are in the cgroup2 tree
// (system.slice under systemd, user slices for app runs, snapproc's own
// parent, a test's parent). A snap cgroup's subtree belongs to it and is not
// searched further; container payloads are skipped, as snapd skips them:
// a snap of the same name inside a container is not this host's snap.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { cgroup2Mount } from '../kernel/cgroupfs';
import { parseCgroupName, SnapCgroupName } from './cgroup-names';
import { compareCodeUnits } from '../util/order';

export interface SnapCgroup extends SnapCgroupName {
  /** Absolute path of the cgroup directory. */
  path: string;
}

/** Directory names under which another system's processes live. */
const CONTAINER_PAYLOADS = [/^lxc\.payload\./, /^lxc\.monitor\./, /^machine\.slice$/, /^docker$/, /^kubepods/, /^libpod-/, /^docker-.*\.scope$/];

export interface FindOptions {
  /** Search below this cgroup directory instead of the whole hierarchy. */
  under?: string;
}

/**
 * Every snap cgroup in the tree, optionally only those of one instance.
 * Sorted by kind (services, apps, hooks) then name.
 */
export function findSnapCgroups(instance?: string, options: FindOptions = {}): SnapCgroup[] {
  const root = options.under ?? cgroup2Mount();
  const out: SnapCgroup[] = [];
  walk(root, instance, out);
  const order = { service: 0, app: 1, hook: 2 };
  return out.sort((a, b) => order[a.kind] - order[b.kind] || compareCodeUnits(a.app, b.app) || compareCodeUnits(a.path, b.path));
}

function walk(dir: string, instance: string | undefined, out: SnapCgroup[]): void {
  let entries: fs.Dirent[];
  try {
    entries = fs.readdirSync(dir, { withFileTypes: true });
  } catch {
    return; // removed while we walked, or not readable
  }
  for (const e of entries) {
    if (!e.isDirectory()) continue;
    // The path is made only for what is kept or searched: under a parent of
    // 1000 service cgroups, one snap's search looked at every name and made
    // every path (~8 ms), which a refresh of one snap paid several times.
    const parsed = parseCgroupName(e.name);
    if (parsed) {
      if (instance === undefined || parsed.instance === instance) out.push({ ...parsed, path: path.join(dir, e.name) });
      continue;
    }
    if (CONTAINER_PAYLOADS.some((re) => re.test(e.name))) continue;
    walk(path.join(dir, e.name), instance, out);
  }
}

/** The service cgroup of NAME.APP, if it exists anywhere in the tree. */
export function findServiceCgroup(instance: string, app: string, options: FindOptions = {}): SnapCgroup | undefined {
  return findSnapCgroups(instance, options).find((c) => c.kind === 'service' && c.app === app);
}
