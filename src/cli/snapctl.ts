// snapctl.ts: `snapctl` for the hooks and apps of snaps snapproc runs (the
// supervisor puts a wrapper for it in R/run/bin, on their PATH), with
// snapd's service commands:
//   snapctl services [NAME[.APP]...]
//   snapctl start [--enable] NAME[.APP]...
//   snapctl stop [--disable] NAME[.APP]...
//   snapctl restart [--reload] NAME[.APP]...
// The supervisor acts only on the caller's own snap (it finds it from the
// caller's cgroup, not from anything said here); from a hook, start/stop/
// restart are queued to run right after the hook, as snapd does.
import { request } from '../supervisor/client';
import { SnapprocError } from '../util/errors';
import { printTable } from './common';
import type { ServiceStatusRow } from '../supervisor/service-status';

const USAGE = `usage: snapctl services [NAME[.APP]...]
       snapctl start [--enable] NAME[.APP]...
       snapctl stop [--disable] NAME[.APP]...
       snapctl restart [--reload] NAME[.APP]...`;

const FLAGS: Record<string, string> = { start: '--enable', stop: '--disable', restart: '--reload' };

class UsageError extends Error {}

export async function snapctl(argv: string[]): Promise<void> {
  const [command, ...rest] = argv;
  if (command === undefined || command === '--help' || command === '-h' || command === 'help') {
    process.stdout.write(USAGE + '\n');
    if (command === undefined) throw new UsageError('snapctl needs a command');
    return;
  }
  if (command !== 'services' && !(command in FLAGS)) {
    throw new SnapprocError('ERR_SNAPPROC_USAGE', `unknown command "${command}": snapproc's snapctl has services, start, stop and restart (snapd's get, set and others are not supported)`);
  }
  const names: string[] = [];
  let flag = false;
  for (const a of rest) {
    if (a === FLAGS[command]) flag = true;
    else if (a.startsWith('-')) throw new UsageError(`unknown flag \`${a.replace(/^-+/, '')}'`);
    else names.push(a);
  }
  if (command !== 'services' && names.length === 0) throw new UsageError('the required argument `<service> (at least 1 argument)` was not provided');
  const root = process.env.SNAPPROC_ROOT;
  if (!root) throw new SnapprocError('ERR_SNAPPROC_USAGE', 'snapctl runs only inside a snap run by snapproc (SNAPPROC_ROOT is not set)');
  const params = { command: command as 'services' | 'start' | 'stop' | 'restart', names, enable: command === 'start' && flag, disable: command === 'stop' && flag, reload: command === 'restart' && flag };
  const result = (await request(root, 'snapctl', params)) as ServiceStatusRow[] | { queued: string } | { done: string[] };
  if (command === 'services') {
    const { serviceTable } = await import('../supervisor/service-status');
    printTable(serviceTable(result as ServiceStatusRow[]));
  }
  // start/stop/restart print nothing on success, as snapd's snapctl.
}

if (require.main === module) {
  snapctl(process.argv.slice(2)).catch((err: Error) => {
    process.stderr.write(`error: ${err.message}\n`);
    process.exit(err instanceof UsageError || (err as SnapprocError).code === 'ERR_SNAPPROC_USAGE' ? 2 : 1);
  });
}
