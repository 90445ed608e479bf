// fd-io.ts: blocking reads and writes on a file descriptor with write(2) and
// read(2) (fs.writeSync, fs.readSync), retried where the kernel asks
// (EAGAIN on a non-blocking descriptor, EINTR). For the CLI's short
// commands, which talk to the supervisor and write their answer without
// Node's net module and stdout stream.
import * as fs from 'node:fs';

const retry = (err: unknown) => {
  const code = (err as NodeJS.ErrnoException).code;
  return code === 'EAGAIN' || code === 'EINTR';
};

/** Writes all of `data` to `fd`; other errors (EPIPE, ...) are thrown. */
export function writeAllSync(fd: number, data: Buffer): void {
  for (let off = 0; off < data.length;) {
    try {
      off += fs.writeSync(fd, data, off);
    } catch (err) {
      if (!retry(err)) throw err;
    }
  }
}

/** One read into `buf`: the bytes read (0 at the end). */
export function readSomeSync(fd: number, buf: Buffer): number {
  for (;;) {
    try {
      return fs.readSync(fd, buf, 0, buf.length, null);
    } catch (err) {
      if (!retry(err)) throw err;
    }
  }
}
