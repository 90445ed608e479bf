// signal-app.ts: `snapproc signal NAME.APP SIGNAL [--all]`: one signal to an
// app's main process, or to every process of its cgroup, with a result that
// says who got it.
import { classifyCgroup, MainRecord } from './classify';
import { signalCgroup, signalVerified } from '../kernel/signal-guard';
import { parseSignal } from '../kernel/signal-names';

export interface SignalAppOptions {
  /** Every process of the cgroup subtree (frozen while signalled), not only the main process. */
  all?: boolean;
  /** The main process from a supervisor's record (null: it records none, nothing is guessed). */
  main?: MainRecord | number | null;
}

export interface SignalAppResult {
  signal: string;
  target: 'main' | 'cgroup';
  mainPid: number | null;
  signalled: number;
  gone: number;
  /** --all: the freeze did not complete in time, the members were signalled without it. */
  freezeSkipped?: boolean;
}

/** Sends a signal (name or number) to an app cgroup's main process, or with `all` to every member. */
export async function signalApp(dir: string, signal: string | number, options: SignalAppOptions = {}): Promise<SignalAppResult> {
  const sig = parseSignal(signal);
  if (options.all) {
    const r = await signalCgroup(dir, sig.number);
    return { signal: sig.name, target: 'cgroup', mainPid: null, signalled: r.signalled, gone: r.gone, freezeSkipped: r.freezeSkipped };
  }
  const { mainPid } = classifyCgroup(dir, { main: options.main });
  if (mainPid === null) return { signal: sig.name, target: 'main', mainPid: null, signalled: 0, gone: 0 };
  const startTime = typeof options.main === 'object' && options.main ? options.main.startTime : undefined;
  const outcome = signalVerified(mainPid, sig.number, dir, startTime);
  return { signal: sig.name, target: 'main', mainPid, signalled: outcome === 'signalled' ? 1 : 0, gone: outcome === 'gone' ? 1 : 0 };
}
