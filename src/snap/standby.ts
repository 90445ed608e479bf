// standby.ts: on XFS (reflink) a refresh's copy of $SNAP_DATA still costs
// ~50 us of kernel time per file (create, clone, times): 2000 small files
// took ~140 ms of a refresh. So the copy is made ahead of time, in the
// background, while nothing waits for it: a "standby" copy of the current
// revision's $SNAP_DATA (reflinked, so it costs ~1 MiB of metadata, not the
// data's size), with a manifest of every entry's stat. At the next refresh a
// checking pass redoes in it only what changed since (native/copy.cc,
// standby_apply) and renames it into place as the new revision's data: the
// same tree the full copy would make then. This module owns the standby's
// life: where it lives, when a job makes it (after a change answered, and at
// start-up when there is none), cancelling a job that a change overtakes,
// using one at the refresh (takeStandby, from RevisionStore.copyData), and
// deleting whatever is incomplete, used or stale.
//
// Layout: R/var/snap/NAME/.standby-HEX/ (0700) with tree/ (the copy) and,
// once complete, manifest. A standby without a manifest is incomplete (a job
// running or killed) or used (the checking pass removes the manifest before
// it changes anything): never used, deleted by the next job of that snap.
// Only where files are clones (XFS, or any file system where FICLONE works,
// except btrfs, where the copy of a subvolume is one snapshot anyway); never
// on ext4 and the like, where it would double the disk used. Off with
// SNAPPROC_STANDBY=0.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { native, type StandbyApplyStats } from '../kernel/native';
import { fsyncDir } from '../util/atomic-file';

/** `SNAPPROC_STANDBY=0` turns standby copies off (the refresh then always copies in full). */
export function standbyEnabled(env: NodeJS.ProcessEnv = process.env): boolean {
  return env.SNAPPROC_STANDBY !== '0';
}

/**
 * An entry whose ctime is at most this much before the job's start counts
 * as changed at the refresh (git's "racily clean" rule): a change in the
 * same tick of the file system's clock as the job's stat of it would leave
 * its ctime as the job recorded it. A coarse tick is a jiffy (<= 10 ms).
 */
export const RACY_MARGIN_NS = 50_000_000;

/**
 * How long after a change answered its standby job starts (ms;
 * SNAPPROC_STANDBY_DELAY_MS): what the refresh just copied is then older
 * than the racy margin, so the next refresh can keep it.
 */
export function standbyDelayMs(env: NodeJS.ProcessEnv = process.env): number {
  const v = Number(env.SNAPPROC_STANDBY_DELAY_MS);
  return Number.isFinite(v) && v >= 0 ? v : 250;
}

/** True for the names of standby directories (`.standby-HEX`): no revision, no trash. */
export function isStandbyName(base: string): boolean {
  return /^\.standby-[0-9a-f]{8}$/.test(base);
}

function standbysIn(dataParent: string): string[] {
  try {
    return fs.readdirSync(dataParent).filter(isStandbyName).map((n) => path.join(dataParent, n));
  } catch {
    return [];
  }
}

function hasEntries(dir: string): boolean {
  try {
    return fs.readdirSync(dir).length > 0;
  } catch {
    return false;
  }
}

/** For the crash tests: SNAPPROC_CRASH_AT=standby:checked (after the checking pass) or standby:renamed (after the rename into place) kills this process there. */
function crashPoint(when: string): void {
  if (process.env.SNAPPROC_CRASH_AT === `standby:${when}`) process.kill(process.pid, 'SIGKILL');
}

/** What a refresh's use of a standby did (RevisionStore.copyData reports it). */
export interface StandbyUse extends StandbyApplyStats {
  ms: number;
}

/**
 * At a refresh, once the services are stopped: if a complete standby of
 * `fromRev`'s data (`src`) exists next to it, the checking pass makes it
 * what a full copy of `src` would be now (flushing what it changed), and
 * it is renamed to `dst` (which must not exist; the rename's directory is
 * flushed, or queued with `flushDir` instead). null when there is none to
 * use, or it cannot be used (then it is deleted and the caller copies in
 * full); `dst` is then left as it was. Also when standbys are off.
 */
