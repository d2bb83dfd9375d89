// inotify: every watch (wd, mask, watched inode). The inode is named in fdinfo by a file handle;
// the dumper opens it with open_by_handle_at through the mount of its file system in the dumped
// process's mount namespace and records its path; where handles cannot be opened (overlayfs
// without nfs_export) it searches the inode number under the mount instead. At restore the watches
// are added again in wd order. Watch descriptors are allocated cyclically per instance (1, 2, ...
// never reusing a removed one until wrap-around), so a gap in the dumped wds is skipped by adding
// and removing a throwaway watch (on a memfd) until the next wd is the dumped one; the IN_IGNORED
// events those removals queue are read away. Events queued but not read at dump time are lost.
#include <fcntl.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <sstream>
#include <vector>

#include "checkpoint/file_kinds/fdinfo.h"

namespace cryo::ckpt::files {

namespace {

// Gaps larger than this in the wd sequence are refused (each skipped wd costs two syscalls).
constexpr int kMaxSkippedWds = 1 << 20;
// Entries looked at when searching a watched inode by walking its file system.
constexpr size_t kMaxWalkedEntries = 1 << 20;

bool inotify_claims(const DumpedFd& fd) {
  return fd.link == "anon_inode:inotify";
}

struct Watch {
  int wd = 0;
  unsigned long ino = 0;
  unsigned sdev = 0;  // kernel dev_t: major << 20 | minor
  unsigned mask = 0;
  unsigned ignored_mask = 0;
  unsigned handle_bytes = 0;
  int handle_type = 0;
  std::string handle_hex;
};

Watch parse_watch(const std::string& line) {
  Watch w;
  char handle[2 * MAX_HANDLE_SZ + 1] = {};
  int n = std::sscanf(line.c_str(),
                      "inotify wd:%x ino:%lx sdev:%x mask:%x ignored_mask:%x fhandle-bytes:%x "
                      "fhandle-type:%x f_handle:%256s",
                      reinterpret_cast<unsigned*>(&w.wd), &w.ino, &w.sdev, &w.mask, &w.ignored_mask,
                      &w.handle_bytes, reinterpret_cast<unsigned*>(&w.handle_type), handle);
  if (n != 8 || w.handle_bytes > MAX_HANDLE_SZ || std::strlen(handle) != 2 * w.handle_bytes)
    throw Error("fdinfo: unparsable inotify line '" + line + "'");
  w.handle_hex = handle;
  return w;
}

// The mount points, in the namespace of `pid`, of the file system with kernel dev_t `sdev`.
std::vector<std::string> mount_points_of(pid_t pid, unsigned sdev) {
  std::string wanted = std::to_string(sdev >> 20) + ":" + std::to_string(sdev & 0xfffff);
  std::vector<std::string> out;
  for (const std::string& line :
       split(fs::read_file("/proc/" + std::to_string(pid) + "/mountinfo"), '\n')) {
    std::istringstream in(line);
    std::string id, parent, dev, root, mount_point;
    if (!(in >> id >> parent >> dev >> root >> mount_point)) continue;
    // mountinfo escapes spaces and such as \ooo; such mount points are not handled.
    if (dev == wanted && mount_point.find('\\') == std::string::npos) out.push_back(mount_point);
  }
  return out;
}

// The path under `mount_point` (as the process sees it; reached through `root`) of inode `ino` of
// the file system mounted there, found by walking it without crossing into other mounts; empty
// when not found within kMaxWalkedEntries entries. For file systems whose handles cannot be
// opened (overlayfs without nfs_export, the usual container root).
std::string find_by_walk(const std::string& root, const std::string& mount_point, unsigned sdev,
                         unsigned long ino) {
  namespace stdfs = std::filesystem;
  const dev_t dev = makedev(sdev >> 20, sdev & 0xfffff);
  const stdfs::path top = root + mount_point;
  struct stat st;
  if (::stat(top.c_str(), &st) < 0 || st.st_dev != dev) return {};
  if (st.st_ino == ino) return mount_point;
  std::error_code ec;
  stdfs::recursive_directory_iterator it(top, stdfs::directory_options::skip_permission_denied, ec);
  size_t walked = 0;
  for (; !ec && it != stdfs::recursive_directory_iterator(); it.increment(ec)) {
    if (++walked > kMaxWalkedEntries) break;
    if (::lstat(it->path().c_str(), &st) < 0) continue;
    if (st.st_dev != dev) {
      it.disable_recursion_pending();
      continue;
    }
    if (st.st_ino == ino) {
      std::string relative = it->path().lexically_relative(top).string();
      return mount_point == "/" ? "/" + relative : mount_point + "/" + relative;
    }
  }
  return {};
}

// The path of the watched inode, as the dumped process sees it.
std::string watched_path(const DumpedFd& fd, const Watch& w) {
  std::vector<unsigned char> storage(sizeof(struct file_handle) + w.handle_bytes);
  auto* handle = reinterpret_cast<struct file_handle*>(storage.data());
  handle->handle_bytes = w.handle_bytes;
  handle->handle_type = w.handle_type;
  for (unsigned i = 0; i < w.handle_bytes; ++i)
    handle->f_handle[i] = static_cast<unsigned char>(
        parse_unsigned(w.handle_hex.substr(2 * i, 2), 16, "inotify f_handle"));
  std::string root = "/proc/" + std::to_string(fd.pid) + "/root";
  std::string tried;
  for (const std::string& mount_point : mount_points_of(fd.pid, w.sdev)) {
    // open_by_handle_at refuses an O_PATH mount fd.
    int mount_fd = ::open((root + mount_point).c_str(), O_RDONLY | O_CLOEXEC | O_NONBLOCK);
    if (mount_fd < 0) continue;
    UniqueFd mount(mount_fd);
    int found = ::open_by_handle_at(mount.get(), handle, O_PATH | O_CLOEXEC);
    if (found < 0) {
      tried += " " + mount_point + " (" + std::strerror(errno) + ")";
      continue;
    }
    UniqueFd watched(found);
    struct stat st;
    if (::fstat(watched.get(), &st) < 0) throw_errno("fstat");
    if (st.st_ino != w.ino) continue;
    std::string path = fs::read_link("/proc/self/fd/" + std::to_string(watched.get()));
    if (path.empty() || path[0] != '/' || path.find(" (deleted)") != std::string::npos) {
      tried += " " + mount_point + " (gave " + path + ")";
      continue;
    }
    return path;
  }
  for (const std::string& mount_point : mount_points_of(fd.pid, w.sdev)) {
    std::string path = find_by_walk(root, mount_point, w.sdev, w.ino);
    if (!path.empty()) return path;
  }
  throw Error("inotify watch " + std::to_string(w.wd) + " on inode " + std::to_string(w.ino) +
              ": cannot find its path (a deleted file, or no mount of its file system): tried" +
              (tried.empty() ? std::string(" no mount") : tried));
}

void inotify_dump(DumpContext&, const DumpedFd& fd, json& description) {
  std::string info = read_fdinfo(fd);
  json watches = json::array();
  for (const std::string& line : fdinfo_lines(info, "inotify wd:")) {
    Watch w = parse_watch(line);
    if (w.ignored_mask != 0)
      throw Error("not supported yet: an inotify watch with an ignored mask");
    watches.push_back({{"wd", w.wd}, {"mask", w.mask}, {"path", watched_path(fd, w)}});
  }
  std::sort(watches.begin(), watches.end(),
            [](const json& a, const json& b) { return a.at("wd") < b.at("wd"); });
  description["kind"] = "inotify";
  description["watches"] = std::move(watches);
}

// Reads every queued event away (the fd is non-blocking).
void drain_events(int fd) {
  alignas(struct inotify_event) char buf[16384];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n > 0) continue;
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno != EAGAIN) throw_errno("read inotify events");
    return;
  }
}

