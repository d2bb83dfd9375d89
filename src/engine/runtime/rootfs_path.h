// Paths inside a container's root file system, resolved as the container itself would resolve
// them: an image can hold symlinks (/etc/hosts -> /host/file, /data -> ../../..), and a mount
// target joined to the rootfs as a string would follow them out of it. Everything here resolves
// with openat2(RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS) under an fd of the root, so that absolute
// symlinks and ".." stay inside it, and callers mount onto the returned fd (fd_path()).
#pragma once

#include <string>

#include "common/unique_fd.h"

namespace cryo::engine {

// openat2 of `path` (absolute or relative: both taken from the root) under `root_fd` with
// RESOLVE_IN_ROOT | RESOLVE_NO_MAGICLINKS; O_CLOEXEC is added. Returns an invalid fd with errno set
// on failure (ENOENT is a normal answer for callers that skip absent paths).
UniqueFd open_in_root(int root_fd, const std::string& path, int flags);

// What a mount point must be when it is missing.
enum class MountPointKind { kDirectory, kFile };

// Resolves `path` under `root_fd` (symlinks followed inside the root only, at most 40), creating
// whatever is missing: directories on the way, and the last component as `kind` (an empty file
// when a file is bind-mounted on it). A dangling symlink gets its target created inside the root.
// Returns an O_PATH fd of the mount point. Throws cryo::Error naming the path.
UniqueFd open_mount_point(int root_fd, const std::string& path, MountPointKind kind);

// "/proc/self/fd/N": mount(2) and friends given this path act on the object the fd refers to.
std::string fd_path(int fd);

}  // namespace cryo::engine
