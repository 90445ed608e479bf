// snap-from-path.ts: a snap given by path (directory, .snap file, or a bare
// snap.yaml), read without installing anything, and the rules every snap
// tree must keep, since a snap is hostile input (SPEC 1):
//   - no device node, FIFO or socket anywhere in it (refused), and no
//     setuid/setgid bit takes effect (stripped from what is installed);
//   - a symbolic link only where it resolves inside the snap (no absolute
//     targets, no `..` out of it, also through other links);
//   - meta/snap.yaml and hooks only as regular files: snap.yaml opened with
//     O_NOFOLLOW|O_NONBLOCK (a FIFO cannot hang the reader), checked with
//     fstat, and at most 1 MiB; hooks must be regular executable files.
// `validate` and `install` apply the same rules through these functions:
// validate (and the supervisor deciding whether an install is a refresh)
// reads here; the revision store checks the copy it is about to install.
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { execFile, execFileSync, spawn } from 'node:child_process';
import { SnapprocError } from '../util/errors';
import type { SnapYaml } from './snap-yaml';
import { MAX_SNAP_YAML_BYTES } from './yaml-limits';

export const NOT_A_SNAP = 'ERR_SNAPPROC_NOT_A_SNAP';
export const INVALID_SNAP = 'ERR_SNAPPROC_INVALID_SNAP';
/** The hook names snapproc runs (as snap-yaml.ts's hookNames; repeated so this module loads without the YAML parser). */
const HOOK_NAMES = ['install', 'pre-refresh', 'post-refresh', 'remove', 'configure', 'check-health'];
/** As the kernel's MAXSYMLINKS. */
const MAX_SYMLINKS = 40;

function hasErrno(err: unknown, ...codes: string[]): boolean {
  return codes.includes((err as NodeJS.ErrnoException)?.code ?? '');
}

function kindOf(st: fs.Stats): string {
  if (st.isCharacterDevice()) return 'a character device';
  if (st.isBlockDevice()) return 'a block device';
  if (st.isFIFO()) return 'a FIFO';
  if (st.isSocket()) return 'a socket';
  if (st.isSymbolicLink()) return 'a symbolic link';
  if (st.isDirectory()) return 'a directory';
  return 'not a regular file';
}

/**
 * Reads a file only if it is a regular file: no symbolic link as its last
 * component (O_NOFOLLOW), no blocking on a FIFO or device (O_NONBLOCK, then
 * fstat), at most `maxBytes`. `shown` names it in messages.
 */
export function readRegularFile(file: string, shown: string, maxBytes: number, opts: { followLast?: boolean } = {}): Buffer {
  let fd: number;
  try {
    fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK | (opts.followLast ? 0 : fs.constants.O_NOFOLLOW) | fs.constants.O_NOCTTY);
  } catch (err) {
    if (hasErrno(err, 'ELOOP')) throw new SnapprocError(INVALID_SNAP, `invalid snap: ${shown} is a symbolic link, not a regular file`, { path: shown, cause: err });
    if (hasErrno(err, 'ENOENT', 'ENOTDIR')) throw new SnapprocError(NOT_A_SNAP, `not a snap: there is no ${shown}`, { path: shown, cause: err });
    if (hasErrno(err, 'ENXIO', 'EISDIR')) throw new SnapprocError(INVALID_SNAP, `invalid snap: ${shown} is not a regular file`, { path: shown, cause: err });
    throw err;
  }
  try {
    const st = fs.fstatSync(fd);
    if (!st.isFile()) throw new SnapprocError(INVALID_SNAP, `invalid snap: ${shown} is ${kindOf(st)}, not a regular file`, { path: shown });
    if (st.size > maxBytes) throw new SnapprocError(INVALID_SNAP, `invalid snap: ${shown} is larger than ${maxBytes} bytes (${st.size})`, { path: shown });
    // Read at most maxBytes + 1, whatever the size said (the file may grow meanwhile).
    const buf = Buffer.alloc(Math.min(maxBytes + 1, Math.max(st.size, 0) + 1));
    let n = 0;
    for (;;) {
      if (n === buf.length) break;
      const r = fs.readSync(fd, buf, n, buf.length - n, n);
      if (r === 0) break;
      n += r;
    }
    if (n > maxBytes) throw new SnapprocError(INVALID_SNAP, `invalid snap: ${shown} is larger than ${maxBytes} bytes`, { path: shown });
    return buf.subarray(0, n);
  } finally {
    fs.closeSync(fd);
  }
}

