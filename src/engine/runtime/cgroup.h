// One cgroup per container. On hybrid hosts (v1 controllers + cgroup2 at /sys/fs/cgroup/unified)
// the container gets a directory cryo/<id> under each v1 controller it uses (memory, pids, cpu,
// freezer) and under the unified hierarchy; on pure cgroup2 hosts one directory
// /sys/fs/cgroup/cryo/<id> with the controllers enabled in the parents.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

namespace cryo::engine {

struct CgroupLimits {
  int64_t memory_bytes = 0;  // 0 = unlimited
  int64_t pids_max = 0;      // 0 = unlimited
};

class ContainerCgroup {
 public:
  // Creates the directories and applies the limits; on failure nothing is left.
  static ContainerCgroup create(const std::string& container_id, const CgroupLimits& limits);
  // Handle on the directories of a container whose cgroup may exist (for removal and freezing).
  static ContainerCgroup existing(const std::string& container_id);
  static bool host_is_pure_cgroup2();

  ContainerCgroup(ContainerCgroup&& other) noexcept;
  ContainerCgroup& operator=(ContainerCgroup&& other) noexcept;
  ContainerCgroup(const ContainerCgroup&) = delete;
  ContainerCgroup& operator=(const ContainerCgroup&) = delete;
  // Removes the cgroup unless release() was called.
  ~ContainerCgroup();

  // Moves `pid` into every directory of the container's cgroup.
  void add_process(pid_t pid) const;
  // The directory the freezer acts on: v1 freezer on hybrid hosts, the cgroup2 directory otherwise.
  std::string freezer_path() const { return freezer_dir_; }
  // Every directory, cgroup2 (or unified) first.
  const std::vector<std::string>& dirs() const { return dirs_; }
  // Kills what is left inside, waits for the cgroup to empty and removes the directories.
  // Safe when they do not exist.
  void remove();
  // Keeps the cgroup on destruction (it outlives this handle).
  void release() { released_ = true; }

 private:
  ContainerCgroup() = default;
  std::vector<std::string> dirs_;
  std::string freezer_dir_;
  bool freezer_is_v1_ = false;
  bool released_ = false;
  friend class FrozenCgroup;
};

// Freezes a cgroup for its lifetime: frozen on construction (waits until every task is frozen),
// thawed on destruction unless commit() was called (for a dump that kills the tree afterwards).
class FrozenCgroup {
 public:
  // `path` is a v1 freezer directory (has freezer.state) or a cgroup2 directory.
  explicit FrozenCgroup(std::string path);
  FrozenCgroup(const FrozenCgroup&) = delete;
  FrozenCgroup& operator=(const FrozenCgroup&) = delete;
  ~FrozenCgroup();
  void commit() { committed_ = true; }
  void thaw();

 private:
  std::string path_;
  bool v1_ = false;
  bool frozen_ = false;
  bool committed_ = false;
};

}  // namespace cryo::engine
