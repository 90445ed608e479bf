// copy.cc: the faithful copy of a directory tree that a refresh makes of
// $SNAP_DATA, in one call and without a child process. It keeps what `cp -a
// --preserve=xattr` keeps (owners, modes with setuid/setgid/sticky,
// nanosecond atime/mtime, directories' times after their contents, symlinks
// as links, hard links within the tree, FIFOs, sockets and device nodes,
// sparse files' holes, extended attributes of every namespace, any byte
// string as a name) and makes the cheapest independent copy the file system
// offers: on btrfs a subvolume is copied as one snapshot; elsewhere each
// regular file is first cloned (FICLONE: XFS reflink, btrfs, bcachefs), and
// only copied (copy_file_range, per data extent) where cloning is not
// possible. Everything written is flushed before the call returns: the
// files that got data (fsync each, or one syncfs for many) and every
// directory made.
#include "sys.h"

#include <dirent.h>
#include <sched.h>
#include <stdlib.h>
#include <errno.h>
#include <fcntl.h>
#include <linux/btrfs.h>
#include <linux/fs.h>
#include <linux/magic.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/statfs.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <functional>
#include <atomic>
#include <condition_variable>
#include <deque>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <unordered_map>
#include <unordered_set>
#include <linux/openat2.h>
#include <sys/syscall.h>
#include <sys/resource.h>
#include <time.h>
#include <utility>
#include <vector>

namespace snapproc {

namespace {

// The file-by-file copy. One walker thread reads the source tree depth
// first, makes each directory and copies symlinks, special files and hard
// links itself; regular files (the bulk of the cost: on XFS each clone and
// each create is a transaction of its own) go to a small pool of worker
// threads (started once there are enough of them to share, see
// Shared::start_pool; until then the walker copies them) as one batch per directory (or per kBatch files of a larger
// one), taken kChunk files (or ~1 MiB) at a time from the directory at the front, so
// that the workers create files in different directories at once: a create
// holds its directory's lock, and workers sharing one directory waited on
// each other (2000 small files on XFS, a C probe: 88 ms with two threads on
// one directory's files, 62 ms with two on separate directories). The
// walker does not wait for a directory's files: it walks on, and sets the
// times (and mode) of the directories it walked, children before parents,
// once their files are done: when the walk ends, or earlier when
// kMaxOpenDirs walked directories wait so, each holding two descriptors.
// Every thread of the copy is a
// thread of its own with its own umask (0: unshare(CLONE_FS)), so that a
// file is created with its final mode and owner whenever the kernel gives it
// that owner anyway, and needs no fchown nor fchmod.
// Internal flag of copy_files: every regular file must be a clone (the standby job).
constexpr int kCopyCloneOnly = 1 << 13;

struct Shared {
  int flags = 0;
  int dst_root = -1;
  // New entries under the copy's top directory get this owner (that
  // directory's; false when it is setgid: then fchown every time).
  bool owner_known = false;
  uid_t uid = 0;
  gid_t gid = 0;
  // The created mode is exact in threads whose umask is 0, unless a default
  // ACL (inherited from where the copy is made) decides it instead.
  bool modes_exact = false;
  std::atomic<bool> clone_ok{true};
  std::atomic<bool> failed{false};
  // Set from outside (the standby job's cancel flag): the copy stops at the next entry (ECANCELED).
  const std::atomic<int32_t>* cancel = nullptr;
  // The standby job: the stat of every source entry, taken before it was copied (walker only).
  std::unordered_map<std::string, struct stat>* record = nullptr;
  // The checking pass: extended attributes the source lacks are removed from an
  // entry (a kept directory's, or what a default ACL gave a new one).
  bool strip_xattrs = false;
  bool cancelled() const { return cancel && cancel->load(std::memory_order_relaxed) != 0; }

  std::mutex mu;
  std::condition_variable work_cv;  // a job was queued, or the copy ends
  std::condition_variable done_cv;  // a job finished
  // Regular files of one directory for the workers to copy, kChunk at a
  // time: a worker takes a chunk from the directory at the front and puts
  // the rest at the back, so that workers create in different directories
  // while two have files left, and no thread holds more than a chunk when
  // the others run out (a thread kept off the CPU on a loaded machine held
  // a whole directory's files, and the copy waited for it).
  struct Job {
    int sdir, ddir;
    const std::string* dir_rel;  // owned by the directory's DirRec (or the copy's top), which outlives the job
    std::vector<std::pair<std::string, struct stat>> files;
    size_t next = 0;
  };
  static constexpr size_t kChunk = 32;
  static constexpr off_t kChunkBytes = 1 << 20;
  std::deque<Job> queue;
  size_t outstanding = 0;  // files queued or being copied
  bool closing = false;

  // The first failure: -errno, the call, the entry.
  int err = 0;
  const char* syscall = nullptr;
  std::string where;

  // The workers start only once the walker queued kChunk files or
  // kChunkBytes (start_pool, walker only): a copy of a few small files (a
  // snap's tree, an almost empty $SNAP_DATA) ran in the walker alone, where
  // starting, waking and joining the workers cost a refresh ~7 ms with the
  // CPUs busy (0.4 ms idle) for nothing to share.
  std::function<void()> start_pool;
  size_t queued_files = 0;
  off_t queued_bytes = 0;

  std::vector<int> to_sync;  // files with data and directories made, flushed at the end
  bool syncfs_instead = false;
  copy_stats stats;  // summed from each thread's at its end

  static constexpr size_t kSyncEach = 64;

  int fail(const char* call, const std::string& rel, int e) {
    std::lock_guard<std::mutex> g(mu);
    if (!failed.load()) {
      err = -e;
      syscall = call;
      where = rel;
      failed.store(true);
    }
    return -e;
  }

  // Keeps `fd` (a file with data, or a directory made) to be flushed at the
  // end. Past kSyncEach of them, one syncfs of the target file system
  // flushes them all for less: every fsync of a directory or of a clone is a
  // log force (a cache flush of the device), syncfs is one.
  void defer_sync(int fd) {
    std::lock_guard<std::mutex> g(mu);
    if (syncfs_instead) {
      close(fd);
    } else if (to_sync.size() < kSyncEach) {
      to_sync.push_back(fd);
    } else {
      for (int f : to_sync) close(f);
      to_sync.clear();
      close(fd);
      syncfs_instead = true;
    }
  }
};

// What one thread of the copy does; counts are its own until it ends.
struct Copier {
  Shared* sh;
  copy_stats stats;
  bool umask_zero = false;
  std::map<std::pair<dev_t, ino_t>, std::string> links;  // walker only: first copy of each multiply-linked inode

  // Walker only (pooled copies): a directory walked, whose mode and times
  // are set once its files are done; `done` lists them children first.
  struct DirRec {
    int s, d;
    struct stat st;
    std::string rel;
    bool exact;
  };
  std::vector<std::unique_ptr<DirRec>> done;
  static constexpr size_t kBatch = 256;
  static constexpr size_t kMaxOpenDirs = 256;

  explicit Copier(Shared* s) : sh(s) {}

  // Gives this thread a umask of its own, 0. False when it cannot (then modes are set with fchmod).
  void own_umask() {
    if (unshare(CLONE_FS) == 0) {
      umask(0);
      umask_zero = true;
    }
  }

  int fail(const char* call, const std::string& rel) { return sh->fail(call, rel, errno); }

  static std::string join(const std::string& rel, const char* name) {
    return rel.empty() ? std::string(name) : rel + "/" + name;
  }

  bool owned_as(const struct stat& st) const { return sh->owner_known && st.st_uid == sh->uid && st.st_gid == sh->gid; }
  // Whether an entry created with `mode` ends up with exactly that mode.
  bool exact_modes() const { return umask_zero && sh->modes_exact; }

  // Extended attributes: every name the source lists (namespaces the caller may read).
  // `fd` >= 0: by descriptor; else by path (symlinks, special files), not following.
  // Removes every extended attribute of the target (before copy_xattrs sets the source's).
  int strip_xattrs(int dfd, const std::string& dpath, const std::string& rel) {
    std::vector<char> names(1024);
    ssize_t n;
    for (;;) {
      n = dfd >= 0 ? flistxattr(dfd, names.data(), names.size()) : llistxattr(dpath.c_str(), names.data(), names.size());
      if (n >= 0) break;
      if (errno == ERANGE) {
        names.resize(names.size() * 4);
        continue;
      }
      if (errno == ENOTSUP) return 0;
      return fail("listxattr", rel);
    }
    for (ssize_t at = 0; at < n;) {
      const char* name = names.data() + at;
      at += strlen(name) + 1;
      int rc = dfd >= 0 ? fremovexattr(dfd, name) : lremovexattr(dpath.c_str(), name);
      if (rc < 0 && errno != ENODATA) return fail("removexattr", rel);
    }
    return 0;
  }

