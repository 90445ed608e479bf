// cli.ts: the command line (SPEC 9), a thin layer over the library. Each
// command loads only the modules it needs. Exit status 0 on success, 1 with
// one `error: ...` line on failure, 2 for usage errors.
import { Command, CommanderError, Option } from 'commander';
import type { SnapprocError } from './errors';

export interface GlobalOptions {
  root: string;
}

const DEFAULT_ROOT = '/var/lib/snapproc';

function globals(cmd: Command): GlobalOptions {
  const opts = cmd.optsWithGlobals() as { root?: string };
  return { root: opts.root ?? process.env.SNAPPROC_ROOT ?? DEFAULT_ROOT };
}

function run(fn: (...args: any[]) => Promise<void> | void) {
  return async (...args: any[]) => {
    await fn(...args);
  };
}

export function buildProgram(): Command {
  const program = new Command('snapproc');
  // Before any subcommand is added, so they inherit it: usage errors exit 2.
  program.exitOverride();
  program
    .description('process controller for snap-style packages')
    .version(require('../../package.json').version, '-V, --version')
    .option('--root <dir>', `state root (env SNAPPROC_ROOT, default ${DEFAULT_ROOT})`)
    .showHelpAfterError('(run with --help for usage)')
    .configureOutput({ outputError: (str, write) => write(str.split('\n')[0] + '\n') });

  program
    .command('ps [name]')
    .description("list a snap's processes (or every snap's) by app cgroup, with role and revision")
    .option('--json', 'print one JSON document')
    .action(run(async (name: string | undefined, opts: { json?: boolean }, cmd: Command) => {
      const { psCommand } = await import('./commands/cgroup-commands');
      psCommand(globals(cmd), name, opts);
    }));

  program
    .command('signal <snap.app> <signal>')
    .description("send a signal to an app's main process, or with --all to every process of its cgroup")
    .option('--all', 'every process of the cgroup, frozen while signalled')
    .action(run(async (target: string, signal: string, opts: { all?: boolean }, cmd: Command) => {
      const { signalCommand } = await import('./commands/cgroup-commands');
      signalCommand(globals(cmd), target, signal, opts);
    }));

  for (const verb of ['freeze', 'thaw'] as const) {
    program
      .command(`${verb} <name>`)
      .description(verb === 'freeze' ? "freeze every cgroup of a snap (waits for the kernel's `frozen 1`)" : 'thaw every cgroup of a snap')
      .action(run(async (name: string, _opts: unknown, cmd: Command) => {
        const { freezeCommand } = await import('./commands/cgroup-commands');
        await freezeCommand(globals(cmd), name, verb === 'freeze');
      }));
  }

  program
    .command('stop <name>')
    .description("stop a snap's services (or one, NAME.APP) by stop-mode")
    .addOption(new Option('--mode <stop-mode>', 'stop-mode to use instead of the snap\'s'))
    .option('--timeout <duration>', 'stop timeout instead of the snap\'s (30s, 1m30s, 500ms)')
    .action(run(async (name: string, opts: { mode?: string; timeout?: string }, cmd: Command) => {
      const { stopCommand } = await import('./commands/cgroup-commands');
      await stopCommand(globals(cmd), name, opts);
    }));

  return program;
}

function exitFor(err: unknown): never {
  const e = err as SnapprocError;
  const message = (e && e.message) || String(err);
  process.stderr.write(`error: ${message.split('\n').join('\n  ')}\n`);
  process.exit(e && e.code === 'ERR_SNAPPROC_USAGE' ? 2 : 1);
}

export async function main(argv: string[]): Promise<void> {
  const program = buildProgram();
  try {
    await program.parseAsync(argv, { from: 'user' });
  } catch (err) {
    if (err instanceof CommanderError) {
      if (err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || err.code === 'commander.help') process.exit(0);
      process.exit(2);
    }
    exitFor(err);
  }
}
