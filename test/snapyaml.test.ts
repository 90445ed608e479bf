// snapyaml.test.ts: snap.yaml validation, one table row per rule with the
// exact message and field path, plus defaults, YAML 1.1 semantics, start
// order and the helpers. Runs alone: node dist/test/snapyaml.test.js
import { suite } from 'uvu';
import * as assert from 'uvu/assert';
import { SnapprocError } from '../src/util/errors';
import {
  formatProblem,
  isIgnoreRunning,
  parseListenStream,
  parseSnapYaml,
  refreshSignal,
  SnapYamlError,
  startOrder,
  stopModeSignal,
  summarizeSnap,
  validateInstanceName,
  validateSnapName,
  validateSnapYaml,
  type Problem,
  type SnapYaml,
} from '../src/snap/snap-yaml';

const test = suite('snapyaml');

/** name and version on lines 1-2, `apps:` on line 3, the first app key on line 4. */
const HEAD = 'name: foo\nversion: "1.0"\napps:\n';

/** An app block: `  NAME:` then each field indented under it. */
function app(name: string, ...fields: string[]): string {
  return `  ${name}:\n${fields.map((f) => `    ${f}\n`).join('')}`;
}

function snapOf(...apps: string[]): string {
  return HEAD + apps.join('');
}

function problemsOf(yaml: string): Problem[] {
  const r = validateSnapYaml(yaml);
  if (r.ok) throw new assert.Assertion({ message: 'expected snap.yaml to be rejected', operator: 'problems', actual: r.snap, expects: 'problems' });
  return r.problems;
}

function ok(yaml: string): SnapYaml {
  const r = validateSnapYaml(yaml);
  if (!r.ok) throw new assert.Assertion({ message: `expected snap.yaml to be accepted:\n${r.problems.map((p) => formatProblem(p)).join('\n')}`, operator: 'ok', actual: r.problems, expects: [] });
  return r.snap;
}

const SVC = 'daemon: simple';
const CMD = 'command: bin/x';
const SERVICE_REFRESH = 'restart, endure, sighup, sighup-all, sigusr1, sigusr1-all, sigusr2, sigusr2-all';
const STOP_MODES = 'sigterm, sigterm-all, sighup, sighup-all, sigusr1, sigusr1-all, sigusr2, sigusr2-all, sigint, sigint-all, sigquit, sigquit-all';
const LEGAL = "(legal: '^[A-Za-z0-9/. _#:$-]*$')";

interface Case {
  name: string;
  yaml: string;
  path: string;
  message: string;
  line?: number;
  column?: number;
}