/**
 * Resolves the symbolic link at `rel` (a path inside `root`, no `..`) the way
 * the kernel would, following links it meets; true when every step stays
 * inside `root`. A target that does not exist is resolved by its name.
 */
export function symlinkStaysInside(root: string, rel: string): boolean {
  const resolved: string[] = []; // real directories below root, no links among them
  let pending = [...path.dirname(rel).split('/').filter((c) => c !== '' && c !== '.'), '\0link'];
  let links = 0;
  while (pending.length > 0) {
    const comp = pending.shift()!;
    let target: string | null = null;
    if (comp === '\0link') {
      target = fs.readlinkSync(path.join(root, rel));
    } else if (comp === '' || comp === '.') {
      continue;
    } else if (comp === '..') {
      if (resolved.length === 0) return false;
      resolved.pop();
      continue;
    } else {
      let st: fs.Stats | null = null;
      try {
        st = fs.lstatSync(path.join(root, ...resolved, comp));
      } catch {
        st = null; // dangling: resolved by name
      }
      if (st?.isSymbolicLink()) target = fs.readlinkSync(path.join(root, ...resolved, comp));
      else {
        resolved.push(comp);
        continue;
      }
    }
    if (++links > MAX_SYMLINKS) return false;
    if (target.startsWith('/')) return false; // points into the host, not the snap
    pending = [...target.split('/'), ...pending];
  }
  return true;
}

export interface TreeCheck {
  /** Files and directories whose setuid/setgid bits were cleared (with `strip`). */
  stripped: string[];
  entries: number;
}

/**
 * Walks a snap tree (iteratively, never following links) and refuses device
 * nodes, FIFOs, sockets and symbolic links that leave the tree; with `strip`
 * (the copy about to be installed) clears setuid and setgid bits. `label`
 * names the snap in messages; `only` limits the walk to one subtree (meta).
 */
export function checkSnapTree(dir: string, label: string = dir, opts: { strip?: boolean; only?: string } = {}): TreeCheck {
  const out: TreeCheck = { stripped: [], entries: 0 };
  const shown = (rel: string) => path.join(label, rel);
  const visit = (rel: string, st: fs.Stats, stack: string[]) => {
    out.entries++;
    if (st.isDirectory()) {
      stack.push(rel);
    } else if (st.isSymbolicLink()) {
      if (!symlinkStaysInside(dir, rel)) {
        let to = '';
        try {
          to = ` -> ${fs.readlinkSync(path.join(dir, rel))}`;
        } catch {
          /* gone */
        }
        throw new SnapprocError(INVALID_SNAP, `invalid snap: ${shown(rel)}${to} is a symbolic link that leads outside the snap`, { path: shown(rel) });
      }
      return;
    } else if (!st.isFile()) {
      throw new SnapprocError(INVALID_SNAP, `invalid snap: ${shown(rel)} is ${kindOf(st)}; a snap may not hold device nodes, FIFOs or sockets`, { path: shown(rel) });
    }
    if (st.mode & 0o6000) {
      if (opts.strip) fs.chmodSync(path.join(dir, rel), st.mode & 0o1777);
      out.stripped.push(rel);
    }
  };
  const stack: string[] = [];
  if (opts.only !== undefined) {
    let st: fs.Stats;
    try {
      st = fs.lstatSync(path.join(dir, opts.only));
    } catch (err) {
      if (hasErrno(err, 'ENOENT', 'ENOTDIR')) return out;
      throw err;
    }
    visit(opts.only, st, stack);
  } else {
    stack.push('');
  }
  while (stack.length > 0) {
    const rel = stack.pop()!;
    for (const name of fs.readdirSync(path.join(dir, rel))) {
      const child = rel === '' ? name : path.join(rel, name);
      visit(child, fs.lstatSync(path.join(dir, child)), stack);
    }
  }
  return out;
}

/**
 * meta/snap.yaml of a snap tree, read as a regular file (through a `meta`
 * link only if it stays inside, which checkSnapTree makes sure of).
 */
