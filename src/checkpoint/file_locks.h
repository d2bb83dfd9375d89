// File locks of a dumped tree (--file-locks): flock and OFD locks belong to an open file
// description and are taken again on the restored description by the coordinator; POSIX (fcntl)
// locks belong to a process and are taken again by the restoring process itself, on its own fd,
// once its fds are installed. Source: the "lock:" lines of /proc/PID/fdinfo/N, which list the
// locks held through that description by that owner (the fd table for POSIX locks, the
// description for flock and OFD locks).
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <map>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "common/unique_fd.h"

namespace cryo::ckpt::files {

struct DumpedFd;

struct FileLock {
  enum class Kind { kPosix, kFlock, kOfd };
  Kind kind = Kind::kPosix;
  bool write = false;  // exclusive (WRITE) or shared (READ)
  uint64_t start = 0;
  uint64_t length = 0;  // 0: to the end of the file, whatever its size
};

// One "lock:" line of fdinfo ("lock:\t1: POSIX  ADVISORY  WRITE 42 00:2a:123 0 EOF");
// throws for kinds that cannot be restored (leases, mandatory locks...).
FileLock parse_fdinfo_lock(const std::string& line);
const char* lock_kind_name(FileLock::Kind kind);

class FileLockDumper {
 public:
  explicit FileLockDumper(bool enabled) : enabled_(enabled) {}
  // Records the locks in the fdinfo text of `fd`, whose description got id `description`.
  // Without --file-locks, throws when there is one.
  void add_fd(const DumpedFd& fd, uint64_t description, const std::string& fdinfo);
  // The "file_locks" object of files.img.
  nlohmann::json image() const;

 private:
  bool enabled_;
  nlohmann::json by_description_ = nlohmann::json::array();
  nlohmann::json posix_ = nlohmann::json::array();
};

class FileLockRestorer {
 public:
  // `files`: files.img. Throws when it holds locks and `enabled` (--file-locks) is false.
  FileLockRestorer(const nlohmann::json& files, bool enabled);
  // In the coordinator, on the new descriptions (description id -> fd): flock and OFD locks.
  void lock_descriptions(const std::map<uint64_t, UniqueFd>& descriptions) const;
  // In the restoring process `dumped_pid`, its fds installed: its POSIX locks.
  void lock_process(pid_t dumped_pid) const;
  // The POSIX locks lock_process() takes.
  std::vector<FileLock> process_locks(pid_t dumped_pid, std::vector<int>* fds) const;

 private:
  nlohmann::json by_description_ = nlohmann::json::array();
  std::map<pid_t, std::vector<nlohmann::json>> posix_by_pid_;
};

}  // namespace cryo::ckpt::files
