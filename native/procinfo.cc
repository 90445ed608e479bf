// procinfo.cc: what `snapproc ps` needs of each member of a cgroup, in one
// call: parent and process group, an order of creation, and, when asked, the
// snap revision it executes (from the path of /proc/PID/exe when that lies in
// a revision directory, else from SNAP_REVISION in /proc/PID/environ). Where
// the kernel has PIDFD_GET_INFO (6.13+), a pidfd gives the parent (ioctl)
// and tells that the reads by PID (getpgid, the revision) were about the
// process listed; that costs about half of reading and parsing
// /proc/PID/stat, which is kept for older kernels and on request
// (`via_stat`), and gives start times too. Done in JavaScript this was ~0.13 ms per
// process, 70% of it in reading environ through fs.readFileSync.
#include "sys.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <string>
#include <thread>
#include <vector>

namespace snapproc {

namespace {

ssize_t read_file(const char* path, char* buf, size_t size) {
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return -1;
  size_t got = 0;
  while (got < size) {
    ssize_t n = read(fd, buf + got, size - got);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      errno = e;
      return -1;
    }
    if (n == 0) break;
    got += static_cast<size_t>(n);
  }
  close(fd);
  return static_cast<ssize_t>(got);
}

// A read by PID that failed: the process is gone (ENOENT, ESRCH: 0), or the
// reading itself failed (EMFILE, ENOMEM...: -errno), which must not be taken
// for an exit.
int gone_or_error(int e) { return e == ENOENT || e == ESRCH ? 0 : -e; }

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool name_char(char c) { return (c >= 'a' && c <= 'z') || is_digit(c) || c == '-' || c == '_'; }

// `.../snap/NAME/REV/...` with REV `x3` or `42` (as procfs.ts's REVISION_IN_PATH).
bool revision_in_path(const char* p, size_t len, std::string* rev) {
  static const char key[] = "/snap/";
  for (size_t at = 0; at + 6 <= len; at++) {
    if (memcmp(p + at, key, 6) != 0) continue;
    size_t i = at + 6, n0 = i;
    while (i < len && name_char(p[i])) i++;
    if (i == n0 || i >= len || p[i] != '/') continue;
    size_t r0 = ++i;
    if (i < len && p[i] == 'x') i++;
    size_t d0 = i;
    while (i < len && is_digit(p[i])) i++;
    if (i == d0 || (i < len && p[i] != '/')) continue;
    rev->assign(p + r0, i - r0);
    return true;
  }
  return false;
}

bool revision_in_environ(const char* env, size_t len, std::string* rev) {
  static const char key[] = "SNAP_REVISION=";
  const size_t k = sizeof(key) - 1;
  for (size_t at = 0; at < len;) {
    const char* end = static_cast<const char*>(memchr(env + at, '\0', len - at));
    size_t l = end ? static_cast<size_t>(end - (env + at)) : len - at;
    if (l >= k && memcmp(env + at, key, k) == 0) {
      rev->assign(env + at + k, l - k);
      return !rev->empty();
    }
    at += l + 1;
  }
  return false;
}

}  // namespace

