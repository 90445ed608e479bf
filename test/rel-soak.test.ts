// Reliability: the soak. A small snap is refreshed and restarted over and
// over by one `snapproc daemon`; what the supervisor holds is counted
// before and after: open fds, cgroups under its parent, mounts under its
// root, zombie children, and its RSS (which must stay flat).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { request } from '../src/supervisor/client';
import { gate, makeCgroup, tmpdir, trials, uniqueSnapName } from './helpers';
import { buildSnap, killDaemon, removeCgroup, removeRoot, startDaemon, type Daemon } from './rel-support';

const test = suite('rel-soak');
const rootTest = gate(test);

interface Count { fds: number; cgroups: number; mounts: number; zombies: number; rssMiB: number }

function count(pid: number, root: string, cg: string): Count {
  const fds = fs.readdirSync(`/proc/${pid}/fd`).length;
  let cgroups = 0;
  const walk = (d: string) => {
    for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) (cgroups += 1), walk(path.join(d, e.name));
  };
  walk(cg);
  const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter((l) => (l.split(' ')[4] ?? '').startsWith(root + '/')).length;
  let zombies = 0;
  for (const tid of fs.readdirSync(`/proc/${pid}/task`)) {
    for (const c of fs.readFileSync(`/proc/${pid}/task/${tid}/children`, 'utf8').split(' ').filter(Boolean)) {
      try {
        if (/\) Z /.test(fs.readFileSync(`/proc/${c}/stat`, 'utf8'))) zombies += 1;
      } catch {
        // reaped meanwhile
      }
    }
  }
  const rss = Number(/^VmRSS:\s+(\d+)/m.exec(fs.readFileSync(`/proc/${pid}/status`, 'utf8'))?.[1] ?? 0) / 1024;
  return { fds, cgroups, mounts, zombies, rssMiB: rss };
}

rootTest('soak: refreshes and restarts leak no fds, cgroups, mounts or zombies; RSS stays flat', async () => {
  const n = trials(24, 1000);
  const root = tmpdir('rel-soak-root-');
  const cg = makeCgroup('soak');
  const name = uniqueSnapName('soak');
  let daemon: Daemon | null = null;
  try {
    daemon = await startDaemon(root, cg, path.join(tmpdir('rel-soak-log-'), 'daemon.log'));
    // It re-executed itself with small V8 semi-spaces and without TurboFan (src/supervisor/node-flags.ts), keeping its PID.
    assert.is((await request(root, 'ping')).pid, daemon.child.pid, 'the same PID after the re-exec');
    const daemonArgv = fs.readFileSync(`/proc/${daemon.child.pid}/cmdline`, 'utf8').split('\0');
    for (const flag of ['--max-semi-space-size=1', '--no-opt']) assert.ok(daemonArgv.includes(flag), `runs with ${flag}`);
    const apps = '  svc:\n    command: bin/run\n    daemon: simple\n    stop-timeout: 1s\n  en:\n    command: bin/run\n    daemon: simple\n    refresh-mode: endure\n';
    const src = buildSnap(name, apps, { run: '#!/bin/sh\nsleep 1000 &\nexec sleep 1000\n' });
    await request(root, 'install', { path: src });
    // Warm-up: the first refreshes load modules and fill caches.
    for (let i = 0; i < 4; i++) await request(root, i % 2 ? 'restart' : 'refresh', i % 2 ? { snap: name } : { snap: name, from: src });
    const before = count(daemon.child.pid!, root, cg);
    const t0 = performance.now();
    for (let i = 0; i < n; i++) {
      if (i % 2 === 0) await request(root, 'refresh', { snap: name, from: src });
      else await request(root, 'restart', { snap: name, app: 'svc' });
    }
    const took = performance.now() - t0;
    await new Promise((r) => setTimeout(r, 300)); // let the last exits be reaped
    const after = count(daemon.child.pid!, root, cg);
    process.stdout.write(`  [figure] soak x${n} (${n / 2} refreshes, ${n / 2} restarts, ${(took / n).toFixed(0)} ms each): fds ${before.fds} -> ${after.fds}, cgroups ${before.cgroups} -> ${after.cgroups}, mounts ${before.mounts} -> ${after.mounts} (for retained revisions only), zombies ${before.zombies} -> ${after.zombies}, RSS ${before.rssMiB.toFixed(1)} -> ${after.rssMiB.toFixed(1)} MiB\n`);
    assert.ok(after.fds <= before.fds + 2, `fds ${before.fds} -> ${after.fds}`);
    assert.ok(after.cgroups <= before.cgroups, `cgroups ${before.cgroups} -> ${after.cgroups}`);
    // Read-only data mounts belong to retained revisions only (one per revision at most).
    const listed = ((await request(root, 'list')) as Array<{ name: string; revisions: Array<{ revision: string }> }>).find((x) => x.name === name)!.revisions.map((r) => r.revision);
    const mounted = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').map((l) => l.split(' ')[4] ?? '').filter((m) => m.startsWith(root + '/'));
    for (const m of mounted) assert.ok(listed.includes(path.basename(m)) && path.dirname(m) === path.join(root, 'var', 'snap', name), `mount ${m} belongs to a retained revision (${listed.join(' ')})`);
    assert.ok(after.mounts <= listed.length, `mounts ${before.mounts} -> ${after.mounts} for ${listed.length} revisions`);
    assert.is(after.zombies, 0, 'no zombie children');
    assert.ok(after.rssMiB < before.rssMiB * 1.25 + 8, `RSS ${before.rssMiB.toFixed(1)} -> ${after.rssMiB.toFixed(1)} MiB`);
  } finally {
    await killDaemon(daemon);
    await removeCgroup(cg);
    removeRoot(root);
  }
});

test.run();
