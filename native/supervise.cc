// supervise.cc: what the supervisor needs from the kernel that Node cannot
// give it: an exclusive lock on its state root, peer credentials of control
// clients, listening sockets it holds across service restarts (libuv would
// accept on them), systemd's notify socket, and reaping orphans without
// stealing the children libuv waits for. Plain functions returning 0 (or a
// non-negative value) or -errno; the N-API glue lives in binding.cc.
#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <net/if.h>
#include <netinet/in.h>
#include <poll.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>

#include "sys.h"

namespace {

int fail(const char** syscall_out, const char* name) {
  int e = errno;
  if (syscall_out) *syscall_out = name;
  return -e;
}

int fail_with(const char** syscall_out, const char* name, int neg_errno) {
  if (syscall_out) *syscall_out = name;
  return neg_errno;
}

// Closes `fd` keeping errno, so that `fail` after it still reports the cause.
void close_keep_errno(int fd) {
  int e = errno;
  close(fd);
  errno = e;
}

// Fills a sockaddr_un for a filesystem path, or for "@name" an abstract
// address (sun_path[0] = 0, no terminating NUL); -ENAMETOOLONG if it cannot hold it.
int unix_addr(const char* path, struct sockaddr_un* sa, socklen_t* len) {
  size_t n = strlen(path);
  if (n == 0) return -EINVAL;
  if (n >= sizeof sa->sun_path) return -ENAMETOOLONG;
  memset(sa, 0, sizeof *sa);
  sa->sun_family = AF_UNIX;
  if (path[0] == '@') {
    memcpy(sa->sun_path + 1, path + 1, n - 1);
    *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
    return 0;
  }
  memcpy(sa->sun_path, path, n);
  *len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n + 1);
  return 0;
}

// A socket file left behind by an earlier listener is removed; anything else
// (a regular file, a directory) stays, and bind then fails with EADDRINUSE.
void remove_stale_socket(const char* path) {
  struct stat st;
  if (lstat(path, &st) == 0 && S_ISSOCK(st.st_mode)) unlink(path);
}

// Binds a unix socket of `type` at `path` and sets the file's mode.
int bind_unix(const char* path, int type, int mode, const char** syscall_out) {
  struct sockaddr_un sa;
  socklen_t len;
  int rc = unix_addr(path, &sa, &len);
  if (rc < 0) return fail_with(syscall_out, "bind", rc);
  int fd = socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(syscall_out, "socket");
  bool abstract = path[0] == '@';  // no file: nothing to remove or chmod
  if (!abstract) remove_stale_socket(path);
  if (bind(fd, (struct sockaddr*)&sa, len) < 0) {
    close_keep_errno(fd);
    return fail(syscall_out, "bind");
  }
  if (!abstract && chmod(path, (mode_t)mode) < 0) {
    close_keep_errno(fd);
    rc = fail(syscall_out, "chmod");
    unlink(path);
    return rc;
  }
  return fd;
}

bool read_all(const char* path, std::string* out) {
  out->clear();
  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  char buf[4096];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    out->append(buf, (size_t)n);
  }
  close(fd);
  return true;
}

bool is_number(const char* s) {
  if (!*s) return false;
  for (; *s; s++)
    if (*s < '0' || *s > '9') return false;
  return true;
}

// Children of every thread of this process (a re-parented orphan may belong
// to any of them). false if the kernel has no .../children files.
bool children_from_tasks(std::vector<int32_t>* out) {
  DIR* d = opendir("/proc/self/task");
  if (!d) return false;
  bool any = false;
  std::string text;
  while (struct dirent* e = readdir(d)) {
    if (!is_number(e->d_name)) continue;
    std::string path = std::string("/proc/self/task/") + e->d_name + "/children";
    if (!read_all(path.c_str(), &text)) continue;  // the thread ended, or no such file
    any = true;
    snapproc::parse_pid_list(text.data(), text.size(), out);
  }
  closedir(d);
  return any;
}

