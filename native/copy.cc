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

#include <map>
#include <string>
#include <utility>
#include <vector>

namespace snapproc {

namespace {

struct Copier {
  int flags;
  copy_stats* stats;
  std::string* where;  // relative path of the entry that failed
  const char** syscall;
  int dst_root = -1;
  std::map<std::pair<dev_t, ino_t>, std::string> links;  // first copy of each multiply-linked inode
  std::vector<int> to_sync;                               // files with data, flushed at the end
  bool syncfs_instead = false;

  int fail(const char* call, const std::string& rel) {
    int e = errno;
    *syscall = call;
    *where = rel;
    return -e;
  }

  static std::string join(const std::string& rel, const char* name) {
    return rel.empty() ? std::string(name) : rel + "/" + name;
  }

  // Extended attributes: every name the source lists (namespaces the caller may read).
  // `fd` >= 0: by descriptor; else by path (symlinks, special files), not following.
  int copy_xattrs(int sfd, int dfd, const std::string& spath, const std::string& dpath, const std::string& rel) {
    if (flags & COPY_NO_XATTRS) return 0;
    std::vector<char> names(1024);
    ssize_t n;
    for (;;) {
      n = sfd >= 0 ? flistxattr(sfd, names.data(), names.size()) : llistxattr(spath.c_str(), names.data(), names.size());
      if (n >= 0) break;
      if (errno == ERANGE) {
        names.resize(names.size() * 4);
        continue;
      }
      if (errno == ENOTSUP) return 0;  // no xattrs on this file system: nothing to keep
      return fail("listxattr", rel);
    }
    std::vector<char> value(4096);
    for (ssize_t at = 0; at < n;) {
      const char* name = names.data() + at;
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
      stats->xattrs++;
    }
    return 0;
  }

  // Owner, xattrs (after chown: chown drops security.capability), mode (after chown:
  // chown drops setuid/setgid), times (last) of something opened as `dfd`.
  int finish_fd(int sfd, int dfd, const struct stat& st, const std::string& rel) {
    if (fchown(dfd, st.st_uid, st.st_gid) < 0) return fail("fchown", rel);
    int rc = copy_xattrs(sfd, dfd, "", "", rel);
    if (rc < 0) return rc;
    if (fchmod(dfd, st.st_mode & 07777) < 0) return fail("fchmod", rel);
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    if (futimens(dfd, ts) < 0) return fail("futimens", rel);
    return 0;
  }

  static std::string fd_path(int dirfd, const char* name) {
    return "/proc/self/fd/" + std::to_string(dirfd) + "/" + name;
  }

  // Symlinks and special files: by name in their directory, never following.
  int finish_at(int sdir, int ddir, const char* name, const struct stat& st, const std::string& rel, bool is_link) {
    if (fchownat(ddir, name, st.st_uid, st.st_gid, AT_SYMLINK_NOFOLLOW) < 0) return fail("fchownat", rel);
    int rc = copy_xattrs(-1, -1, fd_path(sdir, name), fd_path(ddir, name), rel);
    if (rc < 0) return rc;
    if (!is_link && fchmodat(ddir, name, st.st_mode & 07777, 0) < 0) return fail("fchmodat", rel);
    struct timespec ts[2] = {st.st_atim, st.st_mtim};
    if (utimensat(ddir, name, ts, AT_SYMLINK_NOFOLLOW) < 0) return fail("utimensat", rel);
    return 0;
  }

  // Contents of a regular file: a clone where possible, else the data extents only.
  int copy_data(int sfd, int dfd, const struct stat& st, const std::string& rel) {
    if (st.st_size == 0) return 0;
    if (!(flags & COPY_NO_CLONE) && ioctl(dfd, FICLONE, sfd) == 0) {
      stats->cloned++;
      return 1;  // the clone is metadata to flush
    }
    off_t end = st.st_size;
    off_t pos = 0;
    bool cfr = true;
    std::vector<char> buf;
    while (pos < end) {
      off_t data = lseek(sfd, pos, SEEK_DATA);
      if (data < 0) {
        if (errno == ENXIO) break;  // only a hole is left
        data = pos;                 // no SEEK_DATA: copy everything
      }
      off_t hole = lseek(sfd, data, SEEK_HOLE);
      if (hole < 0) hole = end;
      if (hole > end) hole = end;
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
        stats->bytes += n;
      }
      pos = hole;
    }
    if (ftruncate(dfd, end) < 0) return fail("ftruncate", rel);  // trailing hole
    return 1;  // data written: to be flushed
  }

