// client-sync.ts: one request to the supervisor that blocks until it is
// answered, over a socket read and written with plain read(2)/write(2),
// without Node's net module, its streams and the event loop. For the CLI's
// short commands (start, stop, restart, and refresh or install printing to
// no terminal): through the CLI Node's own start-up is most of their time,
// and loading net and its streams is a good part of what a command adds to
// it; a command waits for its answer anyway. The same protocol as request()
// in client.ts, and the same errors: a connection that fails is
// NO_SUPERVISOR, and callSync() then hands over to call() (which can start a
// supervisor).
import * as fs from 'node:fs';
import { SnapprocError } from '../util/errors';
import { readSomeSync, writeAllSync } from '../util/fd-io';
import { native } from '../kernel/native';
import { NO_SUPERVISOR, replyOf, socketPath } from './control-socket';
import type { CallOptions, ParamsFor, ResultFor } from './client';

/** request() (client.ts), blocking: the result, or the supervisor's error thrown. */
export function requestSync<M extends string>(root: string, method: M, params?: ParamsFor<M>, onProgress?: (line: string) => void): ResultFor<M>;
export function requestSync(root: string, method: string, params: object = {}, onProgress?: (line: string) => void): unknown {
  const file = socketPath(root);
  let fd: number;
  try {
    fd = native.connectUnix(file);
  } catch (err) {
    throw new SnapprocError(NO_SUPERVISOR, `no supervisor answers on ${file} (${(err as SnapprocError).code})`, { path: file, cause: err });
  }
  try {
    const id = 1;
    writeAllSync(fd, Buffer.from(JSON.stringify({ id, method, params }) + '\n'));
    const chunk = Buffer.alloc(64 * 1024);
    let rest = Buffer.alloc(0);
    for (;;) {
      let n: number;
      try {
        n = readSomeSync(fd, chunk);
      } catch (err) {
        throw new SnapprocError('ECONNRESET', `the supervisor closed the connection on ${file} before answering (${(err as NodeJS.ErrnoException).code})`, { cause: err });
      }
      if (n === 0) throw new SnapprocError('ECONNRESET', `the supervisor closed the connection on ${file} before answering`);
      // Split on newline bytes, decoded line by line (a character may straddle two reads).
      rest = rest.length ? Buffer.concat([rest, chunk.subarray(0, n)]) : Buffer.from(chunk.subarray(0, n));
      let nl: number;
      while ((nl = rest.indexOf(10)) >= 0) {
        const reply = replyOf(JSON.parse(rest.subarray(0, nl).toString('utf8')), id, onProgress);
        rest = rest.subarray(nl + 1);
        if (reply) return reply.result;
      }
    }
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * call() (client.ts) for a command line: the request blocks; when no
 * supervisor answers, call() takes over (it starts one if allowed, or says
 * why not), loading what it needs only then.
 */
export async function callSync<M extends string>(root: string, method: M, params?: ParamsFor<M>, options: CallOptions = {}): Promise<ResultFor<M>> {
  try {
    return requestSync(root, method, params, options.onProgress);
  } catch (err) {
    if ((err as SnapprocError).code !== NO_SUPERVISOR) throw err;
  }
  const { call } = require('./client') as typeof import('./client');
  return call(root, method, params, options);
}
