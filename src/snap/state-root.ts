// state-root.ts: where snapproc keeps its state (SPEC 1): --root, else
// $SNAPPROC_ROOT, else /var/lib/snapproc, which cannot collide with a host's
// real snapd (/var/lib/snapd, /snap). Its own module so the CLI can resolve it
// without loading the revision store. A root that cannot be a directory (a
// file, a path below a file, a path longer than the kernel takes) is refused
// here with one line, before any command touches it.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { usageError } from '../util/errors';

export const defaultRoot = '/var/lib/snapproc';
/** PATH_MAX less the terminating NUL, and room for the longest name snapproc puts below R. */
const MAX_ROOT_BYTES = 4095 - 512;
const NAME_MAX = 255;

function shown(p: string): string {
  return p.length > 100 ? `${p.slice(0, 60)}...${p.slice(-30)} (${Buffer.byteLength(p)} bytes)` : p;
}

/**
 * Refuses a state root that cannot work: too long, a component longer than
 * NAME_MAX, or a file (or something else that is no directory) at it or at
 * any directory above it. A root that does not exist yet is fine (it is made
 * when something is installed). `what` names where it came from.
 */
export function checkRoot(root: string, what = '--root'): void {
  if (root.includes('\0')) throw usageError(`invalid ${what}: it contains a NUL byte`);
  const bytes = Buffer.byteLength(root);
  if (bytes > MAX_ROOT_BYTES) throw usageError(`invalid ${what} ${shown(root)}: longer than ${MAX_ROOT_BYTES} bytes`);
  const long = root.split('/').find((c) => Buffer.byteLength(c) > NAME_MAX);
  if (long !== undefined) throw usageError(`invalid ${what} ${shown(root)}: the name ${shown(long)} is longer than ${NAME_MAX} bytes`);
  for (let p = root; ; p = path.dirname(p)) {
    let st: fs.Stats | undefined;
    try {
      st = fs.statSync(p);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'ENOENT') {
        if (p === path.dirname(p)) return;
        continue;
      }
      if (code === 'ENOTDIR') continue; // a file further up: found below
      if (code === 'ELOOP') throw usageError(`invalid ${what} ${shown(root)}: too many symbolic links at ${shown(p)}`);
      if (code === 'EACCES') return; // not ours to judge: the command says what it cannot reach
      throw err;
    }
    if (st.isDirectory()) return;
    throw usageError(p === root ? `invalid ${what} ${shown(root)}: it is not a directory` : `invalid ${what} ${shown(root)}: ${shown(p)} is not a directory`);
  }
}

/** The state root: the --root flag, else $SNAPPROC_ROOT, else /var/lib/snapproc; absolute and checked. */
export function resolveRoot(flag?: string): string {
  if (flag !== undefined && flag === '') throw usageError('--root needs a directory, got ""');
  const root = path.resolve(flag ?? (process.env.SNAPPROC_ROOT || defaultRoot));
  checkRoot(root, flag !== undefined ? '--root' : process.env.SNAPPROC_ROOT ? 'SNAPPROC_ROOT' : 'state root');
  return root;
}
