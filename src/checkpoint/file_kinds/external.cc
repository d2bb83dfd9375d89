// Fds whose open file description is outside the dumped tree and its restore (CRIU's external
// files and --inherit-fd): a container's stdio pipes to its monitor, its console pty slave. The
// dump records only the key (the fd's link, e.g. "pipe:[123]" or "/dev/pts/0"); the restorer hands
// in an fd for each key (FileRestoreOptions::inherit_fds), of which the restored fd is a copy.
#include <fcntl.h>

#include "checkpoint/file_kinds/file_kind.h"
#include "common/error.h"

namespace cryo::ckpt::files {

namespace {

bool external_claims(const DumpedFd&) {
  return false;  // chosen by FileDumpOptions::external_files, never by content
}

void external_dump(DumpContext&, const DumpedFd& fd, json& description) {
  description["kind"] = "external";
  description["key"] = fd.link;
}

UniqueFd external_open(RestoreContext& ctx, const json& description) {
  const std::string key = description.at("key");
  const auto& inherited = ctx.options().inherit_fds;
  auto it = inherited.find(key);
  if (it == inherited.end())
    throw Error("the dumped tree had the outside file " + key +
                ": the restorer must hand in an fd for it (inherit-fd)");
  UniqueFd copy(::fcntl(it->second, F_DUPFD_CLOEXEC, 0));
  if (!copy) throw_errno("duplicating inherited fd " + std::to_string(it->second) + " for " + key);
  // Status flags (O_NONBLOCK, O_APPEND) as the tree had them; the access mode cannot change.
  int status_flags = description.at("flags").get<int>() & (O_APPEND | O_NONBLOCK | O_ASYNC);
  if (::fcntl(copy.get(), F_SETFL, status_flags) < 0)
    throw_errno("setting the flags of inherited fd for " + key);
  return copy;
}

}  // namespace

const FileKind kExternalKind{{"external"}, external_claims, external_dump, external_open};

}  // namespace cryo::ckpt::files
