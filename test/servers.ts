// servers.ts: snaps that wrap the real servers installed on the machine
// (Debian's nginx-light and haproxy, unmodified: their binaries are copied
// into the snap, as a snap would ship them), a wrk load runner, and the small
// things the real-server tests (test/real-servers.test.ts) and the refresh
// benchmark (bench/servers.bench.ts) share. Loopback only, free ports.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as http from 'node:http';
import * as path from 'node:path';
import { spawn, spawnSync } from 'node:child_process';

export const NGINX = '/usr/sbin/nginx';
export const HAPROXY = '/usr/sbin/haproxy';
export const WRK = spawnSync('sh', ['-c', 'command -v wrk'], { encoding: 'utf8' }).stdout.trim() || null;
export const haveNginx = fs.existsSync(NGINX);
export const haveHaproxy = fs.existsSync(HAPROXY);

/** A TCP port on 127.0.0.1 that was free a moment ago. */
export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const port = (s.address() as net.AddressInfo).port;
      s.close(() => resolve(port));
    });
  });
}

export interface NginxSnapOptions {
  name: string;
  version: string;
  port: number;
  /** What every answer says (to tell revisions apart). */
  body: string;
  /**
   * 'upgrade': daemon forking, refresh-mode sigusr2, drain SIGQUIT, pid file.
   * 'held': a held socket passed as NGINX="3;", refresh-mode restart, stop-mode sigquit.
   * 'plain': nginx binds its port itself, refresh-mode restart, stop-mode sigquit.
   */
  mode: 'upgrade' | 'held' | 'plain';
  /** A configuration nginx refuses (for the rollback). */
  brokenConfig?: boolean;
  stopTimeout?: string;
}

function copyBinary(from: string, dir: string): void {
  fs.mkdirSync(path.dirname(path.join(dir, from)), { recursive: true });
  fs.copyFileSync(from, path.join(dir, from));
  fs.chmodSync(path.join(dir, from), 0o755);
}

/** A snap directory holding Debian's nginx binary and a configuration answering `body` on 127.0.0.1:port. */
export function writeNginxSnap(dir: string, o: NginxSnapOptions): string {
  fs.mkdirSync(path.join(dir, 'meta'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'etc'), { recursive: true });
  copyBinary(NGINX, dir);
  const upgrade = o.mode === 'upgrade';
  const conf = [
    // Paths are relative to the prefix (-p $SNAP_COMMON/): pid file, logs, temp files.
    `daemon ${upgrade ? 'on' : 'off'};`,
    'master_process on;',
    'worker_processes 2;',
    'pid nginx.pid;',
    'error_log error.log notice;',
    'events { worker_connections 1024; }',
    'http {',
    '  access_log off;',
    '  client_body_temp_path tmp-body; proxy_temp_path tmp-proxy; fastcgi_temp_path tmp-fastcgi; uwsgi_temp_path tmp-uwsgi; scgi_temp_path tmp-scgi;',
    `  server { listen 127.0.0.1:${o.port}; location / { return 200 "${o.body}\\n"; } }`,
    o.brokenConfig ? '  this_directive_does_not_exist on;' : '',
    '}',
  ];
  fs.writeFileSync(path.join(dir, 'etc', 'nginx.conf'), conf.join('\n') + '\n');
  const app = [
    '  web:',
    '    command: usr/sbin/nginx -p $SNAP_COMMON/ -c $SNAP/etc/nginx.conf -e stderr',
    `    stop-timeout: ${o.stopTimeout ?? '10s'}`,
  ];
  if (upgrade) {
    app.push('    daemon: forking', '    refresh-mode: sigusr2', '    drain-signal: sigquit', '    stop-mode: sigquit', '    pid-file: $SNAP_COMMON/nginx.pid');
  } else if (o.mode === 'plain') {
    app.push('    daemon: simple', '    refresh-mode: restart', '    stop-mode: sigquit');
  } else {
    app.push(
      '    daemon: simple',
      '    refresh-mode: restart',
      '    stop-mode: sigquit',
      // nginx's own socket inheritance: fd 3 is the socket snapproc holds.
      '    environment:',
      '      NGINX: "3;"',
      '    plugs: [network-bind]', // snapd requires it for sockets
      '    sockets:',
      '      http:',
      `        listen-stream: 127.0.0.1:${o.port}`,
    );
  }
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), [`name: ${o.name}`, `version: '${o.version}'`, 'confinement: strict', 'apps:', ...app].join('\n') + '\n');
  return dir;
}

export interface HaproxySnapOptions {
  name: string;
  version: string;
  port: number;
  body: string;
}

/** A snap directory holding Debian's haproxy run master-worker (-W) in the foreground, answering `body` itself. */
export function writeHaproxySnap(dir: string, o: HaproxySnapOptions): string {
  fs.mkdirSync(path.join(dir, 'meta'), { recursive: true });
  fs.mkdirSync(path.join(dir, 'etc'), { recursive: true });
  copyBinary(HAPROXY, dir);
  const cfg = [
    'global',
    '  master-worker',
    '  nbthread 1',
    '  hard-stop-after 10s',
    'defaults',
    '  mode http',
    '  timeout connect 5s',
    '  timeout client 10s',
    '  timeout server 10s',
    'frontend web',
    `  bind 127.0.0.1:${o.port}`,
    `  http-request return status 200 content-type text/plain string "${o.body}"`,
  ];
  fs.writeFileSync(path.join(dir, 'etc', 'haproxy.cfg'), cfg.join('\n') + '\n');
  const app = [
    '  lb:',
    '    command: usr/sbin/haproxy -W -db -f $SNAP/etc/haproxy.cfg',
    '    daemon: simple',
    '    refresh-mode: sigusr2',
    '    stop-mode: sigusr1',
    '    stop-timeout: 10s',
  ];
  fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), [`name: ${o.name}`, `version: '${o.version}'`, 'confinement: strict', 'apps:', ...app].join('\n') + '\n');
  return dir;
}

