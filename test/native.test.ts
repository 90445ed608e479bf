// The native layer on its own (src/kernel/native.ts, native/*): errors shaped like
// Node's, the supervisor's lock, peer credentials, held listening sockets,
// the notify socket, reaping orphans as a subreaper, and the snapproc-exec
// launcher (cgroup before exec, launch files, re-resolving `current`).
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { spawn, spawnSync, ChildProcess } from 'node:child_process';
import { native, launcherPath } from '../src/kernel/native';
import { cgroupMount, cleanupParent, gate, isRoot, makeCgroup, REPO, tmpdir, uniqueSnapName, waitFor } from './helpers';

const test = suite('native');
const rootTest = gate(test); // root and cgroup v2
const NATIVE_JS = path.join(REPO, 'dist', 'src', 'kernel', 'native.js');
const REAPER = path.join(REPO, 'test', 'fixtures', 'native-reaper.js');
const LISTEN_SERVICE = path.join(REPO, 'test', 'fixtures', 'native-listen-service.js');

/** Tests that need root but no cgroup (setpriv to another user). */
let saidRoot = false;
function rootOnly(name: string, fn: () => void | Promise<void>): void {
  if (isRoot) return test(name, fn);
  if (!saidRoot) {
    process.stdout.write('  (skipping tests that switch users: not root)\n');
    saidRoot = true;
  }
  test.skip(name, fn);
}

const python = spawnSync('python3', ['-c', 'pass']).status === 0 ? 'python3' : null;
let saidPython = false;
function pythonTest(name: string, fn: () => void | Promise<void>): void {
  if (python) return test(name, fn);
  if (!saidPython) {
    process.stdout.write('  (skipping notify tests: no python3 to send datagrams with)\n');
    saidPython = true;
  }
  test.skip(name, fn);
}

// Everything a test starts or opens, undone in `after` even when it failed.
const dirs: string[] = [];
const children: ChildProcess[] = [];
const fds: number[] = [];
const notifiers: number[] = [];

function dir(): string {
  const d = tmpdir('snapproc-test-native-');
  dirs.push(d);
  return d;
}

function keepFd(fd: number): number {
  fds.push(fd);
  return fd;
}

function closeFd(fd: number): void {
  const i = fds.indexOf(fd);
  if (i >= 0) fds.splice(i, 1);
  fs.closeSync(fd);
}

function cleanup(): void {
  for (const id of notifiers.splice(0)) native.notifyClose(id);
  for (const fd of fds.splice(0)) {
    try { fs.closeSync(fd); } catch { /* closed */ }
  }
  // Only children this file started, and only those still running.
  for (const c of children.splice(0)) if (c.exitCode === null && c.signalCode === null) c.kill('SIGKILL');
  for (const d of dirs.splice(0)) fs.rmSync(d, { recursive: true, force: true });
  cleanupParent();
}
test.after(cleanup);
process.on('exit', cleanup);

interface Run { code: number | null; signal: string | null; stdout: string; stderr: string; pid: number }

/** Runs a command to its end, collecting its output. */
function run(cmd: string, args: string[], options: { env?: NodeJS.ProcessEnv } = {}): Promise<Run> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { stdio: ['ignore', 'pipe', 'pipe'], env: options.env ?? process.env });
    children.push(child);
    let stdout = '';
    let stderr = '';
    child.stdout!.on('data', (d) => (stdout += d));
    child.stderr!.on('data', (d) => (stderr += d));
    child.on('error', reject);
    child.on('close', (code, signal) => resolve({ code, signal, stdout, stderr, pid: child.pid! }));
  });
}

function launcher(args: string[], env: NodeJS.ProcessEnv = process.env): Promise<Run> {
  return run(launcherPath(), args, { env });
}

/** Sends one datagram to a unix socket from a separate (python) process; resolves to the sender's pid. */
async function sendDatagram(sock: string, payload: string, options: { asNobody?: boolean; passFile?: string } = {}): Promise<number> {
  const code = options.passFile
    ? `import socket,os,sys; s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.connect(sys.argv[1]); f=open(${JSON.stringify(options.passFile)},'w'); socket.send_fds(s,[sys.argv[2].encode()],[f.fileno()]); print(os.getpid())`
    : 'import socket,os,sys; s=socket.socket(socket.AF_UNIX,socket.SOCK_DGRAM); s.sendto(sys.argv[2].encode(),sys.argv[1]); print(os.getpid())';
  const r = options.asNobody
    ? await run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', '/usr/bin/python3', '-c', code, sock, payload])
    : await run(python!, ['-c', code, sock, payload]);
  assert.is(r.code, 0, `sender failed: ${r.stderr}`);
  return Number(r.stdout.trim());
}

function connect(options: net.NetConnectOpts): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect(options, () => resolve(s));
    s.on('error', reject);
  });
}

function readAll(s: net.Socket): Promise<string> {
  return new Promise((resolve, reject) => {
    let text = '';
    s.on('data', (d) => (text += d));
    s.on('end', () => resolve(text));
    s.on('error', reject);
  });
}

function lockInChild(file: string): { fd?: number; code?: string; errno?: number; syscall?: string } {
  const script = `const { native } = require(${JSON.stringify(NATIVE_JS)});
try { console.log(JSON.stringify({ fd: native.lockFile(${JSON.stringify(file)}) })); }
catch (e) { console.log(JSON.stringify({ code: e.code, errno: e.errno, syscall: e.syscall })); }`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  return JSON.parse(r.stdout);
}

