// eventfd: its counter and whether it counts as a semaphore (fdinfo eventfd-count, in hex, and
// eventfd-semaphore). Waiters blocked in read() restart their syscall after restore.
#include <fcntl.h>
#include <sys/eventfd.h>
#include <unistd.h>

#include "checkpoint/file_kinds/fdinfo.h"

namespace cryo::ckpt::files {

namespace {

bool eventfd_claims(const DumpedFd& fd) {
  return fd.link == "anon_inode:[eventfd]";
}

void eventfd_dump(DumpContext&, const DumpedFd& fd, json& description) {
  std::string info = read_fdinfo(fd);
  description["kind"] = "eventfd";
  description["count"] = parse_unsigned(fdinfo_field(info, "eventfd-count"), 16, "eventfd-count");
  description["semaphore"] = fdinfo_field(info, "eventfd-semaphore") == "1";
}

UniqueFd eventfd_open(RestoreContext&, const json& description) {
  auto flags = description.at("flags").get<int>();
  int efd_flags = EFD_CLOEXEC | ((flags & O_NONBLOCK) ? EFD_NONBLOCK : 0) |
                  (description.at("semaphore").get<bool>() ? EFD_SEMAPHORE : 0);
  UniqueFd fd(::eventfd(0, efd_flags));
  if (!fd) throw_errno("eventfd");
  // eventfd() takes a 32-bit initial value; the counter is 64 bits: add it with write().
  auto count = description.at("count").get<uint64_t>();
  if (count > 0) {
    if (count == UINT64_MAX) throw Error("eventfd counter out of range");
    if (::write(fd.get(), &count, sizeof count) != static_cast<ssize_t>(sizeof count))
      throw_errno("write eventfd counter " + std::to_string(count));
  }
  return fd;
}

}  // namespace

const FileKind kEventFdKind{{"eventfd"}, eventfd_claims, eventfd_dump, eventfd_open};

}  // namespace cryo::ckpt::files