UniqueFd inotify_open(RestoreContext& ctx, const json& description) {
  UniqueFd fd(::inotify_init1(IN_CLOEXEC | IN_NONBLOCK));
  if (!fd) throw_errno("inotify_init1");
  UniqueFd spare;  // the inode of the throwaway watches
  int next_wd = 1;
  for (const json& w : description.at("watches")) {
    auto wd = w.at("wd").get<int>();
    auto path = w.at("path").get<std::string>();
    if (wd < next_wd) throw Error("inotify watches out of order in files.img");
    if (wd - next_wd > kMaxSkippedWds)
      throw Error("not supported yet: inotify wd " + std::to_string(wd) + " after a gap of " +
                  std::to_string(wd - next_wd) + " removed watches");
    while (next_wd < wd) {
      if (!spare) {
        spare = UniqueFd(::memfd_create("cryo-inotify-gap", MFD_CLOEXEC));
        if (!spare) throw_errno("memfd_create");
      }
      std::string spare_path = "/proc/self/fd/" + std::to_string(spare.get());
      int got = ::inotify_add_watch(fd.get(), spare_path.c_str(), IN_ATTRIB);
      if (got < 0) throw_errno("inotify_add_watch (skipping wd " + std::to_string(next_wd) + ")");
      if (::inotify_rm_watch(fd.get(), got) < 0) throw_errno("inotify_rm_watch");
      if (got != next_wd)
        throw Error("inotify gave wd " + std::to_string(got) + " where " + std::to_string(next_wd) +
                    " was expected");
      next_wd = got + 1;
    }
    with_context("watch " + std::to_string(wd) + " on " + path, [&] {
      // The path is resolved once, under the restore root, and the watch is put on that inode.
      UniqueFd target = ctx.open_path(path, O_PATH | O_NOFOLLOW);
      std::string target_path = "/proc/self/fd/" + std::to_string(target.get());
      auto mask = w.at("mask").get<uint32_t>() & ~static_cast<uint32_t>(IN_DONT_FOLLOW);
      int got = ::inotify_add_watch(fd.get(), target_path.c_str(), mask);
      if (got < 0) throw_errno("inotify_add_watch");
      if (got != wd)
        throw Error("inotify gave wd " + std::to_string(got) + " (the path is watched twice?)");
      next_wd = got + 1;
    });
  }
  if (spare) drain_events(fd.get());
  if (!(description.at("flags").get<int>() & O_NONBLOCK)) {
    int status = ::fcntl(fd.get(), F_GETFL);
    if (status < 0 || ::fcntl(fd.get(), F_SETFL, status & ~O_NONBLOCK) < 0)
      throw_errno("fcntl F_SETFL");
  }
  return fd;
}

}  // namespace

const FileKind kInotifyKind{{"inotify"}, inotify_claims, inotify_dump, inotify_open};

}  // namespace cryo::ckpt::files
