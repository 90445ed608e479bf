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
import { SnapprocError } from '../util/errors';
import { native } from '../kernel/native';
import { answers, MAX_SOCKET_PATH, socketPath } from './control-socket';

export { answers, MAX_SOCKET_PATH, socketPath };

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

/**
 * Limits that keep the supervisor answering while a local user misbehaves
 * (the socket is 0666). Root's connections are exempt from the connection
 * counts (root is who must get through); every connection has the line cap,
 * the slow-line and idle timeouts and the unread-output cap.
 */
export interface ControlLimits {
  /** A request line longer than this (bytes, without its newline) is answered with an error and the connection closed. */
  maxLineBytes: number;
  /** A line must be complete within this long after its first byte (a slow sender holds nothing for ever). */
  lineTimeoutMs: number;
  /** A connection with no request in flight and nothing sent for this long is closed. */
  idleTimeoutMs: number;
  /** Responses a client leaves unread beyond this many bytes close its connection. */
  maxUnreadBytes: number;
  /** Requests one connection may have in flight; reading pauses beyond it. */
  maxInFlight: number;
  /** Open connections per non-root uid, and of all non-root users together. */
  maxConnectionsPerUid: number;
  maxUnprivilegedConnections: number;
}

export const DEFAULT_CONTROL_LIMITS: ControlLimits = {
  maxLineBytes: 1 << 20,
  lineTimeoutMs: 10_000,
  idleTimeoutMs: 60_000,
  maxUnreadBytes: 16 << 20,
  maxInFlight: 8,
  maxConnectionsPerUid: 32,
  maxUnprivilegedConnections: 128,
};

export const REQUEST_TOO_LARGE = 'ERR_SNAPPROC_REQUEST_TOO_LARGE';

export class ControlServer {
  private server: net.Server | null = null;
  private readonly limits: ControlLimits;
  private readonly perUid = new Map<number, number>();
  private unprivileged = 0;
  private readonly connections = new Set<net.Socket>();

