// installed.ts: a cheap check whether NAME is installed under the state root,
// for commands that act differently on supervised snaps (stop) and on
// cgroups snapproc merely finds (made by snapd/systemd or someone else).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { parseSnapTarget } from '../snap/names';

export function isInstalled(root: string, target: string): boolean {
  const { instance } = parseSnapTarget(target);
  return fs.existsSync(path.join(root, 'snap', instance, 'current'));
}
