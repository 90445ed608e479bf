// status-commands.ts: the read-only commands a person reaches for first, as
// `snap services`, `snap info` and `pm2 logs` have them: services (startup,
// current state, notes), info (revisions, apps, hooks, processes per
// revision) and logs of every snap interleaved by time. They read the state
// root and the cgroups directly: no supervisor needed, none started.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GlobalOptions } from './common';
import { printTable } from './common';
import { SnapprocError, usageError } from '../util/errors';
import { parseSnapTarget } from '../snap/names';
import { compareCodeUnits } from '../util/order';


export function servicesCommand(g: GlobalOptions, target: string | undefined, opts: { json?: boolean }): void {
  const { serviceStatus, serviceTable } = require('../supervisor/service-status') as typeof import('../supervisor/service-status');
  const { instance, app } = target === undefined ? { instance: undefined, app: undefined } : parseSnapTarget(target);
  if (instance !== undefined && !fs.existsSync(path.join(g.root, 'snap', instance, 'current'))) {
    throw new SnapprocError('ENOENT', `snap "${instance}" is not installed under ${g.root}`);
  }
  const rows = serviceStatus(g.root, instance, app);
  if (app !== undefined && rows.length === 0) throw new SnapprocError('ENOENT', `snap "${instance}" has no service "${app}"`);
  if (opts.json) {
    process.stdout.write(JSON.stringify({ services: rows }) + '\n');
    return;
  }
  if (rows.length === 0) {
    process.stdout.write(instance ? `snap "${instance}" has no services\n` : `no services under ${g.root}\n`);
    return;
  }
  printTable(serviceTable(rows));
}

interface InfoApp {
  name: string;
  kind: 'service' | 'app';
  daemon: string | null;
  command: string;
  refreshMode: string | null;
  stopMode: string | null;
  stopTimeout: string | null;
  restartCondition: string | null;
  installMode: string | null;
  before: string[];
  after: string[];
  sockets: string[];
}