export function readTreeSnapYaml(dir: string, label: string = dir): Buffer {
  const meta = path.join(dir, 'meta');
  try {
    if (!fs.statSync(meta).isDirectory()) throw new SnapprocError(NOT_A_SNAP, `not a snap: ${path.join(label, 'meta')} is not a directory`, { path: label });
  } catch (err) {
    if (hasErrno(err, 'ENOENT', 'ENOTDIR')) throw new SnapprocError(NOT_A_SNAP, `not a snap: ${label} has no meta/snap.yaml`, { path: label });
    throw err;
  }
  try {
    return readRegularFile(path.join(meta, 'snap.yaml'), path.join(label, 'meta', 'snap.yaml'), MAX_SNAP_YAML_BYTES);
  } catch (err) {
    if ((err as SnapprocError).code === NOT_A_SNAP) throw new SnapprocError(NOT_A_SNAP, `not a snap: ${label} has no meta/snap.yaml`, { path: label, cause: err });
    throw err;
  }
}

/**
 * The hooks in meta/hooks/ named like a known hook: each must be a regular
 * executable file (not a link, not a FIFO). Returns their names, sorted.
 */
export function treeHooks(dir: string, label: string = dir): string[] {
  const hooksDir = path.join(dir, 'meta', 'hooks');
  let entries: string[] = [];
  try {
    if (!fs.statSync(hooksDir).isDirectory()) {
      throw new SnapprocError(INVALID_SNAP, `invalid snap: ${path.join(label, 'meta', 'hooks')} is not a directory`, { path: label });
    }
    entries = fs.readdirSync(hooksDir);
  } catch (err) {
    if (!hasErrno(err, 'ENOENT')) throw err;
  }
  const hooks: string[] = [];
  for (const hook of entries.sort()) {
    if (!HOOK_NAMES.includes(hook)) continue; // unknown hook names are ignored
    const shown = path.join(label, 'meta', 'hooks', hook);
    const hs = fs.lstatSync(path.join(hooksDir, hook));
    if (!hs.isFile()) throw new SnapprocError(INVALID_SNAP, `hook "${hook}" is not a regular file: ${shown} is ${kindOf(hs)}`, { path: shown });
    if ((hs.mode & 0o111) === 0) throw new SnapprocError(INVALID_SNAP, `hook "${hook}" is not executable: ${shown}`, { path: shown });
    hooks.push(hook);
  }
  return hooks;
}

/** Directory, squashfs file (magic `hsqs` at offset 0), or neither. */
export function sourceKind(source: string): 'directory' | 'squashfs' | 'other' {
  let st: fs.Stats;
  try {
    st = fs.statSync(source);
  } catch (err) {
    if (hasErrno(err, 'ENOENT', 'ENOTDIR')) throw new SnapprocError('ENOENT', `no such file or directory: ${source}`, { path: source, cause: err });
    throw err;
  }
  if (st.isDirectory()) return 'directory';
  if (!st.isFile()) return 'other';
  const fd = fs.openSync(source, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    if (!fs.fstatSync(fd).isFile()) return 'other';
    const head = Buffer.alloc(4);
    fs.readSync(fd, head, 0, 4, 0);
    return head.toString('latin1') === 'hsqs' ? 'squashfs' : 'other';
  } finally {
    fs.closeSync(fd);
  }
}

/** unsquashfs's first line of complaint, or how it ended. */
function unsquashFailure(err: unknown): string {
  const e = err as { stderr?: Buffer | string; status?: number | null; signal?: string | null };
  const said = String(e.stderr ?? '').trim().split('\n').map((l) => l.trim()).filter(Boolean);
  return said.find((l) => !/^Parallel unsquashfs|^\d+ inodes|^created \d+/.test(l)) ?? (e.signal ? `unsquashfs was killed by ${e.signal}` : `unsquashfs exited with status ${String(e.status)}`);
}

// ---------------------------------------------------------------- bounding an unpack
// A .snap is a compressed image: a few KiB can claim terabytes (a sparse
// file) or millions of entries. Before anything is unpacked, its listing
// (`unsquashfs -lls`) is summed and held against the free space of every file
// system the unpack writes to (the private staging directory, and R),
// keeping a margin; and its entry count (the superblock's inode count, then
// the listing's lines) against MAX_SNAP_ENTRIES. Nothing is written before.

/** More entries than any real snap holds (the largest desktop snaps have ~10^5). */
export const MAX_SNAP_ENTRIES = 1_000_000;
/** What an unpack leaves free on its file system: 64 MiB, or a tenth of a smaller one. */
export function unpackMargin(totalBytes: number): number {
  return Math.min(64 * 1024 * 1024, Math.floor(totalBytes / 10));
}

