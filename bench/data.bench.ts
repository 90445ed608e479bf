// data.bench.ts: the cost of $SNAP_DATA in a refresh (issue 12, goal 2), on
// loop-mounted btrfs, XFS (reflink=1) and ext4 images that this benchmark
// makes and removes. On each, one supervisor (in this process) runs two
// one-service snaps side by side: one with empty data, one with SIZE MiB of
// data (four large files) plus FILES small ones; their refreshes alternate,
// and the ratio is the big-data refresh over the empty-data one. The data
// copy alone is also set against `cp -a --preserve=xattr` of the same tree.
// The background deletion of pruned revisions is awaited between rounds
// (untimed), so that it never lands inside a measurement. Where a standby
// copy is made (XFS: src/snap/standby.ts), the big-data refresh is measured
// twice per round: with the standby ready (the goal row; the supervisor's
// standbysSettled() and standbyState() say when the background job is done,
// awaited untimed) and with no standby (its directory removed first: the
// full copy, an info row); the checking pass's own time is read from the
// refresh's change (its copy step's summary).
// Sections: btrfs, xfs, ext4 (e.g. `npm run bench -- data xfs`); options
// --size=MiB (default 1024), --files=N (default 2000), --reps=K.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { BenchCgroups, uniqueInstance, runBench } from './harness';
import { median, printTable, reportRows, Row, showRaw, wanted, BenchArgs } from './table';
import { Supervisor } from '../src/supervisor/supervisor';
import { copyTree } from '../src/snap/data-copy';
import { loadChanges } from '../src/supervisor/change-runner';
import { isStandbyName } from '../src/snap/standby';

const FILE = 'data';
const argv = process.argv.slice(2);
const num = (name: string, dflt: number) => {
  const m = argv.map((a) => new RegExp(`^--${name}=(\\d+)$`).exec(a)).find(Boolean);
  return m ? Number(m[1]) : dflt;
};
const SIZE_MIB = num('size', 1024);
const FILES = num('files', 2000);
const args: BenchArgs = { filters: argv.filter((a) => !a.startsWith('-')).map((a) => a.toLowerCase()), reps: argv.some((a) => a.startsWith('--reps=')) ? num('reps', 5) : undefined };
const bc = new BenchCgroups();
const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'snapproc-bench-data-'));
const mounts: string[] = [];
const rows: Row[] = [];
const footer: string[] = [];

function sh(cmd: string, a: string[]): string {
  const r = spawnSync(cmd, a, { encoding: 'utf8' });
  if (r.status !== 0) throw new Error(`${cmd} ${a.join(' ')}: ${(r.stderr || r.error?.message || '').trim()}`);
  return r.stdout;
}

function have(cmd: string): boolean {
  return spawnSync('sh', ['-c', `command -v ${cmd}`]).status === 0;
}

function cleanup(): void {
  for (const m of mounts.splice(0).reverse()) spawnSync('umount', [m]);
  fs.rmSync(tmp, { recursive: true, force: true });
}
process.on('exit', cleanup);

function writeSnap(dir: string, name: string, version: string): void {
  fs.mkdirSync(path.join(dir, 'meta'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bin'), { recursive: true });
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), `name: ${name}\nversion: '${version}'\napps:\n  svc:\n    command: bin/svc\n    daemon: simple\n    stop-timeout: 5s\n`);
  fs.writeFileSync(path.join(dir, 'bin', 'svc'), '#!/bin/sh\nexec sleep 100000\n', { mode: 0o755 });
}

