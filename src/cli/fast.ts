// fast.ts: `start`, `stop`, `restart`, `refresh` and `install` without
// loading commander and the whole program: these are what a person (or a
// script looping over snaps) waits for most, and through the CLI Node's own
// start-up and module loading are most of their time. Only the plain forms
// are taken here ([--root DIR] [--no-autostart] VERB [--all] [--mode M]
// [--timeout T] NAME..., refresh NAME [--from PATH] [--ignore-running],
// install PATH); anything else (help, an unknown option, a name that is not
// installed for stop) goes to the full program, which gives the same answers
// with its usage messages.

const VERBS = new Set(['start', 'stop', 'restart']);

interface ChangeParsed {
  root?: string;
  autostart?: boolean;
  verb: 'refresh' | 'install';
  arg: string;
  from?: string;
  ignoreRunning: boolean;
}

/** The program's options before the command (--root DIR, --root=DIR, --no-autostart), and where the command starts. */
function parseGlobals(argv: string[]): { i: number; root?: string; autostart?: boolean } {
  let i = 0;
  let root: string | undefined;
  let autostart: boolean | undefined;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (a === '--root' && i + 1 < argv.length) root = argv[++i];
    else if (a.startsWith('--root=')) root = a.slice('--root='.length);
    else if (a === '--no-autostart') autostart = false;
    else break;
  }
  return { i, root, autostart };
}

/** `refresh NAME [--from PATH] [--ignore-running]` and `install PATH`, or null for the full program. */
export function parseFastChange(argv: string[]): ChangeParsed | null {
  const { root, autostart, i: first } = parseGlobals(argv);
  let i = first;
  const verb = argv[i++];
  if (verb !== 'refresh' && verb !== 'install') return null;
  const p: ChangeParsed = { root, autostart, verb, arg: '', ignoreRunning: false };
  const positional: string[] = [];
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (!a.startsWith('-')) positional.push(a);
    else if (verb === 'refresh' && a === '--from' && i + 1 < argv.length && !argv[i + 1].startsWith('-')) p.from = argv[++i];
    else if (verb === 'refresh' && a.startsWith('--from=') && a.length > '--from='.length) p.from = a.slice('--from='.length);
    else if (verb === 'refresh' && a === '--ignore-running') p.ignoreRunning = true;
    else return null;
  }
  if (positional.length !== 1) return null;
  p.arg = positional[0];
  return p;
}

interface Parsed {
  root?: string;
  autostart?: boolean;
  verb: 'start' | 'stop' | 'restart';
  names: string[];
  all: boolean;
  mode?: string;
  timeout?: string;
}

/** The plain forms, or null for anything the full program should parse. */
export function parseFast(argv: string[]): Parsed | null {
  const { root, autostart, i: first } = parseGlobals(argv);
  let i = first;
  const verb = argv[i++];
  if (!VERBS.has(verb)) return null;
  const p: Parsed = { root, autostart, verb: verb as Parsed['verb'], names: [], all: false };
  let onlyNames = false;
  for (; i < argv.length; i++) {
    const a = argv[i];
    if (onlyNames || !a.startsWith('-')) p.names.push(a);
    else if (a === '--') onlyNames = true;
    else if (a === '--all') p.all = true;
    else if (verb === 'stop' && (a === '--mode' || a === '--timeout') && i + 1 < argv.length) p[a === '--mode' ? 'mode' : 'timeout'] = argv[++i];
    else if (verb === 'stop' && (a.startsWith('--mode=') || a.startsWith('--timeout='))) p[a.startsWith('--mode=') ? 'mode' : 'timeout'] = a.slice(a.indexOf('=') + 1);
    else return null;
  }
  if (p.all === (p.names.length > 0)) return null; // both or neither: the program's usage error
  return p;
}

/** Runs a plain refresh or install; false when the full program must handle argv. */
async function fastChange(p: ChangeParsed): Promise<boolean> {
  // To a terminal, the live progress line writes through process.stdout (see change-commands.ts).
  const common = require('./common') as typeof import('./common');
  if (!common.stdoutIsPlain()) common.exitQuietlyOnEpipe();
  try {
    const { resolveRoot } = require('../snap/state-root') as typeof import('../snap/state-root');
    const g = { root: resolveRoot(p.root), autostart: p.autostart };
    const { installCommand, refreshCommand } = require('./change-commands') as typeof import('./change-commands');
    if (p.verb === 'install') await installCommand(g, p.arg, g);
    else await refreshCommand(g, p.arg, { from: p.from, ignoreRunning: p.ignoreRunning });
  } catch (err) {
    (require('./common') as typeof import('./common')).exitWithError(err);
  }
  return true;
}

/** Runs a plain start/stop/restart/refresh/install; false when the full program must handle argv. */
export async function fastMain(argv: string[]): Promise<boolean> {
  const change = parseFastChange(argv);
  if (change) return fastChange(change);
  const p = parseFast(argv);
  if (!p) return false;
  // No exitQuietlyOnEpipe(): these commands write with write(2) (common.ts writeOut), which ends quietly on EPIPE itself.
  try {
    const { resolveRoot } = require('../snap/state-root') as typeof import('../snap/state-root');
    const g = { root: resolveRoot(p.root), autostart: p.autostart };
    if (p.verb === 'stop') {
      // Snaps snapproc does not supervise are stopped by their cgroups: the full program knows how.
      const { isInstalled } = require('./installed') as typeof import('./installed');
      if (!p.all && !p.names.every((n) => isInstalled(g.root, n))) return false;
      if (p.mode !== undefined || p.timeout !== undefined) return false; // validated by the full program
      const { requireRoot } = require('./common') as typeof import('./common');
      requireRoot('snapproc stop');
    }
    const { lifecycleCommand, supervisedStop } = require('./lifecycle') as typeof import('./lifecycle');
    const targets = p.all ? { all: true as const } : p.names;
    if (p.verb === 'stop') await supervisedStop(g, targets, {}, g);
    else await lifecycleCommand(g, p.verb, targets, g);
  } catch (err) {
    (require('./common') as typeof import('./common')).exitWithError(err);
  }
  return true;
}
