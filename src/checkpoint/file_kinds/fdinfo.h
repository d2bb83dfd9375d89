// Reading the kind-specific lines of /proc/PID/fdinfo/N for the event descriptor kinds.
#pragma once

#include <string>
#include <vector>

#include "checkpoint/file_kinds/file_kind.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"

namespace cryo::ckpt::files {

inline std::string read_fdinfo(const DumpedFd& fd) {
  return fs::read_file("/proc/" + std::to_string(fd.pid) + "/fdinfo/" + std::to_string(fd.fd));
}

// The value of the first "key: value" line (trimmed); throws when there is none.
inline std::string fdinfo_field(const std::string& fdinfo, const std::string& key) {
  for (const std::string& line : split(fdinfo, '\n')) {
    if (line.size() > key.size() && starts_with(line, key) && line[key.size()] == ':')
      return std::string(trim(std::string_view(line).substr(key.size() + 1)));
  }
  throw Error("fdinfo has no " + key + " line");
}

// Every line starting with `prefix`.
inline std::vector<std::string> fdinfo_lines(const std::string& fdinfo, const std::string& prefix) {
  std::vector<std::string> out;
  for (const std::string& line : split(fdinfo, '\n'))
    if (starts_with(line, prefix)) out.push_back(line);
  return out;
}

inline uint64_t parse_unsigned(const std::string& text, int base, const std::string& what) {
  try {
    size_t used = 0;
    uint64_t v = std::stoull(text, &used, base);
    if (used != text.size()) throw std::invalid_argument(text);
    return v;
  } catch (const std::logic_error&) {
    throw Error("fdinfo: unparsable " + what + " '" + text + "'");
  }
}

}  // namespace cryo::ckpt::files
