#include "checkpoint/file_locks.h"

#include <fcntl.h>
#include <sys/file.h>
#include <unistd.h>

#include <sstream>

#include "checkpoint/file_kinds/file_kind.h"
#include "common/error.h"
#include "common/strings.h"

namespace cryo::ckpt::files {

using json = nlohmann::json;

namespace {

constexpr std::string_view kLockPrefix = "lock:";

FileLock::Kind kind_from_name(const std::string& name) {
  if (name == "POSIX") return FileLock::Kind::kPosix;
  if (name == "FLOCK") return FileLock::Kind::kFlock;
  if (name == "OFDLCK") return FileLock::Kind::kOfd;
  throw Error("not supported yet: a file lock of type " + name);
}

FileLock::Kind kind_from_image(const std::string& name) {
  if (name == "posix") return FileLock::Kind::kPosix;
  if (name == "flock") return FileLock::Kind::kFlock;
  if (name == "ofd") return FileLock::Kind::kOfd;
  throw Error("unknown file lock kind " + name + " in files.img");
}

json lock_json(const FileLock& lock) {
  return json{{"kind", lock_kind_name(lock.kind)},
              {"write", lock.write},
              {"start", lock.start},
              {"length", lock.length}};
}

FileLock lock_from_json(const json& j) {
  FileLock lock;
  lock.kind = kind_from_image(j.at("kind").get<std::string>());
  lock.write = j.at("write").get<bool>();
  lock.start = j.at("start").get<uint64_t>();
  lock.length = j.at("length").get<uint64_t>();
  return lock;
}

std::string describe_range(const FileLock& lock) {
  std::string out =
      std::string(lock.write ? "write" : "read") + " lock from byte " + std::to_string(lock.start);
  out += lock.length == 0 ? " to the end" : " length " + std::to_string(lock.length);
  return out;
}

// A POSIX or OFD lock request for fcntl.
struct flock range_request(const FileLock& lock) {
  struct flock request {};
  request.l_type = lock.write ? F_WRLCK : F_RDLCK;
  request.l_whence = SEEK_SET;
  request.l_start = static_cast<off_t>(lock.start);
  request.l_len = static_cast<off_t>(lock.length);
  return request;
}

}  // namespace

const char* lock_kind_name(FileLock::Kind kind) {
  switch (kind) {
    case FileLock::Kind::kPosix:
      return "posix";
    case FileLock::Kind::kFlock:
      return "flock";
    case FileLock::Kind::kOfd:
      return "ofd";
  }
  return "?";
}

FileLock parse_fdinfo_lock(const std::string& line) {
  std::string_view rest = line;
  if (starts_with(rest, kLockPrefix)) rest.remove_prefix(kLockPrefix.size());
  std::istringstream in{std::string(rest)};
  std::string ordinal, kind, mode, type, pid, inode, start, end;
  if (!(in >> ordinal >> kind >> mode >> type >> pid >> inode >> start >> end))
    throw Error("unparsable fdinfo lock line: " + line);
  FileLock lock;
  lock.kind = kind_from_name(kind);
  if (mode != "ADVISORY") throw Error("not supported yet: a " + mode + " file lock");
  if (type == "WRITE")
    lock.write = true;
  else if (type != "READ")
    throw Error("not supported yet: a file lock of mode " + type);
  try {
    lock.start = std::stoull(start);
    if (end != "EOF") {
      uint64_t last = std::stoull(end);
      if (last < lock.start) throw Error("lock ends before it starts");
      lock.length = last - lock.start + 1;
    }
  } catch (const std::logic_error&) {
    throw Error("unparsable fdinfo lock line: " + line);
  }
  return lock;
}

void FileLockDumper::add_fd(const DumpedFd& fd, uint64_t description, const std::string& fdinfo) {
  for (const std::string& line : split(fdinfo, '\n')) {
    if (!starts_with(line, kLockPrefix)) continue;
    FileLock lock = parse_fdinfo_lock(line);
    if (!enabled_) {
      std::string what = lock.kind == FileLock::Kind::kPosix ? "a POSIX"
                         : lock.kind == FileLock::Kind::kOfd ? "an OFD"
                                                             : "a flock";
      throw Error("pid " + std::to_string(fd.pid) + " holds " + what + " lock on " + fd.link +
                  ": use --file-locks");
    }
    json entry = lock_json(lock);
    // Every fd of one description lists the same locks: each is recorded once.
    if (lock.kind == FileLock::Kind::kPosix) {
      entry["pid"] = fd.pid;
      bool seen = false;
      for (const json& e : posix_)
        if (e.at("pid") == fd.pid && e.at("description") == description &&
            e.at("start") == entry.at("start") && e.at("length") == entry.at("length"))
          seen = true;
      if (seen) continue;
      entry["fd"] = fd.fd;
      entry["description"] = description;
      entry["path"] = fd.link;
      posix_.push_back(std::move(entry));
    } else {
      bool seen = false;
      for (const json& e : by_description_)
        if (e.at("description") == description && e.at("kind") == entry.at("kind") &&
            e.at("start") == entry.at("start") && e.at("length") == entry.at("length"))
          seen = true;
      if (seen) continue;
      entry["description"] = description;
      entry["path"] = fd.link;
      by_description_.push_back(std::move(entry));
    }
  }
}

json FileLockDumper::image() const {
  return json{{"descriptions", by_description_}, {"posix", posix_}};
}

FileLockRestorer::FileLockRestorer(const json& files, bool enabled) {
  auto it = files.find("file_locks");
  if (it == files.end()) return;
  by_description_ = it->at("descriptions");
  size_t count = by_description_.size();
  for (const json& e : it->at("posix")) {
    posix_by_pid_[e.at("pid").get<pid_t>()].push_back(e);
    ++count;
  }
  if (count > 0 && !enabled) {
    const json& first = by_description_.empty() ? it->at("posix").at(0) : by_description_.at(0);
    throw Error("the checkpoint holds " + std::to_string(count) + " file lock(s) (the first on " +
                first.value("path", std::string("?")) + "): use --file-locks");
  }
}

void FileLockRestorer::lock_descriptions(const std::map<uint64_t, UniqueFd>& descriptions) const {
  for (const json& e : by_description_) {
    FileLock lock = lock_from_json(e);
    auto id = e.at("description").get<uint64_t>();
    std::string what = std::string(lock_kind_name(lock.kind)) + " " + describe_range(lock) +
                       " on " + e.value("path", std::string("?")) + " (description " +
                       std::to_string(id) + ")";
    auto it = descriptions.find(id);
    if (it == descriptions.end()) throw Error("restoring " + what + ": no such description");
    int fd = it->second.get();
    if (lock.kind == FileLock::Kind::kFlock) {
      if (::flock(fd, (lock.write ? LOCK_EX : LOCK_SH) | LOCK_NB) < 0)
        throw_errno("restoring " + what + ": flock");
    } else {
      struct flock request = range_request(lock);
      if (::fcntl(fd, F_OFD_SETLK, &request) < 0)
        throw_errno("restoring " + what + ": fcntl F_OFD_SETLK");
    }
  }
}

std::vector<FileLock> FileLockRestorer::process_locks(pid_t dumped_pid,
                                                      std::vector<int>* fds) const {
  std::vector<FileLock> out;
  auto it = posix_by_pid_.find(dumped_pid);
  if (it == posix_by_pid_.end()) return out;
  for (const json& e : it->second) {
    out.push_back(lock_from_json(e));
    fds->push_back(e.at("fd").get<int>());
  }
  return out;
}

void FileLockRestorer::lock_process(pid_t dumped_pid) const {
  auto it = posix_by_pid_.find(dumped_pid);
  if (it == posix_by_pid_.end()) return;
  for (const json& e : it->second) {
    FileLock lock = lock_from_json(e);
    int fd = e.at("fd").get<int>();
    struct flock request = range_request(lock);
    if (::fcntl(fd, F_SETLK, &request) < 0)
      throw_errno("pid " + std::to_string(dumped_pid) + ": restoring POSIX " +
                  describe_range(lock) + " on " + e.value("path", std::string("?")) + " (fd " +
                  std::to_string(fd) + "): fcntl F_SETLK");
  }
}

}  // namespace cryo::ckpt::files
