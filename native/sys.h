// sys.h: the plain Linux core of snapproc's addon. Knows nothing of N-API.
// Every function returns 0 (or a non-negative value) on success and -errno on
// failure; `syscall_out`, where present, names the call that failed so the
// JavaScript side can build a Node-shaped error.
#pragma once
#include <stdint.h>
#include <sys/ioctl.h>
#include <sys/types.h>
#include <map>
#include <mutex>
#include <set>
#include <atomic>
#include <string>
#include <vector>

// PIDFD_GET_INFO (Linux 6.13+). Declared here because distribution headers
// lag the kernel; the layout is the kernel's PIDFD_INFO_SIZE_VER0 (64 bytes).
// Used by sys.cc (exit status, the PID behind a pidfd) and procinfo.cc (parents).
struct pidfd_info_v0 {
  uint64_t mask;
  uint64_t cgroupid;
  uint32_t pid, tgid, ppid, ruid, rgid, euid, egid, suid, sgid, fsuid, fsgid;
  int32_t exit_code;
};
static_assert(sizeof(pidfd_info_v0) == 64, "pidfd_info layout");
constexpr uint64_t kPidfdInfoPid = 1ull << 0;
constexpr uint64_t kPidfdInfoExit = 1ull << 3;
constexpr unsigned long kPidfdGetInfo = _IOWR(0xFF, 11, pidfd_info_v0);

