// launch-files.ts: launch files, one per app and hook of each revision, read by the
// snapproc-exec launcher. They hold the command line and the environment of
// that revision, so that whoever executes the launcher (the supervisor, or a
// service re-executing itself during a graceful refresh) gets the revision
// `current` points at then, not a stale environment it inherited.
//   R/state/launch/NAME/REV/APP.launch       apps and services
//   R/state/launch/NAME/REV/hook.HOOK.launch hooks
import * as fs from 'node:fs';
import * as path from 'node:path';
import { randomBytes } from 'node:crypto';
import { fsyncDirs, fsyncTree, writeFileAtomic, type FlushQueue } from '../util/atomic-file';
import { SnapprocError } from '../util/errors';
import { launcherPath, native } from '../kernel/native';
import { refreshSignal, type AppInfo, type SnapYaml } from './snap-yaml';

export interface LaunchSpec {
  argv: string[];
  env: Record<string, string>;
  cwd?: string;
}

export function launchDir(root: string, instance: string, revision: string): string {
  return path.join(root, 'state', 'launch', instance, revision);
}

/**
 * Renames a retired revision's launch directory to a trash name beside it
 * (`.REV.trash-HEX`, as RevisionStore.retireRevision does with its files),
 * for RevisionStore.sweepTrash to delete after the change has answered; a
 * refresh's prune spent ~1 ms unlinking the files on its path. Gone already: nothing to do.
 */
export function retireLaunchDir(root: string, instance: string, revision: string): void {
  const dir = launchDir(root, instance, revision);
  try {
    fs.renameSync(dir, path.join(path.dirname(dir), `.${revision}.trash-${randomBytes(4).toString('hex')}`));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'ENOENT') throw err;
  }
}

export function launchFile(root: string, instance: string, revision: string, app: string): string {
  return path.join(launchDir(root, instance, revision), `${app}.launch`);
}

export function hookLaunchFile(root: string, instance: string, revision: string, hook: string): string {
  return path.join(launchDir(root, instance, revision), `hook.${hook}.launch`);
}

/** Expands $VAR and ${VAR} from `env`; unknown variables expand to ''. */
export function expandVars(text: string, env: Record<string, string>): string {
  return text.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_, a: string | undefined, b: string | undefined) => env[(a ?? b)!] ?? '');
}

/**
 * A snap.yaml command line as argv: words split on white space, variables
 * expanded, the program taken relative to $SNAP unless it already names a
 * path under it.
 */
export function commandArgv(command: string, env: Record<string, string>): string[] {
  const words = command.trim().split(/\s+/).map((w) => expandVars(w, env));
  if (words.length === 0 || words[0] === '') throw new SnapprocError('ERR_SNAPPROC_INVALID_COMMAND', `empty command`);
  if (!path.isAbsolute(words[0])) words[0] = path.join(env.SNAP, words[0]);
  return words;
}

export function renderLaunchFile(spec: LaunchSpec): string {
  const lines: string[] = [];
  for (const [k, v] of Object.entries(spec.env)) {
    if (/[\n\0]/.test(k + v)) throw new SnapprocError('ERR_SNAPPROC_INVALID_ENV', `environment variable ${k} contains a newline`);
    lines.push(`env ${k}=${v}`);
  }
  if (spec.cwd) lines.push(`cwd ${spec.cwd}`);
  for (const a of spec.argv) lines.push(`arg ${a}`);
  return lines.join('\n') + '\n';
}

export function writeLaunchFile(file: string, spec: LaunchSpec, options: { durable?: boolean } = {}): void {
  fs.mkdirSync(path.dirname(file), { recursive: true });
  writeFileAtomic(file, renderLaunchFile(spec), 0o644, options);
}

/** `command-chain` in front of a command line: each program gets the rest as its arguments (snapd's snap-exec). */
export function chainArgv(chain: readonly string[] | undefined, argv: string[], env: Record<string, string>): string[] {
  return [...(chain ?? []).map((c) => commandArgv(c, env)[0]), ...argv];
}

