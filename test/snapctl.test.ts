// snapctl for a snap's own hooks and apps: on their PATH, acting only on the
// caller's snap (found from the caller's cgroup), and from a hook queued to
// run right after the hook — an enduring service restarted from post-refresh
// comes back on the new revision, and nothing waits for the hook's timeout.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { Supervisor } from '../src/supervisor/supervisor';
import { request } from '../src/supervisor/client';
import { revisionOf } from '../src/kernel/procfs';
import { CLI, cleanupParent, gate, tmpdir, uniqueSnapName, waitFor } from './helpers';
import { withSupervisor, type EmbeddedCtx } from './embedded';

const test = suite('snapctl');
const rootTest = gate(test);

function buildSnap(name: string, version: string, yamlApps: string, bins: Record<string, string>, hooks: Record<string, string> = {}): string {
  const dir = tmpdir('snapctl-snap-');
  fs.mkdirSync(path.join(dir, 'meta', 'hooks'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), `name: ${name}\nversion: '${version}'\napps:\n${yamlApps}`);
  for (const [f, text] of Object.entries(bins)) fs.writeFileSync(path.join(dir, 'bin', f), text, { mode: 0o755 });
  for (const [h, text] of Object.entries(hooks)) fs.writeFileSync(path.join(dir, 'meta', 'hooks', h), text, { mode: 0o755 });
  return dir;
}

const STAY = '#!/bin/sh\nexec sleep 1000\n';

const APPS = `  svc:
    command: bin/stay
    daemon: simple
    refresh-mode: endure
    stop-timeout: 2s
  other:
    command: bin/stay
    daemon: simple
    stop-timeout: 2s
`;

const embedded = (fn: (c: EmbeddedCtx) => Promise<void>) => withSupervisor({ prefix: 'snapctl', removeSnaps: true }, fn);

const hookLog = (root: string, name: string) => fs.readFileSync(path.join(root, 'log', name, 'hooks.log'), 'utf8');
const mainOf = (sup: Supervisor, name: string, app: string) => sup.status(name).find((r) => r.app === app)!.mainPid;

test.after(() => cleanupParent());

rootTest('post-refresh: `snapctl restart` of an enduring service is queued after the hook, never deadlocks, and the service comes back on the new revision', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('sc');
    await sup.install(buildSnap(name, '1', APPS, { stay: STAY }));
    const before = mainOf(sup, name, 'svc')!;
    assert.is(revisionOf(before), 'x1');
    // The hook sees snapctl on its PATH, lists its services, restarts one, and finishes before the restart happens.
    const hook = `#!/bin/sh
set -e
command -v snapctl
snapctl services
snapctl restart "$SNAP_INSTANCE_NAME.svc"
echo "hook done"
`;
    const t0 = Date.now();
    const r = await sup.refresh(name, buildSnap(name, '2', APPS, { stay: STAY }, { 'post-refresh': hook }));
    const ms = Date.now() - t0;
    assert.is(r.to, 'x2');
    assert.ok(ms < 20_000, `refresh took ${ms} ms`);
    const log = hookLog(root, name);
    assert.match(log, new RegExp(`${root}/run/bin/snapctl`));
    assert.match(log, /Service\s+Startup\s+Current\s+Notes/);
    assert.match(log, new RegExp(`${name}\\.svc\\s+enabled\\s+active\\s+endured: runs x1, current x2`), 'the hook sees the enduring service on the old revision');
    assert.match(log, /hook done/);
    const after = mainOf(sup, name, 'svc')!;
    assert.is.not(after, before, 'restarted');
    assert.is(revisionOf(after), 'x2', 'on the new revision');
    assert.match(fs.readFileSync(path.join(root, 'log', name, 'changes.log'), 'utf8'), /post-refresh hook asked for restart of .*\.svc: done/);
  });
});

