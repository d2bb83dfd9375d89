// signalfd: the set of signals it reads (fdinfo sigmask, hex, bit N-1 for signal N). The
// signals themselves are pending on the process or thread and restored with it.
#include <fcntl.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/syscall.h>
#include <unistd.h>

#include "checkpoint/file_kinds/fdinfo.h"

namespace cryo::ckpt::files {

namespace {

bool signalfd_claims(const DumpedFd& fd) {
  return fd.link == "anon_inode:[signalfd]";
}

void signalfd_dump(DumpContext&, const DumpedFd& fd, json& description) {
  description["kind"] = "signalfd";
  description["sigmask"] = parse_unsigned(fdinfo_field(read_fdinfo(fd), "sigmask"), 16, "sigmask");
}

UniqueFd signalfd_open(RestoreContext&, const json& description) {
  // The kernel's own mask layout, given as is (glibc's sigaddset refuses its internal signals).
  uint64_t mask = description.at("sigmask").get<uint64_t>();
  int flags = SFD_CLOEXEC | ((description.at("flags").get<int>() & O_NONBLOCK) ? SFD_NONBLOCK : 0);
  UniqueFd fd(static_cast<int>(::syscall(SYS_signalfd4, -1, &mask, sizeof mask, flags)));
  if (!fd) throw_errno("signalfd4");
  return fd;
}

}  // namespace

const FileKind kSignalFdKind{{"signalfd"}, signalfd_claims, signalfd_dump, signalfd_open};

}  // namespace cryo::ckpt::files
