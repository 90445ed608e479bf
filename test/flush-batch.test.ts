// flush-batch.test.ts: the flushes a refresh defers (util/flush-batch.ts)
// and where its change runner makes them durable (supervisor/change-runner.ts):
// before the point of no return beside the journal, at the boundary right
// before it; past it, before the journal may say a step is done; and never
// later than the change's last journal write, which says it is done.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { FlushBatch } from '../src/util/flush-batch';
import { readSlotFile } from '../src/util/slot-file';
import { changesDir, runChange, type ChangeRecord, type Step } from '../src/supervisor/change-runner';
import { tmpdir } from './helpers';

const noSyncfs = async () => {
  throw new Error('syncfs is not expected for a small tree');
};

test('a batch flushes queued files, directories and trees; a path removed meanwhile is skipped; what is queued later waits', async () => {
  const dir = tmpdir('flush-');
  fs.mkdirSync(path.join(dir, 'tree', 'sub'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'tree', 'sub', 'f'), 'x');
  fs.writeFileSync(path.join(dir, 'file'), 'y');
  fs.symlinkSync('file', path.join(dir, 'link'));
  const b = new FlushBatch(noSyncfs);
  assert.ok(b.empty);
  b.add(dir, path.join(dir, 'file'), path.join(dir, 'gone'), path.join(dir, 'file', 'not-a-dir'));
  b.addTree(path.join(dir, 'tree'));
  b.addTree(path.join(dir, 'no-tree'));
  assert.not.ok(b.empty);
  await b.flush();
  assert.ok(b.empty, 'a flush empties the queue');
  // A symlink is not opened (O_NOFOLLOW): its directory's flush covers it.
  b.add(path.join(dir, 'link'));
  await b.flush().then(
    () => assert.unreachable('fsync of a symlink by path must not follow it'),
    (err) => assert.is((err as NodeJS.ErrnoException).code, 'ELOOP'),
  );
  // A large tree is one syncfs.
  const big = path.join(dir, 'big');
  fs.mkdirSync(big);
  for (let i = 0; i < 300; i++) fs.writeFileSync(path.join(big, String(i)), '');
  let syncfs = 0;
  const b2 = new FlushBatch(async () => {
    syncfs += 1;
  });
  b2.addTree(big);
  await b2.flush();
  assert.is(syncfs, 1);
});

interface Seen {
  /** What was flushed. */
  paths: string[];
  /** What the journal on disk said once it was flushed, before the runner wrote again. */
  journal: { status: string; steps: Array<{ name: string; status: string }> } | null;
}

/** A batch that records what it flushed and what the journal on disk said then. */
class WatchedBatch extends FlushBatch {
  seen: Seen[] = [];
  private pending: string[] = [];
  constructor(private readonly journal: () => string) {
    super(noSyncfs);
  }
  override add(...paths: string[]): void {
    this.pending.push(...paths);
    super.add(...paths);
  }
  override async flush(): Promise<void> {
    const paths = this.pending;
    this.pending = [];
    await super.flush();
    if (paths.length) this.seen.push({ paths, journal: readSlotFile<NonNullable<Seen['journal']>>(this.journal()) });
  }
}

test('runChange with a batch: queued flushes land by the point of no return, and past it before the journal says their step is done', async () => {
  const root = tmpdir('flush-root-');
  const file = path.join(root, 'data');
  const mk = (name: string, extra: Partial<Step<object>> = {}): Step<object> => ({
    name,
    async do(_d, ctx) {
      if (extra.journalsFirst) await ctx.save();
      fs.writeFileSync(`${file}-${name}`, name);
      assert.ok(ctx.batch, 'steps get the batch');
      ctx.batch!.add(`${file}-${name}`);
    },
    ...extra,
  });
  const steps = [mk('validate', { journalsFirst: true }), mk('stop', { writes: false }), mk('copy'), mk('link'), mk('start', { writes: false }), mk('prune')];
  const names = steps.map((s) => s.name);
  const point = 3;
  const change: ChangeRecord<object> = {
    id: `t-${process.pid}`, kind: 'refresh', snap: 'x', status: 'doing', pointOfNoReturn: point,
    steps: steps.map((s) => ({ name: s.name, status: 'todo' })), data: {}, startedAt: new Date().toISOString(),
  };
  const journal = path.join(changesDir(root), `${change.id}.json`);
  const batch = new WatchedBatch(() => journal);
  const done = await runChange(root, change, steps, { batch });
  assert.is(done.status, 'done');
  const status = (s: Seen, name: string) => s.journal!.steps.find((x) => x.name === name)!.status;
  const flushedOf = (name: string) => batch.seen.find((s) => s.paths.includes(`${file}-${name}`));
  // Before the point: one flush, beside the journal at the boundary before the link.
  for (const name of names.slice(0, point)) {
    const s = flushedOf(name);
    assert.ok(s, `${name}'s write was flushed`);
    assert.is(s!, batch.seen[0], 'in the one flush before the point');
  }
  assert.is(status(batch.seen[0], 'copy'), 'done', 'at the boundary right before the link');
  assert.is(status(batch.seen[0], 'link'), 'todo');
  // Past it: each step's before the journal on disk says that step is done, or the change is.
  for (const name of names.slice(point)) {
    const s = flushedOf(name);
    assert.ok(s, `${name}'s write was flushed`);
    assert.is.not(status(s!, name), 'done', `the journal does not say ${name} is done before its write is flushed`);
    assert.is(s!.journal!.status, 'doing');
  }
  const final = readSlotFile<ChangeRecord<object>>(journal)!;
  assert.is(final.status, 'done');
  assert.ok(batch.empty);
});

test('runChange without a batch: steps get none and flush their own writes', async () => {
  const root = tmpdir('flush-root-');
  let got: unknown = 'unset';
  const steps: Step<object>[] = [{ name: 'only', async do(_d, ctx) { got = ctx.batch; await ctx.save(); } }];
  const change: ChangeRecord<object> = {
    id: `u-${process.pid}`, kind: 'remove', snap: 'x', status: 'doing', pointOfNoReturn: 0,
    steps: [{ name: 'only', status: 'todo' }], data: {}, startedAt: new Date().toISOString(),
  };
  await runChange(root, change, steps);
  assert.is(got, null);
  assert.is(readSlotFile<ChangeRecord<object>>(path.join(changesDir(root), `${change.id}.json`))!.status, 'done');
});

test.run();
