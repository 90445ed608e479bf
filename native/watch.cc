// watch.cc: one epoll set for every wait that is open at once, instead of a
// thread per wait. A supervisor of 1000 services waits on 1000 main
// processes for as long as they run, and a stop of everything waits on
// thousands of cgroup.events changes side by side; a thread each cost a stack
// mapping and a guard page each (the daemon's page tables, which every fork
// copied, and its RSS) and a thread start per wait. Here one thread waits on
// all of them: pidfds (readable once the process exited) and cgroup.events
// files (kernfs wakes pollers with POLLPRI when a value changed), and reports
// the waits whose condition holds. Knows nothing of N-API; timeouts and
// cancelling are the caller's (it removes the watch).
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <time.h>
#include <unistd.h>

#include "sys.h"

namespace snapproc {

namespace {
// -1 unknown, 0 the kernel lacks epoll_pwait2 (before 5.11), 1 it has it.
int g_have_pwait2 = -1;

// epoll_wait for kCgroupRereadUs (epoll_wait counts whole milliseconds).
int epoll_wait_reread(int epfd, struct epoll_event* evs, int max) {
  if (g_have_pwait2 != 0) {
    struct timespec ts = {0, kCgroupRereadUs * 1000};
    int n = epoll_pwait2(epfd, evs, max, &ts, nullptr);
    if (n >= 0 || errno != ENOSYS) {
      g_have_pwait2 = 1;
      return n;
    }
    g_have_pwait2 = 0;
  }
  return epoll_wait(epfd, evs, max, 1);
}
}  // namespace

watch_set::~watch_set() {
  for (auto& e : entries_) close_entry(e.second);
  if (epfd_ >= 0) close(epfd_);
  if (stop_fd_ >= 0) close(stop_fd_);
  if (kick_fd_ >= 0) close(kick_fd_);
}

int watch_set::open(const char** syscall_out) {
  epfd_ = epoll_create1(EPOLL_CLOEXEC);
  if (epfd_ < 0) return fail_errno(syscall_out, "epoll_create1");
  stop_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (stop_fd_ < 0) return fail_errno(syscall_out, "eventfd");
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = EPOLLIN;
  ev.data.u32 = 0;  // token 0: stop
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, stop_fd_, &ev) < 0) return fail_errno(syscall_out, "epoll_ctl");
  kick_fd_ = eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK);
  if (kick_fd_ < 0) return fail_errno(syscall_out, "eventfd");
  ev.data.u32 = kKickToken;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, kick_fd_, &ev) < 0) return fail_errno(syscall_out, "epoll_ctl");
  return 0;
}

int watch_set::fail_errno(const char** syscall_out, const char* name) {
  int e = errno;
  if (syscall_out) *syscall_out = name;
  return -e;
}

void watch_set::close_entry(entry& e) {
  close(e.fd);
  if (e.kill_fd >= 0) close(e.kill_fd);
  e.kill_fd = -1;
}

// What a watch reports once its condition holds: 2 when its cgroup.kill was written first.
int watch_set::report(entry& e) {
  int rc = check(e);
  return rc == 1 && e.killed ? 2 : rc;
}

// 1: the condition holds, 0: not yet, -errno: it never will (the caller reports it).
int watch_set::check(entry& e) {
  if (e.kind == WATCH_PIDFD) {
    struct pollfd p = {e.fd, POLLIN, 0};
    int n = poll(&p, 1, 0);
    if (n < 0) return -errno;
    if (p.revents & POLLNVAL) return -EBADF;
    return n > 0 && (p.revents & (POLLIN | POLLHUP | POLLERR)) ? 1 : 0;
  }
  int v = cg_event_value(e.fd, e.key.c_str());
  if (v < 0) return v;
  return v == e.want ? 1 : 0;
}

int watch_set::add_pidfd(int pidfd, uint32_t* token, const char** syscall_out) {
  // A duplicate of our own: the caller may close its pidfd whenever it likes.
  int fd = fcntl(pidfd, F_DUPFD_CLOEXEC, 3);
  if (fd < 0) return fail_errno(syscall_out, "fcntl");
  std::lock_guard<std::mutex> lock(mu_);
  if (failed_ < 0) {
    close(fd);
    if (syscall_out) *syscall_out = failed_call_;
    return failed_;
  }
  return register_locked(entry{fd, WATCH_PIDFD, std::string(), 0, 0, false}, EPOLLIN | EPOLLONESHOT, token, syscall_out);
}

