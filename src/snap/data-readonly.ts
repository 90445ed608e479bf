// data-readonly.ts: making an old revision's $SNAP_DATA read-only for the
// processes that still run from it after a refresh (SPEC 5 step 5): a
// read-only bind mount of the directory over itself. $SNAP_COMMON stays
// writable. Lifted again on undo, revert and remove. The read-only bind
// mount is made in one step (open_tree, mount_setattr, move_mount): with
// mount(8)'s bind-then-remount, a crash in between left a writable bind
// mount, and a process writing to the directory in between made the remount
// fail with EBUSY. Kernels before 5.12 get mount(8), with retries.
import * as fs from 'node:fs';
import { execFileSync } from 'node:child_process';
import { hasCode, SnapprocError } from '../util/errors';
import { native } from '../kernel/native';

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
  // A writable bind mount left by an older snapproc's crash goes first.
  unprotectData(dir);
  try {
    native.bindReadonly(dir);
    return;
  } catch (err) {
    if (!hasCode(err, 'ENOSYS', 'EINVAL', 'EPERM')) {
      throw new SnapprocError('ERR_SNAPPROC_MOUNT', `read-only bind mount of ${dir} failed: ${(err as Error).message}`, { cause: err });
    }
  }
  mount(['--bind', dir, dir]);
  for (let attempt = 0; ; attempt++) {
    try {
      mount(['-o', 'remount,bind,ro', dir]);
      return;
    } catch (err) {
      // EBUSY: a process had a file open for writing through the new mount.
      if (attempt < 20 && /busy/i.test((err as Error).message)) {
        Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, 10);
        continue;
      }
      execFileSync('umount', [dir]);
      throw err;
    }
  }
}

/**
 * The bind mounts snapproc stacked on `dir`: every mount at `dir` above the
 * bottom one, and the bottom one too when it is a bind mount of a directory
 * (its root in the source file system is not `/`), not a file system mounted
 * there by someone else.
 */
function ownMountsAt(dir: string): number {
  let m: string[][];
  try {
    m = mountsAt(dir);
  } catch {
    return 0;
  }
  if (m.length === 0) return 0;
  return m[0][3] === '/' ? m.length - 1 : m.length;
}

/** Lifts every bind mount snapproc put over `dir`, read-only or (after a crash mid-mount) not (idempotent). */
export function unprotectData(dir: string): void {
  for (let i = 0; i < 8 && fs.existsSync(dir) && ownMountsAt(dir) > 0; i++) {
    try {
      execFileSync('umount', ['-l', dir], { stdio: 'ignore' });
    } catch (err) {
      throw new SnapprocError('ERR_SNAPPROC_MOUNT', `umount ${dir} failed: ${(err as Error).message}`, { cause: err });
    }
  }
}
