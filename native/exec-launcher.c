/* exec-launcher.c: snapproc-exec, the launcher every process snapproc starts
 * goes through. It exists for two reasons:
 *   - the process must be in its cgroup before it executes any of the snap's
 *     code (no window in which it could fork outside): it moves itself, then
 *     executes the command;
 *   - a service that re-executes itself (a graceful upgrade) must get the
 *     environment of the revision `current` points at now, not the one it
 *     inherited: with --resolve, every execution reads `current` again.
 *
 * Usage:
 *   snapproc-exec [--cgroup DIR] [--ready-fd N] [--launch FILE | --resolve ROOT NAME APP] [--] [ARG...]
 *   snapproc-exec [--cgroup DIR] [--ready-fd N] --hold
 *
 * --hold: the supervisor's fd holder (as s6-fdholderd): it executes nothing and
 * sleeps until killed, keeping open the descriptors it was started with (the
 * held sockets and the services' fd stores), so that a new supervisor can take
 * copies of them with pidfd_getfd(2) after the old one died.
 *
 * A launch file holds one directive a line (values may hold anything but a
 * newline or a NUL byte):
 *   env KEY=VALUE   set KEY in the inherited environment
 *   unset KEY       remove KEY from it
 *   cwd DIR         directory to execute in
 *   arg VALUE       the next word of the command line
 * Empty lines and lines starting with '#' are ignored. ARGs are appended to
 * the command line of the launch file; without one they are the command.
 * If LISTEN_FDS is set, LISTEN_PID is set to the launcher's pid (which the
 * command keeps: it is executed, not forked).
 *
 * Exit status when the command cannot be run: 127 (126 if it was found but
 * could not be executed), with one line on stderr, as a shell does. Plain C
 * on purpose: nothing to load but libc.
 */
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define FAIL 127

static void die(int status, const char *fmt, ...) __attribute__((noreturn, format(printf, 2, 3)));
static void die(int status, const char *fmt, ...) {
  va_list ap;
  fputs("snapproc-exec: ", stderr);
  va_start(ap, fmt);
  vfprintf(stderr, fmt, ap);
  va_end(ap);
  fputc('\n', stderr);
  exit(status);
}

static void usage_error(const char *what) __attribute__((noreturn));
static void usage_error(const char *what) {
  die(FAIL,
      "%s\nusage: snapproc-exec [--cgroup DIR] [--launch FILE | --resolve ROOT NAME APP] [--] [ARG...]",
      what);
}

/* Joins parts into buf (PATH_MAX); dies if the result does not fit. */
static void join_path(char *buf, const char *what, const char *a, const char *b, const char *c,
                      const char *d, const char *e) {
  int n = snprintf(buf, PATH_MAX, "%s%s%s%s%s", a, b, c ? c : "", d ? d : "", e ? e : "");
  if (n < 0 || n >= PATH_MAX) die(FAIL, "%s: %s", what, strerror(ENAMETOOLONG));
}

static void enter_cgroup(const char *dir) {
  char path[PATH_MAX];
  int n = snprintf(path, sizeof path, "%s/cgroup.procs", dir);
  if (n < 0 || n >= (int)sizeof path) die(FAIL, "cannot enter cgroup %s: %s", dir, strerror(ENAMETOOLONG));
  int fd = open(path, O_WRONLY | O_CLOEXEC);
  if (fd < 0) die(FAIL, "cannot enter cgroup %s: %s", dir, strerror(errno));
  /* "0" is the writing process itself. */
  if (write(fd, "0", 1) != 1) die(FAIL, "cannot enter cgroup %s: %s", dir, strerror(errno));
  close(fd);
}

/* A command starts with default signal dispositions and nothing blocked,
 * whatever its starter ignored or blocked. */
static void reset_signals(void) {
  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = SIG_DFL;
  sigemptyset(&sa.sa_mask);
  for (int sig = 1; sig < NSIG; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &sa, NULL); /* EINVAL for the real-time signals libc keeps: fine */
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);
}