/** SIZE MiB in four large files, FILES small files (4 KiB) in 20 directories, a symlink and a hard link. */
function fillData(dir: string): void {
  const chunk = randomBytes(1 << 20);
  const big = 4;
  for (let f = 0; f < big; f++) {
    const fd = fs.openSync(path.join(dir, `large-${f}.bin`), 'w');
    for (let i = 0; i < SIZE_MIB / big; i++) {
      chunk.writeUInt32LE(i * big + f, 0); // no two MiB alike
      fs.writeSync(fd, chunk);
    }
    fs.closeSync(fd);
  }
  const small = randomBytes(4096);
  for (let i = 0; i < FILES; i++) {
    const sub = path.join(dir, 'small', `d${i % 20}`);
    if (i < 20) fs.mkdirSync(sub, { recursive: true });
    small.writeUInt32LE(i, 0);
    fs.writeFileSync(path.join(sub, `f${i}`), small);
  }
  fs.symlinkSync('large-0.bin', path.join(dir, 'latest'));
  fs.linkSync(path.join(dir, 'large-1.bin'), path.join(dir, 'large-1.hardlink'));
}

function usedMiB(mnt: string): number {
  const out = sh('df', ['-k', '--output=used', mnt]).trim().split('\n');
  return Math.round(Number(out[out.length - 1]) / 1024);
}