// ---- errors -----------------------------------------------------------------

test('errors leave the addon shaped like Node\'s own (ESRCH from kill)', () => {
  let nodeErr: NodeJS.ErrnoException | undefined;
  try { process.kill(99999999, 0); } catch (e) { nodeErr = e as NodeJS.ErrnoException; }
  let ours: NodeJS.ErrnoException | undefined;
  try { native.kill(99999999, 0); } catch (e) { ours = e as NodeJS.ErrnoException; }
  assert.ok(ours, 'native.kill(99999999, 0) must throw');
  assert.equal({ code: ours!.code, errno: ours!.errno, syscall: ours!.syscall }, { code: 'ESRCH', errno: -3, syscall: 'kill' });
  assert.equal({ code: ours!.code, errno: ours!.errno, syscall: ours!.syscall }, { code: nodeErr!.code, errno: nodeErr!.errno, syscall: nodeErr!.syscall });
  assert.instance(ours, Error);
});

// ---- lockFile ---------------------------------------------------------------

test('lockFile: one holder at a time, across processes and within one; released on close', () => {
  const file = path.join(dir(), 'snapproc.lock');
  const fd = keepFd(native.lockFile(file));
  assert.ok(fd > 2);
  const mode = fs.statSync(file).mode & 0o777;
  assert.is(mode, 0o644 & ~process.umask(), `lock file mode ${mode.toString(8)}`);
  // Another process (a second supervisor) is refused.
  assert.equal(lockInChild(file), { code: 'EAGAIN', errno: -11, syscall: 'fcntl' });
  // OFD locks belong to the open file, not the process: a second open here is refused too.
  try {
    native.lockFile(file);
    assert.unreachable('a second lockFile in the same process must fail');
  } catch (e) {
    assert.is((e as NodeJS.ErrnoException).code, 'EAGAIN');
  }
  closeFd(fd);
  const after = lockInChild(file);
  assert.type(after.fd, 'number', `lock must be free once the fd is closed: ${JSON.stringify(after)}`);
});

test('lockFile: a missing directory is ENOENT from open', () => {
  try {
    native.lockFile(path.join(dir(), 'no', 'such', 'lock'));
    assert.unreachable();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    assert.equal([err.code, err.syscall], ['ENOENT', 'open']);
  }
});

// ---- peerCred ---------------------------------------------------------------

async function peerOfClient(connectFrom: (sock: string) => Promise<number>): Promise<{ cred: { pid: number; uid: number; gid: number }; clientPid: number }> {
  const d = dir();
  fs.chmodSync(d, 0o755);
  const sock = path.join(d, 'ctl.sock');
  let resolveCred!: (c: { pid: number; uid: number; gid: number }) => void;
  const got = new Promise<{ pid: number; uid: number; gid: number }>((r) => (resolveCred = r));
  const server = net.createServer((s) => {
    const fd = (s as unknown as { _handle: { fd: number } })._handle.fd;
    resolveCred(native.peerCred(fd));
    s.end();
  });
  await new Promise<void>((r) => server.listen({ path: sock, readableAll: true, writableAll: true }, r));
  try {
    const clientPid = await connectFrom(sock);
    return { cred: await got, clientPid };
  } finally {
    server.close();
  }
}

test('peerCred: the pid, uid and gid of the process at the other end', async () => {
  const { cred } = await peerOfClient(async (sock) => {
    const s = await connect({ path: sock });
    await readAll(s);
    return process.pid;
  });
  assert.equal(cred, { pid: process.pid, uid: process.getuid!(), gid: process.getgid!() });
});

rootOnly('peerCred: a client running as nobody is seen as uid 65534', async () => {
  const { cred, clientPid } = await peerOfClient(async (sock) => {
    const code = `require('net').connect(${JSON.stringify(sock)}, function () { console.log(process.pid); }).on('end', function () { this.end(); }).resume()`;
    const r = await run('setpriv', ['--reuid=nobody', '--regid=nogroup', '--clear-groups', process.execPath, '-e', code]);
    assert.is(r.code, 0, r.stderr);
    return Number(r.stdout.trim());
  });
  assert.equal(cred, { pid: clientPid, uid: 65534, gid: 65534 });
});

test('peerCred: not a socket is ENOTSOCK from getsockopt', () => {
  const fd = keepFd(fs.openSync(path.join(dir(), 'plain'), 'w'));
  try {
    native.peerCred(fd);
    assert.unreachable();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    assert.equal([err.code, err.syscall], ['ENOTSOCK', 'getsockopt']);
  } finally {
    closeFd(fd);
  }
});

// ---- bindListen -------------------------------------------------------------

test('bindListen tcp: clients queue in the backlog while nobody accepts', async () => {
  const fd = keepFd(native.bindListen({ kind: 'tcp', host: '127.0.0.1', port: 0, backlog: 16 }));
  const name = native.socketName(fd);
  assert.is(name.family, 'IPv4');
  if (name.family === 'unix') throw new Error('unreachable');
  assert.is(name.address, '127.0.0.1');
  assert.ok(name.port > 0);
  const clients = await Promise.all([1, 2, 3].map(() => connect({ host: '127.0.0.1', port: name.port })));
  for (const c of clients) c.destroy();
  // The port is taken while the fd is open: binding it again is EADDRINUSE from bind.
  try {
    native.bindListen({ kind: 'tcp', host: '127.0.0.1', port: name.port });
    assert.unreachable();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    assert.equal([err.code, err.errno, err.syscall, err.message], ['EADDRINUSE', -98, 'bind', `EADDRINUSE: bind failed 127.0.0.1:${name.port}`]);
  }
  closeFd(fd);
});