static char *read_file(const char *file, size_t *len_out) {
  int fd = open(file, O_RDONLY | O_CLOEXEC);
  if (fd < 0) die(FAIL, "cannot read launch file %s: %s", file, strerror(errno));
  size_t cap = 4096, len = 0;
  char *buf = malloc(cap + 1);
  if (!buf) die(FAIL, "cannot read launch file %s: %s", file, strerror(ENOMEM));
  for (;;) {
    if (cap - len < 1024) {
      cap *= 2;
      char *more = realloc(buf, cap + 1);
      if (!more) die(FAIL, "cannot read launch file %s: %s", file, strerror(ENOMEM));
      buf = more;
    }
    ssize_t n = read(fd, buf + len, cap - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      die(FAIL, "cannot read launch file %s: %s", file, strerror(errno));
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);
  buf[len] = 0;
  *len_out = len;
  return buf;
}

struct launch {
  char **argv; /* points into the file's buffer, which is never freed */
  size_t argc;
  const char *cwd;
};

/* Applies env/unset directives to the environment as they come; collects the
 * command line and directory. */
static void apply_launch_file(const char *file, struct launch *out) {
  size_t len;
  char *text = read_file(file, &len);
  if (memchr(text, 0, len)) die(FAIL, "%s: launch file holds a NUL byte", file);
  size_t cap = 8;
  out->argv = malloc(cap * sizeof(char *));
  out->argc = 0;
  out->cwd = NULL;
  if (!out->argv) die(FAIL, "%s: %s", file, strerror(ENOMEM));
  int lineno = 0;
  for (char *line = text; line < text + len;) {
    char *nl = strchr(line, '\n');
    char *next = nl ? nl + 1 : text + len;
    if (nl) *nl = 0;
    lineno++;
    if (*line == 0 || *line == '#') {
      line = next;
      continue;
    }
    char *sp = strchr(line, ' ');
    char *value = sp ? sp + 1 : line + strlen(line);
    if (sp) *sp = 0;
    if (strcmp(line, "env") == 0) {
      char *eq = strchr(value, '=');
      if (!eq || eq == value) die(FAIL, "%s:%d: expected env KEY=VALUE", file, lineno);
      *eq = 0;
      if (setenv(value, eq + 1, 1) < 0) die(FAIL, "%s:%d: cannot set %s: %s", file, lineno, value, strerror(errno));
    } else if (strcmp(line, "unset") == 0) {
      if (*value == 0 || strchr(value, '=')) die(FAIL, "%s:%d: expected unset KEY", file, lineno);
      unsetenv(value);
    } else if (strcmp(line, "cwd") == 0) {
      if (*value == 0) die(FAIL, "%s:%d: expected cwd DIR", file, lineno);
      out->cwd = value;
    } else if (strcmp(line, "arg") == 0) {
      if (out->argc + 1 >= cap) {
        cap *= 2;
        char **more = realloc(out->argv, cap * sizeof(char *));
        if (!more) die(FAIL, "%s: %s", file, strerror(ENOMEM));
        out->argv = more;
      }
      out->argv[out->argc++] = value;
    } else {
      die(FAIL, "%s:%d: unknown directive '%s' (expected env, unset, cwd or arg)", file, lineno, line);
    }
    line = next;
  }
}

static int plain_name(const char *s) {
  return *s && strchr(s, '/') == NULL && strcmp(s, ".") != 0 && strcmp(s, "..") != 0;
}

/* ROOT/state/launch/NAME/REV/APP.launch, REV read from ROOT/snap/NAME/current now. */
static void resolve_launch_file(const char *root, const char *name, const char *app, char *file) {
  if (!plain_name(name)) die(FAIL, "invalid snap name '%s'", name);
  if (!plain_name(app)) die(FAIL, "invalid app name '%s'", app);
  char link[PATH_MAX], target[PATH_MAX];
  join_path(link, "cannot resolve current revision", root, "/snap/", name, "/current", NULL);
  ssize_t n = readlink(link, target, sizeof target - 1);
  if (n < 0) die(FAIL, "cannot resolve current revision of %s: %s: %s", name, link, strerror(errno));
  target[n] = 0;
  /* `current` is a relative symlink to REV; tolerate a path, take its last part. */
  while (n > 1 && target[n - 1] == '/') target[--n] = 0;
  const char *rev = strrchr(target, '/') ? strrchr(target, '/') + 1 : target;
  if (!plain_name(rev)) die(FAIL, "cannot resolve current revision of %s: %s points at '%s'", name, link, target);
  join_path(file, "cannot resolve launch file", root, "/state/launch/", name, "/", rev);
  size_t used = strlen(file);
  int m = snprintf(file + used, PATH_MAX - used, "/%s.launch", app);
  if (m < 0 || (size_t)m >= PATH_MAX - used) die(FAIL, "cannot resolve launch file: %s", strerror(ENAMETOOLONG));
}

/* execvp reports EACCES when some PATH directory could not be searched, even
 * if the command exists nowhere: say "not found" then, as a shell does. */
static int found_on_path(const char *cmd) {
  const char *p = getenv("PATH");
  if (!p) p = "/bin:/usr/bin";
  char file[PATH_MAX];
  while (*p) {
    const char *end = strchr(p, ':');
    size_t len = end ? (size_t)(end - p) : strlen(p);
    int n = len ? snprintf(file, sizeof file, "%.*s/%s", (int)len, p, cmd) : snprintf(file, sizeof file, "%s", cmd);
    struct stat st;
    if (n > 0 && n < (int)sizeof file && stat(file, &st) == 0 && !S_ISDIR(st.st_mode)) return 1;
    if (!end) break;
    p = end + 1;
  }
  return 0;
}

int main(int argc, char **argv) {
  const char *cgroup = NULL, *launch = NULL, *root = NULL, *name = NULL, *app = NULL;
  int ready_fd = -1;
  int hold = 0;
  int i = 1;
  while (i < argc) {
    const char *a = argv[i];
    if (strcmp(a, "--") == 0) {
      i++;
      break;
    } else if (strcmp(a, "--cgroup") == 0) {
      if (i + 1 >= argc) usage_error("--cgroup needs a directory");
      cgroup = argv[i + 1];
      i += 2;
    } else if (strcmp(a, "--ready-fd") == 0) {
      /* Told, once in the cgroup, so that the supervisor knows the process is where it belongs. */
      if (i + 1 >= argc) usage_error("--ready-fd needs a file descriptor number");
      char *end = NULL;
      long fd = strtol(argv[i + 1], &end, 10);
      if (!end || *end || fd < 3 || fd > 1 << 20) usage_error("--ready-fd needs a file descriptor number >= 3");
      ready_fd = (int)fd;
      i += 2;
    } else if (strcmp(a, "--hold") == 0) {
      hold = 1;
      i++;
    } else if (strcmp(a, "--launch") == 0) {
      if (i + 1 >= argc) usage_error("--launch needs a file");
      if (root) usage_error("--launch and --resolve exclude each other");
      launch = argv[i + 1];
      i += 2;
    } else if (strcmp(a, "--resolve") == 0) {
      if (i + 3 >= argc) usage_error("--resolve needs ROOT, NAME and APP");
      if (launch) usage_error("--launch and --resolve exclude each other");
      root = argv[i + 1];
      name = argv[i + 2];
      app = argv[i + 3];
      i += 4;
    } else if (a[0] == '-' && a[1] == '-') {
      char what[320];
      snprintf(what, sizeof what, "unknown option %.200s (put -- before a command that starts with --)", a);
      usage_error(what);
    } else {
      break;
    }
  }

  if (cgroup) enter_cgroup(cgroup);
  if (ready_fd >= 0) {
    ssize_t ignored = write(ready_fd, "1", 1);
    (void)ignored;
    close(ready_fd);
  }
  reset_signals();
  if (hold) {
    /* Only SIGKILL (or SIGTERM from whoever cleans up) ends it. */
    signal(SIGHUP, SIG_IGN);
    signal(SIGINT, SIG_IGN);
    signal(SIGPIPE, SIG_IGN);
    for (;;) pause();
  }

  struct launch spec = {NULL, 0, NULL};
  char resolved[PATH_MAX];
  if (root) {
    resolve_launch_file(root, name, app, resolved);
    launch = resolved;
  }
  if (launch) apply_launch_file(launch, &spec);

  size_t extra = (size_t)(argc - i);
  char **cmd = malloc((spec.argc + extra + 1) * sizeof(char *));
  if (!cmd) die(FAIL, "%s", strerror(ENOMEM));
  for (size_t k = 0; k < spec.argc; k++) cmd[k] = spec.argv[k];
  for (size_t k = 0; k < extra; k++) cmd[spec.argc + k] = argv[i + (int)k];
  cmd[spec.argc + extra] = NULL;
  if (cmd[0] == NULL) usage_error(launch ? "the launch file names no command (no arg lines) and none was given" : "no command given");

  /* systemd's rule: the passed sockets are for the process whose pid this is. */
  if (getenv("LISTEN_FDS")) {
    char pid[24];
    snprintf(pid, sizeof pid, "%d", (int)getpid());
    setenv("LISTEN_PID", pid, 1);
  }

  if (spec.cwd && chdir(spec.cwd) < 0) die(FAIL, "cannot change directory to %s: %s", spec.cwd, strerror(errno));

  execvp(cmd[0], cmd);
  int e = errno;
  if (e == EACCES && !strchr(cmd[0], '/') && !found_on_path(cmd[0])) e = ENOENT;
  die(e == EACCES || e == ENOEXEC ? 126 : 127, "cannot execute %s: %s", cmd[0], strerror(e));
}
