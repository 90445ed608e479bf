// Names and roots from users and clients (issue 10, item 13): every command
// that takes NAME or NAME.APP refuses an invalid one in one line before it
// touches a file; --root that cannot be a directory is refused; app names too
// long for the file system are refused by validate and install.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawnSync } from 'node:child_process';
import { MAX_APP_NAME, parseSnapTarget, validateAppName } from '../src/snap/names';
import { validateSnapYaml } from '../src/snap/snap-yaml';
import { RevisionStore } from '../src/snap/revision-store';
import { Supervisor } from '../src/supervisor/supervisor';
import { request } from '../src/supervisor/client';
import { CLI, cleanupParent, gate, listTree, makeCgroup, tmpdir } from './helpers';

const test = suite('names');
const rootTest = gate(test);
test.after(() => cleanupParent());

function cli(args: string[], env: NodeJS.ProcessEnv = {}) {
  const r = spawnSync(process.execPath, [CLI, ...args], { encoding: 'utf8', env: { ...process.env, SNAPPROC_NO_AUTOSTART: '1', ...env } });
  return { code: r.status, stdout: r.stdout, stderr: r.stderr };
}

async function rejects(p: Promise<unknown>, check: RegExp | ((e: Error & { code?: string }) => boolean), what = ''): Promise<void> {
  try {
    await p;
  } catch (err) {
    const e = err as Error & { code?: string };
    const ok = check instanceof RegExp ? check.test(e.message) : check(e);
    if (!ok) assert.unreachable(`${what}: wrong error: ${e.code} ${e.message}`);
    return;
  }
  assert.unreachable(`${what}: did not reject`);
}


function snapDir(yaml: string): string {
  const dir = tmpdir();
  fs.mkdirSync(path.join(dir, 'meta'));
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), yaml);
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(path.join(dir, 'bin', 'run'), '#!/bin/sh\nexec sleep 1000\n', { mode: 0o755 });
  return dir;
}

test('parseSnapTarget: valid names pass, paths and odd names are refused as invalid names', () => {
  assert.equal(parseSnapTarget('hello'), { instance: 'hello' });
  assert.equal(parseSnapTarget('hello_k1.svc'), { instance: 'hello_k1', app: 'svc' });
  for (const bad of ['../x/svc', '..', '.', 'a/b', 'x', '/etc/passwd', 'Foo', 'a--b', 'ok.../x', 'ok.a/b', 'ok.', `ok.${'a'.repeat(MAX_APP_NAME + 1)}`, 'ok_BAD', 'ok\n.svc']) {
    assert.throws(() => parseSnapTarget(bad), (e: Error & { code?: string }) => e.code === 'ERR_SNAPPROC_USAGE' && /^invalid (snap|app|instance) (name|key)/.test(e.message) && !e.message.includes('\n'), bad);
  }
  assert.throws(() => parseSnapTarget('hello', { app: 'required', what: 'run' }), /run: needs NAME.APP/);
  assert.throws(() => parseSnapTarget('hello.svc', { app: 'none' }), /takes a snap name, not NAME.APP/);
  assert.is(validateAppName('a'.repeat(MAX_APP_NAME)), null);
});

test('logs ../x/svc does not print a .log file from outside R; every command refuses the name in one line', () => {
  const base = tmpdir();
  const root = path.join(base, 'root');
  fs.mkdirSync(path.join(root, 'log'), { recursive: true });
  fs.mkdirSync(path.join(base, 'x'));
  fs.writeFileSync(path.join(base, 'x', 'svc.log'), 'SECRET outside the root\n');
  fs.mkdirSync(path.join(root, 'log', 'x'), { recursive: true });
  const r = cli(['--root', root, 'logs', '../x/svc']);
  assert.is(r.code, 2);
  assert.not.match(r.stdout, /SECRET/);
  assert.match(r.stderr, /^error: invalid snap name: "" \(in "\.\.\/x\/svc"\)\n$/);
  const before = listTree(root);
  const commands: string[][] = [
    ['logs', '../x/svc'], ['logs', 'ok.../svc'], ['ps', '../x'], ['changes', '../x'], ['start', '../x'], ['restart', 'ok./x'],
    ['stop', '../x'], ['refresh', '../x'], ['revert', '../x'], ['remove', '../x'], ['signal', '../x.svc', 'TERM'],
    ['freeze', '../x'], ['thaw', '../x'], ['run', '../x.app'], ['run', 'ok.a/b'],
  ];
  for (const args of commands) {
    const c = cli(['--root', root, ...args]);
    assert.is(c.code, 2, args.join(' '));
    assert.match(c.stderr, /^error: .*invalid (snap|app) name/, `${args.join(' ')}: ${c.stderr}`);
    assert.is(c.stderr.split('\n').filter(Boolean).length, 1, args.join(' '));
  }
  assert.equal(listTree(root), before);
});

