// The CLI contract (SPEC 9) for the commands that act on cgroups directly:
// ps (table and --json), signal, freeze, thaw, stop; exit statuses and
// one-line errors.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { spawnSync } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { serviceCgroupName } from '../src/process/cgroup-names';
import { readEvent } from '../src/kernel/cgroupfs';
import { killCgroup } from '../src/kernel/kill';
import { alive, CLI, cleanupParent, cliForNobody, gate, isRoot, makeCgroup, signalsOf, startTree, uniqueSnapName, waitFor } from './helpers';

const test = suite('cli');
const rootTest = gate(test);
test.after(() => cleanupParent());

function cli(args: string[], opts: { asNobody?: boolean } = {}) {
  const cmd = opts.asNobody ? 'setpriv' : process.execPath;
  // From a 0700 checkout nobody cannot read CLI: cliForNobody() is a readable copy then.
  const argv = opts.asNobody ? ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, cliForNobody(), ...args] : [CLI, ...args];
  const r = spawnSync(cmd, argv, { encoding: 'utf8', env: { ...process.env, SNAPPROC_ROOT: '/nonexistent-snapproc-root' } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

test('--version prints the package version', () => {
  const r = cli(['--version']);
  assert.is(r.code, 0);
  assert.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
});

test('bin/snapproc run as a program: its shell line starts the node on PATH on itself, arguments as given, without NODE_EXTRA_CA_CERTS', () => {
  // A stand-in `node` first on PATH shows what the shell line executes.
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'snapproc-cli-shebang-'));
  try {
    fs.writeFileSync(path.join(dir, 'node'), '#!/bin/sh\nprintf "%s\\n" "$@"\nprintf "CA=%s\\n" "${NODE_EXTRA_CA_CERTS-unset}"\n', { mode: 0o755 });
    const args = ['stop', 'a b', '', '$HOME', '--x=*', "it's"];
    for (const ca of ['/etc/ssl/certs/ca-certificates.crt', '', undefined]) {
      const env: NodeJS.ProcessEnv = { ...process.env, PATH: `${dir}:${process.env.PATH}` };
      if (ca === undefined) delete env.NODE_EXTRA_CA_CERTS;
      else env.NODE_EXTRA_CA_CERTS = ca;
      const r = spawnSync(CLI, args, { encoding: 'utf8', env });
      assert.is(r.status, 0, r.stderr);
      assert.equal(r.stdout.split('\n').slice(0, -1), [CLI, ...args, 'CA=unset'], String(ca));
    }
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
  // And the real one, both ways: the same answer.
  for (const argv of [[CLI, '--version'], [process.execPath, CLI, '--version']]) {
    const r = spawnSync(argv[0], argv.slice(1), { encoding: 'utf8', env: { ...process.env, NODE_EXTRA_CA_CERTS: '/etc/ssl/certs/ca-certificates.crt' } });
    assert.is(r.status, 0, r.stderr);
    assert.match(r.stdout, /^\d+\.\d+\.\d+\n$/);
  }
});

test('usage errors exit 2 with one error line', () => {
  for (const args of [['frobnicate'], ['signal'], ['stop', 'xx', '--mode'], ['ps', '--bogus']]) {
    const r = cli(args);
    assert.is(r.code, 2, args.join(' '));
    assert.match(r.stderr, /^error: /, args.join(' '));
    assert.is(r.stderr.trim().split('\n').filter((l) => l.startsWith('error:')).length, 1);
  }
});

test('an unknown signal lists the valid names; a near miss gets a hint', () => {
  const r = cli(['signal', 'xx.svc', 'BOGUS']);
  assert.is(r.code, 2);
  assert.match(r.stderr, /error: unknown signal "BOGUS"; valid names: SIGHUP, SIGINT/);
  const near = cli(['signal', 'xx.svc', 'SIGTREM']);
  assert.match(near.stderr, /did you mean SIGTERM\?/);
});

test('bad stop-mode and timeout are usage errors', () => {
  assert.match(cli(['stop', 'xx', '--mode', 'sigkill']).stderr, /error: invalid stop-mode "sigkill"; valid stop-modes: sigterm, sigterm-all/);
  assert.match(cli(['stop', 'xx', '--timeout', '-3s']).stderr, /error: invalid --timeout: negative duration "-3s"/);
  assert.match(cli(['stop', 'xx', '--timeout', '10']).stderr, /error: invalid --timeout: invalid duration "10"/);
});

rootTest('mutating commands refuse non-root with a clear error', () => {
  for (const args of [['signal', 'xx.svc', 'TERM'], ['stop', 'xx'], ['freeze', 'xx'], ['thaw', 'xx']]) {
    const r = cli(args, { asNobody: true });
    assert.is(r.code, 1, args.join(' '));
    assert.match(r.stderr, /^error: snapproc \w+ needs root/, args.join(' '));
  }
});

rootTest('ps --json: the documented shape, readable by anyone', async () => {
  const name = uniqueSnapName();
  const cg = makeCgroup(serviceCgroupName(name, 'svc'));
  const tree = await startTree(cg, ['--child', 'group', '--setsid-child', 'other'], ['main', 'group', 'other'], { SNAP_REVISION: 'x2' });
  for (const asNobody of [false, true]) {
    const r = cli(['ps', name, '--json'], { asNobody });
    assert.is(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout);
    assert.is(doc.apps.length, 1);
    const app = doc.apps[0];
    assert.equal(Object.keys(app), ['snap', 'app', 'kind', 'cgroup', 'mainPid', 'processes']);
    assert.equal([app.snap, app.app, app.kind, app.cgroup, app.mainPid], [name, 'svc', 'service', cg, tree.pids.main]);
    const roles = Object.fromEntries(app.processes.map((p: any) => [p.pid, p.role]));
    assert.equal(roles, { [tree.pids.main]: 'main', [tree.pids.group]: 'group', [tree.pids.other]: 'other' });
    for (const p of app.processes) assert.equal(Object.keys(p), ['pid', 'ppid', 'pgid', 'role', 'revision']);
    if (!asNobody) for (const p of app.processes) assert.is(p.revision, 'x2');
  }
  const table = cli(['ps', name]);
  assert.match(table.stdout, /^APP\s+KIND\s+PID\s+PPID\s+PGID\s+ROLE\s+REV\n/);
  assert.match(table.stdout, new RegExp(`${name}\\.svc\\s+service\\s+${tree.pids.main}\\s+\\d+\\s+\\d+\\s+main\\s+x2`));
  await killCgroup(cg);
});

rootTest('signal, freeze, thaw and stop through the CLI', async () => {
  const name = uniqueSnapName();
  const cg = makeCgroup(serviceCgroupName(name, 'svc'));
  const tree = await startTree(cg, ['--child', 'group', '--setsid-child', 'other', '--ignore', 'SIGUSR2', '--ignore', 'SIGHUP'], ['main', 'group', 'other']);
  let r = cli(['signal', `${name}.svc`, 'usr2']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`SIGUSR2 -> ${name}.svc \\(service\\): main process ${tree.pids.main}`));
  r = cli(['signal', `${name}.svc`, '1', '--all']);
  assert.match(r.stdout, /SIGHUP -> .*: 3 processes/);
  await waitFor('signals', () => signalsOf(tree.log, 'other').length === 1 && signalsOf(tree.log, 'main').length === 2);
  assert.equal(signalsOf(tree.log, 'main'), ['SIGUSR2', 'SIGHUP']);
  assert.equal(signalsOf(tree.log, 'group'), ['SIGHUP']);

  r = cli(['freeze', name]);
  assert.is(r.code, 0, r.stderr);
  assert.is(readEvent(cg, 'frozen'), 1);
  r = cli(['thaw', name]);
  assert.is(r.code, 0, r.stderr);
  assert.is(readEvent(cg, 'frozen'), 0);

  r = cli(['stop', `${name}.svc`, '--mode', 'sigint', '--timeout', '5s']);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, new RegExp(`stopped ${name}.svc \\(sigint\\): SIGINT -> main process ${tree.pids.main}; stopped`));
  assert.not.ok(alive(tree.pids.main));
  assert.ok(alive(tree.pids.group) && alive(tree.pids.other), 'plain stop-mode leaves the children');
  r = cli(['stop', name]);
  assert.is(r.code, 0, r.stderr);
  assert.match(r.stdout, /\(sigterm-all\): SIGTERM -> 2 processes; stopped/);
  assert.is(readEvent(cg, 'populated'), 0);
});

rootTest('a snap with no cgroup is an error naming it', () => {
  const r = cli(['stop', 'nosuchsnapxyz']);
  assert.is(r.code, 1);
  assert.match(r.stderr, /^error: no cgroup of snap "nosuchsnapxyz"/);
});

test('not root: the privileged tests above said why they were skipped', () => {
  assert.ok(isRoot || true);
});

test.run();