/**
 * The environment a signal-mode service's command line is expanded in: $SNAP
 * and $SNAP_DATA through the `current` links, so that a server re-executing
 * its own argv[0] (nginx's binary upgrade, HAProxy's -W reload) runs the
 * revision that is current then, with that revision's files in its arguments
 * (SPEC 6). The environment itself stays the revision's own.
 */
export function throughCurrent(env: Record<string, string>): Record<string, string> {
  const cur = (dir: string | undefined) => (dir ? path.join(path.dirname(dir), 'current') : dir);
  return { ...env, SNAP: cur(env.SNAP)!, SNAP_DATA: cur(env.SNAP_DATA)! };
}

/**
 * The launch spec of an app: its command (through its command-chain) in its
 * environment; services run in $SNAP_DATA, except signal-mode services, which
 * run in $SNAP_COMMON: a server that re-executes itself in place keeps its
 * working directory, and one in the old revision's $SNAP_DATA would be gone
 * once that revision is pruned.
 */
export function appLaunchSpec(app: AppInfo, env: Record<string, string>): LaunchSpec {
  const inPlace = app.isService && refreshSignal(app.refreshMode) !== null;
  const words = inPlace ? throughCurrent(env) : env;
  return { argv: chainArgv(app.commandChain, commandArgv(app.command, words), words), env, cwd: app.isService ? (inPlace ? env.SNAP_COMMON : env.SNAP_DATA) : undefined };
}

/** Where a service writes its pid file (snapproc's `pid-file`), or null. */
export function pidFilePath(app: AppInfo, env: Record<string, string>): string | null {
  return app.pidFile ? expandVars(app.pidFile, env) : null;
}

/**
 * Writes the launch files of every app and hook of a revision, and flushes
 * them all at once at the end (concurrent fsyncs of the files and their
 * directories, not one file after the other): nothing runs a revision's
 * launch files before this resolves. With `batch`, those flushes are queued
 * there instead (a refresh flushes them before it starts anything of the
 * revision: with its journal before it unlinks the old one).
 */
export async function writeRevisionLaunchFiles(
  root: string,
  instance: string,
  revision: string,
  snap: SnapYaml,
  envOf: (app: AppInfo | null) => Record<string, string>,
  opts: { batch?: FlushQueue } = {},
): Promise<void> {
  const dir = launchDir(root, instance, revision);
  const unflushed = { durable: false };
  fs.rmSync(dir, { recursive: true, force: true });
  fs.mkdirSync(dir, { recursive: true });
  for (const app of Object.values(snap.apps)) {
    const env = envOf(app);
    // How a service re-executes itself into whatever revision is current then
    // (graceful refresh, SPEC 6): a JSON argv for the launcher.
    if (app.isService) env.SNAPPROC_RELAUNCH = JSON.stringify([launcherPath(), '--resolve', root, instance, app.name]);
    const spec = appLaunchSpec(app, env);
    writeLaunchFile(launchFile(root, instance, revision, app.name), spec, unflushed);
    // stop-command and post-stop-command run in the service's environment and directory.
    if (app.stopCommand) writeLaunchFile(launchFile(root, instance, revision, `${app.name}.stop`), { ...spec, argv: chainArgv(app.commandChain, commandArgv(app.stopCommand, env), env) }, unflushed);
    if (app.postStopCommand) writeLaunchFile(launchFile(root, instance, revision, `${app.name}.post-stop`), { ...spec, argv: chainArgv(app.commandChain, commandArgv(app.postStopCommand, env), env) }, unflushed);
  }
  for (const [hook, info] of Object.entries(snap.hooks)) {
    const env = envOf(null);
    writeLaunchFile(hookLaunchFile(root, instance, revision, hook), { argv: chainArgv(info?.commandChain, [path.join(env.SNAP, 'meta', 'hooks', hook)], env), env, cwd: env.SNAP_DATA }, unflushed);
  }
  if (opts.batch) {
    opts.batch.addTree(dir);
    opts.batch.add(path.dirname(dir), path.dirname(path.dirname(dir)));
    return;
  }
  await Promise.all([fsyncTree(dir, (d) => native.syncfs(d)), fsyncDirs([path.dirname(dir), path.dirname(path.dirname(dir))])]);
}
