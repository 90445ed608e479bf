// common.ts: what every CLI command shares and that costs nothing to load:
// the global options' type, the root check and the table printer. Kept apart so that a command loads
// only the modules it needs (the CLI's start-up is part of every command).
import * as fs from 'node:fs';
import { SnapprocError } from '../util/errors';
import { writeAllSync } from '../util/fd-io';

/** The options every command gets from the program (--root, --no-autostart). */
export interface GlobalOptions {
  root: string;
  /** Start a background supervisor when none answers (false with --no-autostart). */
  autostart?: boolean;
}

export function requireRoot(what: string): void {
  if (process.getuid && process.getuid() !== 0) {
    throw new SnapprocError('EPERM', `${what} needs root (it acts on processes of other users); run it as root`);
  }
}

/** Prints rows as aligned columns (the last column unpadded). */
export function printTable(rows: string[][]): void {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  for (const r of rows) process.stdout.write(r.map((c, i) => (i === r.length - 1 ? c : c.padEnd(widths[i]))).join('  ').trimEnd() + '\n');
}

/**
 * A reader that went away (`snapproc changes | head -3`) ends the command
 * quietly, as SIGPIPE ends a C program, instead of an EPIPE stack trace; Node
 * ignores SIGPIPE, so the write error arrives as an 'error' event. What the
 * command asked a supervisor to do goes on there. Every entry point calls it.
 */
export function exitQuietlyOnEpipe(): void {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'EPIPE') process.exit(0);
      process.exitCode = 1;
    });
  }
}

/**
 * Writes to standard output with write(2), not through process.stdout: the
 * short commands (fast.ts) never create Node's stdout stream (and what it
 * loads). A reader that went away ends the command quietly, as
 * exitQuietlyOnEpipe does for the stream.
 */
export function writeOut(text: string): void {
  try {
    writeAllSync(1, Buffer.from(text));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EPIPE') process.exit(0);
    throw err;
  }
}

/**
 * True when standard output is certainly no terminal (a file, a pipe, a
 * socket, /dev/null), told by fstat alone (node:tty would load node:net):
 * no live progress line is drawn there, and a command can block on its
 * request. A character device other than the memory devices (major 1:
 * /dev/null, /dev/zero) counts as a possible terminal.
 */
export function stdoutIsPlain(): boolean {
  try {
    const st = fs.fstatSync(1);
    return !st.isCharacterDevice() || Math.floor(st.rdev / 256) % 4096 === 1;
  } catch {
    return false;
  }
}

/** Ends the command after an error: one `error: ...` line, exit 2 for usage errors, else 1. */
export function exitWithError(err: unknown): never {
  const e = err as SnapprocError;
  const message = (e && e.message) || String(err);
  process.stderr.write(`error: ${message.split('\n').join('\n  ')}\n`);
  process.exit(e && e.code === 'ERR_SNAPPROC_USAGE' ? 2 : 1);
}

/** The options of a command that changes something through the supervisor. */
export interface MutateOptions {
  /** Start a supervisor when none answers (--no-autostart: false). */
  autostart?: boolean;
}