rootTest('a hook calling `snapproc restart` of its own snap with the full path is queued too (no deadlock); another snap is refused', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('sd');
    const otherSnap = uniqueSnapName('so');
    await sup.install(buildSnap(otherSnap, '1', APPS, { stay: STAY }));
    await sup.install(buildSnap(name, '1', APPS, { stay: STAY }));
    const before = mainOf(sup, name, 'other')!;
    const hook = `#!/bin/sh
"${process.execPath}" "${CLI}" --root "${root}" restart "$SNAP_INSTANCE_NAME.other" || exit 1
if snapctl stop ${otherSnap}.svc 2>"$SNAP_DATA/err"; then exit 1; fi
cat "$SNAP_DATA/err"
if "${process.execPath}" "${CLI}" --root "${root}" stop ${otherSnap} 2>"$SNAP_DATA/err2"; then exit 1; fi
cat "$SNAP_DATA/err2"
`;
    const t0 = Date.now();
    await sup.refresh(name, buildSnap(name, '2', APPS, { stay: STAY }, { 'post-refresh': hook }));
    assert.ok(Date.now() - t0 < 20_000);
    const log = hookLog(root, name);
    assert.match(log, /queued to run after the post-refresh hook/);
    assert.match(log, new RegExp(`error: unknown service: "${otherSnap}.svc"`));
    assert.match(log, new RegExp(`error: cannot stop "${otherSnap}" from the post-refresh hook of "${name}"`));
    const after = mainOf(sup, name, 'other')!;
    assert.is.not(after, before);
    assert.ok(mainOf(sup, otherSnap, 'svc'), 'the other snap was not touched');
  });
});

rootTest('from a service: `snapctl stop --disable` and `start --enable` act at once on its own snap; a process outside every snap is refused', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('sa');
    const ctl = `#!/bin/sh
snapctl stop --disable "$SNAP_INSTANCE_NAME.other" > "$SNAP_DATA/ctl.out" 2>&1
snapctl services >> "$SNAP_DATA/ctl.out" 2>&1
snapctl start --enable "$SNAP_INSTANCE_NAME.other" >> "$SNAP_DATA/ctl.out" 2>&1
snapctl services "$SNAP_INSTANCE_NAME.other" >> "$SNAP_DATA/ctl.out" 2>&1
echo done >> "$SNAP_DATA/ctl.out"
exec sleep 1000
`;
    await sup.install(buildSnap(name, '1', `${APPS}  ctl:\n    command: bin/ctl\n    daemon: simple\n    stop-timeout: 2s\n    after: [other]\n`, { stay: STAY, ctl }));
    const out = path.join(root, 'var', 'snap', name, 'x1', 'ctl.out');
    const text = await waitFor('ctl output', () => (fs.existsSync(out) && /done/.test(fs.readFileSync(out, 'utf8')) ? fs.readFileSync(out, 'utf8') : null), 15_000);
    assert.match(text, new RegExp(`${name}\\.other\\s+disabled\\s+inactive`));
    assert.match(text, new RegExp(`${name}\\.other\\s+enabled\\s+active`));
    assert.is(sup.status(name).find((r) => r.app === 'other')!.state, 'active');
    try {
      await request(root, 'snapctl', { command: 'services', names: [] });
      assert.unreachable('the test process is in no snap cgroup');
    } catch (err) {
      assert.match((err as Error).message, /is not a process of a snap run by this supervisor/);
    }
  });
});

rootTest('remove hook: `snapctl start` is ignored (nothing outlives the removal) and the remove completes', async () => {
  await embedded(async ({ root, sup }) => {
    const name = uniqueSnapName('sr');
    const hook = '#!/bin/sh\nsnapctl start "$SNAP_INSTANCE_NAME.svc"\necho "asked"\n';
    await sup.install(buildSnap(name, '1', APPS, { stay: STAY }, { remove: hook }));
    await sup.remove(name, { purge: true });
    assert.is(sup.status(name).length, 0);
    const { snapProcesses } = await import('../src/process/process-table');
    assert.equal(snapProcesses(name, { under: sup.cgroupParent }), [], 'nothing of the snap runs');
    assert.match(fs.readFileSync(path.join(root, 'log', name, 'changes.log'), 'utf8'), /remove hook asked for start of .*\.svc: ignored/);
  });
});

test.run();
