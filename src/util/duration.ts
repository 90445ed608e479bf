// duration.ts: Go-style durations ("30s", "1m30s", "500ms", "1h"), the form
// snap.yaml uses for stop-timeout and restart-delay and the CLI for --timeout.
// Parsed to milliseconds; negative and malformed values are rejected with
// a message that shows the accepted form.

const UNIT_MS: Record<string, number> = {
  ns: 1e-6,
  us: 1e-3,
  'µs': 1e-3,
  ms: 1,
  s: 1000,
  m: 60_000,
  h: 3_600_000,
};

const PART = /(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)/y;

/** Parses a Go duration to milliseconds. Returns an error message instead on bad input. */
export function parseDuration(text: string): { ms: number } | { error: string } {
  const s = text.trim();
  if (s === '') return { error: 'empty duration' };
  if (s.startsWith('-')) return { error: `negative duration "${text}"` };
  const body = s.startsWith('+') ? s.slice(1) : s;
  if (body === '0') return { ms: 0 };
  let total = 0;
  PART.lastIndex = 0;
  let pos = 0;
  while (pos < body.length) {
    PART.lastIndex = pos;
    const m = PART.exec(body);
    if (!m) {
      return { error: `invalid duration "${text}" (expected a number and a unit like 30s, 1m30s, 500ms)` };
    }
    total += Number(m[1]) * UNIT_MS[m[2]];
    pos = PART.lastIndex;
  }
  return { ms: Math.round(total) };
}

/** Like parseDuration, throwing `makeError(message)` on bad input. */
export function durationMs(text: string, makeError: (message: string) => Error): number {
  const r = parseDuration(text);
  if ('error' in r) throw makeError(r.error);
  return r.ms;
}

/** Formats milliseconds the way snap.yaml writes them: 1m30s, 500ms, 0s. */
export function formatDuration(ms: number): string {
  if (ms === 0) return '0s';
  if (ms < 1000) return `${ms}ms`;
  let rest = ms;
  let out = '';
  const h = Math.floor(rest / 3_600_000);
  if (h) { out += `${h}h`; rest -= h * 3_600_000; }
  const m = Math.floor(rest / 60_000);
  if (m) { out += `${m}m`; rest -= m * 60_000; }
  if (rest) out += rest % 1000 === 0 ? `${rest / 1000}s` : `${rest / 1000}s`;
  return out;
}