export interface UnpackSize {
  /** Entries listed (files, directories, links, everything). */
  entries: number;
  /** Bytes the unpacked tree takes: each regular file rounded up to 4 KiB blocks, 4 KiB for every other entry. */
  bytes: number;
}

function humanBytes(n: number): string {
  const units = ['bytes', 'KiB', 'MiB', 'GiB', 'TiB', 'PiB', 'EiB'];
  let i = 0;
  let v = n;
  while (v >= 1024 && i < units.length - 1) {
    v /= 1024;
    i++;
  }
  return i === 0 ? `${n} bytes` : `${v.toFixed(1)} ${units[i]}`;
}

/** The superblock's inode count (offset 4, little-endian), before anything is listed. */
function superblockInodes(file: string): number {
  const fd = fs.openSync(file, fs.constants.O_RDONLY | fs.constants.O_NONBLOCK);
  try {
    const sb = Buffer.alloc(8);
    if (fs.readSync(fd, sb, 0, 8, 0) < 8 || sb.toString('latin1', 0, 4) !== 'hsqs') {
      throw new SnapprocError(NOT_A_SNAP, `not a snap: ${file} has no squashfs superblock`, { path: file });
    }
    return sb.readUInt32LE(4);
  } finally {
    fs.closeSync(fd);
  }
}

function tooManyEntries(file: string, n: number): SnapprocError {
  return new SnapprocError(INVALID_SNAP, `invalid snap: ${file} holds ${n} entries, more than the limit of ${MAX_SNAP_ENTRIES}`, { path: file });
}

const LISTED = /^([-dlcbps])[-rwxsStT]{9}\s+\S+\s+(\d+)?/;

/** Adds one line of `unsquashfs -lls` to `acc`. */
function countListed(acc: UnpackSize, line: string): void {
  const m = LISTED.exec(line);
  if (!m) return; // a name holding a newline: its tail (the entry itself was counted)
  acc.entries++;
  if (m[1] === '-' && m[2] !== undefined) acc.bytes += Math.ceil(Number(m[2]) / 4096) * 4096;
  else acc.bytes += 4096;
}

/** The nearest existing directory at or above `dir` (R may not exist yet). */
function existingAncestor(dir: string): string {
  let d = path.resolve(dir);
  while (!fs.existsSync(d) && path.dirname(d) !== d) d = path.dirname(d);
  return d;
}

/**
 * Refuses, in one line naming the snap and the limit, an unpack of `size`
 * that would not fit into each of `targets` (directories, or where they will
 * be) with the margin left free. Targets on one file system count once each
 * (the staging directory is renamed into R when they share one).
 */
export function checkUnpackFits(file: string, size: UnpackSize, targets: string[]): void {
  if (size.entries > MAX_SNAP_ENTRIES) throw tooManyEntries(file, size.entries);
  const seen = new Set<string>();
  for (const target of targets) {
    const at = existingAncestor(target);
    const dev = String(fs.statSync(at).dev);
    if (seen.has(dev)) continue;
    seen.add(dev);
    const st = fs.statfsSync(at);
    const free = st.bavail * st.bsize;
    const margin = unpackMargin(st.blocks * st.bsize);
    if (size.bytes + margin > free) {
      throw new SnapprocError(
        'ENOSPC',
        `cannot unpack ${file}: it unpacks to ${humanBytes(size.bytes)} in ${size.entries} entries, more than the ${humanBytes(Math.max(free - margin, 0))} that ${at} has free (keeping ${humanBytes(margin)} free)`,
        { path: file },
      );
    }
  }
}

/** The unpacked size of a squashfs file (all of it, or only `only`), from its listing; synchronous. */
export function unpackSizeSync(file: string, only: string[] = []): UnpackSize {
  const inodes = superblockInodes(file);
  if (inodes > MAX_SNAP_ENTRIES) throw tooManyEntries(file, inodes);
  let out: Buffer;
  try {
    // At most MAX_SNAP_ENTRIES lines (the inode count bounds them; hard links aside), each at most a path.
    out = execFileSync('unsquashfs', ['-n', '-lls', file, ...only], { stdio: ['ignore', 'pipe', 'pipe'], maxBuffer: 1024 * 1024 * 1024 });
  } catch (err) {
    if (hasErrno(err, 'ENOENT') && (err as NodeJS.ErrnoException).path === 'unsquashfs') {
      throw new SnapprocError('ENOENT', `cannot unpack ${file}: unsquashfs is not installed (install the Debian package squashfs-tools)`, { path: file, cause: err });
    }
    throw new SnapprocError(NOT_A_SNAP, `not a snap: cannot unpack ${file}: ${unsquashFailure(err)}`, { path: file, cause: err });
  }
  const acc: UnpackSize = { entries: 0, bytes: 0 };
  for (const line of out.toString('latin1').split('\n')) countListed(acc, line);
  return acc;
}

