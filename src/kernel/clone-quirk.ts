// clone-quirk.ts: a kernel bug that clone3(CLONE_INTO_CGROUP) users must work
// around. On some kernels (seen on 6.18) a child created with
// CLONE_INTO_CGROUP in a cgroup to which cgroup.kill was ever written is
// SIGKILLed at birth (the kill sequence the fork compares is not the target
// cgroup's), while a process moved in through cgroup.procs, or created in a
// removed and re-created cgroup, lives. snapproc writes cgroup.kill when a
// stop outlives its timeout, so without a workaround such a service never
// runs again. The kernel is asked once, with a probe cgroup, whether it has
// the bug; where it has, a spawn goes into a freshly re-created cgroup (or,
// when the cgroup is not empty, is moved in after the fork).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { hasCode } from '../util/errors';
import { native } from './native';
import { readEvent } from './cgroupfs';

let probed: Promise<boolean> | undefined;

/** Exit status (raw wait status) of our child `pid`, told by `reaped` or by its pidfd; null if unknown. */
async function statusOf(pid: number, pidfd: number, reaped: (pid: number) => number | undefined): Promise<number | null> {
  for (let i = 0; i < 80; i++) {
    const r = reaped(pid);
    if (r !== undefined) return r;
    try {
      return native.pidfdExitStatus(pidfd);
    } catch {
      // not reaped yet
    }
    await new Promise((res) => setTimeout(res, 12));
  }
  return null;
}

async function probe(parent: string, reaped: (pid: number) => number | undefined): Promise<boolean> {
  const dir = path.join(parent, `snapproc-clone-probe-${process.pid}-${randomBytes(3).toString('hex')}`);
  fs.mkdirSync(dir, { recursive: true });
  try {
    try {
      fs.writeFileSync(path.join(dir, 'cgroup.kill'), '1');
    } catch (err) {
      if (hasCode(err, 'ENOENT')) return false; // no cgroup.kill: nothing to trip over
      throw err;
    }
    const fd = fs.openSync(dir, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
    let child: { pid: number; pidfd: number };
    try {
      child = native.spawnInCgroup('/bin/sh', ['sh', '-c', 'exit 7'], [], fd, [-1, -1, -1], false);
    } catch {
      return false; // no clone3 into cgroups at all: the caller falls back by itself
    } finally {
      fs.closeSync(fd);
    }
    try {
      await native.pidfdWait(child.pidfd, 5000).result;
      const status = await statusOf(child.pid, child.pidfd, reaped);
      // Unknown: take the safe path (it costs a rmdir and a mkdir per start).
      if (status === null) return true;
      return (status & 0x7f) === 9;
    } finally {
      fs.closeSync(child.pidfd);
    }
  } finally {
    for (let i = 0; i < 100; i++) {
      try {
        fs.rmdirSync(dir);
        break;
      } catch {
        await new Promise((res) => setTimeout(res, 10));
      }
    }
  }
}

/**
 * Whether this kernel SIGKILLs children cloned into a cgroup that had
 * cgroup.kill written (asked once per process, with a probe cgroup made
 * under `parent`). `reaped` tells exit statuses of children the caller
 * reaps itself (a subreaper's reaping loop).
 */
export function cloneIntoKilledCgroupDies(parent: string, reaped: (pid: number) => number | undefined = () => undefined): Promise<boolean> {
  probed ??= probe(parent, reaped).catch(() => true);
  return probed;
}

/** For tests: forget the probe's answer, or impose one. */
export function setCloneQuirkForTests(value: boolean | undefined): void {
  probed = value === undefined ? undefined : Promise.resolve(value);
}

/**
 * Makes `dir` a cgroup that never had cgroup.kill written, by removing and
 * re-creating it; only an empty cgroup without sub-cgroups can be. False
 * when it cannot (then move the process in after the fork instead).
 */
export function recreateEmptyCgroup(dir: string): boolean {
  try {
    if (readEvent(dir, 'populated') !== 0) return false;
    if (fs.readdirSync(dir, { withFileTypes: true }).some((e) => e.isDirectory())) return false;
    fs.rmdirSync(dir);
  } catch (err) {
    if (!hasCode(err, 'ENOENT')) return false;
  }
  try {
    fs.mkdirSync(dir);
  } catch (err) {
    if (!hasCode(err, 'EEXIST')) throw err;
    return false; // someone made it meanwhile: not known to be fresh
  }
  return true;
}
