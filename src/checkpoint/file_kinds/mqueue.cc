// POSIX message queue fds (mq_open). The queue itself (attributes, messages) belongs to the IPC
// namespace and is dumped with it (ipc.h) when the tree has a namespace of its own; an fd only
// names its queue and keeps its access mode and O_NONBLOCK. At restore the queue exists again
// (recreated by the IPC namespace restore, or still there in a shared namespace) and is opened by
// name in the coordinator's IPC namespace, which is the one the tree gets.
#include <fcntl.h>
#include <mqueue.h>
#include <sys/vfs.h>

#include "checkpoint/file_kinds/file_kind.h"
#include "common/error.h"

namespace cryo::ckpt::files {

namespace {

constexpr long kMqueueMagic = 0x19800202;  // MQUEUE_MAGIC, linux/magic.h

bool mqueue_claims(const DumpedFd& fd) {
  if (!S_ISREG(fd.st.st_mode) || fd.stolen < 0 || (fd.flags & O_PATH)) return false;
  struct statfs fs {};
  return ::fstatfs(fd.stolen, &fs) == 0 && fs.f_type == kMqueueMagic;
}

void mqueue_dump(DumpContext&, const DumpedFd& fd, json& description) {
  if (fd.st.st_nlink == 0)
    throw Error("not supported yet: " + fd.describe() + " is an unlinked POSIX message queue");
  if (fd.link.size() < 2 || fd.link[0] != '/' || fd.link.find('/', 1) != std::string::npos)
    throw Error(fd.describe() + ": unexpected name of a POSIX message queue");
  description["kind"] = "posix-mqueue";
  description["name"] = fd.link;
}

UniqueFd mqueue_open(RestoreContext&, const json& description) {
  std::string name = description.at("name");
  int flags = description.at("flags").get<int>() & (O_ACCMODE | O_NONBLOCK);
  mqd_t queue = ::mq_open(name.c_str(), flags | O_CLOEXEC);
  if (queue < 0) throw_errno("mq_open of POSIX message queue " + name);
  return UniqueFd(queue);
}

}  // namespace

const FileKind kMqueueKind{{"posix-mqueue"}, mqueue_claims, mqueue_dump, mqueue_open};

}  // namespace cryo::ckpt::files
