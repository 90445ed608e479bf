// data-readonly.ts: making an old revision's $SNAP_DATA read-only for the
// processes that still run from it after a refresh (SPEC 5 step 5): a
// read-only bind mount of the directory over itself. $SNAP_COMMON stays
// writable. Lifted again on undo, revert and remove. Uses util-linux's
// mount(8), present wherever snapproc runs as root.
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { SnapprocError } from '../util/errors';

function unescapeMountinfo(s: string): string {
  return s.replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8)));
}

/** Mount points at `dir` (the last one is on top), from /proc/self/mountinfo. */
function mountsAt(dir: string): string[][] {
  const real = fs.realpathSync(dir);
  return fs
    .readFileSync('/proc/self/mountinfo', 'utf8')
    .split('\n')
    .filter(Boolean)
    .map((l) => l.split(' '))
    .filter((f) => unescapeMountinfo(f[4]) === real);
}

/** True when `dir` has a read-only mount on top. */
export function isReadOnlyMounted(dir: string): boolean {
  try {
    const m = mountsAt(dir);
    return m.length > 0 && m[m.length - 1][5].split(',').includes('ro');
  } catch {
    return false;
  }
}

function mount(args: string[]): void {
  try {
    execFileSync('mount', args, { stdio: ['ignore', 'ignore', 'pipe'] });
  } catch (err) {
    const stderr = String((err as { stderr?: Buffer }).stderr ?? '').trim();
    throw new SnapprocError('ERR_SNAPPROC_MOUNT', `mount ${args.join(' ')} failed: ${stderr || (err as Error).message}`, { cause: err });
  }
}

/** Bind-mounts `dir` read-only over itself (idempotent). */
export function protectData(dir: string): void {
  if (isReadOnlyMounted(dir)) return;
  mount(['--bind', dir, dir]);
  try {
    mount(['-o', 'remount,bind,ro', dir]);
  } catch (err) {
    execFileSync('umount', [dir]);
    throw err;
  }
}

/** Lifts every read-only bind mount snapproc put over `dir` (idempotent). */
export function unprotectData(dir: string): void {
  for (let i = 0; i < 8 && fs.existsSync(dir) && isReadOnlyMounted(dir); i++) {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    } catch (err) {
      throw new SnapprocError('ERR_SNAPPROC_MOUNT', `umount ${dir} failed: ${(err as Error).message}`, { cause: err });
    }
  }
}
