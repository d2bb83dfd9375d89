// One cgroup per container, named by container_cgroup_name() (cryo/<id> for the default store). On
// hybrid hosts (v1 controllers + cgroup2 at /sys/fs/cgroup/unified) the container gets that
// directory under each v1 controller it uses (memory, pids, cpu, freezer) and under the unified
// hierarchy; on pure cgroup2 hosts one directory /sys/fs/cgroup/<name> with the controllers
// enabled in the parents.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <string>
#include <vector>

#include "engine/state/paths.h"

namespace cryo::engine {

// The cgroup of container `container_id` of the engine store `paths`, relative to each hierarchy's
// root (the OCI spec's cgroupsPath): "cryo/<id>" for the default runroot (/run/cryo), and
// "cryo-<12 hex digits of the XXH3 hash of the absolute runroot>/<id>" for any other, so that two
// engines with their own runroots never share a cgroup, even for the same container id.
std::string container_cgroup_name(const StorePaths& paths, const std::string& container_id);

struct CgroupLimits {
  int64_t memory_bytes = 0;  // 0 = unlimited
  int64_t pids_max = 0;      // 0 = unlimited
};

class ContainerCgroup {
 public:
  // Creates the directories of `cgroup_name` (container_cgroup_name()) and applies the limits;
  // on failure nothing is left.
  static ContainerCgroup create(const std::string& cgroup_name, const CgroupLimits& limits);
  // Handle on the directories of a container whose cgroup may exist (for removal and freezing).
  static ContainerCgroup existing(const std::string& cgroup_name);
  static bool host_is_pure_cgroup2();

  ContainerCgroup(ContainerCgroup&& other) noexcept;
  ContainerCgroup& operator=(ContainerCgroup&& other) noexcept;
  ContainerCgroup(const ContainerCgroup&) = delete;
  ContainerCgroup& operator=(const ContainerCgroup&) = delete;
  // Removes the cgroup unless release() was called.
  ~ContainerCgroup();

  // Moves `pid` into every directory of the container's cgroup.
  void add_process(pid_t pid) const;
  // The directory to freeze: the cgroup2 one wherever it has cgroup.freeze (on hybrid hosts too,
  // in the unified hierarchy), else the v1 freezer's. Writing the v1 freezer.state toggles a
  // kernel-wide static key (freezer_active) at each freeze and thaw of a host's only frozen
  // cgroup, patching code on every CPU: 2.5-5 ms per write on this VM, twice per checkpoint.
  std::string freezer_path() const;
  // Every directory, cgroup2 (or unified) first.
  const std::vector<std::string>& dirs() const { return dirs_; }
  // Kills what is left inside, waits for the cgroup to empty and removes the directories, and
  // their parent when it is an engine store's own (cryo-<hash>) and now empty. Safe when they
  // do not exist.
  void remove();
  // Thaws the cgroup if frozen (e.g. by a dump that then killed its tasks), in both freezers of a
  // hybrid host. Safe when it does not exist.
  void thaw() const;
  // Keeps the cgroup on destruction (it outlives this handle).
  void release() { released_ = true; }

 private:
  ContainerCgroup() = default;
  std::vector<std::string> dirs_;
  std::string cgroup2_dir_;  // pure cgroup2, or the unified hierarchy of a hybrid host
  std::string v1_freezer_dir_;
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
