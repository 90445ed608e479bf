// sys.cc: the syscalls and cgroup file access snapproc needs that Node cannot
// do, or cannot do atomically. Plain functions returning 0 or -errno; the
// N-API glue lives in binding.cc.
#include "sys.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sched.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <time.h>
#include <unistd.h>

#include <algorithm>

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_open_tree
#define SYS_open_tree 428
#endif
#ifndef SYS_move_mount
#define SYS_move_mount 429
#endif
#ifndef SYS_mount_setattr
#define SYS_mount_setattr 442
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif

namespace {

using snapproc::mono_ms;

// Milliseconds left of a deadline, for poll(2); -1 means no deadline.
int remaining_ms(int64_t deadline) {
  if (deadline < 0) return -1;
  int64_t left = deadline - mono_ms();
  return left < 0 ? 0 : (int)left;
}

int fail(const char** syscall_out, const char* name) {
  int e = errno;
  if (syscall_out) *syscall_out = name;
  return -e;
}

int write_file(const char* dir, const char* file, const char* text, const char** syscall_out) {
  std::string path = std::string(dir) + "/" + file;
  int fd = open(path.c_str(), O_WRONLY | O_CLOEXEC);
  if (fd < 0) return fail(syscall_out, "open");
  ssize_t n = write(fd, text, strlen(text));
  int rc = n < 0 ? fail(syscall_out, "write") : 0;
  close(fd);
  return rc;
}

// Sub-cgroups of `dir`, `dir` first, depth first.
void subtree(const std::string& dir, std::vector<std::string>* out) {
  out->push_back(dir);
  DIR* d = opendir(dir.c_str());
  if (!d) return;
  while (struct dirent* e = readdir(d)) {
    if (e->d_type != DT_DIR || e->d_name[0] == '.') continue;
    subtree(dir + "/" + e->d_name, out);
  }
  closedir(d);
}

int read_subtree_procs(const std::vector<std::string>& dirs, std::vector<int32_t>* out,
                       const char** syscall_out) {
  out->clear();
  std::vector<int32_t> one;
  for (size_t i = 0; i < dirs.size(); i++) {
    int rc = snapproc::cg_read_procs(dirs[i].c_str(), &one, syscall_out);
    // A sub-cgroup removed while we walk is simply empty.
    if (rc < 0 && !(i > 0 && rc == -ENOENT)) return rc;
    if (rc >= 0) out->insert(out->end(), one.begin(), one.end());
  }
  return 0;
}

int stat_ids(int32_t pid, snapproc::proc_ids* ids) {
  char path[64], buf[512];
  snprintf(path, sizeof path, "/proc/%d/stat", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -errno;
  ssize_t n = read(fd, buf, sizeof buf - 1);
  close(fd);
  if (n <= 0) return -ESRCH;
  buf[n] = 0;
  // comm may hold spaces and parentheses: the fields resume after the last ')'.
  char* p = strrchr(buf, ')');
  if (!p) return -EINVAL;
  char state;
  int ppid, pgid;
  if (sscanf(p + 1, " %c %d %d", &state, &ppid, &pgid) != 3) return -EINVAL;
  ids->pid = pid;
  ids->ppid = ppid;
  ids->pgid = pgid;
  return 0;
}

// -1 unknown, 0 absent, 1 present
int g_have_pidfd_info = -1;
}  // namespace

namespace snapproc {

int64_t mono_ms() {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int cg_event_value(int fd, const char* key) {
  char buf[256];
  ssize_t n;
  do {
    n = pread(fd, buf, sizeof buf - 1, 0);
  } while (n < 0 && errno == EINTR);
  if (n < 0) return -errno;
  buf[n] = 0;
  size_t keylen = strlen(key);
  for (char* line = buf; line && *line;) {
    char* nl = strchr(line, '\n');
    if (strncmp(line, key, keylen) == 0 && line[keylen] == ' ') return atoi(line + keylen + 1);
    line = nl ? nl + 1 : nullptr;
  }
  return -ENOENT;
}

int sys_kill(int pid, int sig, const char** syscall_out) {
  return kill(pid, sig) < 0 ? fail(syscall_out, "kill") : 0;
}

int sys_killpg(int pgid, int sig, const char** syscall_out) {
  return killpg(pgid, sig) < 0 ? fail(syscall_out, "killpg") : 0;
}

int sys_pidfd_open(int pid, const char** syscall_out) {
  int fd = (int)syscall(SYS_pidfd_open, pid, 0);
  if (fd < 0) return fail(syscall_out, "pidfd_open");
  // pidfd_open(2) always sets O_CLOEXEC.
  return fd;
}

int sys_pidfd_getfd(int pidfd, int targetfd, const char** syscall_out) {
  // The copy is O_CLOEXEC (pidfd_getfd(2) sets it).
  int fd = (int)syscall(SYS_pidfd_getfd, pidfd, targetfd, 0);
  return fd < 0 ? fail(syscall_out, "pidfd_getfd") : fd;
}

int sys_pidfd_send_signal(int pidfd, int sig, const char** syscall_out) {
  return syscall(SYS_pidfd_send_signal, pidfd, sig, nullptr, 0) < 0
             ? fail(syscall_out, "pidfd_send_signal")
             : 0;
}

int sys_pidfd_exit_status(int pidfd, int* status, const char** syscall_out) {
  pidfd_info_v0 info;
  memset(&info, 0, sizeof info);
  info.mask = kPidfdInfoExit;
  if (ioctl(pidfd, kPidfdGetInfo, &info) < 0) return fail(syscall_out, "ioctl");
  if (!(info.mask & kPidfdInfoExit)) {
    if (syscall_out) *syscall_out = "ioctl";
    return -ENODATA;
  }
  *status = info.exit_code;
  return 0;
}

int sys_syncfs(const char* path, const char** syscall_out) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(syscall_out, "open");
  int rc = syncfs(fd) < 0 ? fail(syscall_out, "syncfs") : 1;
  close(fd);
  return rc;
}

namespace {
// struct mount_attr of linux/mount.h (declared here: headers lag the kernel).
struct mount_attr_v0 {
  uint64_t attr_set, attr_clr, propagation, userns_fd;
};
const unsigned kOpenTreeClone = 1;
const uint64_t kMountAttrRdonly = 0x1;
const unsigned kMoveMountFEmptyPath = 0x4;
}  // namespace

int sys_bind_readonly(const char* path, const char** syscall_out) {
  int fd = (int)syscall(SYS_open_tree, AT_FDCWD, path, kOpenTreeClone | O_CLOEXEC);
  if (fd < 0) return fail(syscall_out, "open_tree");
  mount_attr_v0 attr;
  memset(&attr, 0, sizeof attr);
  attr.attr_set = kMountAttrRdonly;
  int rc = 0;
  if (syscall(SYS_mount_setattr, fd, "", AT_EMPTY_PATH, &attr, sizeof attr) < 0)
    rc = fail(syscall_out, "mount_setattr");
  else if (syscall(SYS_move_mount, fd, "", AT_FDCWD, path, kMoveMountFEmptyPath) < 0)
    rc = fail(syscall_out, "move_mount");
  close(fd);
  return rc;
}

int sys_set_child_subreaper(int on, const char** syscall_out) {
  return prctl(PR_SET_CHILD_SUBREAPER, on ? 1 : 0, 0, 0, 0) < 0 ? fail(syscall_out, "prctl") : 0;
}

int sys_get_child_subreaper(const char** syscall_out) {
  int on = 0;
  if (prctl(PR_GET_CHILD_SUBREAPER, &on, 0, 0, 0) < 0) return fail(syscall_out, "prctl");
  return on ? 1 : 0;
}

int sys_set_pdeathsig(int sig, const char** syscall_out) {
  return prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0) < 0 ? fail(syscall_out, "prctl") : 0;
}

int sys_get_pdeathsig(const char** syscall_out) {
  int sig = 0;
  if (prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0) < 0) return fail(syscall_out, "prctl");
  return sig;
}