export async function takeStandby(src: string, fromRev: string, dst: string, opts: { flushDir?: (dir: string) => void; say?: (line: string) => void } = {}): Promise<StandbyUse | null> {
  if (!standbyEnabled()) return null;
  const parent = path.dirname(src);
  const found = standbysIn(parent);
  let best: { dir: string; started: number } | null = null;
  if (found.length === 1) {
    // One (the usual case): the checking pass reads its manifest and refuses another revision's; not read twice.
    // Without a manifest it is a job's, still running or cancelled: that job removes it.
    if (!fs.existsSync(path.join(found[0], 'manifest'))) return null;
    best = { dir: found[0], started: 0 };
  } else {
    for (const dir of found) {
      const info = native.standbyInfo(dir);
      if (info.label === fromRev && (best === null || (info.startedNs ?? 0) > best.started)) best = { dir, started: info.startedNs ?? 0 };
    }
  }
  if (!best) return null;
  const t0 = performance.now();
  let stats: Awaited<ReturnType<typeof native.standbyApply>>;
  try {
    stats = await native.standbyApply(src, best.dir, fromRev, RACY_MARGIN_NS);
    crashPoint('checked');
    fs.renameSync(path.join(best.dir, 'tree'), dst);
  } catch (err) {
    opts.say?.(`standby copy of ${src} not used (${(err as Error).message}); copying in full`);
    await fs.promises.rm(best.dir, { recursive: true, force: true }).catch(() => undefined);
    return null;
  }
  // In place: from here on an error is the copy's own (a flush that failed),
  // not a reason to copy in full over the tree now at `dst`.
  if (opts.flushDir) opts.flushDir(path.dirname(dst));
  else fsyncDir(path.dirname(dst));
  crashPoint('renamed');
  fs.rmSync(best.dir, { recursive: true, force: true }); // empty now (the manifest went first)
  return { ...stats, ms: performance.now() - t0 };
}

/**
 * Why a standby should not be made on the file system of `dir` now, or null:
 * it shares the data's extents, but its inodes and metadata are new, and
 * every block the service rewrites afterwards stays allocated twice (the
 * standby keeps the old one) until the next refresh takes the standby. So
 * not below STANDBY_MIN_FREE of the blocks or inodes free: the services'
 * own writes come first.
 */
export const STANDBY_MIN_FREE = 0.1;
function lowOnSpace(dir: string): string | null {
  let st: fs.StatsFs;
  try {
    st = fs.statfsSync(dir);
  } catch {
    return null; // not known: the job itself fails if it must
  }
  const blocks = st.blocks > 0 ? st.bavail / st.blocks : 1;
  const inodes = st.files > 0 ? st.ffree / st.files : 1;
  if (blocks < STANDBY_MIN_FREE) return `only ${(blocks * 100).toFixed(1)}% of the file system's blocks are free`;
  if (inodes < STANDBY_MIN_FREE) return `only ${(inodes * 100).toFixed(1)}% of the file system's inodes are free`;
  return null;
}

export type StandbyState = 'off' | 'unsupported' | 'none' | 'making' | 'ready';

interface Job {
  cancel: Int32Array;
  revision: string;
}

/** A job scheduled: its delay's timer, and what ends its wait for its turn when it is cancelled. */
interface Slot {
  cancelled: boolean;
  timer?: NodeJS.Timeout;
  resolve?: () => void;
  onCancel?: () => void;
}

/**
 * The background jobs that make standbys, one chain per snap: a job starts
 * only after the previous one of that snap ended (a cancelled job may still
 * be finishing at nice 19 when the next is scheduled), never waits for
 * anything else, and is cancelled (not waited for) when a change of its snap
 * begins. `dataParent(snap)` is R/var/snap/SNAP.
 */
