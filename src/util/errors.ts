// errors.ts: the one error class snapproc throws. Shaped like Node's own
// system errors (`code`, `errno`, `syscall`, `path`) so callers can handle
// ENOENT from snapproc the way they handle it from `fs`; validation and usage
// problems use codes of their own (ERR_SNAPPROC_*).
import { constants } from 'node:os';
import { getSystemErrorName } from 'node:util';

/** errno names libuv does not know (it names only the errors it maps: EDEADLK came out as "Unknown system error -35"), from the OS's table. */
let errnoNames: Map<number, string> | undefined;
function errnoName(neg: number): string {
  let name: string | undefined;
  try {
    name = getSystemErrorName(neg);
  } catch {
    name = undefined;
  }
  if (name !== undefined && !name.startsWith('Unknown system error')) return name;
  if (!errnoNames) {
    errnoNames = new Map();
    for (const [key, value] of Object.entries(constants.errno)) if (!errnoNames.has(value)) errnoNames.set(value, key);
  }
  return errnoNames.get(-neg) ?? `E${-neg}`;
}

export interface SnapprocErrorOptions {
  errno?: number;
  syscall?: string;
  path?: string;
  pid?: number;
  cause?: unknown;
}

export class SnapprocError extends Error {
  readonly code: string;
  readonly errno?: number;
  readonly syscall?: string;
  readonly path?: string;
  readonly pid?: number;

  constructor(code: string, message: string, options: SnapprocErrorOptions = {}) {
    super(message, options.cause === undefined ? undefined : { cause: options.cause });
    this.name = 'SnapprocError';
    this.code = code;
    if (options.errno !== undefined) this.errno = options.errno;
    if (options.syscall !== undefined) this.syscall = options.syscall;
    if (options.path !== undefined) this.path = options.path;
    if (options.pid !== undefined) this.pid = options.pid;
  }

  /** A system error from a negative errno, worded as Node words its own. */
  static fromErrno(errno: number, syscall: string, detail: { path?: string; pid?: number; cause?: unknown } = {}): SnapprocError {
    const neg = errno > 0 ? -errno : errno;
    const code = errnoName(neg);
    const target = detail.path !== undefined ? ` '${detail.path}'` : detail.pid !== undefined ? ` ${detail.pid}` : '';
    return new SnapprocError(code, `${code}: ${syscall} failed${target}`, { errno: neg, syscall, ...detail });
  }
}

/** True for an error with the given system error code (ENOENT, ESRCH, ...). */
export function hasCode(err: unknown, ...codes: string[]): boolean {
  return typeof err === 'object' && err !== null && codes.includes((err as { code?: string }).code ?? '');
}

/** Usage and validation errors: one line, naming what was wrong. */
export function usageError(message: string): SnapprocError {
  return new SnapprocError('ERR_SNAPPROC_USAGE', message);
}