// Fallback: every process whose parent is this one, from /proc/*/stat.
void children_from_proc(std::vector<int32_t>* out) {
  std::vector<int32_t> all;
  DIR* d = opendir("/proc");
  if (!d) return;
  while (struct dirent* e = readdir(d)) {
    if (is_number(e->d_name)) all.push_back((int32_t)atoi(e->d_name));
  }
  closedir(d);
  std::vector<snapproc::proc_ids> ids;
  snapproc::proc_ids_of(all, &ids);
  int32_t self = (int32_t)getpid();
  for (const auto& i : ids)
    if (i.ppid == self) out->push_back(i.pid);
}

}  // namespace

namespace snapproc {

int sup_lock_file(const char* path, const char** syscall_out) {
  int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOCTTY, 0644);
  if (fd < 0) return fail(syscall_out, "open");
  struct flock fl;
  memset(&fl, 0, sizeof fl);  // l_pid must be 0 for OFD locks
  fl.l_type = F_WRLCK;
  fl.l_whence = SEEK_SET;
  fl.l_start = 0;
  fl.l_len = 0;  // the whole file, however long it grows
  if (fcntl(fd, F_OFD_SETLK, &fl) < 0) {
    int e = errno;
    close(fd);
    // POSIX allows EACCES for "held by another"; report one code for it.
    if (e == EACCES) e = EAGAIN;
    return fail_with(syscall_out, "fcntl", -e);
  }
  return fd;
}

int sup_peer_cred(int fd, peer_cred* out, const char** syscall_out) {
  struct ucred uc;
  socklen_t len = sizeof uc;
  if (getsockopt(fd, SOL_SOCKET, SO_PEERCRED, &uc, &len) < 0) return fail(syscall_out, "getsockopt");
  out->pid = uc.pid;
  out->uid = (int32_t)uc.uid;
  out->gid = (int32_t)uc.gid;
  return 0;
}

int sup_listen_unix(const char* path, int mode, int backlog, const char** syscall_out) {
  int fd = bind_unix(path, SOCK_STREAM, mode, syscall_out);
  if (fd < 0) return fd;
  if (listen(fd, backlog) < 0) {
    close_keep_errno(fd);
    int rc = fail(syscall_out, "listen");
    unlink(path);
    return rc;
  }
  return fd;
}

// A connected unix stream socket (close-on-exec, blocking): the CLI's one
// request to the supervisor, read and written with plain read(2)/write(2).
int sup_connect_unix(const char* path, const char** syscall_out) {
  struct sockaddr_un sa;
  socklen_t len;
  int rc = unix_addr(path, &sa, &len);
  if (rc < 0) return fail_with(syscall_out, "connect", rc);
  int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(syscall_out, "socket");
  do rc = connect(fd, (struct sockaddr*)&sa, len);
  while (rc < 0 && errno == EINTR);
  if (rc < 0) {
    close_keep_errno(fd);
    return fail(syscall_out, "connect");
  }
  return fd;
}

