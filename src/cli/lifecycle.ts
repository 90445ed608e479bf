// lifecycle.ts: start, stop and restart of supervised snaps through the
// supervisor, one name, several, or --all. Its own small module so that the
// CLI's fast path (fast.ts) loads only what these commands need.
import type { GlobalOptions, MutateOptions } from './common';
import { callSync as call } from '../supervisor/client-sync';
import { parseSnapTarget } from '../snap/names';
import { requireRoot, writeOut } from './common';
import type { Targets } from '../supervisor/protocol';
import type { StopMode } from '../process/stop';

// Written with write(2) (writeOut), and the request blocks (callSync): these
// commands print plain lines, no live progress line, and load no stream.
function progress(line: string): void {
  writeOut(line + '\n');
}

/** The request parameters naming the targets: one snap (the form every supervisor answers), several, or all. */
function targetParams(targets: string[] | { all: true }): Targets {
  if (!Array.isArray(targets)) return { all: true };
  const parsed = targets.map((t) => {
    const { instance, app } = parseSnapTarget(t);
    return { snap: instance, app };
  });
  return parsed.length === 1 ? parsed[0] : { targets: parsed };
}

export async function lifecycleCommand(g: GlobalOptions, verb: 'start' | 'restart', targets: string[] | { all: true }, opts: MutateOptions): Promise<void> {
  const params = targetParams(targets);
  requireRoot(`snapproc ${verb}`);
  const started = (await call(g.root, verb, params, { autostart: opts.autostart, onProgress: progress })) as string[] | { queued: string };
  // From a hook during its change: it happens right after the hook.
  if (!Array.isArray(started)) return void writeOut(`${started.queued}\n`);
  writeOut(`${verb === 'start' ? 'started' : 'restarted'} ${started.join(', ') || 'nothing'}\n`);
}

export async function supervisedStop(g: GlobalOptions, targets: string[] | { all: true }, params: { mode?: string; timeout?: string }, opts: MutateOptions): Promise<void> {
  const results = (await call(g.root, 'stop', { ...targetParams(targets), mode: params.mode as StopMode | undefined, timeout: params.timeout }, { autostart: opts.autostart, onProgress: progress })) as Array<{
    service: string; mode: string; signal: string; target: string; mainPid: number | null; signalled: number; isForcefullyTerminated: boolean; stopped: boolean; durationMs: number;
  }> | { queued: string };
  if (!Array.isArray(results)) return void writeOut(`${results.queued}\n`);
  for (const r of results) {
    const what = r.target === 'main' ? (r.mainPid === null ? 'nothing sent, main process already gone' : `main process ${r.mainPid}`) : `${r.signalled} process${r.signalled === 1 ? '' : 'es'}`;
    const end = r.isForcefullyTerminated ? 'killed after timeout' : r.stopped ? 'stopped' : 'still running';
    writeOut(`stopped ${r.service} (${r.mode}): ${r.signal} -> ${what}; ${end} in ${r.durationMs.toFixed(0)} ms\n`);
  }
}

