// signal-names.ts: signal names and numbers. Accepts `SIGUSR2`, `usr2`, `sigusr2`
// and `12`; rejects anything else with the list of valid names and, for a
// near miss, a "did you mean" hint (as execa does).
import { constants } from 'node:os';
import { usageError } from '../util/errors';

const BY_NAME = constants.signals as Record<string, number>;
const NAMES = Object.keys(BY_NAME).filter((n) => n !== 'SIGIOT' && n !== 'SIGPOLL' && n !== 'SIGUNUSED');
const BY_NUMBER = new Map<number, string>();
for (const name of NAMES) if (!BY_NUMBER.has(BY_NAME[name])) BY_NUMBER.set(BY_NAME[name], name);

// Real-time signals as glibc numbers them on Linux (32 and 33 are its own).
const SIGRTMIN = 34;
const SIGRTMAX = 64;

export interface Signal {
  name: string;
  number: number;
}

/** Every signal name snapproc accepts, in number order. */
export function signalNames(): string[] {
  return [...BY_NUMBER.entries()].sort((a, b) => a[0] - b[0]).map(([, n]) => n);
}

/** Resolves a signal given by name (any case, with or without SIG) or number. */
export function parseSignal(input: string | number): Signal {
  if (typeof input === 'number' || /^\d+$/.test(String(input).trim())) {
    const number = Number(input);
    const name = BY_NUMBER.get(number);
    if (name !== undefined) return { name, number };
    if (number >= SIGRTMIN && number <= SIGRTMAX) return { name: `SIGRTMIN+${number - SIGRTMIN}`, number };
    throw usageError(`unknown signal number ${number}; valid signals are 1-${SIGRTMAX}`);
  }
  const raw = String(input).trim();
  const upper = raw.toUpperCase();
  const name = upper.startsWith('SIG') ? upper : `SIG${upper}`;
  if (NAMES.includes(name)) {
    return { name, number: BY_NAME[name] };
  }
  const near = NAMES.find((n) => editDistance(n.slice(3), name.slice(3)) <= 1);
  const names = signalNames().join(', ');
  throw usageError(
    near
      ? `unknown signal "${raw}"; did you mean ${near}? Valid names: ${names}`
      : `unknown signal "${raw}"; valid names: ${names}`,
  );
}

// Optimal string alignment distance: an adjacent transposition counts as one edit.
function editDistance(a: string, b: string): number {
  const d: number[][] = Array.from({ length: a.length + 1 }, (_, i) => Array.from({ length: b.length + 1 }, (_, j) => (i === 0 ? j : j === 0 ? i : 0)));
  for (let i = 1; i <= a.length; i++) {
    for (let j = 1; j <= b.length; j++) {
      const cost = a[i - 1] === b[j - 1] ? 0 : 1;
      d[i][j] = Math.min(d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost);
      if (i > 1 && j > 1 && a[i - 1] === b[j - 2] && a[i - 2] === b[j - 1]) d[i][j] = Math.min(d[i][j], d[i - 2][j - 2] + 1);
    }
  }
  return d[a.length][b.length];
}

/** The name of a signal number, e.g. 15 -> SIGTERM. */
export function signalName(number: number): string {
  return BY_NUMBER.get(number) ?? `signal ${number}`;
}