export class StandbyJobs {
  private chains = new Map<string, Promise<void>>();
  private running = new Map<string, Job>();
  /** A job scheduled and not yet started: cancelled before it starts, it never does. */
  private pending = new Map<string, Slot>();
  private unsupported = new Set<string>();
  private ready = new Map<string, string>();
  private closed = false;

  constructor(
    private readonly dataOf: (snap: string, rev: string) => string,
    private readonly say: (line: string) => void = () => {},
  ) {}

  /** The standby state of a snap: `ready` (for `revision`), `making` (a job is scheduled or runs), ... */
  state(snap: string): { state: StandbyState; revision?: string } {
    if (!standbyEnabled()) return { state: 'off' };
    if (this.pending.has(snap) || this.running.has(snap)) return { state: 'making', revision: this.running.get(snap)?.revision };
    if (this.unsupported.has(snap)) return { state: 'unsupported' };
    const rev = this.ready.get(snap);
    return rev ? { state: 'ready', revision: rev } : { state: 'none' };
  }

  /**
   * Makes a standby of `rev`'s data after `delayMs` (default
   * standbyDelayMs()), once the previous job of the snap ended; one already
   * complete for `rev` is kept. Any other standby of the snap is deleted.
   */
  schedule(snap: string, rev: string | null, delayMs = standbyDelayMs()): void {
    this.cancel(snap);
    if (this.closed) return;
    // Off (SNAPPROC_STANDBY=0), or no revision to stand by for: what an earlier run made goes.
    if (rev === null || !standbyEnabled()) {
      this.queue(snap, 0, () => this.removeAll(snap));
      return;
    }
    if (this.unsupported.has(snap)) return;
    this.queue(snap, delayMs, (slot) => this.run(snap, rev, slot));
  }

  /** Deletes every standby of `snap` (on its jobs' chain, so never one in the making). */
  private async removeAll(snap: string): Promise<void> {
    // Every revision's data has the same parent, R/var/snap/SNAP: any revision name finds it.
    for (const dir of standbysIn(path.dirname(this.dataOf(snap, 'x1')))) await fs.promises.rm(dir, { recursive: true, force: true });
  }

  /**
   * Runs `work` on the snap's chain after `delayMs`, unless cancelled first;
   * jobs of different snaps run one at a time (each holds a thread of
   * libuv's pool of four for its whole length: four snaps' jobs at once after
   * a restart left none for the supervisor's own file work).
   */
  private queue(snap: string, delayMs: number, work: (slot: Slot) => Promise<void>): void {
    const slot: Slot = { cancelled: false };
    this.pending.set(snap, slot);
    const prev = this.chains.get(snap) ?? Promise.resolve();
    const chain = prev
      .then(() => new Promise<void>((resolve) => {
        if (slot.cancelled) return resolve();
        slot.resolve = resolve;
        slot.timer = setTimeout(resolve, delayMs);
      }))
      .then(() => this.oneAtATime(slot, () => {
        if (this.pending.get(snap) === slot) this.pending.delete(snap);
        return work(slot);
      }));
    const settled = chain.catch((err) => this.say(`standby copy of ${snap}: ${(err as Error).message}`));
    this.chains.set(snap, settled);
    void settled.then(() => {
      if (this.chains.get(snap) === settled) this.chains.delete(snap);
    });
  }

  /** Cancels the snap's scheduled or running job (without waiting for it to end). */
  cancel(snap: string): void {
    const slot = this.pending.get(snap);
    if (slot) {
      slot.cancelled = true;
      this.pending.delete(snap);
      if (slot.timer) clearTimeout(slot.timer);
      slot.resolve?.();
      slot.onCancel?.();
    }
    const job = this.running.get(snap);
    if (job) Atomics.store(job.cancel, 0, 1);
    this.ready.delete(snap);
  }

  /** Cancels the snap's job and waits until it ended (before the snap's directory is removed). */
  async stop(snap: string): Promise<void> {
    this.cancel(snap);
    await this.chains.get(snap);
  }

  /** Resolves once no job is scheduled or running (for tests and benchmarks: the standby is then `ready` or there is none). */
  async settled(): Promise<void> {
    while (this.chains.size) await Promise.all([...this.chains.values()]);
  }