  int copy_entry(int sdir, int ddir, const char* name, const std::string& rel) {
    struct stat st;
    if (fstatat(sdir, name, &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno == ENOENT) return 0;  // removed while we copied: not part of the tree any more
      return fail("fstatat", rel);
    }
    if (!S_ISDIR(st.st_mode) && st.st_nlink > 1) {
      auto key = std::make_pair(st.st_dev, st.st_ino);
      auto it = links.find(key);
      if (it != links.end()) {
        if (linkat(dst_root, it->second.c_str(), ddir, name, 0) < 0) return fail("linkat", rel);
        stats->hardlinks++;
        return 0;
      }
      links.emplace(key, rel);
    }
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
      int rc = copy_dir(s, d, rel);
      if (rc >= 0) rc = finish_fd(s, d, st, rel);
      if (rc >= 0 && !(flags & COPY_NO_SYNC) && fsync(d) < 0) rc = fail("fsync", rel);
      close(s);
      close(d);
      stats->dirs++;
      return rc;
    }
    if (S_ISREG(st.st_mode)) {
      int s = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC | O_NOATIME);
      if (s < 0 && errno == EPERM) s = openat(sdir, name, O_RDONLY | O_NOFOLLOW | O_CLOEXEC);
      if (s < 0) return fail("open", rel);
      int d = openat(ddir, name, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
      if (d < 0) {
        int rc = fail("open", rel);
        close(s);
        return rc;
      }
      int rc = copy_data(s, d, st, rel);
      bool wrote = rc == 1;
      if (rc >= 0) rc = finish_fd(s, d, st, rel);
      close(s);
      stats->files++;
      if (rc >= 0 && wrote && !(flags & COPY_NO_SYNC)) {
        if (syncfs_instead) {
          close(d);
        } else if (to_sync.size() < kSyncEach) {
          to_sync.push_back(d);
        } else {
          // Many files with data: one syncfs at the end flushes them all for less.
          for (int fd : to_sync) close(fd);
          to_sync.clear();
          close(d);
          syncfs_instead = true;
        }
      } else {
        close(d);
      }
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
      stats->symlinks++;
      return finish_at(sdir, ddir, name, st, rel, true);
    }
    // FIFOs, sockets, character and block devices: made anew, as cp -a does.
    if (mknodat(ddir, name, (st.st_mode & S_IFMT) | 0600, st.st_rdev) < 0) return fail("mknodat", rel);
    stats->special++;
    return finish_at(sdir, ddir, name, st, rel, false);
  }

  int copy_dir(int sfd, int dfd, const std::string& rel) {
    int scan = dup(sfd);
    if (scan < 0) return fail("dup", rel);
    DIR* dir = fdopendir(scan);
    if (!dir) {
      int rc = fail("fdopendir", rel);
      close(scan);
      return rc;
    }
    rewinddir(dir);  // the offset is shared with every dup of the fd: start from the first entry
    int rc = 0;
    errno = 0;
    while (struct dirent* e = readdir(dir)) {
      if (e->d_name[0] == '.' && (e->d_name[1] == '\0' || (e->d_name[1] == '.' && e->d_name[2] == '\0'))) continue;
      rc = copy_entry(sfd, dfd, e->d_name, join(rel, e->d_name));
      if (rc < 0) break;
      errno = 0;
    }
    if (rc >= 0 && errno != 0) rc = fail("readdir", rel);
    closedir(dir);
    return rc < 0 ? rc : 0;
  }

  int flush(int any_fd) {
    int rc = 0;
    for (int fd : to_sync) {
      if (rc >= 0 && fsync(fd) < 0) rc = fail("fsync", "");
      close(fd);
    }
    to_sync.clear();
    if (rc >= 0 && syncfs_instead && syncfs(any_fd) < 0) rc = fail("syncfs", "");
    return rc;
  }

  static constexpr size_t kSyncEach = 64;
};

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
  Copier c;
  c.flags = flags;
  c.stats = stats;
  c.where = where;
  c.syscall = syscall_out;
  c.dst_root = d;
  rc = c.copy_dir(s, d, "");
  if (rc >= 0) rc = c.finish_fd(s, d, st, "");
  if (rc >= 0 && !(flags & COPY_NO_SYNC)) rc = c.flush(d);
  else
    for (int fd : c.to_sync) close(fd);
  if (rc >= 0 && !(flags & COPY_NO_SYNC) && fsync(d) < 0) rc = c.fail("fsync", "");
  stats->dirs++;
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