  constructor(
    readonly path: string,
    private methods: Record<string, Method>,
    limits: Partial<ControlLimits> = {},
  ) {
    this.limits = { ...DEFAULT_CONTROL_LIMITS, ...limits };
  }

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
    // Idle connections would keep the process alive; a connection waiting for an answer gets it first.
    for (const socket of this.connections) if ((socket as { inFlight?: number }).inFlight === 0) socket.end();
    try {
      fs.rmSync(this.path, { force: true });
    } catch {
      // already gone
    }
  }

  /** Open connections: all, and of non-root users. */
  connectionCount(): { all: number; unprivileged: number } {
    return { all: this.connections.size, unprivileged: this.unprivileged };
  }

  private serve(socket: net.Socket): void {
    const peer = peerOf(socket);
    const limits = this.limits;
    const privileged = peer.uid === 0;
    if (!privileged) {
      const mine = this.perUid.get(peer.uid) ?? 0;
      if (mine >= limits.maxConnectionsPerUid || this.unprivileged >= limits.maxUnprivilegedConnections) {
        const message = mine >= limits.maxConnectionsPerUid
          ? `too many connections from uid ${peer.uid} (at most ${limits.maxConnectionsPerUid})`
          : `too many connections from unprivileged users (at most ${limits.maxUnprivilegedConnections})`;
        socket.on('error', () => socket.destroy());
        socket.end(JSON.stringify({ id: null, ok: false, error: { code: 'ERR_SNAPPROC_BUSY', message } }) + '\n');
        setTimeout(() => socket.destroy(), 1000).unref();
        return;
      }
      this.perUid.set(peer.uid, mine + 1);
      this.unprivileged += 1;
    }
    this.connections.add(socket);
    const state = socket as net.Socket & { inFlight?: number };
    state.inFlight = 0;
    socket.once('close', () => {
      this.connections.delete(socket);
      if (!privileged) {
        const n = (this.perUid.get(peer.uid) ?? 1) - 1;
        if (n <= 0) this.perUid.delete(peer.uid);
        else this.perUid.set(peer.uid, n);
        this.unprivileged -= 1;
      }
      clearTimeout(lineTimer);
    });
    socket.on('error', () => socket.destroy());

    // Framing: the bytes of the line so far as a list of chunks, searched for
    // a newline only where they arrive, so the work is linear in the input.
    let parts: Buffer[] = [];
    let partBytes = 0;
    let lineTimer: NodeJS.Timeout | undefined;
    let closing = false;
    const refuse = (code: string, message: string) => {
      if (closing) return;
      closing = true;
      parts = [];
      socket.pause();
      socket.end(JSON.stringify({ id: null, ok: false, error: { code, message } }) + '\n');
      // A client that does not read its error does not hold the connection.
      setTimeout(() => socket.destroy(), 1000).unref();
    };
    const armLineTimer = () => {
      if (lineTimer !== undefined || partBytes === 0) return;
      lineTimer = setTimeout(() => refuse('ETIMEDOUT', `request line not completed within ${limits.lineTimeoutMs} ms`), limits.lineTimeoutMs);
      lineTimer.unref();
    };
    const disarmLineTimer = () => {
      clearTimeout(lineTimer);
      lineTimer = undefined;
    };
    socket.setTimeout(limits.idleTimeoutMs, () => {
      if (state.inFlight === 0) socket.destroy();
    });
    // A client that does not read its answers gets no more requests handled
    // until it does (reading pauses at the first write the kernel could not
    // take), so unread answers cannot pile up; what is in flight may still
    // answer, up to maxUnreadBytes.
    let writeBlocked = false;
    const send = (obj: unknown) => {
      if (socket.destroyed || closing) return;
      const flushed = socket.write(JSON.stringify(obj) + '\n');
      if (socket.writableLength > limits.maxUnreadBytes) {
        socket.destroy();
        return;
      }
      if (!flushed && !writeBlocked) {
        writeBlocked = true;
        socket.pause();
        socket.once('drain', () => {
          writeBlocked = false;
          proceed();
        });
      }
    };
    // Requests beyond maxInFlight wait: the rest of the chunk is held and the
    // socket paused, so a client pipelining thousands of requests gets them
    // answered a few at a time instead of all at once in memory.
    let held: Buffer | null = null;
    const dispatch = (line: string) => {
      state.inFlight! += 1;
      void this.handle(send, line, peer).finally(() => {
        state.inFlight! -= 1;
        proceed();
      });
    };
    /** Goes on reading (the held rest first) once below maxInFlight and not blocked on writing. */
    const proceed = () => {
      if (closing || socket.destroyed || writeBlocked) return;
      if (held !== null) {
        // On the next turn of the event loop, not in this chain of
        // promises: other connections (root's) get their turn in between.
        if (!resumeScheduled) {
          resumeScheduled = true;
          setImmediate(() => {
            resumeScheduled = false;
            if (closing || socket.destroyed || writeBlocked || held === null || state.inFlight! >= limits.maxInFlight) return;
            const rest = held;
            held = null;
            take(rest);
            if (held === null && !writeBlocked && state.inFlight! < limits.maxInFlight) socket.resume();
          });
        }
      } else if (state.inFlight! < limits.maxInFlight) {
        socket.resume();
      }
    };
    let resumeScheduled = false;
    const take = (chunk: Buffer) => {
      let start = 0;
      for (;;) {
        if (state.inFlight! >= limits.maxInFlight || writeBlocked) {
          if (start < chunk.length) held = chunk.subarray(start);
          socket.pause();
          return;
        }
        const nl = chunk.indexOf(10, start);
        if (nl < 0) break;
        const piece = chunk.subarray(start, nl);
        const lineBytes = partBytes + piece.length;
        if (lineBytes > limits.maxLineBytes) return refuse(REQUEST_TOO_LARGE, `request line longer than ${limits.maxLineBytes} bytes`);
        const line = (parts.length === 0 ? piece : Buffer.concat([...parts, piece], lineBytes)).toString('utf8');
        parts = [];
        partBytes = 0;
        disarmLineTimer();
        start = nl + 1;
        if (line.trim()) dispatch(line);
      }
      if (start < chunk.length) {
        const rest = chunk.subarray(start);
        if (partBytes + rest.length > limits.maxLineBytes) return refuse(REQUEST_TOO_LARGE, `request line longer than ${limits.maxLineBytes} bytes`);
        // Copied: a slice would keep the whole 64 KiB chunk alive for a few bytes.
        parts.push(Buffer.from(rest));
        partBytes += rest.length;
        armLineTimer();
      }
    };
    socket.on('data', (chunk: Buffer) => {
      if (closing) return;
      if (held !== null) {
        // Arrived after the pause took effect: keep it behind what is held.
        held = Buffer.concat([held, chunk]);
        return;
      }
      take(chunk);
    });
  }

  private async handle(send: (obj: unknown) => void, line: string, peer: { uid: number; pid: number }): Promise<void> {
    let id: unknown = null;
    try {
      let req: { id?: unknown; method?: unknown; params?: unknown };
      try {
        req = JSON.parse(line);
      } catch {
        throw new SnapprocError('ERR_SNAPPROC_BAD_REQUEST', 'request is not valid JSON');
      }
      if (typeof req !== 'object' || req === null || Array.isArray(req)) throw new SnapprocError('ERR_SNAPPROC_BAD_REQUEST', 'request must be a JSON object');
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