// With mu_ held: a token for `e`, its fd in the epoll set, the entry kept.
// On failure the fd is closed and nothing is kept.
int watch_set::register_locked(const entry& e, uint32_t events, uint32_t* token, const char** syscall_out) {
  uint32_t t = take_token();
  struct epoll_event ev;
  memset(&ev, 0, sizeof ev);
  ev.events = events;
  ev.data.u32 = t;
  if (epoll_ctl(epfd_, EPOLL_CTL_ADD, e.fd, &ev) < 0) {
    int rc = fail_errno(syscall_out, "epoll_ctl");
    entry copy = e;
    close_entry(copy);
    return rc;
  }
  entries_[t] = e;
  *token = t;
  return 0;
}

int watch_set::add_event(const char* dir, const char* key, int want, uint32_t* token, const char** syscall_out, int kill_after_ms) {
  std::string path = std::string(dir) + "/cgroup.events";
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return fail_errno(syscall_out, "open");
  entry e{fd, WATCH_EVENT, std::string(key), want, mono_ms(), false};
  if (kill_after_ms >= 0) {
    e.kill_fd = ::open((std::string(dir) + "/cgroup.kill").c_str(), O_WRONLY | O_CLOEXEC);
    if (e.kill_fd < 0) {
      int rc = fail_errno(syscall_out, "open");
      close(fd);
      return rc;
    }
    e.kill_at = e.last_wake + kill_after_ms;
  }
  // Read before it is registered: a change after this read makes the
  // registration itself report the file ready (kernfs compares the file's
  // event count with the one this open file last read).
  int now = check(e);
  if (now != 0) {
    close_entry(e);
    if (now < 0) {
      if (syscall_out) *syscall_out = "read";
      return now;
    }
    return 1;  // holds already: nothing to watch
  }
  std::lock_guard<std::mutex> lock(mu_);
  if (failed_ < 0) {
    close_entry(e);
    if (syscall_out) *syscall_out = failed_call_;
    return failed_;
  }
  int rc = register_locked(e, EPOLLPRI | EPOLLET, token, syscall_out);
  if (rc < 0) return rc;
  events_.insert(*token);
  // Wake the waiting thread: it must re-read this file every kCgroupRereadUs for a while.
  kick();
  return 0;
}

// Tokens go to JavaScript as int32: 1 .. 2^31-1, then round again (a watch
// lives far shorter than 2^31 others take).
uint32_t watch_set::take_token() {
  uint32_t t = next_;
  next_ = next_ >= 0x7fffffffu ? 1 : next_ + 1;
  return t;
}