/** One GET on a fresh connection: status and body, or the error's code. */
export function get(port: number, timeoutMs = 5000): Promise<{ status: number; body: string } | { error: string }> {
  return new Promise((resolve) => {
    const req = http.get({ host: '127.0.0.1', port, path: '/', agent: false, headers: { connection: 'close' }, timeout: timeoutMs }, (res) => {
      let body = '';
      res.setEncoding('utf8');
      res.on('data', (c) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: body.trim() }));
      res.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
    });
    req.on('timeout', () => req.destroy(new Error('ETIMEDOUT')));
    req.on('error', (e) => resolve({ error: (e as NodeJS.ErrnoException).code ?? e.message }));
  });
}

export interface WrkResult {
  requests: number;
  connectErrors: number;
  readErrors: number;
  writeErrors: number;
  timeouts: number;
  non2xx: number;
  /** Latency percentiles in ms. */
  p50: number;
  p99: number;
  raw: string;
}

function ms(text: string): number {
  const m = /^([\d.]+)(us|ms|s|m)$/.exec(text);
  if (!m) return NaN;
  const v = Number(m[1]);
  return m[2] === 'us' ? v / 1000 : m[2] === 'ms' ? v : m[2] === 's' ? v * 1000 : v * 60_000;
}

export function parseWrk(raw: string): WrkResult {
  const sock = /Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)/.exec(raw);
  const pct = (p: string) => {
    const m = new RegExp(`^\\s+${p}%\\s+(\\S+)`, 'm').exec(raw);
    return m ? ms(m[1]) : NaN;
  };
  return {
    requests: Number(/(\d+) requests in/.exec(raw)?.[1] ?? 0),
    connectErrors: Number(sock?.[1] ?? 0),
    readErrors: Number(sock?.[2] ?? 0),
    writeErrors: Number(sock?.[3] ?? 0),
    timeouts: Number(sock?.[4] ?? 0),
    non2xx: Number(/Non-2xx or 3xx responses: (\d+)/.exec(raw)?.[1] ?? 0),
    p50: pct('50'),
    p99: pct('99'),
    raw,
  };
}

/**
 * Runs wrk against 127.0.0.1:port for `seconds`, one request per connection
 * (Connection: close) unless `keepAlive`: every refused or reset connection
 * counts. Resolves with wrk's figures.
 */
export function runWrk(port: number, seconds: number, opts: { connections?: number; keepAlive?: boolean } = {}): Promise<WrkResult> {
  if (!WRK) throw new Error('wrk is not installed');
  const args = ['-t1', `-c${opts.connections ?? 4}`, `-d${seconds}s`, '--latency', '--timeout', '5s'];
  if (!opts.keepAlive) args.push('-H', 'Connection: close');
  args.push(`http://127.0.0.1:${port}/`);
  return new Promise((resolve, reject) => {
    const child = spawn(WRK, args, { stdio: ['ignore', 'pipe', 'pipe'] });
    let out = '';
    child.stdout.on('data', (c) => (out += c));
    child.stderr.on('data', (c) => (out += c));
    child.once('error', reject);
    child.once('exit', (code) => (code === 0 ? resolve(parseWrk(out)) : reject(new Error(`wrk exited ${code}: ${out}`))));
  });
}

/** Load in back-to-back wrk runs of `chunk` seconds while `during` runs, and one more after it; the figures summed (p99: the worst run). */
export async function loadDuring<T>(port: number, during: () => Promise<T>, opts: { chunk?: number; connections?: number; keepAlive?: boolean } = {}): Promise<{ value: T; load: WrkResult; runs: WrkResult[] }> {
  const runs: WrkResult[] = [];
  let done = false;
  const loop = (async () => {
    while (!done) runs.push(await runWrk(port, opts.chunk ?? 1, opts));
    runs.push(await runWrk(port, opts.chunk ?? 1, opts));
  })();
  // Load is on before the operation starts.
  await new Promise((r) => setTimeout(r, 200));
  let value: T;
  try {
    value = await during();
  } finally {
    done = true;
    await loop;
  }
  const sum = (k: keyof WrkResult) => runs.reduce((a, r) => a + (r[k] as number), 0);
  const load: WrkResult = {
    requests: sum('requests'), connectErrors: sum('connectErrors'), readErrors: sum('readErrors'), writeErrors: sum('writeErrors'),
    timeouts: sum('timeouts'), non2xx: sum('non2xx'), p50: Math.max(...runs.map((r) => r.p50)), p99: Math.max(...runs.map((r) => r.p99)), raw: runs.map((r) => r.raw).join('\n'),
  };
  return { value: value!, load, runs };
}

export function failed(r: WrkResult): number {
  return r.connectErrors + r.readErrors + r.writeErrors + r.timeouts + r.non2xx;
}

/** Lifts the read-only bind mounts a refresh left under a test's state root (deepest first), so that it can be removed. */
export function unmountUnder(dir: string): void {
  for (let i = 0; i < 10; i++) {
    const mounts = fs.readFileSync('/proc/self/mountinfo', 'utf8').split('\n').filter(Boolean)
      .map((l) => l.split(' ')[4].replace(/\\([0-7]{3})/g, (_, o: string) => String.fromCharCode(parseInt(o, 8))))
      .filter((m) => m === dir || m.startsWith(dir + '/'));
    if (mounts.length === 0) return;
    for (const m of new Set(mounts)) spawnSync('umount', ['-l', m], { stdio: 'ignore' });
  }
}
