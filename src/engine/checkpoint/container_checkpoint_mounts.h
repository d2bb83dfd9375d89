// The mounts of a checkpointed container beyond its processes: what the spec's own tmpfs mounts
// (/dev/shm...) hold, and the mounts the application made inside the container after it started.
// The runtime rebuilds every mount of the spec on restore, empty; tmpfs contents are saved as tar
// archives next to the process images and put back, and a tmpfs the application mounted itself
// is mounted again with its options. Any other mount made by the application is refused at
// checkpoint time, before anything is frozen.
#pragma once

#include <sys/types.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace cryo::engine {

struct MountInfoEntry {
  std::string mount_point;    // as the process sees it (relative to its root)
  std::string mount_options;  // per-mount: "rw,nosuid,nodev,relatime"
  std::string fstype;
  std::string source;
  std::string super_options;  // per-superblock: "rw,size=1024k,mode=755"
};

// /proc/PID/mountinfo, in mount order. Throws cryo::Error.
std::vector<MountInfoEntry> read_mountinfo(pid_t pid);

// A tmpfs whose contents go with the checkpoint.
struct SavedTmpfs {
  std::string path;              // mount point in the container
  bool made_by_app = false;      // mounted by the application: mounted again on restore
  unsigned long flags = 0;       // MS_* of the mount (made_by_app)
  std::string data;              // tmpfs options (size=, mode=...; made_by_app)
  std::string source = "tmpfs";  // the mount's source name (made_by_app)
  std::string archive;           // file name in the checkpoint directory
};
nlohmann::json to_json(const SavedTmpfs& tmpfs);
SavedTmpfs saved_tmpfs_from_json(const nlohmann::json& json);

// The tmpfs mounts of the container whose init is `init` (spec mounts other than /dev, and those
// the application made), given its mount table. Throws cryo::Error "not supported yet: ..." for a
// mount the application made that is not a tmpfs, or one stacked on another at the same path.
std::vector<SavedTmpfs> tmpfs_to_save(const nlohmann::json& spec,
                                      const std::vector<MountInfoEntry>& mounts);

// Writes the contents of each tmpfs (`roots`: O_PATH fds of their root directories, taken before
// the dump, in the order of `tmpfs`) as tar archives into `image_dir` (an empty file for an
// empty tmpfs).
void save_tmpfs_contents(const std::vector<SavedTmpfs>& tmpfs, const std::vector<UniqueFd>& roots,
                         const std::string& image_dir);

// Whether the saved contents of a tmpfs (the file `path` written by save_tmpfs_contents) are
// those of an empty tmpfs, kept as an empty file rather than a tar.
bool tmpfs_archive_is_empty(const std::string& path);

// In the restore helper, in the container's rebuilt mount namespace (after prepare_sandbox):
// mounts the tmpfs the application had made and extracts every saved archive from `image_dir`.
void restore_tmpfs_contents(const std::vector<SavedTmpfs>& tmpfs, const std::string& image_dir);

}  // namespace cryo::engine
