// Reliability: hostile snaps (issue 10, items 9-11 and their reliability
// part). The corpus of test/hostile-corpus.ts (truncated and non-squashfs
// .snap files, device nodes, FIFOs, sockets, setuid files, escaping
// symlinks, huge files, deep YAML, alias bombs, invalid UTF-8, NUL) through
// the CLI against a running supervisor: `validate` and `install` refuse each
// in one line, quickly, the supervisor keeps answering, nothing is written
// under R; the snaps that are accepted install without setuid bits. Then
// property-based fuzzing of the validator with fast-check: no crash, no
// hang, every problem a one-line message with a field path, and nothing
// written under R by an install of what it refuses. Figures are printed;
// trials(bounded, full) from helpers.ts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync, spawn, ChildProcess } from 'node:child_process';
import * as fc from 'fast-check';
import { stringify } from 'yaml';
import { validateSnapYaml } from '../src/snap/snap-yaml';
import { RevisionStore } from '../src/snap/revision-store';
import { request } from '../src/supervisor/client';
import { corpus, GOOD_YAML, haveSquashfsTools, snapTree, squash } from './hostile-corpus';
import { CLI, cleanupParent, gate, gateOn, isRoot, makeCgroup, reliabilityFull, REPO, tmpdir, trials, waitFor } from './helpers';
import { readSnapYamlFrom } from '../src/snap/snap-from-path';
import { SnapYamlError } from '../src/snap/snap-yaml';

/** What `snapproc validate` does, without a process: its exit status and stderr line. */
function validateInProcess(source: string): { code: number; stdout: string; stderr: string; ms: number } {
  const t0 = performance.now();
  try {
    const { text, file } = readSnapYamlFrom(source);
    const r = validateSnapYaml(text, file);
    if (!r.ok) throw new SnapYamlError(r.problems, file);
    return { code: 0, stdout: '', stderr: '', ms: performance.now() - t0 };
  } catch (err) {
    return { code: 1, stdout: '', stderr: `error: ${(err as Error).message}\n`, ms: performance.now() - t0 };
  }
}

const test = suite('rel-hostile-snaps');
const rootTest = gate(test);
const squashTest = gateOn(test, haveSquashfsTools() ? null : 'mksquashfs/unsquashfs missing (apt-get install squashfs-tools)');

let daemon: ChildProcess | null = null;
let root = '';

function figure(line: string): void {
  process.stdout.write(`  [figure] ${line}\n`);
}

/** Every path under `dir` with its size and mtime (what "nothing written" is compared by); the supervisor's own log is left out. */
function snapshot(dir: string): string[] {
  const out: string[] = [];
  const walk = (d: string, rel: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) {
      const r = path.join(rel, e.name);
      if (r === path.join('log', 'snapproc.log')) continue;
      const st = fs.lstatSync(path.join(d, e.name));
      out.push(`${r} ${st.isDirectory() ? 'dir' : `${st.size} ${st.mtimeMs}`}`);
      if (e.isDirectory()) walk(path.join(d, e.name), r);
    }
  };
  if (fs.existsSync(dir)) walk(dir, '');
  return out.sort();
}

function cli(args: string[], timeoutMs = 30_000): Promise<{ code: number | null; stdout: string; stderr: string; ms: number }> {
  const t0 = performance.now();
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, '--root', root, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SNAPPROC_NO_AUTOSTART: '1' } });
    let stdout = '', stderr = '';
    child.stdout.on('data', (d) => (stdout += d));
    child.stderr.on('data', (d) => (stderr += d));
    const timer = setTimeout(() => child.kill('SIGKILL'), timeoutMs);
    child.on('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr, ms: performance.now() - t0 });
    });
  });
}

test.before(async () => {
  if (!isRoot) return;
  root = path.join(tmpdir('snapproc-rel-snaps-'), 'r');
  const child = spawn(process.execPath, [path.join(REPO, 'test', 'fixtures', 'control-daemon.js'), root, makeCgroup('rel-snaps'), '{}'], { stdio: ['ignore', 'pipe', 'inherit'] });
  daemon = child;
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  await waitFor('supervisor ready', () => /ready \d+/.test(out), 20_000);
});
test.after(async () => {
  if (daemon && daemon.exitCode === null) {
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon!.once('exit', r));
  }
  cleanupParent();
});