test('bindListen tcp: `::` is dual-stack by the kernel default', async () => {
  let v6only = '1';
  try { v6only = fs.readFileSync('/proc/sys/net/ipv6/bindv6only', 'utf8').trim(); } catch { /* no IPv6 */ }
  let fd: number;
  try {
    fd = keepFd(native.bindListen({ kind: 'tcp', host: '::', port: 0 }));
  } catch (e) {
    process.stdout.write(`  (no IPv6 here: ${(e as Error).message})\n`);
    return;
  }
  const name = native.socketName(fd);
  assert.equal(name.family === 'unix' ? null : [name.family, name.address], ['IPv6', '::']);
  if (v6only === '0' && name.family !== 'unix') {
    const c = await connect({ host: '127.0.0.1', port: name.port });
    c.destroy();
  }
  closeFd(fd);
});

test('bindListen unix: mode, queued connections, a stale socket file replaced, any other file kept', async () => {
  const d = dir();
  const sock = path.join(d, 'app.sock');
  const fd = keepFd(native.bindListen({ kind: 'unix', path: sock, mode: 0o660 }));
  const st = fs.lstatSync(sock);
  assert.ok(st.isSocket());
  assert.is(st.mode & 0o7777, 0o660);
  assert.equal(native.socketName(fd), { family: 'unix', path: sock });
  const clients = await Promise.all([1, 2].map(() => connect({ path: sock })));
  for (const c of clients) c.destroy();
  closeFd(fd);
  // The file stays behind; the next bind replaces it (default mode 0666).
  assert.ok(fs.lstatSync(sock).isSocket());
  const fd2 = keepFd(native.bindListen({ kind: 'unix', path: sock }));
  assert.is(fs.lstatSync(sock).mode & 0o7777, 0o666);
  (await connect({ path: sock })).destroy();
  closeFd(fd2);
  // Not a socket: left alone, and bind says so.
  const plain = path.join(d, 'data.txt');
  fs.writeFileSync(plain, 'keep me');
  try {
    native.bindListen({ kind: 'unix', path: plain });
    assert.unreachable();
  } catch (e) {
    const err = e as NodeJS.ErrnoException & { path?: string };
    assert.equal([err.code, err.syscall, err.path], ['EADDRINUSE', 'bind', plain]);
  }
  assert.is(fs.readFileSync(plain, 'utf8'), 'keep me');
});

test('bindListen: options are checked with exact messages', () => {
  assert.throws(() => native.bindListen({ kind: 'tcp', host: 'example.com', port: 80 }), /Expected the "host" option to be a numeric IPv4 or IPv6 address \(or localhost\), got example\.com/);
  assert.throws(() => native.bindListen({ kind: 'tcp', host: '127.0.0.1', port: 70000 }), /Expected the "port" option to be an integer from 0 to 65535, got 70000/);
  assert.throws(() => native.bindListen({ kind: 'unix', path: '/tmp/' + 'x'.repeat(120) }), /at most 107 bytes/);
  assert.throws(() => native.bindListen({ kind: 'unix', path: '/tmp/x.sock', backlog: 0 }), /Expected the "backlog" option to be a positive integer, got 0/);
  assert.throws(() => native.bindListen({ kind: 'udp' } as never), /Expected the "kind" option to be 'unix' or 'tcp', got udp/);
});

test('held socket: passed as LISTEN_FDS through the launcher, it outlives the service; queued clients are answered by the next one', async () => {
  const fd = keepFd(native.bindListen({ kind: 'tcp', host: '127.0.0.1', port: 0 }));
  const name = native.socketName(fd);
  if (name.family === 'unix') throw new Error('unreachable');
  const start = async () => {
    const child = spawn(launcherPath(), ['--', process.execPath, LISTEN_SERVICE], {
      stdio: ['ignore', 'pipe', 'inherit', fd],
      env: { ...process.env, LISTEN_FDS: '1', LISTEN_FDNAMES: 'web' },
    });
    children.push(child);
    let out = '';
    child.stdout!.on('data', (d) => (out += d));
    await waitFor('the service to be ready', () => out.includes('ready') || child.exitCode !== null);
    assert.is(child.exitCode, null, 'the service refused to run: see stderr');
    return child;
  };
  // Clients that connect before any service runs wait in the backlog.
  const early = await Promise.all([1, 2].map(() => connect({ host: '127.0.0.1', port: name.port })));
  const first = await start();
  for (const c of early) {
    const info = JSON.parse(await readAll(c));
    assert.equal(info, { pid: first.pid, listenPid: String(first.pid), listenFds: '1', names: 'web' });
  }
  // The service goes away; the socket does not: a client still connects and waits.
  first.kill('SIGTERM');
  await new Promise((r) => first.once('exit', r));
  const waiting = await connect({ host: '127.0.0.1', port: name.port });
  const second = await start();
  assert.is.not(second.pid, first.pid);
  assert.is(JSON.parse(await readAll(waiting)).pid, second.pid);
  second.kill('SIGTERM');
  await new Promise((r) => second.once('exit', r));
  closeFd(fd);
});

// ---- notify socket ------------------------------------------------------------

