// idle-wait.ts: whether a process is asleep waiting for something from
// outside itself (an event loop in epoll/poll/select, a server in accept, a
// timer, a signal), read from /proc/PID/syscall. The supervisor uses it to
// end a service's settle time early (see supervisor/service.ts): a process
// that executed its program and went to wait for work got past its start-up
// (configuration read, sockets bound, libraries loaded), which is what a
// crash at once would have shown. It proves no more than that: a process can
// still die later, which its restart-condition then handles.
import * as fs from 'node:fs';

/** The kernel's generic system call table (asm-generic/unistd.h: arm64, riscv64, loongarch64). */
const GENERIC_WAITS: Record<number, string> = { 22: 'epoll_pwait', 72: 'pselect6', 73: 'ppoll', 101: 'nanosleep', 115: 'clock_nanosleep', 133: 'rt_sigsuspend', 137: 'rt_sigtimedwait', 202: 'accept', 242: 'accept4', 441: 'epoll_pwait2' };

/**
 * System call numbers, per architecture, of the waits that count: event
 * loops, accept, timers, signal waits. Not counted: wait4/waitid (a wrapper
 * waiting for a child that may still fail), read (a pipe from a child, a
 * file), futex (a thread waiting for another during start-up).
 */
const IDLE_WAITS: Record<string, Record<number, string>> = {
  x64: {
    7: 'poll', 23: 'select', 34: 'pause', 35: 'nanosleep', 43: 'accept', 128: 'rt_sigtimedwait', 130: 'rt_sigsuspend',
    230: 'clock_nanosleep', 232: 'epoll_wait', 270: 'pselect6', 271: 'ppoll', 281: 'epoll_pwait', 288: 'accept4', 441: 'epoll_pwait2',
  },
  arm64: GENERIC_WAITS,
  riscv64: GENERIC_WAITS,
};

/** Whether this machine's system call numbers are known (elsewhere idleWaitOf always says null). */
export function idleWaitsKnown(): boolean {
  return IDLE_WAITS[process.arch] !== undefined;
}

/**
 * The name of the waiting system call the main thread of `pid` is asleep in
 * when it is one of the waits above; null when it runs, waits for something
 * else, is gone, or /proc/PID/syscall cannot be read (it needs ptrace
 * access: root, or the same user without Yama restrictions).
 */
export function idleWaitOf(pid: number): string | null {
  const table = IDLE_WAITS[process.arch];
  if (!table || !Number.isInteger(pid) || pid <= 0) return null;
  let text: string;
  try {
    text = fs.readFileSync(`/proc/${pid}/syscall`, 'latin1');
  } catch {
    return null;
  }
  // "NR arg1 ... arg6 sp pc" while blocked in a call; "running", or "-1 sp pc" outside one.
  const nr = Number(text.slice(0, text.indexOf(' ')));
  return Number.isInteger(nr) && nr >= 0 ? (table[nr] ?? null) : null;
}
