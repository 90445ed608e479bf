// snap-yaml.ts: meta/snap.yaml, read and checked the way snapd reads it, so
// that a snap which snapd accepts means the same thing here. Everything that
// governs processes (daemon, refresh-mode, stop-mode, timeouts, restart
// policy, before/after, sockets, hooks) is validated up front and turned into
// a model with every default filled in; nothing downstream re-reads the YAML.
//
// snapd decodes snap.yaml with go-yaml v2 (YAML 1.1): `0660` is octal, `no`
// and `yes` are booleans, and a scalar read into a string field keeps its
// source text (`version: 1.10` is "1.10", `restart-condition: no` is "no").
// We parse with `yaml` in 1.1 mode and take string fields from the source text
// for the same result. Every problem is collected with its field path and
// line:column before anything is thrown, so one run shows them all.
import { isAlias, isMap, isScalar, isSeq, LineCounter, parseDocument } from 'yaml';
import type { Document, Node, Pair, Scalar } from 'yaml';
import { posix } from 'node:path';
import { SnapprocError } from '../util/errors';
import { APP_NAME as APP_NAME_RE, validateAppName, validateSnapName } from './names';
import { controlCharacter, decodeSnapYaml, documentBounds, flowTooDeep, isStackOverflow, TOO_DEEP } from './yaml-limits';
import { formatDuration, parseDuration } from '../util/duration';
import { DEFAULT_STOP_MODE, DEFAULT_STOP_TIMEOUT_MS, STOP_MODES, stopModeSignal as stopModeOf, type StopMode } from '../process/stop';

// ---------------------------------------------------------------- types

export type DaemonType = 'simple' | 'forking' | 'oneshot' | 'notify';
export type Confinement = 'strict' | 'classic' | 'devmode';
/** `ignore-running` only for non-services; the rest only for services. */
export type RefreshMode =
  | 'restart'
  | 'endure'
  | 'sighup'
  | 'sighup-all'
  | 'sigusr1'
  | 'sigusr1-all'
  | 'sigusr2'
  | 'sigusr2-all'
  | 'ignore-running';
export type { StopMode } from '../process/stop';
/** snapd's restart conditions; `no` in snap.yaml is normalised to `never`. */
export type RestartCondition = 'never' | 'on-success' | 'on-failure' | 'on-abnormal' | 'on-abort' | 'on-watchdog' | 'always';
export type InstallMode = 'enable' | 'disable';
export type HookName = 'install' | 'pre-refresh' | 'post-refresh' | 'remove' | 'configure' | 'check-health';
export type StopSignal = 'SIGTERM' | 'SIGHUP' | 'SIGUSR1' | 'SIGUSR2' | 'SIGINT';

export interface SocketInfo {
  name: string;
  /** The value as written in snap.yaml. */
  listenStream: string;
  kind: 'unix' | 'tcp';
  /** unix: the path, unresolved (starts with $SNAP_DATA/ or $SNAP_COMMON/). */
  path?: string;
  /** tcp: `127.0.0.1`, `::1` or `::` (no brackets); undefined for a bare port (every address). */
  host?: string;
  /** tcp: 1..65535. */
  port?: number;
  /** File mode of a unix socket (e.g. 0o660 from `socket-mode: 0660`). */
  socketMode?: number;
}

export interface AppInfo {
  name: string;
  /** Command line relative to $SNAP (may start with `$SNAP/`). */
  command: string;
  daemon?: DaemonType;
  isService: boolean;
  /**
   * Services: the refresh mode, default `restart`. Non-services: `ignore-running`
   * when set, otherwise undefined (a running app then makes the snap busy and a
   * refresh is refused; apps are never stopped by a refresh).
   */
  refreshMode?: RefreshMode;
  /** Default `sigterm-all` (also filled in for non-services, used when removing). */
  stopMode: StopMode;
  /** Default 30s; `0` means the default. */
  stopTimeoutMs: number;
  /** Default 90s (systemd's); `0` means the default. */
  startTimeoutMs: number;
  stopCommand?: string;
  postStopCommand?: string;
  reloadCommand?: string;
  /** Services: default `on-failure`, `never` for oneshot. Non-services: always `never`. */
  restartCondition: RestartCondition;
  /** Default 100ms; `0` means the default. */
  restartDelayMs: number;
  /** Services that must start after this one (as written). */
  before: string[];
  /** Services that must start before this one (as written). */
  after: string[];
  sockets: Record<string, SocketInfo>;
  /**
   * snapproc extension `drain-signal` (e.g. SIGQUIT): what the old main process
   * gets once a graceful refresh has handed over to a successor. Default: the
   * signal of the stop-mode.
   */
  drainSignal?: string;
  /** snapproc extension `pid-file` (systemd's PIDFile=): `$SNAP_DATA/...` or `$SNAP_COMMON/...`, as written. */
  pidFile?: string;
  installMode?: InstallMode;
  /** Top-level `environment` overlaid with the app's own. */
  environment: Record<string, string>;
  /** `command-chain`: programs (relative to $SNAP) the command runs through, in order; each gets the rest as its arguments. */
  commandChain: string[];
  /** `watchdog-timeout` (services): the service must send WATCHDOG=1 at least this often; 0: no watchdog. */
  watchdogTimeoutMs: number;
  /** `success-exit-status` (services): exit codes that count as success besides 0. */
  successExitStatus: number[];
}

export interface HookInfo {
  name: HookName;
  /** The hook's `command-chain`. */
  commandChain?: string[];
}

export interface SnapYaml {
  name: string;
  version: string;
  confinement: Confinement;
  summary?: string;
  /** Top-level `environment` (already merged into every app's environment). */
  environment: Record<string, string>;
  /** In the order of snap.yaml. */
  apps: Record<string, AppInfo>;
  /** Known hooks only; unknown (well-formed) hook names are left out. */
  hooks: Partial<Record<HookName, HookInfo>>;
  /** Top-level keys snapproc does not model (base, plugs, layout, ...), as plain values. */
  extra: Record<string, unknown>;
}

export interface Problem {
  /** Field path such as `apps.svc.stop-mode`; '' for the document itself. */
  path: string;
  message: string;
  line?: number;
  column?: number;
}

export type ValidateResult = { ok: true; snap: SnapYaml } | { ok: false; problems: Problem[] };

export const INVALID_SNAP_YAML = 'ERR_SNAPPROC_INVALID_SNAP_YAML';

/** Thrown by parseSnapYaml; `problems` lists every problem found. */
export class SnapYamlError extends SnapprocError {
  readonly problems: Problem[];
  readonly source?: string;

  constructor(problems: Problem[], source?: string) {
    super(INVALID_SNAP_YAML, snapYamlErrorMessage(problems, source));
    this.name = 'SnapYamlError';
    this.problems = problems;
    if (source !== undefined) this.source = source;
  }
}

// ---------------------------------------------------------------- constants

export const daemonTypes: readonly DaemonType[] = ['simple', 'forking', 'oneshot', 'notify'];
export const confinements: readonly Confinement[] = ['strict', 'classic', 'devmode'];
/** Refresh modes a service may have. */
export const serviceRefreshModes: readonly RefreshMode[] = [
  'restart', 'endure', 'sighup', 'sighup-all', 'sigusr1', 'sigusr1-all', 'sigusr2', 'sigusr2-all',
];
export const stopModes: readonly StopMode[] = STOP_MODES;
export const restartConditions: readonly RestartCondition[] = [
  'never', 'on-success', 'on-failure', 'on-abnormal', 'on-abort', 'on-watchdog', 'always',
];
export const installModes: readonly InstallMode[] = ['enable', 'disable'];
/** The hooks snapproc runs; other hook names are ignored. */
export const hookNames: readonly HookName[] = ['install', 'pre-refresh', 'post-refresh', 'remove', 'configure', 'check-health'];

