// state-root.ts: where snapproc keeps its state (SPEC 1): --root, else
// $SNAPPROC_ROOT, else /var/lib/snapproc, which cannot collide with a host's
// real snapd (/var/lib/snapd, /snap). Its own module so the CLI can resolve it
// without loading the revision store.
import * as path from 'node:path';
import { usageError } from '../util/errors';

export const defaultRoot = '/var/lib/snapproc';

/** The state root: the --root flag, else $SNAPPROC_ROOT, else /var/lib/snapproc; absolute. */
export function resolveRoot(flag?: string): string {
  if (flag !== undefined && flag === '') throw usageError('--root needs a directory, got ""');
  return path.resolve(flag ?? (process.env.SNAPPROC_ROOT || defaultRoot));
}