export function infoCommand(g: GlobalOptions, name: string, opts: { json?: boolean }): void {
  parseSnapTarget(name, { app: 'none', what: 'info' });
  const { RevisionStore } = require('../snap/revision-store') as typeof import('../snap/revision-store');
  const { formatDuration } = require('../util/duration') as typeof import('../util/duration');
  const { snapProcesses } = require('../process/process-table') as typeof import('../process/process-table');
  const store = new RevisionStore(g.root);
  const snap = fs.existsSync(g.root) ? store.get(name) : undefined;
  if (!snap) throw new SnapprocError('ENOENT', `snap "${name}" is not installed under ${g.root}`);
  const rev = snap.current ?? snap.revisions[snap.revisions.length - 1]?.revision;
  const yaml = store.readSnapYaml(name, rev);
  const apps: InfoApp[] = Object.values(yaml.apps).map((a) => ({
    name: a.name,
    kind: a.isService ? 'service' : 'app',
    daemon: a.daemon ?? null,
    command: a.command,
    refreshMode: a.refreshMode ?? null,
    stopMode: a.isService ? a.stopMode : null,
    stopTimeout: a.isService ? formatDuration(a.stopTimeoutMs) : null,
    restartCondition: a.isService ? a.restartCondition : null,
    installMode: a.installMode ?? null,
    before: a.before,
    after: a.after,
    sockets: Object.values(a.sockets).map((s) => `${s.name}=${s.listenStream}`),
  }));
  const hooks = Object.keys(yaml.hooks);
  // Every process of the snap, by the revision it executes (mixed after an endure refresh).
  const byRevision: Record<string, Array<{ app: string; kind: string; pid: number; role: string }>> = {};
  let cgroupsReadable = true;
  try {
    for (const a of snapProcesses(name)) {
      for (const p of a.processes) (byRevision[p.revision ?? '?'] ??= []).push({ app: a.app, kind: a.kind, pid: p.pid, role: p.role });
    }
  } catch {
    cgroupsReadable = false;
  }
  const doc = {
    name,
    version: yaml.version,
    summary: yaml.summary ?? null,
    confinement: yaml.confinement,
    current: snap.current,
    revisions: snap.revisions.map((r) => ({ revision: r.revision, version: r.version, current: r.revision === snap.current })),
    apps,
    hooks,
    processes: byRevision,
  };
  if (opts.json) {
    process.stdout.write(JSON.stringify(doc) + '\n');
    return;
  }
  const out: string[] = [];
  out.push(`name:        ${name}`);
  if (yaml.summary) out.push(`summary:     ${yaml.summary}`);
  out.push(`version:     ${yaml.version}`);
  out.push(`confinement: ${yaml.confinement}`);
  out.push(`revisions:   ${snap.revisions.map((r) => `${r.revision} (${r.version})${r.revision === snap.current ? ' current' : ''}`).join(', ')}`);
  out.push('apps:');
  for (const a of apps) {
    const modes =
      a.kind === 'service'
        ? [`daemon=${a.daemon}`, `refresh-mode=${a.refreshMode}`, `stop-mode=${a.stopMode}`, `stop-timeout=${a.stopTimeout}`, `restart-condition=${a.restartCondition}`]
        : [`refresh-mode=${a.refreshMode ?? 'unset'}`];
    if (a.installMode) modes.push(`install-mode=${a.installMode}`);
    if (a.after.length) modes.push(`after=${a.after.join(',')}`);
    if (a.before.length) modes.push(`before=${a.before.join(',')}`);
    if (a.sockets.length) modes.push(`sockets=${a.sockets.join(',')}`);
    out.push(`  ${a.name}: ${a.kind} ${modes.join(' ')}`);
  }
  out.push(`hooks:       ${hooks.length ? hooks.join(', ') : 'none'}`);
  const revs = Object.keys(byRevision).sort();
  if (!cgroupsReadable) out.push('processes:   (cgroups not readable)');
  else if (revs.length === 0) out.push('processes:   none running');
  else {
    out.push('processes:');
    for (const r of revs) {
      const items = byRevision[r].map((p) => `${p.app}${p.kind === 'hook' ? ' (hook)' : ''} ${p.pid}${p.role === 'main' ? '' : ` (${p.role})`}`);
      out.push(`  ${r}${r === snap.current ? ' (current)' : ''}: ${items.join(', ')}`);
    }
  }
  process.stdout.write(out.join('\n') + '\n');
}

// ---------------------------------------------------------------- logs

/** snapproc's own lines carry their time: `[snapproc 2026-...Z] text`. */
const OWN_LINE = /^\[snapproc (\d{4}-\d\d-\d\dT[\d:.]+Z)\] /;

interface LogEntry {
  at: string;
  label: string;
  text: string;
  seq: number;
}

/**
 * The lines of one log with a time each: snapproc's own lines have theirs;
 * a service's own output takes the time of the snapproc line before it, or
 * failing one, the file's modification time (the best a plain file tells).
 */
function timedLines(label: string, text: string, seq: { n: number }, fallback: string): LogEntry[] {
  const lines = text.split('\n');
  if (lines[lines.length - 1] === '') lines.pop();
  const out: LogEntry[] = [];
  let last: string | null = null;
  // Lines before the first stamped one get the first stamp after them, or the mtime.
  const pending: LogEntry[] = [];
  for (const l of lines) {
    const m = OWN_LINE.exec(l);
    if (m) {
      last = m[1];
      for (const p of pending) p.at = last;
      pending.length = 0;
      out.push({ at: last, label, text: `snapproc: ${l.slice(m[0].length)}`, seq: seq.n++ });
    } else {
      const e = { at: last ?? fallback, label, text: l, seq: seq.n++ };
      if (last === null) pending.push(e);
      out.push(e);
    }
  }
  return out;
}

function readable(file: string): string {
  try {
    return fs.readFileSync(file, 'utf8');
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EACCES') {
      throw new SnapprocError('EACCES', `cannot read the logs: ${file} is not readable by uid ${process.getuid?.()} (logs are readable by root and the log's group)`);
    }
    throw err;
  }
}

