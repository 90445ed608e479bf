// change-runner.ts: a change (refresh, revert, remove) is an ordered list of named
// steps, each with a do and an undo, run by one runner that records every
// step boundary in a journal under R/state/changes/. A failure unwinds the
// finished steps in reverse. A crash (even SIGKILL) leaves the journal, from
// which the next supervisor either completes the change (once it is past its
// point of no return) or undoes it: never a half state. snapd's overlord
// taught the idea; this keeps it small.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readSlot, SlotFile } from '../util/slot-file';
import type { FlushBatch } from '../util/flush-batch';
import type { FlushQueue } from '../util/atomic-file';
import { compareCodeUnits } from '../util/order';

export type StepStatus = 'todo' | 'doing' | 'done' | 'undoing' | 'undone' | 'skipped' | 'error';
export type ChangeStatus = 'doing' | 'undoing' | 'done' | 'undone' | 'error';

export interface StepRecord {
  name: string;
  status: StepStatus;
  /** What the step did, in words (printed as progress). */
  summary?: string;
  ms?: number;
  error?: string;
}

export interface ChangeRecord<D> {
  id: string;
  kind: string;
  snap: string;
  status: ChangeStatus;
  /** Index of the step after which a crash is completed, not undone (a failure is always undone). */
  pointOfNoReturn: number;
  steps: StepRecord[];
  /** The change's own state, saved with every boundary so undo and recovery can use it. */
  data: D;
  startedAt: string;
  endedAt?: string;
  /** Number of the journal write (the higher of the two slots is the journal). */
  seq?: number;
  error?: string;
}

/** What a step can ask of the runner while it runs. */
export interface StepContext {
  /**
   * Journals the change's data now, in the middle of the step: what a crash
   * from here on must undo (e.g. the number of a revision about to be
   * written) reaches the disk before the step writes anything under it.
   * With a batch (RunOptions.batch), what is queued in it is flushed at the
   * same time.
   */
  save(): Promise<void>;
  /**
   * Where the step may queue the flushes of its writes (RunOptions.batch),
   * instead of flushing each itself: they are flushed at the change's next
   * flushed boundary, before the journal says the step is done when the
   * step is at or past the point of no return, beside that journal write
   * before it. null: the step flushes its writes itself.
   */
  batch: FlushQueue | null;
}

export interface Step<D> {
  name: string;
  /**
   * false for a step that writes nothing under R that an undo or a recovery
   * relies on (it runs a hook, stops or starts processes, mounts): the
   * journal entry before it is written but not flushed; the next step that
   * writes flushes it (see runChange).
   */
  writes?: boolean;
  /**
   * true for a first step that journals (ctx.save()) before it writes
   * anything under R: the journal's first entry, written before it, is then
   * not flushed on its own (the step's save flushes it).
   */
  journalsFirst?: boolean;
  /** Does the step. Returns a short summary of what it did (progress line). Must be safe to run again after a crash inside it. */
  do(data: D, ctx: StepContext): Promise<string | void>;
  /** Undoes what `do` did (also a partial `do`). Must be safe to run again. */
  undo?(data: D): Promise<void>;
}

export function changesDir(root: string): string {
  return path.join(root, 'state', 'changes');
}

function journalFile(root: string, id: string): string {
  return path.join(changesDir(root), `${id}.json`);
}

/**
 * A journal is updated in place, in two slots that take turns (ID.json and
 * ID.json.1, see ../util/slot-file.ts): one fdatasync per flushed boundary
 * instead of a file fsync, a rename and a directory fsync (~0.4 ms against
 * ~7 ms on ext4 under load).
 *
 * Every boundary is written (a SIGKILL of the supervisor loses none), but
 * only those before a step that writes under R, and the last, are flushed:
 * what a power cut must not lose is the order, a step's files never on disk
 * while the journal there says an earlier step is still running (an undo
 * would then skip that step's undo). A boundary before a step that writes
 * nothing (a hook, stopping or starting services) can wait for the next
 * flush: lost, the recovery undoes or redoes that step, which is safe by
 * contract, and after a power cut no process of it runs any more. A
 * refresh (run with a FlushBatch, see runChange) flushes its journal 4
 * times: in its first step (ctx.save, before it writes), after
 * stop-services (before the old revision is unlinked), before the link
 * (with every flush queued so far) and the last; past the link, a step's
 * queued flushes (the links, the prune's renames) run before its boundary.
 */
const openJournals = new Map<string, SlotFile>();

/** The open writer of a change's journal (opened at its first write). */
function journalOf(root: string, id: string): SlotFile {
  const file = journalFile(root, id);
  let j = openJournals.get(file);
  if (!j) {
    j = new SlotFile(file);
    openJournals.set(file, j);
  }
  return j;
}

