// node-flags.ts: the V8 flags the supervisor runs with, and the one re-exec
// that applies them when it was started without. V8's young generation is
// sized for throughput (semi-spaces of up to 16 MiB each): a long-running
// supervisor that allocates a little for every request kept ~30 MiB of it
// resident and its RSS rose over a soak from 62 to ~90 MiB (then fell with a
// full GC, and rose again). With 1 MiB semi-spaces its RSS stays within a
// few MiB; a scavenge of its small heap costs well under a millisecond.
// V8 reads these flags only at start-up (v8.setFlagsFromString is too late),
// hence the execve, which keeps the PID: the daemon may be a container's PID 1.
//
// --no-opt: no TurboFan. The daemon's JavaScript is glue between syscalls
// (the interpreter and Sparkplug's baseline code run it); the optimizing
// compiler paged ~4 MiB more of node's code in and kept its compiled code
// and zones: with 100 snaps x 10 services running, RSS 66.7 -> 59.9 MiB,
// while a refresh (72.7 vs 72.3 ms), a restart (36.7 vs 37.6), list and ps
// of all 1000 and start --all cost the same within this machine's noise
// (two rounds each, alternated). --jitless saved 3 MiB more but made the
// refresh 15% slower.
export const DAEMON_NODE_FLAGS = ['--max-semi-space-size=1', '--no-opt'] as const;

// And one V8 reads at every full GC, so it is set at run time: the old
// generation may grow by 30% over what a full GC left, not by V8's default
// of up to 4x for a program whose GCs cost little. With small semi-spaces,
// each request's short-lived objects that outlive two scavenges land in the
// old generation; V8 let ~15 MiB of them pile up (57 more 256 KiB heap
// pages) before its next full GC, and a 1000-operation soak ended 61 -> 82-85
// MiB. With it: 61 -> 73-75 MiB, and a full GC of the ~10 MiB heap costs ~2 ms.
export const DAEMON_V8_RUNTIME_FLAGS = ['--heap-growing-percent=30'] as const;

/** Sets DAEMON_V8_RUNTIME_FLAGS (a V8 that lacks one says so on stderr and goes on). */
export function applyDaemonRuntimeFlags(): void {
  // Loaded here: the CLI's client imports this file for the flags alone.
  const v8 = require('node:v8') as typeof import('node:v8');
  for (const flag of DAEMON_V8_RUNTIME_FLAGS) v8.setFlagsFromString(flag);
}

/**
 * The environment a snapproc Node process is started with: `env` without
 * NODE_EXTRA_CA_CERTS, which Node 20 parses at every start-up (~70 ms and
 * 1.5 MiB for the 144 certificates of a Debian system) while snapproc makes
 * no TLS connection. bin/snapproc's shell line drops it the same way.
 */
export function snapprocNodeEnv(env: NodeJS.ProcessEnv = process.env): NodeJS.ProcessEnv {
  if (env.NODE_EXTRA_CA_CERTS === undefined) return env;
  const { NODE_EXTRA_CA_CERTS: _dropped, ...rest } = env;
  return rest;
}

let fullGc: (() => void) | null | undefined;
/** The RSS after the last compaction, and the growth over it that makes the next one worth it. */
let compactedRss = 0;
const COMPACT_GROWTH = 3 << 20;

/**
 * A full GC, then malloc_trim(0), once the daemon is idle after requests
 * (Supervisor's onIdle) that grew its RSS. A start or stop of 1000
 * services leaves the old generation ~5-9 MiB above what it keeps alive
 * (heap-growing-percent lets it grow by 30% before V8's next full GC, which
 * an idle daemon never reaches), and malloc keeps the freed buffers of
 * the requests, the file reads and the addon's threads in its arenas.
 * Costs ~10-20 ms, once per burst of requests.
 */
export function compactMemory(): void {
  // Only when the RSS grew by COMPACT_GROWTH since the last time: requests
  // on one snap every ~500 ms would pay a full GC of the whole heap (1000
  // services: ~15 MiB) at every other one; a start or stop of everything
  // leaves more than that to give back.
  const rss = process.memoryUsage.rss();
  if (rss < compactedRss + COMPACT_GROWTH) return;
  if (fullGc === undefined) {
    try {
      // Exposes gc() to this process only from here on (Node has no other way to ask for a full GC).
      (require('node:v8') as typeof import('node:v8')).setFlagsFromString('--expose-gc');
      fullGc = (require('node:vm') as typeof import('node:vm')).runInNewContext('gc') as () => void;
    } catch {
      fullGc = null;
    }
  }
  try {
    if (fullGc) {
      // Compacting: a full GC alone frees objects but keeps every 256 KiB
      // page that still holds one; with 1000 services the heap kept ~21 MiB
      // of pages resident for ~14 MiB of live objects.
      const v8 = require('node:v8') as typeof import('node:v8');
      v8.setFlagsFromString('--compact-on-every-full-gc');
      try {
        fullGc();
      } finally {
        v8.setFlagsFromString('--no-compact-on-every-full-gc');
      }
    }
    const { native } = require('../kernel/native') as typeof import('../kernel/native');
    native.mallocTrim();
    compactedRss = process.memoryUsage.rss();
  } catch {
    // an addon without malloc_trim, or no gc: memory stays as V8 and malloc leave it
  }
}

/** Whether this process already runs with the flags (or with a semi-space size of the user's own choosing, which keeps the user's other choices too). */
function hasFlags(execArgv: readonly string[]): boolean {
  return execArgv.some((a) => a.startsWith('--max-semi-space-size')) || /--max-semi-space-size/.test(process.env.NODE_OPTIONS ?? '');
}

/**
 * Re-executes this Node process (same PID, same arguments, the environment of snapprocNodeEnv)
 * with DAEMON_NODE_FLAGS, unless it has them or SNAPPROC_DAEMON_REEXEC=0.
 * Call it first thing, before anything is opened or started. Returns only
 * when no re-exec is wanted (or it failed: then the daemon runs as it is).
 */
export function reexecWithDaemonFlags(): void {
  if (hasFlags(process.execArgv) || process.env.SNAPPROC_DAEMON_REEXEC === '0' || !process.argv[1]) return;
  const env = Object.entries(snapprocNodeEnv()).map(([k, v]) => `${k}=${v}`);
  try {
    // Loaded here, not at the top: the CLI's client imports this file for the flags alone.
    const { native } = require('../kernel/native') as typeof import('../kernel/native');
    native.execve(process.execPath, [process.argv0 || process.execPath, ...DAEMON_NODE_FLAGS, ...process.execArgv, process.argv[1], ...process.argv.slice(2)], env);
  } catch (err) {
    process.stderr.write(`snapproc: running without ${DAEMON_NODE_FLAGS.join(' ')}: ${(err as Error).message}\n`);
  }
}
