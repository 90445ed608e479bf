// control-socket.ts: where a state root's control socket is and whether a
// supervisor answers on it. Apart from control.ts (the server) so that the
// CLI's client loads only this, not the server and the native addon: every
// command that talks to the supervisor pays for what its client loads.
import * as path from 'node:path';
import { SnapprocError, usageError } from '../util/errors';

/** The code of a request that reached no supervisor (as opposed to an error the supervisor answered). */
export const NO_SUPERVISOR = 'ERR_SNAPPROC_NO_SUPERVISOR';

/** sun_path holds 108 bytes with the NUL; Node would silently cut a longer path (another root's socket). */
export const MAX_SOCKET_PATH = 107;

/**
 * One message (a parsed line) a client read in answer to its request `id`: progress (given to
 * `onProgress`) and other requests' lines give undefined, the answer gives
 * { result }, and the supervisor's error is thrown as a SnapprocError.
 */
export function replyOf(msg: { id?: unknown; progress?: string; ok?: boolean; result?: unknown; error?: { code: string; message: string } }, id: number, onProgress?: (line: string) => void): { result: unknown } | undefined {
  if (msg.id !== id) return undefined;
  if (msg.progress !== undefined) {
    onProgress?.(msg.progress);
    return undefined;
  }
  if (msg.ok) return { result: msg.result };
  throw new SnapprocError(msg.error!.code, msg.error!.message);
}

export function socketPath(root: string): string {
  const file = path.join(root, 'run', 'snapproc.socket');
  if (Buffer.byteLength(file) > MAX_SOCKET_PATH) {
    throw usageError(`the state root ${root.length > 60 ? `${root.slice(0, 40)}...` : root} is too long for its control socket: ${Buffer.byteLength(file)} bytes in ${file.length > 60 ? '.../run/snapproc.socket' : file}, at most ${MAX_SOCKET_PATH} (use a shorter --root)`);
  }
  return file;
}

/** Whether a supervisor answers a ping on `socketFile` within `timeoutMs`. */
export function answers(socketFile: string, timeoutMs = 1000): Promise<boolean> {
  // node:net only here: the CLI's fast path (client-sync.ts) loads this module without it.
  const net = require('node:net') as typeof import('node:net');
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
