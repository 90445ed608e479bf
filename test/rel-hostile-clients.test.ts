// Reliability: hostile clients (issue 10, item 12 and its reliability part).
// A supervisor in a process of its own; unprivileged clients (uid nobody)
// send a 100 MB line, hold slow and idle connections, flood connections,
// pipeline requests they never read, and send garbage, while a root client
// pings: every ping must be answered within 1 s, the abusers must be cut off,
// and the supervisor's RSS must stay bounded. Broken pipes: no command dies
// with an EPIPE stack trace (`snapproc changes | head -3`). Each part prints
// its figures; trials(bounded, full) from helpers.ts.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { request } from '../src/supervisor/client';
import { socketPath, REQUEST_TOO_LARGE } from '../src/supervisor/control';
import { CLI, cleanupParent, gate, makeCgroup, REPO, tmpdir, trials, waitFor } from './helpers';

const test = suite('rel-hostile-clients');
const rootTest = gate(test);

const LIMITS = { lineTimeoutMs: 1500, idleTimeoutMs: 2000, maxConnectionsPerUid: 32, maxUnprivilegedConnections: 48, maxUnreadBytes: 1 << 20 };
let daemon: ChildProcess | null = null;
let daemonPid = 0;
let base = '';
let root = '';
let clientScript = '';

function rssMiB(pid: number): number {
  const m = /VmRSS:\s+(\d+) kB/.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) / 1024 : NaN;
}

async function startDaemon(): Promise<void> {
  base = tmpdir('snapproc-rel-clients-');
  fs.chmodSync(base, 0o755); // the unprivileged clients must reach R/run/snapproc.socket
  root = path.join(base, 'r');
  clientScript = path.join(base, 'hostile-client.js');
  fs.copyFileSync(path.join(REPO, 'test', 'fixtures', 'hostile-client.js'), clientScript);
  fs.chmodSync(clientScript, 0o755);
  const child = spawn(process.execPath, [path.join(REPO, 'test', 'fixtures', 'control-daemon.js'), root, makeCgroup('rel-clients'), JSON.stringify(LIMITS)], { stdio: ['ignore', 'pipe', 'inherit'] });
  daemon = child;
  let out = '';
  child.stdout!.on('data', (d) => (out += d));
  daemonPid = Number((await waitFor('control daemon ready', () => /ready (\d+)/.exec(out)?.[1], 20_000)));
  fs.chmodSync(path.join(root), 0o755);
}

/** Root's pings, one after another, each given 1 s, for as long as `until` is pending. */
async function pingWhile<T>(until: Promise<T>): Promise<{ result: T; pings: number; unanswered: number; maxMs: number }> {
  let done = false;
  let pings = 0, unanswered = 0, maxMs = 0;
  const loop = (async () => {
    while (!done) {
      const t0 = performance.now();
      const ok = await Promise.race([request(root, 'ping').then(() => true, () => false), new Promise<boolean>((r) => setTimeout(() => r(false), 1000))]);
      const ms = performance.now() - t0;
      pings++;
      if (!ok) unanswered++;
      maxMs = Math.max(maxMs, ms);
      await new Promise((r) => setTimeout(r, 50));
    }
  })();
  const result = await until;
  done = true;
  await loop;
  return { result, pings, unanswered, maxMs };
}

