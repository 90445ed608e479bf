// table.ts: how benchmarks measure and report (BENCH.md): contenders run
// alternately (A B A B ...), each cell is the median of several runs, and
// every row sets snapproc against a baseline measured in the same run:
// measure, N, snapproc, baseline, ratio, goal, met?.
import * as fs from 'node:fs';
import { RESULTS_ENV } from './harness';

export interface Row {
  measure: string;
  n: number | string;
  /** Median, ms; null when not measured (see note). */
  snapproc: number | null;
  /** Median of the baseline, ms; null when not measured (see note). */
  baseline: number | null;
  /** Target: snapproc / baseline at most this; undefined for rows shown for information. */
  goal?: number;
  /** Shown under the table, referenced from the row. */
  note?: string;
  /** What snapproc and baseline count, when not milliseconds. */
  unit?: 'MiB' | '/s';
}

export type Verdict = 'yes' | 'NO' | 'info' | 'skipped';

export function verdict(row: Row): Verdict {
  if (row.snapproc === null || row.baseline === null) return 'skipped';
  if (row.goal === undefined) return 'info';
  return row.snapproc / row.baseline <= row.goal ? 'yes' : 'NO';
}

export function median(xs: number[]): number {
  if (xs.length === 0) return NaN;
  const s = [...xs].sort((a, b) => a - b);
  const mid = s.length >> 1;
  return s.length % 2 ? s[mid] : (s[mid - 1] + s[mid]) / 2;
}

export function formatMs(ms: number | null): string {
  if (ms === null || Number.isNaN(ms)) return '-';
  if (ms >= 10_000) return `${(ms / 1000).toFixed(1)} s`;
  if (ms >= 1000) return `${(ms / 1000).toFixed(2)} s`;
  if (ms >= 100) return `${ms.toFixed(0)} ms`;
  if (ms >= 10) return `${ms.toFixed(1)} ms`;
  if (ms >= 1) return `${ms.toFixed(2)} ms`;
  return `${ms.toFixed(3)} ms`;
}

/** A row's value in its unit: ms by default, else MiB or a rate per second. */
export function formatValue(v: number | null, unit?: Row['unit']): string {
  if (unit === undefined) return formatMs(v);
  if (v === null || Number.isNaN(v)) return '-';
  return `${v >= 100 ? v.toFixed(0) : v >= 10 ? v.toFixed(1) : v.toFixed(2)} ${unit === 'MiB' ? 'MiB' : '/s'}`;
}

function formatRatio(row: Row): string {
  if (row.snapproc === null || row.baseline === null) return '-';
  const r = row.snapproc / row.baseline;
  return r >= 100 ? `${r.toFixed(0)}x` : r >= 10 ? `${r.toFixed(1)}x` : `${r.toFixed(2)}x`;
}

/** Prints the table, then the notes (numbered in order of first use). */
export function printTable(title: string, rows: Row[], footer: string[] = []): void {
  const notes: string[] = [];
  const mark = (note?: string) => {
    if (!note) return '';
    let i = notes.indexOf(note);
    if (i < 0) i = notes.push(note) - 1;
    return ` (${i + 1})`;
  };
  const cells = [['measure', 'N', 'snapproc', 'baseline', 'ratio', 'goal', 'met?']];
  for (const row of rows) {
    cells.push([
      row.measure + mark(row.note),
      String(row.n),
      formatValue(row.snapproc, row.unit),
      formatValue(row.baseline, row.unit),
      formatRatio(row),
      row.goal === undefined ? '-' : `<= ${row.goal}x`,
      verdict(row),
    ]);
  }
  const widths = cells[0].map((_, i) => Math.max(...cells.map((c) => c[i].length)));
  const right = new Set([1, 2, 3, 4]);
  const line = (c: string[]) => '| ' + c.map((v, i) => (right.has(i) ? v.padStart(widths[i]) : v.padEnd(widths[i]))).join(' | ') + ' |';
  const out = [`\n${title}\n`, line(cells[0]), '|' + widths.map((w, i) => (right.has(i) ? '-'.repeat(w + 1) + ':' : '-'.repeat(w + 2))).join('|') + '|'];
  for (const c of cells.slice(1)) out.push(line(c));
  out.push('');
  notes.forEach((n, i) => out.push(`(${i + 1}) ${n}`));
  for (const f of footer) out.push(f);
  process.stdout.write(out.join('\n') + '\n');
}