function listenNotify(sock: string, passed: string[] = []): { messages: Array<{ pid: number; uid: number; text: string }>; id: number } {
  const messages: Array<{ pid: number; uid: number; text: string }> = [];
  const id = native.notifyListen(sock, (pid, uid, text, fds) => {
    // Attached descriptors are the callback's: note what they are, then close them.
    for (const fd of fds) {
      passed.push(fs.readlinkSync(`/proc/self/fd/${fd}`));
      fs.closeSync(fd);
    }
    messages.push({ pid, uid, text });
  });
  notifiers.push(id);
  return { messages, id };
}

function closeNotify(id: number): boolean {
  const i = notifiers.indexOf(id);
  if (i >= 0) notifiers.splice(i, 1);
  return native.notifyClose(id);
}

pythonTest('notifyListen: READY=1 and MAINPID= arrive with the sender\'s pid and uid', async () => {
  const sock = path.join(dir(), 'notify.socket');
  const { messages, id } = listenNotify(sock);
  assert.ok(fs.lstatSync(sock).isSocket());
  assert.is(fs.lstatSync(sock).mode & 0o777, 0o666);
  const sender = await sendDatagram(sock, 'READY=1\nMAINPID=123');
  await waitFor('the notification', () => messages.length > 0);
  assert.equal(messages, [{ pid: sender, uid: process.getuid!(), text: 'READY=1\nMAINPID=123' }]);
  assert.is(closeNotify(id), true);
  assert.is(native.notifyClose(id), false, 'closing twice is harmless');
  // The socket file stays; the next listener replaces it.
  const again = listenNotify(sock);
  const sender2 = await sendDatagram(sock, 'STOPPING=1');
  await waitFor('the second notification', () => again.messages.length > 0);
  assert.equal(again.messages, [{ pid: sender2, uid: process.getuid!(), text: 'STOPPING=1' }]);
  closeNotify(again.id);
});

pythonTest('notifyListen: descriptors a sender attaches go to the callback (FDSTORE=1), none leaked', async () => {
  const sock = path.join(dir(), 'notify.socket');
  const passed: string[] = [];
  const { messages, id } = listenNotify(sock, passed);
  const marker = path.join(path.dirname(sock), 'passed-file');
  await sendDatagram(sock, 'FDSTORE=1', { passFile: marker });
  await waitFor('the notification', () => messages.length > 0);
  assert.is(messages[0].text, 'FDSTORE=1');
  assert.equal(passed, [path.join(fs.realpathSync(path.dirname(sock)), 'passed-file')], 'the callback got the passed file');
  const open = fs.readdirSync('/proc/self/fd').filter((fd) => {
    try { return fs.readlinkSync(`/proc/self/fd/${fd}`) === marker; } catch { return false; }
  });
  assert.equal(open, [], 'the passed descriptor must not stay open here');
  closeNotify(id);
});

rootOnly('notifyListen: a service running as nobody is seen as uid 65534', async () => {
  if (!fs.existsSync('/usr/bin/python3')) {
    process.stdout.write('  (no /usr/bin/python3 that nobody may run: not checked)\n');
    return;
  }
  const sock = path.join(dir(), 'notify.socket');
  fs.chmodSync(path.dirname(sock), 0o755);
  const { messages, id } = listenNotify(sock);
  const sender = await sendDatagram(sock, 'READY=1', { asNobody: true });
  await waitFor('the notification', () => messages.length > 0);
  assert.equal(messages, [{ pid: sender, uid: 65534, text: 'READY=1' }]);
  closeNotify(id);
});

test('notifyListen keeps the event loop alive while open; notifyClose lets the process exit', () => {
  const sock = path.join(dir(), 'notify.socket');
  // If the listener did not hold the loop, the process would exit before the
  // unref'd timer fires; if notifyClose did not release it, it would hang.
  const script = `const { native } = require(${JSON.stringify(NATIVE_JS)});
const id = native.notifyListen(${JSON.stringify(sock)}, () => {});
setTimeout(() => { console.log('still alive'); console.log(native.notifyClose(id)); }, 300).unref();`;
  const r = spawnSync(process.execPath, ['-e', script], { encoding: 'utf8', timeout: 10_000 });
  assert.is(r.signal, null, 'the process did not exit after notifyClose');
  assert.is(r.status, 0, r.stderr);
  assert.is(r.stdout, 'still alive\ntrue\n');
});

test('notifyListen: a path that cannot be bound throws from bind', () => {
  try {
    native.notifyListen(path.join(dir(), 'missing', 'notify.socket'), () => {});
    assert.unreachable();
  } catch (e) {
    const err = e as NodeJS.ErrnoException;
    assert.equal([err.code, err.syscall], ['ENOENT', 'bind']);
  }
});

// ---- reapChildren -------------------------------------------------------------