/** Runs the hostile client as uid nobody; resolves with its JSON report. */
function abuse(mode: string, n: number, env: NodeJS.ProcessEnv = {}): Promise<Record<string, unknown>> {
  return new Promise((resolve, reject) => {
    const child = spawn('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, clientScript, socketPath(root), mode, String(n)], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, ...env } });
    let out = '', err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    child.on('close', () => {
      try {
        resolve(JSON.parse(out.trim().split('\n').pop()!));
      } catch {
        reject(new Error(`hostile client ${mode} said: ${out} ${err}`));
      }
    });
  });
}

function figure(line: string): void {
  process.stdout.write(`  [figure] ${line}\n`);
}

test.before(async () => {
  if (process.getuid?.() === 0) await startDaemon();
});
test.after(async () => {
  if (daemon && daemon.exitCode === null) {
    daemon.kill('SIGTERM');
    await new Promise((r) => daemon!.once('exit', r));
  }
  cleanupParent();
});

rootTest('a 100 MB request line without a newline: an error, the connection closed, root answered, RSS bounded', async () => {
  const n = trials(2, 10);
  const rssBefore = rssMiB(daemonPid);
  let worstPing = 0, unanswered = 0, pings = 0, maxGrowth = 0;
  for (let i = 0; i < n; i++) {
    const r = await pingWhile(abuse('bigline', 100));
    pings += r.pings;
    unanswered += r.unanswered;
    worstPing = Math.max(worstPing, r.maxMs);
    const answer = String(r.result.answer);
    assert.match(answer, new RegExp(`"code":"${REQUEST_TOO_LARGE}"`));
    assert.match(answer, /request line longer than 1048576 bytes/);
    assert.ok(Number(r.result.sentMiB) < 100, `the server read all ${r.result.sentMiB} MiB before closing`);
    maxGrowth = Math.max(maxGrowth, rssMiB(daemonPid) - rssBefore);
  }
  const rssAfter = rssMiB(daemonPid);
  figure(`100 MB line x${n}: ${pings} root pings, ${unanswered} unanswered within 1 s, slowest ${worstPing.toFixed(1)} ms; supervisor RSS ${rssBefore.toFixed(1)} -> ${rssAfter.toFixed(1)} MiB (peak growth seen ${maxGrowth.toFixed(1)} MiB)`);
  assert.is(unanswered, 0);
  assert.ok(rssAfter - rssBefore < 40, `RSS grew by ${(rssAfter - rssBefore).toFixed(1)} MiB`);
});

rootTest('slow and idle connections are closed by the supervisor; root answered meanwhile', async () => {
  const n = trials(1, 5);
  for (let i = 0; i < n; i++) {
    const r = await pingWhile(Promise.all([abuse('slow', 12, { HOLD_MS: '4000' }), abuse('idle', 12, { HOLD_MS: '4000' })]));
    const [slow, idle] = r.result;
    figure(`slow x12: ${slow.closedByServer} closed by the supervisor (${JSON.stringify(slow.answers)}); idle x12: ${idle.closedByServer} closed; ${r.pings} pings, ${r.unanswered} unanswered, slowest ${r.maxMs.toFixed(1)} ms`);
    assert.is(slow.closedByServer, 12);
    assert.match(JSON.stringify(slow.answers), /request line not completed within 1500 ms/);
    assert.is(idle.closedByServer, 12);
    assert.is(r.unanswered, 0);
  }
});

rootTest('a flood of connections from one user is capped; root still gets in', async () => {
  const r = await pingWhile(abuse('flood', 80, { HOLD_MS: '1500' }));
  figure(`flood of 80 connections from uid nobody: ${r.result.refused} refused (limit ${LIMITS.maxConnectionsPerUid} per uid); ${r.pings} root pings, ${r.unanswered} unanswered, slowest ${r.maxMs.toFixed(1)} ms`);
  assert.is(r.result.refused, 80 - LIMITS.maxConnectionsPerUid);
  assert.is(r.unanswered, 0);
});

rootTest('pipelined requests never read: handling stops at the first answer the client leaves unread, the connection is then closed as idle, RSS bounded', async () => {
  const rssBefore = rssMiB(daemonPid);
  const r = await pingWhile(abuse('pipeline', 200_000, { HOLD_MS: '60000' }));
  const rssAfter = rssMiB(daemonPid);
  figure(`200000 pipelined requests, answers never read: closed by the supervisor ${r.result.closedByServer} after ${r.result.closedAfterMs} ms; ${r.pings} pings, ${r.unanswered} unanswered, slowest ${r.maxMs.toFixed(1)} ms; RSS ${rssBefore.toFixed(1)} -> ${rssAfter.toFixed(1)} MiB`);
  assert.is(r.result.closedByServer, true);
  assert.is(r.unanswered, 0);
  assert.ok(rssAfter - rssBefore < 20, `RSS grew by ${(rssAfter - rssBefore).toFixed(1)} MiB`);
});

rootTest('garbage lines get one error each; a state-changing request from a non-root user is refused', async () => {
  const g = await abuse('garbage', 2000);
  figure(`2000 lines of random bytes: ${g.answered} answers, codes ${JSON.stringify(g.codes)}`);
  assert.ok(Number(g.answered) >= 1900);
  assert.equal(g.codes, ['ERR_SNAPPROC_BAD_REQUEST']);
  const m = await abuse('mutate', 1);
  assert.match(String(m.answer), /"code":"EPERM".*needs root \(caller uid \d+\)/);
  assert.ok(await request(root, 'ping'));
});

/** Runs the CLI with stdout a pipe whose reading end is already closed: every write is EPIPE. */
function withClosedStdout(args: string[]): Promise<{ code: number | null; signal: string | null; stderr: string }> {
  return new Promise((resolve) => {
    const child = spawn(process.execPath, [CLI, '--root', root, ...args], { stdio: ['ignore', 'pipe', 'pipe'], env: { ...process.env, SNAPPROC_NO_AUTOSTART: '1' } });
    child.stdout.destroy();
    let stderr = '';
    child.stderr.on('data', (d) => (stderr += d));
    child.on('close', (code, signal) => resolve({ code, signal, stderr }));
  });
}

rootTest('broken pipes: no command dies with an EPIPE stack trace', async () => {
  const example = path.join(REPO, 'examples', 'hello');
  const commands = [['list'], ['list', '--json'], ['ps'], ['ps', '--json'], ['changes'], ['changes', '--json'], ['services'], ['validate', example], ['--help']];
  const n = trials(1, 10);
  let runs = 0;
  for (let i = 0; i < n; i++) {
    for (const args of commands) {
      const r = await withClosedStdout(args);
      runs++;
      assert.not.match(r.stderr, /EPIPE|\n\s+at /, `${args.join(' ')}: ${r.stderr}`);
      assert.is(r.signal, null, args.join(' '));
    }
  }
  // The pipeline of the report, literally.
  const sh = spawnSync('bash', ['-c', `node "${CLI}" --root "${root}" changes | head -3 >/dev/null; node "${CLI}" --root "${root}" validate "${example}" | head -1 >/dev/null`], { encoding: 'utf8' });
  assert.not.match(sh.stderr, /EPIPE|\n\s+at /);
  figure(`broken pipes: ${runs} runs of ${commands.length} commands with a closed stdout, 0 stack traces`);
});

test.run();
