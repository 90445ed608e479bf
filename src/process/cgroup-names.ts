// cgroup-names.ts: snapd's cgroup names, built and parsed. snapproc uses the same
// names as snapd and systemd so that it sees (and can act on) snaps they run:
//   service   snap.NAME.APP.service
//   app run   snap.NAME.APP-UUID.scope
//   hook run  snap.NAME.hook.HOOK-UUID.scope
// NAME is the instance name (`name_key`); `+` is escaped as systemd does (\x2b).
import { randomUUID } from 'node:crypto';

export type CgroupKind = 'service' | 'app' | 'hook';

export interface SnapCgroupName {
  /** Instance name: snap name plus optional `_KEY`. */
  instance: string;
  kind: CgroupKind;
  /** App name, or for hooks the hook name. */
  app: string;
  /** The UUID of a scope; undefined for services. */
  uuid?: string;
}

const UUID_SUFFIX = /-([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})$/;

export function escapeUnitPart(s: string): string {
  return s.replace(/\+/g, '\\x2b');
}

export function unescapeUnitPart(s: string): string {
  return s.replace(/\\x2b/g, '+');
}

export function serviceCgroupName(instance: string, app: string): string {
  return `snap.${escapeUnitPart(instance)}.${escapeUnitPart(app)}.service`;
}

export function appScopeName(instance: string, app: string, uuid: string = randomUUID()): string {
  return `snap.${escapeUnitPart(instance)}.${escapeUnitPart(app)}-${uuid}.scope`;
}

export function hookScopeName(instance: string, hook: string, uuid: string = randomUUID()): string {
  return `snap.${escapeUnitPart(instance)}.hook.${escapeUnitPart(hook)}-${uuid}.scope`;
}

/** Parses a cgroup directory name; null if it is not a snap cgroup. */
export function parseCgroupName(base: string): SnapCgroupName | null {
  if (!base.startsWith('snap.')) return null;
  let kind: CgroupKind;
  let body: string;
  if (base.endsWith('.service')) {
    kind = 'service';
    body = base.slice(5, -8);
  } else if (base.endsWith('.scope')) {
    kind = 'app';
    body = base.slice(5, -6);
  } else {
    return null;
  }
  const dot = body.indexOf('.');
  if (dot <= 0) return null;
  const instance = unescapeUnitPart(body.slice(0, dot));
  let rest = body.slice(dot + 1);
  if (kind === 'service') {
    if (rest === '' || rest.includes('.')) return null;
    return { instance, kind, app: unescapeUnitPart(rest) };
  }
  const m = UUID_SUFFIX.exec(rest);
  if (!m) return null;
  const uuid = m[1];
  rest = rest.slice(0, m.index);
  if (rest.startsWith('hook.')) {
    kind = 'hook';
    rest = rest.slice(5);
  }
  if (rest === '' || rest.includes('.')) return null;
  return { instance, kind, app: unescapeUnitPart(rest), uuid };
}

/** Splits NAME[.APP] as the CLI takes it. */
export function splitSnapApp(spec: string): { instance: string; app?: string } {
  const dot = spec.indexOf('.');
  return dot < 0 ? { instance: spec } : { instance: spec.slice(0, dot), app: spec.slice(dot + 1) };
}