test('reapChildren: a subreaper reaps a double-forked orphan, leaves Node\'s own children to libuv, and no zombie stays', async () => {
  // In a child process: being a subreaper is process-wide.
  const r = await run(process.execPath, [REAPER]);
  assert.is(r.code, 0, r.stderr);
  const res = JSON.parse(r.stdout) as {
    subreaper: boolean; orphan: number; orphanPpid: number; reaped: Array<{ pid: number; status: number }>;
    ownExit: number | null; middleExit: number | null; sigchld: number; zombies: Array<{ pid: number; state: string }>;
  };
  assert.is(res.subreaper, true);
  assert.is(res.middleExit, 0);
  assert.ok(res.orphan > 0);
  assert.is(res.orphanPpid, r.pid, 'the orphan re-parents to the subreaper');
  assert.ok(res.sigchld > 0, 'process.on("SIGCHLD") fires alongside child_process');
  const orphan = res.reaped.find((x) => x.pid === res.orphan);
  assert.ok(orphan, `orphan ${res.orphan} not reaped: ${r.stdout}`);
  assert.is(orphan!.status, 5 << 8, 'raw wait status of exit 5');
  assert.is(res.reaped.length, 1, `only the orphan is reaped: ${JSON.stringify(res.reaped)}`);
  assert.is(res.ownExit, 3, 'Node still sees its own child exit with its status');
  assert.equal(res.zombies, []);
});

// ---- snapproc-exec ------------------------------------------------------------

test('launcherPath: the built launcher, linked against libc only', () => {
  const file = launcherPath();
  assert.ok(file.endsWith(path.join('build', 'Release', 'snapproc-exec')) || file.endsWith(path.join('build', 'Debug', 'snapproc-exec')));
  fs.accessSync(file, fs.constants.X_OK);
  const elf = spawnSync('readelf', ['-d', file], { encoding: 'utf8' });
  if (elf.status !== 0) {
    process.stdout.write('  (no readelf: dynamic dependencies not checked)\n');
    return;
  }
  const needed = [...elf.stdout.matchAll(/\(NEEDED\)\s+Shared library: \[([^\]]+)\]/g)].map((m) => m[1]);
  assert.ok(needed.every((n) => /^(libc|ld-linux)/.test(n)), `needs ${needed.join(', ')}`);
});

rootTest('launcher: the command is in the cgroup before it executes', async () => {
  const cg = makeCgroup(`snap.${uniqueSnapName('nat')}.svc.service`);
  const r = await launcher(['--cgroup', cg, '--', '/bin/cat', '/proc/self/cgroup']);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout.split('\n').find((l) => l.startsWith('0::')), `0::/${path.relative(cgroupMount!, cg)}`);
});

test('launcher: a cgroup it cannot enter is exit 127 with the reason, and nothing runs', async () => {
  const marker = path.join(dir(), 'ran');
  const missing = path.join(dir(), 'no-such-cgroup');
  const r = await launcher(['--cgroup', missing, '--', '/bin/sh', '-c', `touch ${marker}`]);
  assert.is(r.code, 127);
  assert.is(r.stderr, `snapproc-exec: cannot enter cgroup ${missing}: No such file or directory\n`);
  assert.not.ok(fs.existsSync(marker));
});

test('launcher: a launch file sets env, unsets, changes directory and gives the command; ARGs are appended', async () => {
  const d = dir();
  const work = path.join(d, 'work dir');
  fs.mkdirSync(work);
  const file = path.join(d, 'app.launch');
  const code = 'console.log(JSON.stringify({ weird: process.env.WEIRD, empty: process.env.EMPTY, gone: process.env.SNAPPROC_TEST_GONE ?? null, kept: process.env.SNAPPROC_TEST_KEPT, cwd: process.cwd(), args: process.argv.slice(1) }))';
  fs.writeFileSync(file, [
    '# comment lines and empty lines are ignored',
    '',
    'env WEIRD=a b=c $HOME \'q\' "dq" \\ ;|&',
    'env EMPTY=',
    'unset SNAPPROC_TEST_GONE',
    `cwd ${work}`,
    `arg ${process.execPath}`,
    'arg -e',
    `arg ${code}`,
    'arg  two  spaces ',
    'arg',
  ].join('\n') + '\n');
  const r = await launcher(['--launch', file, '--', '--extra', 'x y'], { ...process.env, SNAPPROC_TEST_GONE: '1', SNAPPROC_TEST_KEPT: 'kept' });
  assert.is(r.code, 0, r.stderr);
  assert.equal(JSON.parse(r.stdout), {
    weird: 'a b=c $HOME \'q\' "dq" \\ ;|&',
    empty: '',
    gone: null,
    kept: 'kept',
    cwd: work,
    args: [' two  spaces ', '', '--extra', 'x y'],
  });
});

test('launcher: a bad launch file or command is exit 127 (126 when not executable) with one line', async () => {
  const d = dir();
  const bad = path.join(d, 'bad.launch');
  fs.writeFileSync(bad, 'arg /bin/true\nrun /bin/false\n');
  let r = await launcher(['--launch', bad]);
  assert.is(r.code, 127);
  assert.is(r.stderr, `snapproc-exec: ${bad}:2: unknown directive 'run' (expected env, unset, cwd or arg)\n`);

  r = await launcher(['--', path.join(d, 'no-such-command')]);
  assert.is(r.code, 127);
  assert.is(r.stderr, `snapproc-exec: cannot execute ${path.join(d, 'no-such-command')}: No such file or directory\n`);

  r = await launcher(['--', 'snapproc-no-such-command-on-path']);
  assert.is(r.code, 127);
  assert.match(r.stderr, /^snapproc-exec: cannot execute snapproc-no-such-command-on-path: No such file or directory\n$/);

  const notExec = path.join(d, 'data');
  fs.writeFileSync(notExec, 'x', { mode: 0o644 });
  r = await launcher(['--', notExec]);
  assert.is(r.code, 126);
  assert.is(r.stderr, `snapproc-exec: cannot execute ${notExec}: Permission denied\n`);

  const cwdFile = path.join(d, 'cwd.launch');
  fs.writeFileSync(cwdFile, `cwd ${path.join(d, 'nowhere')}\narg /bin/true\n`);
  r = await launcher(['--launch', cwdFile]);
  assert.is(r.code, 127);
  assert.is(r.stderr, `snapproc-exec: cannot change directory to ${path.join(d, 'nowhere')}: No such file or directory\n`);

  r = await launcher(['--bogus']);
  assert.is(r.code, 127);
  assert.match(r.stderr, /^snapproc-exec: unknown option --bogus/);

  r = await launcher([]);
  assert.is(r.code, 127);
  assert.match(r.stderr, /^snapproc-exec: no command given\n/);
});

