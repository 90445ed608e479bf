// hostile-corpus.ts: snaps made to attack snapproc (issue 10, items 9-11),
// shared by test/snap-from-path.test.ts (through the library) and
// test/rel-hostile-snaps.test.ts (through the CLI and a supervisor). Each
// entry makes its snap in a fresh temporary directory and says which line
// `validate` and `install` must refuse it with (or null: it installs, with
// `check` saying what must hold afterwards).
import * as fs from 'node:fs';
import * as path from 'node:path';
import { execFileSync, spawnSync } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { tmpdir } from './helpers';

export const GOOD_YAML = "name: hostile\nversion: '1'\napps:\n  svc:\n    command: bin/run\n    daemon: simple\n";

export interface HostileSnap {
  name: string;
  /** Makes the snap; returns its path (directory or .snap). */
  make(): string;
  /** The error `validate` and `install` must give, or null when the snap is accepted. */
  refused: RegExp | null;
  /** For accepted snaps: checks the installed revision directory. */
  check?(installed: string): void;
  /** Needs root (device nodes, setuid-root files). */
  root?: boolean;
  /** Also refused by `validate` (some checks apply to the tree only at install). */
  validate?: boolean;
}

export function haveSquashfsTools(): boolean {
  return ['mksquashfs', 'unsquashfs'].every((t) => spawnSync('sh', ['-c', `command -v ${t}`]).status === 0);
}

/** A minimal valid snap directory, with `extra` files (relative path -> content). */
export function snapTree(yaml: string | Buffer = GOOD_YAML, extra: Record<string, string> = {}): string {
  const dir = tmpdir('snapproc-hostile-');
  fs.mkdirSync(path.join(dir, 'meta'));
  fs.mkdirSync(path.join(dir, 'bin'));
  fs.writeFileSync(path.join(dir, 'bin', 'run'), '#!/bin/sh\nexec sleep 1000\n', { mode: 0o755 });
  if (yaml !== '') fs.writeFileSync(path.join(dir, 'meta', 'snap.yaml'), yaml);
  for (const [rel, content] of Object.entries(extra)) {
    fs.mkdirSync(path.dirname(path.join(dir, rel)), { recursive: true });
    fs.writeFileSync(path.join(dir, rel), content, { mode: 0o755 });
  }
  return dir;
}

/** Packs a directory into a .snap with mksquashfs; `pseudo` adds pseudo-file definitions (device nodes, modes). */
export function squash(dir: string, pseudo: string[] = []): string {
  const file = path.join(tmpdir('snapproc-hostile-snap-'), 'hostile.snap');
  execFileSync('mksquashfs', [dir, file, '-noappend', '-quiet', '-no-progress', '-all-root', ...pseudo.flatMap((p) => ['-p', p])], { stdio: 'ignore' });
  return file;
}

/**
 * A .snap of a few KiB whose two hard-linked files (one extended inode)
 * claim `bytes` each: packed uncompressed, then the inode's file_size
 * patched. What a listing (and an unpack) believes is what the inode says.
 */
export function claimingSnap(bytes: number): string {
  const dir = snapTree(GOOD_YAML, { 'data/blob': 'hello' });
  fs.linkSync(path.join(dir, 'data', 'blob'), path.join(dir, 'data', 'blob2'));
  const file = path.join(tmpdir('snapproc-hostile-snap-'), 'hostile.snap');
  execFileSync('mksquashfs', [dir, file, '-noappend', '-quiet', '-no-progress', '-all-root', '-noI', '-noD', '-noF', '-noX'], { stdio: 'ignore' });
  const b = fs.readFileSync(file);
  const inodeTable = Number(b.readBigUInt64LE(64));
  const dirTable = Number(b.readBigUInt64LE(72));
  let patched = 0;
  // Extended regular inode (type 9): file_size (u64) at +24, nlink (u32) at +40.
  for (let i = inodeTable + 2; i < dirTable - 44; i++) {
    if (b.readUInt16LE(i) === 9 && b.readBigUInt64LE(i + 24) === 5n && b.readUInt32LE(i + 40) === 2) {
      b.writeBigUInt64LE(BigInt(bytes), i + 24);
      patched++;
    }
  }
  if (patched !== 1) throw new Error(`claimingSnap: found ${patched} inodes to patch`);
  fs.writeFileSync(file, b);
  return file;
}