  /** Cancels every job and waits until they ended (shutdown: no thread may keep the file system busy). */
  async close(): Promise<void> {
    this.closed = true;
    for (const snap of new Set([...this.pending.keys(), ...this.running.keys()])) this.cancel(snap);
    await this.settled();
  }

  /** Jobs of all snaps, one after the other (see queue): settles when the last one queued has ended. */
  private gate: Promise<void> = Promise.resolve();

  /**
   * Runs `work` once the jobs queued before it ended; a job cancelled while
   * it waits for its turn ends at once without running (stop() of one snap
   * never waits for another snap's job).
   */
  private oneAtATime(slot: Slot, work: () => Promise<void>): Promise<void> {
    const turn = this.gate;
    let release!: () => void;
    const mine = new Promise<void>((r) => (release = r));
    this.gate = turn.then(() => mine);
    const cancelled = new Promise<void>((r) => (slot.onCancel = r));
    if (slot.cancelled) slot.onCancel!();
    return Promise.race([turn, cancelled]).then(async () => {
      try {
        if (!slot.cancelled && !this.closed) await work();
      } finally {
        release();
      }
    });
  }

  private async run(snap: string, rev: string, slot: Slot): Promise<void> {
    const src = this.dataOf(snap, rev);
    const parent = path.dirname(src);
    // Cancellable from its first step: cancel() finds it in `running` before
    // anything is awaited, and every step after an await looks again. (A
    // cancel while the old standbys were being deleted went unseen: the job
    // ran through the refresh that cancelled it, and could delete the
    // standby that refresh was using.)
    const job: Job = { cancel: new Int32Array(new SharedArrayBuffer(4)), revision: rev };
    this.running.set(snap, job);
    const cancelled = () => slot.cancelled || this.closed || Atomics.load(job.cancel, 0) !== 0;
    try {
      // A complete standby of this revision (made before a restart) is kept;
      // every other goes. Decided before the first await: what a refresh
      // takes meanwhile is not looked at again.
      let keep: string | null = null;
      const drop: string[] = [];
      for (const dir of standbysIn(parent)) {
        if (keep === null && native.standbyInfo(dir).label === rev) keep = dir;
        else drop.push(dir);
      }
      for (const dir of drop) {
        if (cancelled()) return;
        await fs.promises.rm(dir, { recursive: true, force: true });
      }
      if (cancelled()) return;
      if (keep) {
        this.ready.set(snap, rev);
        return;
      }
      if (!hasEntries(src)) return; // empty data: the full copy costs nothing
      const low = lowOnSpace(parent);
      if (low) {
        this.say(`standby copy of ${snap} ${rev} not made: ${low}`);
        return;
      }
      await this.make(snap, rev, src, parent, job);
    } finally {
      if (this.running.get(snap) === job) this.running.delete(snap);
    }
  }

  private async make(snap: string, rev: string, src: string, parent: string, job: Job): Promise<void> {
    // Made by the job (0700), once it knows that files clone there: nowhere else does anything appear.
    const dir = path.join(parent, `.standby-${randomBytes(4).toString('hex')}`);
    const t0 = performance.now();
    try {
      const r = await native.standbyMake(src, dir, rev, job.cancel);
      if (Atomics.load(job.cancel, 0) === 0) this.ready.set(snap, rev);
      this.say(`standby copy of ${snap} ${rev} ready (${r.files} files, ${r.cloned} cloned, ${r.bytes} bytes copied, ${Math.round(performance.now() - t0)} ms)`);
    } catch (err) {
      await fs.promises.rm(dir, { recursive: true, force: true }).catch(() => undefined);
      const code = (err as NodeJS.ErrnoException).code;
      if (code === 'EOPNOTSUPP' || code === 'ENOTSUP') {
        this.unsupported.add(snap);
        this.say(`standby copies of ${snap}: off (files are not clones where its data is)`);
      } else if (code !== 'ECANCELED') {
        throw err;
      }
    }
  }
}
