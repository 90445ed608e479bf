// change-commands.ts: install and refresh from the command line, the changes
// a person waits for most after start/stop/restart. Their own small module,
// like lifecycle.ts, so that the CLI's fast path (fast.ts) runs them without
// loading commander, the YAML parser and the rest of the program.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GlobalOptions } from './common';
import { call } from '../supervisor/client';
import { SnapprocError } from '../util/errors';
import { checkInstanceName } from '../snap/names';
import { requireRoot } from './common';
import { progressPrinter } from './progress';

export interface MutateOptions {
  autostart?: boolean;
}

export async function installCommand(g: GlobalOptions, source: string, opts: MutateOptions): Promise<void> {
  requireRoot('snapproc install');
  const abs = path.resolve(source);
  if (!fs.existsSync(abs)) throw new SnapprocError('ENOENT', `no such file or directory: ${source}`);
  const p = progressPrinter(`install ${source}`);
  const r = await (async () => {
    try {
      return (await call(g.root, 'install', { path: abs }, { autostart: opts.autostart, onProgress: p.line })) as { snap: string; revision?: string; started?: string[]; from?: string; to?: string };
    } finally {
      p.done();
    }
  })();
  if (r.to !== undefined) return; // a refresh: its last progress line said it all
  process.stdout.write(`${r.snap} ${r.revision} installed${r.started?.length ? `; started ${r.started.join(', ')}` : ''}\n`);
}

export async function refreshCommand(g: GlobalOptions, name: string, opts: { from?: string; ignoreRunning?: boolean }): Promise<void> {
  checkInstanceName(name);
  requireRoot('snapproc refresh');
  const from = opts.from === undefined ? undefined : path.resolve(opts.from);
  if (from !== undefined && !fs.existsSync(from)) throw new SnapprocError('ENOENT', `no such file or directory: ${opts.from}`);
  const p = progressPrinter(`refresh ${name}`);
  try {
    await call(g.root, 'refresh', { snap: name, from, ignoreRunning: !!opts.ignoreRunning }, { autostart: g.autostart, onProgress: p.line });
  } finally {
    p.done();
  }
}
