// environment.ts: the environment a snap's apps, services and hooks run in, with
// the variables snapd sets (SNAP, SNAP_DATA, SNAP_REVISION, ...) so a snap
// built for snapd finds its files here too. It is computed per revision: after
// a refresh a process started for B must see B's paths, never A's.
//
// Where snapproc differs from snapd, on purpose:
//   - Paths are under the state root R: SNAP=R/snap/NAME/REV,
//     SNAP_DATA=R/var/snap/NAME/REV, SNAP_COMMON=R/var/snap/NAME/common. There
//     is no per-snap mount namespace, so an instance (`name_key`) sees its own
//     instance paths, as processes outside snapd's namespace do.
//   - snapproc runs services and hooks as root. snapd gives root's services
//     HOME=$SNAP_USER_DATA=/root/snap/NAME/REV; snapproc writes nothing outside
//     R, so that home is R/root/snap/NAME/REV (SNAP_USER_COMMON
//     R/root/snap/NAME/common). The store creates these directories (0700)
//     and copies SNAP_USER_DATA along with SNAP_DATA on refresh.
//   - PATH is the snap's own bin directories, then R/run/bin (where the
//     supervisor puts `snapctl`, ahead of a host snapd's /usr/bin/snapctl),
//     then systemd's default PATH
//     for services (not the inherited one: a service must not depend on the
//     shell that happened to install it).
import * as path from 'node:path';
import type { AppInfo } from './snap-yaml';

/** systemd's PATH for services. */
export const SYSTEM_PATH = '/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin';

const DPKG_ARCH: Record<string, string> = {
  x64: 'amd64',
  arm64: 'arm64',
  arm: 'armhf',
  ia32: 'i386',
  ppc64: 'ppc64el',
  s390x: 's390x',
  riscv64: 'riscv64',
};

/** Debian's name for a Node architecture (process.arch); unknown ones pass through unchanged. */
export function dpkgArchitecture(nodeArch: string = process.arch): string {
  return DPKG_ARCH[nodeArch] ?? nodeArch;
}

export interface SnapEnvironmentOptions {
  /** The state root R. */
  root: string;
  /** Instance name: `name` or `name_key`. */
  instance: string;
  /** The snap's name from snap.yaml; default: `instance` without its key. */
  snapName?: string;
  /** The instance key, '' for none; default: taken from `instance`. */
  instanceKey?: string;
  revision: string;
  version: string;
  /** dpkg architecture; default from process.arch. */
  arch?: string;
}

/** The directory holding the `snapctl` the supervisor writes for its snaps (on their PATH). */
export function snapctlDir(root: string): string {
  return path.join(root, 'run', 'bin');
}

/** Paths of one revision of one instance under R (also used by the store). */
export function revisionPaths(root: string, instance: string, revision: string) {
  return {
    snap: path.join(root, 'snap', instance, revision),
    data: path.join(root, 'var', 'snap', instance, revision),
    common: path.join(root, 'var', 'snap', instance, 'common'),
    userData: path.join(root, 'root', 'snap', instance, revision),
    userCommon: path.join(root, 'root', 'snap', instance, 'common'),
  };
}

/** The variables every app, service and hook of a revision gets. */
export function snapEnvironment(opts: SnapEnvironmentOptions): Record<string, string> {
  const us = opts.instance.indexOf('_');
  const snapName = opts.snapName ?? (us < 0 ? opts.instance : opts.instance.slice(0, us));
  const instanceKey = opts.instanceKey ?? (us < 0 ? '' : opts.instance.slice(us + 1));
  const p = revisionPaths(opts.root, opts.instance, opts.revision);
  return {
    SNAP: p.snap,
    SNAP_NAME: snapName,
    SNAP_INSTANCE_NAME: opts.instance,
    SNAP_INSTANCE_KEY: instanceKey,
    SNAP_REVISION: opts.revision,
    SNAP_VERSION: opts.version,
    SNAP_ARCH: opts.arch ?? dpkgArchitecture(),
    SNAP_DATA: p.data,
    SNAP_COMMON: p.common,
    SNAP_USER_DATA: p.userData,
    SNAP_USER_COMMON: p.userCommon,
    HOME: p.userData,
    PATH: [`${p.snap}/usr/sbin`, `${p.snap}/usr/bin`, `${p.snap}/sbin`, `${p.snap}/bin`, snapctlDir(opts.root), SYSTEM_PATH].join(':'),
  };
}

/**
 * Expands `$VAR` and `${VAR}` in `value` from `env`, as snapd expands
 * snap.yaml `environment` values; unknown variables become ''.
 */
export function expandEnvValue(value: string, env: Record<string, string>): string {
  return value.replace(/\$\{([A-Za-z_][A-Za-z0-9_]*)\}|\$([A-Za-z_][A-Za-z0-9_]*)/g, (_m, braced: string | undefined, bare: string | undefined) => env[(braced ?? bare)!] ?? '');
}

/**
 * `base` (from snapEnvironment) plus the app's `environment` (snap.yaml's
 * top-level entries overlaid with the app's own, in file order). Each value
 * is expanded against `base` and the entries before it, so `PATH:
 * $SNAP/opt/bin:$PATH` and `A: x` then `B: $A/y` work as under snapd. Entries
 * may override base variables, as under snapd.
 */
export function appEnvironment(base: Record<string, string>, app: Pick<AppInfo, 'environment'>): Record<string, string> {
  const env = { ...base };
  for (const [key, value] of Object.entries(app.environment ?? {})) env[key] = expandEnvValue(value, env);
  return env;
}
