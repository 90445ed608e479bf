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
#include <atomic>
#include <condition_variable>
#include <deque>
#include <iterator>
#include <map>
#include <memory>
#include <mutex>
#include <thread>
#include <string>
#include <utility>
#include <vector>

namespace snapproc {

namespace {

// The file-by-file copy. One walker thread reads the source tree depth
// first, makes each directory and copies symlinks, special files and hard
// links itself; regular files (the bulk of the cost: on XFS each clone and
// each create is a transaction of its own) go to a small pool of worker
// threads as one batch per directory (or per kBatch files of a larger
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
  int copy_xattrs(int sfd, int dfd, const std::string& spath, const std::string& dpath, const std::string& rel) {
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
  int copy_regular(int sdir, int ddir, const char* name, const struct stat& st, const std::string& rel) {
    int s = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
    if (s < 0 && errno == EPERM) s = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
    if (s < 0) {
      if (errno == ENOENT) return 0;  // removed while we copied
      return fail("open", rel);
    }
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
    if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) return 0;  // removed while we copied: not part of the tree any more
      return fail("fstatat", join(dir_rel, name));
    }
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
      int s = openat(sdir, name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
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
    {
      std::lock_guard<std::mutex> g(sh->mu);
      sh->outstanding += batch->files.size();
      sh->queue.push_back(std::move(*batch));
    }
    batch->files.clear();
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

// The file-by-file copy of the open directory `s` into the new, open, empty `d`.
int copy_files(int s, int d, const struct stat& st, int flags, copy_stats* stats, std::string* where, const char** syscall_out) {
  Shared sh;
  sh.flags = flags;
  sh.dst_root = d;
  struct stat dst;
  if (fstat(d, &dst) == 0 && !(dst.st_mode & S_ISGID)) {
    sh.owner_known = true;
    sh.uid = dst.st_uid;
    sh.gid = dst.st_gid;
  }
  // A default ACL where the copy is made would decide created modes (no umask applies then).
  sh.modes_exact = fgetxattr(d, "system.posix_acl_default", nullptr, 0) < 0 && (errno == ENODATA || errno == ENOTSUP);
  int workers = copy_threads();
  int rc = 0;
  // The walker runs on a thread of its own too: its umask is its own.
  std::thread walker([&]() {
    Copier c(&sh);
    c.own_umask();
    std::vector<std::thread> pool;
    std::vector<std::unique_ptr<Copier>> copiers;
    for (int i = 0; i < workers; i++) {
      copiers.emplace_back(new Copier(&sh));
      Copier* w = copiers.back().get();
      pool.emplace_back([w]() { w->work(); });
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
  int s = open(src, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
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

}  // namespace snapproc