  int copy_xattrs(int sfd, int dfd, const std::string& spath, const std::string& dpath, const std::string& rel) {
    if (sh->strip_xattrs) {
      int rc = strip_xattrs(dfd, dpath, rel);
      if (rc < 0) return rc;
    }
    if (sh->flags & COPY_NO_XATTRS) return 0;
    char small[256];
    std::vector<char> big;
    char* names = small;
    size_t size = sizeof small;
    ssize_t n;
    for (;;) {
      n = sfd >= 0 ? flistxattr(sfd, names, size) : llistxattr(spath.c_str(), names, size);
      if (n >= 0) break;
      if (errno == ERANGE) {
        big.resize(size * 4);
        size = big.size();
        names = big.data();
        continue;
      }
      if (errno == ENOTSUP) return 0;  // no xattrs on this file system: nothing to keep
      return fail("listxattr", rel);
    }
    if (n == 0) return 0;
    std::vector<char> value(4096);
    for (ssize_t at = 0; at < n;) {
      const char* name = names + at;
      at += strlen(name) + 1;
      ssize_t v;
      for (;;) {
        v = sfd >= 0 ? fgetxattr(sfd, name, value.data(), value.size()) : lgetxattr(spath.c_str(), name, value.data(), value.size());
        if (v >= 0) break;
        if (errno == ERANGE) {
          value.resize(value.size() * 4);
          continue;
        }
        if (errno == ENODATA) break;  // removed meanwhile
        return fail("getxattr", rel);
      }
      if (v < 0) continue;
      int rc = dfd >= 0 ? fsetxattr(dfd, name, value.data(), v, 0) : lsetxattr(dpath.c_str(), name, value.data(), v, 0);
      if (rc < 0) return fail("setxattr", rel);
      stats.xattrs++;
    }
    return 0;
  }

  // Owner, xattrs (after chown: chown drops security.capability), mode (after chown:
  // chown drops setuid/setgid), times (last) of something opened as `dfd`.
  // `mode_done`: created with exactly its mode and owner already.
  int finish_fd(int sfd, int dfd, const struct stat& st, const std::string& rel, bool mode_done) {
    bool chown_needed = !owned_as(st);
    if (chown_needed && fchown(dfd, st.st_uid, st.st_gid) < 0) return fail("fchown", rel);
    int rc = copy_xattrs(sfd, dfd, "", "", rel);
    if (rc < 0) return rc;
    if ((chown_needed || !mode_done) && fchmod(dfd, st.st_mode & 07777) < 0) return fail("fchmod", rel);
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    if (futimens(dfd, ts) < 0) return fail("futimens", rel);
    return 0;
  }

  static std::string fd_path(int dirfd, const char* name) {
    return "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
  }

  // Symlinks and special files: by name in their directory, never following.
  int finish_at(int sdir, int ddir, const char* name, const struct stat& st, const std::string& rel, bool is_link, bool mode_done) {
    bool chown_needed = !owned_as(st);
    if (chown_needed && fchownat(ddir, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0) return fail("fchownat", rel);
    int rc = copy_xattrs(-1, -1, fd_path(sdir, name), fd_path(ddir, name), rel);
    if (rc < 0) return rc;
    if (!is_link && (chown_needed || !mode_done) && fchmodat(ddir, name, st.st_mode & 07777, 0) < 0) return fail("fchmodat", rel);
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    if (utimensat(ddir, name, ts, AT_SYMLINK_NOFOLLOW) < 0) return fail("utimensat", rel);
    return 0;
  }

  // Contents of a regular file: a clone where possible, else the data extents only.
  int copy_data(int sfd, int dfd, const struct stat& st, const std::string& rel) {
    if (st.st_size == 0) return 0;
    if (!(sh->flags & COPY_NO_CLONE) && sh->clone_ok.load(std::memory_order_relaxed)) {
      if (ioctl(dfd, FICLONE, sfd) == 0) {
        stats.cloned++;
        return 1;  // the clone is metadata to flush
      }
      // The standby job: a file that does not clone (another file system
      // mounted inside the data, a full disk...) ends it, instead of a copy of
      // every byte beside the data it was to share extents with.
      if (sh->flags & kCopyCloneOnly) return sh->fail("FICLONE", rel, errno == ENOSPC ? ENOSPC : EOPNOTSUPP);
      // Not on this file system (ext4, tmpfs; or another one): no use asking for the next file.
      if (errno == EOPNOTSUPP || errno == ENOTTY || errno == EXDEV || errno == ENOSYS) sh->clone_ok.store(false, std::memory_order_relaxed);
    }
    off_t end = st.st_size;
    off_t pos = 0;
    // As cp: a file with fewer blocks than its size has holes, looked for
    // with SEEK_DATA/SEEK_HOLE; any other file is one data extent.
    bool sparse = static_cast<off_t>(st.st_blocks) * 512 < end;
    bool cfr = true;
    std::vector<char> buf;
    off_t written_to = 0;
    while (pos < end) {
      off_t data = pos, hole = end;
      if (sparse) {
        data = lseek(sfd, pos, SEEK_DATA);
        if (data < 0) {
          if (errno == ENXIO) break;  // only a hole is left
          data = pos;                 // no SEEK_DATA: copy everything
        }
        hole = lseek(sfd, data, SEEK_HOLE);
        if (hole < 0 || hole > end) hole = end;
      }
      off_t in = data, out = data;
      while (in < hole) {
        size_t want = static_cast<size_t>(hole - in);
        ssize_t n = -1;
        if (cfr) {
          n = copy_file_range(sfd, &in, dfd, &out, want, 0);
          if (n < 0 && (errno == EXDEV || errno == EINVAL || errno == ENOSYS || errno == EOPNOTSUPP)) cfr = false;
          else if (n < 0) return fail("copy_file_range", rel);
          else if (n == 0) break;  // file shrank meanwhile
        }
        if (!cfr) {
          if (buf.empty()) buf.resize(1 << 17);
          size_t chunk = want < buf.size() ? want : buf.size();
          n = pread(sfd, buf.data(), chunk, in);
          if (n < 0) return fail("read", rel);
          if (n == 0) break;
          for (ssize_t w = 0; w < n;) {
            ssize_t k = pwrite(dfd, buf.data() + w, n - w, out + w);
            if (k < 0) return fail("write", rel);
            w += k;
          }
          in += n;
          out += n;
        }
        stats.bytes += n;
      }
      if (out > written_to) written_to = out;
      pos = hole;
      if (in < hole) break;  // shrank meanwhile
    }
    if (written_to != end && ftruncate(dfd, end) < 0) return fail("ftruncate", rel);  // trailing hole
    return 1;  // data written: to be flushed
  }

  // A regular file (the workers' job): created, filled, finished, queued to be flushed.
  int copy_regular(int sdir, int ddir, const char* name, const struct stat& walked, const std::string& rel) {
    // O_NONBLOCK: the name may no longer be the file the walker saw (the
    // workers open it later, while services may run): a FIFO put in its place
    // would block the open for good, and a write lease on it would hold the
    // open until the lease breaks (minutes). Without O_NOCTTY a terminal
    // device could become a controlling terminal.
    const int kFlags = O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NONBLOCK | O_NOCTTY;
    int s = openat(sdir, name, kFlags | O_NOATIME);
    if (s < 0 && errno == EPERM) s = openat(sdir, name, kFlags);
    if (s < 0) {
      if (errno == ENOENT) return 0;  // removed while we copied
      return fail("open", rel);
    }
    // What was opened is copied, with its own metadata: a regular file that
    // replaced the one walked (another inode) is still a file of the tree.
    // Anything else in its place (a FIFO, a device) is an error, not a file
    // copied from or skipped.
    struct stat st;
    if (fstat(s, &st) < 0) {
      int rc = fail("fstat", rel);
      close(s);
      return rc;
    }
    if (!S_ISREG(st.st_mode)) {
      close(s);
      return sh->fail("open", rel, EAGAIN);
    }
    (void)walked;
    // Its final mode at once when the kernel gives it its owner (fchown would drop setuid/setgid).
    bool exact = exact_modes() && owned_as(st) && !(st.st_mode & (S_ISUID | S_ISGID));
    int d = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, exact ? (st.st_mode & 07777) : 0600);
    if (d < 0) {
      int rc = fail("open", rel);
      close(s);
      return rc;
    }
    int rc = copy_data(s, d, st, rel);
    bool wrote = rc == 1;
    if (rc >= 0) rc = finish_fd(s, d, st, rel, exact);
    close(s);
    stats.files++;
    if (rc >= 0 && wrote && !(sh->flags & COPY_NO_SYNC)) sh->defer_sync(d);
    else close(d);
    return rc;
  }

