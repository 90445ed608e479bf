// layers.test.ts: src/ is layered (util < kernel < process < snap <
// supervisor < cli, each folder's index.ts says what it may import) and has
// no import circle. Every import counts, type-only and dynamic ones too: a
// circle over a type is still a circle for a reader.
import { test } from 'uvu';
import * as assert from 'uvu/assert';
import * as fs from 'node:fs';
import * as path from 'node:path';
import { REPO } from './helpers';

const SRC = path.join(REPO, 'src');
const IMPORT = /(?:\bfrom\s*|\bimport\s*\(\s*|\brequire\s*\(\s*)['"](\.{1,2}\/[^'"]+)['"]/g;

function sourceFiles(dir: string): string[] {
  return fs.readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const p = path.join(dir, e.name);
    return e.isDirectory() ? sourceFiles(p) : e.name.endsWith('.ts') ? [p] : [];
  });
}

/** file (relative to src, no extension) -> the src files it imports. */
function importGraph(): Map<string, string[]> {
  const graph = new Map<string, string[]>();
  for (const file of sourceFiles(SRC)) {
    const text = fs.readFileSync(file, 'utf8').replace(/^\s*\/\/.*$/gm, '');
    const from = path.relative(SRC, file).replace(/\.ts$/, '');
    const deps = new Set<string>();
    for (const m of text.matchAll(IMPORT)) {
      const target = path.relative(SRC, path.resolve(path.dirname(file), m[1]));
      if (target.startsWith('..')) continue; // package.json and the like
      const ts = fs.existsSync(path.join(SRC, target + '.ts')) ? target : path.join(target, 'index');
      deps.add(ts);
    }
    graph.set(from, [...deps]);
  }
  return graph;
}

function layerRules(): Map<string, string[]> {
  const rules = new Map<string, string[]>();
  for (const e of fs.readdirSync(SRC, { withFileTypes: true })) {
    if (!e.isDirectory()) continue;
    const index = fs.readFileSync(path.join(SRC, e.name, 'index.ts'), 'utf8');
    const m = /LAYER = \{ name: '([a-z]+)', mayImport: \[([^\]]*)\] \}/.exec(index);
    assert.ok(m, `src/${e.name}/index.ts declares its LAYER`);
    assert.is(m![1], e.name);
    rules.set(e.name, [...m![2].matchAll(/'([a-z]+)'/g)].map((x) => x[1]));
  }
  return rules;
}

test('every folder of src/ declares its layer, and files import only from their own layer or the ones it names', () => {
  const rules = layerRules();
  assert.equal([...rules.keys()].sort(), ['cli', 'kernel', 'process', 'snap', 'supervisor', 'util']);
  const wrong: string[] = [];
  for (const [file, deps] of importGraph()) {
    const layer = file.includes('/') ? file.split('/')[0] : null;
    if (layer === null) continue; // src/index.ts: the public surface, above every layer
    for (const dep of deps) {
      const depLayer = dep.includes('/') ? dep.split('/')[0] : '(top)';
      if (depLayer !== layer && !rules.get(layer)!.includes(depLayer)) wrong.push(`${file} -> ${dep}`);
    }
  }
  assert.equal(wrong, [], `imports against the layers:\n${wrong.join('\n')}`);
});

test('no import circle between files of src/', () => {
  const graph = importGraph();
  const state = new Map<string, 'open' | 'done'>();
  const circles: string[] = [];
  const visit = (file: string, trail: string[]) => {
    if (state.get(file) === 'done') return;
    if (state.get(file) === 'open') {
      circles.push([...trail.slice(trail.indexOf(file)), file].join(' -> '));
      return;
    }
    state.set(file, 'open');
    for (const dep of graph.get(file) ?? []) visit(dep, [...trail, file]);
    state.set(file, 'done');
  };
  for (const file of graph.keys()) visit(file, []);
  assert.equal(circles, [], `import circles:\n${circles.join('\n')}`);
});

test.run();
