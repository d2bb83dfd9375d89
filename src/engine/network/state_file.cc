#include "engine/network/state_file.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>

#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"

namespace cryo::engine {

LockedJsonFile::LockedJsonFile(std::string path, Durability durability)
    : path_(std::move(path)), durability_(durability) {
  fs::mkdir_p(std::filesystem::path(path_).parent_path());
  lock_ = fs::open_or_throw(path_ + ".lock", O_RDWR | O_CREAT, 0600);
  while (::flock(lock_.get(), LOCK_EX) < 0) {
    if (errno != EINTR) throw_errno("flock " + path_ + ".lock");
  }
  auto text = fs::read_file_if_exists(path_);
  if (!text || text->empty()) {
    data_ = nlohmann::json::object();
    return;
  }
  try {
    data_ = nlohmann::json::parse(*text);
  } catch (const nlohmann::json::exception& e) {
    if (durability_ == Durability::kDurable) throw Error("parse " + path_ + ": " + e.what());
    LOG_WARN << path_ << " is torn (a crash while it was written): read as empty";
    data_ = nlohmann::json::object();
  }
}

void LockedJsonFile::save() {
  std::string text = data_.dump(2) + "\n";
  if (durability_ == Durability::kDurable) {
    fs::write_file_atomic(path_, text, 0600);
    return;
  }
  // Replaced by rename as the durable files, so readers never see half of it, but not synced.
  fs::write_file_replace(path_, text, 0600);
}

}  // namespace cryo::engine