void watch_set::kick() {
  if (kick_fd_ < 0) return;
  uint64_t one = 1;
  while (write(kick_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

bool watch_set::remove(uint32_t token) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(token);
  if (it == entries_.end()) return false;
  epoll_ctl(epfd_, EPOLL_CTL_DEL, it->second.fd, nullptr);
  close_entry(it->second);
  events_.erase(token);
  entries_.erase(it);
  return true;
}

int watch_set::check_now(uint32_t token) {
  std::lock_guard<std::mutex> lock(mu_);
  auto it = entries_.find(token);
  if (it == entries_.end()) return -ENOENT;
  return report(it->second);
}

// With mu_ held, one pass over the event watches: takes out the
// cgroup.kill descriptors whose kill is due (into `due`, marked killed; a
// watch whose condition holds by then is reported instead, and not killed)
// and says how long epoll may wait: 1 (kCgroupRereadUs, see
// epoll_wait_reread) while a watch is inside its notification interval, else until the next kill is due, else -1. The
// writes happen without the lock: a write to cgroup.kill lasts as long as
// the dying processes keep the writer off its CPU, and the main thread must
// not wait for that to add or end a watch.
int watch_set::scan_locked(int64_t now, std::vector<std::pair<uint32_t, int>>* due, std::vector<std::pair<uint32_t, int>>* ready) {
  int64_t timeout = -1;
  for (uint32_t t : events_) {
    entry& e = entries_[t];
    if (e.fired) continue;
    if (now - e.last_wake < kCgroupNotifyIntervalMs) timeout = 1;
    if (e.kill_fd < 0) continue;
    if (e.kill_at > now) {
      if (timeout < 0 || e.kill_at - now < timeout) timeout = e.kill_at - now;
      continue;
    }
    int rc = check(e);
    if (rc != 0) {  // emptied (or unreadable) before its kill: no kill
      e.fired = true;
      ready->emplace_back(t, rc);
      close(e.kill_fd);
      e.kill_fd = -1;
      continue;
    }
    due->emplace_back(t, e.kill_fd);
    e.kill_fd = -1;
    e.killed = true;
  }
  return (int)timeout;
}

// Writes the due kills (without the lock); a failed write ends its watch with -errno.
void watch_set::write_kills(const std::vector<std::pair<uint32_t, int>>& due, std::vector<std::pair<uint32_t, int>>* ready) {
  std::vector<std::pair<uint32_t, int>> failed;
  for (const auto& d : due) {
    ssize_t n;
    do {
      n = write(d.second, "1", 1);
    } while (n < 0 && errno == EINTR);
    if (n < 0) failed.emplace_back(d.first, -errno);
    close(d.second);
  }
  std::lock_guard<std::mutex> lock(mu_);
  int64_t now = mono_ms();
  for (const auto& d : due) {
    auto it = entries_.find(d.first);
    if (it != entries_.end()) it->second.last_wake = now;  // the change comes soon: read again every kCgroupRereadUs for a while
  }
  for (const auto& f : failed) {
    auto it = entries_.find(f.first);
    if (it == entries_.end() || it->second.fired) continue;  // removed meanwhile
    it->second.fired = true;
    ready->emplace_back(f.first, f.second);
  }
}

void watch_set::stop() {
  uint64_t one = 1;
  while (write(stop_fd_, &one, sizeof one) < 0 && errno == EINTR) {
  }
}

// With mu_ held: the set fails with `rc`; every watch not yet reported is, with rc.
int watch_set::fail_all_locked(int rc, std::vector<std::pair<uint32_t, int>>* ready) {
  failed_ = rc;
  for (auto& kv : entries_) {
    if (kv.second.fired) continue;
    kv.second.fired = true;
    ready->emplace_back(kv.first, rc);
  }
  return ready->empty() ? rc : 1;
}

int watch_set::wait(std::vector<std::pair<uint32_t, int>>* ready, const char** syscall_out) {
  ready->clear();
  {
    std::lock_guard<std::mutex> lock(mu_);
    if (failed_ < 0) {
      if (syscall_out) *syscall_out = failed_call_;
      return failed_;
    }
  }
  struct epoll_event evs[128];
  std::vector<std::pair<uint32_t, int>> due;
  for (;;) {
    int timeout;
    {
      std::lock_guard<std::mutex> lock(mu_);
      timeout = scan_locked(mono_ms(), &due, ready);
    }
    if (!due.empty()) {
      write_kills(due, ready);
      due.clear();
      if (!ready->empty()) return 1;
      continue;  // what the kill changed is read at once
    }
    if (!ready->empty()) return 1;
    int n = timeout == 1 ? epoll_wait_reread(epfd_, evs, 128) : epoll_wait(epfd_, evs, 128, timeout);
    if (n < 0) {
      if (errno == EINTR) continue;
      int rc = fail_errno(syscall_out, "epoll_wait");
      std::lock_guard<std::mutex> lock(mu_);
      failed_call_ = "epoll_wait";
      return fail_all_locked(rc, ready);
    }
    std::lock_guard<std::mutex> lock(mu_);
    int64_t now = mono_ms();
    for (int i = 0; i < n; i++) {
      uint32_t t = evs[i].data.u32;
      if (t == 0) return 2;  // stopped for good
      if (t == kKickToken) {
        uint64_t v;
        ssize_t ignored = read(kick_fd_, &v, sizeof v);
        (void)ignored;
        continue;
      }
      auto it = entries_.find(t);
      if (it == entries_.end() || it->second.fired) continue;  // removed meanwhile
      entry& e = it->second;
      if (e.kind == WATCH_EVENT) {
        e.last_wake = now;  // read in the pass below, once
        continue;
      }
      int rc = report(e);
      if (rc != 0) {
        e.fired = true;
        ready->emplace_back(t, rc);
      }
    }
    // Woken, or inside the notification interval: read whether or not a wake came.
    for (uint32_t t : events_) {
      entry& e = entries_[t];
      if (e.fired || now - e.last_wake >= kCgroupNotifyIntervalMs) continue;
      int rc = report(e);
      if (rc != 0) {
        e.fired = true;
        ready->emplace_back(t, rc);
      }
    }
    if (!ready->empty()) return 1;
  }
}

}  // namespace snapproc
