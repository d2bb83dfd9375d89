// Small file-system helpers that throw cryo::Error with the path in the message.
#pragma once

#include <sys/types.h>

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

#include "common/unique_fd.h"

namespace cryo::fs {

UniqueFd open_or_throw(const std::string& path, int flags, mode_t mode = 0);
std::string read_file(const std::string& path);
// Nullopt when the file does not exist; throws on any other failure.
std::optional<std::string> read_file_if_exists(const std::string& path);
void write_file(const std::string& path, std::string_view data, mode_t mode = 0644);
// Crash-safe replace: write to a temporary file in the same directory, fsync, rename over `path`.
void write_file_atomic(const std::string& path, std::string_view data, mode_t mode = 0644);
// The same replacement by rename, without the fsync: for state that need not survive a crash of
// the machine (live state, records rewritten often), only a crash of the writer.
void write_file_replace(const std::string& path, std::string_view data, mode_t mode = 0644);
void write_all(int fd, const void* data, size_t size, const std::string& what);
void read_exact(int fd, void* data, size_t size, const std::string& what);
void mkdir_p(const std::string& path, mode_t mode = 0755);
void remove_all(const std::string& path);
std::string read_link(const std::string& path);
bool exists(const std::string& path);

}  // namespace cryo::fs
