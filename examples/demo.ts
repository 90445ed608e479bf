// demo.ts: snapproc's main job on the bundled example snap, end to end, with
// a throw-away state root and cgroup parent (removed at the end, also on
// failure): install `hello`, put a client on its server socket, refresh it to
// a new revision, show who endured, who was handed over and who restarted,
// and that no connection was refused; then remove it.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as os from 'node:os';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';
import { findCgroup2Mount } from '../src/kernel/cgroupfs';

const REPO = path.resolve(__dirname, '..', '..');
const CLI = path.join(REPO, 'bin', 'snapproc');
const EXAMPLE = path.join(REPO, 'examples', 'hello');

function fail(message: string): never {
  process.stderr.write(`demo: ${message}\n`);
  process.exit(1);
}

if (process.getuid?.() !== 0) fail('the demo needs root (it creates cgroups and bind mounts)');
const mount = findCgroup2Mount();
if (!mount) fail('no cgroup v2 mounted');

const root = fs.mkdtempSync(path.join(os.tmpdir(), 'snapproc-demo-'));
const cgroupParent = path.join(mount, `snapproc-demo-${process.pid}`);
const env = { ...process.env, SNAPPROC_ROOT: root, SNAPPROC_CGROUP_PARENT: cgroupParent, SNAPPROC_NO_AUTOSTART: '0' };

/** Runs the CLI without blocking this process's event loop (the client keeps going meanwhile). */
function snapproc(...args: string[]): Promise<string> {
  process.stdout.write(`\n$ snapproc ${args.join(' ')}\n`);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI, ...args], { env, stdio: ['ignore', 'pipe', 'inherit'] });
    let out = '';
    child.stdout.on('data', (d: Buffer) => {
      out += d;
      process.stdout.write(d);
    });
    child.on('exit', (code) => (code === 0 ? resolve(out) : reject(new Error(`snapproc ${args.join(' ')} exited with ${code}`))));
  });
}

let cleanedUp = false;
function cleanup(): void {
  if (cleanedUp) return;
  cleanedUp = true;
  spawnSync(process.execPath, [CLI, 'remove', 'hello', '--purge'], { env, stdio: 'ignore' });
  spawnSync(process.execPath, ['-e', `require(${JSON.stringify(path.join(REPO, 'dist/src/supervisor/client.js'))}).request(${JSON.stringify(root)}, 'shutdown', {}).catch(() => {})`], { env, stdio: 'ignore' });
  if (fs.existsSync(cgroupParent)) {
    try { fs.writeFileSync(path.join(cgroupParent, 'cgroup.kill'), '1'); } catch { /* empty */ }
    const deadline = Date.now() + 5000;
    while (Date.now() < deadline && /populated 1/.test(fs.readFileSync(path.join(cgroupParent, 'cgroup.events'), 'utf8'))) spawnSync('sleep', ['0.05']);
    const rm = (d: string) => { for (const e of fs.readdirSync(d, { withFileTypes: true })) if (e.isDirectory()) rm(path.join(d, e.name)); fs.rmdirSync(d); };
    try { rm(cgroupParent); } catch { /* reported by the hook */ }
  }
  spawnSync('umount', ['-R', '-l', root], { stdio: 'ignore' });
  fs.rmSync(root, { recursive: true, force: true });
}

/** A client that connects to the server socket without pause and counts what happens. */
function startClient(socket: string) {
  const stats = { ok: 0, refused: 0, errors: 0, revisions: new Map<string, number>() };
  let running = true;
  const loop = () => {
    if (!running) return;
    const c = net.connect(socket);
    let data = '';
    c.on('data', (d) => (data += d));
    c.on('end', () => {
      const rev = /hello from (\S+)/.exec(data)?.[1] ?? '?';
      stats.ok++;
      stats.revisions.set(rev, (stats.revisions.get(rev) ?? 0) + 1);
      setImmediate(loop);
    });
    c.on('error', (e: NodeJS.ErrnoException) => {
      if (e.code === 'ECONNREFUSED' || e.code === 'ENOENT') stats.refused++;
      else stats.errors++;
      setTimeout(loop, 5);
    });
  };
  loop();
  return { stats, stop: () => (running = false) };
}

