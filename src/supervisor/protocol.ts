// protocol.ts: the control API's methods with the params each takes and the
// result it answers, as types, so that `request`/`call` are typed per method
// (a client gets `ServiceRecord[]` from `status`, not `unknown`). Types only:
// the supervisor's handlers (supervisor.ts) answer these shapes.
import type { ServiceRecord } from './records';
import type { StopMode, StopResult } from '../process/stop';
import type { InstalledSnap } from '../snap/revision-store';
import type { ChangeRecord } from './change-runner';
import type { ServiceStatusRow } from './service-status';

/** What a state-changing request from inside a running hook of the same snap answers: it runs right after the hook. */
export interface Queued {
  queued: string;
}

export interface InstallResult {
  snap: string;
  revision: string;
  started: string[];
}

export interface RefreshResult {
  snap: string;
  from: string;
  to: string | null;
  change: string;
  enduring: string[];
  handedOver: string[];
  fellBack: string[];
}

export interface RevertResult {
  snap: string;
  from: string;
  to: string;
  change: string;
}

export interface RemoveResult {
  snap: string;
  removed: boolean;
  killed: number;
}

export type ServiceStopResult = { service: string } & StopResult;

/** What start, stop and restart act on: one snap (or app), several, or every installed snap. */
export type Targets = { snap: string; app?: string } | { targets: Array<{ snap: string; app?: string }> } | { all: true };

/** Every method: `params` it takes, `result` it answers. */
export interface ControlMethods {
  ping: { params: Record<string, never>; result: { pid: number; root: string; /** State-changing operations running or queued. */ operations: number } };
  status: { params: { snap?: string }; result: ServiceRecord[] };
  list: { params: Record<string, never>; result: InstalledSnap[] };
  changes: { params: { snap?: string }; result: ChangeRecord<unknown>[] };
  install: { params: { path: string }; result: InstallResult | RefreshResult };
  refresh: { params: { snap: string; from?: string; ignoreRunning?: boolean }; result: RefreshResult };
  revert: { params: { snap: string }; result: RevertResult };
  remove: { params: { snap: string; purge?: boolean }; result: RemoveResult };
  start: { params: Targets; result: string[] | Queued };
  stop: { params: Targets & { mode?: StopMode; timeout?: string }; result: ServiceStopResult[] | Queued };
  restart: { params: Targets; result: string[] | Queued };
  snapctl: {
    params: { command: 'services' | 'start' | 'stop' | 'restart'; names: string[]; enable?: boolean; disable?: boolean; reload?: boolean };
    result: ServiceStatusRow[] | Queued | { done: string[] };
  };
  shutdown: { params: { stopServices?: boolean }; result: { stopping: true } };
}

export type ControlMethod = keyof ControlMethods;
export type ParamsOf<M extends ControlMethod> = ControlMethods[M]['params'];
export type ResultOf<M extends ControlMethod> = ControlMethods[M]['result'];