test('procInfo: out of descriptors (EMFILE) is an error, not processes taken for gone; the pidfd path stays on for the calls after', () => {
  // In a child with a low descriptor limit: fill the table, ask, free it, ask again.
  const script = `
    const fs = require('node:fs');
    const { native } = require(${JSON.stringify(path.join(REPO, 'dist', 'src', 'kernel', 'native.js'))});
    const pids = Int32Array.from([process.pid, process.ppid]);
    const before = native.procInfo(pids);
    const fds = [];
    try { for (;;) fds.push(fs.openSync('/dev/null', 'r')); } catch (e) { if (e.code !== 'EMFILE') throw e; }
    let full; try { full = native.procInfo(pids); } catch (e) { full = { error: e.code }; }
    for (const fd of fds) fs.closeSync(fd);
    const after = native.procInfo(pids);
    const viaPidfd = (x) => !(x.start && x.start.length > 0);
    process.stdout.write(JSON.stringify({ before: viaPidfd(before), after: viaPidfd(after), afterPids: after.ids.length / 3, full: full.error ?? full.ids.length / 3 }));`;
  const r = spawnSync('prlimit', ['--nofile=64:64', process.execPath, '-e', script], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const out = JSON.parse(r.stdout) as { before: boolean; after: boolean; afterPids: number; full: unknown };
  assert.is(out.full, 'EMFILE', 'a table full of descriptors is reported, not an empty list');
  if (!out.before) return; // no PIDFD_GET_INFO on this kernel (< 6.13): only /proc/PID/stat is used anyway
  assert.ok(out.after, 'after the EMFILE the pidfd path is still used (no start times from /proc/PID/stat)');
  assert.is(out.afterPids, 2);
});

test('launcher: --resolve reads `current` on every execution (a re-executing service gets the new revision)', async () => {
  const root = dir();
  const name = uniqueSnapName('nat');
  fs.mkdirSync(path.join(root, 'snap', name), { recursive: true });
  const setCurrent = (rev: string) => {
    const link = path.join(root, 'snap', name, 'current');
    fs.symlinkSync(rev, `${link}.tmp`);
    fs.renameSync(`${link}.tmp`, link);
  };
  const writeLaunch = (rev: string, lines: string[]) => {
    const d = path.join(root, 'state', 'launch', name, rev);
    fs.mkdirSync(d, { recursive: true });
    fs.writeFileSync(path.join(d, 'svc.launch'), lines.join('\n') + '\n');
  };
  const show = 'echo "$SNAP_REVISION:${ONLY_X1:-}"';
  // x1 prints, then (like nginx on SIGUSR2) points `current` at x2 and re-executes the launcher.
  writeLaunch('x1', [
    'env SNAP_REVISION=x1',
    'env ONLY_X1=yes',
    'arg /bin/sh',
    'arg -c',
    `arg ${show}; [ "$1" = reexec ] || exit 0; ln -s x2 "$2.tmp" && mv -T "$2.tmp" "$2" && exec "$3" --resolve "$4" "$5" svc`,
    'arg sh',
  ]);
  writeLaunch('x2', ['env SNAP_REVISION=x2', 'unset ONLY_X1', 'arg /bin/sh', 'arg -c', `arg ${show}`]);
  setCurrent('x1');
  let r = await launcher(['--resolve', root, name, 'svc']);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout, 'x1:yes\n');
  setCurrent('x2');
  r = await launcher(['--resolve', root, name, 'svc']);
  assert.is(r.stdout, 'x2:\n');
  setCurrent('x1');
  r = await launcher(['--resolve', root, name, 'svc', '--', 'reexec', path.join(root, 'snap', name, 'current'), launcherPath(), root, name]);
  assert.is(r.code, 0, r.stderr);
  assert.is(r.stdout, 'x1:yes\nx2:\n');

  r = await launcher(['--resolve', root, 'nosuchsnap', 'svc']);
  assert.is(r.code, 127);
  assert.is(r.stderr, `snapproc-exec: cannot resolve current revision of nosuchsnap: ${path.join(root, 'snap', 'nosuchsnap', 'current')}: No such file or directory\n`);
  r = await launcher(['--resolve', root, name, 'nosuchapp']);
  assert.is(r.code, 127);
  assert.match(r.stderr, /^snapproc-exec: cannot read launch file .*\/x2\/nosuchapp\.launch: No such file or directory\n$/);
  r = await launcher(['--resolve', root, '..', 'svc']);
  assert.is(r.code, 127);
  assert.is(r.stderr, "snapproc-exec: invalid snap name '..'\n");
});

