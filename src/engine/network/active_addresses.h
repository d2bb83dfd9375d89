// Addresses of the bridge network across engine roots, machine-wide. The bridge is one per
// machine but leases are per engine root, and two roots on one machine are two "hosts" (the
// migration tests run both): this registry keeps them from handing out the same address.
// It lives in /run (gone at reboot, like the bridge) and is held locked while a setup picks its
// address. Per container (root + id) it records the address and whether it is live (its netns
// set up) or only leased (stopped container). An entry is stale, and dropped, when it is live
// but its netns file is gone, or leased but its root no longer holds the lease (an engine that
// crashed, or whose state directory was deleted).
#pragma once

#include <set>
#include <string>

#include "engine/network/state_file.h"

namespace cryo::engine {

struct OtherAddresses {
  std::set<std::string> live;    // set up by other containers now: never usable
  std::set<std::string> leased;  // leased by stopped containers of other roots: not handed out
                                 // anew, but a static --ip (restore of a migrated container) may
                                 // take one over
};

class ActiveAddresses {
 public:
  static constexpr const char* kDefaultDir = "/run/cryo-network";
  // Locks the registry of `bridge` until destruction.
  explicit ActiveAddresses(const std::string& bridge, const std::string& dir = kDefaultDir);
  OtherAddresses others(const std::string& root, const std::string& container_id);
  // Records the container's address as live.
  void claim(const std::string& ip, const std::string& root, const std::string& container_id,
             const std::string& netns_path);
  // The container's network is down, its lease kept.
  void deactivate(const std::string& root, const std::string& container_id);
  // The lease is gone (container removed).
  void release(const std::string& root, const std::string& container_id);
  void save() { file_.save(); }

 private:
  LockedJsonFile file_;
};

}  // namespace cryo::engine