function aliasBomb(): string {
  let y = "name: hostile\nversion: '1'\na0: &a0 [x, x, x, x, x, x, x, x, x, x]\n";
  for (let i = 1; i < 9; i++) y += `a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]\n`;
  return y + 'apps:\n  svc:\n    command: bin/run\n    daemon: simple\n    environment: *a8\n';
}

export function corpus(): HostileSnap[] {
  const squashOk = haveSquashfsTools();
  const list: HostileSnap[] = [
    {
      name: 'FIFO as meta/snap.yaml (used to hang validate and the supervisor)',
      make: () => {
        const d = snapTree('');
        execFileSync('mkfifo', [path.join(d, 'meta', 'snap.yaml')]);
        return d;
      },
      refused: /meta\/snap\.yaml is a FIFO; a snap may not hold device nodes, FIFOs or sockets$/,
    },
    {
      name: 'meta/ symlinked out of the tree',
      make: () => {
        const outside = snapTree();
        const d = snapTree('');
        fs.rmSync(path.join(d, 'meta'), { recursive: true });
        fs.symlinkSync(path.join(outside, 'meta'), path.join(d, 'meta'));
        return d;
      },
      refused: /meta -> \/.* is a symbolic link that leads outside the snap$/,
    },
    {
      name: 'hook symlinked to /bin/sh',
      make: () => {
        const d = snapTree();
        fs.mkdirSync(path.join(d, 'meta', 'hooks'));
        fs.symlinkSync('/bin/sh', path.join(d, 'meta', 'hooks', 'install'));
        return d;
      },
      refused: /meta\/hooks\/install -> \/bin\/sh is a symbolic link that leads outside the snap$/,
    },
    {
      name: 'hook symlinked to a script inside the snap (still not a regular file)',
      make: () => {
        const d = snapTree(GOOD_YAML, { 'bin/hook': '#!/bin/sh\nexit 0\n' });
        fs.mkdirSync(path.join(d, 'meta', 'hooks'));
        fs.symlinkSync('../../bin/hook', path.join(d, 'meta', 'hooks', 'install'));
        return d;
      },
      refused: /hook "install" is not a regular file: .*meta\/hooks\/install is a symbolic link$/,
    },
    {
      name: 'symlink escaping with ..',
      make: () => {
        const d = snapTree();
        fs.symlinkSync('../../../../../../etc/shadow', path.join(d, 'bin', 'shadow'));
        return d;
      },
      refused: /bin\/shadow -> \.\.\/.* is a symbolic link that leads outside the snap$/,
    },
    {
      name: 'symlink escaping through another link (lib -> bin, x -> lib/../..)',
      make: () => {
        const d = snapTree();
        fs.mkdirSync(path.join(d, 'deep', 'er'), { recursive: true });
        fs.symlinkSync('deep/er', path.join(d, 'lib'));
        fs.symlinkSync('lib/../../..', path.join(d, 'x'));
        return d;
      },
      refused: /\/x -> lib\/\.\.\/\.\.\/\.\. is a symbolic link that leads outside the snap$/,
    },
    {
      name: 'absolute symlink (points into the host)',
      make: () => {
        const d = snapTree();
        fs.symlinkSync('/etc', path.join(d, 'etc'));
        return d;
      },
      refused: /\/etc -> \/etc is a symbolic link that leads outside the snap$/,
    },
    {
      name: 'symlinks inside the snap are fine (also dangling ones, and a loop is refused only if it escapes)',
      make: () => {
        const d = snapTree();
        fs.symlinkSync('run', path.join(d, 'bin', 'run2'));
        fs.symlinkSync('../bin', path.join(d, 'meta', 'bin'));
        fs.symlinkSync('nowhere', path.join(d, 'bin', 'dangling'));
        fs.symlinkSync('.', path.join(d, 'self'));
        return d;
      },
      refused: null,
      check: (inst) => {
        assert(fs.readlinkSync(path.join(inst, 'bin', 'run2')) === 'run', 'bin/run2 kept as a link');
      },
    },
    {
      name: 'a symlink loop',
      make: () => {
        const d = snapTree();
        fs.symlinkSync('b', path.join(d, 'a'));
        fs.symlinkSync('a', path.join(d, 'b'));
        return d;
      },
      refused: /\/a -> b is a symbolic link that leads outside the snap$/,
    },
    {
      name: 'huge snap.yaml (2 MiB)',
      make: () => snapTree(GOOD_YAML + `summary: x\n# ${'x'.repeat(2 << 20)}\n`),
      refused: /meta\/snap\.yaml is larger than 1048576 bytes/,
    },
    {
      name: 'a huge sparse file elsewhere installs (it is data, not metadata)',
      make: () => {
        const d = snapTree();
        const fd = fs.openSync(path.join(d, 'big.img'), 'w');
        fs.ftruncateSync(fd, 8 * 1024 ** 3);
        fs.closeSync(fd);
        return d;
      },
      refused: null,
      check: (inst) => assert(fs.statSync(path.join(inst, 'big.img')).size === 8 * 1024 ** 3, 'big.img kept'),
    },
    {
      name: 'deep YAML (10,000 levels)',
      make: () => snapTree(GOOD_YAML + 'x: ' + '['.repeat(10000) + ']'.repeat(10000) + '\n'),
      refused: /snap\.yaml is nested too deeply \(more than 64 levels\)$/,
    },
    {
      name: 'alias bomb',
      make: () => snapTree(aliasBomb()),
      refused: /alias bomb/,
    },
    {
      name: 'invalid UTF-8',
      make: () => snapTree(Buffer.concat([Buffer.from(GOOD_YAML + 'summary: '), Buffer.from([0xc3, 0x28]), Buffer.from('\n')])),
      refused: /snap\.yaml is not valid UTF-8 \(invalid byte sequence at byte \d+\)$/,
    },
    {
      name: 'NUL byte',
      make: () => snapTree(GOOD_YAML + 'summary: a\0b\n'),
      refused: /snap\.yaml:7:11: snap\.yaml contains a NUL byte; control characters are not allowed$/,
    },
    {
      name: 'character device (0666) in a directory',
      root: true,
      make: () => {
        const d = snapTree();
        execFileSync('mknod', ['-m', '0666', path.join(d, 'null'), 'c', '1', '3']);
        return d;
      },
      refused: /\/null is a character device; a snap may not hold device nodes, FIFOs or sockets$/,
    },
    {
      name: 'unix socket in a directory',
      make: () => {
        const d = snapTree();
        execFileSync(process.execPath, ['-e', `require('net').createServer().listen(${JSON.stringify(path.join(d, 'sock'))}, () => process.exit(0))`]);
        return d;
      },
      refused: /\/sock is a socket; a snap may not hold device nodes, FIFOs or sockets$/,
    },
    {
      name: 'setuid and setgid files in a directory install without the bits',
      root: true,
      make: () => {
        const d = snapTree(GOOD_YAML, { 'bin/su': '#!/bin/sh\nid\n' });
        fs.chmodSync(path.join(d, 'bin', 'su'), 0o4755);
        fs.mkdirSync(path.join(d, 'shared'));
        fs.chmodSync(path.join(d, 'shared'), 0o2775);
        execFileSync('setcap', ['cap_setuid+ep', path.join(d, 'bin', 'run')]);
        return d;
      },
      refused: null,
      check: (inst) => {
        assert((fs.statSync(path.join(inst, 'bin', 'su')).mode & 0o7777) === 0o755, 'setuid stripped');
        assert((fs.statSync(path.join(inst, 'shared')).mode & 0o7777) === 0o775, 'setgid stripped');
        const caps = spawnSync('getcap', [path.join(inst, 'bin', 'run')], { encoding: 'utf8' }).stdout.trim();
        assert(caps === '', `file capabilities dropped (got ${caps})`);
      },
    },
  ];
  if (squashOk) {
    list.push(
      {
        name: '.snap with a setuid-root shell and a 0666 character device',
        make: () => squash(snapTree(GOOD_YAML, { 'bin/sh': '#!/bin/sh\n' }), ['bin/sh m 4755 0 0', 'dev d 755 0 0', 'dev/mem c 666 0 0 1 1']),
        refused: /hostile\.snap\/dev\/mem is a character device; a snap may not hold device nodes, FIFOs or sockets$/,
      },
      {
        name: '.snap with a block device',
        make: () => squash(snapTree(), ['disk b 666 0 0 7 0']),
        refused: /\/disk is a block device/,
      },
      {
        name: '.snap with a FIFO as meta/snap.yaml',
        make: () => {
          const d = snapTree('');
          return squash(d, ['meta/snap.yaml i 644 0 0 f']);
        },
        refused: /meta\/snap\.yaml is a FIFO/,
      },
      {
        name: '.snap with a setuid-root binary installs with the bit cleared',
        make: () => squash(snapTree(GOOD_YAML, { 'bin/su': '#!/bin/sh\nid\n' }), ['bin/su m 6755 0 0']),
        refused: null,
        check: (inst) => {
          const st = fs.statSync(path.join(inst, 'bin', 'su'));
          assert((st.mode & 0o7777) === 0o755, `setuid/setgid stripped (mode ${(st.mode & 0o7777).toString(8)})`);
        },
      },
      {
        name: '.snap with meta symlinked to /etc',
        make: () => {
          const d = snapTree('');
          fs.rmSync(path.join(d, 'meta'), { recursive: true });
          fs.symlinkSync('/etc', path.join(d, 'meta'));
          return squash(d);
        },
        refused: /meta -> \/etc is a symbolic link that leads outside the snap$/,
      },
      {
        // A few KiB that claim 2 PiB: refused from the listing, before anything is unpacked (issue 10, decompression bomb).
        name: '.snap whose listing claims 2 PiB (decompression bomb)',
        make: () => claimingSnap(2 ** 50),
        refused: /cannot unpack .*hostile\.snap: it unpacks to 2\.0 PiB in \d+ entries, more than the .* that \S+ has free \(keeping .* free\)$/,
      },
      {
        name: '.snap whose superblock claims 2,000,000 entries',
        make: () => {
          const f = squash(snapTree());
          const buf = fs.readFileSync(f);
          buf.writeUInt32LE(2_000_000, 4); // inode_count
          fs.writeFileSync(f, buf);
          return f;
        },
        refused: /hostile\.snap holds 2000000 entries, more than the limit of 1000000$/,
      },
      {
        name: 'truncated .snap',
        make: () => {
          const f = squash(snapTree(GOOD_YAML, { 'data/blob': randomBytes(300_000).toString('base64') }));
          const buf = fs.readFileSync(f);
          fs.writeFileSync(f, buf.subarray(0, Math.floor(buf.length / 2)));
          return f;
        },
        refused: /cannot unpack .*hostile\.snap: /,
      },
      {
        name: '.snap that is not squashfs',
        make: () => {
          const f = path.join(tmpdir('snapproc-hostile-snap-'), 'hostile.snap');
          fs.writeFileSync(f, 'PK\u0003\u0004 this is a zip, not a squashfs file\n');
          return f;
        },
        refused: /hostile\.snap is neither a directory/,
      },
      {
        name: '.snap with only the squashfs magic',
        make: () => {
          const f = path.join(tmpdir('snapproc-hostile-snap-'), 'hostile.snap');
          fs.writeFileSync(f, Buffer.concat([Buffer.from('hsqs'), Buffer.alloc(92)]));
          return f;
        },
        refused: /cannot unpack .*hostile\.snap: /,
      },
    );
  }
  return list;
}

function assert(ok: boolean, what: string): void {
  if (!ok) throw new Error(`check failed: ${what}`);
}
