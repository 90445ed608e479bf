// spawn.cc: starting a process directly inside a cgroup with
// clone3(CLONE_INTO_CGROUP | CLONE_PIDFD), as systemd does. Moving a running
// process into a cgroup (a write to cgroup.procs) takes the kernel's
// threadgroup lock for writing, which waits for an RCU grace period when
// none was needed lately (10-25 ms after an idle second); forking into the
// cgroup takes it only for reading. The child is placed before it executes
// anything, and the pidfd pins it from the first instant.
//
// The child shares the parent's memory (CLONE_VM | CLONE_VFORK, as
// posix_spawn does) and runs on a small stack of its own until it executes
// the launcher: nothing of the supervisor's address space is copied. A plain
// clone3 copied the page tables of the whole Node process for every start,
// then made the parent take a copy-on-write fault for every page it wrote
// afterwards; with 1000 services that cost grew with the supervisor's size.
// The calling thread is suspended until the child has executed (or died):
// the child may only use its own stack and what the parent prepared.
#include <errno.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <stdint.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "sys.h"

#ifndef CLONE_INTO_CGROUP
#define CLONE_INTO_CGROUP 0x200000000ULL
#endif
#ifndef SYS_clone3
#define SYS_clone3 435
#endif

#if defined(__x86_64__) || defined(__aarch64__)
#define SNAPPROC_CLONE_VM 1
// clone3(args, size) that runs fn(arg) in the child on the stack given in
// args, then exits with its value; returns the child's pid (or -errno) in the
// parent. In assembly because the child starts on a new stack at the
// instruction after the syscall: no C frame may be returned to there.
extern "C" long snapproc_clone3_run(void* args, size_t size, int (*fn)(void*), void* arg);
#if defined(__x86_64__)
asm(R"(
  .text
  .globl snapproc_clone3_run
  .hidden snapproc_clone3_run
  .type snapproc_clone3_run,@function
snapproc_clone3_run:
  .cfi_startproc
  mov %rdx, %r8
  mov %rcx, %r9
  mov $435, %eax
  syscall
  test %rax, %rax
  jnz 1f
  .cfi_undefined rip
  xor %ebp, %ebp
  mov %r9, %rdi
  call *%r8
  mov %eax, %edi
  mov $60, %eax
  syscall
  hlt
1:
  ret
  .cfi_endproc
  .size snapproc_clone3_run, .-snapproc_clone3_run
)");
#else
asm(R"(
  .text
  .globl snapproc_clone3_run
  .hidden snapproc_clone3_run
  .type snapproc_clone3_run,%function
snapproc_clone3_run:
  mov x9, x2
  mov x10, x3
  mov x8, #435
  svc #0
  cbnz x0, 1f
  mov x29, xzr
  mov x30, xzr
  mov x0, x10
  blr x9
  mov x8, #93
  svc #0
  brk #0
1:
  ret
  .size snapproc_clone3_run, .-snapproc_clone3_run
)");
#endif
#endif

namespace {

struct clone3_args {
  uint64_t flags, pidfd, child_tid, parent_tid, exit_signal, stack, stack_size, tls, set_tid, set_tid_size, cgroup;
};

// In the child, between clone3 and execve: async-signal-safe calls only (no
// malloc: another thread of the parent may have held its lock), and no
// writes to memory but its own stack (it shares the parent's; errno is the
// suspended calling thread's, which looks at it only when clone3 failed).
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
  // Default dispositions first, then unblock: a signal that arrives now
  // acts on the child alone (it runs none of the parent's handlers).
  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  for (int sig = 1; sig < 65; sig++) {
    if (sig == SIGKILL || sig == SIGSTOP) continue;
    sigaction(sig, &dfl, nullptr);
  }
  uint64_t none = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &none, nullptr, sizeof none);
  execve(file, argv, envp);
  _exit(errno == EACCES || errno == ENOEXEC ? 126 : 127);
}

struct child_args {
  const char* file;
  char* const* argv;
  char* const* envp;
  const int* fds;
  int nfds;
  int setsid_too;
};

[[maybe_unused]] int child_entry(void* p) {
  const child_args* a = static_cast<const child_args*>(p);
  child(a->file, a->argv, a->envp, a->fds, a->nfds, a->setsid_too);
}

// The child's stack: what child() and execve's libc wrapper need, with room to spare.
const size_t kChildStack = 256 * 1024;

// Whether the cgroup is (being) frozen, by itself or through an ancestor. A
// child cloned into it freezes before it can execute, and a parent waiting
// for that (CLONE_VFORK) would hang until someone thaws it: such a start
// takes the copying clone instead, whose parent does not wait.
bool frozen_cgroup(int cgroup_fd) {
  char buf[256];
  int fd = openat(cgroup_fd, "cgroup.freeze", O_RDONLY | O_CLOEXEC);
  if (fd >= 0) {
    ssize_t n = read(fd, buf, sizeof buf - 1);
    close(fd);
    if (n > 0 && buf[0] == '1') return true;
  }
  fd = openat(cgroup_fd, "cgroup.events", O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return false;
  buf[n] = 0;
  return strstr(buf, "frozen 1") != nullptr;
}

// The plain clone3: the child gets a copy of the parent's address space.
int spawn_copying(clone3_args* args, const char* file, char* const* argv, char* const* envp, const int* fds, int nfds,
                  int setsid_too, int* pidfd, int* pidfd_out, const char** syscall_out) {
  long pid = syscall(SYS_clone3, args, sizeof *args);
  if (pid < 0) {
    int e = errno;
    if (syscall_out) *syscall_out = "clone3";
    return -e;
  }
  if (pid == 0) child(file, argv, envp, fds, nfds, setsid_too);
  *pidfd_out = *pidfd;
  return (int)pid;
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
#ifdef SNAPPROC_CLONE_VM
  if (frozen_cgroup(cgroup_fd)) return spawn_copying(&args, file, argv, envp, fds, nfds, setsid_too, &pidfd, pidfd_out, syscall_out);
  void* stack = mmap(nullptr, kChildStack, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_STACK, -1, 0);
  if (stack == MAP_FAILED) {
    int e = errno;
    if (syscall_out) *syscall_out = "mmap";
    return -e;
  }
  args.flags |= CLONE_VM | CLONE_VFORK;
  args.stack = (uint64_t)(uintptr_t)stack;
  args.stack_size = kChildStack;
  child_args ca = {file, argv, envp, fds, nfds, setsid_too};
  // No signal handler of the parent may run in the child (it shares the
  // parent's memory): everything is blocked until the child has reset them.
  // The raw call blocks libc's own signals too (setxid, cancellation), as posix_spawn does.
  uint64_t all = ~0ULL, old = 0;
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &all, &old, sizeof all);
  long pid = snapproc_clone3_run(&args, sizeof args, child_entry, &ca);
  syscall(SYS_rt_sigprocmask, SIG_SETMASK, &old, nullptr, sizeof old);
  munmap(stack, kChildStack);
  if (pid < 0) {
    if (syscall_out) *syscall_out = "clone3";
    return (int)pid;
  }
  *pidfd_out = pidfd;
  return (int)pid;
#else
  return spawn_copying(&args, file, argv, envp, fds, nfds, setsid_too, &pidfd, pidfd_out, syscall_out);
#endif
}

}  // namespace snapproc