test('--root that is a file, below a file, or absurdly long: one clear error', () => {
  const base = tmpdir();
  const file = path.join(base, 'file');
  fs.writeFileSync(file, '');
  const cases: Array<[string, RegExp]> = [
    [file, /^error: invalid --root .*\/file: it is not a directory\n$/],
    [path.join(file, 'below', 'deeper'), /^error: invalid --root .*: .*\/file is not a directory\n$/],
    [path.join(base, 'a'.repeat(300)), /^error: invalid --root .*: the name .* is longer than 255 bytes\n$/],
    [path.join(base, ...Array.from({ length: 500 }, () => 'abcdefghi')), /^error: invalid --root .*: longer than \d+ bytes\n$/],
  ];
  for (const [root, re] of cases) {
    for (const args of [['--root', root, 'list'], ['--root', root, 'logs', 'hello']]) {
      const r = cli(args);
      assert.is(r.code, 2, `${args.slice(2).join(' ')} with ${root.slice(0, 80)}`);
      assert.match(r.stderr, re);
    }
    const env = cli(['list'], { SNAPPROC_ROOT: root });
    assert.is(env.code, 2);
    assert.match(env.stderr, /^error: invalid SNAPPROC_ROOT /);
  }
  assert.equal(fs.readdirSync(base), ['file']);
  // Long enough to pass as a directory, too long for the control socket (Node would silently cut sun_path).
  const deep = path.join(base, ...Array.from({ length: 12 }, () => 'abcdefghi'));
  const r = cli(['--root', deep, 'start', 'hello']);
  assert.is(r.code, 2);
  assert.match(r.stderr, /^error: the state root .* is too long for its control socket: \d+ bytes .*at most 107/);
});

test('validate and install refuse an app name too long for its cgroup and file names; nothing is written', async () => {
  const long = 'a'.repeat(MAX_APP_NAME + 1);
  const yaml = `name: longapp\nversion: '1'\napps:\n  ${long}:\n    command: bin/run\n    daemon: simple\n`;
  const v = validateSnapYaml(yaml);
  assert.is(v.ok, false);
  if (!v.ok) {
    assert.is(v.problems.length, 1);
    assert.is(v.problems[0].path, `apps.${long}`);
    assert.match(v.problems[0].message, /^invalid app name: ".*\.\.\.": longer than 155 characters \(got 156\)/);
  }
  const dir = snapDir(yaml);
  const r = cli(['validate', dir]);
  assert.is(r.code, 1);
  assert.match(r.stderr, /^error: .*invalid app name: .*longer than 155 characters/);
  const root = path.join(tmpdir(), 'root');
  const store = new RevisionStore(root);
  await rejects(store.addRevision(dir), /invalid app name/);
  assert.equal(listTree(root), []);
});

rootTest('the control API refuses invalid names in requests, from any client', async () => {
  const root = path.join(tmpdir(), 'root');
  const sup = new Supervisor({ root, cgroupParent: makeCgroup('names-sup'), handleSignals: false });
  await sup.start();
  try {
    const before = listTree(root);
    for (const [method, params] of [
      ['start', { snap: '../x' }], ['stop', { snap: 'ok', app: '../x' }], ['restart', { snap: 'a/b' }], ['remove', { snap: '../../etc' }],
      ['revert', { snap: '..' }], ['refresh', { snap: '../x', from: '/tmp' }], ['status', { snap: '../x' }], ['changes', { snap: '../x' }],
      ['start', { snap: 42 }], ['stop', { snap: 'ok', app: 'a'.repeat(MAX_APP_NAME + 1) }],
    ] as Array<[string, Record<string, unknown>]>) {
      await rejects(request(root, method, params), (e: Error & { code?: string }) => e.code === 'ERR_SNAPPROC_USAGE' && /invalid (snap|app) name|snap name is required/.test(e.message), `${method} ${JSON.stringify(params)}`);
    }
    assert.equal(listTree(root), before);
  } finally {
    await sup.shutdown({ stopServices: true });
  }
});

test.run();
