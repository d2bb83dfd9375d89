#include "engine/runtime/rootfs_path.h"

#include <fcntl.h>
#include <linux/openat2.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <climits>
#include <deque>
#include <vector>

#include "common/error.h"
#include "common/strings.h"

namespace cryo::engine {

namespace {

constexpr int kMaxSymlinks = 40;  // as the kernel's own path walk

std::string relative(const std::string& path) {
  size_t start = path.find_first_not_of('/');
  return start == std::string::npos ? std::string(".") : path.substr(start);
}

std::string join_components(const std::vector<std::string>& components) {
  return components.empty() ? std::string(".") : join(components, "/");
}

void push_components(std::deque<std::string>& queue, const std::string& path) {
  std::vector<std::string> parts = split(path, '/');
  for (auto it = parts.rbegin(); it != parts.rend(); ++it)
    if (!it->empty() && *it != ".") queue.push_front(*it);
}

}  // namespace

UniqueFd open_in_root(int root_fd, const std::string& path, int flags) {
  struct open_how how = {};
  how.flags = static_cast<uint64_t>(flags | O_CLOEXEC);
  how.resolve = RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS;
  std::string rel = relative(path);
  for (;;) {
    int fd = static_cast<int>(::syscall(SYS_openat2, root_fd, rel.c_str(), &how, sizeof how));
    // EAGAIN: a concurrent rename anywhere on the system made the kernel give up on proving the
    // walk stayed inside the root; trying again is what the man page asks.
    if (fd < 0 && (errno == EAGAIN || errno == EINTR)) continue;
    return UniqueFd(fd);
  }
}

std::string fd_path(int fd) {
  return "/proc/self/fd/" + std::to_string(fd);
}

UniqueFd open_mount_point(int root_fd, const std::string& path, MountPointKind kind) {
  std::deque<std::string> pending;
  push_components(pending, path);
  // The part resolved so far: real directories, no symlinks, so ".." can be taken lexically.
  std::vector<std::string> resolved;
  int symlinks = 0;
  while (!pending.empty()) {
    std::string name = std::move(pending.front());
    pending.pop_front();
    if (name == "..") {
      if (!resolved.empty()) resolved.pop_back();
      continue;
    }
    bool last = pending.empty();
    std::string parent_path = join_components(resolved);
    UniqueFd parent = open_in_root(root_fd, parent_path, O_PATH | O_DIRECTORY);
    if (!parent)
      throw_errno("openat2 /" + (resolved.empty() ? std::string() : parent_path) +
                  " (resolving mount point " + path + ")");
    struct stat st;
    if (::fstatat(parent.get(), name.c_str(), &st, AT_SYMLINK_NOFOLLOW) < 0) {
      if (errno != ENOENT) throw_errno("stat " + name + " in " + parent_path);
      int rc = last && kind == MountPointKind::kFile
                   ? ::mknodat(parent.get(), name.c_str(), S_IFREG | 0644, 0)
                   : ::mkdirat(parent.get(), name.c_str(), 0755);
      // EEXIST: created meanwhile (by a concurrent walk); it is looked at again below.
      if (rc < 0 && errno != EEXIST)
        throw_errno("create mount point " + name + " in /" + parent_path);
      if (rc < 0) {
        pending.push_front(name);
        if (++symlinks > kMaxSymlinks) throw_errno("resolving mount point " + path, ELOOP);
        continue;
      }
      resolved.push_back(name);
      continue;
    }
    if (S_ISLNK(st.st_mode)) {
      if (++symlinks > kMaxSymlinks) throw_errno("resolving mount point " + path, ELOOP);
      char target[PATH_MAX];
      ssize_t n = ::readlinkat(parent.get(), name.c_str(), target, sizeof target - 1);
      if (n < 0) throw_errno("readlink " + name + " in /" + parent_path);
      target[n] = '\0';
      if (target[0] == '/') resolved.clear();
      push_components(pending, target);
      continue;
    }
    if (!last && !S_ISDIR(st.st_mode))
      throw_errno("mount point " + path + ": /" + join_components(resolved) + "/" + name, ENOTDIR);
    resolved.push_back(name);
  }
  // The walk above only created things; this open is what decides, and it cannot leave the root
  // whatever changed since.
  UniqueFd fd = open_in_root(root_fd, join_components(resolved), O_PATH);
  if (!fd) throw_errno("openat2 mount point " + path + " (as /" + join_components(resolved) + ")");
  return fd;
}

}  // namespace cryo::engine