  int copy_entry(int sdir, int ddir, const char* name, const std::string& dir_rel, Shared::Job* batch, bool pooled) {
    struct stat st;
    if (sh->cancelled()) {
      errno = ECANCELED;
      return fail("cancel", join(dir_rel, name));
    }
    if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) return 0;  // removed while we copied: not part of the tree any more
      return fail("fstatat", join(dir_rel, name));
    }
    if (sh->record) sh->record->emplace(join(dir_rel, name), st);
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      std::string rel = join(dir_rel, name);
      auto key = std::make_pair(st.st_dev, st.st_ino);
      auto it = links.find(key);
      if (it != links.end()) {
        if (linkat(sh->dst_root, it->second.c_str(), ddir, name, 0) < 0) return fail("linkat", rel);
        stats.hardlinks++;
        return 0;
      }
      links.emplace(key, rel);
      // Its other names link to it: made here, before the walker reads on.
      if (S_ISREG(st.st_mode)) return copy_regular(sdir, ddir, name, st, rel);
    }
    if (S_ISREG(st.st_mode)) {
      if (!pooled) return copy_regular(sdir, ddir, name, st, join(dir_rel, name));
      batch->files.emplace_back(name, st);
      if (batch->files.size() >= kBatch) queue_batch(batch);
      return 0;
    }
    std::string rel = join(dir_rel, name);
    bool exact = exact_modes() && owned_as(st) && !(st.st_mode & (S_ISUID | S_ISGID));
    if (S_ISDIR(st.st_mode)) {
      if (mkdirat(ddir, name, 0700) < 0) return fail("mkdirat", rel);
      // O_NOATIME: reading the source leaves its directories' atimes as they were (as its files').
      int s = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
      if (s < 0 && errno == EPERM) s = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (s < 0) return fail("open", rel);
      int d = openat(ddir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
      if (d < 0) {
        int rc = fail("open", rel);
        close(s);
        return rc;
      }
      if (pooled) {
        // Its files may still be with the workers when copy_dir returns:
        // finished (mode, times) later, after them and after its subdirectories.
        std::unique_ptr<DirRec> rec(new DirRec{s, d, st, rel, exact});
        DirRec* r = rec.get();
        int rc = copy_dir(s, d, r->rel, true);
        done.push_back(std::move(rec));
        if (rc >= 0 && done.size() >= kMaxOpenDirs) rc = finish_done();
        return rc;
      }
      int rc = copy_dir(s, d, rel, false);
      rc = finish_dir(s, d, st, rel, exact, rc);
      return rc;
    }
    if (S_ISLNK(st.st_mode)) {
      std::vector<char> target(static_cast<size_t>(st.st_size) + 2);
      ssize_t n;
      for (;;) {
        n = readlinkat(sdir, name, target.data(), target.size());
        if (n < 0) return fail("readlinkat", rel);
        if (static_cast<size_t>(n) < target.size()) break;
        target.resize(target.size() * 2);  // grew meanwhile
      }
      target[n] = '\0';
      if (symlinkat(target.data(), ddir, name) < 0) return fail("symlinkat", rel);
      stats.symlinks++;
      return finish_at(sdir, ddir, name, st, rel, true, true);
    }
    // FIFOs, sockets, character and block devices: made anew, as cp -a does.
    if (mknodat(ddir, name, (st.st_mode & S_IFMT) | (exact ? (st.st_mode & 07777) : 0600), st.st_rdev) < 0) return fail("mknodat", rel);
    stats.special++;
    return finish_at(sdir, ddir, name, st, rel, false, exact);
  }

  // Runs one queued job, if there is one; false when the queue is empty.
  bool run_one(std::unique_lock<std::mutex>& lk) {
    if (sh->queue.empty()) return false;
    Shared::Job& front = sh->queue.front();
    int sdir = front.sdir, ddir = front.ddir;
    const std::string* dir_rel = front.dir_rel;
    // At most kChunk files, and at most about kChunkBytes of them: a large
    // file (a copy of every byte where nothing clones) is a chunk of its own,
    // so that several are copied at once.
    size_t end = front.next;
    off_t bytes = 0;
    while (end < front.files.size() && end - front.next < Shared::kChunk && (end == front.next || bytes + front.files[end].second.st_size <= Shared::kChunkBytes)) {
      bytes += front.files[end].second.st_size;
      end++;
    }
    std::vector<std::pair<std::string, struct stat>> chunk(std::make_move_iterator(front.files.begin() + front.next), std::make_move_iterator(front.files.begin() + end));
    front.next = end;
    if (front.next < front.files.size()) sh->queue.push_back(std::move(front));
    sh->queue.pop_front();
    lk.unlock();
    for (auto& f : chunk) {
      if (sh->failed.load()) break;
      if (sh->cancelled()) {
        sh->fail("cancel", join(*dir_rel, f.first.c_str()), ECANCELED);
        break;
      }
      copy_regular(sdir, ddir, f.first.c_str(), f.second, join(*dir_rel, f.first.c_str()));
    }
    lk.lock();
    sh->outstanding -= chunk.size();
    sh->done_cv.notify_all();
    return true;
  }

  // Walker: hands a directory's batch of files to the workers.
  void queue_batch(Shared::Job* batch) {
    if (batch->files.empty()) return;
    sh->queued_files += batch->files.size();
    for (auto& f : batch->files) sh->queued_bytes += f.second.st_size;
    {
      std::lock_guard<std::mutex> g(sh->mu);
      sh->outstanding += batch->files.size();
      sh->queue.push_back(std::move(*batch));
    }
    batch->files.clear();
    if (sh->start_pool && (sh->queued_files >= Shared::kChunk || sh->queued_bytes >= Shared::kChunkBytes)) {
      sh->start_pool();
      sh->start_pool = nullptr;
    }
    sh->work_cv.notify_one();
  }

  // Walker: runs jobs with the workers until none is queued or running.
  void drain() {
    std::unique_lock<std::mutex> lk(sh->mu);
    while (sh->outstanding > 0) {
      if (!run_one(lk)) sh->done_cv.wait(lk);
    }
  }

  // A directory's owner, xattrs, mode and times once its contents are done; its fds are closed (or kept to flush).
  int finish_dir(int s, int d, const struct stat& st, const std::string& rel, bool exact, int rc) {
    // Made 0700: its mode is set now, after its contents.
    if (rc >= 0 && !sh->failed.load()) rc = finish_fd(s, d, st, rel, exact && (st.st_mode & 07777) == 0700);
    close(s);
    stats.dirs++;
    if (rc >= 0 && !sh->failed.load() && !(sh->flags & COPY_NO_SYNC)) sh->defer_sync(d);
    else close(d);
    return rc;
  }

  // Walker: waits for the workers, then finishes every directory walked so far (children first).
  int finish_done() {
    drain();
    int rc = sh->failed.load() ? sh->err : 0;
    for (auto& r : done) rc = finish_dir(r->s, r->d, r->st, r->rel, r->exact, rc);
    done.clear();
    return rc < 0 ? rc : (sh->failed.load() ? sh->err : 0);
  }

  // A worker: runs jobs until the copy ends.
  void work() {
    own_umask();
    std::unique_lock<std::mutex> lk(sh->mu);
    for (;;) {
      if (run_one(lk)) continue;
      if (sh->closing) break;
      sh->work_cv.wait(lk);
    }
    add_stats_locked();
  }

  void add_stats_locked() {
    copy_stats& t = sh->stats;
    t.files += stats.files;
    t.dirs += stats.dirs;
    t.symlinks += stats.symlinks;
    t.special += stats.special;
    t.hardlinks += stats.hardlinks;
    t.cloned += stats.cloned;
    t.bytes += stats.bytes;
    t.xattrs += stats.xattrs;
  }

  int copy_dir(int sfd, int dfd, const std::string& rel, bool pooled) {
    int scan = dup(sfd);
    if (scan < 0) return fail("dup", rel);
    DIR* dir = fdopendir(scan);
    if (!dir) {
      int rc = fail("fdopendir", rel);
      close(scan);
      return rc;
    }
    rewinddir(dir);  // the offset is shared with every dup of the fd: start from the first entry
    Shared::Job batch{sfd, dfd, &rel, {}};  // this directory's files for the workers
    int rc = 0;
    errno = 0;
    while (struct dirent* e = readdir(dir)) {
      if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0'))) continue;
      rc = copy_entry(sfd, dfd, e->d_name, rel, &batch, pooled);
      if (rc < 0 || sh->failed.load()) break;
      errno = 0;
    }
    if (rc >= 0 && !sh->failed.load() && errno != 0) rc = fail("readdir", rel);
    if (pooled && rc >= 0 && !sh->failed.load()) queue_batch(&batch);
    closedir(dir);
    if (rc >= 0 && sh->failed.load()) rc = sh->err;
    return rc < 0 ? rc : 0;
  }
};