int sys_set_name(const char* name, const char** syscall_out) {
  return prctl(PR_SET_NAME, name, 0, 0, 0) < 0 ? fail(syscall_out, "prctl") : 0;
}

int sys_get_name(std::string* name, const char** syscall_out) {
  char buf[17] = {0};
  if (prctl(PR_GET_NAME, buf, 0, 0, 0) < 0) return fail(syscall_out, "prctl");
  *name = buf;
  return 0;
}

int cg_read_procs(const char* dir, std::vector<int32_t>* out, const char** syscall_out) {
  out->clear();
  std::string path = std::string(dir) + "/cgroup.procs";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(syscall_out, "open");
  std::vector<char> buf(16384);
  size_t len = 0;
  for (;;) {
    if (buf.size() - len < 4096) buf.resize(buf.size() * 2);
    ssize_t n = read(fd, buf.data() + len, buf.size() - len);
    if (n < 0) {
      if (errno == EINTR) continue;
      int rc = fail(syscall_out, "read");
      close(fd);
      return rc;
    }
    if (n == 0) break;
    len += (size_t)n;
  }
  close(fd);
  parse_pid_list(buf.data(), len, out);
  return (int)out->size();
}

void parse_pid_list(const char* text, size_t len, std::vector<int32_t>* out) {
  int32_t v = 0;
  bool in = false;
  for (size_t i = 0; i < len; i++) {
    char c = text[i];
    if (c >= '0' && c <= '9') {
      v = v * 10 + (c - '0');
      in = true;
    } else if (in) {
      out->push_back(v);
      v = 0;
      in = false;
    }
  }
  if (in) out->push_back(v);
}

