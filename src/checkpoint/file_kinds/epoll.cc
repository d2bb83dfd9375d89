// epoll: every registration (target fd number, events, data). The kernel keys a registration by
// the target file and the fd number it had at EPOLL_CTL_ADD, so registrations are added again
// by the restoring process that dumped them, once its fds are at their numbers (after_install).
// At dump, KCMP_EPOLL_TFD checks that the process's fd with the registered number still is the
// registered file: then the restored fd with that number is the restored target. A registration
// whose fd the process has closed or reused cannot be restored this way and fails the dump.
// The ready list is not dumped: after restore, a target that is ready reports its events again
// (an edge-triggered registration fires once more for a state it had already reported).
#include <linux/kcmp.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdio>
#include <map>

#include "checkpoint/file_kinds/fdinfo.h"

namespace cryo::ckpt::files {

namespace {

bool epoll_claims(const DumpedFd& fd) {
  return fd.link == "anon_inode:[eventpoll]";
}

// 0 when fd `tfd` of `pid` is the file registered in its epoll fd `efd` as (tfd, toff).
int compare_target(pid_t pid, int efd, int tfd, unsigned toff) {
  struct kcmp_epoll_slot slot {};
  slot.efd = static_cast<__u32>(efd);
  slot.tfd = static_cast<__u32>(tfd);
  slot.toff = toff;
  return static_cast<int>(::syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD,
                                    static_cast<unsigned long>(tfd),
                                    reinterpret_cast<unsigned long>(&slot)));
}

void epoll_dump(DumpContext&, const DumpedFd& fd, json& description) {
  std::string info = read_fdinfo(fd);
  json registrations = json::array();
  std::map<int, unsigned> seen_numbers;  // registrations per fd number so far (toff)
  for (const std::string& line : fdinfo_lines(info, "tfd:")) {
    int tfd = -1;
    unsigned events = 0;
    unsigned long long data = 0;
    if (std::sscanf(line.c_str(), "tfd: %d events: %x data: %llx", &tfd, &events, &data) != 3)
      throw Error("fdinfo: unparsable epoll line '" + line + "'");
    unsigned toff = seen_numbers[tfd]++;
    int same = compare_target(fd.pid, fd.fd, tfd, toff);
    if (same < 0 && errno != EBADF) throw_errno("kcmp KCMP_EPOLL_TFD of fd " + std::to_string(tfd));
    if (same != 0)
      throw Error("not supported yet: an epoll registration of fd " + std::to_string(tfd) +
                  " whose number the process has closed or given to another file since (" +
                  "EPOLL_CTL_ADD keys registrations by fd number)");
    registrations.push_back({{"tfd", tfd}, {"events", events}, {"data", data}});
  }
  description["kind"] = "epoll";
  // The process and fd through which the registrations were read: they are added again there.
  description["registrar_pid"] = fd.pid;
  description["registrar_fd"] = fd.fd;
  description["registrations"] = std::move(registrations);
}

UniqueFd epoll_open(RestoreContext&, const json&) {
  UniqueFd fd(::epoll_create1(EPOLL_CLOEXEC));
  if (!fd) throw_errno("epoll_create1");
  return fd;
}

void epoll_after_install(pid_t dumped_pid, int fd, const json& description) {
  if (description.at("registrar_pid").get<pid_t>() != dumped_pid ||
      description.at("registrar_fd").get<int>() != fd)
    return;
  for (const json& r : description.at("registrations")) {
    auto tfd = r.at("tfd").get<int>();
    struct epoll_event event {};
    event.events = r.at("events").get<uint32_t>();
    event.data.u64 = r.at("data").get<uint64_t>();
    if (::epoll_ctl(fd, EPOLL_CTL_ADD, tfd, &event) < 0)
      throw_errno("pid " + std::to_string(dumped_pid) + ": epoll fd " + std::to_string(fd) +
                  ": EPOLL_CTL_ADD of fd " + std::to_string(tfd));
  }
}

}  // namespace

const FileKind kEpollKind{{"epoll"}, epoll_claims, epoll_dump, epoll_open, epoll_after_install};

}  // namespace cryo::ckpt::files
