#include "engine/storage/tar.h"

#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>
#include <unistd.h>

#include <algorithm>
#include <ctime>
#include <map>
#include <memory>
#include <utility>
#include <vector>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"
#include "engine/storage/digest.h"

namespace cryo::storage {
namespace {

struct ReadArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};
struct WriteArchiveFree {
  void operator()(archive* a) const { archive_write_free(a); }
};
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
using ReadArchive = std::unique_ptr<archive, ReadArchiveFree>;
using WriteArchive = std::unique_ptr<archive, WriteArchiveFree>;
using Entry = std::unique_ptr<archive_entry, EntryFree>;

std::string archive_message(archive* a) {
  const char* msg = archive_error_string(a);
  return msg ? msg : "unknown libarchive error";
}

ReadArchive open_for_reading(const std::string& path, bool raw) {
  ReadArchive a(archive_read_new());
  if (!a) throw Error("archive_read_new failed");
  archive_read_support_filter_all(a.get());
  if (raw) {
    archive_read_support_format_raw(a.get());
  } else {
    archive_read_support_format_tar(a.get());
    archive_read_support_format_empty(a.get());
  }
  if (archive_read_open_filename(a.get(), path.c_str(), 1 << 16) != ARCHIVE_OK)
    throw Error("open archive " + path + ": " + archive_message(a.get()));
  return a;
}

[[noreturn]] void refuse(const std::string& entry, const std::string& why) {
  throw Error("refusing archive entry \"" + entry + "\": " + why);
}

// The path's components; refuses anything that could name a place outside the destination.
std::vector<std::string> safe_components(const char* raw_path) {
  if (!raw_path) throw Error("archive entry without a path name");
  std::string path(raw_path);
  if (!path.empty() && path[0] == '/') refuse(path, "absolute path");
  std::vector<std::string> out;
  for (std::string& c : split(path, '/')) {
    if (c.empty() || c == ".") continue;
    if (c == "..") refuse(path, "\"..\" component");
    out.push_back(std::move(c));
  }
  return out;
}

std::string joined(const std::vector<std::string>& comps, size_t count) {
  std::vector<std::string> head(comps.begin(), comps.begin() + static_cast<ptrdiff_t>(count));
  return join(head, "/");
}

// Opens comps[0..count) below root_fd one component at a time with O_NOFOLLOW, so a symlink (or a
// file) in the way is an error instead of a way out of the tree.
UniqueFd open_dir_beneath(int root_fd, const std::vector<std::string>& comps, size_t count,
                          bool create, const std::string& entry) {
  UniqueFd cur(::openat(root_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC));
  if (!cur) throw_errno("open extraction root");
  for (size_t i = 0; i < count; ++i) {
    const char* name = comps[i].c_str();
    int fd = ::openat(cur.get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    if (fd < 0 && errno == ENOENT && create) {
      if (::mkdirat(cur.get(), name, 0755) < 0 && errno != EEXIST)
        throw_errno("mkdir " + joined(comps, i + 1));
      fd = ::openat(cur.get(), name, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    }
    if (fd < 0) {
      if (errno == ELOOP || errno == ENOTDIR)
        refuse(entry, "\"" + joined(comps, i + 1) +
                          "\" is a symlink or not a directory; following it could escape the "
                          "destination");
      throw_errno("open directory " + joined(comps, i + 1));
    }
    cur = UniqueFd(fd);
  }
  return cur;
}

// The names in the directory open at `dir_fd`, but . and .. (`what` names it in errors). Reads
// through a description of its own, so the offset of `dir_fd` is left alone.
std::vector<std::string> directory_entries(int dir_fd, const std::string& what) {
  int fd = ::openat(dir_fd, ".", O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (fd < 0) throw_errno("open directory " + what);
  DIR* dir = ::fdopendir(fd);
  if (!dir) {
    int err = errno;
    ::close(fd);
    throw_errno("fdopendir " + what, err);
  }
  std::unique_ptr<DIR, int (*)(DIR*)> owned(dir, ::closedir);
  std::vector<std::string> names;
  while (dirent* d = ::readdir(dir)) {
    std::string name = d->d_name;
    if (name != "." && name != "..") names.push_back(name);
  }
  return names;
}

void remove_tree_at(int dir_fd, const std::string& name) {
  struct stat st;
  if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
    if (errno == ENOENT) return;
    throw_errno("stat " + name);
  }
  if (S_ISDIR(st.st_mode)) {
    UniqueFd dir(::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) throw_errno("open directory " + name);
    for (const std::string& child : directory_entries(dir.get(), name))
      remove_tree_at(dir.get(), child);
    if (::unlinkat(dir_fd, name.c_str(), AT_REMOVEDIR) < 0) throw_errno("rmdir " + name);
  } else if (::unlinkat(dir_fd, name.c_str(), 0) < 0) {
    throw_errno("unlink " + name);
  }
}

std::string proc_fd_path(int dir_fd, const std::string& name) {
  return "/proc/self/fd/" + std::to_string(dir_fd) + "/" + name;
}

// Sets the entry's xattrs on an open file (fd >= 0) or, for symlinks, on parent/name itself.
void apply_xattrs(archive_entry* e, int fd, int parent_fd, const std::string& name,
                  const std::string& entry) {
  const char* key;
  const void* value;
  size_t size;
  archive_entry_xattr_reset(e);
  while (archive_entry_xattr_next(e, &key, &value, &size) == ARCHIVE_OK) {
    // overlayfs's own xattrs (redirect, metacopy, origin...) would steer the kernel's lookups in
    // the layer stack; only whiteout entries may mark anything for overlayfs.
    if (starts_with(key, "trusted.overlay.")) {
      LOG_DEBUG << "dropping xattr " << key << " of " << entry;
      continue;
    }
    int rc = fd >= 0 ? ::fsetxattr(fd, key, value, size, 0)
                     : ::lsetxattr(proc_fd_path(parent_fd, name).c_str(), key, value, size, 0);
    if (rc < 0) throw_errno("setxattr " + std::string(key) + " on " + entry);
  }
}

struct DirTimes {
  std::vector<std::string> comps;
  timespec times[2];
};

void entry_times(archive_entry* e, timespec out[2]) {
  out[1].tv_sec = archive_entry_mtime(e);
  out[1].tv_nsec = archive_entry_mtime_nsec(e);
  if (archive_entry_atime_is_set(e)) {
    out[0].tv_sec = archive_entry_atime(e);
    out[0].tv_nsec = archive_entry_atime_nsec(e);
  } else {
    out[0] = out[1];
  }
}

void write_entry_data(archive* a, int fd, const std::string& entry) {
  const void* buf;
  size_t size;
  la_int64_t offset;
  for (;;) {
    int r = archive_read_data_block(a, &buf, &size, &offset);
    if (r == ARCHIVE_EOF) return;
    if (r < ARCHIVE_WARN) throw Error("read data of " + entry + ": " + archive_message(a));
    auto* p = static_cast<const char*>(buf);
    while (size > 0) {
      ssize_t n = ::pwrite(fd, p, size, offset);
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno("write " + entry);
      }
      p += n;
      offset += n;
      size -= static_cast<size_t>(n);
    }
  }
}

class Extractor {
 public:
  Extractor(int root_fd, const ExtractOptions& options) : root_fd_(root_fd), options_(options) {}

  void extract(archive* a, archive_entry* e) {
    std::string entry = archive_entry_pathname(e) ? archive_entry_pathname(e) : "";
    std::vector<std::string> comps = safe_components(archive_entry_pathname(e));
    mode_t type = archive_entry_filetype(e);
    const char* hardlink = archive_entry_hardlink(e);
    ++stats_.entries;
    if (comps.empty()) {
      if (type != AE_IFDIR || hardlink) refuse(entry, "empty path");
      set_owner_and_mode(root_fd_, e, entry);
      return;
    }
    const std::string& name = comps.back();
    UniqueFd parent = open_dir_beneath(root_fd_, comps, comps.size() - 1, true, entry);

    if (options_.oci_whiteouts && starts_with(name, ".wh.")) {
      whiteout(parent.get(), name, entry);
      return;
    }
    if (hardlink) {
      std::vector<std::string> target = safe_components(hardlink);
      if (target.empty()) refuse(entry, "hardlink to the root directory");
      UniqueFd target_parent = open_dir_beneath(root_fd_, target, target.size() - 1, false, entry);
      remove_tree_at(parent.get(), name);
      // Without AT_SYMLINK_FOLLOW a link to a symlink links the symlink itself, never its target.
      if (::linkat(target_parent.get(), target.back().c_str(), parent.get(), name.c_str(), 0) < 0)
        throw_errno("hardlink " + entry + " to " + hardlink);
      return;
    }
    switch (type) {
      case AE_IFDIR:
        directory(parent.get(), name, comps, e, entry);
        break;
      case AE_IFREG:
        regular(a, parent.get(), name, e, entry);
        break;
      case AE_IFLNK:
        symlink(parent.get(), name, e, entry);
        break;
      case AE_IFCHR:
      case AE_IFBLK:
      case AE_IFIFO:
        special(parent.get(), name, type, e, entry);
        break;
      case AE_IFSOCK:
        LOG_DEBUG << "skipping socket " << entry << " in archive";
        break;
      default:
        refuse(entry, "unsupported file type " + std::to_string(type));
    }
  }

  // Directory times last: creating their children changed them.
  void finish() {
    for (auto it = dir_times_.rbegin(); it != dir_times_.rend(); ++it) {
      try {
        UniqueFd dir = open_dir_beneath(root_fd_, it->comps, it->comps.size(), false, "");
        if (::futimens(dir.get(), it->times) < 0) throw_errno("futimens");
      } catch (const Error& err) {
        LOG_DEBUG << "not restoring times of " << join(it->comps, "/") << ": " << err.what();
      }
    }
  }

  const ExtractStats& stats() const { return stats_; }

 private:
  void whiteout(int parent_fd, const std::string& name, const std::string& entry) {
    if (name == ".wh..wh..opq") {
      if (::fsetxattr(parent_fd, "trusted.overlay.opaque", "y", 1, 0) < 0)
        throw_errno("set trusted.overlay.opaque for " + entry);
      return;
    }
    std::string hidden = name.substr(4);
    if (hidden.empty() || hidden == "." || hidden == "..")
      refuse(entry, "whiteout of an invalid name");
    remove_tree_at(parent_fd, hidden);
    if (::mknodat(parent_fd, hidden.c_str(), S_IFCHR | 0000, makedev(0, 0)) < 0)
      throw_errno("mknod whiteout for " + entry);
    if (::fchownat(parent_fd, hidden.c_str(), 0, 0, AT_SYMLINK_NOFOLLOW) < 0)
      throw_errno("chown whiteout for " + entry);
  }

  void set_owner_and_mode(int fd, archive_entry* e, const std::string& entry) {
    if (options_.preserve_owner && ::fchown(fd, static_cast<uid_t>(archive_entry_uid(e)),
                                            static_cast<gid_t>(archive_entry_gid(e))) < 0)
      throw_errno("chown " + entry);
    // After chown, which clears set-id bits.
    if (::fchmod(fd, archive_entry_perm(e)) < 0) throw_errno("chmod " + entry);
  }

  void directory(int parent_fd, const std::string& name, const std::vector<std::string>& comps,
                 archive_entry* e, const std::string& entry) {
    struct stat st;
    if (::fstatat(parent_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) == 0 && !S_ISDIR(st.st_mode))
      remove_tree_at(parent_fd, name);
    if (::mkdirat(parent_fd, name.c_str(), 0700) < 0 && errno != EEXIST)
      throw_errno("mkdir " + entry);
    UniqueFd dir(
        ::openat(parent_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
    if (!dir) throw_errno("open directory " + entry);
    set_owner_and_mode(dir.get(), e, entry);
    apply_xattrs(e, dir.get(), parent_fd, name, entry);
    DirTimes times{comps, {}};
    entry_times(e, times.times);
    dir_times_.push_back(std::move(times));
  }

  void regular(archive* a, int parent_fd, const std::string& name, archive_entry* e,
               const std::string& entry) {
    remove_tree_at(parent_fd, name);
    UniqueFd fd(::openat(parent_fd, name.c_str(),
                         O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
    if (!fd) throw_errno("create " + entry);
    write_entry_data(a, fd.get(), entry);
    if (archive_entry_size_is_set(e)) {
      if (::ftruncate(fd.get(), archive_entry_size(e)) < 0) throw_errno("truncate " + entry);
      stats_.regular_bytes += static_cast<uint64_t>(archive_entry_size(e));
    }
    set_owner_and_mode(fd.get(), e, entry);
    apply_xattrs(e, fd.get(), parent_fd, name, entry);
    timespec times[2];
    entry_times(e, times);
    if (::futimens(fd.get(), times) < 0) throw_errno("futimens " + entry);
  }

  void symlink(int parent_fd, const std::string& name, archive_entry* e, const std::string& entry) {
    const char* target = archive_entry_symlink(e);
    if (!target) refuse(entry, "symlink without a target");
    remove_tree_at(parent_fd, name);
    // The target is stored as is: it is only ever resolved inside the container's root.
    if (::symlinkat(target, parent_fd, name.c_str()) < 0) throw_errno("symlink " + entry);
    chown_nofollow(parent_fd, name, e, entry);
    apply_xattrs(e, -1, parent_fd, name, entry);
    timespec times[2];
    entry_times(e, times);
    if (::utimensat(parent_fd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0)
      throw_errno("utimensat " + entry);
  }

  void special(int parent_fd, const std::string& name, mode_t type, archive_entry* e,
               const std::string& entry) {
    remove_tree_at(parent_fd, name);
    dev_t dev = makedev(archive_entry_rdevmajor(e), archive_entry_rdevminor(e));
    if (::mknodat(parent_fd, name.c_str(), type | 0600, type == AE_IFIFO ? 0 : dev) < 0)
      throw_errno("mknod " + entry);
    chown_nofollow(parent_fd, name, e, entry);
    if (::fchmodat(parent_fd, name.c_str(), archive_entry_perm(e), 0) < 0)
      throw_errno("chmod " + entry);
    apply_xattrs(e, -1, parent_fd, name, entry);
    timespec times[2];
    entry_times(e, times);
    if (::utimensat(parent_fd, name.c_str(), times, AT_SYMLINK_NOFOLLOW) < 0)
      throw_errno("utimensat " + entry);
  }

  void chown_nofollow(int parent_fd, const std::string& name, archive_entry* e,
                      const std::string& entry) {
    if (!options_.preserve_owner) return;
    if (::fchownat(parent_fd, name.c_str(), static_cast<uid_t>(archive_entry_uid(e)),
                   static_cast<gid_t>(archive_entry_gid(e)), AT_SYMLINK_NOFOLLOW) < 0)
      throw_errno("chown " + entry);
  }

  int root_fd_;
  ExtractOptions options_;
  ExtractStats stats_;
  std::vector<DirTimes> dir_times_;
};

// --- creation ---

class TarWriter {
 public:
  TarWriter(archive* a, const CreateOptions& options) : a_(a), options_(options) {}

  void walk(int dir_fd, const std::string& prefix) {
    for (const std::string& name : sorted_children(dir_fd, prefix)) {
      std::string rel = prefix.empty() ? name : prefix + "/" + name;
      struct stat st;
      if (::fstatat(dir_fd, name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
        if (errno == ENOENT) continue;  // removed while we walk
        throw_errno("stat " + rel);
      }
      Entry entry(archive_entry_new());
      archive_entry_copy_stat(entry.get(), &st);
      archive_entry_set_pathname(entry.get(), rel.c_str());

      if (S_ISCHR(st.st_mode) && st.st_rdev == 0 && options_.overlay_whiteouts_to_oci) {
        std::string wh = (prefix.empty() ? "" : prefix + "/") + ".wh." + name;
        add_empty_file(wh, st);
      } else if (S_ISREG(st.st_mode)) {
        regular(dir_fd, name, rel, st, entry.get());
      } else if (S_ISDIR(st.st_mode)) {
        UniqueFd sub(
            ::openat(dir_fd, name.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC));
        if (!sub) throw_errno("open directory " + rel);
        bool opaque = add_xattrs(sub.get(), entry.get(), rel);
        write_header(entry.get(), rel);
        if (opaque) add_empty_file(rel + "/.wh..wh..opq", st);
        walk(sub.get(), rel);
      } else if (S_ISLNK(st.st_mode)) {
        std::string target = read_link_at(dir_fd, name, rel);
        archive_entry_set_symlink(entry.get(), target.c_str());
        write_header(entry.get(), rel);
      } else if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode) || S_ISFIFO(st.st_mode)) {
        write_header(entry.get(), rel);
      } else {
        LOG_DEBUG << "not archiving socket " << rel;
      }
    }
  }

 private:
  std::vector<std::string> sorted_children(int dir_fd, const std::string& prefix) {
    std::vector<std::string> names = directory_entries(dir_fd, prefix.empty() ? "." : prefix);
    std::sort(names.begin(), names.end());
    return names;
  }

  void regular(int dir_fd, const std::string& name, const std::string& rel, const struct stat& st,
               archive_entry* entry) {
    if (st.st_nlink > 1) {
      auto key = std::make_pair(st.st_dev, st.st_ino);
      auto it = links_.find(key);
      if (it != links_.end()) {
        archive_entry_set_hardlink(entry, it->second.c_str());
        archive_entry_set_size(entry, 0);
        write_header(entry, rel);
        return;
      }
      links_[key] = rel;
    }
    UniqueFd fd(
        ::openat(dir_fd, name.c_str(), O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY | O_CLOEXEC));
    if (!fd) throw_errno("open " + rel);
    struct stat now;
    if (::fstat(fd.get(), &now) < 0) throw_errno("fstat " + rel);
    if (now.st_ino != st.st_ino || !S_ISREG(now.st_mode))
      throw Error("archiving " + rel + ": file replaced while reading it");
    add_xattrs(fd.get(), entry, rel);
    write_header(entry, rel);
    char buf[1 << 16];
    int64_t left = st.st_size;
    while (left > 0) {
      ssize_t n = ::read(fd.get(), buf, static_cast<size_t>(std::min<int64_t>(left, sizeof buf)));
      if (n < 0) {
        if (errno == EINTR) continue;
        throw_errno("read " + rel);
      }
      if (n == 0) break;  // shrank meanwhile: libarchive pads the entry to its declared size
      if (archive_write_data(a_, buf, static_cast<size_t>(n)) < 0)
        throw Error("write " + rel + " to archive: " + archive_message(a_));
      left -= n;
    }
  }

  // Copies xattrs of an open file into the entry; returns whether it is an opaque overlay dir.
  bool add_xattrs(int fd, archive_entry* entry, const std::string& rel) {
    ssize_t len = ::flistxattr(fd, nullptr, 0);
    if (len < 0) {
      if (errno == ENOTSUP) return false;
      throw_errno("listxattr " + rel);
    }
    std::string names(static_cast<size_t>(len), '\0');
    len = ::flistxattr(fd, names.data(), names.size());
    if (len < 0) throw_errno("listxattr " + rel);
    names.resize(static_cast<size_t>(len));
    bool opaque = false;
    for (const std::string& key : split(names, '\0')) {
      if (key.empty()) continue;
      ssize_t vlen = ::fgetxattr(fd, key.c_str(), nullptr, 0);
      if (vlen < 0) throw_errno("getxattr " + key + " of " + rel);
      std::string value(static_cast<size_t>(vlen), '\0');
      vlen = ::fgetxattr(fd, key.c_str(), value.data(), value.size());
      if (vlen < 0) throw_errno("getxattr " + key + " of " + rel);
      value.resize(static_cast<size_t>(vlen));
      if (options_.overlay_whiteouts_to_oci && starts_with(key, "trusted.overlay.")) {
        if (key == "trusted.overlay.opaque" && value == "y") opaque = true;
        continue;
      }
      archive_entry_xattr_add_entry(entry, key.c_str(), value.data(), value.size());
    }
    return opaque;
  }

  static std::string read_link_at(int dir_fd, const std::string& name, const std::string& rel) {
    std::string buf(4096, '\0');
    ssize_t n = ::readlinkat(dir_fd, name.c_str(), buf.data(), buf.size());
    if (n < 0) throw_errno("readlink " + rel);
    buf.resize(static_cast<size_t>(n));
    return buf;
  }

  void add_empty_file(const std::string& path, const struct stat& like) {
    Entry entry(archive_entry_new());
    archive_entry_set_pathname(entry.get(), path.c_str());
    archive_entry_set_filetype(entry.get(), AE_IFREG);
    archive_entry_set_perm(entry.get(), 0);
    archive_entry_set_size(entry.get(), 0);
    archive_entry_set_mtime(entry.get(), like.st_mtim.tv_sec, like.st_mtim.tv_nsec);
    write_header(entry.get(), path);
  }

  void write_header(archive_entry* entry, const std::string& rel) {
    if (archive_write_header(a_, entry) < ARCHIVE_WARN)
      throw Error("write header of " + rel + " to archive: " + archive_message(a_));
  }

  archive* a_;
  CreateOptions options_;
  std::map<std::pair<dev_t, ino_t>, std::string> links_;
};

}  // namespace

ExtractStats extract_tar(const std::string& archive_path, const std::string& dest,
                         const ExtractOptions& options) {
  return with_context("extracting " + archive_path + " into " + dest, [&] {
    UniqueFd root = fs::open_or_throw(dest, O_RDONLY | O_DIRECTORY);
    ReadArchive a = open_for_reading(archive_path, false);
    Extractor extractor(root.get(), options);
    for (;;) {
      archive_entry* e = nullptr;
      int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r < ARCHIVE_WARN) throw Error("read archive header: " + archive_message(a.get()));
      extractor.extract(a.get(), e);
    }
    extractor.finish();
    return extractor.stats();
  });
}

void create_tar(const std::string& dir, const std::string& out_path, const CreateOptions& options) {
  with_context("archiving " + dir + " into " + out_path, [&] {
    UniqueFd root = fs::open_or_throw(dir, O_RDONLY | O_DIRECTORY);
    WriteArchive a(archive_write_new());
    if (!a) throw Error("archive_write_new failed");
    archive_write_set_format_pax_restricted(a.get());
    int r = ARCHIVE_OK;
    if (options.compression == Compression::kGzip) r = archive_write_add_filter_gzip(a.get());
    if (options.compression == Compression::kZstd) r = archive_write_add_filter_zstd(a.get());
    if (r != ARCHIVE_OK) throw Error("compression filter: " + archive_message(a.get()));
    if (archive_write_open_filename(a.get(), out_path.c_str()) != ARCHIVE_OK)
      throw Error("open: " + archive_message(a.get()));
    TarWriter writer(a.get(), options);
    writer.walk(root.get(), "");
    if (archive_write_close(a.get()) != ARCHIVE_OK)
      throw Error("close: " + archive_message(a.get()));
  });
}

void TarBuilder::Free::operator()(archive* a) const {
  archive_write_free(a);
}

TarBuilder::TarBuilder(const std::string& out_path, Compression compression)
    : out_path_(out_path), archive_(archive_write_new()) {
  if (!archive_) throw Error("archive_write_new failed");
  archive_write_set_format_pax_restricted(archive_.get());
  int r = ARCHIVE_OK;
  if (compression == Compression::kGzip) r = archive_write_add_filter_gzip(archive_.get());
  if (compression == Compression::kZstd) r = archive_write_add_filter_zstd(archive_.get());
  if (r != ARCHIVE_OK) throw Error("compression filter: " + archive_message(archive_.get()));
  if (archive_write_open_filename(archive_.get(), out_path.c_str()) != ARCHIVE_OK)
    throw Error("open " + out_path + ": " + archive_message(archive_.get()));
}

TarBuilder::~TarBuilder() = default;

namespace {
Entry new_entry(const std::string& name, mode_t type, mode_t perm, int64_t size) {
  Entry entry(archive_entry_new());
  archive_entry_set_pathname(entry.get(), name.c_str());
  archive_entry_set_filetype(entry.get(), type);
  archive_entry_set_perm(entry.get(), perm);
  archive_entry_set_size(entry.get(), size);
  archive_entry_set_mtime(entry.get(), ::time(nullptr), 0);
  return entry;
}
}  // namespace

void TarBuilder::add_directory(const std::string& name) {
  Entry entry = new_entry(name, AE_IFDIR, 0755, 0);
  if (archive_write_header(archive_.get(), entry.get()) < ARCHIVE_WARN)
    throw Error("write " + name + " to " + out_path_ + ": " + archive_message(archive_.get()));
}

void TarBuilder::add_bytes(const std::string& name, std::string_view data) {
  Entry entry = new_entry(name, AE_IFREG, 0644, static_cast<int64_t>(data.size()));
  if (archive_write_header(archive_.get(), entry.get()) < ARCHIVE_WARN ||
      archive_write_data(archive_.get(), data.data(), data.size()) < 0)
    throw Error("write " + name + " to " + out_path_ + ": " + archive_message(archive_.get()));
}

void TarBuilder::add_file(const std::string& name, const std::string& source_path) {
  UniqueFd fd = fs::open_or_throw(source_path, O_RDONLY);
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) throw_errno("fstat " + source_path);
  Entry entry = new_entry(name, AE_IFREG, 0644, st.st_size);
  if (archive_write_header(archive_.get(), entry.get()) < ARCHIVE_WARN)
    throw Error("write " + name + " to " + out_path_ + ": " + archive_message(archive_.get()));
  char buf[1 << 16];
  int64_t left = st.st_size;
  while (left > 0) {
    ssize_t n = ::read(fd.get(), buf, static_cast<size_t>(std::min<int64_t>(left, sizeof buf)));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read " + source_path);
    }
    if (n == 0) throw Error("read " + source_path + ": file shrank while archiving it");
    if (archive_write_data(archive_.get(), buf, static_cast<size_t>(n)) < 0)
      throw Error("write " + name + " to " + out_path_ + ": " + archive_message(archive_.get()));
    left -= n;
  }
}

void TarBuilder::close() {
  if (archive_write_close(archive_.get()) != ARCHIVE_OK)
    throw Error("close " + out_path_ + ": " + archive_message(archive_.get()));
}

std::string decompress_file(const std::string& in_path, const std::string& out_path) {
  return with_context("decompressing " + in_path, [&] {
    ReadArchive a = open_for_reading(in_path, true);
    archive_entry* e = nullptr;
    if (archive_read_next_header(a.get(), &e) != ARCHIVE_OK)
      throw Error("read: " + archive_message(a.get()));
    UniqueFd out = fs::open_or_throw(out_path, O_WRONLY | O_CREAT | O_TRUNC, 0600);
    Sha256 hash;
    char buf[1 << 16];
    for (;;) {
      la_ssize_t n = archive_read_data(a.get(), buf, sizeof buf);
      if (n < 0) throw Error("read: " + archive_message(a.get()));
      if (n == 0) break;
      hash.update(buf, static_cast<size_t>(n));
      fs::write_all(out.get(), buf, static_cast<size_t>(n), out_path);
    }
    return hash.hex_digest();
  });
}

}  // namespace cryo::storage
