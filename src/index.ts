// index.ts: snapproc's public library API. Another Node supervisor imports
// this to discover, classify, signal, freeze and stop a snap's (or any
// cgroup's) processes. The CLI is a thin layer over the same functions.
export { SnapprocError, hasCode } from './errors';
export { cgroup2Mount, findCgroup2Mount, cgroupOfPid, cgroupSubtree, removeCgroupTree } from './cgroupfs';
export { serviceCgroupName, appScopeName, hookScopeName, parseCgroupName, splitSnapApp } from './names';
export type { CgroupKind, SnapCgroupName } from './names';
export { findSnapCgroups, findServiceCgroup } from './discover';
export type { SnapCgroup, FindOptions } from './discover';
export { classifyCgroup, cgroupPids } from './classify';
export type { ProcessInfo, ProcessRole, MainRecord, ClassifyOptions, CgroupProcesses } from './classify';
export { snapProcesses } from './snapps';
export type { AppProcesses, SnapProcessesOptions } from './snapps';
export { revisionOf, startTimeOf } from './procinfo';
export { parseSignal, signalNames, signalName } from './signals';
export type { Signal } from './signals';
export { signalVerified, signalCgroupVerified } from './guard';
export type { SignalOutcome, FanoutResult } from './guard';
export { signalApp } from './signal-app';
export type { SignalAppOptions, SignalAppResult } from './signal-app';
export { freezeCgroup, thawCgroup, isFrozen } from './freeze';
export type { FreezeResult } from './freeze';
export { killCgroup } from './kill';
export type { KillResult } from './kill';
export { stopCgroup, stopModeSignal, parseStopMode, STOP_MODES, DEFAULT_STOP_MODE, DEFAULT_STOP_TIMEOUT_MS } from './stop';
export type { StopMode, StopOptions, StopResult } from './stop';
export { parseDuration, formatDuration } from './duration';
export { parseSnapYaml, validateSnapYaml, startOrder, summarizeSnap, SnapYamlError } from './snapyaml';
export type { SnapYaml, AppInfo, HookInfo, SocketInfo, Problem, RefreshMode, RestartCondition, DaemonType } from './snapyaml';
export { RevisionStore, resolveRoot, defaultRoot } from './store';
export type { InstalledSnap, InstalledRevision, RevisionPaths } from './store';
export { Supervisor, defaultCgroupParent } from './supervisor/supervisor';
export type { SupervisorOptions } from './supervisor/supervisor';
export type { ServiceRecord, ServiceState } from './supervisor/records';
export { request, call } from './client';
export type { CallOptions } from './client';