async function oneFs(kind: 'btrfs' | 'xfs' | 'ext4'): Promise<void> {
  const mkfs = { btrfs: 'mkfs.btrfs', xfs: 'mkfs.xfs', ext4: 'mkfs.ext4' }[kind];
  if (!have(mkfs)) {
    footer.push(`${kind}: not measured, ${mkfs} is missing (apt-get install ${kind === 'btrfs' ? 'btrfs-progs' : kind === 'xfs' ? 'xfsprogs' : 'e2fsprogs'})`);
    return;
  }
  // Sparse image: room for the current, previous and copied data (ext4 copies every byte), plus cp -a's copy.
  const img = path.join(tmp, `${kind}.img`);
  const mnt = path.join(tmp, kind);
  fs.mkdirSync(mnt);
  const sizeMiB = Math.ceil(Math.max(kind === 'xfs' ? 600 : 300, (kind === 'ext4' ? 5 : 2) * SIZE_MIB + 512 + FILES / 64));
  sh('truncate', ['-s', `${sizeMiB}M`, img]);
  sh(mkfs, kind === 'btrfs' ? ['-q', img] : kind === 'xfs' ? ['-q', '-m', 'reflink=1', img] : ['-q', '-F', img]);
  sh('mount', ['-o', 'loop', img, mnt]);
  mounts.push(mnt);
  const progress = (t: string) => process.stderr.write(`  [data ${kind}] ${t}\n`);
  const root = path.join(mnt, 'root');
  const jobMs: number[] = [];
  const log = (line: string) => {
    const m = /^standby copy of \S+ \S+ ready \(.*, (\d+) ms\)$/.exec(line);
    if (m) jobMs.push(Number(m[1]));
  };
  const sup = new Supervisor({ root, cgroupParent: bc.make(`data-${kind}`), handleSignals: false, log });
  await sup.start();
  try {
    const empty = uniqueInstance('empty');
    const big = uniqueInstance('big');
    const src = (snap: string, v: string) => {
      const d = path.join(tmp, `${kind}-${snap}-${v}`);
      if (!fs.existsSync(d)) writeSnap(d, snap, v);
      return d;
    };
    await sup.install(src(empty, '1'));
    await sup.install(src(big, '1'));
    progress(`writing ${SIZE_MIB} MiB and ${FILES} files of $SNAP_DATA`);
    fillData(sup.store.paths(big, sup.store.currentRevision(big)!).data);
    sh('sync', ['-f', mnt]);
    const next = new Map<string, string>([[empty, '2'], [big, '2']]);
    const refresh = async (snap: string) => {
      const v = next.get(snap)!;
      next.set(snap, v === '2' ? '1' : '2');
      await sup.serialize(() => sup.refresh(snap, src(snap, v)));
    };
    const dataOf = (snap: string) => sup.store.paths(snap, sup.store.currentRevision(snap)!).data;
    const settle = async () => {
      await sup.standbysSettled();
      await sup.trashSwept();
      sh('sync', ['-f', mnt]);
    };
    const standbys = (snap: string) => fs.readdirSync(path.dirname(dataOf(snap))).filter(isStandbyName).map((n) => path.join(path.dirname(dataOf(snap)), n));
    const lastCopyStep = (snap: string) => loadChanges(root).filter((c) => c.kind === 'refresh' && c.snap === snap).pop()?.steps.find((st) => st.name === 'unlink-copy-data')?.summary ?? '';
    const rounds = args.reps ?? (kind === 'ext4' ? 3 : 7);
    // Warm-up (untimed): one refresh each, so both have a previous revision to prune from here on.
    await refresh(empty);
    await refresh(big);
    await settle();
    const t = new Map<string, number[]>([['empty', []], ['big', []], ['full', []], ['check', []], ['copy', []], ['cp', []]]);
    await settle();
    const withStandby = sup.standbyState(big).state === 'ready';
    progress(`${rounds} rounds of: refresh (empty data), refresh (big data${withStandby ? ', standby ready' : ''}),${withStandby ? ' refresh (big data, no standby),' : ''} copyTree, cp -a`);
    for (let r = 0; r < rounds; r++) {
      const contenders: Array<['empty' | 'big' | 'full', string]> = [['empty', empty], ['big', big]];
      if (withStandby) contenders.push(['full', big]);
      for (const [name, snap] of r % 2 ? contenders.reverse() : contenders) {
        await settle();
        if (name === 'big' && withStandby && sup.standbyState(big).state !== 'ready') throw new Error(`no standby ready for the big snap (${JSON.stringify(sup.standbyState(big))})`);
        // No standby: what the refresh finds when none was made (removed untimed; the refresh then schedules the next).
        if (name === 'full') for (const dir of standbys(big)) fs.rmSync(dir, { recursive: true, force: true });
        const t0 = performance.now();
        await refresh(snap);
        t.get(name)!.push(performance.now() - t0);
        const step = lastCopyStep(snap);
        const used = /standby copy: .* checked in ([\d.]+) ms/.exec(step);
        if (name === 'big' && withStandby) {
          if (!used) throw new Error(`the refresh with a standby ready did not use it: ${step}`);
          t.get('check')!.push(Number(used[1]));
        }
        if (name === 'full' && used) throw new Error(`the refresh without a standby used one: ${step}`);
      }
      // The copy alone, against cp -a of the same tree, into the same file system (alternated; removed untimed).
      const from = dataOf(big);
      for (const name of (r % 2 ? ['cp', 'copy'] : ['copy', 'cp']) as Array<'copy' | 'cp'>) {
        const dst = path.join(mnt, `copy-${name}`);
        await settle();
        const t0 = performance.now();
        if (name === 'copy') await copyTree(from, dst);
        else sh('cp', ['-a', '--preserve=xattr', '--no-target-directory', '--', from, dst]);
        if (name === 'cp') sh('sync', ['-f', mnt]); // copyTree flushes what it wrote; cp does not: its copy is flushed within its time too
        t.get(name)!.push(performance.now() - t0);
        spawnSync('sh', ['-c', 'btrfs subvolume delete "$0" >/dev/null 2>&1 || rm -rf "$0"', dst]);
      }
    }
    await settle();
    const used = usedMiB(mnt);
    for (const [k, v] of [...t]) if (v.length === 0) t.delete(k);
    showRaw(`data ${kind}`, t);
    const m = (n: string) => median(t.get(n)!);
    const goal = kind === 'btrfs' ? 1.2 : kind === 'xfs' ? 1.5 : undefined;
    const desc = `${SIZE_MIB >= 1024 ? `${SIZE_MIB / 1024} GiB` : `${SIZE_MIB} MiB`} + ${FILES} files`;
    if (withStandby) {
      rows.push({ measure: `${kind}: refresh with ${desc} (standby ready) vs refresh with empty data`, n: rounds, snapproc: m('big'), baseline: m('empty'), goal, note: 'One supervisor, two one-service snaps on the same loop-mounted image (state root on it): the refresh of the snap with big $SNAP_DATA, its standby copy made in the background after the previous refresh (awaited untimed through Supervisor.standbysSettled/standbyState), against the refresh of the one with empty data, alternated with the no-standby refresh below; control socket left out (in-process Supervisor.refresh). The background deletion of pruned revisions is awaited (untimed) before each run.' });
      rows.push({ measure: `${kind}: refresh with ${desc}, no standby (full copy) vs refresh with empty data`, n: rounds, snapproc: m('full'), baseline: m('empty'), note: 'Info: the same refresh when no standby copy is there (its directory removed, untimed, before the run): the full copy, as before standbys.' });
      rows.push({ measure: `${kind}: standby checking pass vs copyTree of the same data`, n: rounds, snapproc: m('check'), baseline: m('copy'), note: 'Info: the checking pass inside the standby refresh (from its change step), against the full copyTree of the same tree (below).' });
    } else {
      rows.push({ measure: `${kind}: refresh with ${desc} vs refresh with empty data`, n: rounds, snapproc: m('big'), baseline: m('empty'), goal, note: `One supervisor, two one-service snaps on the same loop-mounted image (state root on it): the refresh of the snap with big $SNAP_DATA against the refresh of the one with empty data, alternated; control socket left out (in-process Supervisor.refresh). No standby copy here (${sup.standbyState(big).state}). The background deletion of pruned revisions is awaited (untimed) before each run.` });
    }
    rows.push({ measure: `${kind}: $SNAP_DATA copy (copyTree) vs cp -a --preserve=xattr`, n: rounds, snapproc: m('copy'), baseline: m('cp'), goal: kind === 'ext4' ? 1 : undefined, note: 'The copy alone, of the big data into the same file system: copyTree (native, flushed) against GNU cp -a --preserve=xattr followed by syncfs (cp does not flush), alternated.' });
    const steps = new Map<string, Map<string, number[]>>();
    for (const c of loadChanges(root).filter((c) => c.kind === 'refresh' && c.status === 'done')) {
      const which = c.snap === big ? 'big' : 'empty';
      const byStep = steps.get(which) ?? new Map<string, number[]>();
      for (const s of c.steps) if (s.ms !== undefined) byStep.set(s.name, [...(byStep.get(s.name) ?? []), s.ms]);
      steps.set(which, byStep);
    }
    const stepLine = (w: string) => [...(steps.get(w) ?? [])].filter(([n]) => ['validate', 'stop-services', 'unlink-copy-data', 'start-services', 'prune'].includes(n)).map(([n, xs]) => `${n} ${median(xs)}`).join(', ');
    footer.push(`${kind}: refresh steps (median ms), big data: ${stepLine('big')}; empty: ${stepLine('empty')}. Image ${sizeMiB} MiB, ${used} MiB used at the end (big data ${SIZE_MIB} MiB + small files, 2 retained revisions${withStandby ? ', a standby copy' : ''})${jobMs.length ? `; background standby job median ${median(jobMs).toFixed(0)} ms (n=${jobMs.length}, nice 19)` : ''}`);
    await sup.remove(empty, { purge: true });
    await sup.remove(big, { purge: true });
    await sup.trashSwept();
  } finally {
    await sup.shutdown();
    spawnSync('umount', [mnt]);
    mounts.splice(mounts.indexOf(mnt), 1);
    fs.rmSync(img, { force: true });
  }
}

async function main(): Promise<void> {
  const started = Date.now();
  for (const kind of ['btrfs', 'xfs', 'ext4'] as const) {
    if (!wanted(args, [kind, 'data', 'copy'])) continue;
    try {
      await oneFs(kind);
    } catch (err) {
      footer.push(`${kind}: failed: ${(err as Error).message}`);
      process.stderr.write(`data bench ${kind} failed: ${(err as Error).stack}\n`);
    }
  }
  footer.push('', `Medians; contenders alternated in the same run. Node ${process.version}, kernel ${fs.readFileSync('/proc/sys/kernel/osrelease', 'utf8').trim()}, ${os.availableParallelism()} CPUs; ${((Date.now() - started) / 1000).toFixed(0)} s.`);
  printTable(`$SNAP_DATA copies in a refresh (ratio = snapproc / baseline; goal is on the ratio)`, rows, footer);
  reportRows(FILE, rows);
}

runBench('data', main);