int flush(Shared* sh, int any_fd) {
  int rc = 0;
  for (int fd : sh->to_sync) {
    if (rc >= 0 && fsync(fd) < 0) rc = sh->fail("fsync", "", errno);
    close(fd);
  }
  sh->to_sync.clear();
  if (rc >= 0 && sh->syncfs_instead && syncfs(any_fd) < 0) rc = sh->fail("syncfs", "", errno);
  return rc;
}

// How many worker threads copy regular files: SNAPPROC_COPY_THREADS, else
// one per CPU, at most 4 (each clone or create waits on the file system's
// log and locks as much as it computes).
int copy_threads() {
  const char* env = getenv("SNAPPROC_COPY_THREADS");
  if (env && *env) {
    int n = atoi(env);
    return n < 0 ? 0 : n > 16 ? 16 : n;
  }
  long cpus = sysconf(_SC_NPROCESSORS_ONLN);
  return cpus < 1 ? 1 : cpus > 4 ? 4 : static_cast<int>(cpus);
}

// Internal flag of copy_files: every thread of the copy runs at the lowest
// priority (the standby job, made in the background while services run).
constexpr int COPY_IDLE = 1 << 12;

// Nice 19 and the idle I/O class for the calling thread (Linux keeps both
// per thread). Not SCHED_IDLE: a thread that holds a file system's locks
// (an XFS create, a clone) while starved by SCHED_IDLE would hold up the
// services and the next refresh waiting on the same locks; nice 19 still
// gets a small share.
// The ioprio values are the kernel's ABI, written out here because
// <linux/ioprio.h> from linux-libc-dev 6.1.192 (Debian 12) names a parameter
// `class` and no longer compiles as C++.
constexpr int kIoprioWhoProcess = 1;
constexpr int kIoprioClassIdle = 3;
constexpr int kIoprioClassShift = 13;
void become_idle() {
  setpriority(PRIO_PROCESS, 0, 19);
  syscall(SYS_ioprio_set, kIoprioWhoProcess, 0, kIoprioClassIdle << kIoprioClassShift);
}

// What the standby job adds to a copy (copy_files): a cancel flag and the record of source stats.
struct CopyHooks {
  const std::atomic<int32_t>* cancel = nullptr;
  std::unordered_map<std::string, struct stat>* record = nullptr;
};

// The file-by-file copy of the open directory `s` into the new, open, empty `d`.
int copy_files(int s, int d, const struct stat& st, int flags, copy_stats* stats, std::string* where, const char** syscall_out, const CopyHooks* hooks = nullptr) {
  Shared sh;
  sh.flags = flags;
  if (hooks) {
    sh.cancel = hooks->cancel;
    sh.record = hooks->record;
  }
  sh.dst_root = d;
  struct stat dst;
  if (fstat(d, &dst) == 0 && !(dst.st_mode & S_ISGID)) {
    sh.owner_known = true;
    sh.uid = dst.st_uid;
    sh.gid = dst.st_gid;
  }
  // A default ACL where the copy is made would decide created modes (no umask applies then).
  sh.modes_exact = fgetxattr(d, "system.posix_acl_default", nullptr, 0) < 0 && (errno == ENODATA || errno == ENOTSUP);
  // And its ACLs: each entry made there inherits them, which the source's
  // entries may not have. Then every entry's extended attributes are
  // cleared before the source's are set: the copy has the source's, as a
  // standby's checking pass gives (a copy that kept the inherited ACLs
  // differed from it, and from the source).
  if (!sh.modes_exact) sh.strip_xattrs = true;
  int workers = copy_threads();
  int rc = 0;
  // The walker runs on a thread of its own too: its umask is its own.
  std::thread walker([&]() {
    if (flags & COPY_IDLE) become_idle();
    Copier c(&sh);
    c.own_umask();
    std::vector<std::thread> pool;
    std::vector<std::unique_ptr<Copier>> copiers;
    if (workers > 0) {
      sh.start_pool = [&]() {
        for (int i = 0; i < workers; i++) {
          copiers.emplace_back(new Copier(&sh));
          Copier* w = copiers.back().get();
          pool.emplace_back([w, flags]() {
            if (flags & COPY_IDLE) become_idle();
            w->work();
          });
        }
      };
    }
    const std::string top;  // the top directory's relative name: outlives every job
    rc = c.copy_dir(s, d, top, workers > 0);
    // Every file done, then every directory's mode and times (also after a failure: the fds are closed).
    if (workers > 0) {
      int frc = c.finish_done();
      if (rc >= 0) rc = frc;
    }
    {
      std::lock_guard<std::mutex> g(sh.mu);
      sh.closing = true;
    }
    sh.work_cv.notify_all();
    for (auto& t : pool) t.join();
    if (rc >= 0 && !sh.failed.load()) rc = c.finish_fd(s, d, st, "", false);
    std::lock_guard<std::mutex> g(sh.mu);
    c.add_stats_locked();
  });
  walker.join();
  if (rc >= 0 && sh.failed.load()) rc = sh.err;
  if (rc >= 0 && !(flags & COPY_NO_SYNC)) rc = flush(&sh, d);
  else
    for (int fd : sh.to_sync) close(fd);
  // The top directory: covered by the syncfs when there was one.
  if (rc >= 0 && !(flags & COPY_NO_SYNC) && !sh.syncfs_instead && fsync(d) < 0) rc = sh.fail("fsync", "", errno);
  int32_t method = stats->method;
  *stats = sh.stats;
  stats->method = method;
  stats->dirs++;
  if (rc < 0) {
    *where = sh.where;
    *syscall_out = sh.syscall;
    rc = sh.err ? sh.err : rc;
  }
  return rc;
}

std::string parent_of(const std::string& p) {
  size_t slash = p.find_last_of('/');
  if (slash == std::string::npos) return ".";
  if (slash == 0) return "/";
  return p.substr(0, slash);
}

std::string base_of(const std::string& p) {
  size_t slash = p.find_last_of('/');
  return slash == std::string::npos ? p : p.substr(slash + 1);
}

// True when the directory has no entry but . and .. (or cannot be read: then the copy will tell).
bool is_empty_dir(int fd) {
  int scan = dup(fd);
  if (scan < 0) return false;
  DIR* dir = fdopendir(scan);
  if (!dir) {
    close(scan);
    return false;
  }
  rewinddir(dir);
  bool empty = true;
  while (struct dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0'))) continue;
    empty = false;
    break;
  }
  rewinddir(dir);  // leave the shared offset at the start for the copy
  closedir(dir);
  return empty;
}

bool on_btrfs(int fd) {
  struct statfs sf;
  return fstatfs(fd, &sf) == 0 && sf.f_type == BTRFS_SUPER_MAGIC;
}

// A btrfs subvolume's root directory has inode 256 (BTRFS_FIRST_FREE_OBJECTID).
bool is_subvolume_root(int fd) {
  struct stat st;
  return on_btrfs(fd) && fstat(fd, &st) == 0 && st.st_ino == 256 && S_ISDIR(st.st_mode);
}

// True when the subvolume holds other subvolumes (a snapshot would show them as empty directories).
bool has_nested_subvolumes(int fd) {
  struct btrfs_ioctl_get_subvol_rootref_args args;
  memset(&args, 0, sizeof(args));
  if (ioctl(fd, BTRFS_IOC_GET_SUBVOL_ROOTREF, &args) < 0) return errno != 0;  // cannot tell: assume yes
  return args.num_items > 0;
}

}  // namespace