/** Log files of one snap (one app), or of every snap: [file, label]. */
function logFiles(root: string, instance?: string, app?: string): Array<[string, string]> {
  const base = path.join(root, 'log');
  const snaps = instance !== undefined ? [instance] : (() => {
    try {
      return fs.readdirSync(base).sort();
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EACCES') throw new SnapprocError('EACCES', `cannot read the logs: ${base} is not readable by uid ${process.getuid?.()}`);
      return [];
    }
  })();
  const out: Array<[string, string]> = [];
  for (const s of snaps) {
    const dir = path.join(base, s);
    let entries: string[];
    try {
      if (!fs.statSync(dir).isDirectory()) continue;
      entries = fs.readdirSync(dir);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'EACCES') throw new SnapprocError('EACCES', `cannot read the logs: ${dir} is not readable by uid ${process.getuid?.()}`);
      if (instance !== undefined) throw new SnapprocError('ENOENT', `no logs of snap "${instance}" under ${root}`);
      continue;
    }
    for (const f of entries.filter((e) => e.endsWith('.log')).sort()) {
      const a = path.basename(f, '.log');
      if (app !== undefined && a !== app) continue;
      out.push([path.join(dir, f), `${s}.${a}`]);
    }
  }
  if (app !== undefined && out.length === 0) throw new SnapprocError('ENOENT', `no log of "${instance}.${app}" (${path.join(base, instance!, `${app}.log`)})`);
  return out;
}

/**
 * `logs [NAME[.APP]] [-n N] [-f]`: the last N lines of each log, merged in
 * time order (as `pm2 logs` shows every process), each line with its time
 * and, unless one app was named, the app it came from.
 */
export async function logsCommand(g: GlobalOptions, target: string | undefined, opts: { follow?: boolean; lines?: string }): Promise<void> {
  const n = opts.lines === undefined ? 10 : Number(opts.lines);
  if (!Number.isInteger(n) || n < 0) throw usageError(`invalid -n: expected a whole number of lines, got "${opts.lines}"`);
  const { instance, app } = target === undefined ? { instance: undefined, app: undefined } : parseSnapTarget(target);
  if (instance !== undefined && !fs.existsSync(path.join(g.root, 'log', instance))) throw new SnapprocError('ENOENT', `no logs of snap "${instance}" under ${g.root}`);
  const files = logFiles(g.root, instance, app);
  const one = app !== undefined;
  const seq = { n: 0 };
  const sizes = new Map<string, number>();
  let entries: LogEntry[] = [];
  for (const [file, label] of files) {
    const text = readable(file);
    sizes.set(file, Buffer.byteLength(text));
    const mtime = fs.statSync(file).mtime.toISOString();
    const lines = timedLines(label, text, seq, mtime);
    entries.push(...(n === 0 ? [] : lines.slice(-n)));
  }
  entries = entries.sort((a, b) => compareCodeUnits(a.at, b.at) || a.seq - b.seq);
  const print = (e: LogEntry) => process.stdout.write(`${e.at} ${one ? '' : `${e.label}: `}${e.text}\n`);
  for (const e of entries) print(e);
  if (!opts.follow) return;
  await new Promise<void>(() => {
    for (const [file, label] of files) {
      fs.watch(file, () => {
        let size: number;
        try {
          size = fs.statSync(file).size;
        } catch {
          return;
        }
        let from = sizes.get(file) ?? 0;
        if (size < from) from = 0; // rotated (truncated)
        if (size === from) return;
        const buf = Buffer.alloc(size - from);
        const fd = fs.openSync(file, 'r');
        fs.readSync(fd, buf, 0, buf.length, from);
        fs.closeSync(fd);
        sizes.set(file, size);
        // New output is stamped as it arrives (a following reader sees it now).
        const now = new Date().toISOString();
        for (const e of timedLines(label, buf.toString('utf8'), seq, now)) print(e);
      });
    }
  });
}
