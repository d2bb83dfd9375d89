// epoll: every registration (target fd number, events, data). The kernel keys a registration by
// the target file and the fd number it had at EPOLL_CTL_ADD, so registrations are added again
// by the restoring process that dumped them, once its fds are at their numbers (after_install).
// At dump, KCMP_EPOLL_TFD checks that the process's fd with the registered number still is the
// registered file: then the restored fd with that number is the restored target. When the process
// has since closed that number or given it to another file (dup2 after EPOLL_CTL_ADD), the file
// is looked for among its other fds ("via_fd"): at restore it is put at the registered number
// for the EPOLL_CTL_ADD only, and whatever the process has at that number is put back. A
// registered file the registering process no longer holds at all fails the dump.
// The ready list is not dumped: after restore, a target that is ready reports its events again
// (an edge-triggered registration fires once more for a state it had already reported).
#include <dirent.h>
#include <fcntl.h>
#include <linux/kcmp.h>
#include <sys/epoll.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <algorithm>
#include <cstdio>
#include <map>
#include <vector>

#include "checkpoint/file_kinds/fdinfo.h"

namespace cryo::ckpt::files {

namespace {

bool epoll_claims(const DumpedFd& fd) {
  return fd.link == "anon_inode:[eventpoll]";
}

// 0 when fd `fd` of `pid` is the file registered in its epoll fd `efd` as (tfd, toff).
int compare_target(pid_t pid, int efd, int fd, int tfd, unsigned toff) {
  struct kcmp_epoll_slot slot {};
  slot.efd = static_cast<__u32>(efd);
  slot.tfd = static_cast<__u32>(tfd);
  slot.toff = toff;
  return static_cast<int>(::syscall(SYS_kcmp, pid, pid, KCMP_EPOLL_TFD,
                                    static_cast<unsigned long>(fd),
                                    reinterpret_cast<unsigned long>(&slot)));
}

// The fd of `pid` that is the file registered as (tfd, toff) in its epoll fd `efd`; -1 if none.
int find_target_fd(pid_t pid, int efd, int tfd, unsigned toff) {
  std::string dir = "/proc/" + std::to_string(pid) + "/fd";
  DIR* d = ::opendir(dir.c_str());
  if (d == nullptr) throw_errno("opendir " + dir);
  std::vector<int> fds;
  while (dirent* e = ::readdir(d))
    if (e->d_name[0] != '.') fds.push_back(std::atoi(e->d_name));
  ::closedir(d);
  std::sort(fds.begin(), fds.end());
  for (int candidate : fds)
    if (candidate != tfd && compare_target(pid, efd, candidate, tfd, toff) == 0) return candidate;
  return -1;
}

// EPOLL_CTL_ADD of the file at fd `via` under number `tfd`, which holds another file (or none)
// before and after.
void add_through(int epfd, int tfd, int via, struct epoll_event* event) {
  UniqueFd epoll_copy;  // when the epoll itself now has the registered number
  if (epfd == tfd) {
    epoll_copy = UniqueFd(::fcntl(epfd, F_DUPFD_CLOEXEC, 0));
    if (!epoll_copy) throw_errno("fcntl F_DUPFD_CLOEXEC of the epoll fd");
    epfd = epoll_copy.get();
  }
  UniqueFd occupant;
  bool occupant_cloexec = false;
  int fd_flags = ::fcntl(tfd, F_GETFD);
  if (fd_flags >= 0) {
    occupant_cloexec = (fd_flags & FD_CLOEXEC) != 0;
    occupant = UniqueFd(::fcntl(tfd, F_DUPFD_CLOEXEC, 0));
    if (!occupant) throw_errno("fcntl F_DUPFD_CLOEXEC of fd " + std::to_string(tfd));
  }
  if (::dup3(via, tfd, O_CLOEXEC) < 0)
    throw_errno("dup3 fd " + std::to_string(via) + " to " + std::to_string(tfd));
  int added = ::epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, event);
  int add_errno = errno;
  if (occupant) {
    if (::dup3(occupant.get(), tfd, occupant_cloexec ? O_CLOEXEC : 0) < 0)
      throw_errno("putting fd " + std::to_string(tfd) + " back");
  } else {
    ::close(tfd);
  }
  if (added < 0)
    throw_errno("EPOLL_CTL_ADD of fd " + std::to_string(via) + " as fd " + std::to_string(tfd),
                add_errno);
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
    int same = compare_target(fd.pid, fd.fd, tfd, tfd, toff);
    if (same < 0 && errno != EBADF) throw_errno("kcmp KCMP_EPOLL_TFD of fd " + std::to_string(tfd));
    json registration{{"tfd", tfd}, {"events", events}, {"data", data}};
    if (same != 0) {
      int via = find_target_fd(fd.pid, fd.fd, tfd, toff);
      if (via < 0)
        throw Error("not supported yet: an epoll registration of fd " + std::to_string(tfd) +
                    " whose file the process no longer holds (EPOLL_CTL_ADD keys registrations "
                    "by fd number; the file is open only in other processes)");
      registration["via_fd"] = via;
    }
    registrations.push_back(std::move(registration));
  }
  description["kind"] = "epoll";
  // The process and fd through which the registrations were read: they are added again there.
  description["registrar_pid"] = fd.image_pid;  // container-cr: as restore names it
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
    if (r.contains("via_fd")) {
      with_context("pid " + std::to_string(dumped_pid) + ": epoll fd " + std::to_string(fd),
                   [&] { add_through(fd, tfd, r.at("via_fd").get<int>(), &event); });
      continue;
    }
    if (::epoll_ctl(fd, EPOLL_CTL_ADD, tfd, &event) < 0)
      throw_errno("pid " + std::to_string(dumped_pid) + ": epoll fd " + std::to_string(fd) +
                  ": EPOLL_CTL_ADD of fd " + std::to_string(tfd));
  }
}

}  // namespace

const FileKind kEpollKind{{"epoll"}, epoll_claims, epoll_dump, epoll_open, epoll_after_install};

}  // namespace cryo::ckpt::files