// `npm run example | head`: once the reader is gone (EPIPE), clean up and end
// quietly, as a Unix filter does; Ctrl-C, a closed terminal or a kill clean up too.
process.stdout.on('error', (err: NodeJS.ErrnoException) => {
  if (err.code !== 'EPIPE') throw err;
  cleanup();
  process.exit(0);
});
for (const [sig, code] of [['SIGINT', 130], ['SIGTERM', 143], ['SIGHUP', 129]] as const) {
  process.on(sig, () => {
    cleanup();
    process.exit(code);
  });
}

async function main(): Promise<void> {
  await snapproc('validate', EXAMPLE);
  await snapproc('install', EXAMPLE);
  await snapproc('ps', 'hello');
  const socket = path.join(root, 'var', 'snap', 'hello', 'common', 'server.sock');
  const client = startClient(socket);
  await new Promise((r) => setTimeout(r, 500));

  // Revision 2: the same snap with a new version.
  const v2 = fs.mkdtempSync(path.join(os.tmpdir(), 'snapproc-demo-v2-'));
  try {
    fs.cpSync(EXAMPLE, v2, { recursive: true });
    const yamlFile = path.join(v2, 'meta', 'snap.yaml');
    fs.writeFileSync(yamlFile, fs.readFileSync(yamlFile, 'utf8').replace("version: '1.0'", "version: '2.0'"));
    await snapproc('install', v2); // over an installed snap: a refresh
  } finally {
    fs.rmSync(v2, { recursive: true, force: true });
  }
  await new Promise((r) => setTimeout(r, 1500));
  client.stop();
  const ps = JSON.parse(await snapproc('ps', 'hello', '--json')) as { apps: Array<{ app: string; processes: Array<{ pid: number; role: string; revision: string | null }> }> };
  await snapproc('ps', 'hello');
  await snapproc('run', 'hello.hello');
  const worker = fs.readFileSync(path.join(root, 'var', 'snap', 'hello', 'common', 'worker.out'), 'utf8').trim().split('\n').slice(-1)[0];
  const hooks = fs.readFileSync(path.join(root, 'var', 'snap', 'hello', 'common', 'hooks.log'), 'utf8');

  const s = client.stats;
  process.stdout.write(`\nclient during the refresh: ${s.ok} requests answered, ${s.refused} refused, ${s.errors} errors; answers by revision: ${[...s.revisions].map(([r, n]) => `${r}: ${n}`).join(', ')}\n`);
  process.stdout.write(`worker (endured, still x1): ${worker}\n`);
  process.stdout.write(`hooks ran: ${hooks.trim().split('\n').map((l) => l.split(' ').slice(1).join(' ')).join('; ')}\n`);
  const revOf = (app: string) => [...new Set(ps.apps.find((a) => a.app === app)?.processes.filter((p) => p.role === 'main').map((p) => p.revision))];
  const checks: Array<[string, boolean]> = [
    ['no connection refused during the refresh', s.refused === 0 && s.errors === 0 && s.ok > 0],
    ['the server answers from x2 after the hand-over', revOf('server').join() === 'x2' && (s.revisions.get('x2') ?? 0) > 0],
    ['the worker endured (its main process still runs x1)', revOf('worker').join() === 'x1'],
    ['the ticker restarted into x2', revOf('ticker').join() === 'x2'],
    ['the old $SNAP_DATA is read-only for the enduring worker', /data read-only/.test(worker)],
  ];
  await snapproc('changes', 'hello');
  await snapproc('remove', 'hello', '--purge');
  process.stdout.write('\n');
  for (const [what, ok] of checks) process.stdout.write(`${ok ? 'ok  ' : 'FAIL'} ${what}\n`);
  if (checks.some(([, ok]) => !ok)) throw new Error('the demo did not go as it should');
}

main()
  .then(() => cleanup())
  .catch((err) => {
    cleanup();
    fail((err as Error).message);
  });
