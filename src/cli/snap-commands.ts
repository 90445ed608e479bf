// snap-commands.ts: the CLI commands about installed snaps. Those that change
// them go through the supervisor (started in the background if none
// answers); list, logs, validate and run read or act locally.
import * as fs from 'node:fs';
import * as path from 'node:path';
import type { GlobalOptions, MutateOptions } from './common';
import { call } from '../supervisor/client';
import { SnapprocError, usageError } from '../util/errors';
import { checkInstanceName, parseSnapTarget } from '../snap/names';
import { printTable, requireRoot } from './common';
import { progressPrinter } from './progress';
import { readSnapYamlFrom } from '../snap/snap-from-path';

function progress(line: string): void {
  process.stdout.write(line + '\n');
}

export { installCommand, refreshCommand } from './change-commands';

export { lifecycleCommand, supervisedStop } from './lifecycle';

export function validateCommand(source: string, opts: { json?: boolean } = {}): void {
  // Loaded here, not at the top: the yaml parser is the heaviest module, and only validate needs it in the CLI.
  const { SnapYamlError, summarizeSnap, validateSnapYaml } = require('../snap/snap-yaml') as typeof import('../snap/snap-yaml');
  // The same rules as install: special files, setuid bits, links out of the snap, hooks (../snap/snap-from-path.ts).
  let r: ReturnType<typeof validateSnapYaml> | undefined;
  const read = readSnapYamlFrom(source, {
    withTree(tree, { text, file, hooks }) {
      // default-configure is no hook snapproc runs, but snapd's rule about it counts the file too.
      const dc = fs.existsSync(path.join(tree, 'meta', 'hooks', 'default-configure')) ? ['default-configure'] : [];
      r = validateSnapYaml(text, file, { hookFiles: [...hooks, ...dc] });
      if (!r.ok) return;
      // meta/hooks/ too (snapd's implicit hooks), checked as an install checks them, for a directory and a .snap alike.
      for (const hook of hooks) r.snap.hooks[hook as keyof typeof r.snap.hooks] ??= { name: hook as never };
      // snapd's container check: every command exists in the snap and is executable (a .snap's unpacked files too).
      const { checkCommands } = require('../snap/command-check') as typeof import('../snap/command-check');
      checkCommands(tree, r.snap, source);
    },
  });
  // A bare snap.yaml has no tree: validated alone.
  r ??= validateSnapYaml(read.text, read.file, { hookFiles: read.hooks });
  const file = read.file;
  if (!r.ok) {
    if (opts.json) {
      process.stdout.write(JSON.stringify({ ok: false, source: file, problems: r.problems }) + '\n');
      process.exitCode = 1;
      return;
    }
    // One problem: one line. Several: a heading line and one line each.
    throw new SnapYamlError(r.problems, file);
  }
  const snap = r.snap;
  if (opts.json) {
    process.stdout.write(JSON.stringify({ ok: true, source: file, snap }) + '\n');
    return;
  }

  process.stdout.write(summarizeSnap(snap) + '\n');
}

export function listCommand(g: GlobalOptions, opts: { json?: boolean }): void {
  const { RevisionStore } = require('../snap/revision-store') as typeof import('../snap/revision-store');
  const store = new RevisionStore(g.root);
  const snaps = fs.existsSync(g.root) ? store.list() : [];
  if (opts.json) {
    process.stdout.write(JSON.stringify({ snaps }) + '\n');
    return;
  }
  if (snaps.length === 0) {
    process.stdout.write(`no snaps installed under ${g.root}\n`);
    return;
  }
  const rows = [['NAME', 'VERSION', 'REV', 'REVISIONS']];
  for (const s of snaps) rows.push([s.name, s.current ? (s.revisions.find((r) => r.revision === s.current)?.version ?? '-') : '-', s.current ?? '-', s.revisions.map((r) => r.revision).join(',')]);
  printTable(rows);
}