/** As unpackSizeSync, without blocking the event loop: the listing is read as it comes, and cut off past the entry limit. */
export function unpackSize(file: string, only: string[] = []): Promise<UnpackSize> {
  return new Promise((resolve, reject) => {
    let inodes: number;
    try {
      inodes = superblockInodes(file);
    } catch (err) {
      return reject(err);
    }
    if (inodes > MAX_SNAP_ENTRIES) return reject(tooManyEntries(file, inodes));
    const acc: UnpackSize = { entries: 0, bytes: 0 };
    const child = spawn('unsquashfs', ['-n', '-lls', file, ...only], { stdio: ['ignore', 'pipe', 'pipe'] });
    let rest = '';
    let stderr = '';
    let refused: SnapprocError | null = null;
    child.stdout.setEncoding('latin1');
    child.stdout.on('data', (chunk: string) => {
      const lines = (rest + chunk).split('\n');
      rest = lines.pop() ?? '';
      if (rest.length > 1024 * 1024) rest = rest.slice(-4096); // no line is that long; keep the framing linear
      for (const line of lines) countListed(acc, line);
      if (acc.entries > MAX_SNAP_ENTRIES && refused === null) {
        refused = tooManyEntries(file, acc.entries);
        child.kill('SIGKILL');
      }
    });
    child.stderr.setEncoding('latin1');
    child.stderr.on('data', (chunk: string) => {
      if (stderr.length < 64 * 1024) stderr += chunk;
    });
    child.on('error', (err) => {
      if (hasErrno(err, 'ENOENT')) reject(new SnapprocError('ENOENT', `cannot unpack ${file}: unsquashfs is not installed (install the Debian package squashfs-tools)`, { path: file, cause: err }));
      else reject(err);
    });
    child.on('close', (status, signal) => {
      if (refused) return reject(refused);
      if (status !== 0) return reject(new SnapprocError(NOT_A_SNAP, `not a snap: cannot unpack ${file}: ${unsquashFailure({ stderr, status, signal })}`, { path: file }));
      countListed(acc, rest);
      resolve(acc);
    });
  });
}

/** Unpacks a squashfs file (all of it, or only `only`) into the new directory `dest`, without blocking the event loop. */
export function unsquashAsync(file: string, dest: string, only: string[] = []): Promise<void> {
  return new Promise((resolve, reject) => {
    execFile('unsquashfs', ['-n', '-no-xattrs', '-d', dest, file, ...only], { maxBuffer: 16 * 1024 * 1024 }, (err, _stdout, stderr) => {
      if (!err) return resolve();
      if (hasErrno(err, 'ENOENT') && (err as NodeJS.ErrnoException).path === 'unsquashfs') {
        return reject(new SnapprocError('ENOENT', `cannot unpack ${file}: unsquashfs is not installed (install the Debian package squashfs-tools)`, { path: file, cause: err }));
      }
      const e = err as { code?: unknown; signal?: string | null };
      reject(new SnapprocError(NOT_A_SNAP, `not a snap: cannot unpack ${file}: ${unsquashFailure({ stderr, status: typeof e.code === 'number' ? e.code : null, signal: e.signal ?? null })}`, { path: file, cause: err }));
    });
  });
}

/** Unpacks a squashfs file (all of it, or only `only`) into the new directory `dest`, synchronously. */
export function unsquashSync(file: string, dest: string, only: string[] = []): void {
  try {
    execFileSync('unsquashfs', ['-n', '-no-xattrs', '-d', dest, file, ...only], { stdio: ['ignore', 'ignore', 'pipe'], maxBuffer: 16 * 1024 * 1024 });
  } catch (err) {
    if (hasErrno(err, 'ENOENT') && (err as NodeJS.ErrnoException).path === 'unsquashfs') {
      throw new SnapprocError('ENOENT', `cannot unpack ${file}: unsquashfs is not installed (install the Debian package squashfs-tools)`, { path: file, cause: err });
    }
    throw new SnapprocError(NOT_A_SNAP, `not a snap: cannot unpack ${file}: ${unsquashFailure(err)}`, { path: file, cause: err });
  }
}