const cases: Case[] = [
  // document
  { name: 'top level is a sequence', yaml: '- name: foo\n- version: 1\n', path: '', message: 'snap.yaml must be a mapping, got a sequence', line: 1, column: 1 },
  { name: 'top level is a string', yaml: 'hello\n', path: '', message: 'snap.yaml must be a mapping, got a string', line: 1, column: 1 },
  { name: 'empty document', yaml: '', path: '', message: 'snap.yaml is empty; it must be a mapping with at least "name" and "version"' },
  { name: 'malformed YAML', yaml: 'name: foo\nversion: [1\n', path: '', message: 'Flow sequence in block collection must be sufficiently indented and end with a ]', line: 3, column: 1 },
  { name: 'unterminated quote', yaml: 'name: "foo\n', path: '', message: 'Missing closing "quote', line: 2, column: 1 },
  { name: 'duplicate key', yaml: 'name: foo\nversion: "1"\nname: bar\n', path: '', message: 'Map keys must be unique', line: 3, column: 1 },
  { name: 'two documents', yaml: 'name: foo\n---\nname: bar\n', path: '', message: 'snap.yaml must hold a single YAML document', line: 2, column: 1 },

  // name
  { name: 'name missing', yaml: 'version: "1.0"\n', path: 'name', message: 'snap name cannot be empty', line: 1, column: 1 },
  { name: 'name with capitals', yaml: 'name: Foo\nversion: "1"\n', path: 'name', message: 'invalid snap name: "Foo"', line: 1, column: 7 },
  { name: 'name too short', yaml: 'name: a\nversion: "1"\n', path: 'name', message: 'invalid snap name: "a"' },
  { name: 'name too long', yaml: `name: ${'a'.repeat(41)}\nversion: "1"\n`, path: 'name', message: `invalid snap name: "${'a'.repeat(41)}"` },
  { name: 'name leading dash', yaml: 'name: -foo\nversion: "1"\n', path: 'name', message: 'invalid snap name: "-foo"' },
  { name: 'name trailing dash', yaml: 'name: foo-\nversion: "1"\n', path: 'name', message: 'invalid snap name: "foo-"' },
  { name: 'name double dash', yaml: 'name: foo--bar\nversion: "1"\n', path: 'name', message: 'invalid snap name: "foo--bar"' },
  { name: 'name only digits', yaml: 'name: 1234\nversion: "1"\n', path: 'name', message: 'invalid snap name: "1234"' },
  { name: 'name with instance key', yaml: 'name: foo_bar\nversion: "1"\n', path: 'name', message: 'invalid snap name: "foo_bar"' },
  { name: 'name is a mapping', yaml: 'name: {a: b}\nversion: "1"\n', path: 'name', message: '"name" must be a string, got a mapping', line: 1, column: 7 },

  // version
  { name: 'version missing', yaml: 'name: foo\n', path: 'version', message: 'invalid snap version: cannot be empty' },
  { name: 'version empty', yaml: 'name: foo\nversion: ""\n', path: 'version', message: 'invalid snap version: cannot be empty' },
  { name: 'version with a space', yaml: 'name: foo\nversion: 1.0 beta\n', path: 'version', message: 'invalid snap version "1.0 beta": must be printable, non-whitespace ASCII', line: 2, column: 10 },
  { name: 'version leading dash', yaml: 'name: foo\nversion: "-1"\n', path: 'version', message: `invalid snap version "-1": must start with an ASCII alphanumeric (and not '-')` },
  { name: 'version bad end and middle', yaml: 'name: foo\nversion: "1_0."\n', path: 'version', message: `invalid snap version "1_0.": must end with an ASCII alphanumeric or one of '+' or '~' (and not '.'), and contains invalid characters: "_"` },
  { name: 'version too long', yaml: `name: foo\nversion: "${'1'.repeat(33)}"\n`, path: 'version', message: `invalid snap version "${'1'.repeat(33)}": cannot be longer than 32 characters (got: 33)` },
  { name: 'version is a list', yaml: 'name: foo\nversion: [1]\n', path: 'version', message: '"version" must be a string, got a sequence' },

  // confinement, summary
  { name: 'confinement invalid', yaml: 'name: foo\nversion: "1"\nconfinement: loose\n', path: 'confinement', message: 'invalid confinement type: "loose", must be one of: strict, classic, devmode', line: 3, column: 14 },

  // apps
  { name: 'apps is a list', yaml: HEAD + '  - a\n', path: 'apps', message: '"apps" must be a mapping of app names to app definitions, got a sequence', line: 4, column: 3 },
  { name: 'app name with underscore', yaml: snapOf(app('my_app', CMD)), path: 'apps.my_app', message: 'cannot have "my_app" as app name - use letters, digits, and dash as separator', line: 4, column: 3 },
  { name: 'app name leading dash', yaml: snapOf(app('-a', CMD)), path: 'apps.-a', message: 'cannot have "-a" as app name - use letters, digits, and dash as separator' },
  { name: 'app is a string', yaml: HEAD + '  a: bin/x\n', path: 'apps.a', message: 'app "a" must be a mapping, got a string', line: 4, column: 6 },
  { name: 'command missing', yaml: snapOf(app('a', SVC)), path: 'apps.a.command', message: '"command" for app "a" is required', line: 4, column: 3 },
  { name: 'command empty', yaml: snapOf(app('a', 'command: ""')), path: 'apps.a.command', message: '"command" for app "a" is required', line: 5, column: 14 },
  { name: 'command is a list', yaml: snapOf(app('a', 'command: [1, 2]')), path: 'apps.a.command', message: '"command" for app "a" must be a string, got a sequence', line: 5, column: 14 },
  { name: 'command with quotes', yaml: snapOf(app('a', `command: bin/x "a b"`)), path: 'apps.a.command', message: `app description field 'command' contains illegal "bin/x \\"a b\\"" ${LEGAL}`, line: 5, column: 14 },
  { name: 'command with a semicolon', yaml: snapOf(app('a', `command: 'bin/x; rm -rf /'`)), path: 'apps.a.command', message: `app description field 'command' contains illegal "bin/x; rm -rf /" ${LEGAL}` },
  { name: 'command absolute', yaml: snapOf(app('a', 'command: /bin/sh')), path: 'apps.a.command', message: `app description field 'command' must be relative to $SNAP, got "/bin/sh"` },
  { name: 'command leaves $SNAP', yaml: snapOf(app('a', 'command: $SNAP/../other/bin/x')), path: 'apps.a.command', message: `app description field 'command' must not leave $SNAP: "$SNAP/../other/bin/x" contains ".."` },
  { name: 'stop-command illegal', yaml: snapOf(app('a', CMD, SVC, 'stop-command: "bin/stop `id`"')), path: 'apps.a.stop-command', message: `app description field 'stop-command' contains illegal "bin/stop \`id\`" ${LEGAL}` },
  { name: 'post-stop-command illegal', yaml: snapOf(app('a', CMD, SVC, 'post-stop-command: "bin/x|y"')), path: 'apps.a.post-stop-command', message: `app description field 'post-stop-command' contains illegal "bin/x|y" ${LEGAL}` },
  { name: 'reload-command illegal', yaml: snapOf(app('a', CMD, SVC, 'reload-command: "kill -HUP $(pidof x)"')), path: 'apps.a.reload-command', message: `app description field 'reload-command' contains illegal "kill -HUP $(pidof x)" ${LEGAL}` },

  // daemon
  { name: 'daemon dbus', yaml: snapOf(app('a', CMD, 'daemon: dbus')), path: 'apps.a.daemon', message: 'daemon "dbus" is not supported by snapproc', line: 6, column: 13 },
  { name: 'daemon invalid', yaml: snapOf(app('a', CMD, 'daemon: forever')), path: 'apps.a.daemon', message: '"daemon" field contains invalid value "forever", must be one of: simple, forking, oneshot, notify' },
  { name: 'daemon-scope user', yaml: snapOf(app('a', CMD, SVC, 'daemon-scope: user')), path: 'apps.a.daemon-scope', message: 'daemon-scope "user" is not supported by snapproc (only system services)' },
  { name: 'daemon-scope without daemon', yaml: snapOf(app('a', CMD, 'daemon-scope: system')), path: 'apps.a.daemon-scope', message: '"daemon-scope" can only be set for daemons' },

  // refresh-mode
  { name: 'refresh-mode restart on an app', yaml: snapOf(app('x', CMD, 'refresh-mode: restart')), path: 'apps.x.refresh-mode', message: '"refresh-mode" for app "x" can only have value "ignore-running"', line: 6, column: 19 },
  { name: 'refresh-mode endure on an app', yaml: snapOf(app('x', CMD, 'refresh-mode: endure')), path: 'apps.x.refresh-mode', message: '"refresh-mode" for app "x" can only have value "ignore-running"' },
  { name: 'refresh-mode ignore-running on a service', yaml: snapOf(app('x', CMD, SVC, 'refresh-mode: ignore-running')), path: 'apps.x.refresh-mode', message: '"refresh-mode" cannot be set to "ignore-running" for services' },
  { name: 'refresh-mode invalid on a service', yaml: snapOf(app('x', CMD, SVC, 'refresh-mode: sigkill')), path: 'apps.x.refresh-mode', message: `"refresh-mode" field contains invalid value "sigkill", must be one of: ${SERVICE_REFRESH}` },

  // stop-mode
  { name: 'stop-mode on an app', yaml: snapOf(app('x', CMD, 'stop-mode: sigterm')), path: 'apps.x.stop-mode', message: '"stop-mode" cannot be used for "x", only for services', line: 6, column: 16 },
  { name: 'drain-signal invalid', yaml: snapOf(app('x', CMD, SVC, 'drain-signal: sigkill')), path: 'apps.x.drain-signal', message: `"drain-signal" field contains invalid value "sigkill", must be one of: sigquit, sigterm, sigint, sighup, sigusr1, sigusr2, sigwinch` },
  { name: 'drain-signal on an app', yaml: snapOf(app('x', CMD, 'drain-signal: sigquit')), path: 'apps.x.drain-signal', message: '"drain-signal" cannot be used for "x", only for services' },
  { name: 'pid-file outside the data dirs', yaml: snapOf(app('x', CMD, SVC, 'pid-file: /run/x.pid')), path: 'apps.x.pid-file', message: '"pid-file" for app "x" must be a path under $SNAP_DATA/ or $SNAP_COMMON/ (no "..", no spaces), got "/run/x.pid"' },
  { name: 'pid-file leaving the data dir', yaml: snapOf(app('x', CMD, SVC, 'pid-file: $SNAP_DATA/../x.pid')), path: 'apps.x.pid-file', message: '"pid-file" for app "x" must be a path under $SNAP_DATA/ or $SNAP_COMMON/ (no "..", no spaces), got "$SNAP_DATA/../x.pid"' },
  { name: 'stop-mode invalid', yaml: snapOf(app('x', CMD, SVC, 'stop-mode: sigkill')), path: 'apps.x.stop-mode', message: `"stop-mode" field contains invalid value "sigkill", must be one of: ${STOP_MODES}` },
  { name: 'stop-mode upper case', yaml: snapOf(app('x', CMD, SVC, 'stop-mode: SIGTERM')), path: 'apps.x.stop-mode', message: `"stop-mode" field contains invalid value "SIGTERM", must be one of: ${STOP_MODES} (did you mean "sigterm"?)` },
  { name: 'stop-mode with underscore', yaml: snapOf(app('x', CMD, SVC, 'stop-mode: sigterm_all')), path: 'apps.x.stop-mode', message: `"stop-mode" field contains invalid value "sigterm_all", must be one of: ${STOP_MODES} (did you mean "sigterm-all"?)` },

  // durations
  { name: 'stop-timeout negative', yaml: snapOf(app('x', CMD, SVC, 'stop-timeout: -5s')), path: 'apps.x.stop-timeout', message: 'stop-timeout cannot be negative', line: 7, column: 19 },
  { name: 'stop-timeout without unit', yaml: snapOf(app('x', CMD, SVC, 'stop-timeout: 30')), path: 'apps.x.stop-timeout', message: '"stop-timeout" for app "x": invalid duration "30" (expected a number and a unit like 30s, 1m30s, 500ms)' },
  { name: 'stop-timeout garbage', yaml: snapOf(app('x', CMD, SVC, 'stop-timeout: soon')), path: 'apps.x.stop-timeout', message: '"stop-timeout" for app "x": invalid duration "soon" (expected a number and a unit like 30s, 1m30s, 500ms)' },
  { name: 'restart-delay negative', yaml: snapOf(app('x', CMD, SVC, 'restart-delay: -1s')), path: 'apps.x.restart-delay', message: 'restart-delay cannot be negative' },
  { name: 'start-timeout garbage', yaml: snapOf(app('x', CMD, SVC, 'start-timeout: 1x')), path: 'apps.x.start-timeout', message: '"start-timeout" for app "x": invalid duration "1x" (expected a number and a unit like 30s, 1m30s, 500ms)' },

  // restart-condition, install-mode
  { name: 'restart-condition invalid', yaml: snapOf(app('x', CMD, SVC, 'restart-condition: sometimes')), path: 'apps.x.restart-condition', message: 'invalid restart condition "sometimes", must be one of: no, never, on-success, on-failure, on-abnormal, on-abort, on-watchdog, always' },
  { name: 'restart-condition misspelt', yaml: snapOf(app('x', CMD, SVC, 'restart-condition: On_Failure')), path: 'apps.x.restart-condition', message: 'invalid restart condition "On_Failure", must be one of: no, never, on-success, on-failure, on-abnormal, on-abort, on-watchdog, always (did you mean "on-failure"?)' },
  { name: 'install-mode invalid', yaml: snapOf(app('x', CMD, SVC, 'install-mode: maybe')), path: 'apps.x.install-mode', message: '"install-mode" field contains invalid value "maybe", must be one of: enable, disable' },

  // before / after
  { name: 'before is a string', yaml: snapOf(app('x', CMD, SVC, 'before: foo')), path: 'apps.x.before', message: '"before" for app "x" must be a list of app names', line: 7, column: 13 },
  { name: 'after holds a mapping', yaml: snapOf(app('x', CMD, SVC, 'after: [{a: b}]')), path: 'apps.x.after', message: '"after" for app "x" must be a list of app names' },
  { name: 'after missing app', yaml: snapOf(app('x', CMD, SVC, 'after: [db]')), path: 'apps.x.after', message: 'before/after references a missing application "db"', line: 7, column: 13 },
  { name: 'before non-service', yaml: snapOf(app('x', CMD, SVC, 'before: [cli]'), app('cli', CMD)), path: 'apps.x.before', message: 'before/after references a non-service application "cli"' },
  { name: 'ordering cycle', yaml: snapOf(app('a', CMD, SVC, 'after: [c]'), app('b', CMD, SVC, 'after: [a]'), app('c', CMD, SVC, 'after: [b]'), app('d', CMD, SVC, 'after: [a]')), path: 'apps', message: 'applications are part of a before/after cycle: a, b, c', line: 4, column: 3 },
  { name: 'ordering cycle through before', yaml: snapOf(app('a', CMD, SVC, 'before: [b]'), app('b', CMD, SVC, 'before: [a]')), path: 'apps', message: 'applications are part of a before/after cycle: a, b' },
  { name: 'ordered against itself', yaml: snapOf(app('a', CMD, SVC, 'after: [a]')), path: 'apps', message: 'applications are part of a before/after cycle: a' },

  // sockets
  { name: 'sockets is a list', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets: [a]')), path: 'apps.x.sockets', message: '"sockets" for app "x" must be a mapping of socket names to socket definitions, got a sequence' },
  { name: 'socket name invalid', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  Web:', '    listen-stream: 8080')), path: 'apps.x.sockets.Web', message: 'invalid definition of socket "Web": invalid socket name: "Web"', line: 9, column: 7 },
  { name: 'socket is a string', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web: 8080')), path: 'apps.x.sockets.web', message: 'invalid definition of socket "web": must be a mapping with "listen-stream", got a number' },
  { name: 'listen-stream missing', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', '    socket-mode: 0600')), path: 'apps.x.sockets.web.listen-stream', message: 'invalid definition of socket "web": "listen-stream" is not defined' },
  { name: 'listen-stream any address', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', '    listen-stream: 0.0.0.0:80')), path: 'apps.x.sockets.web.listen-stream', message: 'invalid definition of socket "web": invalid "listen-stream" address "0.0.0.0", must be one of: 127.0.0.1, [::1], [::]', line: 10, column: 24 },
  { name: 'listen-stream port too big', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', '    listen-stream: 127.0.0.1:70000')), path: 'apps.x.sockets.web.listen-stream', message: 'invalid definition of socket "web": invalid "listen-stream" port number "70000"' },
  { name: 'listen-stream port zero', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', '    listen-stream: 0')), path: 'apps.x.sockets.web.listen-stream', message: 'invalid definition of socket "web": invalid "listen-stream" port number "0"' },
  { name: 'listen-stream word', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', '    listen-stream: http')), path: 'apps.x.sockets.web.listen-stream', message: 'invalid definition of socket "web": invalid "listen-stream" port number "http"' },
  { name: 'listen-stream host path', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', '    listen-stream: /run/x.sock')), path: 'apps.x.sockets.web.listen-stream', message: 'invalid definition of socket "web": invalid "listen-stream": system daemon sockets must have a prefix of $SNAP_DATA, $SNAP_COMMON or $XDG_RUNTIME_DIR' },
  { name: 'listen-stream dot dot', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', '    listen-stream: $SNAP_DATA/../x.sock')), path: 'apps.x.sockets.web.listen-stream', message: 'invalid definition of socket "web": invalid "listen-stream": "$SNAP_DATA/../x.sock" should be written as "x.sock"' },
  { name: 'listen-stream unclean', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', '    listen-stream: $SNAP_DATA//run/./x.sock')), path: 'apps.x.sockets.web.listen-stream', message: 'invalid definition of socket "web": invalid "listen-stream": "$SNAP_DATA//run/./x.sock" should be written as "$SNAP_DATA/run/x.sock"' },
  { name: 'listen-stream directory only', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', '    listen-stream: $SNAP_COMMON/')), path: 'apps.x.sockets.web.listen-stream', message: 'invalid definition of socket "web": invalid "listen-stream": "$SNAP_COMMON/" should be written as "$SNAP_COMMON"' },
  { name: 'listen-stream too long', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', `    listen-stream: $SNAP_DATA/${'s'.repeat(100)}`)), path: 'apps.x.sockets.web.listen-stream', message: `invalid definition of socket "web": invalid "listen-stream": "$SNAP_DATA/${'s'.repeat(100)}" is longer than 107 bytes (a unix socket path holds at most 107; a snapproc limit)` },
  { name: 'listen-stream abstract', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', '    listen-stream: "@snap.bar.x"')), path: 'apps.x.sockets.web.listen-stream', message: 'invalid definition of socket "web": path for "listen-stream" must be prefixed with "@snap.foo."' },
  { name: 'socket-mode above 0777', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', '    listen-stream: $SNAP_DATA/x.sock', '    socket-mode: 01000')), path: 'apps.x.sockets.web.socket-mode', message: 'invalid definition of socket "web": cannot use mode: 1000', line: 11, column: 22 },
  { name: 'socket-mode written in decimal', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', '    listen-stream: $SNAP_DATA/x.sock', '    socket-mode: 660')), path: 'apps.x.sockets.web.socket-mode', message: 'invalid definition of socket "web": cannot use mode: 1224 (did you mean 0660?)' },
  { name: 'socket-mode quoted', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  web:', '    listen-stream: $SNAP_DATA/x.sock', '    socket-mode: "0660"')), path: 'apps.x.sockets.web.socket-mode', message: 'invalid definition of socket "web": "socket-mode" must be an octal file mode such as 0660, got "0660" (write it unquoted, as in socket-mode: 0660)' },
  { name: 'two sockets on one port', yaml: snapOf(app('x', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  a:', '    listen-stream: 8080'), app('y', CMD, SVC, 'plugs: [network-bind]', 'sockets:', '  b:', '    listen-stream: 127.0.0.1:8080')), path: 'apps.y.sockets.b.listen-stream', message: '"listen-stream" "127.0.0.1:8080" of socket "b" of app "y" clashes with socket "a" of app "x" ("8080")' },

  // environment
  { name: 'environment bad name', yaml: snapOf(app('x', CMD, 'environment:', '  A=B: c')), path: 'apps.x.environment.A=B', message: 'invalid environment variable name "A=B" (letters, digits and "_", not starting with a digit)' },
  { name: 'environment value a list', yaml: snapOf(app('x', CMD, 'environment:', '  A: [1]')), path: 'apps.x.environment.A', message: 'environment variable "A" must be a string, got a sequence' },

  // hooks
  { name: 'hooks is a list', yaml: 'name: foo\nversion: "1"\nhooks: [install]\n', path: 'hooks', message: '"hooks" must be a mapping of hook names to hook definitions, got a sequence' },
  { name: 'hook name invalid', yaml: 'name: foo\nversion: "1"\nhooks:\n  Install: {}\n', path: 'hooks.Install', message: 'invalid hook name: "Install"', line: 4, column: 3 },
  { name: 'hook name with underscore', yaml: 'name: foo\nversion: "1"\nhooks:\n  pre_refresh: {}\n', path: 'hooks.pre_refresh', message: 'invalid hook name: "pre_refresh"' },
  { name: 'hook is a string', yaml: 'name: foo\nversion: "1"\nhooks:\n  install: yes\n', path: 'hooks.install', message: 'hook "install" must be a mapping, got a boolean' },
];

// The "only for services" rule, for every field it covers, in snapd's words for each.
for (const [field, value, message] of [
  ['stop-timeout', '10s', 'stop-timeout is only applicable to services'],
  ['start-timeout', '10s', 'start-timeout is only applicable to services'],
  ['watchdog-timeout', '10s', 'watchdog-timeout is only applicable to services'],
  ['restart-condition', 'always', 'restart-condition is only applicable to services'],
  ['restart-delay', '1s', 'restart-delay is only applicable to services'],
  ['success-exit-status', '[3]', 'success exit status is only applicable to services'],
  ['timer', 'mon,10:00', 'timer is only applicable to services'],
  ['before', '[b]', 'must be a service to define before/after ordering'],
  ['after', '[b]', 'must be a service to define before/after ordering'],
  ['install-mode', 'disable', '"install-mode" cannot be used for "x", only for services'],
]) {
  cases.push({
    name: `${field} on an app`,
    yaml: snapOf(app('x', CMD, `${field}: ${value}`), app('b', CMD, SVC)),
    path: `apps.x.${field}`,
    message,
    line: 6,
    column: 7 + field.length,
  });
}

// snapd's other rules about these fields (validate.go, info_snap_yaml.go), with its wording.
cases.push(
  { name: 'name empty', yaml: 'name: ""\nversion: "1"\n', path: 'name', message: 'snap name cannot be empty' },
  { name: 'watchdog-timeout negative', yaml: snapOf(app('x', CMD, SVC, 'watchdog-timeout: -1s')), path: 'apps.x.watchdog-timeout', message: 'watchdog-timeout cannot be negative' },
  { name: 'start-timeout negative', yaml: snapOf(app('x', CMD, SVC, 'start-timeout: -1s')), path: 'apps.x.start-timeout', message: 'start-timeout cannot be negative' },
  { name: 'success-exit-status 0', yaml: snapOf(app('x', CMD, SVC, 'success-exit-status: [0]')), path: 'apps.x.success-exit-status', message: 'exit code must be an integer in range 1 to 255' },
  { name: 'success-exit-status 256', yaml: snapOf(app('x', CMD, SVC, 'success-exit-status: [3, 256]')), path: 'apps.x.success-exit-status', message: 'exit code must be an integer in range 1 to 255' },
  { name: 'success-exit-status a word', yaml: snapOf(app('x', CMD, SVC, 'success-exit-status: [SIGTERM]')), path: 'apps.x.success-exit-status', message: 'exit code must be an integer in range 1 to 255' },
  { name: 'timer on a service', yaml: snapOf(app('x', CMD, SVC, 'timer: 00:00-24:00/4')), path: 'apps.x.timer', message: 'timer services are not supported by snapproc ("00:00-24:00/4" would never fire); run the job from a service of its own' },
  { name: 'command-chain illegal', yaml: snapOf(app('x', CMD, 'command-chain: ["bin/a b"]')), path: 'apps.x.command-chain', message: `app description field 'command-chain' contains illegal "bin/a b" (legal: '^[A-Za-z0-9/._#:$-]*$')` },
  { name: 'command-chain absolute', yaml: snapOf(app('x', CMD, 'command-chain: [/bin/sh]')), path: 'apps.x.command-chain', message: 'command-chain entry "/bin/sh" must be a program relative to $SNAP, inside it' },
  { name: 'hook command-chain illegal', yaml: 'name: foo\nversion: "1"\nhooks:\n  install:\n    command-chain: [">_>"]\n', path: 'hooks.install.command-chain', message: `hook command-chain contains illegal ">_>" (legal: '^[A-Za-z0-9/._#:$-]*$')` },
  { name: 'default-configure without configure', yaml: 'name: foo\nversion: "1"\nhooks:\n  default-configure:\n', path: 'hooks.default-configure', message: 'cannot specify "default-configure" hook without "configure" hook', line: 4, column: 3 },
  { name: 'sockets without network-bind', yaml: snapOf(app('x', CMD, SVC, 'sockets:', '  web:', '    listen-stream: 8080')), path: 'apps.x.sockets', message: '"network-bind" interface plug is required when sockets are used' },
  { name: 'command with an equals sign (not in snapd\'s whitelist)', yaml: snapOf(app('x', 'command: bin/x --port=80')), path: 'apps.x.command', message: `app description field 'command' contains illegal "bin/x --port=80" ${LEGAL}` },
);

for (const c of cases) {
  test(`rejects: ${c.name}`, () => {
    const problems = problemsOf(c.yaml);
    assert.equal(
      problems.map((p) => ({ path: p.path, message: p.message })),
      [{ path: c.path, message: c.message }],
    );
    if (c.line !== undefined) assert.is(problems[0].line, c.line, 'line');
    if (c.column !== undefined) assert.is(problems[0].column, c.column, 'column');
  });
}

// ---------------------------------------------------------------- accepted snaps

test('defaults of a minimal service and app', () => {
  const snap = ok(snapOf(app('svc', 'command: bin/svc', SVC), app('cli', 'command: bin/cli')));
  assert.is(snap.name, 'foo');
  assert.is(snap.version, '1.0');
  assert.is(snap.confinement, 'strict');
  const svc = snap.apps.svc;
  assert.is(svc.isService, true);
  assert.is(svc.daemon, 'simple');
  assert.is(svc.refreshMode, 'restart');
  assert.is(svc.stopMode, 'sigterm-all');
  assert.is(svc.stopTimeoutMs, 30_000);
  assert.is(svc.startTimeoutMs, 90_000);
  assert.is(svc.restartCondition, 'on-failure');
  assert.is(svc.restartDelayMs, 100);
  assert.equal(svc.before, []);
  assert.equal(svc.after, []);
  assert.equal(svc.sockets, {});
  assert.is(svc.installMode, undefined);
  const cli = snap.apps.cli;
  assert.is(cli.isService, false);
  assert.is(cli.daemon, undefined);
  assert.is(cli.refreshMode, undefined);
  assert.is(cli.restartCondition, 'never');
  assert.is(isIgnoreRunning(cli), false);
  assert.equal(snap.hooks, {});
  assert.equal(snap.extra, {});
});

test("snapd's verdicts: what its tests accept is accepted", () => {
  // Socket names follow the snap name rules (01game), $XDG_RUNTIME_DIR/ for system daemons, abstract @snap.NAME.*,
  // top-level network-bind, classic without the plug, default-configure with configure, a long summary.
  const snap = ok(
    `name: foo\nversion: "1"\nsummary: ${'s'.repeat(200)}\nplugs:\n  network-bind:\napps:\n` +
      app('x', CMD, SVC, 'sockets:', '  01game:', '    listen-stream: $XDG_RUNTIME_DIR/game.sock', '  abs:', '    listen-stream: "@snap.foo.my.socket"', '  v6:', '    listen-stream: "[::]:8081"') +
      app('cli', CMD, 'stop-command: bin/stop', 'sockets:', '  s:', '    listen-stream: 9000') +
      'hooks:\n  configure:\n  default-configure:\n',
  );
  assert.equal(Object.keys(snap.apps.x.sockets), ['01game', 'abs', 'v6']);
  assert.equal(snap.apps.x.sockets.abs, { name: 'abs', listenStream: '@snap.foo.my.socket', kind: 'unix', path: '@snap.foo.my.socket' });
  assert.equal(snap.apps.cli.sockets, {}, 'sockets of an app that is not a service are checked, never bound');
  assert.is(snap.apps.cli.stopCommand, undefined);
  ok('name: foo\nversion: "1"\nconfinement: classic\napps:\n' + app('x', CMD, SVC, 'sockets:', '  s:', '    listen-stream: 9000'));
  // success-exit-status, watchdog-timeout, command-chain are read.
  const w = ok(snapOf(app('x', CMD, SVC, 'restart-condition: on-watchdog', 'watchdog-timeout: 2s', 'success-exit-status: [3, 42]', 'command-chain: [bin/wrap, $SNAP/bin/env-setup]')));
  assert.is(w.apps.x.watchdogTimeoutMs, 2000);
  assert.equal(w.apps.x.successExitStatus, [3, 42]);
  assert.equal(w.apps.x.commandChain, ['bin/wrap', '$SNAP/bin/env-setup']);
  // default-configure with an implicit configure hook (a file in meta/hooks/).
  assert.is(validateSnapYaml('name: foo\nversion: "1"\nhooks:\n  default-configure:\n', undefined, { hookFiles: ['configure'] }).ok, true);
  assert.is(validateSnapYaml('name: foo\nversion: "1"\n', undefined, { hookFiles: ['default-configure'] }).ok, false);
});

test('oneshot defaults to restart-condition never', () => {
  const snap = ok(snapOf(app('job', CMD, 'daemon: oneshot')));
  assert.is(snap.apps.job.restartCondition, 'never');
});

test('zero durations mean the defaults', () => {
  const snap = ok(snapOf(app('s', CMD, SVC, 'restart-delay: 0', 'stop-timeout: 0s', 'start-timeout: 0')));
  assert.is(snap.apps.s.restartDelayMs, 100);
  assert.is(snap.apps.s.stopTimeoutMs, 30_000);
  assert.is(snap.apps.s.startTimeoutMs, 90_000);
});

test('every field read', () => {
  const snap = ok(
    'name: foo\nversion: "2.1"\nconfinement: classic\nsummary: a server\nenvironment:\n  A: top\n  B: top\napps:\n' +
      app('db', 'command: bin/db --port 5432', 'daemon: forking', 'environment:', '  B: db', '  C: 1.10') +
      app(
        'web',
        'command: $SNAP/bin/web -c $SNAP_DATA/web.conf',
        'daemon: notify',
        'refresh-mode: sigusr2',
        'stop-mode: sigint',
        'stop-timeout: 1m30s',
        'start-timeout: 2m',
        'restart-condition: always',
        'restart-delay: 500ms',
        'stop-command: bin/web-stop',
        'post-stop-command: bin/web-cleanup',
        'reload-command: bin/web-reload',
        'install-mode: disable',
        'after: [db]',
        'sockets:',
        '  http:',
        '    listen-stream: "[::1]:8080"',
        '  ctl:',
        '    listen-stream: $SNAP_COMMON/ctl.sock',
        '    socket-mode: 0600',
      ) +
      app('cli', 'command: bin/cli', 'refresh-mode: ignore-running'),
  );
  assert.is(snap.confinement, 'classic');
  assert.is(snap.summary, 'a server');
  assert.equal(snap.apps.db.environment, { A: 'top', B: 'db', C: '1.10' });
  const web = snap.apps.web;
  assert.is(web.command, '$SNAP/bin/web -c $SNAP_DATA/web.conf');
  assert.is(web.refreshMode, 'sigusr2');
  assert.is(web.stopMode, 'sigint');
  assert.is(web.stopTimeoutMs, 90_000);
  assert.is(web.startTimeoutMs, 120_000);
  assert.is(web.restartCondition, 'always');
  assert.is(web.restartDelayMs, 500);
  assert.is(web.stopCommand, 'bin/web-stop');
  assert.is(web.postStopCommand, 'bin/web-cleanup');
  assert.is(web.reloadCommand, 'bin/web-reload');
  assert.is(web.installMode, 'disable');
  assert.equal(web.after, ['db']);
  assert.equal(web.sockets.http, { name: 'http', listenStream: '[::1]:8080', kind: 'tcp', host: '::1', port: 8080 });
  assert.equal(web.sockets.ctl, { name: 'ctl', listenStream: '$SNAP_COMMON/ctl.sock', kind: 'unix', path: '$SNAP_COMMON/ctl.sock', socketMode: 0o600 });
  assert.is(snap.apps.cli.refreshMode, 'ignore-running');
  assert.ok(isIgnoreRunning(snap.apps.cli));
});

test('YAML 1.1: octal socket-mode, yes/no booleans, numbers as source text', () => {
  const snap = ok(
    'name: foo\nversion: 1.10\nflag: yes\noff: no\napps:\n' +
      app('y', CMD, SVC, 'restart-condition: no', 'plugs: [network-bind]', 'sockets:', '  web:', '    listen-stream: 8080', '  ctl:', '    listen-stream: $SNAP_DATA/c.sock', '    socket-mode: 0660'),
  );
  assert.is(snap.version, '1.10', 'version keeps its source text');
  assert.is(snap.apps.y.sockets.ctl.socketMode, 0o660);
  assert.is(snap.apps.y.sockets.ctl.socketMode, 432);
  assert.is(snap.apps.y.restartCondition, 'never', '`no` is a boolean in YAML 1.1, read as "no" like go-yaml');
  assert.equal(snap.apps.y.sockets.web, { name: 'web', listenStream: '8080', kind: 'tcp', port: 8080 });
  assert.ok('y' in snap.apps, 'an app named y is not the boolean true');
  assert.equal(snap.extra, { flag: true, off: false });
});

test('unknown top-level keys are kept in extra, unknown app keys ignored', () => {
  const snap = ok(
    'name: foo\nversion: "1"\nbase: core22\ngrade: stable\nplugs:\n  home: null\nlayout:\n  /etc/foo: {bind: $SNAP_DATA/etc}\napps:\n' +
      app('a', CMD, 'plugs: [network]', 'command-chain: [bin/wrap]', 'adapter: none'),
  );
  assert.equal(snap.extra, { base: 'core22', grade: 'stable', plugs: { home: null }, layout: { '/etc/foo': { bind: '$SNAP_DATA/etc' } } });
  assert.is(Object.keys(snap.apps.a).includes('plugs'), false);
});

test('known hooks kept, unknown hook names ignored', () => {
  const snap = ok('name: foo\nversion: "1"\nhooks:\n  install:\n  pre-refresh: {plugs: [network]}\n  post-refresh: {}\n  remove:\n  configure:\n  check-health:\n  gadget-thing: {}\n');
  assert.equal(Object.keys(snap.hooks), ['install', 'pre-refresh', 'post-refresh', 'remove', 'configure', 'check-health']);
  assert.equal(snap.hooks['pre-refresh'], { name: 'pre-refresh' });
});

test('YAML merge keys and aliases', () => {
  const snap = ok('name: foo\nversion: "1"\nx-svc: &svc\n  daemon: simple\n  stop-mode: sighup\napps:\n  a:\n    <<: *svc\n    command: bin/a\n    stop-mode: sigint\n  b:\n    <<: *svc\n    command: bin/b\n');
  assert.is(snap.apps.a.daemon, 'simple');
  assert.is(snap.apps.a.stopMode, 'sigint', 'explicit keys win over merged ones');
  assert.is(snap.apps.b.stopMode, 'sighup');
});

test('all problems at once', () => {
  const yaml = snapOf(app('a', CMD, 'stop-mode: sigterm'), app('b', CMD, SVC, 'stop-timeout: -1s'), app('c', CMD, SVC, 'after: [zz]'));
  const problems = problemsOf(yaml);
  assert.equal(
    problems.map((p) => p.path),
    ['apps.a.stop-mode', 'apps.b.stop-timeout', 'apps.c.after'],
  );
  assert.equal(
    problems.map((p) => [p.line, p.column]),
    [[6, 16], [10, 19], [14, 13]],
  );
  try {
    parseSnapYaml(yaml, 'meta/snap.yaml');
    assert.unreachable('should have thrown');
  } catch (err) {
    assert.instance(err, SnapYamlError);
    assert.instance(err, SnapprocError);
    const e = err as SnapYamlError;
    assert.is(e.code, 'ERR_SNAPPROC_INVALID_SNAP_YAML');
    assert.is(e.problems.length, 3);
    assert.is(
      e.message,
      [
        'snap.yaml has 3 problems',
        'meta/snap.yaml:6:16: apps.a.stop-mode: "stop-mode" cannot be used for "a", only for services',
        'meta/snap.yaml:10:19: apps.b.stop-timeout: stop-timeout cannot be negative',
        'meta/snap.yaml:14:13: apps.c.after: before/after references a missing application "zz"',
      ].join('\n'),
    );
  }
});

test('one problem: a one-line message', () => {
  try {
    parseSnapYaml('name: Foo\nversion: "1"\n', 'snap.yaml');
    assert.unreachable('should have thrown');
  } catch (err) {
    assert.instance(err, SnapYamlError);
    assert.is((err as Error).message, 'snap.yaml:1:7: name: invalid snap name: "Foo"');
  }
  assert.is(formatProblem({ path: '', message: 'm' }), 'm');
  assert.is(formatProblem({ path: 'name', message: 'm' }), 'name: m');
  assert.is(formatProblem({ path: '', message: 'm', line: 2, column: 3 }, 's'), 's:2:3: m');
});

test('startOrder honours before and after, ties in snap.yaml order', () => {
  const snap = ok(
    snapOf(
      app('web', CMD, SVC, 'after: [db, cache]'),
      app('cli', CMD),
      app('cache', CMD, SVC),
      app('db', CMD, SVC),
      app('migrate', CMD, 'daemon: oneshot', 'before: [web]', 'after: [db]'),
      app('metrics', CMD, SVC, 'before: [db]'),
    ),
  );
  assert.equal(startOrder(snap), ['cache', 'metrics', 'db', 'migrate', 'web']);
});

test('a cycle names its members only, not the services after it', () => {
  const problems = problemsOf(
    snapOf(app('d', CMD, SVC, 'after: [b]'), app('a', CMD, SVC, 'after: [c]'), app('b', CMD, SVC, 'after: [a]'), app('c', CMD, SVC, 'after: [b]'), app('x', CMD, SVC, 'before: [x]')),
  );
  assert.equal(
    problems.map((p) => p.message),
    ['applications are part of a before/after cycle: a, b, c', 'applications are part of a before/after cycle: x'],
  );
});

test('snapproc extensions: drain-signal, pid-file, stop-mode sigquit', () => {
  const a = ok(snapOf(app('x', CMD, 'daemon: forking', 'refresh-mode: sigusr2', 'drain-signal: sigquit', 'pid-file: $SNAP_COMMON/run/x.pid', 'stop-mode: sigquit'))).apps.x;
  assert.is(a.drainSignal, 'SIGQUIT');
  assert.is(a.pidFile, '$SNAP_COMMON/run/x.pid');
  assert.is(a.stopMode, 'sigquit');
});

test('stopModeSignal and refreshSignal', () => {
  assert.equal(stopModeSignal('sigterm-all'), { signal: 'SIGTERM', all: true });
  assert.equal(stopModeSignal('sigterm'), { signal: 'SIGTERM', all: false });
  assert.equal(stopModeSignal('sigusr2-all'), { signal: 'SIGUSR2', all: true });
  assert.equal(stopModeSignal('sigint'), { signal: 'SIGINT', all: false });
  assert.equal(stopModeSignal('sighup'), { signal: 'SIGHUP', all: false });
  assert.equal(refreshSignal('sigusr2'), { signal: 'SIGUSR2', all: false });
  assert.equal(refreshSignal('sighup-all'), { signal: 'SIGHUP', all: true });
  assert.is(refreshSignal('restart'), null);
  assert.is(refreshSignal('endure'), null);
  assert.is(refreshSignal('ignore-running'), null);
  assert.is(refreshSignal(undefined), null);
});

test('validateSnapName and validateInstanceName', () => {
  for (const good of ['foo', 'a1', 'foo-bar', '1a', 'a'.repeat(40)]) assert.is(validateSnapName(good), null, good);
  assert.is(validateSnapName('Foo'), 'invalid snap name: "Foo"');
  assert.is(validateSnapName('12'), 'invalid snap name: "12"');
  assert.is(validateInstanceName('foo'), null);
  assert.is(validateInstanceName('foo_abc123'), null);
  assert.is(validateInstanceName('foo_ABC'), 'invalid instance key: "ABC"');
  assert.is(validateInstanceName('foo_'), 'invalid instance key: ""');
  assert.is(validateInstanceName('foo_12345678901'), 'invalid instance key: "12345678901"');
  assert.is(validateInstanceName('Foo_x'), 'invalid instance name: "Foo_x": invalid snap name: "Foo"');
  assert.is(validateInstanceName('Foo'), 'invalid snap name: "Foo"');
});

test('parseListenStream forms', () => {
  assert.equal(parseListenStream('127.0.0.1:80'), { kind: 'tcp', host: '127.0.0.1', port: 80 });
  assert.equal(parseListenStream('[::]:443'), { kind: 'tcp', host: '::', port: 443 });
  assert.equal(parseListenStream('65535'), { kind: 'tcp', port: 65535 });
  assert.equal(parseListenStream('$SNAP_DATA/run/s.sock'), { kind: 'unix', path: '$SNAP_DATA/run/s.sock' });
  assert.ok('reason' in parseListenStream('[::2]:80'));
});

test('summarizeSnap: one line per app with effective settings, start order, hooks', () => {
  const snap = ok(
    'name: foo\nversion: "1.0"\napps:\n' +
      app('db', CMD, SVC) +
      app('web', CMD, 'daemon: notify', 'refresh-mode: sigusr2', 'stop-mode: sigterm', 'after: [db]', 'plugs: [network-bind]', 'sockets:', '  http:', '    listen-stream: 8080', '  ctl:', '    listen-stream: $SNAP_DATA/c.sock', '    socket-mode: 0660') +
      app('cli', CMD) +
      'hooks:\n  install:\n  pre-refresh:\n',
  );
  assert.is(
    summarizeSnap(snap),
    [
      'foo 1.0 (strict confinement)',
      'apps:',
      '  db: service daemon=simple refresh-mode=restart stop-mode=sigterm-all stop-timeout=30s start-timeout=1m30s restart-condition=on-failure restart-delay=100ms',
      '  web: service daemon=notify refresh-mode=sigusr2 stop-mode=sigterm stop-timeout=30s start-timeout=1m30s restart-condition=on-failure restart-delay=100ms after=db sockets=http(8080),ctl($SNAP_DATA/c.sock,mode=0660)',
      '  cli: app refresh-mode=unset (a refresh is refused while it runs)',
      'start order: db, web',
      'hooks: install, pre-refresh',
    ].join('\n'),
  );
});

test.run();
