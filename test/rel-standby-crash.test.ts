// Reliability: crashes around the standby copy of $SNAP_DATA (src/snap/standby.ts)
// on a real loop-mounted XFS image. The supervisor (`snapproc daemon`) is
// SIGKILLed during the background job that makes the standby, right after
// the checking pass of a refresh, right after the standby was renamed into
// place, or at a random moment of a refresh that uses a standby. After a
// restart every run must end consistent: the refresh done or undone, both
// `current` links on one revision, the listed revisions exactly the
// directories there, the current revision's data exactly what the old
// revision's was (entry by entry: types, modes, owners, times, content,
// links), nothing left of an incomplete or used standby, a new standby of
// the current revision made, and the next refresh using it and giving a
// faithful copy.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { createHash } from 'node:crypto';
import { execFileSync, spawnSync } from 'node:child_process';
import { request } from '../src/supervisor/client';
import { loadChanges } from '../src/supervisor/change-runner';
import { native } from '../src/kernel/native';
import { isStandbyName } from '../src/snap/standby';
import { gateOn, haveCommand, makeCgroup, tmpdir, trials, uniqueSnapName, waitFor } from './helpers';
import { buildSnap, entries, killDaemon, link, removeCgroup, removeRoot, sleep, startDaemon, trashLeft, type Daemon } from './rel-support';

const test = suite('rel-standby-crash');
const xfsTest = gateOn(test, haveCommand('mkfs.xfs') ? null : 'mkfs.xfs missing (apt-get install xfsprogs)');

const KINDS = ['job', 'checked', 'renamed', 'refresh-random'] as const;
type Kind = (typeof KINDS)[number];

const APPS = `  rs:
    command: bin/run
    daemon: simple
    stop-timeout: 1s
`;
const RUN = '#!/bin/sh\nexec sleep 1000\n';

let mnt: string | null = null;
let img: string | null = null;
process.on('exit', () => {
  if (mnt) spawnSync('umount', ['-l', mnt]);
  if (img) fs.rmSync(img, { force: true });
});

function xfs(): string {
  if (mnt) return mnt;
  const dir = tmpdir('rel-sb-');
  img = path.join(dir, 'img');
  mnt = path.join(dir, 'mnt');
  fs.mkdirSync(mnt);
  execFileSync('truncate', ['-s', '600M', img]);
  execFileSync('mkfs.xfs', ['-q', '-m', 'reflink=1', img], { stdio: 'ignore' });
  // noatime: the listings below read every file; nothing they read may change what they compare.
  execFileSync('mount', ['-o', 'loop,noatime', img, mnt]);
  return mnt;
}

/** Every entry: type, mode, owner, size, times, content hash, link target, hard-link group. */
function listing(root: string): string[] {
  const out: string[] = [];
  const inodes = new Map<bigint, string>();
  const walk = (dir: string, rel: string) => {
    for (const name of fs.readdirSync(dir).sort()) {
      const p = path.join(dir, name);
      const st = fs.lstatSync(p, { bigint: true });
      const r = `${rel}/${name}`;
      const what = st.isSymbolicLink() ? `-> ${fs.readlinkSync(p)}` : st.isFile() ? createHash('sha1').update(fs.readFileSync(p)).digest('hex') : '';
      let group = '';
      if (!st.isDirectory() && st.nlink > 1n) {
        if (!inodes.has(st.ino)) inodes.set(st.ino, r);
        group = `link-of ${inodes.get(st.ino)}`;
      }
      out.push(`${r} ${st.mode.toString(8)} ${st.uid}:${st.gid} ${st.isDirectory() ? '' : st.size} a=${st.atimeNs} m=${st.mtimeNs} ${what} ${group}`);
      if (st.isDirectory()) walk(p, r);
    }
  };
  walk(root, '');
  const top = fs.lstatSync(root, { bigint: true });
  out.push(`. ${top.mode.toString(8)} ${top.uid}:${top.gid} m=${top.mtimeNs}`);
  return out;
}