test('launcher: LISTEN_PID is the command\'s pid when LISTEN_FDS is set, and left alone otherwise', async () => {
  const env = { ...process.env };
  delete env.LISTEN_PID;
  let r = await launcher(['--', '/bin/sh', '-c', 'echo "${LISTEN_PID:-unset} $$"'], { ...env, LISTEN_FDS: '2' });
  const [listenPid, pid] = r.stdout.trim().split(' ');
  assert.is(listenPid, pid);
  assert.is(Number(pid), r.pid, 'the launcher executes the command in its own process');
  r = await launcher(['--', '/bin/sh', '-c', 'echo "${LISTEN_PID:-unset}"'], env);
  assert.is(r.stdout, 'unset\n');
});

test('launcher: signal dispositions are reset and nothing is blocked', async () => {
  // sh ignores SIGTERM and SIGUSR1 and executes the launcher; those stay
  // ignored across exec unless the launcher resets them.
  const r = await run('/bin/sh', ['-c', `trap '' TERM USR1; exec "$0" -- /bin/cat /proc/self/status`, launcherPath()]);
  assert.is(r.code, 0, r.stderr);
  const field = (k: string) => new RegExp(`^${k}:\\s*([0-9a-f]+)$`, 'm').exec(r.stdout)?.[1];
  assert.is(BigInt('0x' + field('SigIgn')), 0n);
  assert.is(BigInt('0x' + field('SigBlk')), 0n);
});

