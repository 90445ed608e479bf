// snap.yaml as hostile input (issue 10, item 11): invalid UTF-8 and control
// characters such as NUL are refused (as snapd refuses them), 10,000-deep
// nesting gives one clear problem (not a stack overflow per level), and an
// alias bomb is bounded; each in one problem, quickly.
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { parseSnapYaml, validateSnapYaml, SnapYamlError } from '../src/snap/snap-yaml';
import { MAX_YAML_DEPTH } from '../src/snap/yaml-limits';

const test = suite('yaml-limits');
const BASE = "name: foo\nversion: '1'\n";

function oneProblem(input: string | Uint8Array, re: RegExp, maxMs = 1000): void {
  const t0 = Date.now();
  const r = validateSnapYaml(input);
  const ms = Date.now() - t0;
  assert.is(r.ok, false);
  if (r.ok) return;
  assert.is(r.problems.length, 1, JSON.stringify(r.problems).slice(0, 300));
  assert.match(r.problems[0].message, re);
  assert.ok(ms < maxMs, `took ${ms} ms`);
  assert.throws(() => parseSnapYaml(input), (e: Error) => e instanceof SnapYamlError && !e.message.includes('\n'));
}

test('invalid UTF-8 is refused with the byte offset; valid UTF-8 bytes are read', () => {
  oneProblem(Buffer.concat([Buffer.from(BASE + 'summary: a'), Buffer.from([0xff]), Buffer.from('\n')]), /^snap\.yaml is not valid UTF-8 \(invalid byte sequence at byte 33\)$/);
  oneProblem(Buffer.concat([Buffer.from(BASE + 'summary: '), Buffer.from([0xc0, 0xaf]), Buffer.from('\n')]), /not valid UTF-8/); // overlong
  oneProblem(Buffer.concat([Buffer.from(BASE + 'summary: '), Buffer.from([0xed, 0xa0, 0x80]), Buffer.from('\n')]), /not valid UTF-8/); // surrogate
  oneProblem(Buffer.concat([Buffer.from(BASE + 'summary: '), Buffer.from([0xe2, 0x82]), Buffer.from('\n')]), /not valid UTF-8/); // truncated
  const ok = validateSnapYaml(Buffer.from(BASE + 'summary: héllo ☃\n'));
  assert.ok(ok.ok);
  if (ok.ok) assert.is(ok.snap.summary, 'héllo ☃');
});

test('NUL and other control characters are refused with their position', () => {
  const r = validateSnapYaml(BASE + 'summary: a\0b\n');
  assert.is(r.ok, false);
  if (!r.ok) assert.equal(r.problems, [{ path: '', message: 'snap.yaml contains a NUL byte; control characters are not allowed', line: 3, column: 11 }]);
  oneProblem(Buffer.from(BASE + 'summary: a\u0007b\n'), /control character U\+0007/);
  oneProblem(BASE + 'name\0: x\n', /NUL byte/);
  assert.ok(validateSnapYaml(BASE + 'summary: "tab\there"\r\n').ok);
});

test('10,000-deep nesting (flow and block) gives one clear problem', () => {
  oneProblem(BASE + 'x: ' + '['.repeat(10000) + ']'.repeat(10000) + '\n', /^snap\.yaml is nested too deeply \(more than 64 levels\)$/, 500);
  oneProblem(BASE + 'x: ' + '{a: '.repeat(10000) + '1' + '}'.repeat(10000) + '\n', /nested too deeply/, 500);
  oneProblem(BASE + 'apps:\n  a:\n    command: ' + '['.repeat(1 << 19) + '\n', /nested too deeply/, 1000);
  oneProblem(BASE + 'x:\n' + Array.from({ length: 1000 }, (_, i) => ' '.repeat(i + 1) + 'a:').join('\n') + ' 1\n', /nested too deeply/, 3000);
  oneProblem(BASE + 'x:\n' + Array.from({ length: 1000 }, (_, i) => ' '.repeat(i + 1) + '-').join('\n') + ' 1\n', /nested too deeply/, 3000);
  // Just inside the limit is fine.
  assert.ok(validateSnapYaml(BASE + 'x: ' + '['.repeat(MAX_YAML_DEPTH - 1) + ']'.repeat(MAX_YAML_DEPTH - 1) + '\n').ok);
  // Quoted brackets are text, not nesting.
  assert.ok(validateSnapYaml(BASE + `summary: "${'['.repeat(100)}"\n`).ok);
});

test('an alias bomb is bounded: one problem, quickly, wherever it is used', () => {
  let bomb = BASE + 'a0: &a0 [x, x, x, x, x, x, x, x, x, x]\n';
  for (let i = 1; i < 10; i++) bomb += `a${i}: &a${i} [${Array(10).fill(`*a${i - 1}`).join(', ')}]\n`;
  oneProblem(bomb, /^snap\.yaml expands through its aliases to more than 100000 nodes \(an alias bomb\)$/, 500);
  oneProblem(bomb.replace(/^a9:/m, 'environment:'), /alias bomb/, 500);
  oneProblem(bomb.replace(/^a9: &a9/m, 'apps:\n  svc:\n    command: bin/x\n    environment:\n      A:').replace(/\[(\*a8, ){9}\*a8\]/, '[*a8]'), /alias bomb|must be/, 500);
  let maps = BASE + 'm0: &m0 {a: 1, b: 2, c: 3, d: 4, e: 5, f: 6, g: 7, h: 8, i: 9, j: 10}\n';
  for (let i = 1; i < 8; i++) maps += `m${i}: &m${i} {${Array.from({ length: 10 }, (_, k) => `k${k}: *m${i - 1}`).join(', ')}}\n`;
  oneProblem(maps, /alias bomb/, 500);
  oneProblem(BASE + 'x: &a [*a]\n', /recursive alias/);
  // Ordinary anchors and merge keys still work.
  const ok = validateSnapYaml(BASE + 'x: &common {stop-mode: sigterm}\napps:\n  svc:\n    command: bin/x\n    daemon: simple\n    <<: *common\n');
  assert.ok(ok.ok, JSON.stringify(ok));
});

test.run();
