// Hostile snaps through the library (issue 10, items 9-11): the corpus of
// test/hostile-corpus.ts against validate's reader (readSnapYamlFrom +
// validateSnapYaml) and the revision store's addRevision: the same refusal
// from both, in one line, quickly, and nothing written under R; accepted
// snaps are installed with setuid/setgid bits and file capabilities gone.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { readSnapYamlFrom, symlinkStaysInside } from '../src/snap/snap-from-path';
import { SnapYamlError, validateSnapYaml } from '../src/snap/snap-yaml';
import { RevisionStore } from '../src/snap/revision-store';
import { execFileSync } from 'node:child_process';
import { corpus, haveSquashfsTools, snapTree, squash } from './hostile-corpus';
import { gateOn, isRoot, listTree, tmpdir } from './helpers';

const test = suite('snap-from-path');


/** What `validate` does, as a function: the first problem as one line, or null. */
function validateError(source: string): string | null {
  try {
    const { text, file } = readSnapYamlFrom(source);
    const r = validateSnapYaml(text, file);
    if (!r.ok) return new SnapYamlError(r.problems, file).message;
    return null;
  } catch (err) {
    return (err as Error).message;
  }
}

test('symlinkStaysInside resolves like the kernel, through other links', () => {
  const d = tmpdir();
  fs.mkdirSync(path.join(d, 'a', 'b'), { recursive: true });
  fs.symlinkSync('a/b', path.join(d, 'ab'));
  const cases: Array<[string, string, boolean]> = [
    ['l1', 'a/b', true], ['l2', '../x', false], ['a/l3', '../a/b/../..', true], ['a/l3b', '../a/b/../../..', false], ['a/l4', '..', true], ['l5', '/etc', false],
    ['l6', 'ab/../..', true], ['l6b', 'ab/../../..', false], ['l7', 'ab/..', true], ['l8', 'missing/../a', true], ['a/b/l9', '../../..', false],
  ];
  for (const [rel, target, inside] of cases) {
    fs.symlinkSync(target, path.join(d, rel));
    assert.is(symlinkStaysInside(d, rel), inside, `${rel} -> ${target}`);
  }
});

for (const c of corpus()) {
  test(`hostile snap: ${c.name}`, async () => {
    if (c.root && !isRoot) return;
    const source = c.make();
    const t0 = Date.now();
    const v = validateError(source);
    const ms = Date.now() - t0;
    assert.ok(ms < 5000, `validate took ${ms} ms`);
    const root = path.join(tmpdir(), 'root');
    const store = new RevisionStore(root);
    if (c.refused) {
      assert.ok(v !== null, 'validate accepted it');
      assert.match(v!, c.refused);
      assert.not.match(v!, /\n/);
      let err: Error | null = null;
      try {
        await store.addRevision(source);
      } catch (e) {
        err = e as Error;
      }
      assert.ok(err, 'install accepted it');
      assert.match(err!.message, c.refused);
      assert.equal(listTree(root), [], 'nothing written under R');
    } else {
      assert.is(v, null, `validate refused it: ${v}`);
      const r = await store.addRevision(source);
      c.check?.(r.dir);
    }
  });
}

gateOn(test, haveSquashfsTools() ? null : 'mksquashfs/unsquashfs missing (apt-get install squashfs-tools)')('decompression bomb: a .snap larger than the free space of R\'s file system is refused before anything is unpacked; one that fits installs', async () => {
  const small = path.join(tmpdir(), 'small');
  fs.mkdirSync(small);
  execFileSync('mount', ['-t', 'tmpfs', '-o', 'size=16m,mode=755', 'snapproc-test-bomb', small]);
  try {
    const sparse = (mib: number) => {
      const d = snapTree();
      fs.mkdirSync(path.join(d, 'data'));
      fs.writeFileSync(path.join(d, 'data', 'big.img'), '');
      fs.truncateSync(path.join(d, 'data', 'big.img'), mib * 1024 * 1024);
      return squash(d);
    };
    const bomb = sparse(64);
    assert.ok(fs.statSync(bomb).size < 64 * 1024, `the .snap is small (${fs.statSync(bomb).size} bytes)`);
    const root = path.join(small, 'root');
    const usedBefore = fs.statfsSync(small).bfree;
    let err: Error | null = null;
    try {
      await new RevisionStore(root).addRevision(bomb);
    } catch (e) {
      err = e as Error;
    }
    assert.ok(err, 'a 64 MiB unpack into 16 MiB was accepted');
    assert.match(err!.message, new RegExp(`^cannot unpack ${bomb}: it unpacks to 64\\.0 MiB in \\d+ entries, more than the [\\d.]+ MiB that ${small} has free \\(keeping 1\\.6 MiB free\\)$`));
    assert.is((err as NodeJS.ErrnoException).code, 'ENOSPC');
    assert.ok(!fs.existsSync(root), 'nothing written under R');
    assert.is(fs.statfsSync(small).bfree, usedBefore, 'no block of the small file system used');
    // What fits (4 MiB of 16) installs, the sparse file kept.
    const r = await new RevisionStore(root).addRevision(sparse(4));
    assert.is(fs.statSync(path.join(r.dir, 'data', 'big.img')).size, 4 * 1024 * 1024);
  } finally {
    execFileSync('umount', ['-l', small]);
  }
});

test.run();
