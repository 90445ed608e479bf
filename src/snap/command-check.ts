// command-check.ts: snapd's container check for commands. A snap whose app
// command does not exist in the snap, or is not executable, installed fine
// before and then could never run: its services never got a cgroup, and stop,
// refresh and remove of it failed. snapd refuses such a snap at install
// (snap/container.go, "snap is unusable due to missing files"); so does
// snapproc, for `command`, `stop-command`, `post-stop-command` and
// `reload-command`.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { SnapprocError } from '../util/errors';
import type { SnapYaml } from './snap-yaml';

/** The program of a command line as a path relative to the snap, or null when it cannot be known before run time. */
function programInSnap(command: string): string | null {
  let word = command.trim().split(/\s+/)[0] ?? '';
  word = word.replace(/^(\$SNAP|\$\{SNAP\})\//, '');
  // Other variables, or a program outside the snap: decided when it runs.
  if (word === '' || word.includes('$') || path.isAbsolute(word)) return null;
  return word;
}

/**
 * Throws (one line naming the app, the field and the path) unless every
 * command of every app of `snap` is an executable regular file inside `tree`.
 */
export function checkCommands(tree: string, snap: SnapYaml, label: string = tree): void {
  const root = path.resolve(tree);
  for (const app of Object.values(snap.apps)) {
    const fields: Array<[string, string | undefined]> = [
      ['command', app.command],
      ['stop-command', app.stopCommand],
      ['post-stop-command', app.postStopCommand],
      ['reload-command', app.reloadCommand],
    ];
    for (const [field, command] of fields) {
      if (!command) continue;
      const rel = programInSnap(command);
      if (rel === null) continue;
      const where = `app "${app.name}" ${field} "${rel}"`;
      const file = path.resolve(root, rel);
      if (file !== root && !file.startsWith(root + path.sep)) {
        throw new SnapprocError('ERR_SNAPPROC_INVALID_SNAP', `invalid snap ${label}: ${where} is outside the snap`, { path: label });
      }
      let st: fs.Stats;
      try {
        st = fs.statSync(file);
      } catch {
        throw new SnapprocError('ERR_SNAPPROC_INVALID_SNAP', `invalid snap ${label}: ${where} does not exist in the snap`, { path: label });
      }
      if (!st.isFile()) throw new SnapprocError('ERR_SNAPPROC_INVALID_SNAP', `invalid snap ${label}: ${where} is not a regular file`, { path: label });
      if ((st.mode & 0o111) === 0) throw new SnapprocError('ERR_SNAPPROC_INVALID_SNAP', `invalid snap ${label}: ${where} is not executable`, { path: label });
    }
  }
}
