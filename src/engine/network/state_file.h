// A JSON state file shared by concurrent cryo processes: held under an exclusive flock on a
// sibling ".lock" file (the data file itself is replaced by rename, so it cannot carry the lock)
// and written crash-safe.
#pragma once

#include <nlohmann/json.hpp>
#include <string>

#include "common/unique_fd.h"

namespace cryo::engine {

class LockedJsonFile {
 public:
  // Locks and reads `path`; a missing file reads as an empty object.
  explicit LockedJsonFile(std::string path);
  nlohmann::json& data() { return data_; }
  void save();

 private:
  std::string path_;
  UniqueFd lock_;
  nlohmann::json data_;
};

}  // namespace cryo::engine
