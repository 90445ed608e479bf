// rel-pid-reuse-inner.ts: the trials of rel-pid-reuse.test.ts, run as PID 1 of
// a private PID namespace (unshare --pid --fork --mount-proc), where
// /proc/sys/kernel/ns_last_pid decides the next PID: a recorded main process
// dies, an unrelated process is made to get its PID (outside the cgroup, or
// inside it), and then the operations that act on a recorded main process
// run: `signal` (signalApp with the record), a plain `stop` (stopCgroup with
// the record), and the refresh's hand-over signal (signalVerified with the
// record's start time, as handover.ts sends it). Prints one JSON line.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn, type ChildProcess } from 'node:child_process';
import { signalApp } from '../src/process/signal-app';
import { stopCgroup } from '../src/process/stop';
import { signalVerified } from '../src/kernel/signal-guard';
import { startTimeOf } from '../src/kernel/procfs';

const [cg, countText] = process.argv.slice(2);
const count = Number(countText);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function inCgroup(pid: number): boolean {
  return fs.readFileSync(path.join(cg, 'cgroup.procs'), 'utf8').split('\n').includes(String(pid));
}

async function started(child: ChildProcess, inside: boolean): Promise<number> {
  const pid = child.pid!;
  for (let i = 0; i < 500; i++) {
    // exec'd into sleep (and, inside, moved into the cgroup first)
    let comm = '';
    try {
      comm = fs.readFileSync(`/proc/${pid}/comm`, 'utf8').trim();
    } catch {
      // not yet
    }
    if (comm === 'sleep' && (!inside || inCgroup(pid))) return pid;
    await sleep(2);
  }
  throw new Error(`process ${pid} did not start`);
}

function spawnSleeper(inside: boolean): ChildProcess {
  const script = inside ? `echo $$ > "${cg}/cgroup.procs" && exec sleep 1000` : 'exec sleep 1000';
  return spawn('/bin/sh', ['-c', script], { stdio: 'ignore' });
}

function alive(pid: number): boolean {
  try {
    return !/\) Z /.test(fs.readFileSync(`/proc/${pid}/stat`, 'utf8'));
  } catch {
    return false;
  }
}

async function main(): Promise<void> {
  const ops = ['signal', 'stop', 'refresh'] as const;
  const result = { trials: 0, reused: 0, stray: 0, byOp: { signal: 0, stop: 0, refresh: 0 }, strayByOp: { signal: 0, stop: 0, refresh: 0 }, inside: 0 };
  for (let i = 0; i < count; i++) {
    const op = ops[i % ops.length];
    const inside = i % 2 === 1; // the unrelated process in the same cgroup, or outside it
    const victim = spawnSleeper(true);
    const pid = await started(victim, true);
    const record = { pid, startTime: startTimeOf(pid)! };
    const gone = new Promise((r) => victim.once('exit', r));
    victim.kill('SIGKILL');
    await gone;
    fs.writeFileSync('/proc/sys/kernel/ns_last_pid', String(pid - 1));
    const other = spawnSleeper(inside);
    const otherPid = await started(other, inside);
    result.trials += 1;
    if (otherPid !== pid) {
      other.kill('SIGKILL');
      continue; // the PID was not reused this time
    }
    result.reused += 1;
    if (inside) result.inside += 1;
    result.byOp[op] += 1;
    try {
      if (op === 'signal') await signalApp(cg, 'SIGTERM', { main: record });
      else if (op === 'stop') await stopCgroup(cg, { mode: 'sigterm', main: record, timeoutMs: 200 });
      else signalVerified(record.pid, 12 /* SIGUSR2 */, cg, record.startTime);
    } catch {
      // refused (not a member): no signal
    }
    await sleep(5);
    if (!alive(otherPid)) {
      result.stray += 1;
      result.strayByOp[op] += 1;
    }
    const end = new Promise((r) => other.once('exit', r));
    other.kill('SIGKILL');
    await end;
  }
  process.stdout.write(JSON.stringify(result) + '\n');
}

main().catch((err) => {
  process.stderr.write(String(err?.stack ?? err) + '\n');
  process.exit(1);
});