/** A finished change's journal is closed: nothing writes it again. */
function closeIfFinished(j: SlotFile, change: ChangeRecord<unknown>): void {
  if (change.status === 'doing' || change.status === 'undoing') return;
  j.close();
  openJournals.delete(j.file);
}

export function saveChange<D>(root: string, change: ChangeRecord<D>, options: { durable?: boolean } = {}): void {
  const j = journalOf(root, change.id);
  j.write(change, { durable: options.durable ?? true });
  closeIfFinished(j, change);
}

export function loadChanges(root: string): ChangeRecord<unknown>[] {
  let files: string[];
  try {
    files = fs.readdirSync(changesDir(root)).filter((f) => f.endsWith('.json') || f.endsWith('.json.1'));
  } catch {
    return [];
  }
  const byId = new Map<string, ChangeRecord<unknown>>();
  for (const f of files) {
    let c: ChangeRecord<unknown> | null;
    try {
      c = readSlot<ChangeRecord<unknown>>(path.join(changesDir(root), f));
    } catch {
      continue; // unreadable: not a journal this writer made
    }
    // A slot torn by a crash mid-write or overtaken by a write (or a temp file of an older writer): the other slot stands.
    if (c === null || typeof c.id !== 'string') continue;
    const had = byId.get(c.id);
    if (!had || (c.seq ?? 0) > (had.seq ?? 0)) byId.set(c.id, c);
  }
  return [...byId.values()].sort((a, b) => compareCodeUnits(a.startedAt, b.startedAt) || compareCodeUnits(a.id, b.id));
}

/**
 * For tests of crash recovery: SNAPPROC_CRASH_AT=STEP:WHEN kills this
 * process there (before and after every step; steps name points inside).
 */
export function crashPoint(step: string, when: string): void {
  const at = process.env.SNAPPROC_CRASH_AT;
  if (at && at === `${step}:${when}`) process.kill(process.pid, 'SIGKILL');
}

export interface RunOptions {
  progress?: (line: string) => void;
  /**
   * Flushes deferred to the change's flushed boundaries (see runChange): a
   * refresh's dozen small writes are made durable in a few rounds of
   * concurrent fsyncs instead of one flush after the other.
   */
  batch?: FlushBatch;
}

/**
 * The journal written and flushed (fdatasync off the main thread), beside
 * `alongside` (other flushes that may land in either order).
 */
async function saveChangeFlushed<D>(root: string, change: ChangeRecord<D>, alongside: Promise<void> | null = null): Promise<void> {
  const j = journalOf(root, change.id);
  j.write(change, { durable: false });
  await Promise.all([j.sync(), alongside]);
  closeIfFinished(j, change);
}

export class ChangeFailed extends Error {
  constructor(
    message: string,
    readonly change: ChangeRecord<unknown>,
    override readonly cause: unknown,
  ) {
    super(message);
  }
}

