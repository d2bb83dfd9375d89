// timerfd: clock, flags, the time left before the next expiry and the interval, and the count of
// expirations not read yet (fdinfo "ticks", put back with TFD_IOC_SET_TICKS, which needs
// CONFIG_CHECKPOINT_RESTORE).
// A relative timer is re-armed with the time it had left at dump (the time the tree spent dumped
// does not count, as for a process that was stopped); a TFD_TIMER_ABSTIME timer keeps its
// absolute expiry on its clock. A periodic timer that expired and whose expiry was not read yet
// shows no time left: it is re-armed one interval from the restore.
#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/timerfd.h>
#include <time.h>

#include <cinttypes>
#include <cstdio>

#include "checkpoint/file_kinds/fdinfo.h"

namespace cryo::ckpt::files {

namespace {

// linux/timerfd.h; not included for it, it clashes with the libc headers.
constexpr unsigned long kTimerSetTicks = _IOW('T', 0, uint64_t);
constexpr uint64_t kNanosPerSecond = 1000000000;

uint64_t parse_timespec_ns(const std::string& text, const std::string& what) {
  unsigned long long sec = 0, nsec = 0;
  if (std::sscanf(text.c_str(), "(%llu, %llu)", &sec, &nsec) != 2 || nsec >= kNanosPerSecond)
    throw Error("fdinfo: unparsable " + what + " '" + text + "'");
  return sec * kNanosPerSecond + nsec;
}

struct timespec to_timespec(uint64_t ns) {
  struct timespec ts {};
  ts.tv_sec = static_cast<time_t>(ns / kNanosPerSecond);
  ts.tv_nsec = static_cast<long>(ns % kNanosPerSecond);
  return ts;
}

uint64_t clock_now_ns(clockid_t clock) {
  struct timespec now;
  if (::clock_gettime(clock, &now) < 0) throw_errno("clock_gettime " + std::to_string(clock));
  return static_cast<uint64_t>(now.tv_sec) * kNanosPerSecond + static_cast<uint64_t>(now.tv_nsec);
}

bool timerfd_claims(const DumpedFd& fd) {
  return fd.link == "anon_inode:[timerfd]";
}

void timerfd_dump(DumpContext&, const DumpedFd& fd, json& description) {
  std::string info = read_fdinfo(fd);
  auto clock = static_cast<clockid_t>(parse_unsigned(fdinfo_field(info, "clockid"), 10, "clockid"));
  auto settime_flags =
      static_cast<int>(parse_unsigned(fdinfo_field(info, "settime flags"), 8, "settime flags"));
  uint64_t remaining = parse_timespec_ns(fdinfo_field(info, "it_value"), "it_value");
  description["kind"] = "timerfd";
  description["clockid"] = clock;
  description["settime_flags"] = settime_flags;
  description["ticks"] = parse_unsigned(fdinfo_field(info, "ticks"), 10, "ticks");
  description["interval_ns"] = parse_timespec_ns(fdinfo_field(info, "it_interval"), "it_interval");
  description["remaining_ns"] = remaining;
  if ((settime_flags & TFD_TIMER_ABSTIME) && remaining > 0)
    description["expires_abs_ns"] = clock_now_ns(clock) + remaining;
}

UniqueFd timerfd_open(RestoreContext&, const json& description) {
  auto clock = description.at("clockid").get<clockid_t>();
  int create_flags =
      TFD_CLOEXEC | ((description.at("flags").get<int>() & O_NONBLOCK) ? TFD_NONBLOCK : 0);
  UniqueFd fd(::timerfd_create(clock, create_flags));
  if (!fd) throw_errno("timerfd_create clock " + std::to_string(clock));

  auto settime_flags = description.at("settime_flags").get<int>();
  auto interval = description.at("interval_ns").get<uint64_t>();
  auto remaining = description.at("remaining_ns").get<uint64_t>();
  struct itimerspec spec {};
  spec.it_interval = to_timespec(interval);
  int flags = 0;
  if (description.contains("expires_abs_ns")) {
    flags = settime_flags & (TFD_TIMER_ABSTIME | TFD_TIMER_CANCEL_ON_SET);
    spec.it_value = to_timespec(description.at("expires_abs_ns").get<uint64_t>());
  } else {
    spec.it_value = to_timespec(remaining == 0 ? interval : remaining);
  }
  if ((remaining > 0 || interval > 0) && ::timerfd_settime(fd.get(), flags, &spec, nullptr) < 0)
    throw_errno("timerfd_settime");
  auto ticks = description.at("ticks").get<uint64_t>();
  if (ticks > 0 && ::ioctl(fd.get(), kTimerSetTicks, &ticks) < 0)
    throw_errno("ioctl TFD_IOC_SET_TICKS " + std::to_string(ticks));
  return fd;
}

}  // namespace

const FileKind kTimerFdKind{{"timerfd"}, timerfd_claims, timerfd_dump, timerfd_open};

}  // namespace cryo::ckpt::files