function fill(data: string, files: number): void {
  const t = new Date('2011-03-04T05:06:07.089Z');
  for (let i = 0; i < files; i++) {
    const d = path.join(data, `d${i % 10}`);
    if (i < 10) fs.mkdirSync(d);
    fs.writeFileSync(path.join(d, `f${i}`), `file ${i}\n`.repeat(1 + (i % 50)));
    if (i % 7 === 0) fs.chmodSync(path.join(d, `f${i}`), 0o600);
    if (i % 11 === 0) fs.chownSync(path.join(d, `f${i}`), 1000 + (i % 5), 1000);
    fs.utimesSync(path.join(d, `f${i}`), t, t);
  }
  fs.writeFileSync(path.join(data, 'big'), Buffer.alloc(8 << 20, 1));
  fs.linkSync(path.join(data, 'd1', 'f1'), path.join(data, 'hard'));
  fs.symlinkSync('d0/f0', path.join(data, 'sym'));
  for (let i = 0; i < 10; i++) fs.utimesSync(path.join(data, `d${i}`), t, t);
}

/** Standby directories of the snap: [dir, complete (has a manifest of `rev`)]. */
function standbys(varDir: string, rev: string | null): Array<{ dir: string; ready: boolean }> {
  return entries(varDir).filter(isStandbyName).map((n) => {
    const dir = path.join(varDir, n);
    return { dir, ready: rev !== null && native.standbyInfo(dir).label === rev };
  });
}

/** Exactly one complete standby of `rev`, nothing else: the background job is done. */
function oneReady(varDir: string, rev: string): boolean {
  const s = standbys(varDir, rev);
  return s.length === 1 && s[0].ready;
}

interface Outcome { kind: Kind; consistent: boolean; why: string; ended: string }