/** Runs (or, after a crash, resumes) a change. Resolves when done; rejects with ChangeFailed after undoing. */
export async function runChange<D>(root: string, change: ChangeRecord<D>, steps: Step<D>[], options: RunOptions = {}): Promise<ChangeRecord<D>> {
  const progress = options.progress ?? (() => {});
  const total = steps.length;
  const rec = (i: number) => change.steps[i];
  const batch = options.batch ?? null;
  /**
   * A flushed boundary, after (or inside) step `i`. With a batch, the
   * queued flushes wait for the boundary right before the point of no
   * return, and run beside the journal's there (a power cut may land the
   * journal before them or them before it: the journal says at most that a
   * step is done, and a crash before the point undoes every step that
   * started, whose undo copes with a partial do; what a write-ahead needs,
   * the journal on disk before a step writes, is kept: each such boundary
   * flushes the journal); at or past the point, they run first: the journal
   * never says a step is done there before its writes are on disk, for a
   * recovery completes from that step on (see also the boundaries past
   * the point, below).
   */
  const flushed = async (i: number): Promise<void> => {
    if (!batch) return saveChange(root, change);
    if (i < change.pointOfNoReturn - 1) return saveChangeFlushed(root, change);
    if (i < change.pointOfNoReturn) return saveChangeFlushed(root, change, batch.flush());
    await batch.flush();
    await saveChangeFlushed(root, change);
  };
  if (change.status === 'doing') {
    // The journal exists before the first step does anything (flushed then,
    // unless that step journals before it writes).
    const first = steps.findIndex((_, k) => rec(k).status !== 'done' && rec(k).status !== 'skipped');
    saveChange(root, change, { durable: !(first === 0 && steps[0].journalsFirst) });
    for (let i = 0; i < total; i++) {
      if (rec(i).status === 'done' || rec(i).status === 'skipped') continue;
      const started = performance.now();
      // Not journalled: after a crash, the first step that is not done counts
      // as started (see recoveryPlan), so every boundary costs one write.
      rec(i).status = 'doing';
      crashPoint(steps[i].name, 'before');
      try {
        const summary = await steps[i].do(change.data, { save: () => flushed(i), batch });
        rec(i).status = 'done';
        rec(i).summary = summary || undefined;
        rec(i).ms = Math.round(performance.now() - started);
        // Flushed unless the next step to run writes nothing; after the last
        // step, the final save right below flushes (one flush, not two in a row).
        // With a batch, boundaries past the point of no return are not
        // flushed either: a crash there completes the change, running again
        // the steps not yet done (each safe to run again), and the final
        // save flushes the journal before the change is answered. But what
        // such a step queued is flushed before its boundary is written at
        // all: an unflushed journal write may reach the disk before any
        // other write, and past the point it must never say that a step is
        // done whose writes a power cut could still lose.
        const next = steps.findIndex((_, k) => k > i && rec(k).status !== 'done' && rec(k).status !== 'skipped');
        const past = batch !== null && i >= change.pointOfNoReturn;
        if (past && !batch.empty) await batch.flush();
        const durable = next >= 0 && steps[next].writes !== false && !past;
        if (durable) await flushed(i);
        else saveChange(root, change, { durable: false });
        progress(`[${i + 1}/${total}] ${summary || steps[i].name} (${rec(i).ms} ms)`);
        crashPoint(steps[i].name, 'after');
      } catch (err) {
        rec(i).status = 'error';
        rec(i).error = (err as Error).message;
        rec(i).ms = Math.round(performance.now() - started);
        change.error = `${steps[i].name}: ${(err as Error).message}`;
        progress(`[${i + 1}/${total}] ${steps[i].name} failed: ${(err as Error).message}`);
        // Any failure unwinds every step that ran (the point of no return
        // only decides what a crash leads to).
        change.status = 'undoing';
        saveChange(root, change);
        await undoFrom(root, change, steps, i, progress, options);
        // snapd's form: `cannot refresh "x": <why>`, and what was unwound.
        const undone = change.steps.filter((st, k) => k < i && st.status === 'undone').map((st) => st.name);
        throw new ChangeFailed(`cannot ${change.kind} "${change.snap}": ${(err as Error).message}${undone.length ? ` (undone: ${undone.join(', ')})` : ''}`, change, err);
      }
    }
    change.status = 'done';
    change.endedAt = new Date().toISOString();
    await flushed(total - 1);
    return change;
  }
  if (change.status === 'undoing') {
    // Every step that started (done, doing when the crash came, error, undoing) is undone.
    await undoFrom(root, change, steps, steps.length - 1, progress, options);
    throw new ChangeFailed(`${change.kind} of ${change.snap} was undone`, change, null);
  }
  return change;
}

async function undoFrom<D>(root: string, change: ChangeRecord<D>, steps: Step<D>[], from: number, progress: (line: string) => void, options: RunOptions = {}): Promise<void> {
  for (let i = from; i >= 0; i--) {
    const st = change.steps[i];
    if (st.status === 'todo' || st.status === 'undone' || st.status === 'skipped') continue;
    st.status = 'undoing';
    saveChange(root, change);
    crashPoint(steps[i].name, 'before');
    try {
      await steps[i].undo?.(change.data);
      st.status = 'undone';
      progress(`  undo ${steps[i].name}`);
    } catch (err) {
      st.status = 'error';
      st.error = `undo: ${(err as Error).message}`;
      progress(`  undo ${steps[i].name} failed: ${(err as Error).message}`);
    }
    saveChange(root, change);
  }
  change.status = 'undone';
  change.endedAt = new Date().toISOString();
  // What the undone steps queued and did not remove (undo writes flush their own).
  await options.batch?.flush().catch(() => undefined);
  saveChange(root, change);
}

/**
 * What to do with a change found unfinished at start-up: complete it when
 * every step up to the point of no return is done, otherwise undo it.
 */
export function recoveryPlan(change: ChangeRecord<unknown>): 'complete' | 'undo' | 'none' {
  if (change.status === 'undoing') return 'undo';
  if (change.status !== 'doing') return 'none';
  // The step after the last one done may have run in part: mark it so an undo covers it.
  const next = change.steps.findIndex((s) => s.status === 'todo');
  if (next >= 0 && (next === 0 || change.steps[next - 1].status === 'done' || change.steps[next - 1].status === 'skipped')) change.steps[next].status = 'doing';
  const pastPoint = change.steps.slice(0, change.pointOfNoReturn + 1).every((s) => s.status === 'done' || s.status === 'skipped');
  return pastPoint ? 'complete' : 'undo';
}
