// pidfd: the process it refers to, which must be a process of the restored tree. A pidfd can
// only be opened once its process exists, after the coordinator has made the pool: the pool
// holds a placeholder (/dev/null) for it, and the restoring process replaces it at its fd number
// with pidfd_open of the restored pid (after_install). Each fd gets its own description then
// (a pidfd description has no state but its flags). The referred-to process must already exist
// when the holder installs its fds: its parent, an ancestor, its own child or an earlier forked
// process; else the restore fails and says so.
#include <fcntl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <sstream>
#include <vector>

#include "checkpoint/file_kinds/fdinfo.h"

namespace cryo::ckpt::files {

namespace {

// PIDFD_NONBLOCK is O_NONBLOCK, PIDFD_THREAD is O_EXCL.
constexpr int kPidfdFlags = O_NONBLOCK | O_EXCL;

std::vector<pid_t> parse_nspid(const std::string& value) {
  std::vector<pid_t> out;
  std::istringstream in(value);
  long pid = 0;
  while (in >> pid) out.push_back(static_cast<pid_t>(pid));
  return out;
}

bool pidfd_claims(const DumpedFd& fd) {
  return fd.link == "anon_inode:[pidfd]";
}

void pidfd_dump(DumpContext&, const DumpedFd& fd, json& description) {
  std::string info = read_fdinfo(fd);
  long pid = 0;
  try {
    pid = std::stol(fdinfo_field(info, "Pid"));
  } catch (const std::logic_error&) {
    throw Error("fdinfo: unparsable Pid '" + fdinfo_field(info, "Pid") + "'");
  }
  if (pid <= 0)
    throw Error(
        "not supported yet: a pidfd of a process that has exited or is outside the "
        "dumper's pid namespace");
  std::vector<pid_t> target = parse_nspid(fdinfo_field(info, "NSpid"));
  std::string status = fs::read_file("/proc/" + std::to_string(fd.pid) + "/status");
  size_t holder_depth = parse_nspid(fdinfo_field(status, "NSpid")).size() - 1;
  if (target.size() <= holder_depth)
    throw Error("a pidfd of pid " + std::to_string(pid) +
                ", outside the pid namespace of its holder");
  description["kind"] = "pidfd";
  // As the images name processes (container-cr: innermost pid when the tree has its own PID
  // namespace).
  description["pid"] = fd.image_pid != fd.pid ? target.back() : pid;
  description["pid_in_ns"] = target.at(holder_depth);  // as the holder sees it
}

UniqueFd pidfd_open(RestoreContext& ctx, const json& description) {
  auto pid = description.at("pid").get<pid_t>();
  if (!ctx.tree_pids().count(pid))
    throw Error("a pidfd of pid " + std::to_string(pid) +
                ", which is not a process of the restored tree");
  UniqueFd placeholder(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  if (!placeholder) throw_errno("open /dev/null (pidfd placeholder)");
  return placeholder;
}

void pidfd_after_install(pid_t dumped_pid, int fd, const json& description) {
  auto pid = description.at("pid_in_ns").get<pid_t>();
  std::string what = "pid " + std::to_string(dumped_pid) + ": fd " + std::to_string(fd) +
                     ": pidfd of pid " + std::to_string(pid);
  int fd_flags = ::fcntl(fd, F_GETFD);
  if (fd_flags < 0) throw_errno(what + ": fcntl F_GETFD");
  int flags = description.at("flags").get<int>() & kPidfdFlags;
  int opened = static_cast<int>(::syscall(SYS_pidfd_open, pid, flags));
  if (opened < 0) {
    if (errno == ESRCH)
      throw Error(what + ": the process does not exist yet when its holder installs its fds");
    throw_errno(what + ": pidfd_open");
  }
  UniqueFd pidfd(opened);
  if (::dup3(pidfd.get(), fd, (fd_flags & FD_CLOEXEC) ? O_CLOEXEC : 0) < 0)
    throw_errno(what + ": dup3");
}

}  // namespace

const FileKind kPidFdKind{{"pidfd"}, pidfd_claims, pidfd_dump, pidfd_open, pidfd_after_install};

}  // namespace cryo::ckpt::files