namespace {

std::atomic<int> g_have_info{-1};  // -1 unknown, 0 no PIDFD_GET_INFO, 1 yes
const size_t kPerThread = 256;  // fewer members per thread than this: not worth a thread
const size_t kMaxThreads = 4;

// The revision `pid` executes: its exe's path, else SNAP_REVISION in its
// environment. 0, or -errno when the environment could not be read for a
// reason other than the process being gone or not ours to read (EACCES: then
// the revision is not known).
int revision_of(int32_t pid, std::vector<char>* env, std::string* rev) {
  char path[64];
  char exe[4096];
  snprintf(path, sizeof path, "/proc/%d/exe", pid);
  ssize_t l = readlink(path, exe, sizeof exe);
  if (l > 0 && revision_in_path(exe, static_cast<size_t>(l), rev)) return 0;
  // The whole environment (a process's can be large): read until it ends.
  // procfs gives all it has up to the size asked for in one read, so a
  // short read is the end.
  snprintf(path, sizeof path, "/proc/%d/environ", pid);
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return errno == EACCES || errno == EPERM ? 0 : gone_or_error(errno);
  if (env->size() < 16384) env->resize(16384);
  size_t got = 0;
  for (;;) {
    if (got == env->size()) {
      if (env->size() >= (1u << 22)) break;  // 4 MiB: more than any environment
      env->resize(env->size() * 2);
    }
    size_t want = env->size() - got;
    ssize_t r = read(fd, env->data() + got, want);
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    got += static_cast<size_t>(r);
    if (static_cast<size_t>(r) < want) break;
  }
  close(fd);
  revision_in_environ(env->data(), got, rev);
  return 0;
}

// What info_by_pidfd found.
enum class ByPidfd {
  filled,
  gone,
  no_info,    // no PIDFD_GET_INFO in this kernel (ENOTTY/EINVAL): /proc/PID/stat from now on
  fall_back,  // this one failed otherwise (EMFILE...): /proc/PID/stat for it
  read_error, // its environment could not be read (*read_err, see revision_of)
};

// Through a pidfd. The ioctl comes last: it fails (ESRCH) once the process
// has been reaped, so when it answers, the PID was never free between the
// reads by PID (getpgid, /proc/PID/...) and they were about this process,
// not a successor's.
ByPidfd info_by_pidfd(int32_t pid, bool revisions, std::vector<char>* env, proc_info* pi, int* read_err) {
  int fd = static_cast<int>(syscall(SYS_pidfd_open, pid, 0));
  if (fd < 0) return errno == ESRCH ? ByPidfd::gone : ByPidfd::fall_back;
  pid_t pgid = getpgid(pid);
  if (pgid < 0) {
    close(fd);
    return ByPidfd::gone;
  }
  if (revisions) {
    *read_err = revision_of(pid, env, &pi->revision);
    if (*read_err < 0) {
      close(fd);
      return ByPidfd::read_error;
    }
  }
  pidfd_info_v0 info;
  memset(&info, 0, sizeof info);
  info.mask = 1;  // PIDFD_INFO_PID
  int rc = ioctl(fd, kPidfdGetInfo, &info);
  int e = errno;
  close(fd);
  if (rc < 0) return e == ESRCH ? ByPidfd::gone : e == ENOTTY || e == EINVAL ? ByPidfd::no_info : ByPidfd::fall_back;
  pi->pid = pid;
  pi->ppid = static_cast<int32_t>(info.ppid);
  pi->pgid = pgid;
  return ByPidfd::filled;
}

// 0, or -errno of the first read that failed for a reason other than the
// process being gone (with `syscall_out`): nothing listed is then complete.
int proc_info_range(const int32_t* pids, size_t count, bool revisions, bool via_stat, std::vector<proc_info>* out, const char** syscall_out) {
  out->reserve(count);
  char path[64];
  char stat[1024];
  std::vector<char> env;
  for (size_t i = 0; i < count; i++) {
    int32_t pid = pids[i];
    if (pid <= 0) continue;
    if (!via_stat && g_have_info != 0) {
      proc_info pi;
      int read_err = 0;
      ByPidfd got = info_by_pidfd(pid, revisions, &env, &pi, &read_err);
      if (got == ByPidfd::filled) {
        g_have_info.store(1);
        out->push_back(std::move(pi));
        continue;
      }
      if (got == ByPidfd::gone) continue;
      if (got == ByPidfd::read_error) {
        *syscall_out = "open";
        return read_err;
      }
      // As proc_ids_of decides: only a kernel without PIDFD_GET_INFO turns the pidfd path off.
      if (got == ByPidfd::no_info) g_have_info.store(0);
    }
    snprintf(path, sizeof path, "/proc/%d/stat", pid);
    ssize_t n = read_file(path, stat, sizeof stat - 1);
    if (n < 0) {
      int rc = gone_or_error(errno);
      if (rc == 0) continue;
      *syscall_out = "open";
      return rc;
    }
    if (n == 0) continue;  // gone
    stat[n] = '\0';
    // Fields resume after the last ')': comm may hold spaces and parens.
    char* close_paren = strrchr(stat, ')');
    if (!close_paren) continue;
    proc_info pi;
    pi.pid = pid;
    char state = 0;
    long long ppid = 0, pgid = 0;
    unsigned long long start = 0;
    // state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime priority nice num_threads itrealvalue starttime
    if (sscanf(close_paren + 2, "%c %lld %lld %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &state, &ppid, &pgid, &start) != 4) continue;
    pi.ppid = static_cast<int32_t>(ppid);
    pi.pgid = static_cast<int32_t>(pgid);
    pi.start = start;
    pi.has_start = true;
    pi.zombie = state == 'Z';
    if (revisions) {
      int rc = revision_of(pid, &env, &pi.revision);
      if (rc < 0) {
        *syscall_out = "open";
        return rc;
      }
    }
    out->push_back(std::move(pi));
  }
  return 0;
}

}  // namespace

int proc_info_of(const std::vector<int32_t>& pids, bool revisions, std::vector<proc_info>* out, bool via_stat, const char** syscall_out) {
  out->clear();
  // Many members: split among a few threads (each process's reads are
  // independent syscalls; with revisions they are ~10 us each).
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  size_t parts = pids.size() < kPerThread * 2 || cpus < 2 ? 1 : std::min<size_t>({static_cast<size_t>(cpus), kMaxThreads, pids.size() / kPerThread});
  if (parts <= 1) return proc_info_range(pids.data(), pids.size(), revisions, via_stat, out, syscall_out);
  std::vector<std::vector<proc_info>> got(parts);
  std::vector<int> rcs(parts, 0);
  std::vector<const char*> calls(parts, nullptr);
  std::vector<std::thread> threads;
  size_t each = (pids.size() + parts - 1) / parts;
  for (size_t k = 1; k < parts; k++) {
    size_t from = k * each, count = std::min(each, pids.size() - std::min(from, pids.size()));
    threads.emplace_back([&, from, count, k]() { rcs[k] = proc_info_range(pids.data() + from, count, revisions, via_stat, &got[k], &calls[k]); });
  }
  rcs[0] = proc_info_range(pids.data(), std::min(each, pids.size()), revisions, via_stat, &got[0], &calls[0]);
  for (auto& t : threads) t.join();
  for (size_t k = 0; k < parts; k++) {
    if (rcs[k] < 0) {
      *syscall_out = calls[k];
      return rcs[k];
    }
  }
  size_t total = 0;
  for (auto& g : got) total += g.size();
  out->reserve(total);
  for (auto& g : got)
    for (auto& pi : g) out->push_back(std::move(pi));
  return 0;
}

}  // namespace snapproc
