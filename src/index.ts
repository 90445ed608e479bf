// index.ts: snapproc's public library API. Another Node supervisor imports
// this to discover, classify, signal, freeze and stop a snap's (or any
// cgroup's) processes. The CLI is a thin layer over the same functions.
export { SnapprocError, hasCode } from './util/errors';
export { cgroup2Mount, findCgroup2Mount, cgroupOfPid, cgroupSubtree, removeCgroupTree } from './kernel/cgroupfs';
export { serviceCgroupName, appScopeName, hookScopeName, parseCgroupName, splitSnapApp } from './process/cgroup-names';
export type { CgroupKind, SnapCgroupName } from './process/cgroup-names';
export { findSnapCgroups, findServiceCgroup } from './process/find-cgroups';
export type { SnapCgroup, FindOptions } from './process/find-cgroups';
export { classifyCgroup, cgroupPids } from './process/classify';
export type { ProcessInfo, ProcessRole, MainRecord, ClassifyOptions, CgroupProcesses } from './process/classify';
export { snapProcesses } from './process/process-table';
export type { AppProcesses, SnapProcessesOptions } from './process/process-table';
export { revisionOf, startTimeOf } from './kernel/procfs';
export { parseSignal, signalNames, signalName } from './kernel/signal-names';
export type { Signal } from './kernel/signal-names';
export { signalVerified, signalCgroupVerified } from './kernel/signal-guard';
export type { SignalOutcome, FanoutResult } from './kernel/signal-guard';
export { signalApp } from './process/signal-app';
export type { SignalAppOptions, SignalAppResult } from './process/signal-app';
export { freezeCgroup, thawCgroup, isFrozen } from './kernel/freeze';
export type { FreezeResult } from './kernel/freeze';
export { killCgroup } from './kernel/kill';
export type { KillResult } from './kernel/kill';
export { stopCgroup, stopModeSignal, parseStopMode, STOP_MODES, DEFAULT_STOP_MODE, DEFAULT_STOP_TIMEOUT_MS } from './process/stop';
export type { StopMode, StopOptions, StopResult } from './process/stop';
export { parseDuration, formatDuration } from './util/duration';
export { parseSnapYaml, validateSnapYaml, startOrder, summarizeSnap, SnapYamlError } from './snap/snap-yaml';
export type { SnapYaml, AppInfo, HookInfo, SocketInfo, Problem, RefreshMode, RestartCondition, DaemonType } from './snap/snap-yaml';
export { RevisionStore, resolveRoot, defaultRoot } from './snap/revision-store';
export type { InstalledSnap, InstalledRevision, RevisionPaths } from './snap/revision-store';
export { Supervisor, defaultCgroupParent } from './supervisor/supervisor';
export type { SupervisorOptions } from './supervisor/supervisor';
export type { ServiceRecord, ServiceState } from './supervisor/records';
export { request, call } from './supervisor/client';
export type { CallOptions, ParamsFor, ResultFor } from './supervisor/client';
export type { ControlMethods, ControlMethod, ParamsOf, ResultOf, Queued, InstallResult, RefreshResult, RevertResult, RemoveResult, ServiceStopResult } from './supervisor/protocol';
export { serviceStatus } from './supervisor/service-status';
export type { ServiceStatusRow, ServiceCurrent } from './supervisor/service-status';