rootTest('the hostile corpus through validate and install: one line each, quick, the supervisor answering, nothing written under R', async () => {
  const rounds = trials(1, 3);
  let refusals = 0, accepted = 0, slowest = 0, slowestName = '', pingsMissed = 0;
  const entries = corpus();
  for (let round = 0; round < rounds; round++) {
    for (const c of entries) {
      const source = c.make();
      // validate through the CLI in the full run; the bounded run checks validate's reader in snap-from-path.test.ts
      const v = reliabilityFull || round > 0 ? await cli(['validate', source]) : validateInProcess(source);
      const before = snapshot(root);
      // The supervisor must keep answering while it handles the install.
      let pinging = true;
      const pinger = (async () => {
        while (pinging) {
          const ok = await Promise.race([request(root, 'ping').then(() => true, () => false), new Promise<boolean>((r) => setTimeout(() => r(false), 2000))]);
          if (!ok) pingsMissed++;
          await new Promise((r) => setTimeout(r, 100));
        }
      })();
      const inst = await cli(['install', source]);
      pinging = false;
      await pinger;
      for (const [what, ms] of [['validate', v.ms], ['install', inst.ms]] as const) {
        if (ms > slowest) {
          slowest = ms;
          slowestName = `${what} of ${c.name}`;
        }
      }
      if (c.refused) {
        for (const [what, r] of [['validate', v], ['install', inst]] as const) {
          assert.is(r.code, 1, `${what} ${c.name}: exit ${r.code} ${r.stderr}`);
          const lines = r.stderr.split('\n').filter(Boolean);
          assert.is(lines.length, 1, `${what} ${c.name}: ${r.stderr}`);
          assert.match(lines[0], /^error: /);
          assert.match(lines[0], c.refused, `${what} ${c.name}`);
          refusals++;
        }
        assert.equal(snapshot(root), before, `install of ${c.name} wrote under R`);
      } else {
        assert.is(v.code, 0, `validate ${c.name}: ${v.stderr}`);
        assert.is(inst.code, 0, `install ${c.name}: ${inst.stderr}`);
        const rev = fs.readlinkSync(path.join(root, 'snap', 'hostile', 'current'));
        c.check?.(path.join(root, 'snap', 'hostile', rev));
        const rm = await cli(['remove', 'hostile', '--purge']);
        assert.is(rm.code, 0, rm.stderr);
        accepted++;
      }
    }
  }
  figure(`hostile corpus: ${entries.length} snaps x${rounds}: ${refusals} refusals (validate${reliabilityFull ? ' (CLI)' : ' (in process)'} and install (CLI)), each one line; ${accepted} accepted installs checked; slowest ${slowest.toFixed(0)} ms (${slowestName}); supervisor pings missed during installs: ${pingsMissed}`);
  assert.is(pingsMissed, 0);
});

