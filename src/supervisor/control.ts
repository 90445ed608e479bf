// control.ts: the supervisor's control API on a unix socket
// (R/run/snapproc.socket). One JSON object per line each way:
//   request   {"id": 1, "method": "start", "params": {...}}
//   progress  {"id": 1, "progress": "[3/9] stop services of x1 ..."}   (zero or more)
//   response  {"id": 1, "ok": true, "result": ...}
//          or {"id": 1, "ok": false, "error": {"code": "...", "message": "..."}}
// Reads are open to every local user (the socket is 0666); every request
// that changes state is checked against the peer's credentials (SO_PEERCRED)
// and refused unless the peer is root.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { SnapprocError, usageError } from '../util/errors';
import { native } from '../kernel/native';

export interface RequestContext {
  uid: number;
  pid: number;
  progress(line: string): void;
}

export type Handler = (params: Record<string, unknown>, ctx: RequestContext) => Promise<unknown> | unknown;

export interface Method {
  /** True for methods that only read state (open to every user). */
  read: boolean;
  handler: Handler;
}

/** sun_path holds 108 bytes with the NUL; Node would silently cut a longer path (another root's socket). */
export const MAX_SOCKET_PATH = 107;

export function socketPath(root: string): string {
  const file = path.join(root, 'run', 'snapproc.socket');
  if (Buffer.byteLength(file) > MAX_SOCKET_PATH) {
    throw usageError(`the state root ${root.length > 60 ? `${root.slice(0, 40)}...` : root} is too long for its control socket: ${Buffer.byteLength(file)} bytes in ${file.length > 60 ? '.../run/snapproc.socket' : file}, at most ${MAX_SOCKET_PATH} (use a shorter --root)`);
  }
  return file;
}

function peerOf(socket: net.Socket): { uid: number; pid: number } {
  const fd = (socket as unknown as { _handle?: { fd?: number } })._handle?.fd;
  if (typeof fd !== 'number' || fd < 0) return { uid: -1, pid: 0 };
  try {
    const c = native.peerCred(fd);
    return { uid: c.uid, pid: c.pid };
  } catch {
    return { uid: -1, pid: 0 };
  }
}

export class ControlServer {
  private server: net.Server | null = null;

  constructor(
    readonly path: string,
    private methods: Record<string, Method>,
  ) {}

  /** Listens; a stale socket file (nobody answering) is replaced. */
  async listen(): Promise<void> {
    fs.mkdirSync(path.dirname(this.path), { recursive: true, mode: 0o755 });
    if (fs.existsSync(this.path)) {
      if (await answers(this.path)) {
        throw new SnapprocError('EADDRINUSE', `another supervisor answers on ${this.path}`);
      }
      fs.rmSync(this.path, { force: true });
    }
    const server = net.createServer((socket) => this.serve(socket));
    await new Promise<void>((resolve, reject) => {
      server.once('error', reject);
      server.listen(this.path, () => {
        server.off('error', reject);
        resolve();
      });
    });
    fs.chmodSync(this.path, 0o666);
    this.server = server;
  }

  close(): void {
    this.server?.close();
    this.server = null;
    try {
      fs.rmSync(this.path, { force: true });
    } catch {
      // already gone
    }
  }

  private serve(socket: net.Socket): void {
    const peer = peerOf(socket);
    let buffer = '';
    socket.setEncoding('utf8');
    socket.on('error', () => socket.destroy());
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const line = buffer.slice(0, nl);
        buffer = buffer.slice(nl + 1);
        if (line.trim()) void this.handle(socket, line, peer);
      }
    });
  }

  private async handle(socket: net.Socket, line: string, peer: { uid: number; pid: number }): Promise<void> {
    const send = (obj: unknown) => {
      if (!socket.destroyed) socket.write(JSON.stringify(obj) + '\n');
    };
    let id: unknown = null;
    try {
      let req: { id?: unknown; method?: unknown; params?: unknown };
      try {
        req = JSON.parse(line);
      } catch {
        throw new SnapprocError('ERR_SNAPPROC_BAD_REQUEST', 'request is not valid JSON');
      }
      id = req.id ?? null;
      const method = typeof req.method === 'string' ? this.methods[req.method] : undefined;
      if (!method) throw new SnapprocError('ERR_SNAPPROC_BAD_REQUEST', `unknown method ${JSON.stringify(req.method)}; methods: ${Object.keys(this.methods).join(', ')}`);
      // Checked on every request: the peer may not be root even on a socket root opened.
      if (!method.read && peer.uid !== 0) {
        throw new SnapprocError('EPERM', `permission denied: "${req.method}" changes state and needs root (caller uid ${peer.uid})`);
      }
      const params = (req.params && typeof req.params === 'object' ? req.params : {}) as Record<string, unknown>;
      const result = await method.handler(params, { ...peer, progress: (p) => send({ id, progress: p }) });
      send({ id, ok: true, result: result ?? null });
    } catch (err) {
      const e = err as SnapprocError;
      send({ id, ok: false, error: { code: e.code ?? 'ERR_SNAPPROC', message: e.message ?? String(err) } });
    }
  }
}

/** True when something answers a ping on the socket. */
export function answers(socketFile: string, timeoutMs = 1000): Promise<boolean> {
  return new Promise((resolve) => {
    const s = net.connect(socketFile);
    const timer = setTimeout(() => {
      s.destroy();
      resolve(false);
    }, timeoutMs);
    s.once('error', () => {
      clearTimeout(timer);
      resolve(false);
    });
    s.once('connect', () => s.write(JSON.stringify({ id: 0, method: 'ping' }) + '\n'));
    s.once('data', () => {
      clearTimeout(timer);
      s.destroy();
      resolve(true);
    });
  });
}
