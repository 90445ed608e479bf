// snap-from-path.ts: what a snap given by path (directory, .snap file, or a bare
// snap.yaml) says it is, read without installing anything: `validate` shows
// it, and the supervisor decides from the name whether an install is a
// refresh, and refuses a refresh from a snap of another name.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync } from 'node:child_process';
import { SnapprocError } from '../util/errors';
import type { SnapYaml } from './snap-yaml';

/** Reads snap.yaml from a directory, a .snap (squashfs) file, or a snap.yaml file. */
export function readSnapYamlFrom(source: string): { text: string; file: string } {
  let st: fs.Stats;
  try {
    st = fs.statSync(source);
  } catch {
    throw new SnapprocError('ENOENT', `no such file or directory: ${source}`);
  }
  if (st.isDirectory()) {
    const file = path.join(source, 'meta', 'snap.yaml');
    if (!fs.existsSync(file)) throw new SnapprocError('ERR_SNAPPROC_NOT_A_SNAP', `not a snap: ${source} has no meta/snap.yaml`);
    return { text: fs.readFileSync(file, 'utf8'), file };
  }
  const head = Buffer.alloc(4);
  const fd = fs.openSync(source, 'r');
  fs.readSync(fd, head, 0, 4, 0);
  fs.closeSync(fd);
  if (head.toString('latin1') === 'hsqs') {
    try {
      const text = execFileSync('unsquashfs', ['-cat', source, 'meta/snap.yaml'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
      return { text, file: `${source}:meta/snap.yaml` };
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code === 'ENOENT') throw new SnapprocError('ENOENT', `reading ${source} needs unsquashfs (Debian package squashfs-tools)`);
      throw new SnapprocError('ERR_SNAPPROC_NOT_A_SNAP', `not a snap: ${source} has no meta/snap.yaml`);
    }
  }
  if (/\.ya?ml$/.test(source)) return { text: fs.readFileSync(source, 'utf8'), file: source };
  throw new SnapprocError('ERR_SNAPPROC_NOT_A_SNAP', `not a snap: ${source} is neither a directory, a squashfs file nor a snap.yaml`);
}

/** The parsed snap.yaml of a snap given by path (throws SnapYamlError when invalid). */
export function snapYamlOf(source: string): SnapYaml {
  const { parseSnapYamlCached } = require('./snap-yaml-cache') as typeof import('./snap-yaml-cache');
  const { text, file } = readSnapYamlFrom(source);
  return parseSnapYamlCached(text, file);
}