int copy_tree(const char* src, const char* dst, int flags, copy_stats* stats, std::string* where, const char** syscall_out) {
  *stats = copy_stats{};
  std::string dst_s(dst);
  std::string parent = parent_of(dst_s), name = base_of(dst_s);
  int s = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
  if (s < 0 && errno == EPERM) s = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (s < 0) {
    *where = "";
    *syscall_out = "open";
    return -errno;
  }
  int p = open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (p < 0) {
    int e = errno;
    close(s);
    *where = "";
    *syscall_out = "open";
    return -e;
  }
  struct stat st;
  if (fstat(s, &st) < 0) {
    int e = errno;
    close(s);
    close(p);
    *syscall_out = "fstat";
    return -e;
  }
  int rc = 0;
  // btrfs: a subvolume is copied as one writable snapshot (it shares every
  // extent until either side writes). The snapshot is committed by the ioctl
  // (a transaction commit, ~10-30 ms; so is flushing a new subvolume): an
  // empty tree is copied as a plain directory, which costs no commit, and
  // becomes a subvolume at the first copy that has something to copy.
  bool empty = is_empty_dir(s);
  bool subvolume = !empty && is_subvolume_root(s);
  if (empty) flags &= ~COPY_SUBVOLUME;
  if (!(flags & COPY_NO_SNAPSHOT) && subvolume && on_btrfs(p) && !has_nested_subvolumes(s) && name.size() < BTRFS_SUBVOL_NAME_MAX) {
    struct btrfs_ioctl_vol_args_v2 args;
    memset(&args, 0, sizeof(args));
    args.fd = s;
    strncpy(args.name, name.c_str(), BTRFS_SUBVOL_NAME_MAX);
    if (ioctl(p, BTRFS_IOC_SNAP_CREATE_V2, &args) == 0) {
      stats->method = COPY_METHOD_SNAPSHOT;
      close(s);
      close(p);
      return 0;
    }
    // EXDEV (another file system), EPERM, ...: copy file by file below.
  }
  if (subvolume) flags |= COPY_SUBVOLUME;
  stats->method = COPY_METHOD_FILES;
  // The top directory: a subvolume of its own on btrfs (when asked), so that the next copy is a snapshot.
  bool made = false;
  if ((flags & COPY_SUBVOLUME) && on_btrfs(p) && name.size() < BTRFS_PATH_NAME_MAX) {
    struct btrfs_ioctl_vol_args args;
    memset(&args, 0, sizeof(args));
    strncpy(args.name, name.c_str(), BTRFS_PATH_NAME_MAX);
    if (ioctl(p, BTRFS_IOC_SUBVOL_CREATE, &args) == 0) {
      made = true;
      stats->method = COPY_METHOD_FILES_INTO_SUBVOLUME;
      if (fchmodat(p, name.c_str(), 0700, 0) < 0) {
        rc = -errno;
        *syscall_out = "fchmodat";
      }
    }
  }
  if (rc == 0 && !made && mkdirat(p, name.c_str(), 0700) < 0) {
    rc = -errno;
    *syscall_out = "mkdirat";
  }
  if (rc < 0) {
    close(s);
    close(p);
    *where = "";
    return rc;
  }
  int d = openat(p, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (d < 0) {
    int e = errno;
    close(s);
    close(p);
    *syscall_out = "open";
    return -e;
  }
  rc = copy_files(s, d, st, flags, stats, where, syscall_out);
  close(d);
  close(s);
  close(p);
  return rc;
}

int make_data_dir(const char* path, int mode, int subvolume, const char** syscall_out) {
  std::string p(path);
  std::string parent = parent_of(p), name = base_of(p);
  int pfd = open(parent.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (pfd < 0) {
    *syscall_out = "open";
    return -errno;
  }
  int rc = 0;
  bool made = false;
  if (subvolume && on_btrfs(pfd) && name.size() < BTRFS_PATH_NAME_MAX) {
    struct btrfs_ioctl_vol_args args;
    memset(&args, 0, sizeof(args));
    strncpy(args.name, name.c_str(), BTRFS_PATH_NAME_MAX);
    if (ioctl(pfd, BTRFS_IOC_SUBVOL_CREATE, &args) == 0) made = true;
    else if (errno == EEXIST) {
      close(pfd);
      *syscall_out = "mkdir";
      return -EEXIST;
    }
  }
  if (!made && mkdirat(pfd, name.c_str(), mode) < 0) {
    rc = -errno;
    *syscall_out = "mkdir";
  }
  if (rc == 0 && fchmodat(pfd, name.c_str(), mode, 0) < 0) {
    rc = -errno;
    *syscall_out = "chmod";
  }
  close(pfd);
  return rc < 0 ? rc : (made ? 1 : 0);
}


// ---- the standby copy (issue 12) ---------------------------------------------
//
// On XFS each file of a copy costs ~50 us of kernel time (create, clone,
// times), 2000 small files ~100 ms: more than a refresh may spend. So a
// reflinked copy of the current revision's $SNAP_DATA is made beforehand, in
// the background (standby_make: `DIR/tree`, and last, flushed, `DIR/manifest`:
// every source entry's stat taken before it was cloned, every standby
// entry's inode and ctime after, and when the job started), and at the
// refresh only what changed since is redone in it (standby_apply): an entry
// whose stat equals the manifest's, whose ctime is older than the job's start
// minus a margin (git's "racily clean" rule: a change in the same clock tick
// as the job's stat would leave the ctime as it was), and whose standby entry
// is the one the job made (same inode, same ctime), is kept; anything else is
// made again from the source exactly as copy_entry makes it, extra entries
// are removed, hard-linked sets in which anything changed are made again as
// a whole, and directories get their metadata (owner, xattrs, mode, times)
// set again children first. The result is what copy_tree would make now.
// Here, with the copier above, because it makes what changed with the same
// code as the full copy.

namespace {

struct SrcStat {  // what the manifest keeps of a source entry's stat
  uint64_t dev, ino, nlink, rdev;
  uint32_t mode, uid, gid, pad;
  int64_t size;
  int64_t atime_s, atime_ns, mtime_s, mtime_ns, ctime_s, ctime_ns;
};

struct Entry {
  SrcStat src;
  uint64_t dino;  // the standby entry made from it (0: none was made)
  int64_t dctime_s, dctime_ns;
};

struct Manifest {
  int64_t started_ns = 0;
  uint64_t standby_dev = 0, src_dev = 0, src_ino = 0;
  std::string label;
  std::unordered_map<std::string, Entry> entries;
};

constexpr char kManifestMagic[8] = {'S', 'N', 'P', 'S', 'T', 'B', 'Y', '1'};

SrcStat src_of(const struct stat& st) {
  SrcStat s;
  memset(&s, 0, sizeof s);
  s.dev = st.st_dev;
  s.ino = st.st_ino;
  s.nlink = st.st_nlink;
  s.rdev = st.st_rdev;
  s.mode = st.st_mode;
  s.uid = st.st_uid;
  s.gid = st.st_gid;
  s.size = st.st_size;
  s.atime_s = st.st_atim.tv_sec;
  s.atime_ns = st.st_atim.tv_nsec;
  s.mtime_s = st.st_mtim.tv_sec;
  s.mtime_ns = st.st_mtim.tv_nsec;
  s.ctime_s = st.st_ctim.tv_sec;
  s.ctime_ns = st.st_ctim.tv_nsec;
  return s;
}

bool same_but_atime(const SrcStat& a, const SrcStat& b) {
  return a.dev == b.dev && a.ino == b.ino && a.nlink == b.nlink && a.rdev == b.rdev && a.mode == b.mode && a.uid == b.uid && a.gid == b.gid && a.size == b.size &&
         a.mtime_s == b.mtime_s && a.mtime_ns == b.mtime_ns && a.ctime_s == b.ctime_s && a.ctime_ns == b.ctime_ns;
}

bool same_time(const struct timespec& a, const struct timespec& b) { return a.tv_sec == b.tv_sec && a.tv_nsec == b.tv_nsec; }

int64_t ns_of(int64_t s, int64_t ns) { return s * 1000000000LL + ns; }

int64_t realtime_ns() {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return ns_of(ts.tv_sec, ts.tv_nsec);
}

// FNV-1a over 8-byte words (then the tail bytes): a torn or altered manifest
// shows; no defence against a forger (who is root and could rewrite the data itself).
uint64_t fnv1a(const char* p, size_t n) {
  uint64_t h = 1469598103934665603ULL;
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    uint64_t w;
    memcpy(&w, p + i, 8);
    h ^= w;
    h *= 1099511628211ULL;
  }
  for (; i < n; i++) {
    h ^= static_cast<unsigned char>(p[i]);
    h *= 1099511628211ULL;
  }
  return h;
}

template <typename T>
void put(std::string* out, const T& v) {
  out->append(reinterpret_cast<const char*>(&v), sizeof v);
}

template <typename T>
bool take(const std::string& in, size_t* at, T* v) {
  if (in.size() - *at < sizeof *v) return false;
  memcpy(v, in.data() + *at, sizeof *v);
  *at += sizeof *v;
  return true;
}

std::string encode(const Manifest& m) {
  std::string out(kManifestMagic, sizeof kManifestMagic);
  put(&out, static_cast<uint32_t>(1));
  put(&out, m.started_ns);
  put(&out, m.standby_dev);
  put(&out, m.src_dev);
  put(&out, m.src_ino);
  put(&out, static_cast<uint32_t>(m.label.size()));
  out += m.label;
  put(&out, static_cast<uint64_t>(m.entries.size()));
  for (const auto& kv : m.entries) {
    put(&out, static_cast<uint32_t>(kv.first.size()));
    out += kv.first;
    put(&out, kv.second);
  }
  put(&out, fnv1a(out.data(), out.size()));
  return out;
}

// false (with `why`) for anything but a complete manifest of this format.
bool decode(const std::string& in, Manifest* m, std::string* why) {
  size_t at = sizeof kManifestMagic;
  uint64_t hash;
  if (in.size() < at + sizeof hash || memcmp(in.data(), kManifestMagic, at) != 0) return *why = "not a standby manifest", false;
  memcpy(&hash, in.data() + in.size() - sizeof hash, sizeof hash);
  if (hash != fnv1a(in.data(), in.size() - sizeof hash)) return *why = "manifest checksum mismatch (torn or altered)", false;
  const std::string body(in.data(), in.size() - sizeof hash);
  uint32_t version = 0, label_len = 0;
  uint64_t count = 0;
  if (!take(body, &at, &version) || version != 1 || !take(body, &at, &m->started_ns) || !take(body, &at, &m->standby_dev) || !take(body, &at, &m->src_dev) ||
      !take(body, &at, &m->src_ino) || !take(body, &at, &label_len) || body.size() - at < label_len)
    return *why = "manifest header unreadable", false;
  m->label = body.substr(at, label_len);
  at += label_len;
  if (!take(body, &at, &count) || count > body.size()) return *why = "manifest header unreadable", false;
  m->entries.reserve(count);
  for (uint64_t i = 0; i < count; i++) {
    uint32_t len = 0;
    if (!take(body, &at, &len) || body.size() - at < len) return *why = "manifest entry unreadable", false;
    std::string rel = body.substr(at, len);
    at += len;
    Entry e;
    if (!take(body, &at, &e)) return *why = "manifest entry unreadable", false;
    m->entries.emplace(std::move(rel), e);
  }
  if (at != body.size()) return *why = "manifest has trailing bytes", false;
  return true;
}

int read_all(int dirfd, const char* name, std::string* out) {
  int fd = openat(dirfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) return -errno;
  char buf[1 << 16];
  for (;;) {
    ssize_t n = read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      int e = errno;
      close(fd);
      return -e;
    }
    if (n == 0) break;
    out->append(buf, n);
  }
  close(fd);
  return 0;
}

int read_manifest(int dirfd, Manifest* m, std::string* why) {
  std::string text;
  int rc = read_all(dirfd, "manifest", &text);
  if (rc < 0) {
    *why = rc == -ENOENT ? "no manifest (incomplete or already used)" : std::string("cannot read the manifest: ") + strerror(-rc);
    return -ESTALE;
  }
  return decode(text, m, why) ? 0 : -ESTALE;
}

std::vector<std::string> list_dir(int fd, int* err) {
  std::vector<std::string> names;
  *err = 0;
  int scan = fcntl(fd, F_DUPFD_CLOEXEC, 0);
  if (scan < 0) {
    *err = errno;
    return names;
  }
  DIR* dir = fdopendir(scan);
  if (!dir) {
    *err = errno;
    close(scan);
    return names;
  }
  rewinddir(dir);
  errno = 0;
  while (struct dirent* e = readdir(dir)) {
    if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0'))) continue;
    names.emplace_back(e->d_name);
    errno = 0;
  }
  if (errno != 0) *err = errno;
  rewinddir(dir);
  closedir(dir);
  return names;
}

std::string join_rel(const std::string& rel, const std::string& name) { return rel.empty() ? name : rel + "/" + name; }

// The inode and ctime of every entry of the standby tree (the job, once its copy is done).
int walk_standby(int dfd, const std::string& rel, Manifest* m, const std::atomic<int32_t>* cancel, std::string* where) {
  int err = 0;
  std::vector<std::string> names = list_dir(dfd, &err);
  if (err) return *where = rel, -err;
  for (const std::string& name : names) {
    if (cancel && cancel->load()) return -ECANCELED;
    std::string crel = join_rel(rel, name);
    struct stat st;
    if (fstatat(dfd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) return *where = crel, -errno;
    auto it = m->entries.find(crel);
    if (it != m->entries.end()) {
      it->second.dino = st.st_ino;
      it->second.dctime_s = st.st_ctim.tv_sec;
      it->second.dctime_ns = st.st_ctim.tv_nsec;
    }
    if (S_ISDIR(st.st_mode)) {
      int fd = openat(dfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
      if (fd < 0) return *where = crel, -errno;
      int rc = walk_standby(fd, crel, m, cancel, where);
      close(fd);
      if (rc < 0) return rc;
    }
  }
  return 0;
}

// Whether FICLONE works in the directory `dirfd` (two unnamed files, one block).
bool clones_here(int dirfd) {
  int a = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  if (a < 0) return false;
  int b = openat(dirfd, ".", O_TMPFILE | O_RDWR | O_CLOEXEC, 0600);
  bool ok = false;
  if (b >= 0) {
    char block[4096];
    memset(block, 0x5a, sizeof block);
    ok = pwrite(a, block, sizeof block, 0) == static_cast<ssize_t>(sizeof block) && ioctl(b, FICLONE, a) == 0;
    close(b);
  }
  close(a);
  return ok;
}

int open_beneath(int root, const std::string& rel, int extra) {
  if (rel.empty()) return fcntl(root, F_DUPFD_CLOEXEC, 0);
  struct open_how how;
  memset(&how, 0, sizeof how);
  how.flags = O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | extra;
  how.resolve = RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS | RESOLVE_NO_MAGICLINKS | RESOLVE_NO_XDEV;
  return static_cast<int>(syscall(SYS_openat2, root, rel.c_str(), &how, sizeof how));
}

// Removes `name` in `dfd` (a whole tree for a directory); no error when it is gone.
int remove_at(int dfd, const char* name) {
  struct stat st;
  if (fstatat(dfd, name, &st, AT_SYMLINK_NOFOLLOW) < 0) return errno == ENOENT ? 0 : -errno;
  if (S_ISDIR(st.st_mode)) {
    int fd = openat(dfd, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0) return -errno;
    int err = 0;
    std::vector<std::string> names = list_dir(fd, &err);
    int rc = err ? -err : 0;
    for (size_t i = 0; rc == 0 && i < names.size(); i++) rc = remove_at(fd, names[i].c_str());
    close(fd);
    if (rc < 0) return rc;
    if (unlinkat(dfd, name, AT_REMOVEDIR) < 0 && errno != ENOENT) return -errno;
    return 0;
  }
  if (unlinkat(dfd, name, 0) < 0 && errno != ENOENT) return -errno;
  return 0;
}

// Every entry's stat and every directory's names, taken once before the
// checking pass decides anything: the source's and the standby's on two
// threads at once (on 2 CPUs the ~4000 stats of 2000 files, one after the
// other, were ~10 ms of kernel time, most of the pass).
struct TreeStat {
  struct Got {
    int err;
    struct stat st;
  };
  std::unordered_map<std::string, std::vector<std::string>> names;
  std::unordered_map<std::string, Got> stats;
  int err = 0;

  void walk(int fd, const std::string& rel) {
    int e = 0;
    std::vector<std::string> list = list_dir(fd, &e);
    if (e) {
      err = e;
      return;
    }
    for (const std::string& name : list) {
      std::string crel = join_rel(rel, name);
      Got g;
      g.err = fstatat(fd, name.c_str(), &g.st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
      if (g.err == 0 && S_ISDIR(g.st.st_mode)) {
        int c = openat(fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
        if (c >= 0) {
          walk(c, crel);
          close(c);
        }
      }
      stats.emplace(std::move(crel), g);
    }
    names.emplace(rel, std::move(list));
  }
};

// The checking pass over one standby tree.
struct Applier {
  Shared* sh;
  Copier* c;
  const Manifest* m;
  int64_t racy_from;  // an entry whose recorded ctime is at or after this counts as changed
  int sroot, droot;
  standby_stats* stats;
  std::unordered_map<std::string, struct stat> dir_stats;  // source directories' stats, for their times
  struct Member {
    std::string dir_rel, name;
    bool clean;
    struct stat st, ds;
  };
  std::map<std::pair<dev_t, ino_t>, std::vector<Member>> link_sets;
  std::unordered_set<std::string> retime;  // directories whose entries a hard-link set changed
  const TreeStat* stree = nullptr;  // taken before the pass (a directory it lacks is read now)
  const TreeStat* dtree = nullptr;

  // The names of `rel` in the snapshot `t`, else read now.
  static std::vector<std::string> names_of(const TreeStat* t, int fd, const std::string& rel, int* err) {
    *err = 0;
    if (t) {
      auto it = t->names.find(rel);
      if (it != t->names.end()) return it->second;
    }
    return list_dir(fd, err);
  }
  // The stat of `crel` (`name` in `fd`) from the snapshot `t`, else taken now; the errno or 0.
  static int stat_of(const TreeStat* t, int fd, const std::string& name, const std::string& crel, struct stat* st) {
    if (t) {
      auto it = t->stats.find(crel);
      if (it != t->stats.end()) {
        *st = it->second.st;
        return it->second.err;
      }
    }
    return fstatat(fd, name.c_str(), st, AT_SYMLINK_NOFOLLOW) == 0 ? 0 : errno;
  }

  int fail(const char* call, const std::string& rel, int e) { return sh->fail(call, rel, e); }

  bool clean_src(const Entry* e, const struct stat& ss) const {
    return e && same_but_atime(src_of(ss), e->src) && ns_of(e->src.ctime_s, e->src.ctime_ns) < racy_from;
  }
  static bool clean_dst(const Entry* e, bool have, const struct stat& ds) {
    return e && have && e->dino == ds.st_ino && e->dctime_s == ds.st_ctim.tv_sec && e->dctime_ns == ds.st_ctim.tv_nsec;
  }
  const Entry* entry(const std::string& rel) const {
    auto it = m->entries.find(rel);
    return it == m->entries.end() ? nullptr : &it->second;
  }

  // Made anew from the source, as the full copy makes it.
  int recreate(int sfd, int dfd, const std::string& dir_rel, const std::string& name) {
    int rc = remove_at(dfd, name.c_str());
    if (rc < 0) return fail("remove", join_rel(dir_rel, name), -rc);
    stats->recreated++;
    return c->copy_entry(sfd, dfd, name.c_str(), dir_rel, nullptr, false);
  }

  // Flushed at the end: a kept file whose atime was set, or (symlinks, special files) the whole file system.
  void flush_later(int dfd, const char* name, const struct stat& st) {
    if (sh->flags & COPY_NO_SYNC) return;
    if (S_ISREG(st.st_mode) || S_ISDIR(st.st_mode)) {
      int fd = openat(dfd, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (fd >= 0) return sh->defer_sync(fd);
    }
    std::lock_guard<std::mutex> g(sh->mu);
    sh->syncfs_instead = true;
  }

  int check_dir(int sfd, int dfd, const std::string& rel, bool* dirty) {
    int err = 0;
    std::vector<std::string> snames = names_of(stree, sfd, rel, &err);
    if (err) return fail("readdir", rel, err);
    std::vector<std::string> dnames = names_of(dtree, dfd, rel, &err);
    if (err) return fail("readdir", rel, err);
    std::unordered_set<std::string> in_src(snames.begin(), snames.end());
    for (const std::string& name : dnames) {
      if (in_src.count(name)) continue;
      int rc = remove_at(dfd, name.c_str());
      if (rc < 0) return fail("remove", join_rel(rel, name), -rc);
      stats->removed++;
      *dirty = true;
    }
    for (const std::string& name : snames) {
      if (sh->failed.load()) return sh->err;
      std::string crel = join_rel(rel, name);
      struct stat ss, ds;
      int serr = stat_of(stree, sfd, name, crel, &ss);
      if (serr) {
        if (serr != ENOENT) return fail("fstatat", crel, serr);
        int rc = remove_at(dfd, name.c_str());  // gone from the source meanwhile
        if (rc < 0) return fail("remove", crel, -rc);
        *dirty = true;
        continue;
      }
      int derr = stat_of(dtree, dfd, name, crel, &ds);
      bool have = derr == 0;
      if (!have && derr != ENOENT) return fail("fstatat", crel, derr);
      const Entry* e = entry(crel);
      bool clean = clean_src(e, ss) && clean_dst(e, have, ds);
      stats->entries++;
      if (S_ISDIR(ss.st_mode)) {
        if (!have || !S_ISDIR(ds.st_mode)) {
          int rc = recreate(sfd, dfd, rel, name);
          if (rc < 0) return rc;
          *dirty = true;
          continue;
        }
        int cs = openat(sfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
        if (cs < 0) return fail("open", crel, errno);
        int cd = openat(dfd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
        if (cd < 0) {
          int e2 = errno;
          close(cs);
          return fail("open", crel, e2);
        }
        dir_stats[crel] = ss;
        bool child_dirty = false;
        int rc = check_dir(cs, cd, crel, &child_dirty);
        bool touched = false;
        if (rc >= 0 && !clean) {
          rc = c->finish_fd(cs, cd, ss, crel, false);  // owner, xattrs (the source's only), mode, times
          stats->fixed++;
          touched = true;
        } else if (rc >= 0 && (child_dirty || !same_time(ss.st_atim, ds.st_atim))) {
          struct timespec ts[2] = {ss.st_atim, ss.st_mtim};
          if (futimens(cd, ts) < 0) rc = fail("futimens", crel, errno);
          stats->retimed++;
          touched = true;
        } else if (rc >= 0) {
          stats->kept++;
        }
        close(cs);
        if (rc >= 0 && touched && !(sh->flags & COPY_NO_SYNC)) sh->defer_sync(cd);
        else close(cd);
        if (rc < 0) return rc;
        continue;
      }
      if (ss.st_nlink > 1) {
        // Decided with the other names of its inode, once all are seen.
        link_sets[{ss.st_dev, ss.st_ino}].push_back(Member{rel, name, clean, ss, have ? ds : ss});
        continue;
      }
      if (clean) {
        stats->kept++;
        if (!same_time(ss.st_atim, ds.st_atim)) {
          struct timespec ts[2] = {ss.st_atim, ss.st_mtim};
          if (utimensat(dfd, name.c_str(), ts, AT_SYMLINK_NOFOLLOW) < 0) return fail("utimensat", crel, errno);
          stats->retimed++;
          flush_later(dfd, name.c_str(), ss);
        }
        continue;
      }
      int rc = recreate(sfd, dfd, rel, name);
      if (rc < 0) return rc;
      *dirty = true;
    }
    return sh->failed.load() ? sh->err : 0;
  }

  // Hard-linked sets: kept when every name is unchanged and no name was added
  // or removed (the manifest has as many names of that source inode); else
  // every name is made again (the first a copy, the others links to it).
  int settle_links() {
    std::map<std::pair<uint64_t, uint64_t>, size_t> recorded;
    for (const auto& kv : m->entries)
      if (!S_ISDIR(kv.second.src.mode) && kv.second.src.nlink > 1) recorded[{kv.second.src.dev, kv.second.src.ino}]++;
    for (auto& kv : link_sets) {
      std::vector<Member>& names = kv.second;
      bool clean = recorded[{static_cast<uint64_t>(kv.first.first), static_cast<uint64_t>(kv.first.second)}] == names.size();
      for (const Member& n : names) clean = clean && n.clean;
      if (clean) {
        stats->kept += names.size();
        if (!same_time(names[0].st.st_atim, names[0].ds.st_atim)) {
          int dd = open_beneath(droot, names[0].dir_rel, O_NOATIME);
          if (dd < 0) return fail("open", names[0].dir_rel, errno);
          struct timespec ts[2] = {names[0].st.st_atim, names[0].st.st_mtim};
          int rc = utimensat(dd, names[0].name.c_str(), ts, AT_SYMLINK_NOFOLLOW) < 0 ? fail("utimensat", join_rel(names[0].dir_rel, names[0].name), errno) : 0;
          if (rc == 0) flush_later(dd, names[0].name.c_str(), names[0].st);
          close(dd);
          if (rc < 0) return rc;
          stats->retimed++;
        }
        continue;
      }
      stats->link_sets_redone++;
      for (int pass = 0; pass < 2; pass++) {
        for (const Member& n : names) {
          int sd = open_beneath(sroot, n.dir_rel, O_NOATIME);
          if (sd < 0) return fail("open", n.dir_rel, errno);
          int dd = open_beneath(droot, n.dir_rel, O_NOATIME);
          if (dd < 0) {
            int e2 = errno;
            close(sd);
            return fail("open", n.dir_rel, e2);
          }
          int rc = 0;
          if (pass == 0) {
            // First every old name goes, then the names are made: the first made is the copy, the rest link to it.
            rc = remove_at(dd, n.name.c_str());
            if (rc < 0) rc = fail("remove", join_rel(n.dir_rel, n.name), -rc);
          } else {
            stats->recreated++;
            rc = c->copy_entry(sd, dd, n.name.c_str(), n.dir_rel, nullptr, false);
            retime.insert(n.dir_rel);
          }
          close(sd);
          close(dd);
          if (rc < 0) return rc;
        }
      }
    }
    return 0;
  }

  // The times of directories whose entries settle_links changed (their stats from the walk), deepest first.
  int retime_dirs() {
    std::vector<std::string> dirs(retime.begin(), retime.end());
    std::sort(dirs.begin(), dirs.end(), [](const std::string& a, const std::string& b) {
      return std::count(a.begin(), a.end(), '/') + !a.empty() > std::count(b.begin(), b.end(), '/') + !b.empty();
    });
    for (const std::string& rel : dirs) {
      if (rel.empty()) continue;  // the top: by the caller, last
      auto it = dir_stats.find(rel);
      if (it == dir_stats.end()) continue;  // made anew by copy_entry: its times are set already
      int dd = open_beneath(droot, rel, O_NOATIME);
      if (dd < 0) return fail("open", rel, errno);
      struct timespec ts[2] = {it->second.st_atim, it->second.st_mtim};
      int rc = futimens(dd, ts) < 0 ? fail("futimens", rel, errno) : 0;
      stats->retimed++;
      if (rc == 0 && !(sh->flags & COPY_NO_SYNC)) sh->defer_sync(dd);
      else close(dd);
      if (rc < 0) return rc;
    }
    return 0;
  }
};

int run_in_thread(bool idle, const std::function<int()>& fn) {
  int rc = 0;
  std::thread t([&]() {
    if (idle) become_idle();
    rc = fn();
  });
  t.join();
  return rc;
}

}  // namespace

int standby_make(const char* src, const char* dir, const char* label, int flags, const std::atomic<int32_t>* cancel, copy_stats* stats, std::string* where, const char** syscall_out) {
  *stats = copy_stats{};
  *where = "";
  *syscall_out = "standby";
  // A thread of its own: at the lowest priority, with its own umask (copy_files' walker unshares its own).
  return run_in_thread(true, [&]() -> int {
    Manifest m;
    m.started_ns = realtime_ns();  // before the first stat of the source
    m.label = label;
    // Only where the copy shares extents (probed in the parent, before
    // anything is made): elsewhere a standby would double the disk used.
    std::string dir_s(dir);
    int pfd = open(parent_of(dir_s).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (pfd < 0) return *syscall_out = "open", -errno;
    if (on_btrfs(pfd) || !clones_here(pfd)) {
      close(pfd);
      *syscall_out = "FICLONE";
      *where = "reflink";
      return -EOPNOTSUPP;
    }
    if (mkdirat(pfd, base_of(dir_s).c_str(), 0700) < 0) {
      int e = errno;
      close(pfd);
      return *syscall_out = "mkdir", -e;
    }
    int dirfd = openat(pfd, base_of(dir_s).c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    close(pfd);
    if (dirfd < 0) return *syscall_out = "open", -errno;
    int s = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
    if (s < 0) {
      int e = errno;
      close(dirfd);
      return *syscall_out = "open", -e;
    }
    struct stat top;
    int rc = 0;
    if (fstat(s, &top) < 0) rc = -errno, *syscall_out = "fstat";
    if (rc == 0 && mkdirat(dirfd, "tree", 0700) < 0) rc = -errno, *syscall_out = "mkdirat";
    int d = rc == 0 ? openat(dirfd, "tree", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME) : -1;
    if (rc == 0 && d < 0) rc = -errno, *syscall_out = "open";
    std::unordered_map<std::string, struct stat> record;
    if (rc == 0) {
      record.emplace("", top);
      CopyHooks hooks;
      hooks.cancel = cancel;
      hooks.record = &record;
      rc = copy_files(s, d, top, (flags & ~COPY_NO_SYNC) | COPY_IDLE | kCopyCloneOnly, stats, where, syscall_out, &hooks);
    }
    struct stat dst;
    if (rc == 0 && fstat(d, &dst) < 0) rc = -errno, *syscall_out = "fstat";
    if (rc == 0) {
      m.standby_dev = dst.st_dev;
      m.src_dev = top.st_dev;
      m.src_ino = top.st_ino;
      for (auto& kv : record) {
        Entry e;
        memset(&e, 0, sizeof e);
        e.src = src_of(kv.second);
        m.entries.emplace(kv.first, e);
      }
      Entry& root = m.entries[""];
      root.dino = dst.st_ino;
      root.dctime_s = dst.st_ctim.tv_sec;
      root.dctime_ns = dst.st_ctim.tv_nsec;
      rc = walk_standby(d, "", &m, cancel, where);
      if (rc < 0) *syscall_out = rc == -ECANCELED ? "cancel" : "fstatat";
    }
    if (rc == 0) {
      // Last, and flushed: the standby is complete once its manifest is there.
      std::string bytes = encode(m);
      int fd = openat(dirfd, "manifest.tmp", O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (fd < 0) rc = -errno, *syscall_out = "open";
      for (size_t at = 0; rc == 0 && at < bytes.size();) {
        ssize_t n = write(fd, bytes.data() + at, bytes.size() - at);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) rc = -errno, *syscall_out = "write";
        else at += n;
      }
      if (rc == 0 && fsync(fd) < 0) rc = -errno, *syscall_out = "fsync";
      if (fd >= 0) close(fd);
      if (rc == 0 && renameat(dirfd, "manifest.tmp", dirfd, "manifest") < 0) rc = -errno, *syscall_out = "rename";
      if (rc == 0 && fsync(dirfd) < 0) rc = -errno, *syscall_out = "fsync";
    }
    if (d >= 0) close(d);
    close(s);
    close(dirfd);
    return rc;
  });
}

int standby_info(const char* dir, std::string* label, int64_t* started_ns, std::string* why) {
  int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (dirfd < 0) {
    *why = strerror(errno);
    return -ESTALE;
  }
  Manifest m;
  int rc = read_manifest(dirfd, &m, why);
  close(dirfd);
  if (rc < 0) return rc;
  *label = m.label;
  *started_ns = m.started_ns;
  return 0;
}

int standby_apply(const char* src, const char* dir, const char* label, int64_t margin_ns, int flags, standby_stats* stats, std::string* where, const char** syscall_out, std::string* why) {
  *stats = standby_stats{};
  *where = "";
  *syscall_out = "standby";
  return run_in_thread(false, [&]() -> int {
    int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (dirfd < 0) return *why = std::string("cannot open the standby: ") + strerror(errno), -ESTALE;
    Manifest m;
    int rc = read_manifest(dirfd, &m, why);
    // Used from here on, whatever happens: a standby is never checked twice.
    if (rc == 0 && unlinkat(dirfd, "manifest", 0) < 0) rc = -ESTALE, *why = std::string("cannot remove the manifest: ") + strerror(errno);
    if (rc == 0 && m.label != label) rc = -ESTALE, *why = "made of revision " + m.label + ", not " + label;
    int64_t now = realtime_ns();
    if (rc == 0 && now < m.started_ns) rc = -ESTALE, *why = "the clock went back since the standby was made";
    int s = -1, t = -1;
    struct stat top, tst;
    if (rc == 0) {
      s = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
      if (s < 0 || fstat(s, &top) < 0) rc = -ESTALE, *why = std::string("cannot open the source: ") + strerror(errno);
      else if (top.st_dev != m.src_dev || top.st_ino != m.src_ino) rc = -ESTALE, *why = "the source directory is another one than the standby was made of";
    }
    if (rc == 0) {
      t = openat(dirfd, "tree", O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
      if (t < 0 || fstat(t, &tst) < 0) rc = -ESTALE, *why = std::string("cannot open the standby tree: ") + strerror(errno);
      else if (tst.st_dev != m.standby_dev) rc = -ESTALE, *why = "the standby is on another file system than it was made on";
    }
    if (rc == 0) {
      Shared sh;
      sh.flags = flags;
      sh.dst_root = t;
      sh.owner_known = false;  // its directories may be setgid: every new entry gets its owner by fchown
      sh.modes_exact = false;
      sh.strip_xattrs = true;  // a kept directory's xattrs, and what a default ACL gives a new entry, are the source's only
      Copier c(&sh);
      c.own_umask();
      Applier a{&sh, &c, &m, m.started_ns - margin_ns, s, t, stats, {}, {}, {}};
      // Both trees' stats first, side by side; then the decisions, which change the standby.
      TreeStat stree, dtree;
      std::thread helper([&]() { dtree.walk(t, ""); });
      stree.walk(s, "");
      helper.join();
      if (stree.err == 0 && dtree.err == 0) {
        a.stree = &stree;
        a.dtree = &dtree;
      }
      bool dirty = false;
      rc = a.check_dir(s, t, "", &dirty);
      if (rc >= 0) rc = a.settle_links();
      if (rc >= 0) rc = a.retime_dirs();
      if (rc >= 0) {
        const Entry* e = a.entry("");
        bool clean = a.clean_src(e, top) && Applier::clean_dst(e, true, tst);
        if (!clean) {
          rc = c.finish_fd(s, t, top, "", false);
          stats->fixed++;
        } else if (dirty || a.retime.count("") || !same_time(top.st_atim, tst.st_atim)) {
          struct timespec ts[2] = {top.st_atim, top.st_mtim};
          if (futimens(t, ts) < 0) rc = sh.fail("futimens", "", errno);
          stats->retimed++;
        }
        if (rc >= 0 && !clean) stats->entries++;
      }
      if (rc >= 0 && sh.failed.load()) rc = sh.err;
      bool changed = stats->recreated || stats->removed || stats->fixed || stats->retimed;
      if (rc >= 0 && changed && !(flags & COPY_NO_SYNC)) {
        rc = flush(&sh, t);
        if (rc >= 0 && !sh.syncfs_instead && fsync(t) < 0) rc = sh.fail("fsync", "", errno);
      } else {
        for (int fd : sh.to_sync) close(fd);
        sh.to_sync.clear();
      }
      if (rc < 0) {
        *where = sh.where;
        *syscall_out = sh.syscall ? sh.syscall : "standby";
        rc = sh.err ? sh.err : rc;
      }
    }
    if (t >= 0) close(t);
    if (s >= 0) close(s);
    close(dirfd);
    return rc;
  });
}

}  // namespace snapproc