namespace snapproc {

int sys_kill(int pid, int sig, const char** syscall_out);
int sys_killpg(int pgid, int sig, const char** syscall_out);
int sys_pidfd_open(int pid, const char** syscall_out);
// A copy of fd `targetfd` of the process behind `pidfd` (pidfd_getfd(2), 5.6+).
int sys_pidfd_getfd(int pidfd, int targetfd, const char** syscall_out);
int sys_pidfd_send_signal(int pidfd, int sig, const char** syscall_out);
// Exit status of a process that has exited, read through its pidfd
// (PIDFD_GET_INFO with PIDFD_INFO_EXIT, Linux 6.15+): the raw wait status.
int sys_pidfd_exit_status(int pidfd, int* status, const char** syscall_out);

// Flushes the file system that holds `path` (syncfs(2)): 1 when done.
int sys_syncfs(const char* path, const char** syscall_out);

// Bind-mounts `path` read-only over itself in one step: the clone of the
// mount is made read-only while it is still detached (open_tree,
// mount_setattr, move_mount; Linux 5.12+), so there is no moment at which a
// writable bind mount exists, and no EBUSY from writers racing a remount.
int sys_bind_readonly(const char* path, const char** syscall_out);

int sys_set_child_subreaper(int on, const char** syscall_out);
int sys_get_child_subreaper(const char** syscall_out);
int sys_set_pdeathsig(int sig, const char** syscall_out);
int sys_get_pdeathsig(const char** syscall_out);
int sys_set_name(const char* name, const char** syscall_out);
int sys_get_name(std::string* name, const char** syscall_out);

// One process's identity as the kernel reports it.
struct proc_ids {
  int32_t pid;
  int32_t ppid;
  int32_t pgid;
};
// Appends the decimal numbers in `text` (separated by anything else) to `out`.
void parse_pid_list(const char* text, size_t len, std::vector<int32_t>* out);
// Reads `dir`/cgroup.procs (the cgroup's own members, not its children).
int cg_read_procs(const char* dir, std::vector<int32_t>* out, const char** syscall_out);
// ppid and pgid of each pid; processes that are gone are left out.
void proc_ids_of(const std::vector<int32_t>& pids, std::vector<proc_ids>* out);
// CLOCK_MONOTONIC in milliseconds.
int64_t mono_ms();
// The kernel sends at most one notification of a cgroup file per
// CGROUP_FILE_NOTIFY_MIN_INTV (DIV_ROUND_UP(HZ, 100) jiffies, up to ~12 ms):
// within this many ms after a wait begins or after a wake-up, waiters read
// the file again every kCgroupRereadUs as well. At 1 ms, `populated 0` after
// a 100-process stop (whose freeze and thaw had just been announced) was
// seen ~0.8 ms late in the median, 1.16-1.20x the cgroup.kill floor's wait
// against 0.93-1.07x at 200 us. Bounded: at most ~50 reads of a 2-line file
// per change, and none while nothing changes.
const int64_t kCgroupNotifyIntervalMs = 13;
const long kCgroupRereadUs = 250;
// The value of `key` in the cgroup.events file open as `fd` (read from its
// start): the value, or -errno (-ENOENT: the file has no such key).
int cg_event_value(int fd, const char* key);
// Waits until `key` in `dir`/cgroup.events has value `want` (e.g. "populated"
// 0, "frozen" 1): 1 = reached, 0 = timed out, -errno.
int cg_wait_event(const char* dir, const char* key, int want, int timeout_ms, const char** syscall_out);
// Writes cgroup.freeze (1 or 0) without waiting for cgroup.events to follow.
int cg_write_freeze(const char* dir, int frozen, const char** syscall_out);
// Writes cgroup.freeze and waits for `frozen` to follow (1 = done, 0 = timed out).
int cg_set_frozen(const char* dir, int frozen, int timeout_ms, const char** syscall_out);

struct fanout_result {
  int32_t signalled;  // processes the signal was delivered to
  int32_t gone;       // listed members that had exited before they could be signalled
  int32_t cgroups;    // cgroups in the subtree that were walked
  int32_t frozen;     // 1 if the subtree reached `frozen 1` before signalling
  int32_t empty;      // 1 if the subtree had no member (nothing was done)
  int32_t was_frozen; // 1 if cgroup.freeze read 1 before (with `refuse_frozen`: nothing was done)
};
// The stop hot path in one call: freeze `dir` (subtree), read every member of
// the subtree, open a pidfd for each, read the members again and signal only
// those present both times (so a PID that was reused in between is never hit),
// then thaw. With `also_cont`, SIGCONT follows `sig` so that stopped members
// act on it. Refuses (-EDEADLK) if the calling process is a member. With
// `only_if_frozen`, a freeze that does not complete within the timeout is
// left as written (requested, not thawed) and nothing is signalled
// (`frozen` 0): the caller goes on waiting for it off this thread. With
// `refuse_frozen`, a cgroup frozen before the call (on purpose) is left as it
// is and nothing is signalled (`was_frozen` 1): the caller thaws it first.
int cg_signal_all(const char* dir, int sig, int also_cont, int freeze_timeout_ms, int only_if_frozen,
                  int refuse_frozen, fanout_result* result, const char** syscall_out);
// The same signalling of one snapshot for a cgroup the caller has frozen and
// seen `frozen 1` of (a batch of stops): no freeze, no thaw, no read before
// it; `empty` when the snapshot had no member.
int cg_signal_frozen(const char* dir, int sig, int also_cont, fanout_result* result, const char** syscall_out);

// ---- supervision (supervise.cc) ---------------------------------------------

// Opens (creating, 0644) `path` and takes an exclusive open-file-description
// lock on the whole file (F_OFD_SETLK): the fd to keep open while holding it.
// -EAGAIN (syscall "fcntl") if another open file description holds it.
int sup_lock_file(const char* path, const char** syscall_out);

struct peer_cred {
  int32_t pid;
  int32_t uid;
  int32_t gid;
};
// SO_PEERCRED of a connected unix socket.
int sup_peer_cred(int fd, peer_cred* out, const char** syscall_out);

// A listening SOCK_STREAM unix socket at `path` (a stale socket file there is
// removed first; any other file makes bind fail), chmod'ed to `mode`.
int sup_listen_unix(const char* path, int mode, int backlog, const char** syscall_out);
// A connected, blocking unix stream socket (close-on-exec).
int sup_connect_unix(const char* path, const char** syscall_out);
// A listening TCP socket on a numeric IPv4/IPv6 address (IPv6 may carry a
// %scope), SO_REUSEADDR set; `::` keeps the kernel's dual-stack default.
int sup_listen_tcp(const char* host, int port, int backlog, const char** syscall_out);

// getsockname(2) of a socket, decoded. family: "unix", "IPv4" or "IPv6".
struct sock_name {
  std::string family;
  std::string address;  // path for unix sockets ("@name" for abstract ones)
  int32_t port;
};
int sup_sock_name(int fd, sock_name* out, const char** syscall_out);

// The datagram socket of systemd's NOTIFY_SOCKET protocol: bound at `path`
// (stale socket file removed first), mode 0666, SO_PASSCRED on, non-blocking.
int sup_notify_open(const char* path, const char** syscall_out);
struct notify_msg {
  int32_t pid;  // of the sender, from SCM_CREDENTIALS (in our pid namespace)
  int32_t uid;
  int32_t gid;
  std::string text;
  std::vector<int> fds;  // descriptors the sender attached (SCM_RIGHTS), now ours
};
// Waits for one datagram on `fd` or for `cancel_fd` to become readable:
// 1 = a message (in *out), 2 = cancelled, -errno. Descriptors a sender
// attached (SCM_RIGHTS, for FDSTORE=1) are handed over in out->fds.
int sup_notify_recv(int fd, int cancel_fd, notify_msg* out, const char** syscall_out);

struct reaped {
  int32_t pid;
  int32_t status;  // raw wait status
};
// Reaps (waitpid WNOHANG) every exited child of this process that is not in
// `exclude`. Children are found in /proc/self/task/*/children, or, where the
// kernel lacks that file, by the ppid field of /proc/*/stat.
int sup_reap_children(const std::vector<int32_t>& exclude, std::vector<reaped>* out,
                      const char** syscall_out);

// Starts `file` with `argv`/`envp` as a child placed in the cgroup `cgroup_fd`
// (an O_DIRECTORY fd) from its first instant: clone3(CLONE_INTO_CGROUP |
// CLONE_PIDFD). The child gets fds[i] as its fd i (-1: /dev/null), default
// signal handling, and with `setsid_too` a session of its own. Returns the
// pid and sets *pidfd_out; -errno (ENOSYS/E2BIG/EINVAL on kernels before 5.7).
int spawn_in_cgroup(const char* file, char* const* argv, char* const* envp, int cgroup_fd, const int* fds, int nfds,
                    int setsid_too, int* pidfd_out, const char** syscall_out);

// ---- many waits on one thread (watch.cc) -------------------------------------

enum { WATCH_PIDFD = 0, WATCH_EVENT = 1 };
// An epoll set of pidfds (ready once the process exited) and cgroup.events
// files (ready once a key has a value). add/remove/check_now may be called
// from any thread while one thread sits in wait().
class watch_set {
 public:
  watch_set() = default;
  watch_set(const watch_set&) = delete;
  watch_set& operator=(const watch_set&) = delete;
  ~watch_set();
  int open(const char** syscall_out);
  // Watches (a duplicate of) `pidfd`; *token names it.
  int add_pidfd(int pidfd, uint32_t* token, const char** syscall_out);
  // Watches `key` of `dir`/cgroup.events until it reads `want`: 0 and
  // *token when watched, 1 when it holds already (nothing is watched), -errno.
  // With kill_after_ms >= 0, the waiting thread itself writes `dir`/cgroup.kill
  // once that many ms passed and the condition does not hold yet (a stop's
  // timeout: no trip through the main thread, which a fork storm delays), and
  // the watch then reports 2 instead of 1 (-ENOENT at once: no cgroup.kill).
  int add_event(const char* dir, const char* key, int want, uint32_t* token, const char** syscall_out, int kill_after_ms = -1);
  // Ends a watch (closes its descriptor); false if there was none.
  bool remove(uint32_t token);
  // Whether a watch's condition holds now: 1 (2 after its kill), 0, -errno.
  int check_now(uint32_t token);
  // Blocks until some watches' conditions hold: each once, as (token, 1) or
  // (token, -errno) when it never will; 1 = some, 2 = stopped, -errno. When
  // waiting itself fails (epoll_wait), every open watch is reported with that
  // error once (1), then the set is failed: the next wait returns the error
  // and new watches are refused with it, so no wait is left without an answer.
  int wait(std::vector<std::pair<uint32_t, int>>* ready, const char** syscall_out);
  // Makes wait() return 2, now and from then on.
  void stop();

