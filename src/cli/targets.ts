// targets.ts: the names a start, stop or restart acts on: one or more
// NAME / NAME.APP, or --all (every installed snap), never both and never
// none, as `snap stop a b` and `supervisorctl stop all` take them.
import { usageError } from '../util/errors';

export function checkNames(verb: string, names: string[], all: boolean): void {
  if (all && names.length) throw usageError(`snapproc ${verb}: give snap names or --all, not both`);
  if (!all && names.length === 0) throw usageError(`snapproc ${verb}: name at least one snap (NAME or NAME.APP), or --all`);
}
