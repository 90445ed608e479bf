// spawn.cc: starting a process directly inside a cgroup with
// clone3(CLONE_INTO_CGROUP | CLONE_PIDFD), as systemd does. Moving a running
// process into a cgroup (a write to cgroup.procs) takes the kernel's
// threadgroup lock for writing, which waits for an RCU grace period when
// none was needed lately (10-25 ms after an idle second); forking into the
// cgroup takes it only for reading. The child is placed before it executes
// anything, and the pidfd pins it from the first instant.
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sys.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

namespace {

struct clone3_args {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

// In the child, between clone3 and execve: async-signal-safe calls only (no
// malloc: another thread of the parent may have held its lock).
[[noreturn]] void child(const char* file, char* const* argv, char* const* envp, const int* fds, int nfds, int setsid_too) {
  if (setsid_too) setsid();
  // Lift every source above the targets first, so no dup2 overwrites a
  // source still needed; F_DUPFD copies are not close-on-exec.
  int high[64];
  for (int i = 0; i < nfds; i++) high[i] = fds[i] < 0 ? -1 : fcntl(fds[i], F_DUPFD, 256);
  for (int i = 0; i < nfds; i++) {
    if (high[i] < 0) {
      int null_fd = open("/dev/null", O_RDWR);
      if (null_fd >= 0 && null_fd != i) {
        dup2(null_fd, i);
        close(null_fd);
      }
    } else {
      dup2(high[i], i);
      close(high[i]);
    }
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, nullptr);
  for (int sig = 1; sig < 65; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    signal(sig, SIG_DFL);
  }
  execve(file, argv, envp);
  _exit(errno == EACCES || errno == ENOEXEC ? 126 : 127);
}

}  // namespace

namespace snapproc {

int spawn_in_cgroup(const char* file, char* const* argv, char* const* envp, int cgroup_fd, const int* fds, int nfds,
                    int setsid_too, int* pidfd_out, const char** syscall_out) {
  if (nfds > 64) {
    if (syscall_out) *syscall_out = "clone3";
    return -EINVAL;
  }
  int pidfd = -1;
  clone3_args args;
  memset(&args, 0, sizeof args);
  args.flags = CLONE_INTO_CGROUP | CLONE_PIDFD;
  args.pidfd = (uint64_t)(uintptr_t)&pidfd;
  args.exit_signal = SIGCHLD;
  args.cgroup = (uint64_t)cgroup_fd;
  long pid = syscall(SYS_clone3, &args, sizeof args);
  if (pid < 0) {
    int e = errno;
    if (syscall_out) *syscall_out = "clone3";
    return -e;
  }
  if (pid == 0) child(file, argv, envp, fds, nfds, setsid_too);
  *pidfd_out = pidfd;
  return (int)pid;
}

}  // namespace snapproc
