// names.ts: the names a user or a client hands to snapproc (NAME, NAME_KEY,
// NAME.APP), checked in one place before anything touches a file. A name
// becomes a path component (R/snap/NAME, R/log/NAME/APP.log) and a cgroup
// name (snap.NAME.APP.service), so `../x`, `a/b` or a name longer than a
// file system allows must be refused as a name, in one line, by every
// command (CLI and control API alike) and by snap.yaml validation.
// Cheap to load: no YAML, no file system.
import { usageError } from '../util/errors';

const SNAP_NAME = /^[a-z0-9-]*[a-z][a-z0-9-]*$/;
const INSTANCE_KEY = /^[a-z0-9]{1,10}$/;
export const APP_NAME = /^[a-zA-Z0-9](?:-?[a-zA-Z0-9])*$/;
/** The longest instance name: a 40-character snap name, `_`, a 10-character key. */
export const MAX_INSTANCE_NAME = 40 + 1 + 10;
/**
 * The longest app name whose every file name still fits in NAME_MAX (255
 * bytes): the longest is the app scope `snap.NAME.APP-UUID.scope` with the
 * longest instance name (5 + 51 + 1 + APP + 1 + 36 + 6).
 */
export const MAX_APP_NAME = 255 - 'snap.'.length - MAX_INSTANCE_NAME - '.'.length - '-'.length - 36 - '.scope'.length;

function q(s: string): string {
  return JSON.stringify(s.length > 80 ? `${s.slice(0, 80)}...` : s);
}

/** null when `name` is a valid snap name, else snapd's message. */
export function validateSnapName(name: string): string | null {
  if (name.length < 2 || name.length > 40 || !SNAP_NAME.test(name) || name.startsWith('-') || name.endsWith('-') || name.includes('--')) {
    return `invalid snap name: ${q(name)}`;
  }
  return null;
}

/** null when `name` is a valid instance name (`NAME` or `NAME_KEY`), else the message. */
export function validateInstanceName(name: string): string | null {
  const us = name.indexOf('_');
  if (us < 0) return validateSnapName(name);
  const snap = name.slice(0, us);
  const key = name.slice(us + 1);
  const bad = validateSnapName(snap);
  if (bad !== null) return `invalid instance name: ${q(name)}: ${bad}`;
  if (!INSTANCE_KEY.test(key)) return `invalid instance key: ${q(key)}`;
  return null;
}

/** null when `name` is a valid app name (snapd's pattern, and short enough for its cgroup and file names). */
export function validateAppName(name: string): string | null {
  if (!APP_NAME.test(name)) return `invalid app name: ${q(name)}`;
  if (name.length > MAX_APP_NAME) return `invalid app name: ${q(name)}: longer than ${MAX_APP_NAME} characters (got ${name.length}), too long for its cgroup and file names`;
  return null;
}

export interface SnapTarget {
  instance: string;
  app?: string;
}

/**
 * Parses NAME[.APP] as a command takes it and validates both parts; throws a
 * one-line usage error saying which name is invalid. `app`: whether the
 * command needs an app (`required`), takes one (`optional`, the default) or
 * takes only a snap (`none`). `what` names the command in messages.
 */
export function parseSnapTarget(spec: unknown, opts: { app?: 'required' | 'optional' | 'none'; what?: string } = {}): SnapTarget {
  const what = opts.what ? `${opts.what}: ` : '';
  if (typeof spec !== 'string' || spec === '') throw usageError(`${what}a snap name is required`);
  const dot = spec.indexOf('.');
  const instance = dot < 0 ? spec : spec.slice(0, dot);
  const app = dot < 0 ? undefined : spec.slice(dot + 1);
  const badName = validateInstanceName(instance);
  if (badName !== null) throw usageError(`${what}${badName}${dot >= 0 ? ` (in ${q(spec)})` : ''}`);
  const mode = opts.app ?? 'optional';
  if (app === undefined) {
    if (mode === 'required') throw usageError(`${what}needs NAME.APP, got ${q(spec)}`);
    return { instance };
  }
  if (mode === 'none') throw usageError(`${what}takes a snap name, not NAME.APP: ${q(spec)}`);
  const badApp = validateAppName(app);
  if (badApp !== null) throw usageError(`${what}${badApp}`);
  return { instance, app };
}

/** Validates a snap (instance) name alone, as parseSnapTarget does; returns it. */
export function checkInstanceName(name: unknown, what?: string): string {
  return parseSnapTarget(name, { app: 'none', what }).instance;
}