int sup_listen_tcp(const char* host, int port, int backlog, const char** syscall_out) {
  if (port < 0 || port > 65535) return fail_with(syscall_out, "bind", -EINVAL);
  std::string h(host);
  if (h.size() >= 2 && h.front() == '[' && h.back() == ']') h = h.substr(1, h.size() - 2);
  std::string scope;
  size_t pct = h.find('%');
  if (pct != std::string::npos) {
    scope = h.substr(pct + 1);
    h.resize(pct);
  }
  struct sockaddr_storage ss;
  memset(&ss, 0, sizeof ss);
  socklen_t len;
  struct sockaddr_in* sin = (struct sockaddr_in*)&ss;
  struct sockaddr_in6* sin6 = (struct sockaddr_in6*)&ss;
  if (scope.empty() && inet_pton(AF_INET, h.c_str(), &sin->sin_addr) == 1) {
    sin->sin_family = AF_INET;
    sin->sin_port = htons((uint16_t)port);
    len = sizeof *sin;
  } else if (inet_pton(AF_INET6, h.c_str(), &sin6->sin6_addr) == 1) {
    sin6->sin6_family = AF_INET6;
    sin6->sin6_port = htons((uint16_t)port);
    if (!scope.empty()) {
      unsigned idx = is_number(scope.c_str()) ? (unsigned)atoi(scope.c_str()) : if_nametoindex(scope.c_str());
      if (idx == 0) return fail_with(syscall_out, "if_nametoindex", -ENODEV);
      sin6->sin6_scope_id = idx;
    }
    len = sizeof *sin6;
  } else {
    return fail_with(syscall_out, "inet_pton", -EINVAL);
  }
  int fd = socket(ss.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return fail(syscall_out, "socket");
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0) {
    close_keep_errno(fd);
    return fail(syscall_out, "setsockopt");
  }
  if (bind(fd, (struct sockaddr*)&ss, len) < 0) {
    close_keep_errno(fd);
    return fail(syscall_out, "bind");
  }
  if (listen(fd, backlog) < 0) {
    close_keep_errno(fd);
    return fail(syscall_out, "listen");
  }
  return fd;
}

int sup_sock_name(int fd, sock_name* out, const char** syscall_out) {
  struct sockaddr_storage ss;
  socklen_t len = sizeof ss;
  memset(&ss, 0, sizeof ss);
  if (getsockname(fd, (struct sockaddr*)&ss, &len) < 0) return fail(syscall_out, "getsockname");
  char buf[INET6_ADDRSTRLEN];
  out->port = 0;
  switch (ss.ss_family) {
    case AF_UNIX: {
      struct sockaddr_un* sa = (struct sockaddr_un*)&ss;
      size_t n = len > offsetof(struct sockaddr_un, sun_path) ? len - offsetof(struct sockaddr_un, sun_path) : 0;
      out->family = "unix";
      if (n > 0 && sa->sun_path[0] == 0)
        out->address = "@" + std::string(sa->sun_path + 1, n - 1);
      else
        out->address = std::string(sa->sun_path, strnlen(sa->sun_path, n));
      return 0;
    }
    case AF_INET: {
      struct sockaddr_in* sa = (struct sockaddr_in*)&ss;
      inet_ntop(AF_INET, &sa->sin_addr, buf, sizeof buf);
      out->family = "IPv4";
      out->address = buf;
      out->port = ntohs(sa->sin_port);
      return 0;
    }
    case AF_INET6: {
      struct sockaddr_in6* sa = (struct sockaddr_in6*)&ss;
      inet_ntop(AF_INET6, &sa->sin6_addr, buf, sizeof buf);
      out->family = "IPv6";
      out->address = buf;
      out->port = ntohs(sa->sin6_port);
      return 0;
    }
    default:
      return fail_with(syscall_out, "getsockname", -EAFNOSUPPORT);
  }
}

int sup_notify_open(const char* path, const char** syscall_out) {
  // 0666: services that run as another user may notify too; the sender's
  // credentials come with every message, so nothing is taken on trust.
  int fd = bind_unix(path, SOCK_DGRAM | SOCK_NONBLOCK, 0666, syscall_out);
  if (fd < 0) return fd;
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0) {
    close_keep_errno(fd);
    int rc = fail(syscall_out, "setsockopt");
    unlink(path);
    return rc;
  }
  return fd;
}

