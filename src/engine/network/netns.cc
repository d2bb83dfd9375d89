#include "engine/network/netns.h"

#include <fcntl.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/mount.h>
#include <unistd.h>

#include <cerrno>
#include <exception>
#include <filesystem>
#include <thread>

#include "common/error.h"
#include "common/fs.h"
#include "engine/network/netlink.h"

namespace cryo::engine {

namespace {

// Makes `dir` a mount point with shared propagation (bind-mounting it onto itself the first
// time), serialized by a lock file so that concurrent engines do not stack two bind mounts.
void make_shared_mount_point(const std::string& dir) {
  fs::mkdir_p(dir);
  if (::mount("", dir.c_str(), nullptr, MS_SHARED | MS_REC, nullptr) == 0) return;
  if (errno != EINVAL) throw_errno("make " + dir + " a shared mount");
  UniqueFd lock = fs::open_or_throw(dir + ".lock", O_RDWR | O_CREAT, 0600);
  if (::flock(lock.get(), LOCK_EX) < 0) throw_errno("flock " + dir + ".lock");
  if (::mount("", dir.c_str(), nullptr, MS_SHARED | MS_REC, nullptr) == 0) return;
  if (::mount(dir.c_str(), dir.c_str(), nullptr, MS_BIND | MS_REC, nullptr) < 0)
    throw_errno("bind-mount " + dir + " onto itself");
  if (::mount("", dir.c_str(), nullptr, MS_SHARED | MS_REC, nullptr) < 0)
    throw_errno("make " + dir + " a shared mount");
}

// Runs in a thread of its own: unshare() moves only the calling thread into the new namespace,
// and the thread ends there, so the caller's namespace never changes.
UniqueFd new_netns_with_loopback() {
  UniqueFd result;
  std::exception_ptr failure;
  std::thread worker([&] {
    try {
      if (::unshare(CLONE_NEWNET) < 0) throw_errno("unshare(CLONE_NEWNET)");
      result = fs::open_or_throw("/proc/thread-self/ns/net", O_RDONLY);
      RtNetlink netlink;
      int lo = netlink.link_index("lo");
      if (lo == 0) throw Error("no loopback interface in the new network namespace");
      netlink.set_link_up(lo);
    } catch (...) {
      failure = std::current_exception();
    }
  });
  worker.join();
  if (failure) std::rethrow_exception(failure);
  return result;
}

}  // namespace

UniqueFd open_netns(const std::string& path) {
  return fs::open_or_throw(path, O_RDONLY);
}

void create_persistent_netns(const std::string& path) {
  with_context("create network namespace " + path, [&] {
    std::string dir = std::filesystem::path(path).parent_path();
    make_shared_mount_point(dir);
    UniqueFd netns = new_netns_with_loopback();
    UniqueFd target = fs::open_or_throw(path, O_RDONLY | O_CREAT | O_EXCL, 0444);
    target.reset();
    std::string source = "/proc/self/fd/" + std::to_string(netns.get());
    if (::mount(source.c_str(), path.c_str(), nullptr, MS_BIND, nullptr) < 0) {
      int err = errno;
      ::unlink(path.c_str());
      throw_errno("bind-mount the namespace onto " + path, err);
    }
  });
}

void remove_persistent_netns(const std::string& path) {
  if (::umount2(path.c_str(), MNT_DETACH) < 0 && errno != EINVAL && errno != ENOENT)
    throw_errno("unmount network namespace " + path);
  if (::unlink(path.c_str()) < 0 && errno != ENOENT)
    throw_errno("remove network namespace file " + path);
  // Drop the directory's self bind mount once no namespace is mounted in it, so that a state
  // directory can simply be deleted. A plain (not lazy) unmount fails with EBUSY while another
  // container's netns is mounted there, which leaves that one intact.
  std::string dir = std::filesystem::path(path).parent_path();
  if (::umount2(dir.c_str(), 0) < 0 && errno != EINVAL && errno != EBUSY && errno != ENOENT)
    throw_errno("unmount " + dir);
}

NetnsGuard::NetnsGuard(int netns_fd) {
  original_ = fs::open_or_throw("/proc/thread-self/ns/net", O_RDONLY);
  if (::setns(netns_fd, CLONE_NEWNET) < 0) throw_errno("setns(CLONE_NEWNET)");
}

NetnsGuard::~NetnsGuard() {
  // Staying in the container's namespace would silently misdirect every later network call of
  // this thread; there is no sane way to continue.
  if (::setns(original_.get(), CLONE_NEWNET) < 0) std::terminate();
}

}  // namespace cryo::engine