export { DEFAULT_STOP_MODE, DEFAULT_STOP_TIMEOUT_MS };
export const DEFAULT_START_TIMEOUT_MS = 90_000;
export const DEFAULT_RESTART_DELAY_MS = 100;
export const DEFAULT_REFRESH_MODE: RefreshMode = 'restart';

const VERSION = /^[a-zA-Z0-9](?:[a-zA-Z0-9:.+~-]{0,30}[a-zA-Z0-9+~])?$/;
const HOOK_NAME = /^[a-z](?:-?[a-z0-9])*$/;
/** Socket names follow the snap name rules, without the length limit (snapd's naming.ValidateSocket: `01game` is valid). */
const SOCKET_NAME = /^[a-z0-9-]*[a-z][a-z0-9-]*$/;
/** snapd's appContentWhitelist: what command lines may hold (no quotes, so snap-exec cannot be confused). */
const COMMAND_CHARS = /^[A-Za-z0-9/. _#:$-]*$/;
/** snapd's commandChainContentWhitelist: the same without white space. */
const COMMAND_CHAIN_CHARS = /^[A-Za-z0-9/._#:$-]*$/;
const ENV_NAME = /^[A-Za-z_][A-Za-z0-9_]*$/;
/** sun_path holds 108 bytes including the terminating NUL. */
const MAX_UNIX_PATH = 107;
const TCP_HOSTS = ['127.0.0.1', '[::1]', '[::]'];
/**
 * Fields only services may have, with snapd's message for each (validate.go).
 * snapd accepts stop-command, post-stop-command, reload-command and sockets
 * on an app that is not a service and ignores them; so does snapproc.
 */
const SERVICE_ONLY: Record<string, (app: string) => string> = {
  'stop-mode': (app) => `"stop-mode" cannot be used for ${q(app)}, only for services`,
  'install-mode': (app) => `"install-mode" cannot be used for ${q(app)}, only for services`,
  'start-timeout': () => 'start-timeout is only applicable to services',
  'stop-timeout': () => 'stop-timeout is only applicable to services',
  'watchdog-timeout': () => 'watchdog-timeout is only applicable to services',
  'restart-delay': () => 'restart-delay is only applicable to services',
  'restart-condition': () => 'restart-condition is only applicable to services',
  'success-exit-status': () => 'success exit status is only applicable to services',
  'timer': () => 'timer is only applicable to services',
  'before': () => 'must be a service to define before/after ordering',
  'after': () => 'must be a service to define before/after ordering',
  // snapproc's extensions, in the same words as stop-mode's.
  'drain-signal': (app) => `"drain-signal" cannot be used for ${q(app)}, only for services`,
  'pid-file': (app) => `"pid-file" cannot be used for ${q(app)}, only for services`,
};
/** Signals `drain-signal` may name (snapproc extension). */
export const drainSignals = ['sigquit', 'sigterm', 'sigint', 'sighup', 'sigusr1', 'sigusr2', 'sigwinch'] as const;
const PID_FILE = /^\$(SNAP_DATA|SNAP_COMMON)\/[A-Za-z0-9._\/-]+$/;

// ---------------------------------------------------------------- names

// Snap, instance and app names: one definition for snap.yaml and every command (./names.ts).
export { validateSnapName, validateInstanceName, validateAppName } from './names';

/** null when `version` is a valid snap version, else snapd's message. */
export function validateVersion(version: string): string | null {
  if (VERSION.test(version)) return null;
  if (version.length === 0) return 'invalid snap version: cannot be empty';
  if (/[^\x21-\x7e]/.test(version)) {
    return `invalid snap version ${q(version)}: must be printable, non-whitespace ASCII`;
  }
  const reasons: string[] = [];
  if (version.length > 32) reasons.push(`cannot be longer than 32 characters (got: ${version.length})`);
  if (/^[^a-zA-Z0-9]/.test(version)) reasons.push(`must start with an ASCII alphanumeric (and not '${version[0]}')`);
  if (version.length > 1) {
    const last = version[version.length - 1];
    if (/[^a-zA-Z0-9+~]$/.test(version)) {
      reasons.push(`must end with an ASCII alphanumeric or one of '+' or '~' (and not '${last}')`);
    }
    if (version.length > 2) {
      const bad = version.slice(1, -1).match(/[^a-zA-Z0-9:.+~-]+/g);
      if (bad) reasons.push(`contains invalid characters: ${bad.map(q).join(', ')}`);
    }
  }
  if (reasons.length === 0) return `invalid snap version ${q(version)}`;
  if (reasons.length === 1) return `invalid snap version ${q(version)}: ${reasons[0]}`;
  const last = reasons.pop();
  return `invalid snap version ${q(version)}: ${reasons.join(', ')}, and ${last}`;
}

// ---------------------------------------------------------------- helpers for consumers

/** The signal a stop-mode sends, and whether it goes to the whole cgroup. */
export function stopModeSignal(mode: StopMode): { signal: StopSignal; all: boolean } {
  const { signal, all } = stopModeOf(mode);
  return { signal: signal as StopSignal, all };
}

/** The signal a refresh sends instead of stopping; null for restart, endure, ignore-running (and unset). */
export function refreshSignal(mode: RefreshMode | undefined): { signal: StopSignal; all: boolean } | null {
  if (mode === undefined || mode === 'restart' || mode === 'endure' || mode === 'ignore-running') return null;
  return stopModeSignal(mode as StopMode);
}

/** True for a non-service app that may keep running through a refresh. */
export function isIgnoreRunning(app: AppInfo): boolean {
  return !app.isService && app.refreshMode === 'ignore-running';
}

/** The snap's services, in snap.yaml order. */
export function services(snap: SnapYaml): AppInfo[] {
  return Object.values(snap.apps).filter((a) => a.isService);
}

/**
 * Service names in start order: every `after` dependency (and every app that
 * lists this one in its `before`) comes first. Ties keep snap.yaml order, so
 * the result is deterministic. A cycle (rejected by validation) does not
 * throw: its members follow the rest in snap.yaml order.
 */
export function startOrder(snap: SnapYaml): string[] {
  const svcs = services(snap).map((a) => a.name);
  const { edges } = orderGraph(snap.apps);
  const indeg = new Map<string, number>(svcs.map((n) => [n, 0]));
  for (const n of svcs) for (const m of edges.get(n) ?? []) indeg.set(m, (indeg.get(m) ?? 0) + 1);
  const out: string[] = [];
  const done = new Set<string>();
  for (;;) {
    const next = svcs.find((n) => !done.has(n) && indeg.get(n) === 0);
    if (next === undefined) break;
    done.add(next);
    out.push(next);
    for (const m of edges.get(next) ?? []) indeg.set(m, (indeg.get(m) ?? 0) - 1);
  }
  for (const n of svcs) if (!done.has(n)) out.push(n);
  return out;
}

/** Multi-line, human-readable summary of what snapproc will do with the snap. */
export function summarizeSnap(snap: SnapYaml): string {
  const lines: string[] = [];
  lines.push(`${snap.name} ${snap.version} (${snap.confinement} confinement)${snap.summary ? `: ${snap.summary}` : ''}`);
  const apps = Object.values(snap.apps);
  if (apps.length === 0) lines.push('apps: none');
  else lines.push('apps:');
  for (const a of apps) {
    const parts: string[] = [];
    if (a.isService) {
      parts.push('service', `daemon=${a.daemon}`);
      parts.push(`refresh-mode=${a.refreshMode}`);
      parts.push(`stop-mode=${a.stopMode}`, `stop-timeout=${formatDuration(a.stopTimeoutMs)}`);
      parts.push(`start-timeout=${formatDuration(a.startTimeoutMs)}`);
      parts.push(`restart-condition=${a.restartCondition}`, `restart-delay=${formatDuration(a.restartDelayMs)}`);
      if (a.installMode) parts.push(`install-mode=${a.installMode}`);
      if (a.drainSignal) parts.push(`drain-signal=${a.drainSignal.toLowerCase()}`);
      if (a.pidFile) parts.push(`pid-file=${a.pidFile}`);
      if (a.before.length) parts.push(`before=${a.before.join(',')}`);
      if (a.after.length) parts.push(`after=${a.after.join(',')}`);
      const socks = Object.values(a.sockets).map((s) =>
        `${s.name}(${s.listenStream}${s.socketMode !== undefined ? `,mode=0${s.socketMode.toString(8)}` : ''})`,
      );
      if (socks.length) parts.push(`sockets=${socks.join(',')}`);
      if (a.stopCommand) parts.push(`stop-command=${JSON.stringify(a.stopCommand)}`);
      if (a.postStopCommand) parts.push(`post-stop-command=${JSON.stringify(a.postStopCommand)}`);
      if (a.reloadCommand) parts.push(`reload-command=${JSON.stringify(a.reloadCommand)}`);
    } else {
      parts.push('app');
      parts.push(
        a.refreshMode === 'ignore-running'
          ? 'refresh-mode=ignore-running (keeps running through a refresh)'
          : 'refresh-mode=unset (a refresh is refused while it runs)',
      );
    }
    lines.push(`  ${a.name}: ${parts.join(' ')}`);
  }
  const order = startOrder(snap);
  if (order.length) lines.push(`start order: ${order.join(', ')}`);
  const hooks = Object.keys(snap.hooks);
  lines.push(`hooks: ${hooks.length ? hooks.join(', ') : 'none'}`);
  return lines.join('\n');
}

// ---------------------------------------------------------------- problems

/** `SOURCE:LINE:COL: PATH: MESSAGE`, leaving out what is not known. */
export function formatProblem(p: Problem, source?: string): string {
  let where = source ?? '';
  if (p.line !== undefined) {
    where += `${where ? ':' : ''}${p.line}`;
    if (p.column !== undefined) where += `:${p.column}`;
  }
  const head = [where, p.path].filter((s) => s !== '').join(': ');
  return head ? `${head}: ${p.message}` : p.message;
}

/** Stable sort by line and column; problems without a position keep their place at the end. */
function inDocumentOrder(problems: Problem[]): Problem[] {
  const key = (p: Problem): number => (p.line === undefined ? Infinity : p.line * 1e6 + (p.column ?? 0));
  return problems
    .map((p, i) => ({ p, i }))
    .sort((a, b) => key(a.p) - key(b.p) || a.i - b.i)
    .map(({ p }) => p);
}

function snapYamlErrorMessage(problems: Problem[], source?: string): string {
  if (problems.length === 1) return formatProblem(problems[0], source);
  return [`snap.yaml has ${problems.length} problems`, ...problems.map((p) => formatProblem(p, source))].join('\n');
}

// ---------------------------------------------------------------- entry points

/** Parses and validates snap.yaml (text, or the file's bytes); throws SnapYamlError listing every problem. */
/** `hookFiles`: the names in the snap's meta/hooks/ (snapd's implicit hooks), for the rules about the set of hooks. */
export interface SnapYamlOptions {
  hookFiles?: readonly string[];
}

export function parseSnapYaml(text: string | Uint8Array, source?: string, options: SnapYamlOptions = {}): SnapYaml {
  const r = validateSnapYaml(text, source, options);
  if (!r.ok) throw new SnapYamlError(r.problems, source);
  return r.snap;
}

/**
 * Like parseSnapYaml, returning the problems instead of throwing. Bytes must
 * be UTF-8; control characters, nesting deeper than MAX_YAML_DEPTH and alias
 * expansion beyond MAX_YAML_EXPANDED_NODES each give one problem
 * (./yaml-limits.ts) before anything walks the document.
 */
export function validateSnapYaml(input: string | Uint8Array, source?: string, options: SnapYamlOptions = {}): ValidateResult {
  void source; // accepted for symmetry with parseSnapYaml; problems carry no source (formatProblem adds it)
  let text: string;
  if (typeof input === 'string') {
    text = input;
  } else {
    const d = decodeSnapYaml(input);
    if ('problem' in d) return { ok: false, problems: [{ path: '', message: d.problem.message }] };
    text = d.text;
  }
  const lc = new LineCounter();
  const ctrl = controlCharacter(text);
  if (ctrl) {
    lc.addNewLine(0);
    for (let i = text.indexOf('\n'); i >= 0 && i < ctrl.offset!; i = text.indexOf('\n', i + 1)) lc.addNewLine(i + 1);
    const pos = lc.linePos(ctrl.offset!);
    return { ok: false, problems: [{ path: '', message: ctrl.message, line: pos.line, column: pos.col }] };
  }
  if (flowTooDeep(text)) return { ok: false, problems: [{ path: '', message: TOO_DEEP }] };
  let doc: Document;
  try {
    doc = parseDocument(text, { version: '1.1', lineCounter: lc, prettyErrors: false });
  } catch (err) {
    if (err instanceof RangeError) return { ok: false, problems: [{ path: '', message: TOO_DEEP }] };
    throw err;
  }
  const ctx = new Ctx(doc, lc);
  if (doc.errors.length > 0) {
    const overflow = doc.errors.find((e) => isStackOverflow(e.message));
    if (overflow) return { ok: false, problems: [{ path: '', message: TOO_DEEP }] };
    for (const e of doc.errors) {
      const pos = lc.linePos(e.pos[0]);
      const message = e.code === 'MULTIPLE_DOCS' ? 'snap.yaml must hold a single YAML document' : e.message;
      ctx.problems.push({ path: '', message, line: pos.line, column: pos.col });
    }
    return { ok: false, problems: ctx.problems };
  }
  const bound = documentBounds(doc);
  if (bound) {
    ctx.add('', bound.message, bound.node);
    return { ok: false, problems: ctx.problems };
  }
  const snap = readSnap(ctx, ctx.deref(doc.contents as Node | null), options.hookFiles ?? []);
  if (ctx.problems.length > 0 || snap === undefined) return { ok: false, problems: inDocumentOrder(ctx.problems) };
  return { ok: true, snap };
}

// ---------------------------------------------------------------- reading

const ABSENT = undefined;
const WRONG = null;

interface Entry {
  key: string;
  keyNode: Node;
  value: Node | null;
}

class Ctx {
  readonly problems: Problem[] = [];
  constructor(
    readonly doc: Document,
    readonly lc: LineCounter,
  ) {}

  add(path: string, message: string, node?: Node | null): void {
    const p: Problem = { path, message };
    const range = node?.range;
    if (range) {
      const pos = this.lc.linePos(range[0]);
      p.line = pos.line;
      p.column = pos.col;
    }
    this.problems.push(p);
  }

  deref(node: Node | null | undefined): Node | null {
    let n: unknown = node ?? null;
    for (let i = 0; i < 100 && isAlias(n); i++) n = n.resolve(this.doc) ?? null;
    // `key:`, `key: ~` and `key: null` are absent, as go-yaml leaves the field unset.
    if (isScalar(n) && (n.value === null || n.value === undefined)) return null;
    return n as Node | null;
  }

  /** Entries of a mapping, `<<` merge keys expanded (explicit keys win, as in YAML 1.1). */
  entries(map: Node, path: string): Entry[] {
    const out: Entry[] = [];
    const seen = new Set<string>();
    const merges: (Node | null)[] = [];
    if (!isMap(map)) return out;
    for (const pair of map.items as Pair<unknown, unknown>[]) {
      const keyNode = this.deref(pair.key as Node | null);
      if (isScalar(keyNode) && typeof keyNode.value === 'symbol' && keyNode.source === '<<') {
        const v = this.deref(pair.value as Node | null);
        if (isSeq(v)) for (const it of v.items) merges.push(this.deref(it as Node));
        else if (v) merges.push(v);
        continue;
      }
      const key = isScalar(keyNode) ? scalarText(keyNode) : undefined;
      if (key === undefined || keyNode === null) {
        this.add(path, 'mapping keys must be strings', keyNode ?? map);
        continue;
      }
      seen.add(key);
      out.push({ key, keyNode, value: this.deref(pair.value as Node | null) });
    }
    for (const m of merges) {
      if (!isMap(m)) {
        this.add(path, 'a "<<" merge key must refer to a mapping', m ?? map);
        continue;
      }
      for (const e of this.entries(m, path)) {
        if (seen.has(e.key)) continue;
        seen.add(e.key);
        out.push(e);
      }
    }
    return out;
  }

  /**
   * A string field: undefined when absent or null, null (problem added) when
   * not a scalar. Scalars keep their source text, as go-yaml gives snapd.
   */
  str(node: Node | null, path: string, what: string): string | null | undefined {
    if (node === null) return ABSENT;
    if (isScalar(node)) return scalarText(node);
    this.add(path, `${what} must be a string, got ${kindOf(node)}`, node);
    return WRONG;
  }

  toJS(node: Node | null): unknown {
    return node === null ? null : (node as unknown as { toJS(doc: Document): unknown }).toJS(this.doc);
  }
}

/** Text of a scalar: plain scalars as written (YAML 1.1 `no` stays "no"), quoted ones decoded. */
function scalarText(node: Scalar): string | undefined {
  if (node.value === null || node.value === undefined) return undefined;
  if (node.type === 'PLAIN' && typeof node.source === 'string') return node.source;
  return typeof node.value === 'string' ? node.value : String(node.value);
}

function kindOf(node: Node | null): string {
  if (node === null) return 'nothing';
  if (isMap(node)) return 'a mapping';
  if (isSeq(node)) return 'a sequence';
  if (isScalar(node)) {
    const v = node.value;
    if (v === null) return 'null';
    if (typeof v === 'string') return 'a string';
    if (typeof v === 'number') return 'a number';
    if (typeof v === 'boolean') return 'a boolean';
    return 'a scalar';
  }
  return 'something else';
}

function q(s: string): string {
  return JSON.stringify(s);
}

function oneOf(values: readonly string[]): string {
  return values.join(', ');
}

/**
 * snapd's `"FIELD" field contains invalid value "V"`, plus what is allowed and,
 * for a near miss in case or separator (`SIGTERM`, `on_failure`), the fix.
 */
function invalidValue(field: string, value: string, allowed: readonly string[]): string {
  const near = value.toLowerCase().replace(/[_ ]/g, '-');
  const hint = near !== value && allowed.includes(near) ? ` (did you mean ${q(near)}?)` : '';
  return `${q(field)} field contains invalid value ${q(value)}, must be one of: ${oneOf(allowed)}${hint}`;
}

/** snapd's rule for hooks declared in snap.yaml or found in meta/hooks/. */
export const DEFAULT_CONFIGURE_NEEDS_CONFIGURE = 'cannot specify "default-configure" hook without "configure" hook';

const TOP_KEYS = new Set(['name', 'version', 'confinement', 'summary', 'environment', 'apps', 'hooks']);

function readSnap(ctx: Ctx, root: Node | null, hookFiles: readonly string[]): SnapYaml | undefined {
  if (root === null) {
    ctx.add('', 'snap.yaml is empty; it must be a mapping with at least "name" and "version"');
    return undefined;
  }
  if (!isMap(root)) {
    ctx.add('', `snap.yaml must be a mapping, got ${kindOf(root)}`, root);
    return undefined;
  }
  const top = new Map<string, Entry>();
  const extra: Record<string, unknown> = {};
  for (const e of ctx.entries(root, '')) {
    top.set(e.key, e);
    if (!TOP_KEYS.has(e.key)) extra[e.key] = ctx.toJS(e.value);
  }

  // name
  let name = '';
  const nameE = top.get('name');
  const nameV = nameE ? ctx.str(nameE.value, 'name', '"name"') : ABSENT;
  if (nameV === ABSENT || nameV === '') ctx.add('name', 'snap name cannot be empty', nameE?.value ?? nameE?.keyNode ?? root);
  else if (nameV !== WRONG) {
    name = nameV;
    const bad = validateSnapName(nameV);
    if (bad) ctx.add('name', bad, nameE?.value);
  }

  // version
  let version = '';
  const verE = top.get('version');
  const verV = verE ? ctx.str(verE.value, 'version', '"version"') : ABSENT;
  if (verV === ABSENT) ctx.add('version', 'invalid snap version: cannot be empty', verE?.keyNode ?? root);
  else if (verV !== WRONG) {
    version = verV;
    const bad = validateVersion(verV);
    if (bad) ctx.add('version', bad, verE?.value);
  }

  // confinement
  let confinement: Confinement = 'strict';
  const confE = top.get('confinement');
  if (confE) {
    const v = ctx.str(confE.value, 'confinement', '"confinement"');
    if (typeof v === 'string') {
      if ((confinements as readonly string[]).includes(v)) confinement = v as Confinement;
      else ctx.add('confinement', `invalid confinement type: ${q(v)}, must be one of: ${oneOf(confinements)}`, confE.value);
    }
  }

  // summary
  let summary: string | undefined;
  const sumE = top.get('summary');
  if (sumE) {
    const v = ctx.str(sumE.value, 'summary', '"summary"');
    // snapd does not check the length of snap.yaml's summary (only the store does): neither does snapproc.
    if (typeof v === 'string') summary = v;
  }

  // environment
  const envE = top.get('environment');
  const environment = envE ? readEnvironment(ctx, envE.value, 'environment', '"environment"') : {};

  // Plugs bound to every app (snapd binds top-level plugs to all apps): sockets need network-bind.
  const topPlugs = new Set<string>();
  const plugsE = top.get('plugs');
  if (plugsE && isMap(plugsE.value)) for (const e of ctx.entries(plugsE.value, 'plugs')) topPlugs.add(e.key);

  // apps
  const apps: Record<string, AppInfo> = {};
  const appNodes = new Map<string, AppNodes>();
  const appsE = top.get('apps');
  if (appsE && appsE.value !== null) {
    if (!isMap(appsE.value)) {
      ctx.add('apps', `"apps" must be a mapping of app names to app definitions, got ${kindOf(appsE.value)}`, appsE.value);
    } else {
      for (const e of ctx.entries(appsE.value, 'apps')) {
        const path = `apps.${e.key}`;
        const badApp = validateAppName(e.key);
        if (badApp !== null) {
          // snapd's wording for a name that breaks its pattern; the length limit is snapproc's own.
          ctx.add(path, APP_NAME_RE.test(e.key) ? badApp : `cannot have ${q(e.key)} as app name - use letters, digits, and dash as separator`, e.keyNode);
          continue;
        }
        const r = readApp(ctx, e, path, environment, { snapName: name, topPlugs, confinement });
        if (r) {
          apps[e.key] = r.app;
          appNodes.set(e.key, r.nodes);
        }
      }
      checkOrdering(ctx, apps, appNodes);
      checkSocketClashes(ctx, apps, appNodes);
    }
  }

  // hooks
  const hooks: Partial<Record<HookName, HookInfo>> = {};
  const declaredHooks = new Map<string, Node>();
  const hooksE = top.get('hooks');
  if (hooksE && hooksE.value !== null) {
    if (!isMap(hooksE.value)) {
      ctx.add('hooks', `"hooks" must be a mapping of hook names to hook definitions, got ${kindOf(hooksE.value)}`, hooksE.value);
    } else {
      for (const e of ctx.entries(hooksE.value, 'hooks')) {
        const path = `hooks.${e.key}`;
        if (!HOOK_NAME.test(e.key)) {
          ctx.add(path, `invalid hook name: ${q(e.key)}`, e.keyNode);
          continue;
        }
        if (e.value !== null && !isMap(e.value)) {
          ctx.add(path, `hook ${q(e.key)} must be a mapping, got ${kindOf(e.value)}`, e.value);
          continue;
        }
        declaredHooks.set(e.key, e.keyNode);
        let chain: string[] | undefined;
        const ccE = e.value !== null ? ctx.entries(e.value, path).find((x) => x.key === 'command-chain') : undefined;
        if (ccE) chain = readCommandChain(ctx, ccE.value, `${path}.command-chain`, (v) => `hook command-chain contains illegal ${q(v)} (legal: '${COMMAND_CHAIN_CHARS.source}')`);
        if ((hookNames as readonly string[]).includes(e.key)) hooks[e.key as HookName] = chain?.length ? { name: e.key as HookName, commandChain: chain } : { name: e.key as HookName };
      }
    }
  }
  const dc = declaredHooks.get('default-configure');
  // Declared or implicit (a file in meta/hooks/), as snapd counts them.
  if ((dc || hookFiles.includes('default-configure')) && !declaredHooks.has('configure') && !hookFiles.includes('configure')) {
    ctx.add('hooks.default-configure', DEFAULT_CONFIGURE_NEEDS_CONFIGURE, dc ?? null);
  }

  if (ctx.problems.length > 0) return undefined;
  const snap: SnapYaml = { name, version, confinement, environment, apps, hooks, extra };
  if (summary !== undefined) snap.summary = summary;
  return snap;
}

function readEnvironment(ctx: Ctx, node: Node | null, path: string, what: string): Record<string, string> {
  const env: Record<string, string> = {};
  if (node === null) return env;
  if (!isMap(node)) {
    ctx.add(path, `${what} must be a mapping of variable names to values, got ${kindOf(node)}`, node);
    return env;
  }
  for (const e of ctx.entries(node, path)) {
    const p = `${path}.${e.key}`;
    if (!ENV_NAME.test(e.key)) {
      ctx.add(p, `invalid environment variable name ${q(e.key)} (letters, digits and "_", not starting with a digit)`, e.keyNode);
      continue;
    }
    const v = ctx.str(e.value, p, `environment variable ${q(e.key)}`);
    if (v === WRONG) continue;
    env[e.key] = v ?? '';
  }
  return env;
}

/** Where the before/after/sockets values of an app are, for later problems. */
interface AppNodes {
  key: Node;
  before: Node[];
  after: Node[];
  sockets: Map<string, Node>;
}

function readApp(
  ctx: Ctx,
  entry: Entry,
  path: string,
  snapEnv: Record<string, string>,
  snapInfo: { snapName: string; topPlugs: Set<string>; confinement: Confinement },
): { app: AppInfo; nodes: AppNodes } | undefined {
  const name = entry.key;
  const node = entry.value;
  const forApp = `for app ${q(name)}`;
  if (node !== null && !isMap(node)) {
    ctx.add(path, `app ${q(name)} must be a mapping, got ${kindOf(node)}`, node);
    return undefined;
  }
  const f = new Map<string, Entry>();
  if (node !== null) for (const e of ctx.entries(node, path)) f.set(e.key, e);
  const val = (key: string): Node | null => f.get(key)?.value ?? null;
  const at = (key: string): Node | null => f.get(key)?.value ?? f.get(key)?.keyNode ?? node ?? entry.keyNode;
  const str = (key: string): string | null | undefined =>
    f.has(key) ? ctx.str(val(key), `${path}.${key}`, `${q(key)} ${forApp}`) : ABSENT;

  const nodes: AppNodes = { key: entry.keyNode, before: [], after: [], sockets: new Map() };

  // daemon first: it decides what else is allowed.
  let daemon: DaemonType | undefined;
  let daemonOk = true;
  const daemonV = str('daemon');
  if (daemonV === WRONG) daemonOk = false;
  else if (daemonV !== ABSENT) {
    if ((daemonTypes as readonly string[]).includes(daemonV)) daemon = daemonV as DaemonType;
    else {
      daemonOk = false;
      ctx.add(
        `${path}.daemon`,
        daemonV === 'dbus'
          ? 'daemon "dbus" is not supported by snapproc'
          : invalidValue('daemon', daemonV, daemonTypes),
        at('daemon'),
      );
    }
  }
  const isService = daemon !== undefined;
  // With a broken daemon field we cannot tell; don't pile "only for services" on top.
  const serviceKnown = daemonOk;

  const scope = str('daemon-scope');
  if (typeof scope === 'string') {
    if (scope !== 'system' && scope !== 'user') ctx.add(`${path}.daemon-scope`, `invalid "daemon-scope": ${q(scope)}`, at('daemon-scope'));
    else if (daemonV === ABSENT) ctx.add(`${path}.daemon-scope`, '"daemon-scope" can only be set for daemons', at('daemon-scope'));
    else if (scope === 'user') ctx.add(`${path}.daemon-scope`, 'daemon-scope "user" is not supported by snapproc (only system services)', at('daemon-scope'));
  }

  // service-only fields on a non-service
  if (serviceKnown && !isService) {
    for (const [key, message] of Object.entries(SERVICE_ONLY)) {
      const e = f.get(key);
      if (!e || e.value === null) continue;
      if ((isSeq(e.value) || isMap(e.value)) && e.value.items.length === 0) continue;
      ctx.add(`${path}.${key}`, message(name), e.value);
    }
  }
  const serviceField = (key: string): boolean => f.has(key) && val(key) !== null && (isService || !serviceKnown);
  // Checked on every app, as snapd checks them; they take effect only for services.
  const anyField = (key: string): boolean => f.has(key) && val(key) !== null;

  // command and the other command lines
  const command = readCommand(ctx, 'command', str('command'), `${path}.command`, at('command'));
  if (command === ABSENT) ctx.add(`${path}.command`, `"command" ${forApp} is required`, val('command') ?? f.get('command')?.keyNode ?? entry.keyNode);
  const cmds: Partial<Record<'stop-command' | 'post-stop-command' | 'reload-command', string>> = {};
  for (const key of ['stop-command', 'post-stop-command', 'reload-command'] as const) {
    if (!anyField(key)) continue;
    const c = readCommand(ctx, key, str(key), `${path}.${key}`, at(key));
    if (typeof c === 'string' && isService) cmds[key] = c;
  }

  // refresh-mode
  let refreshMode: RefreshMode | undefined = isService ? DEFAULT_REFRESH_MODE : undefined;
  const rm = str('refresh-mode');
  if (typeof rm === 'string' && serviceKnown) {
    if (!isService) {
      if (rm === 'ignore-running') refreshMode = 'ignore-running';
      else ctx.add(`${path}.refresh-mode`, `"refresh-mode" for app ${q(name)} can only have value "ignore-running"`, at('refresh-mode'));
    } else if (rm === 'ignore-running') {
      ctx.add(`${path}.refresh-mode`, `"refresh-mode" cannot be set to "ignore-running" for services`, at('refresh-mode'));
    } else if ((serviceRefreshModes as readonly string[]).includes(rm)) {
      refreshMode = rm as RefreshMode;
    } else {
      ctx.add(
        `${path}.refresh-mode`,
        invalidValue('refresh-mode', rm, serviceRefreshModes),
        at('refresh-mode'),
      );
    }
  }

  // stop-mode
  let stopMode: StopMode = DEFAULT_STOP_MODE;
  if (serviceField('stop-mode')) {
    const v = str('stop-mode');
    if (typeof v === 'string') {
      if ((stopModes as readonly string[]).includes(v)) stopMode = v as StopMode;
      else ctx.add(`${path}.stop-mode`, invalidValue('stop-mode', v, stopModes), at('stop-mode'));
    }
  }

  // durations
  const duration = (key: string, dflt: number): number => {
    if (!serviceField(key)) return dflt;
    const v = str(key);
    if (typeof v !== 'string') return dflt;
    if (v.trim().startsWith('-')) {
      ctx.add(`${path}.${key}`, `${key} cannot be negative`, at(key));
      return dflt;
    }
    const r = parseDuration(v);
    if ('error' in r) {
      ctx.add(`${path}.${key}`, `${q(key)} ${forApp}: ${r.error}`, at(key));
      return dflt;
    }
    return r.ms === 0 ? dflt : r.ms;
  };
  const stopTimeoutMs = duration('stop-timeout', DEFAULT_STOP_TIMEOUT_MS);
  const startTimeoutMs = duration('start-timeout', DEFAULT_START_TIMEOUT_MS);
  const restartDelayMs = duration('restart-delay', DEFAULT_RESTART_DELAY_MS);
  const watchdogTimeoutMs = duration('watchdog-timeout', 0);

  // success-exit-status: snapd's rule, integers 1..255 (0 always counts as success).
  const successExitStatus: number[] = [];
  if (serviceField('success-exit-status')) {
    const v = val('success-exit-status');
    const items = isSeq(v) ? v.items.map((it) => ctx.deref(it as Node)) : [v];
    for (const it of items) {
      const text = isScalar(it) ? scalarText(it) : undefined;
      const n = text !== undefined && /^[+-]?\d+$/.test(text.trim()) ? Number(text) : NaN;
      if (!(Number.isInteger(n) && n >= 1 && n <= 255)) {
        ctx.add(`${path}.success-exit-status`, 'exit code must be an integer in range 1 to 255', it ?? at('success-exit-status'));
        break;
      }
      if (!successExitStatus.includes(n)) successExitStatus.push(n);
    }
  }

  // timer: snapproc does not run timer services (no calendar scheduler): refused, not silently run as a plain service.
  if (serviceField('timer')) {
    const v = str('timer');
    if (v !== WRONG) ctx.add(`${path}.timer`, `timer services are not supported by snapproc (${q(v ?? '')} would never fire); run the job from a service of its own`, at('timer'));
  }

  // command-chain: snapd's content rule, and like command relative to $SNAP.
  const commandChain = anyField('command-chain')
    ? readCommandChain(ctx, val('command-chain'), `${path}.command-chain`, (v) => `app description field 'command-chain' contains illegal ${q(v)} (legal: '${COMMAND_CHAIN_CHARS.source}')`)
    : [];

  // restart-condition
  let restartCondition: RestartCondition = !isService || daemon === 'oneshot' ? 'never' : 'on-failure';
  if (serviceField('restart-condition')) {
    const v = str('restart-condition');
    if (typeof v === 'string') {
      if (v === 'no') restartCondition = 'never';
      else if ((restartConditions as readonly string[]).includes(v)) restartCondition = v as RestartCondition;
      else {
        // snapd's ErrUnknownRestartCondition, with the value and what is allowed.
        const near = v.toLowerCase().replace(/[_ ]/g, '-');
        const hint = near !== v && (restartConditions as readonly string[]).includes(near) ? ` (did you mean ${q(near)}?)` : '';
        ctx.add(`${path}.restart-condition`, `invalid restart condition ${q(v)}, must be one of: ${oneOf(['no', ...restartConditions])}${hint}`, at('restart-condition'));
      }
    }
  }

  // install-mode
  let installMode: InstallMode | undefined;
  if (serviceField('install-mode')) {
    const v = str('install-mode');
    if (typeof v === 'string') {
      if ((installModes as readonly string[]).includes(v)) installMode = v as InstallMode;
      else ctx.add(`${path}.install-mode`, invalidValue('install-mode', v, installModes), at('install-mode'));
    }
  }

  // before / after: names only here; existence, service-ness and cycles once all apps are read.
  const order = (key: 'before' | 'after'): string[] => {
    const names: string[] = [];
    if (!serviceField(key)) return names;
    const v = val(key);
    const bad = (): string[] => {
      ctx.add(`${path}.${key}`, `${q(key)} ${forApp} must be a list of app names`, at(key));
      return [];
    };
    if (!isSeq(v)) return bad();
    for (const it of v.items) {
      const n = ctx.deref(it as Node);
      const s = isScalar(n) ? scalarText(n) : undefined;
      if (s === undefined || n === null) return bad();
      names.push(s);
      nodes[key].push(n);
    }
    return names;
  };
  const before = order('before');
  const after = order('after');

  // sockets
  const sockets: Record<string, SocketInfo> = {};
  if (anyField('sockets')) {
    const v = val('sockets');
    if (!isMap(v)) {
      ctx.add(`${path}.sockets`, `"sockets" ${forApp} must be a mapping of socket names to socket definitions, got ${kindOf(v)}`, at('sockets'));
    } else {
      for (const se of ctx.entries(v, `${path}.sockets`)) {
        const r = readSocket(ctx, se, `${path}.sockets.${se.key}`, snapInfo.snapName);
        if (r) {
          sockets[se.key] = r.info;
          nodes.sockets.set(se.key, r.node);
        }
      }
    }
  }

  // snapd: socket activation needs the network-bind plug (on the app, or top-level and so on every app), unless classic.
  if (Object.keys(sockets).length > 0 && snapInfo.confinement !== 'classic') {
    const plugs = val('plugs');
    const own = isSeq(plugs) ? plugs.items.map((it) => ctx.deref(it as Node)).map((n) => (isScalar(n) ? scalarText(n) : undefined)) : [];
    if (!own.includes('network-bind') && !snapInfo.topPlugs.has('network-bind')) {
      ctx.add(`${path}.sockets`, '"network-bind" interface plug is required when sockets are used', at('sockets'));
    }
  }
  // Sockets of an app that is not a service are checked (as snapd does) but never bound.
  const boundSockets = isService ? sockets : {};
  // drain-signal, pid-file (snapproc extensions)
  let drainSignal: string | undefined;
  if (serviceField('drain-signal')) {
    const v = str('drain-signal');
    if (typeof v === 'string') {
      if ((drainSignals as readonly string[]).includes(v.toLowerCase())) drainSignal = v.toUpperCase();
      else ctx.add(`${path}.drain-signal`, invalidValue('drain-signal', v, drainSignals), at('drain-signal'));
    }
  }
  let pidFile: string | undefined;
  if (serviceField('pid-file')) {
    const v = str('pid-file');
    if (typeof v === 'string') {
      if (PID_FILE.test(v) && !v.endsWith('/') && !v.split('/').slice(1).some((part) => part === '' || part === '.' || part === '..')) pidFile = v;
      else ctx.add(`${path}.pid-file`, `"pid-file" ${forApp} must be a path under $SNAP_DATA/ or $SNAP_COMMON/ (no "..", no spaces), got ${q(v)}`, at('pid-file'));
    }
  }

  // environment
  const environment = { ...snapEnv };
  if (f.has('environment')) Object.assign(environment, readEnvironment(ctx, val('environment'), `${path}.environment`, `"environment" ${forApp}`));

  const app: AppInfo = {
    name,
    command: command ?? '',
    isService,
    stopMode,
    stopTimeoutMs,
    startTimeoutMs,
    restartCondition,
    restartDelayMs,
    before,
    after,
    sockets: boundSockets,
    environment,
    commandChain,
    watchdogTimeoutMs,
    successExitStatus,
  };
  if (daemon !== undefined) app.daemon = daemon;
  if (refreshMode !== undefined) app.refreshMode = refreshMode;
  if (cmds['stop-command'] !== undefined) app.stopCommand = cmds['stop-command'];
  if (cmds['post-stop-command'] !== undefined) app.postStopCommand = cmds['post-stop-command'];
  if (cmds['reload-command'] !== undefined) app.reloadCommand = cmds['reload-command'];
  if (installMode !== undefined) app.installMode = installMode;
  if (drainSignal !== undefined) app.drainSignal = drainSignal;
  if (pidFile !== undefined) app.pidFile = pidFile;
  return { app, nodes };
}

/** Checks a command line; returns it, undefined when absent/empty, null when bad. */
function readCommand(ctx: Ctx, field: string, v: string | null | undefined, path: string, node: Node | null): string | null | undefined {
  if (v === WRONG) return WRONG;
  if (v === ABSENT || v.trim() === '') return ABSENT;
  if (!COMMAND_CHARS.test(v)) {
    ctx.add(path, `app description field '${field}' contains illegal ${q(v)} (legal: '${COMMAND_CHARS.source}')`, node);
    return WRONG;
  }
  const first = v.trim().split(/ +/)[0];
  const rel = first.startsWith('$SNAP/') ? first.slice('$SNAP/'.length) : first;
  if (rel.startsWith('/')) {
    ctx.add(path, `app description field '${field}' must be relative to $SNAP, got ${q(first)}`, node);
    return WRONG;
  }
  if (rel.split('/').includes('..')) {
    ctx.add(path, `app description field '${field}' must not leave $SNAP: ${q(first)} contains ".."`, node);
    return WRONG;
  }
  return v;
}

/** A command-chain: a list of programs, each checked with `illegal` for its characters, relative to $SNAP and inside it. */
function readCommandChain(ctx: Ctx, node: Node | null, path: string, illegal: (v: string) => string): string[] {
  const out: string[] = [];
  if (node === null) return out;
  if (!isSeq(node)) {
    ctx.add(path, `"command-chain" must be a list of programs, got ${kindOf(node)}`, node);
    return out;
  }
  for (const it of node.items) {
    const n = ctx.deref(it as Node);
    const v = isScalar(n) ? scalarText(n) : undefined;
    if (v === undefined || n === null) {
      ctx.add(path, `"command-chain" must be a list of programs, got an entry that is ${kindOf(n)}`, n ?? node);
      return out;
    }
    if (!COMMAND_CHAIN_CHARS.test(v)) {
      ctx.add(path, illegal(v), n);
      return out;
    }
    const rel = v.startsWith('$SNAP/') ? v.slice('$SNAP/'.length) : v;
    if (rel === '' || rel.startsWith('/') || rel.split('/').includes('..')) {
      ctx.add(path, `command-chain entry ${q(v)} must be a program relative to $SNAP, inside it`, n);
      return out;
    }
    out.push(v);
  }
  return out;
}

function readSocket(ctx: Ctx, e: Entry, path: string, snapName: string): { info: SocketInfo; node: Node } | undefined {
  // snapd's messages, each as `invalid definition of socket "NAME": ...` (validate.go).
  const bad = (sub: string, message: string, node: Node | null | undefined) => ctx.add(sub, `invalid definition of socket ${q(e.key)}: ${message}`, node ?? e.keyNode);
  if (!validSocketName(e.key)) {
    bad(path, `invalid socket name: ${q(e.key)}`, e.keyNode);
    return undefined;
  }
  if (e.value !== null && !isMap(e.value)) {
    bad(path, `must be a mapping with "listen-stream", got ${kindOf(e.value)}`, e.value);
    return undefined;
  }
  const f = new Map<string, Entry>();
  if (e.value !== null) for (const s of ctx.entries(e.value, path)) f.set(s.key, s);
  let ok = true;

  const lsE = f.get('listen-stream');
  const ls = lsE ? ctx.str(lsE.value, `${path}.listen-stream`, `"listen-stream" of socket ${q(e.key)}`) : ABSENT;
  let addr: Omit<SocketInfo, 'name' | 'listenStream' | 'socketMode'> | undefined;
  if (ls === ABSENT || ls === '') {
    bad(`${path}.listen-stream`, '"listen-stream" is not defined', lsE?.value ?? lsE?.keyNode);
    ok = false;
  } else if (ls === WRONG) {
    ok = false;
  } else {
    const r = parseListenStream(ls, snapName);
    if ('reason' in r) {
      bad(`${path}.listen-stream`, r.reason, lsE?.value);
      ok = false;
    } else addr = r;
  }

  let socketMode: number | undefined;
  const modeE = f.get('socket-mode');
  if (modeE && modeE.value !== null) {
    const n = modeE.value;
    const v = isScalar(n) ? n.value : undefined;
    if (typeof v === 'number' && Number.isInteger(v) && v >= 0 && v <= 0o777) {
      socketMode = v;
    } else if (typeof v === 'number' && Number.isInteger(v) && v > 0o777) {
      // snapd: `cannot use mode: %04o`; a mode written in decimal gets the fix.
      const hint = isScalar(n) && n.type === 'PLAIN' && /^[1-7][0-7]{0,3}$/.test(String(n.source)) ? ` (did you mean 0${n.source}?)` : '';
      bad(`${path}.socket-mode`, `cannot use mode: ${v.toString(8).padStart(4, '0')}${hint}`, n);
      ok = false;
    } else {
      const src = isScalar(n) ? (n.type === 'PLAIN' ? String(n.source ?? v) : q(String(v))) : kindOf(n);
      const hint = isScalar(n) && typeof v === 'string' && /^0?[0-7]{1,3}$/.test(v) ? ` (write it unquoted, as in socket-mode: 0${v.replace(/^0/, '')})` : '';
      bad(`${path}.socket-mode`, `"socket-mode" must be an octal file mode such as 0660, got ${src}${hint}`, n);
      ok = false;
    }
  }
  if (!ok || addr === undefined || ls === ABSENT || ls === WRONG) return undefined;
  const info: SocketInfo = { name: e.key, listenStream: ls, ...addr };
  if (socketMode !== undefined) info.socketMode = socketMode;
  return { info, node: lsE?.value ?? e.keyNode };
}

/** snapd's naming.ValidateSocket: the snap name rules without the length limit. */
function validSocketName(name: string): boolean {
  return SOCKET_NAME.test(name) && !name.startsWith('-') && !name.endsWith('-') && !name.includes('--');
}

/** Go's filepath.Clean for the paths snap.yaml holds: `.` and `..` resolved lexically, slashes squeezed, no trailing slash. */
function cleanPath(p: string): string {
  if (p === '') return '.';
  const abs = p.startsWith('/');
  const out: string[] = [];
  for (const part of p.split('/')) {
    if (part === '' || part === '.') continue;
    if (part === '..') {
      if (out.length > 0 && out[out.length - 1] !== '..') out.pop();
      else if (!abs) out.push('..');
      continue;
    }
    out.push(part);
  }
  const joined = out.join('/');
  return abs ? `/${joined}` : joined || '.';
}

/** Where snapproc binds a unix listen-stream: the prefixes snapd allows for system daemons. */
export const SOCKET_PATH_PREFIXES = ['$SNAP_DATA/', '$SNAP_COMMON/', '$XDG_RUNTIME_DIR/'] as const;

/**
 * Parses a listen-stream value as snapd's validateSocketAddr does (its
 * messages); `snapName` is needed for abstract sockets, which must be named
 * `@snap.NAME.…`. snapproc adds one rule of its own: a path longer than a
 * unix socket address holds is refused here rather than failing at bind.
 */
export function parseListenStream(
  value: string,
  snapName = '',
): { kind: 'unix'; path: string } | { kind: 'tcp'; host?: string; port: number } | { reason: string } {
  if (value === '') return { reason: '"listen-stream" is not defined' };
  if (value.startsWith('$') || value.startsWith('/')) {
    const clean = cleanPath(value);
    if (clean !== value) return { reason: `invalid "listen-stream": ${q(value)} should be written as ${q(clean)}` };
    if (!SOCKET_PATH_PREFIXES.some((p) => value.startsWith(p))) {
      return { reason: 'invalid "listen-stream": system daemon sockets must have a prefix of $SNAP_DATA, $SNAP_COMMON or $XDG_RUNTIME_DIR' };
    }
    if (Buffer.byteLength(value) > MAX_UNIX_PATH) return { reason: `invalid "listen-stream": ${q(value)} is longer than ${MAX_UNIX_PATH} bytes (a unix socket path holds at most ${MAX_UNIX_PATH}; a snapproc limit)` };
    return { kind: 'unix', path: value };
  }
  if (value.startsWith('@')) {
    const prefix = `@snap.${snapName}.`;
    if (!value.startsWith(prefix)) return { reason: `path for "listen-stream" must be prefixed with ${q(prefix)}` };
    if (Buffer.byteLength(value) > MAX_UNIX_PATH) return { reason: `invalid "listen-stream": ${q(value)} is longer than ${MAX_UNIX_PATH} bytes (a snapproc limit)` };
    return { kind: 'unix', path: value };
  }
  const colon = value.lastIndexOf(':');
  const hostPart = colon >= 0 ? value.slice(0, colon) : undefined;
  const portPart = colon >= 0 ? value.slice(colon + 1) : value;
  if (hostPart !== undefined && !TCP_HOSTS.includes(hostPart)) {
    return { reason: `invalid "listen-stream" address ${q(hostPart)}, must be one of: ${TCP_HOSTS.join(', ')}` };
  }
  const port = /^\d{1,5}$/.test(portPart) ? Number(portPart) : NaN;
  if (!(port >= 1 && port <= 65535)) return { reason: `invalid "listen-stream" port number ${q(portPart)}` };
  const out: { kind: 'tcp'; host?: string; port: number } = { kind: 'tcp', port };
  if (hostPart !== undefined) out.host = hostPart.replace(/^\[(.*)\]$/, '$1');
  return out;
}

/** Edges "must start before": a.before=[b] and b.after=[a] both give a -> b. Only valid service references. */
function orderGraph(apps: Record<string, AppInfo>): { edges: Map<string, string[]> } {
  const edges = new Map<string, string[]>();
  const svc = (n: string): boolean => Object.prototype.hasOwnProperty.call(apps, n) && apps[n].isService;
  const add = (from: string, to: string): void => {
    const list = edges.get(from) ?? [];
    if (!list.includes(to)) list.push(to);
    edges.set(from, list);
  };
  for (const a of Object.values(apps)) {
    if (!a.isService) continue;
    for (const b of a.before) if (svc(b)) add(a.name, b);
    for (const b of a.after) if (svc(b)) add(b, a.name);
  }
  return { edges };
}

function checkOrdering(ctx: Ctx, apps: Record<string, AppInfo>, nodes: Map<string, AppNodes>): void {
  for (const a of Object.values(apps)) {
    for (const key of ['before', 'after'] as const) {
      a[key].forEach((dep, i) => {
        const node = nodes.get(a.name)?.[key][i] ?? null;
        const path = `apps.${a.name}.${key}`;
        if (!Object.prototype.hasOwnProperty.call(apps, dep)) ctx.add(path, `before/after references a missing application ${q(dep)}`, node);
        else if (!apps[dep].isService) ctx.add(path, `before/after references a non-service application ${q(dep)}`, node);
      });
    }
  }
  // Strongly connected components (Tarjan): each one with more than one
  // member, or a member ordered against itself, is a cycle.
  const { edges } = orderGraph(apps);
  const names = Object.values(apps).filter((a) => a.isService).map((a) => a.name);
  const index = new Map<string, number>();
  const low = new Map<string, number>();
  const onStack = new Set<string>();
  const stack: string[] = [];
  const cycles: string[][] = [];
  let counter = 0;
  const visit = (v: string): void => {
    index.set(v, counter);
    low.set(v, counter);
    counter++;
    stack.push(v);
    onStack.add(v);
    for (const w of edges.get(v) ?? []) {
      if (!index.has(w)) {
        visit(w);
        low.set(v, Math.min(low.get(v)!, low.get(w)!));
      } else if (onStack.has(w)) {
        low.set(v, Math.min(low.get(v)!, index.get(w)!));
      }
    }
    if (low.get(v) === index.get(v)) {
      const comp: string[] = [];
      let w: string;
      do {
        w = stack.pop()!;
        onStack.delete(w);
        comp.push(w);
      } while (w !== v);
      if (comp.length > 1 || (edges.get(v) ?? []).includes(v)) cycles.push(comp);
    }
  };
  for (const n of names) if (!index.has(n)) visit(n);
  const pos = new Map(names.map((n, i) => [n, i]));
  cycles
    .map((c) => c.sort((x, y) => pos.get(x)! - pos.get(y)!))
    .sort((x, y) => pos.get(x[0])! - pos.get(y[0])!)
    .forEach((c) => ctx.add('apps', `applications are part of a before/after cycle: ${c.join(', ')}`, nodes.get(c[0])?.key));
}

/** Two sockets of one snap on the same path or TCP port cannot both be bound. */
function checkSocketClashes(ctx: Ctx, apps: Record<string, AppInfo>, nodes: Map<string, AppNodes>): void {
  const seen: { app: string; s: SocketInfo }[] = [];
  for (const a of Object.values(apps)) {
    for (const s of Object.values(a.sockets)) {
      const other = seen.find(({ s: o }) =>
        s.kind === 'unix'
          ? o.kind === 'unix' && o.path === s.path
          : o.kind === 'tcp' && o.port === s.port && (o.host === undefined || s.host === undefined || o.host === s.host || o.host === '::' || s.host === '::'),
      );
      if (other) {
        ctx.add(
          `apps.${a.name}.sockets.${s.name}.listen-stream`,
          `"listen-stream" ${q(s.listenStream)} of socket ${q(s.name)} of app ${q(a.name)} clashes with socket ${q(other.s.name)} of app ${q(other.app)} (${q(other.s.listenStream)})`,
          nodes.get(a.name)?.sockets.get(s.name) ?? null,
        );
      }
      seen.push({ app: a.name, s });
    }
  }
}