void proc_ids_of(const std::vector<int32_t>& pids, std::vector<proc_ids>* out) {
  out->clear();
  out->reserve(pids.size());
  for (int32_t pid : pids) {
    if (pid <= 0) continue;
    proc_ids ids;
    bool done = false;
    if (g_have_pidfd_info != 0) {
      // One pidfd + one ioctl is cheaper than open/read/parse of /proc/PID/stat.
      int fd = (int)syscall(SYS_pidfd_open, pid, 0);
      if (fd < 0) continue;  // gone
      pidfd_info_v0 info;
      memset(&info, 0, sizeof info);
      info.mask = kPidfdInfoPid;
      if (ioctl(fd, kPidfdGetInfo, &info) == 0) {
        g_have_pidfd_info = 1;
        pid_t pgid = getpgid(pid);
        // Still alive after getpgid: the pgid is this process's, not a successor's.
        // (EPERM: alive, but another user's, when the caller is not root.)
        if (pgid >= 0 && (syscall(SYS_pidfd_send_signal, fd, 0, nullptr, 0) == 0 || errno == EPERM)) {
          ids.pid = pid;
          ids.ppid = (int32_t)info.ppid;
          ids.pgid = pgid;
          done = true;
        }
        close(fd);
        if (done) out->push_back(ids);
        continue;
      }
      int e = errno;
      close(fd);
      if (e == ESRCH) continue;
      // Only a kernel without PIDFD_GET_INFO turns the fast path off.
      if (e == ENOTTY || e == EINVAL) g_have_pidfd_info = 0;
    }
    if (stat_ids(pid, &ids) == 0) out->push_back(ids);
  }
}

int cg_wait_event(const char* dir, const char* key, int want, int timeout_ms, const char** syscall_out) {
  std::string path = std::string(dir) + "/cgroup.events";
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail(syscall_out, "open");
  int64_t deadline = timeout_ms < 0 ? -1 : mono_ms() + timeout_ms;
  int64_t last_wake = mono_ms();
  int rc = 0;
  for (;;) {
    int value = cg_event_value(fd, key);
    if (value < 0) {
      if (syscall_out) *syscall_out = "read";
      rc = value;
      break;
    }
    if (value == want) {
      rc = 1;
      break;
    }
    // kernfs wakes pollers of cgroup.events with POLLPRI when a value changes,
    // but at most once per kCgroupNotifyIntervalMs: a change right after
    // another one (populated 0 just after the thaw of a stop) is announced up
    // to ~12 ms late. So within that interval after the start of the wait or
    // after a wake-up, the value is also read again every kCgroupRereadUs;
    // beyond it the wait is purely on the event.
    bool rate_limited = mono_ms() - last_wake < kCgroupNotifyIntervalMs;
    int wait_ms = remaining_ms(deadline);
    struct pollfd pfd = {fd, POLLPRI, 0};
    int pn;
    if (rate_limited && (wait_ms < 0 || wait_ms > 0)) {
      struct timespec reread = {0, kCgroupRereadUs * 1000};
      pn = ppoll(&pfd, 1, &reread, nullptr);
    } else {
      pn = poll(&pfd, 1, wait_ms);
    }
    if (pn < 0) {
      if (errno == EINTR) continue;
      rc = fail(syscall_out, "poll");
      break;
    }
    if (pn == 0) {
      if (deadline >= 0 && mono_ms() >= deadline) {
        rc = 0;
        break;
      }
      continue;  // a re-read inside the notification interval
    }
    if (pfd.revents) last_wake = mono_ms();
  }
  close(fd);
  return rc;
}