export interface SnapYamlSource {
  /** The bytes of snap.yaml (parseSnapYaml/validateSnapYaml check that they are UTF-8). */
  text: Buffer;
  /** Where it was read, for messages (`FILE.snap:meta/snap.yaml` for a .snap). */
  file: string;
  /** Known hooks present as files in meta/hooks (none for a bare snap.yaml). */
  hooks: string[];
}

/**
 * Reads snap.yaml from a directory, a .snap (squashfs) file, or a snap.yaml
 * file, after checking the snap tree by the rules above (the whole tree, or
 * with `metaOnly` just meta/, which is all the supervisor needs to learn the
 * name). A .snap is unpacked into a private temporary directory for it.
 */
export function readSnapYamlFrom(source: string, opts: { metaOnly?: boolean; withTree?: (tree: string, read: SnapYamlSource) => void } = {}): SnapYamlSource {
  const kind = sourceKind(source);
  const fromTree = (dir: string, label: string, file: string): SnapYamlSource => {
    checkSnapTree(dir, label, opts.metaOnly ? { only: 'meta' } : {});
    const text = readTreeSnapYaml(dir, label);
    const read = { text, file, hooks: treeHooks(dir, label) };
    // What else needs the files (validate's command check) sees them here, while a .snap's are unpacked.
    opts.withTree?.(dir, read);
    return read;
  };
  if (kind === 'directory') return fromTree(source, source, path.join(source, 'meta', 'snap.yaml'));
  if (kind === 'squashfs') {
    const only = opts.metaOnly ? ['meta'] : [];
    checkUnpackFits(source, unpackSizeSync(source, only), [os.tmpdir()]);
    const stage = fs.mkdtempSync(path.join(os.tmpdir(), 'snapproc-read-'));
    try {
      const tree = path.join(stage, 'tree');
      unsquashSync(source, tree, only);
      return fromTree(tree, source, `${source}:meta/snap.yaml`);
    } finally {
      fs.rmSync(stage, { recursive: true, force: true });
    }
  }
  if (/\.ya?ml$/.test(source)) {
    return { text: readRegularFile(source, source, MAX_SNAP_YAML_BYTES, { followLast: true }), file: source, hooks: [] };
  }
  throw new SnapprocError(NOT_A_SNAP, `not a snap: ${source} is neither a directory, a squashfs file nor a snap.yaml`, { path: source });
}

/**
 * As readSnapYamlFrom, for the supervisor: a .snap is listed and unpacked by
 * child processes it waits for without blocking (pings are answered
 * meanwhile); the tree check and the read of meta/ stay synchronous (they
 * are bounded: meta/ only, snap.yaml at most 1 MiB).
 */
export async function readSnapYamlFromAsync(source: string, opts: { metaOnly?: boolean } = {}): Promise<SnapYamlSource> {
  if (sourceKind(source) !== 'squashfs') return readSnapYamlFrom(source, opts);
  const only = opts.metaOnly ? ['meta'] : [];
  checkUnpackFits(source, await unpackSize(source, only), [os.tmpdir()]);
  const stage = await fs.promises.mkdtemp(path.join(os.tmpdir(), 'snapproc-read-'));
  try {
    const tree = path.join(stage, 'tree');
    await unsquashAsync(source, tree, only);
    checkSnapTree(tree, source, opts.metaOnly ? { only: 'meta' } : {});
    const text = readTreeSnapYaml(tree, source);
    return { text, file: `${source}:meta/snap.yaml`, hooks: treeHooks(tree, source) };
  } finally {
    await fs.promises.rm(stage, { recursive: true, force: true });
  }
}

/** As snapYamlOf, without blocking the event loop on unsquashfs (the supervisor's path). */
export async function snapYamlOfAsync(source: string): Promise<SnapYaml> {
  const { parseSnapYamlCached } = require('./snap-yaml-cache') as typeof import('./snap-yaml-cache');
  const { text, file } = await readSnapYamlFromAsync(source, { metaOnly: true });
  return parseSnapYamlCached(text, file);
}

/** The parsed snap.yaml of a snap given by path (throws SnapYamlError when invalid); checks meta/ only. */
export function snapYamlOf(source: string): SnapYaml {
  const { parseSnapYamlCached } = require('./snap-yaml-cache') as typeof import('./snap-yaml-cache');
  const { text, file } = readSnapYamlFrom(source, { metaOnly: true });
  return parseSnapYamlCached(text, file);
}
