// Persistent network namespaces: a netns kept alive by a bind mount of its nsfs file, like
// `ip netns add`, so that it outlives (and is independent of) the processes of a container.
#pragma once

#include <string>

#include "common/unique_fd.h"

namespace cryo::engine {

// Creates a new network namespace with `lo` up and bind-mounts it onto `path` (a file that must
// not exist yet; its directory is made a shared mount point first, as `ip netns` does, so that
// unmounting propagates to mount namespaces created later). Nothing is left behind on failure.
void create_persistent_netns(const std::string& path);
// Unmounts and removes a netns file made by create_persistent_netns, and the directory's shared
// bind mount when it holds no other namespace. A missing file is not an error, so teardown can
// run twice.
void remove_persistent_netns(const std::string& path);
// Opens a netns file (or /proc/PID/ns/net) for setns.
UniqueFd open_netns(const std::string& path);

// Moves the calling thread into a network namespace and back to the original one on destruction.
// Sockets created meanwhile stay in the entered namespace.
class NetnsGuard {
 public:
  explicit NetnsGuard(int netns_fd);
  ~NetnsGuard();
  NetnsGuard(const NetnsGuard&) = delete;
  NetnsGuard& operator=(const NetnsGuard&) = delete;

 private:
  UniqueFd original_;
};

}  // namespace cryo::engine