rootTest('spawnInCgroup: the child is in the cgroup from its first instruction, with the fds it was given, in a session of its own', async () => {
  const cg = makeCgroup(`snap.${uniqueSnapName('nat')}.spawn.service`);
  const dir = tmpdir();
  const out = fs.openSync(path.join(dir, 'out'), 'w');
  const cgFd = fs.openSync(cg, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  // The shell reports what it sees before it runs anything else.
  const script = 'cat /proc/self/cgroup; echo "sid $(ps -o sid= -p $$) pid $$"; echo "X=$X"; exit 7';
  const { pid, pidfd } = native.spawnInCgroup('/bin/sh', ['sh', '-c', script], ['X=1', 'PATH=/usr/bin:/bin'], cgFd, [-1, out, out], true);
  fs.closeSync(cgFd);
  fs.closeSync(out);
  assert.is(await native.pidfdWait(pidfd, 5000).result, 'done');
  // Not a Node child: reap it here, as the supervisor does as subreaper.
  const reaped = native.reapChildren(new Int32Array());
  const mine = reaped.find((r) => r.pid === pid);
  assert.ok(mine, 'reaped');
  assert.is((mine!.status >> 8) & 0xff, 7);
  fs.closeSync(pidfd);
  const text = fs.readFileSync(path.join(dir, 'out'), 'utf8');
  assert.ok(text.includes(cg.slice(cgroupMount!.length)), text);
  assert.match(text, new RegExp(`sid +${pid} pid ${pid}`));
  assert.match(text, /X=1/);
});

rootTest('spawnInCgroup into a frozen cgroup returns at once (the child waits, frozen, and runs once thawed); the parent shares no handler with the child', async () => {
  const cg = makeCgroup(`snap.${uniqueSnapName('nat')}.frozen.service`);
  fs.writeFileSync(path.join(cg, 'cgroup.freeze'), '1');
  const cgFd = fs.openSync(cg, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  const t0 = performance.now();
  const { pid, pidfd } = native.spawnInCgroup('/bin/sh', ['sh', '-c', 'exit 5'], [], cgFd, [-1, -1, -1], false);
  const took = performance.now() - t0;
  fs.closeSync(cgFd);
  assert.ok(took < 2000, `returned after ${took.toFixed(0)} ms`);
  assert.is(await native.pidfdWait(pidfd, 100).result, 'timeout', 'frozen before it could exit');
  fs.writeFileSync(path.join(cg, 'cgroup.freeze'), '0');
  assert.is(await native.pidfdWait(pidfd, 5000).result, 'done');
  const mine = native.reapChildren(new Int32Array()).find((r) => r.pid === pid);
  assert.is(mine && (mine.status >> 8) & 0xff, 5);
  fs.closeSync(pidfd);
});

rootTest('waits share one thread: 200 pidfd waits and 200 cgroup.events waits add no thread; each ends once (done, timeout or cancelled)', async () => {
  const threads = () => fs.readdirSync('/proc/self/task').length;
  const cg = makeCgroup(`snap.${uniqueSnapName('nat')}.many.service`);
  const cgFd = fs.openSync(cg, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  // Warm up: the watching thread exists from the first wait on.
  await native.waitEvent(cg, 'populated', 0, 1000).result;
  const before = threads();
  const kids = Array.from({ length: 200 }, () => native.spawnInCgroup('/bin/sleep', ['sleep', '30'], [], cgFd, [-1, -1, -1], false));
  fs.closeSync(cgFd);
  const exits = kids.map((k) => native.pidfdWait(k.pidfd, -1));
  const events = Array.from({ length: 200 }, () => native.waitEvent(cg, 'populated', 0, -1));
  const timedOut = native.waitEvent(cg, 'populated', 0, 50);
  const cancelled = native.pidfdWait(kids[0].pidfd, -1);
  assert.ok(threads() <= before, `${threads()} threads with 402 waits open (${before} before)`);
  assert.is(await timedOut.result, 'timeout');
  cancelled.cancel();
  assert.is(await cancelled.result, 'cancelled');
  fs.writeFileSync(path.join(cg, 'cgroup.kill'), '1');
  assert.equal([...new Set(await Promise.all(exits.map((w) => w.result)))], ['done']);
  assert.equal([...new Set(await Promise.all(events.map((w) => w.result)))], ['done']);
  native.reapChildren(new Int32Array());
  for (const k of kids) fs.closeSync(k.pidfd);
  // A key the file does not have is an error, not a wait for ever.
  await native.waitEvent(cg, 'nosuchkey' as 'frozen', 1, 1000).result.then(
    () => assert.unreachable('resolved'),
    (err: { code?: string }) => assert.is(err.code, 'ENOENT'),
  );
});

rootTest('waitEmptyOrKill: the waiting thread writes cgroup.kill at the deadline (\'killed\'), not before; a cgroup that empties first is \'done\' and not killed', async () => {
  const cg = makeCgroup(`snap.${uniqueSnapName('nat')}.kill.service`);
  const cgFd = fs.openSync(cg, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    // Ignores SIGTERM and everything else a stop could send: only SIGKILL ends it.
    const stubborn = native.spawnInCgroup('/bin/sh', ['sh', '-c', "trap '' TERM INT HUP QUIT USR1 USR2; while :; do sleep 1; done"], [], cgFd, [-1, -1, -1], false);
    const t0 = performance.now();
    const killed = await native.waitEmptyOrKill(cg, 150, 5000).result;
    const took = performance.now() - t0;
    assert.is(killed, 'killed');
    assert.ok(took >= 149 && took < 2000, `emptied ${took.toFixed(0)} ms after the wait began (kill at 150 ms)`);
    assert.is(await native.pidfdWait(stubborn.pidfd, 0).result, 'done');
    fs.closeSync(stubborn.pidfd);
  } finally {
    fs.closeSync(cgFd);
  }
  // Fresh cgroups from here: on some kernels (6.18) a process cloned into a
  // cgroup once cgroup.kill'ed is SIGKILLed at birth.
  const cg2 = makeCgroup(`snap.${uniqueSnapName('nat')}.kill2.service`);
  const cg2Fd = fs.openSync(cg2, fs.constants.O_RDONLY | fs.constants.O_DIRECTORY);
  try {
    // One that exits on its own within the time: 'done', and the kill was never written.
    const brief = native.spawnInCgroup('/bin/sleep', ['sleep', '0.1'], [], cg2Fd, [-1, -1, -1], false);
    assert.is(await native.waitEmptyOrKill(cg2, 2000, 5000).result, 'done');
    fs.closeSync(brief.pidfd);
    // Cancelled before the deadline: nothing is killed.
    const keeps = native.spawnInCgroup('/bin/sleep', ['sleep', '30'], [], cg2Fd, [-1, -1, -1], false);
    const w = native.waitEmptyOrKill(cg2, 100, 5000);
    w.cancel();
    assert.is(await w.result, 'cancelled');
    await new Promise((r) => setTimeout(r, 250));
    assert.is(await native.pidfdWait(keeps.pidfd, 0).result, 'timeout', 'alive after a cancelled wait');
    fs.writeFileSync(path.join(cg2, 'cgroup.kill'), '1');
    assert.is(await native.pidfdWait(keeps.pidfd, 5000).result, 'done');
    fs.closeSync(keeps.pidfd);
    native.reapChildren(new Int32Array());
    // A cgroup without cgroup.kill (here: none at all) is ENOENT from open.
    await native.waitEmptyOrKill(path.join(cg2, 'nosuch'), 10, 100).result.then(
      () => assert.unreachable('resolved'),
      (err: { code?: string; syscall?: string }) => assert.is(err.code, 'ENOENT'),
    );
  } finally {
    fs.closeSync(cg2Fd);
  }
});

rootTest('the addon\'s threads take the nice value of the thread that starts them (SCHED_RESET_ON_FORK would put them at 0)', async () => {
  const script = `
    const fs = require('fs'), os = require('os');
    const { native } = require(${JSON.stringify(NATIVE_JS)});
    native.resetNiceOnFork();
    try { os.setPriority(0, -3); } catch { console.log('skip'); process.exit(0); }
    const before = new Set(fs.readdirSync('/proc/self/task'));
    const w = native.waitEvent(process.argv[1], 'populated', 1, 2000); // an empty cgroup of its own: the wait stays open
    const nice = (t) => Number(fs.readFileSync('/proc/self/task/' + t + '/stat', 'utf8').split(') ')[1].split(' ')[16]);
    const fresh = fs.readdirSync('/proc/self/task').filter((t) => !before.has(t));
    // A thread takes its nice value first thing once it runs; under load it may not have run yet.
    const t0 = Date.now();
    const poll = () => {
      const values = fresh.map(nice);
      if (values.every((v) => v === -3) || Date.now() - t0 > 3000) {
        console.log(JSON.stringify(values));
        w.cancel();
      } else setTimeout(poll, 5);
    };
    poll();
  `;
  const dir = makeCgroup(`snap.${uniqueSnapName('nat')}.nice.service`);
  const r = spawnSync(process.execPath, ['-e', script, dir], { encoding: 'utf8' });
  assert.is(r.status, 0, r.stderr);
  const out = r.stdout.trim();
  if (out === 'skip') return; // not allowed to raise its priority: nothing to compare
  const nices = JSON.parse(out) as number[];
  assert.ok(nices.length >= 1, `the watching thread started (${out})`);
  assert.equal([...new Set(nices)], [-3], `new threads' nice values: ${out}`);
});

test.run();