export async function runCommand(g: GlobalOptions, target: string, args: string[]): Promise<void> {
  const { instance, app } = parseSnapTarget(target, { app: 'required', what: 'run' }) as { instance: string; app: string };
  requireRoot('snapproc run');
  // As `snap run` during a refresh: wait for it to end rather than race it.
  const { waitUninhibited } = await import('../snap/inhibit');
  await waitUninhibited(g.root, instance, (what) => process.stderr.write(`snap "${instance}" is being ${what === 'revert' ? 'reverted' : 'refreshed'}; waiting for it to finish...\n`));
  const { RevisionStore } = await import('../snap/revision-store');
  const store = new RevisionStore(g.root);
  const rev = store.currentRevision(instance);
  if (!rev) throw new SnapprocError('ENOENT', `snap "${instance}" is not installed under ${g.root}`);
  const yaml = store.readSnapYaml(instance, rev);
  if (!yaml.apps[app]) throw new SnapprocError('ENOENT', `snap "${instance}" has no app "${app}"`);
  const { appScopeName } = await import('../process/cgroup-names');
  const { defaultCgroupParent } = await import('../supervisor/supervisor');
  const { launcherPath } = await import('../kernel/native');
  const { spawn } = await import('node:child_process');
  // Where the supervisor of this root makes its cgroups (remove looks there), else the default.
  let parent: string;
  try {
    parent = fs.readFileSync(path.join(g.root, 'run', 'cgroup-parent'), 'utf8').trim() || defaultCgroupParent();
  } catch {
    parent = defaultCgroupParent();
  }
  const scope = path.join(parent, appScopeName(instance, app));
  fs.mkdirSync(scope, { recursive: true });
  const child = spawn(launcherPath(), ['--cgroup', scope, '--resolve', g.root, instance, app, '--', ...args], { stdio: 'inherit' });
  // The terminal's SIGINT reaches the app too (same process group); do not die before it.
  const ignore = () => {};
  process.on('SIGINT', ignore);
  const { signalVerified } = await import('../kernel/signal-guard');
  process.on('SIGTERM', () => {
    if (child.pid !== undefined) signalVerified(child.pid, 15, scope);
  });
  const { code, signal } = await new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) => child.once('exit', (c, s) => resolve({ code: c, signal: s })));
  try {
    fs.rmdirSync(scope); // left in place if the app left processes behind
  } catch {
    /* busy */
  }
  const { constants } = await import('node:os');
  process.exit(signal ? 128 + (constants.signals[signal] ?? 0) : code ?? 1);
}

export async function daemonCommand(g: GlobalOptions): Promise<void> {
  requireRoot('snapproc daemon');
  const flags = await import('../supervisor/node-flags');
  flags.reexecWithDaemonFlags();
  flags.applyDaemonRuntimeFlags();
  const { Supervisor } = await import('../supervisor/supervisor');
  const sup = new Supervisor({ root: g.root, exitOnShutdown: true, nice: -5, onIdle: flags.compactMemory });
  await sup.start();
  // Runs until a signal or the shutdown request ends it.
}



export async function revertCommand(g: GlobalOptions, name: string): Promise<void> {
  checkInstanceName(name);
  requireRoot('snapproc revert');
  const p = progressPrinter(`revert ${name}`);
  const r = await (async () => {
    try {
      return (await call(g.root, 'revert', { snap: name }, { autostart: g.autostart, onProgress: p.line })) as { from: string; to: string };
    } finally {
      p.done();
    }
  })();
  process.stdout.write(`${name} reverted from ${r.from} to ${r.to}\n`);
}

export async function removeCommand(g: GlobalOptions, name: string, opts: { purge?: boolean }): Promise<void> {
  checkInstanceName(name);
  requireRoot('snapproc remove');
  const p = progressPrinter(`remove ${name}`);
  try {
    await call(g.root, 'remove', { snap: name, purge: !!opts.purge }, { autostart: g.autostart, onProgress: p.line });
  } finally {
    p.done();
  }
  process.stdout.write(`${name} removed\n`);
}

export async function changesCommand(g: GlobalOptions, name: string | undefined, opts: { json?: boolean }): Promise<void> {
  if (name !== undefined) checkInstanceName(name);
  const { loadChanges } = await import('../supervisor/change-runner');
  const changes = loadChanges(g.root).filter((c) => name === undefined || c.snap === name);
  if (opts.json) {
    process.stdout.write(JSON.stringify({ changes }) + '\n');
    return;
  }
  if (changes.length === 0) {
    process.stdout.write('no changes\n');
    return;
  }
  for (const c of changes) {
    process.stdout.write(`${c.id}  ${c.kind} ${c.snap}  ${c.status}${c.error ? `: ${c.error}` : ''}\n`);
    for (const st of c.steps) process.stdout.write(`  ${st.status.padEnd(7)} ${st.name}${st.ms !== undefined ? ` ${st.ms} ms` : ''}${st.summary ? `: ${st.summary}` : ''}${st.error ? ` (${st.error})` : ''}\n`);
  }
}
