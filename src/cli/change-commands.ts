// change-commands.ts: install and refresh from the command line, the changes
// a person waits for most after start/stop/restart. Their own small module,
// like lifecycle.ts, so that the CLI's fast path (fast.ts) runs them without
// loading commander, the YAML parser and the rest of the program.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GlobalOptions, MutateOptions } from './common';
import { SnapprocError } from '../util/errors';
import { checkInstanceName } from '../snap/names';
import { requireRoot, stdoutIsPlain, writeOut } from './common';
import { progressPrinter, type Progress } from './progress';
import type { CallOptions } from '../supervisor/client';

/**
 * To no terminal (a file, a pipe): the progress lines plainly, with write(2),
 * and a blocking request (client-sync.ts), which loads neither node:net nor
 * Node's stdout stream. On a terminal, the live progress line (progress.ts),
 * redrawn while the event loop waits for the answer.
 */
function channel(what: string): { p: Progress; call: (root: string, method: string, params: Record<string, unknown>, options: CallOptions) => Promise<unknown>; print: (text: string) => void } {
  if (stdoutIsPlain()) {
    const { callSync } = require('../supervisor/client-sync') as typeof import('../supervisor/client-sync');
    return { p: { line: (text) => writeOut(text + '\n'), done: () => {} }, call: callSync, print: writeOut };
  }
  const { call } = require('../supervisor/client') as typeof import('../supervisor/client');
  return { p: progressPrinter(what), call, print: (text) => void process.stdout.write(text) };
}

export async function installCommand(g: GlobalOptions, source: string, opts: MutateOptions): Promise<void> {
  requireRoot('snapproc install');
  const abs = path.resolve(source);
  if (!fs.existsSync(abs)) throw new SnapprocError('ENOENT', `no such file or directory: ${source}`);
  const { p, call, print } = channel(`install ${source}`);
  const r = await (async () => {
    try {
      return (await call(g.root, 'install', { path: abs }, { autostart: opts.autostart, onProgress: p.line })) as { snap: string; revision?: string; started?: string[]; from?: string; to?: string };
    } finally {
      p.done();
    }
  })();
  if (r.to !== undefined) return; // a refresh: its last progress line said it all
  print(`${r.snap} ${r.revision} installed${r.started?.length ? `; started ${r.started.join(', ')}` : ''}\n`);
}

export async function refreshCommand(g: GlobalOptions, name: string, opts: { from?: string; ignoreRunning?: boolean }): Promise<void> {
  checkInstanceName(name);
  requireRoot('snapproc refresh');
  const from = opts.from === undefined ? undefined : path.resolve(opts.from);
  if (from !== undefined && !fs.existsSync(from)) throw new SnapprocError('ENOENT', `no such file or directory: ${opts.from}`);
  const { p, call } = channel(`refresh ${name}`);
  try {
    await call(g.root, 'refresh', { snap: name, from, ignoreRunning: !!opts.ignoreRunning }, { autostart: g.autostart, onProgress: p.line });
  } finally {
    p.done();
  }
}
