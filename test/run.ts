// run.ts: runs every test file in a process of its own (each is also
// runnable alone) and ends with the line CI reads: `N passed, N failed,
// N skipped`. With SNAPPROC_REQUIRE_PRIVILEGED=1 (set by .ci/run, where the
// runner is root with cgroup v2) a skipped test fails the run.
import { spawn } from 'node:child_process';
import * as fs from 'node:fs';
import * as path from 'node:path';

interface FileResult { file: string; total: number; passed: number; skipped: number; code: number | null; output: string; ms: number }

function runFile(file: string): Promise<FileResult> {
  const started = Date.now();
  return new Promise((resolve) => {
    // Without NODE_EXTRA_CA_CERTS, as bin/snapproc runs node: the tests start the CLI and daemons as `node bin/snapproc`
    // hundreds of times, and Node parses that file at each start-up (~70 ms here). cli.test.ts and supervisor.test.ts set it where they test that it is dropped.
    const env: NodeJS.ProcessEnv = { ...process.env, NO_COLOR: '1' };
    delete env.NODE_EXTRA_CA_CERTS;
    const child = spawn(process.execPath, [file], { stdio: ['ignore', 'pipe', 'pipe'], env });
    let output = '';
    child.stdout.on('data', (d) => (output += d));
    child.stderr.on('data', (d) => (output += d));
    child.on('close', (code) => {
      const num = (label: string) => Number(new RegExp(`${label}:\\s+(\\d+)`).exec(output)?.[1] ?? NaN);
      resolve({ file, total: num('Total'), passed: num('Passed'), skipped: num('Skipped'), code, output, ms: Date.now() - started });
    });
  });
}

async function main(): Promise<void> {
  const dir = __dirname;
  const only = process.argv.slice(2);
  const files = fs.readdirSync(dir)
    .filter((f) => f.endsWith('.test.js'))
    .filter((f) => only.length === 0 || only.some((o) => f.startsWith(o)))
    .sort()
    .map((f) => path.join(dir, f));
  let passed = 0, failed = 0, skipped = 0;
  const skippedFiles: string[] = [];
  for (const file of files) {
    const r = await runFile(file);
    process.stdout.write(r.output.replace(/\n+$/, '') + `\n  (${path.basename(file)}: ${r.ms} ms)\n\n`);
    if (Number.isNaN(r.total)) {
      failed += 1; // crashed before uvu could report
      continue;
    }
    passed += r.passed;
    skipped += r.skipped;
    // uvu's Total counts the tests that ran: skipped ones are not in it.
    failed += r.total - r.passed;
    if (r.code !== 0 && r.total === r.passed) failed += 1;
    if (r.skipped > 0) skippedFiles.push(path.basename(file));
  }
  let exit = failed > 0 ? 1 : 0;
  if (process.env.SNAPPROC_REQUIRE_PRIVILEGED === '1' && skipped > 0) {
    process.stdout.write(`error: ${skipped} test(s) were skipped in ${skippedFiles.join(', ')}, but SNAPPROC_REQUIRE_PRIVILEGED=1 says this machine must run them all\n`);
    exit = 1;
  }
  process.stdout.write(`${passed} passed, ${failed} failed, ${skipped} skipped\n`);
  process.exit(exit);
}

void main();
