// Addresses in use on the bridge right now, machine-wide. The bridge is one per machine but
// leases are per engine root, and two roots on one machine are two "hosts" (the migration tests
// run both): this registry keeps them from handing out the same address twice at the same time.
// It lives in /run (gone at reboot, like the bridge) and is held locked while a setup picks its
// address. An entry whose netns file is gone (an engine that crashed or whose state directory
// was deleted) is stale and ignored.
#pragma once

#include <set>
#include <string>

#include "engine/network/state_file.h"

namespace cryo::engine {

class ActiveAddresses {
 public:
  static constexpr const char* kDefaultDir = "/run/cryo-network";
  // Locks the registry of `bridge` until destruction.
  explicit ActiveAddresses(const std::string& bridge, const std::string& dir = kDefaultDir);
  // Addresses used by other containers (another root, or another id).
  std::set<std::string> used_by_others(const std::string& root, const std::string& container_id);
  void claim(const std::string& ip, const std::string& root, const std::string& container_id,
             const std::string& netns_path);
  // Drops the entries of this container; saves.
  void release(const std::string& root, const std::string& container_id);
  void save() { file_.save(); }

 private:
  LockedJsonFile file_;
};

}  // namespace cryo::engine