 private:
  struct entry {
    int fd;
    int kind;
    std::string key;
    int want;
    int64_t last_wake;
    bool fired;
    int kill_fd = -1;      // cgroup.kill, written at kill_at (then closed)
    int64_t kill_at = 0;   // CLOCK_MONOTONIC ms
    bool killed = false;
  };
  static const uint32_t kKickToken = 0xffffffffu;
  static int fail_errno(const char** syscall_out, const char* name);
  static int check(entry& e);
  static int report(entry& e);
  static void close_entry(entry& e);
  int scan_locked(int64_t now, std::vector<std::pair<uint32_t, int>>* due, std::vector<std::pair<uint32_t, int>>* ready);
  void write_kills(const std::vector<std::pair<uint32_t, int>>& due, std::vector<std::pair<uint32_t, int>>* ready);
  uint32_t take_token();
  int fail_all_locked(int rc, std::vector<std::pair<uint32_t, int>>* ready);
  int failed_ = 0;      // -errno once waiting failed (mu_)
  const char* failed_call_ = nullptr;
  int register_locked(const entry& e, uint32_t events, uint32_t* token, const char** syscall_out);
  void kick();
  int epfd_ = -1, stop_fd_ = -1, kick_fd_ = -1;
  uint32_t next_ = 1;
  std::mutex mu_;
  std::map<uint32_t, entry> entries_;
  std::set<uint32_t> events_;
};

// ---- process details for discovery (procinfo.cc) ----------------------------

struct proc_info {
  int32_t pid = 0;
  int32_t ppid = 0;
  int32_t pgid = 0;
  bool zombie = false;            // known only with has_start (read from /proc/PID/stat)
  bool has_start = false;
  unsigned long long start = 0;  // /proc/PID/stat field 22: clock ticks since boot (has_start)
  std::string revision;          // empty: not known
};
// Parent and process group of each pid (gone ones are left out): through a
// pidfd where the kernel has PIDFD_GET_INFO, else (or with `via_stat`) from
// one read of /proc/PID/stat, which also gives the start time; with
// `revisions`, the snap revision each executes (exe path, else SNAP_REVISION).
// 0, or -errno (with the syscall) when a read failed for a reason other than
// the process being gone (EMFILE...): a process is never left out for that.
int proc_info_of(const std::vector<int32_t>& pids, bool revisions, std::vector<proc_info>* out, bool via_stat, const char** syscall_out);

// ---- tree copy (copy.cc) -----------------------------------------------------

enum {
  COPY_NO_CLONE = 1,     // never FICLONE (to measure or test the plain copy)
  COPY_NO_SNAPSHOT = 2,  // never a btrfs snapshot
  COPY_SUBVOLUME = 4,    // on btrfs, make the new top directory a subvolume
  COPY_NO_SYNC = 8,      // do not flush (the caller does)
  COPY_NO_XATTRS = 16,   // keep no extended attributes (cp -a --no-preserve=xattr)
};
enum { COPY_METHOD_FILES = 0, COPY_METHOD_SNAPSHOT = 1, COPY_METHOD_FILES_INTO_SUBVOLUME = 2 };
struct copy_stats {
  int32_t method = 0;
  int64_t files = 0, dirs = 0, symlinks = 0, special = 0, hardlinks = 0, cloned = 0, bytes = 0, xattrs = 0;
};
// Copies the directory tree `src` to the new path `dst` (its parent must
// exist, it must not), keeping owners, modes, times, xattrs, symlinks, hard
// links and special files; flushed to disk when it returns. On failure
// `where` is the path (relative to src) of the entry that failed; what was
// made is left for the caller to remove.
int copy_tree(const char* src, const char* dst, int flags, copy_stats* stats, std::string* where, const char** syscall_out);
// The standby copy (copy.cc): standby_make makes `dir` (0700; it must not
// exist, its parent must) and clones `src` into `dir`/tree at
// the lowest priority and writes `dir`/manifest last (flushed); -EOPNOTSUPP
// where files cannot be cloned; -ECANCELED once `*cancel` is set.
// standby_apply makes `dir`/tree what copy_tree(src) would make now, redoing
// only what changed since the manifest was written (an entry whose ctime is
// within `margin_ns` before the job's start counts as changed); -ESTALE with
// `why` when the standby cannot be used (the caller copies in full).
struct standby_stats {
  int64_t entries = 0, kept = 0, recreated = 0, removed = 0, fixed = 0, retimed = 0, link_sets_redone = 0;
};
int standby_make(const char* src, const char* dir, const char* label, int flags, const std::atomic<int32_t>* cancel, copy_stats* stats, std::string* where, const char** syscall_out);
int standby_apply(const char* src, const char* dir, const char* label, int64_t margin_ns, int flags, standby_stats* stats, std::string* where, const char** syscall_out, std::string* why);
// The label and start time of a complete standby in `dir`; -ESTALE with `why` otherwise.
int standby_info(const char* dir, std::string* label, int64_t* started_ns, std::string* why);
// Makes the directory `path` with `mode` (exactly), as a btrfs subvolume when
// `subvolume` and the file system is btrfs: 1 = a subvolume, 0 = a directory.
int make_data_dir(const char* path, int mode, int subvolume, const char** syscall_out);

}  // namespace snapproc