squashTest('a slow unsquashfs (a large .snap, a loaded disk) does not stall the supervisor: every ping answered within 1 s while it learns the name and unpacks', async () => {
  // unsquashfs that takes 1.5 s each time it runs, as on a loaded machine:
  // the supervisor must wait for it without blocking its event loop.
  const base = tmpdir('snapproc-rel-slow-');
  const bin = path.join(base, 'bin');
  fs.mkdirSync(bin);
  const real = execFileSync('sh', ['-c', 'command -v unsquashfs'], { encoding: 'utf8' }).trim();
  fs.writeFileSync(path.join(bin, 'unsquashfs'), `#!/bin/sh\nsleep 1.5\nexec ${real} "$@"\n`, { mode: 0o755 });
  const slowRoot = path.join(base, 'r');
  const env = { ...process.env, PATH: `${bin}:${process.env.PATH ?? ''}`, SNAPPROC_NO_AUTOSTART: '1' };
  const sup = spawn(process.execPath, [path.join(REPO, 'test', 'fixtures', 'control-daemon.js'), slowRoot, makeCgroup('rel-snaps-slow'), '{}'], { stdio: ['ignore', 'pipe', 'inherit'], env });
  try {
    let out = '';
    sup.stdout!.on('data', (d) => (out += d));
    await waitFor('supervisor ready', () => /ready \d+/.test(out), 20_000);
    const snap = squash(snapTree());
    const install = new Promise<{ code: number | null; stderr: string; ms: number }>((resolve) => {
      const t0 = performance.now();
      const c = spawn(process.execPath, [CLI, '--root', slowRoot, 'install', snap], { stdio: ['ignore', 'ignore', 'pipe'], env });
      let stderr = '';
      c.stderr.on('data', (d) => (stderr += d));
      c.on('close', (code) => resolve({ code, stderr, ms: performance.now() - t0 }));
    });
    let done = false, pings = 0, unanswered = 0, slowest = 0;
    const pinger = (async () => {
      while (!done) {
        const t0 = performance.now();
        const ok = await Promise.race([request(slowRoot, 'ping').then(() => true, () => false), new Promise<boolean>((r) => setTimeout(() => r(false), 1000))]);
        pings++;
        if (!ok) unanswered++;
        slowest = Math.max(slowest, performance.now() - t0);
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    const r = await install;
    done = true;
    await pinger;
    figure(`install of a .snap with unsquashfs slowed to 1.5 s a run: took ${r.ms.toFixed(0)} ms; ${pings} pings meanwhile, ${unanswered} unanswered within 1 s, slowest ${slowest.toFixed(1)} ms`);
    assert.is(r.code, 0, r.stderr);
    assert.ok(r.ms > 3000, 'unsquashfs was slowed (ran at least twice)');
    assert.is(unanswered, 0);
  } finally {
    sup.kill('SIGTERM');
    if (sup.exitCode === null) await new Promise((r) => sup.once('exit', r));
  }
});

// ---------------------------------------------------------------- fuzzing the validator

/** Checks one validator result: never thrown, and every problem a one-line message with a path. */
function wellFormed(input: string | Uint8Array): { ok: boolean; ms: number } {
  const t0 = performance.now();
  const r = validateSnapYaml(input);
  const ms = performance.now() - t0;
  if (!r.ok) {
    if (r.problems.length === 0) throw new Error('rejected without a problem');
    for (const p of r.problems) {
      if (typeof p.path !== 'string' || typeof p.message !== 'string' || p.message === '') throw new Error(`malformed problem ${JSON.stringify(p)}`);
      if (p.message.includes('\n')) throw new Error(`problem on several lines: ${JSON.stringify(p.message)}`);
    }
  }
  return { ok: r.ok, ms };
}

const yamlish = fc.stringMatching(/^[ a-z0-9:\-[\]{}&*!|>'"#%@`,.?\n\t]{0,400}$/);
const fieldValue = fc.oneof(
  fc.jsonValue({ maxDepth: 4 }),
  fc.string({ maxLength: 60 }),
  fc.constantFrom('simple', 'forking', 'oneshot', 'notify', 'dbus', 'sigterm', 'sigusr2-all', 'endure', 'restart', 'ignore-running', '30s', '-1s', '0', '1m30s', 'on-failure', 'never', 'no', 'yes', '127.0.0.1:8080', '$SNAP_DATA/sock', '0660', '0o777', 'bin/run', '../../etc/passwd', '$SNAP/../x'),
);
const fields = ['name', 'version', 'summary', 'confinement', 'environment', 'apps', 'hooks', 'apps.svc', 'apps.svc.command', 'apps.svc.daemon', 'apps.svc.refresh-mode', 'apps.svc.stop-mode',
  'apps.svc.stop-timeout', 'apps.svc.restart-condition', 'apps.svc.restart-delay', 'apps.svc.before', 'apps.svc.after', 'apps.svc.sockets', 'apps.svc.sockets.web', 'apps.svc.sockets.web.listen-stream',
  'apps.svc.sockets.web.socket-mode', 'apps.svc.environment', 'apps.svc.stop-command', 'apps.svc.install-mode', 'hooks.install', 'apps.tool', 'apps.tool.refresh-mode'];

function setField(doc: Record<string, unknown>, dotted: string, value: unknown): void {
  const keys = dotted.split('.');
  let cur = doc as Record<string, unknown>;
  for (const k of keys.slice(0, -1)) {
    if (typeof cur[k] !== 'object' || cur[k] === null || Array.isArray(cur[k])) cur[k] = {};
    cur = cur[k] as Record<string, unknown>;
  }
  cur[keys[keys.length - 1]] = value;
}

function baseDoc(): Record<string, unknown> {
  return {
    name: 'fuzzed', version: '1.0',
    apps: { svc: { command: 'bin/run', daemon: 'simple', plugs: ['network-bind'], sockets: { web: { 'listen-stream': '$SNAP_DATA/web.sock' } } }, tool: { command: 'bin/run' } },
  };
}

test('fuzz: arbitrary bytes and YAML-like text never crash or hang the validator; problems are one line with a path', () => {
  const runs = trials(400, 10_000);
  let slowest = 0, rejected = 0;
  const check = (input: string | Uint8Array) => {
    const r = wellFormed(input);
    slowest = Math.max(slowest, r.ms);
    if (!r.ok) rejected++;
    return r.ms < 2000;
  };
  fc.assert(fc.property(fc.uint8Array({ maxLength: 600 }), (b) => check(b)), { numRuns: runs, seed: 1010 });
  fc.assert(fc.property(yamlish, (t) => check(t)), { numRuns: runs, seed: 1011 });
  fc.assert(fc.property(fc.string({ unit: 'binary', maxLength: 300 }), (t) => check(`name: fuzzed\nversion: '1'\n${t}`)), { numRuns: runs, seed: 1012 });
  figure(`fuzz (bytes, YAML-like text, a valid head with any tail): ${3 * runs} inputs, 0 crashes, ${rejected} rejected, slowest ${slowest.toFixed(1)} ms`);
});

test('fuzz: one field of a valid snap.yaml set to anything: valid, or problems that name that field', () => {
  const runs = trials(400, 10_000);
  let rejected = 0, slowest = 0;
  fc.assert(
    fc.property(fc.constantFrom(...fields), fieldValue, (field, value) => {
      const doc = baseDoc();
      setField(doc, field, value);
      const text = stringify(doc, { version: '1.1' });
      const r = wellFormed(text);
      slowest = Math.max(slowest, r.ms);
      if (r.ok) return true;
      rejected++;
      const res = validateSnapYaml(text);
      if (res.ok) return false;
      const parts = field.split('.');
      // The problem is reported at the field, its parent app/socket, or what depends on it (before/after, sockets).
      const near = res.problems.some((p) => p.path === '' ? parts.length === 1 : p.path.startsWith(parts.slice(0, Math.min(2, parts.length)).join('.')) || field.startsWith(p.path) || p.path.startsWith('apps.'));
      if (!near) throw new Error(`${field} = ${JSON.stringify(value)}: problems ${JSON.stringify(res.problems)} do not name the field`);
      return true;
    }),
    { numRuns: runs, seed: 1013 },
  );
  figure(`fuzz (one field of a valid snap set to anything): ${runs} documents, 0 crashes, ${rejected} rejected with a field path, slowest ${slowest.toFixed(1)} ms`);
});

test('fuzz: what the validator refuses, an install refuses too, writing nothing under R', async () => {
  const runs = trials(40, 500);
  let refused = 0, installed = 0;
  const rootDir = path.join(tmpdir('snapproc-fuzz-root-'), 'r');
  await fc.assert(
    fc.asyncProperty(fc.constantFrom(...fields), fieldValue, async (field, value) => {
      const doc = baseDoc();
      setField(doc, field, value);
      const text = stringify(doc, { version: '1.1' });
      const dir = snapTree(text);
      const store = new RevisionStore(rootDir);
      const before = snapshot(rootDir);
      const valid = validateSnapYaml(text).ok;
      try {
        const r = await store.addRevision(dir);
        installed++;
        if (!valid) throw new Error(`install accepted what validate refused: ${field} = ${JSON.stringify(value)}`);
        store.removeSnap(r.instance, { purge: true });
      } catch (err) {
        if ((err as Error).message.startsWith('install accepted')) throw err;
        refused++;
        if (!(err as Error).message || (err as Error).message.includes('\n') && !/problems/.test((err as Error).message)) throw err;
        const after = snapshot(rootDir);
        if (JSON.stringify(after) !== JSON.stringify(before)) throw new Error(`a refused install wrote under R: ${after.filter((x) => !before.includes(x)).join(', ')}`);
      } finally {
        fs.rmSync(dir, { recursive: true, force: true });
      }
    }),
    { numRuns: runs, seed: 1014 },
  );
  figure(`fuzz (installs of fuzzed snaps): ${runs} installs, ${refused} refused with nothing written under R, ${installed} installed and removed`);
  void GOOD_YAML;
});

test.run();
