// change-host.ts: what the refresh, revert and remove steps (changes.ts) may
// ask of the supervisor that runs them. A narrow interface, so that the steps
// depend on this file and not on the Supervisor class (which imports them):
// the supervisor implements it, and a test could drive the steps with another.
import type { RevisionStore } from '../snap/revision-store';
import type { Service } from './service';
import type { HookResult } from '../snap/hooks';
import type { FlushQueue } from '../util/atomic-file';

export interface ChangeHost {
  /** The state root R. */
  readonly root: string;
  /** Where service and scope cgroups are made. */
  readonly cgroupParent: string;
  readonly store: RevisionStore;
  /** How many revisions a refresh keeps (SPEC 1: 2). */
  readonly retain: number;
  /** The log a change of this snap writes to. */
  changeLog(instance: string): string;
  /** Writes the launch files of a revision (their flushes queued in `batch` when given). */
  writeLaunchFiles(instance: string, rev: string, batch?: FlushQueue | null): Promise<void>;
  /** The supervised services of a snap (of one app), in start order. */
  servicesOf(instance: string, app?: string): Service[];
  /** Makes the snap's Service objects those of revision `rev`. */
  syncServices(instance: string, rev: string): void;
  /** Drops every Service object of a snap. */
  forgetServices(instance: string): void;
  /** Deletes a snap's retired revisions and discarded data in the background (not awaited: off the change's path). */
  sweepTrash(instance: string): void;
  /** Runs a hook of a revision; service commands it queues through snapctl run right after it. */
  runHook(instance: string, revision: string, hook: string, progress?: (line: string) => void): Promise<HookResult>;
  /** Removes launch files, empty cgroups and held sockets of a removed snap. */
  removeSnapState(instance: string): void;
}
