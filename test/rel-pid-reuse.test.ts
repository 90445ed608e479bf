// Reliability: PID reuse. In a private PID namespace (unshare --pid), the
// PID of a recorded main process that died is handed to an unrelated
// process (through /proc/sys/kernel/ns_last_pid) between record and signal,
// outside the app's cgroup and inside it; `signal`, a plain `stop` and the
// refresh's hand-over signal must never hit it (pidfds, start times and
// cgroup membership; test/rel-pid-reuse-inner.ts runs the trials).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { gate, makeCgroup, trials } from './helpers';
import { removeCgroup } from './rel-support';

const test = suite('rel-pid-reuse');
const rootTest = gate(test);

rootTest('PID reuse in a private PID namespace: 0 stray signals for signal, stop and the refresh', async () => {
  const n = trials(90, 1000);
  const cg = makeCgroup('pid-reuse', 'snap.reuse.svc.service');
  try {
    const inner = path.join(__dirname, 'rel-pid-reuse-inner.js');
    const child = spawn('unshare', ['--pid', '--fork', '--mount-proc', process.execPath, inner, cg, String(n)], { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    let err = '';
    child.stdout.on('data', (d) => (out += d));
    child.stderr.on('data', (d) => (err += d));
    const code = await new Promise<number | null>((r) => child.once('close', r));
    assert.is(code, 0, err);
    const r = JSON.parse(out.trim()) as { trials: number; reused: number; stray: number; inside: number; byOp: Record<string, number>; strayByOp: Record<string, number> };
    process.stdout.write(`  [figure] PID reuse x${r.trials}: PID reused in ${r.reused} (${r.inside} inside the cgroup), stray signals ${r.stray} (signal ${r.strayByOp.signal}/${r.byOp.signal}, stop ${r.strayByOp.stop}/${r.byOp.stop}, refresh ${r.strayByOp.refresh}/${r.byOp.refresh})\n`);
    assert.ok(r.reused >= r.trials * 0.9, `the PID was reused in ${r.reused} of ${r.trials} trials`);
    assert.is(r.stray, 0, 'no unrelated process was signalled');
  } finally {
    await removeCgroup(path.dirname(cg));
  }
});

test.run();