int cg_write_freeze(const char* dir, int frozen, const char** syscall_out) {
  return write_file(dir, "cgroup.freeze", frozen ? "1" : "0", syscall_out);
}

int cg_set_frozen(const char* dir, int frozen, int timeout_ms, const char** syscall_out) {
  int rc = cg_write_freeze(dir, frozen, syscall_out);
  if (rc < 0) return rc;
  return cg_wait_event(dir, "frozen", frozen ? 1 : 0, timeout_ms, syscall_out);
}

namespace {

// While it lives, the calling thread runs as SCHED_FIFO (priority 1) where
// it may, and then as it was (policy, SCHED_RESET_ON_FORK and nice kept).
// Why: a fatal signal wakes its target at once, on the signalling thread's
// CPU, and the woken task preempted the fan-out there and ran its whole exit
// before the next signal went out, while the other CPU stayed idle (perf on
// 2 CPUs: 100 frozen sleeps took 11 ms to SIGTERM until empty, one CPU idle
// for 5 ms of it, against 4.7 ms for cgroup.kill, which signals all in one
// loop that nothing preempts). Not preempted by the (SCHED_OTHER) members it
// wakes, the fan-out lets them queue and the idle CPU takes them: 7.0 ms.
// Where the thread may not (no CAP_SYS_NICE and RLIMIT_RTPRIO 0, or real-time
// group scheduling without a budget), nothing changes. The caller keeps each
// stretch short (Chunk): the thread's CPU is not taken from other programs
// for longer than a few hundred signals.
class UnpreemptedByWakees {
 public:
  explicit UnpreemptedByWakees(bool wanted = true) {
    if (!wanted) return;
    policy_ = sched_getscheduler(0);
    if (policy_ < 0 || sched_getparam(0, &param_) < 0) return;
    if ((policy_ & ~SCHED_RESET_ON_FORK) != SCHED_OTHER && (policy_ & ~SCHED_RESET_ON_FORK) != SCHED_BATCH) return;  // already real-time, or idle: left alone
    Raise();
  }
  ~UnpreemptedByWakees() { Lower(); }
  // Between stretches: as it was for a moment (the woken members may run here too), then raised again.
  void Chunk() {
    if (!raised_) return;
    Lower();
    Raise();
  }

 private:
  void Raise() {
    struct sched_param fifo = {};
    fifo.sched_priority = 1;
    raised_ = sched_setscheduler(0, SCHED_FIFO | (policy_ & SCHED_RESET_ON_FORK), &fifo) == 0;
  }
  void Lower() {
    if (raised_) sched_setscheduler(0, policy_, &param_);
    raised_ = false;
  }
  int policy_ = -1;
  struct sched_param param_ = {};
  bool raised_ = false;
};

// Signals in one unpreempted stretch (UnpreemptedByWakees).
const size_t kSignalsPerStretch = 256;

// Signals one snapshot of the members of `dir`'s subtree (frozen by the
// caller): each member pinned by a pidfd, the members read again, and only
// those listed both times signalled (a PID that died and was reused between
// the two reads is not in the frozen subtree, so it cannot be listed the
// second time).
int signal_snapshot(const char* dir, int sig, int also_cont, int32_t self, fanout_result* result, size_t* listed, const char** syscall_out) {
  std::vector<std::string> dirs;
  subtree(dir, &dirs);
  result->cgroups = (int32_t)dirs.size();
  std::vector<int32_t> first, second;
  int rc = read_subtree_procs(dirs, &first, syscall_out);
  if (rc < 0) return rc;
  *listed = first.size();
  std::vector<std::pair<int32_t, int>> targets;
  targets.reserve(first.size());
  for (int32_t pid : first) {
    if (pid <= 1 || pid == self) continue;  // 0: outside our pid namespace
    int fd = (int)syscall(SYS_pidfd_open, pid, 0);
    if (fd < 0) {
      if (errno == ESRCH) {
        result->gone++;
        continue;
      }
      // Out of descriptors (or anything else): report it, never count a
      // live process as gone.
      rc = fail(syscall_out, "pidfd_open");
      break;
    }
    targets.emplace_back(pid, fd);
  }
  if (rc >= 0 && !targets.empty()) rc = read_subtree_procs(dirs, &second, syscall_out);
  std::sort(second.begin(), second.end());
  // One target: nothing to be preempted between (and raising costs two sched_setscheduler calls).
  UnpreemptedByWakees unpreempted(targets.size() > 1);
  size_t sent = 0;
  for (auto& t : targets) {
    if (++sent % kSignalsPerStretch == 0) unpreempted.Chunk();
    if (rc >= 0 && std::binary_search(second.begin(), second.end(), t.first) &&
        syscall(SYS_pidfd_send_signal, t.second, sig, nullptr, 0) == 0) {
      if (also_cont) syscall(SYS_pidfd_send_signal, t.second, SIGCONT, nullptr, 0);
      result->signalled++;
    } else {
      result->gone++;
    }
    close(t.second);
  }
  return rc;
}

}  // namespace

