// progress.ts: how long operations (install, refresh, revert, remove) show
// their steps. Piped or redirected, one line per step as it happens (what
// scripts and logs want). On a terminal the same lines stay as the per-step
// summary, and below them a live line says which step runs and for how long,
// redrawn ten times a second and erased at the end.

export interface Progress {
  /** One progress line from the supervisor (`[3/9] stop services ... (12 ms)`). */
  line(text: string): void;
  /** Ends the live line (call in a finally). */
  done(): void;
}

export function progressPrinter(what: string, out: NodeJS.WriteStream = process.stdout): Progress {
  if (!out.isTTY) return { line: (text) => void out.write(text + '\n'), done: () => {} };
  const t0 = Date.now();
  let step = '';
  let live = false;
  const draw = () => {
    const secs = ((Date.now() - t0) / 1000).toFixed(1);
    out.write(`\r\x1b[K${what}: ${step || 'starting'} (${secs} s)`);
    live = true;
  };
  const clear = () => {
    if (live) out.write('\r\x1b[K');
    live = false;
  };
  const timer = setInterval(draw, 100);
  timer.unref();
  draw();
  return {
    line(text) {
      clear();
      out.write(text + '\n');
      const m = /^\[(\d+)\/(\d+)\]/.exec(text);
      if (m) step = Number(m[1]) < Number(m[2]) ? `step ${Number(m[1]) + 1}/${m[2]}` : `finishing`;
      draw();
    },
    done() {
      clearInterval(timer);
      clear();
    },
  };
}
