// client.ts: talking to the supervisor over its control socket, and starting
// one in the background when none answers (as PM2 does), unless
// SNAPPROC_NO_AUTOSTART=1 or --no-autostart says not to.
import * as fs from 'node:fs';
import * as net from 'node:net';
import * as path from 'node:path';
import { SnapprocError } from '../util/errors';
import { answers, NO_SUPERVISOR, replyOf, socketPath } from './control-socket';
import { DAEMON_NODE_FLAGS, snapprocNodeEnv } from './node-flags';
import type { ControlMethod, ParamsOf, ResultOf } from './protocol';

export interface CallOptions {
  /** Start a supervisor in the background when none answers (default: unless SNAPPROC_NO_AUTOSTART=1). */
  autostart?: boolean;
  /** Called with each progress line. */
  onProgress?: (line: string) => void;
}

/** A known method's params and result (./protocol.ts); a name only known at run time (a `string`) gets a plain object and `unknown`. */
export type ParamsFor<M extends string> = M extends ControlMethod ? ParamsOf<M> : Record<string, unknown>;
export type ResultFor<M extends string> = M extends ControlMethod ? ResultOf<M> : unknown;

let nextId = 1;

export { NO_SUPERVISOR };

/**
 * Sends one request and resolves with its result (rejects with the
 * supervisor's error). Typed per method (./protocol.ts); a method name the
 * types do not know (a newer supervisor's) gives `unknown`.
 */
export function request<M extends string>(root: string, method: M, params?: ParamsFor<M>, onProgress?: (line: string) => void): Promise<ResultFor<M>>;
export function request(root: string, method: string, params: object = {}, onProgress?: (line: string) => void): Promise<unknown> {
  const file = socketPath(root);
  return new Promise((resolve, reject) => {
    const id = nextId++;
    const socket = net.connect(file);
    let buffer = '';
    let settled = false;
    socket.setEncoding('utf8');
    socket.once('connect', () => socket.write(JSON.stringify({ id, method, params }) + '\n'));
    socket.on('error', (err) => {
      if (settled) return;
      settled = true;
      reject(new SnapprocError(NO_SUPERVISOR, `no supervisor answers on ${file} (${(err as NodeJS.ErrnoException).code})`, { path: file, cause: err }));
    });
    socket.on('data', (chunk: string) => {
      buffer += chunk;
      let nl: number;
      while ((nl = buffer.indexOf('\n')) >= 0) {
        const msg = JSON.parse(buffer.slice(0, nl));
        buffer = buffer.slice(nl + 1);
        let reply: { result: unknown } | undefined;
        try {
          reply = replyOf(msg, id, onProgress);
        } catch (err) {
          settled = true;
          socket.end();
          reject(err);
          return;
        }
        if (!reply) continue;
        settled = true;
        socket.end();
        resolve(reply.result);
      }
    });
    socket.on('close', () => {
      if (!settled) reject(new SnapprocError('ECONNRESET', `the supervisor closed the connection on ${file} before answering`));
    });
  });
}

function autostartAllowed(options: CallOptions): boolean {
  if (options.autostart === false) return false;
  return process.env.SNAPPROC_NO_AUTOSTART !== '1';
}

/** Starts `snapproc daemon` detached, logging to R/log/snapproc.log, and waits until it answers. */
export async function startBackgroundSupervisor(root: string, timeoutMs = 10_000): Promise<void> {
  const logFile = path.join(root, 'log', 'snapproc.log');
  fs.mkdirSync(path.dirname(logFile), { recursive: true });
  const out = fs.openSync(logFile, 'a', 0o640);
  const bin = path.resolve(__dirname, '..', '..', '..', 'bin', 'snapproc');
  // Loaded only here: most commands find a supervisor.
  const { spawn } = require('node:child_process') as typeof import('node:child_process');
  const child = spawn(process.execPath, [...DAEMON_NODE_FLAGS, bin, '--root', root, 'daemon'], { detached: true, stdio: ['ignore', out, out], env: snapprocNodeEnv() });
  fs.closeSync(out);
  child.unref();
  let exited: number | null = null;
  child.once('exit', (code) => (exited = code ?? 1));
  const deadline = Date.now() + timeoutMs;
  while (Date.now() < deadline) {
    if (await answers(socketPath(root), 500)) return;
    if (exited !== null) break;
    await new Promise((r) => setTimeout(r, 25));
  }
  const tail = fs.readFileSync(logFile, 'utf8').trim().split('\n').slice(-1)[0] ?? '';
  throw new SnapprocError('ERR_SNAPPROC_NO_SUPERVISOR', `could not start a supervisor for ${root}${tail ? `: ${tail}` : ''} (see ${logFile})`);
}

/** A request to the supervisor, starting one first if allowed and none answers. */
export function call<M extends string>(root: string, method: M, params?: ParamsFor<M>, options?: CallOptions): Promise<ResultFor<M>>;
export async function call(root: string, method: string, params: object = {}, options: CallOptions = {}): Promise<unknown> {
  try {
    return await request(root, method as string, params as Record<string, unknown>, options.onProgress);
  } catch (err) {
    // Only a connection that failed means "no supervisor": an answered error (ENOENT for an unknown snap) is just that.
    if ((err as SnapprocError).code !== NO_SUPERVISOR) throw err;
    if (!autostartAllowed(options)) {
      throw new SnapprocError(NO_SUPERVISOR, `no supervisor answers on ${socketPath(root)}; start one with \`snapproc --root ${root} daemon\` (autostart is off)`);
    }
    await startBackgroundSupervisor(root);
    return request(root, method as string, params as Record<string, unknown>, options.onProgress);
  }
}