int cg_signal_frozen(const char* dir, int sig, int also_cont, fanout_result* result, const char** syscall_out) {
  memset(result, 0, sizeof *result);
  result->frozen = 1;
  result->was_frozen = 1;
  size_t listed = 0;
  int rc = signal_snapshot(dir, sig, also_cont, (int32_t)getpid(), result, &listed, syscall_out);
  result->empty = rc >= 0 && listed == 0;
  return rc;
}

int cg_signal_all(const char* dir, int sig, int also_cont, int freeze_timeout_ms, int only_if_frozen,
                  int refuse_frozen, fanout_result* result, const char** syscall_out) {
  memset(result, 0, sizeof *result);
  std::vector<std::string> dirs;
  subtree(dir, &dirs);
  std::vector<int32_t> first;
  int rc = read_subtree_procs(dirs, &first, syscall_out);
  if (rc < 0) return rc;
  // Freezing a cgroup we are in would freeze us: refuse before touching it.
  int32_t self = (int32_t)getpid();
  if (std::find(first.begin(), first.end(), self) != first.end()) {
    if (syscall_out) *syscall_out = "cgroup.freeze";
    return -EDEADLK;
  }
  if (first.empty()) {
    result->cgroups = (int32_t)dirs.size();
    result->empty = 1;
    return 0;
  }
  // A cgroup someone froze on purpose (snapproc freeze) stays frozen afterwards.
  char was[4] = {0};
  {
    std::string freeze_file = std::string(dir) + "/cgroup.freeze";
    int ffd = open(freeze_file.c_str(), O_RDONLY | O_CLOEXEC);
    if (ffd >= 0) {
      ssize_t ignored = read(ffd, was, sizeof was - 1);
      (void)ignored;
      close(ffd);
    }
  }
  bool was_frozen = was[0] == '1';
  result->was_frozen = was_frozen ? 1 : 0;
  if (was_frozen && refuse_frozen) {
    result->cgroups = (int32_t)dirs.size();
    return 0;
  }
  rc = cg_set_frozen(dir, 1, freeze_timeout_ms, syscall_out);
  if (rc < 0) {
    if (!was_frozen) cg_set_frozen(dir, 0, freeze_timeout_ms, nullptr);
    return rc;
  }
  // A member in uninterruptible sleep can delay `frozen 1`; signal anyway,
  // unless the caller waits for the freeze itself.
  result->frozen = rc == 1;
  if (!result->frozen && only_if_frozen) {
    result->cgroups = (int32_t)dirs.size();
    return 0;
  }
  // Frozen: nothing in the subtree can fork or create a cgroup until we thaw.
  size_t listed = 0;
  rc = signal_snapshot(dir, sig, also_cont, self, result, &listed, syscall_out);
  // The thaw is written, not waited for: every member is signalled, and the
  // caller waits for what it is after (`populated 0`), not for `frozen 0`,
  // which the kernel may announce up to a notification interval late.
  const char* thaw_syscall = nullptr;
  int thaw = was_frozen ? 1 : write_file(dir, "cgroup.freeze", "0", &thaw_syscall);
  if (rc < 0) return rc;
  if (thaw < 0) {
    if (syscall_out) *syscall_out = thaw_syscall;
    return thaw;
  }
  return 0;
}

}  // namespace snapproc
