#include "common/fs.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <climits>
#include <random>

#include "common/error.h"

namespace cryo::fs {

UniqueFd open_or_throw(const std::string& path, int flags, mode_t mode) {
  int fd = ::open(path.c_str(), flags | O_CLOEXEC, mode);
  if (fd < 0) throw_errno("open " + path);
  return UniqueFd(fd);
}

void write_all(int fd, const void* data, size_t size, const std::string& what) {
  auto* p = static_cast<const char*>(data);
  while (size > 0) {
    ssize_t n = ::write(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("write " + what);
    }
    p += n;
    size -= static_cast<size_t>(n);
  }
}

void read_exact(int fd, void* data, size_t size, const std::string& what) {
  auto* p = static_cast<char*>(data);
  while (size > 0) {
    ssize_t n = ::read(fd, p, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read " + what);
    }
    if (n == 0) throw Error("read " + what + ": unexpected end of file");
    p += n;
    size -= static_cast<size_t>(n);
  }
}

std::optional<std::string> read_file_if_exists(const std::string& path) {
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    throw_errno("open " + path);
  }
  UniqueFd owned(fd);
  std::string out;
  char buf[65536];
  for (;;) {
    ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read " + path);
    }
    if (n == 0) break;
    out.append(buf, static_cast<size_t>(n));
  }
  return out;
}

std::string read_file(const std::string& path) {
  auto content = read_file_if_exists(path);
  if (!content) throw SysError("open " + path, ENOENT);
  return *content;
}

void write_file(const std::string& path, std::string_view data, mode_t mode) {
  UniqueFd fd = open_or_throw(path, O_WRONLY | O_CREAT | O_TRUNC, mode);
  write_all(fd.get(), data.data(), data.size(), path);
}

namespace {

// Writes `data` to a temporary file beside `path` and renames it over `path`: readers see the old
// or the new content, never half of it. With `sync`, the data is on disk before the rename.
void replace_file(const std::string& path, std::string_view data, mode_t mode, bool sync) {
  std::string tmp =
      path + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(std::random_device{}());
  try {
    UniqueFd fd = open_or_throw(tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
    write_all(fd.get(), data.data(), data.size(), tmp);
    if (sync && ::fsync(fd.get()) < 0) throw_errno("fsync " + tmp);
  } catch (...) {
    ::unlink(tmp.c_str());
    throw;
  }
  if (::rename(tmp.c_str(), path.c_str()) < 0) {
    int err = errno;
    ::unlink(tmp.c_str());
    throw_errno("rename " + tmp + " to " + path, err);
  }
}

}  // namespace

void write_file_atomic(const std::string& path, std::string_view data, mode_t mode) {
  replace_file(path, data, mode, true);
}

void write_file_replace(const std::string& path, std::string_view data, mode_t mode) {
  replace_file(path, data, mode, false);
}

void mkdir_p(const std::string& path, mode_t mode) {
  std::error_code ec;
  std::filesystem::create_directories(path, ec);
  if (ec) throw Error("mkdir " + path + ": " + ec.message(), ec.value());
  if (mode != 0755) ::chmod(path.c_str(), mode);
}

void remove_all(const std::string& path) {
  std::error_code ec;
  std::filesystem::remove_all(path, ec);
  if (ec) throw Error("remove " + path + ": " + ec.message(), ec.value());
}

std::string read_link(const std::string& path) {
  char buf[PATH_MAX + 1];
  ssize_t n = ::readlink(path.c_str(), buf, PATH_MAX);
  if (n < 0) throw_errno("readlink " + path);
  return std::string(buf, static_cast<size_t>(n));
}

bool exists(const std::string& path) {
  struct stat st;
  return ::lstat(path.c_str(), &st) == 0;
}

}  // namespace cryo::fs
