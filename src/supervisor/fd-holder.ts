// fd-holder.ts: the descriptors that must outlive the supervisor itself (SPEC
// 6): the listening sockets it holds for services and the services' fd
// stores (FDSTORE=1). A supervisor that dies, or is restarted on purpose,
// would close them with its own process; so a copy of each lives in a small
// holder process (snapproc-exec --hold, as s6-fdholderd holds fds for s6),
// started in its own cgroup under the supervisor's cgroup parent, that does
// nothing but keep them open. The next supervisor finds it from
// R/run/fd-holder.json (PID, start time, and which fd is what) and takes
// copies back with pidfd_getfd(2). Whenever the set changes, a new holder is
// started with the whole set and the previous one killed: the file always
// names a holder that has every descriptor it lists.
import * as fs from 'node:fs';
import * as path from 'node:path';
import { spawn } from 'node:child_process';
import { launcherPath, native } from '../kernel/native';
import { liveStartTimeOf, startTimeOf } from '../kernel/procfs';
import { writeFileAtomic } from '../util/atomic-file';

/** One held descriptor: a service's socket (`socket`) or an entry of its fd store (`store`). */
export interface HeldFd {
  kind: 'socket' | 'store';
  /** NAME.APP of the service. */
  service: string;
  /** Socket name, or FDNAME= of a stored fd. */
  name: string;
  /** The supervisor's own copy. */
  fd: number;
}

interface HolderFile {
  pid: number;
  startTime: number;
  /** fds[i] is the holder's fd 3 + i. */
  fds: Array<Omit<HeldFd, 'fd'>>;
}

export const HOLDER_CGROUP = 'snapproc-fd-holder.scope';

export class FdHolder {
  private holder: { pid: number; startTime: number; pidfd: number } | null = null;
  private chain: Promise<void> = Promise.resolve();

  constructor(
    readonly root: string,
    readonly cgroupParent: string,
    private say: (line: string) => void,
  ) {}

  get file(): string {
    return path.join(this.root, 'run', 'fd-holder.json');
  }

  /** The PID of the running holder, if any. */
  get pid(): number | null {
    return this.holder?.pid ?? null;
  }

  /**
   * Takes copies of what the holder of a previous supervisor keeps, and
   * adopts that holder. Nothing when there is none (or it is not the process
   * the file names any more).
   */
  recover(): HeldFd[] {
    let doc: HolderFile;
    try {
      doc = JSON.parse(fs.readFileSync(this.file, 'utf8')) as HolderFile;
    } catch {
      return [];
    }
    if (!Number.isInteger(doc.pid) || doc.pid <= 1 || liveStartTimeOf(doc.pid) !== doc.startTime) {
      this.say(`fd holder ${doc.pid} named in ${this.file} is gone: held sockets and fd stores are lost`);
      return [];
    }
    let pidfd: number;
    try {
      pidfd = native.pidfdOpen(doc.pid);
    } catch {
      return [];
    }
    const out: HeldFd[] = [];
    doc.fds.forEach((f, i) => {
      try {
        out.push({ ...f, fd: native.pidfdGetfd(pidfd, 3 + i) });
      } catch (err) {
        this.say(`fd holder ${doc.pid}: fd ${3 + i} (${f.service} ${f.kind} ${f.name}): ${(err as Error).message}`);
      }
    });
    this.holder = { pid: doc.pid, startTime: doc.startTime, pidfd };
    return out;
  }

  /** Hands the whole current set to a new holder (in order: updates never interleave). */
  update(fds: HeldFd[]): Promise<void> {
    const snapshot = fds.map((f) => ({ ...f }));
    const run = this.chain.then(() => this.replace(snapshot));
    this.chain = run.catch((err) => this.say(`fd holder: ${(err as Error).message}`));
    return run;
  }

  private async replace(fds: HeldFd[]): Promise<void> {
    const previous = this.holder;
    this.holder = null;
    if (fds.length === 0) {
      fs.rmSync(this.file, { force: true });
    } else {
      const cgroup = path.join(this.cgroupParent, HOLDER_CGROUP);
      fs.mkdirSync(cgroup, { recursive: true });
      const readyFd = 3 + fds.length;
      const child = spawn(launcherPath(), ['--cgroup', cgroup, '--ready-fd', String(readyFd), '--hold'], {
        stdio: ['ignore', 'ignore', 'ignore', ...fds.map((f) => f.fd), 'pipe'],
        detached: true, // a session of its own: no terminal's or test runner's signal reaches it
      });
      const pipe = child.stdio[readyFd] as NodeJS.ReadableStream | null;
      await new Promise<void>((resolve, reject) => {
        child.once('error', reject);
        child.once('exit', (code, sig) => reject(new Error(`fd holder exited at start (${code ?? sig})`)));
        pipe?.once('data', () => resolve());
      });
      (pipe as unknown as { destroy(): void }).destroy();
      child.removeAllListeners('exit');
      child.unref();
      const pid = child.pid!;
      const startTime = startTimeOf(pid)!;
      this.holder = { pid, startTime, pidfd: native.pidfdOpen(pid) };
      const doc: HolderFile = { pid, startTime, fds: fds.map(({ kind, service, name }) => ({ kind, service, name })) };
      writeFileAtomic(this.file, JSON.stringify(doc) + '\n', 0o600, { durable: false });
    }
    if (previous) {
      try {
        native.pidfdSendSignal(previous.pidfd, 9);
      } catch {
        // gone already
      }
      fs.closeSync(previous.pidfd);
    }
  }

  /** Waits for pending updates. */
  settled(): Promise<void> {
    return this.chain;
  }

  /** Lets go of the holder without ending it (supervisor shutdown: the next supervisor takes it over). */
  detach(): void {
    if (this.holder) fs.closeSync(this.holder.pidfd);
    this.holder = null;
  }
}
