// run.ts: `npm run bench [-- FILTER... --n=100,1000 --reps=K]`. Runs every
// dist/bench/*.bench.js (or those whose name contains a FILTER) in a process
// of its own, started inside `<bench cgroup>/runner` so that everything it
// starts lives in that cgroup; when the benchmark ends, however it ends, the
// whole bench cgroup is emptied and removed from here, outside it. FILTERs
// that name no file select sections inside the files (e.g. `discover`,
// `sigterm`, `startup`). Ends with how many targets were met.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as os from 'node:os';
import * as path from 'node:path';
import { destroyCgroup, newParentPath, PARENT_ENV, preconditions, RESULTS_ENV, sweepStale } from './harness';

interface Result { file: string; measure: string; n: number | string; verdict: string }

let current: { parent: string; pid?: number } | null = null;
let interrupted: NodeJS.Signals | null = null;

function runFile(file: string, argv: string[], resultsFile: string): Promise<number> {
  const parent = newParentPath();
  fs.mkdirSync(path.join(parent, 'runner'), { recursive: true });
  current = { parent };
  // The shell moves itself into the runner cgroup, then becomes the benchmark.
  const child = spawn('/bin/sh', ['-c', 'echo $$ > "$0/cgroup.procs" || exit 125; exec "$@"', path.join(parent, 'runner'), process.execPath, file, ...argv], {
    stdio: 'inherit',
    env: { ...process.env, [PARENT_ENV]: parent, [RESULTS_ENV]: resultsFile },
  });
  current.pid = child.pid;
  return new Promise((resolve) => {
    child.on('exit', (code, signal) => {
      destroyCgroup(parent);
      current = null;
      resolve(code ?? (signal ? 128 + (os.constants.signals[signal] ?? 0) : 1));
    });
  });
}

async function main(): Promise<void> {
  const argv = process.argv.slice(2);
  const words = argv.filter((a) => !a.startsWith('-')).map((a) => a.toLowerCase());
  const options = argv.filter((a) => a.startsWith('-'));
  const all = fs.readdirSync(__dirname).filter((f) => f.endsWith('.bench.js')).sort();
  const base = (f: string) => f.slice(0, -'.bench.js'.length);
  const fileWords = words.filter((w) => all.some((f) => base(f).includes(w)));
  const sectionWords = words.filter((w) => !fileWords.includes(w));
  const files = fileWords.length ? all.filter((f) => fileWords.some((w) => base(f).includes(w))) : all;
  if (files.length === 0) {
    process.stdout.write(`no benchmark files in ${__dirname} (build first: npx tsc -p tsconfig.json)\n`);
    process.exit(1);
  }
  const why = preconditions();
  if (why) {
    process.stdout.write(`benchmarks not run: ${why}\n`);
    process.exit(1);
  }
  const swept = sweepStale();
  if (swept.length) process.stdout.write(`removed ${swept.length} cgroup(s) left by earlier bench runs: ${swept.join(', ')}\n`);

  for (const sig of ['SIGINT', 'SIGTERM', 'SIGHUP'] as const) {
    process.on(sig, () => {
      // A terminal's Ctrl-C reaches the benchmark too; a signal sent to us alone is passed on.
      interrupted = sig;
      if (current?.pid) try { process.kill(current.pid, sig); } catch { /* already gone */ }
    });
  }
  process.on('exit', () => {
    if (current) destroyCgroup(current.parent);
  });

  const resultsFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), 'snapproc-bench-')), 'results.jsonl');
  const failed: string[] = [];
  for (const file of files) {
    process.stdout.write(`== ${file}\n`);
    const code = await runFile(path.join(__dirname, file), [...sectionWords, ...options], resultsFile);
    if (code !== 0) failed.push(`${file} (exit ${code})`);
    if (interrupted) break;
  }
  const results: Result[] = fs.existsSync(resultsFile)
    ? fs.readFileSync(resultsFile, 'utf8').split('\n').filter(Boolean).map((l) => JSON.parse(l) as Result)
    : [];
  fs.rmSync(path.dirname(resultsFile), { recursive: true, force: true });
  const count = (v: string) => results.filter((r) => r.verdict === v).length;
  const unmet = results.filter((r) => r.verdict === 'NO').map((r) => `${r.file}: ${r.measure.trim()} (N=${r.n})`);
  process.stdout.write(`\ntargets: ${count('yes')} met, ${count('NO')} not met, ${count('info')} for information, ${count('skipped')} skipped\n`);
  for (const u of unmet) process.stdout.write(`  not met: ${u}\n`);
  if (failed.length) process.stdout.write(`failed: ${failed.join(', ')}\n`);
  if (interrupted) process.exit(130);
  process.exit(failed.length ? 1 : 0);
}

void main();
