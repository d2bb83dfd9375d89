// A JSON state file shared by concurrent cryo processes: held under an exclusive flock on a
// sibling ".lock" file (the data file itself is replaced by rename, so it cannot carry the lock).
// Durable files (leases) are written crash-safe with fsync. Files that only describe live state
// (published ports, addresses in use: meaningless after a reboot) skip the fsync, which costs
// milliseconds on a busy disk; one found torn after a crash reads as empty.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/unique_fd.h"

namespace cryo::engine {

class LockedJsonFile {
 public:
  enum class Durability { kDurable, kLiveState };
  // Locks and reads `path`; a missing file reads as an empty object.
  explicit LockedJsonFile(std::string path, Durability durability = Durability::kDurable);
  nlohmann::json& data() { return data_; }
  void save();

 private:
  std::string path_;
  Durability durability_;
  UniqueFd lock_;
  nlohmann::json data_;
};

}  // namespace cryo::engine
