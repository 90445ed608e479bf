// pid-file.ts: how snapproc learns a main process from the service's own pid
// file (snapproc's `pid-file`, systemd's PIDFile=): nginx writes its master's
// PID to nginx.pid, and during a binary upgrade renames it to nginx.pid.oldbin
// while the new master writes its own. A PID read from a file is only
// believed when that process is in the service's cgroup (a stale file, or one
// a hostile snap wrote, never names a process snapproc would then signal).
import * as fs from 'node:fs';
import { cgroupOfPid, isInside } from '../kernel/cgroupfs';
import type { AppInfo } from '../snap/snap-yaml';
import { revisionPaths } from '../snap/environment';
import { pidFilePath } from '../snap/launch-files';

/** The PID in `file` when it names a live process inside `cgroup`; null otherwise. */
export function readPidFile(file: string, cgroup: string): number | null {
  let text: string;
  try {
    // Not a FIFO or a device: a snap's data directory is the snap's to fill.
    const st = fs.lstatSync(file);
    if (!st.isFile() || st.size > 64) return null;
    text = fs.readFileSync(file, 'utf8');
  } catch {
    return null;
  }
  const t = text.trim();
  if (!/^[1-9][0-9]{0,9}$/.test(t)) return null;
  const pid = Number(t);
  if (pid <= 1 || pid === process.pid) return null;
  const where = cgroupOfPid(pid);
  return where !== null && isInside(where, cgroup) ? pid : null;
}

/** The pid file of a service of revision `revision`, or null when it has none. */
export function servicePidFile(root: string, instance: string, revision: string, app: AppInfo): string | null {
  const p = revisionPaths(root, instance, revision);
  return pidFilePath(app, { SNAP_DATA: p.data, SNAP_COMMON: p.common });
}
