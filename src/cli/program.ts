// program.ts: the command line (SPEC 9), a thin layer over the library. Each
// command loads only the modules it needs. Exit status 0 on success, 1 with
// one `error: ...` line on failure, 2 for usage errors.
import { Command, CommanderError, Option } from 'commander';
import { defaultRoot, resolveRoot } from '../snap/state-root';
import type { GlobalOptions } from './common';
import { exitQuietlyOnEpipe, exitWithError } from './common';



function globals(cmd: Command): GlobalOptions {
  const opts = cmd.optsWithGlobals() as { root?: string; autostart?: boolean };
  return { root: resolveRoot(opts.root), autostart: opts.autostart === false ? false : undefined };
}

export function buildProgram(): Command {
  const program = new Command('snapproc');
  // Before any subcommand is added, so they inherit it: usage errors exit 2.
  program.exitOverride();
  program
    .description('process controller for snap-style packages')
    .version(require('../../../package.json').version, '-V, --version')
    .option('--root <dir>', `state root (env SNAPPROC_ROOT, default ${defaultRoot})`)
    .option('--no-autostart', 'do not start a background supervisor when none answers (env SNAPPROC_NO_AUTOSTART=1)')
    .enablePositionalOptions()
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (str, write) => write(str.split('\n')[0] + '\n') });

  program
    .command('ps [name]')
    .description("list a snap's processes (or every snap's) by app cgroup, with role and revision")
    .option('--json', 'print one JSON document')
    .action(async (name: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const { psCommand } = await import('./cgroup-commands');
      psCommand(globals(cmd), name, opts);
    });

  program
    .command('signal <snap.app> <signal>')
    .description("send a signal to an app's main process, or with --all to every process of its cgroup")
    .option('--all', 'every process of the cgroup, frozen while signalled')
    .action(async (target: string, signal: string, opts: { all?: boolean }, cmd: Command) => {
      const { signalCommand } = await import('./cgroup-commands');
      await signalCommand(globals(cmd), target, signal, opts);
    });

  for (const verb of ['freeze', 'thaw'] as const) {
    program
      .command(`${verb} <name>`)
      .description(verb === 'freeze' ? "freeze every cgroup of a snap (waits for the kernel's `frozen 1`)" : 'thaw every cgroup of a snap')
      .action(async (name: string, _opts: unknown, cmd: Command) => {
        const { freezeCommand } = await import('./cgroup-commands');
        await freezeCommand(globals(cmd), name, verb === 'freeze');
      });
  }

  program
    .command('stop [names...]')
    .description("stop snaps' services (or single ones, NAME.APP) by stop-mode; --all: every installed snap's")
    .addOption(new Option('--mode <stop-mode>', 'stop-mode to use instead of the snap\'s'))
    .option('--timeout <duration>', 'stop timeout instead of the snap\'s (30s, 1m30s, 500ms)')
    .option('--all', 'every installed snap (as `supervisorctl stop all`)')
    .action(async (names: string[], opts: { mode?: string; timeout?: string; all?: boolean }, cmd: Command) => {
      const g = globals(cmd);
      const { checkNames } = await import('./targets');
      checkNames('stop', names, opts.all === true);
      const { isInstalled } = await import('./installed');
      const supervised = opts.all ? [] : names.filter((n) => isInstalled(g.root, n));
      const found = opts.all ? [] : names.filter((n) => !isInstalled(g.root, n));
      if (opts.all || supervised.length) {
        // Validate locally first: a bad option is a usage error before any supervisor starts.
        const { parseStopMode } = await import('../process/stop');
        const { durationMs } = await import('../util/duration');
        const { usageError } = await import('../util/errors');
        if (opts.mode !== undefined) parseStopMode(opts.mode);
        if (opts.timeout !== undefined) durationMs(opts.timeout, (m) => usageError(`invalid --timeout: ${m}`));
        const { requireRoot } = await import('./common');
        requireRoot('snapproc stop');
        const { supervisedStop } = await import('./snap-commands');
        await supervisedStop(g, opts.all ? { all: true } : supervised, { mode: opts.mode, timeout: opts.timeout }, g);
      }
      // Snaps snapproc does not supervise (run by snapd/systemd, or left behind): stopped by their cgroups.
      if (found.length) {
        const { stopCommand } = await import('./cgroup-commands');
        for (const name of found) await stopCommand(g, name, opts);
      }
    });

  program
    .command('install <path>')
    .description('install a snap from a directory or .snap file (over an installed snap: a refresh)')
    .action(async (source: string, _opts: unknown, cmd: Command) => {
      const g = globals(cmd);
      const { installCommand } = await import('./snap-commands');
      await installCommand(g, source, g);
    });

  program
    .command('refresh <name>')
    .description('refresh a snap to a new revision (SPEC 5), as one change with undo')
    .option('--from <path>', 'the new revision: a directory or .snap file')
    .option('--ignore-running', 'refresh even while apps of the snap run')
    .action(async (name: string, opts: { from?: string; ignoreRunning?: boolean }, cmd: Command) => {
      const { refreshCommand } = await import('./snap-commands');
      await refreshCommand(globals(cmd), name, opts);
    });

  program
    .command('revert <name>')
    .description('go back to the previous retained revision, its data as it was left')
    .action(async (name: string, _opts: unknown, cmd: Command) => {
      const { revertCommand } = await import('./snap-commands');
      await revertCommand(globals(cmd), name);
    });

  program
    .command('remove <name>')
    .description('stop and kill everything of a snap, run its remove hook, remove its revisions and data')
    .option('--purge', 'also remove $SNAP_COMMON')
    .action(async (name: string, opts: { purge?: boolean }, cmd: Command) => {
      const { removeCommand } = await import('./snap-commands');
      await removeCommand(globals(cmd), name, opts);
    });

  program
    .command('changes [name]')
    .description('recent changes (refresh, revert, remove) with their steps and outcome')
    .option('--json', 'print one JSON document')
    .action(async (name: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const { changesCommand } = await import('./snap-commands');
      await changesCommand(globals(cmd), name, opts);
    });

  for (const verb of ['start', 'restart'] as const) {
    program
      .command(`${verb} [names...]`)
      .description(`${verb} snaps' services (or single ones, NAME.APP); --all: every installed snap's`)
      .option('--all', `every installed snap (as \`supervisorctl ${verb} all\`)`)
      .action(async (names: string[], opts: { all?: boolean }, cmd: Command) => {
        const g = globals(cmd);
        const { checkNames } = await import('./targets');
        checkNames(verb, names, opts.all === true);
        const { lifecycleCommand } = await import('./snap-commands');
        await lifecycleCommand(g, verb, opts.all ? { all: true } : names, g);
      });
  }

  program
    .command('run <snap.app> [args...]')
    .description('run an app of a snap in a fresh scope cgroup; its exit status is passed through')
    .passThroughOptions()
    .allowUnknownOption()
    .action(async (target: string, args: string[], _opts: unknown, cmd: Command) => {
      const { runCommand } = await import('./snap-commands');
      await runCommand(globals(cmd), target, args ?? []);
    });

  program
    .command('list')
    .description('list installed snaps and their revisions')
    .option('--json', 'print one JSON document')
    .action(async (opts: { json?: boolean }, cmd: Command) => {
      const { listCommand } = await import('./snap-commands');
      listCommand(globals(cmd), opts);
    });

  program
    .command('logs [name]')
    .description("show the logs of every snap, of a snap or of one app (NAME.APP), interleaved by time, each line with its time")
    .option('-f, --follow', 'keep printing new lines')
    .option('-n, --lines <n>', 'how many lines from the end of each log (default 10)')
    .action(async (name: string | undefined, opts: { follow?: boolean; lines?: string }, cmd: Command) => {
      const { logsCommand } = await import('./status-commands');
      await logsCommand(globals(cmd), name, opts);
    });

  program
    .command('services [name]')
    .description("a snap's services (or every snap's, or one NAME.APP) with startup, current state and notes, as `snap services`")
    .option('--json', 'print one JSON document')
    .action(async (name: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const { servicesCommand } = await import('./status-commands');
      servicesCommand(globals(cmd), name, opts);
    });

  program
    .command('info <name>')
    .description('revisions, apps with their kind and modes, hooks, and running processes per revision of a snap')
    .option('--json', 'print one JSON document')
    .action(async (name: string, opts: { json?: boolean }, cmd: Command) => {
      const { infoCommand } = await import('./status-commands');
      infoCommand(globals(cmd), name, opts);
    });

  program
    .command('validate <path>')
    .description("check a snap (directory, .snap or snap.yaml) and summarise its apps' lifecycle settings")
    .option('--json', 'print one JSON document: {"ok":true,"snap":{...}} or {"ok":false,"problems":[...]}')
    .action(async (source: string, opts: { json?: boolean }) => {
      const { validateCommand } = await import('./snap-commands');
      validateCommand(source, opts);
    });

  program
    .command('daemon')
    .description('run the supervisor in the foreground (can be PID 1 of a container)')
    .action(async (_opts: unknown, cmd: Command) => {
      const { daemonCommand } = await import('./snap-commands');
      await daemonCommand(globals(cmd));
    });

  return program;
}

export async function main(argv: string[]): Promise<void> {
  exitQuietlyOnEpipe();
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') process.exit(0);
      process.exit(2);
    }
    exitWithError(err);
  }
}