/** Appends the rows to the file run.ts reads its summary from (when run by run.ts). */
export function reportRows(file: string, rows: Row[]): void {
  const target = process.env[RESULTS_ENV];
  if (!target) return;
  fs.appendFileSync(target, rows.map((r) => JSON.stringify({ file, ...r, verdict: verdict(r) })).join('\n') + '\n');
}

/** With SNAPPROC_BENCH_RAW=1, every sample goes to stderr (to look at spread and outliers). */
export function showRaw(label: string, times: Map<string, number[]>): void {
  if (process.env.SNAPPROC_BENCH_RAW !== '1') return;
  for (const [name, xs] of times) process.stderr.write(`    raw ${label} ${name}: ${xs.map((x) => x.toFixed(2)).join(' ')}\n`);
}

/** A contender: a name and one run of it (sync or async). */
export interface Contender {
  name: string;
  run: () => unknown | Promise<unknown>;
  /** Take part in the first `rounds` rounds only (for the slow ones). */
  rounds?: number;
  /** Skip the untimed warm-up round (for the slow ones). */
  noWarmup?: boolean;
  /** Untimed preparation before each timed run (e.g. a peer's own rest period). */
  before?: () => unknown | Promise<unknown>;
}

/** Times one call, in ms. */
export async function timeOnce(fn: () => unknown | Promise<unknown>): Promise<number> {
  const t0 = performance.now();
  const r = fn();
  if (r instanceof Promise) await r;
  return performance.now() - t0;
}

/**
 * Runs the contenders in turn, round after round (A B C A B C ...), after
 * `warmup` untimed rounds; returns each one's times by name.
 */
export async function alternate(contenders: Contender[], rounds: number, warmup = 1): Promise<Map<string, number[]>> {
  const times = new Map<string, number[]>(contenders.map((c) => [c.name, []]));
  for (let w = 0; w < warmup; w++) {
    for (const c of contenders) if ((c.rounds ?? rounds) > 0 && !c.noWarmup) await timeOnce(c.run);
  }
  for (let r = 0; r < rounds; r++) {
    for (const c of contenders) {
      if (r >= (c.rounds ?? rounds)) continue;
      if (c.before) await c.before();
      times.get(c.name)!.push(await timeOnce(c.run));
    }
  }
  return times;
}

export interface BenchArgs {
  /** Section filters (words that did not name a file). */
  filters: string[];
  /** --n=100,1000: the process counts to measure. */
  ns?: number[];
  /** --reps=K: rounds per cell instead of the defaults. */
  reps?: number;
}

export function parseArgs(argv: string[]): BenchArgs {
  const out: BenchArgs = { filters: [] };
  for (const a of argv) {
    let m: RegExpExecArray | null;
    if ((m = /^--n=([\d,]+)$/.exec(a))) out.ns = m[1].split(',').filter(Boolean).map(Number);
    else if ((m = /^--reps=(\d+)$/.exec(a))) out.reps = Number(m[1]);
    else if (/^--(size|files|services)=\d+$/.test(a)) continue; // data.bench.ts's and scale.bench.ts's
    else if (a.startsWith('-')) throw new Error(`unknown option ${a} (known: --n=100,1000,4000 --reps=K --size=MiB --files=N --services=N)`);
    else out.filters.push(a.toLowerCase());
  }
  return out;
}

/** Whether a section (known by its names) is wanted by the filters; no filter wants all. */
export function wanted(args: BenchArgs, names: string[]): boolean {
  return args.filters.length === 0 || args.filters.some((f) => names.some((n) => n.includes(f)));
}