async function trial(kind: Kind): Promise<Outcome> {
  const base = fs.mkdtempSync(path.join(xfs(), 'trial-'));
  const root = path.join(base, 'root');
  const cg = makeCgroup(`sbcrash-${uniqueSnapName('c')}`);
  const log = path.join(tmpdir('rel-sb-log-'), 'daemon.log');
  const name = uniqueSnapName('sc');
  let daemon: Daemon | null = null;
  const fail = (why: string): Outcome => ({ kind, consistent: false, why: `${why}${fs.existsSync(log) ? `\n      ${fs.readFileSync(log, 'utf8').slice(-1500).split('\n').join('\n      ')}` : ''}`, ended: '' });
  try {
    daemon = await startDaemon(root, cg, log, { SNAPPROC_STANDBY_DELAY_MS: '150' });
    const v = (n: number) => buildSnap(name, APPS, { run: RUN }, `${n}.0`);
    await request(root, 'install', { path: v(1) });
    const varDir = path.join(root, 'var', 'snap', name);
    fill(path.join(varDir, 'x1'), kind === 'job' ? 3000 : 600);
    await request(root, 'refresh', { snap: name, from: v(2) });
    const ref = listing(path.join(varDir, 'x2'));
    if (kind === 'job') {
      // Inside the background job: once its directory is there, before its manifest.
      await waitFor('the standby job', () => standbys(varDir, 'x2').some((s) => !s.ready), 20_000).catch(() => undefined);
      await sleep(Math.random() * 40);
      await killDaemon(daemon);
    } else {
      await waitFor('the standby', () => oneReady(varDir, 'x2'), 30_000);
      await killDaemon(daemon);
      const crashAt = kind === 'checked' ? 'standby:checked' : kind === 'renamed' ? 'standby:renamed' : '';
      daemon = await startDaemon(root, cg, log, { ...(crashAt ? { SNAPPROC_CRASH_AT: crashAt } : {}), SNAPPROC_STANDBY_DELAY_MS: '150' });
      // The restarted supervisor keeps the complete standby it finds.
      await waitFor('the standby kept', () => oneReady(varDir, 'x2'), 30_000);
      const r = request(root, 'refresh', { snap: name, from: v(3) }).catch(() => undefined);
      if (kind === 'refresh-random') {
        const known = loadChanges(root).length;
        await waitFor('the change to begin', () => loadChanges(root).length > known, 20_000).catch(() => undefined);
        await sleep(Math.random() * 60);
        await killDaemon(daemon);
      } else {
        await daemon.exit;
      }
      await r;
    }
    daemon = await startDaemon(root, cg, log, { SNAPPROC_STANDBY_DELAY_MS: '150' });
    await waitFor('the change to settle', async () => (await request(root, 'ping')).operations === 0 && loadChanges(root).every((c) => c.status !== 'doing' && c.status !== 'undoing'), 30_000);
    // The background sweep of the retired revisions' trash, once the change ended: then what is on disk is what is listed.
    await waitFor('the trash sweep', () => trashLeft(root, name).length === 0, 10_000).catch(() => undefined);
    const changes = loadChanges(root);
    const last = changes[changes.length - 1];
    const ended = last ? `${last.kind} ${last.status}` : 'nothing';
    const snapDir = path.join(root, 'snap', name);
    const rev = link(path.join(snapDir, 'current'));
    if (!rev || rev !== link(path.join(varDir, 'current'))) return fail(`links disagree: ${rev} / ${link(path.join(varDir, 'current'))}`);
    const listed = ((await request(root, 'list')) as Array<{ name: string; revisions: Array<{ revision: string }> }>).find((s) => s.name === name)!;
    const revs = listed.revisions.map((r) => r.revision).sort();
    const dirs = entries(snapDir).filter((e) => e !== 'current');
    if (dirs.join(' ') !== revs.join(' ')) return fail(`listed ${revs.join(' ')}, on disk ${dirs.join(' ')}`);
    const diff = (a: string[], b: string[]) => a.filter((l) => !b.includes(l)).concat(b.filter((l) => !a.includes(l)).map((l) => `missing: ${l}`)).slice(0, 6);
    const now = listing(path.join(varDir, rev));
    if (diff(now, ref).length) return fail(`data of ${rev} is not what x2's was: ${diff(now, ref).join('; ')}`);
    // Nothing of an incomplete or used standby is left; a new one of the current revision is made.
    try {
      await waitFor('a standby of the current revision, and nothing else', () => oneReady(varDir, rev), 30_000);
    } catch {
      return fail(`standbys: ${JSON.stringify(standbys(varDir, rev))}`);
    }
    const varLeft = entries(varDir).filter((e) => e !== 'current' && e !== 'common' && !revs.includes(e) && !isStandbyName(e));
    if (varLeft.length) return fail(`left in var: ${varLeft.join(' ')}`);
    // The next refresh uses it, and its copy is faithful.
    const before = listing(path.join(varDir, rev));
    await request(root, 'refresh', { snap: name, from: v(4) });
    const next = link(path.join(varDir, 'current'))!;
    const step = loadChanges(root).filter((c) => c.kind === 'refresh').pop()!.steps.find((s) => s.name === 'unlink-copy-data')!;
    if (!/standby copy/.test(step.summary ?? '')) return fail(`the next refresh did not use the standby: ${step.summary}`);
    const after = listing(path.join(varDir, next));
    if (diff(after, before).length) return fail(`the standby refresh's data differs: ${diff(after, before).join('; ')}`);
    return { kind, consistent: true, why: '', ended };
  } catch (err) {
    return fail(`error: ${(err as Error).stack}`);
  } finally {
    await killDaemon(daemon);
    await removeCgroup(cg);
    removeRoot(base);
  }
}

xfsTest('standby crashes: SIGKILL during the background job, after the checking pass, after the rename into place, at random in a refresh using a standby', async () => {
  const n = process.env.SNAPPROC_TRIALS ? Number(process.env.SNAPPROC_TRIALS) : trials(4, 60);
  const results: Outcome[] = [];
  for (let i = 0; i < n; i++) results.push(await trial(KINDS[i % KINDS.length]));
  const bad = results.filter((r) => !r.consistent);
  const byKind = KINDS.map((k) => {
    const mine = results.filter((r) => r.kind === k);
    return `${k} ${mine.filter((r) => r.consistent).length}/${mine.length}`;
  }).join(', ');
  const endings = new Map<string, number>();
  for (const r of results) endings.set(r.ended, (endings.get(r.ended) ?? 0) + 1);
  process.stdout.write(`  [figure] standby crash matrix x${n}: ${n - bad.length} consistent, ${bad.length} not (${byKind}); ended: ${[...endings].map(([k, v]) => `${k || 'failed'} ${v}`).join(', ')}\n`);
  for (const b of bad.slice(0, 4)) process.stdout.write(`    ${b.kind}: ${b.why}\n`);
  assert.is(bad.length, 0, 'every run ends consistent');
});

test.run();
