#include "checkpoint/namespaces.h"

#include <sched.h>
#include <sys/stat.h>
#include <time.h>

#include <sstream>

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"

namespace cryo::ckpt {

namespace {

ino_t pid_namespace_inode(const std::string& pid) {
  std::string path = "/proc/" + pid + "/ns/pid";
  struct stat st;
  if (::stat(path.c_str(), &st) < 0) throw_errno("stat " + path);
  return st.st_ino;
}

int64_t clock_ns(clockid_t clock) {
  timespec ts;
  if (::clock_gettime(clock, &ts) < 0) throw_errno("clock_gettime");
  return int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

}  // namespace

pid_t innermost_pid(pid_t pid) {
  std::string path = "/proc/" + std::to_string(pid) + "/status";
  std::string status = fs::read_file(path);
  for (const std::string& line : split(status, '\n')) {
    if (line.rfind("NSpid:", 0) != 0) continue;
    std::istringstream in(line.substr(6));
    pid_t value = -1, last = -1;
    while (in >> value) last = value;
    if (last <= 0) break;
    return last;
  }
  throw Error("no NSpid line in " + path);
}

bool is_init_of_other_pid_namespace(pid_t root) {
  return pid_namespace_inode("self") != pid_namespace_inode(std::to_string(root)) &&
         innermost_pid(root) == 1;
}

void PidTranslation::add(pid_t host_pid) {
  to_image_[host_pid] = own_namespace_ ? innermost_pid(host_pid) : host_pid;
}

pid_t PidTranslation::to_image(pid_t host_pid) const {
  if (!own_namespace_) return host_pid;
  auto it = to_image_.find(host_pid);
  return it == to_image_.end() ? 0 : it->second;
}

NamespaceClocks read_clocks_of(pid_t pid) {
  // Read both offsets first, then the host clocks: the offsets do not change while it lives.
  std::string path = "/proc/" + std::to_string(pid) + "/timens_offsets";
  int64_t monotonic_offset = 0, boottime_offset = 0;
  for (const std::string& line : split(fs::read_file(path), '\n')) {
    std::istringstream in(line);
    std::string clock;
    int64_t seconds = 0, nanoseconds = 0;
    if (!(in >> clock >> seconds >> nanoseconds)) continue;
    int64_t offset = seconds * 1000000000 + nanoseconds;
    if (clock == "monotonic" || clock == "1")
      monotonic_offset = offset;
    else if (clock == "boottime" || clock == "7")
      boottime_offset = offset;
  }
  NamespaceClocks clocks;
  clocks.monotonic_ns = clock_ns(CLOCK_MONOTONIC) + monotonic_offset;
  clocks.boottime_ns = clock_ns(CLOCK_BOOTTIME) + boottime_offset;
  return clocks;
}

nlohmann::json to_json(const NamespaceClocks& clocks) {
  return {{"monotonic_ns", clocks.monotonic_ns}, {"boottime_ns", clocks.boottime_ns}};
}

NamespaceClocks namespace_clocks_from_json(const nlohmann::json& j) {
  NamespaceClocks clocks;
  clocks.monotonic_ns = j.at("monotonic_ns");
  clocks.boottime_ns = j.at("boottime_ns");
  return clocks;
}

void enter_time_namespace_for_children_at(const NamespaceClocks& clocks) {
  if (::unshare(CLONE_NEWTIME) < 0) throw_errno("unshare CLONE_NEWTIME");
  auto offset_line = [](const char* name, int64_t offset) {
    // Seconds and a non-negative nanosecond part, as the kernel wants them.
    int64_t seconds = offset / 1000000000, nanoseconds = offset % 1000000000;
    if (nanoseconds < 0) {
      nanoseconds += 1000000000;
      seconds -= 1;
    }
    return std::string(name) + " " + std::to_string(seconds) + " " + std::to_string(nanoseconds) +
           "\n";
  };
  std::string text = offset_line("monotonic", clocks.monotonic_ns - clock_ns(CLOCK_MONOTONIC)) +
                     offset_line("boottime", clocks.boottime_ns - clock_ns(CLOCK_BOOTTIME));
  with_context("setting the clocks of the new time namespace",
               [&] { fs::write_file("/proc/self/timens_offsets", text); });
}

}  // namespace cryo::ckpt