int sup_notify_recv(int fd, int cancel_fd, notify_msg* out, const char** syscall_out) {
  // systemd accepts notifications up to its own buffer; this is more than enough.
  static const size_t kMax = 64 * 1024;
  std::vector<char> data(kMax);
  union {
    char buf[CMSG_SPACE(sizeof(struct ucred)) + CMSG_SPACE(sizeof(int) * 253)];
    struct cmsghdr align;
  } control;
  for (;;) {
    struct pollfd fds[2] = {{fd, POLLIN, 0}, {cancel_fd, POLLIN, 0}};
    int n = poll(fds, cancel_fd >= 0 ? 2 : 1, -1);
    if (n < 0) {
      if (errno == EINTR) continue;
      return fail(syscall_out, "poll");
    }
    if (cancel_fd >= 0 && fds[1].revents) return 2;
    if (fds[0].revents & POLLNVAL) return fail_with(syscall_out, "poll", -EBADF);
    if (!(fds[0].revents & (POLLIN | POLLERR | POLLHUP))) continue;

    struct iovec iov = {data.data(), kMax};
    struct msghdr msg;
    memset(&msg, 0, sizeof msg);
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control.buf;
    msg.msg_controllen = sizeof control.buf;
    ssize_t got = recvmsg(fd, &msg, MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (got < 0) {
      if (errno == EAGAIN || errno == EINTR) continue;
      return fail(syscall_out, "recvmsg");
    }
    out->text.assign(data.data(), (size_t)got);
    out->fds.clear();
    out->pid = 0;
    out->uid = -1;
    out->gid = -1;
    for (struct cmsghdr* c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level != SOL_SOCKET) continue;
      if (c->cmsg_type == SCM_CREDENTIALS && c->cmsg_len >= CMSG_LEN(sizeof(struct ucred))) {
        struct ucred uc;
        memcpy(&uc, CMSG_DATA(c), sizeof uc);
        out->pid = uc.pid;
        out->uid = (int32_t)uc.uid;
        out->gid = (int32_t)uc.gid;
      } else if (c->cmsg_type == SCM_RIGHTS) {
        size_t nfd = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < nfd; i++) {
          int passed;
          memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
          out->fds.push_back(passed);
        }
      }
    }
    return 1;
  }
}

int sup_reap_children(const std::vector<int32_t>& exclude, std::vector<reaped>* out,
                      const char** syscall_out) {
  out->clear();
  std::vector<int32_t> skip(exclude);
  std::sort(skip.begin(), skip.end());
  // Fast path: ask the kernel which child has exited (waitid WNOWAIT peeks
  // without reaping) and reap that one, until none has. With 1000 services
  // the scan below costs 1000 waitpid calls per SIGCHLD; this costs one per
  // exit. A zombie that is Node's own (libuv reaps it) ends the fast path:
  // the scan then reaps the others around it.
  for (;;) {
    siginfo_t si;
    memset(&si, 0, sizeof si);
    int r = waitid(P_ALL, 0, &si, WEXITED | WNOHANG | WNOWAIT | __WALL);
    if (r < 0 && errno == EINTR) continue;
    if (r < 0) return (int)out->size();        // ECHILD: no child at all
    if (si.si_pid == 0) return (int)out->size();  // no child has exited
    if (std::binary_search(skip.begin(), skip.end(), (int32_t)si.si_pid)) break;
    int status = 0;
    pid_t got;
    do {
      got = waitpid(si.si_pid, &status, WNOHANG | __WALL);
    } while (got < 0 && errno == EINTR);
    if (got == si.si_pid) out->push_back({(int32_t)si.si_pid, status});
    else if (got <= 0) break;  // reaped by someone else meanwhile: let the scan sort it out
  }
  std::vector<int32_t> children;
  if (!children_from_tasks(&children)) children_from_proc(&children);
  std::sort(children.begin(), children.end());
  children.erase(std::unique(children.begin(), children.end()), children.end());
  for (int32_t pid : children) {
    if (pid <= 0 || std::binary_search(skip.begin(), skip.end(), pid)) continue;
    int status = 0;
    pid_t r;
    do {
      r = waitpid(pid, &status, WNOHANG | __WALL);
    } while (r < 0 && errno == EINTR);
    // 0: still running; -1 ECHILD: reaped by someone else in between.
    if (r == pid) out->push_back({pid, status});
  }
  return (int)out->size();
}

}  // namespace snapproc
