// Terminals. With --shell-job the tree's terminal is outside it (the shell's): it is recorded as
// "external tty" and restored onto the restoring cryo's own terminal. Terminals inside the tree
// (pty pairs it created) are not supported yet.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "checkpoint/file_kinds/file_kind.h"
#include "common/error.h"

namespace cryo::ckpt::files {

namespace {

// Linux device numbers (Documentation/admin-guide/devices.txt): 4 = virtual consoles and serial
// ports, 5:1 = console, 5:2 = ptmx, 128-135 = pty masters, 136-143 = pty slaves.
bool is_pty_master(dev_t rdev) {
  return (major(rdev) == 5 && minor(rdev) == 2) || (major(rdev) >= 128 && major(rdev) <= 135);
}

bool is_terminal(dev_t rdev) {
  unsigned ma = major(rdev);
  return ma == 4 || (ma == 5 && minor(rdev) == 1) || is_pty_master(rdev) ||
         (ma >= 136 && ma <= 143);
}

bool terminal_claims(const DumpedFd& fd) {
  return S_ISCHR(fd.st.st_mode) && !(fd.flags & O_PATH) && is_terminal(fd.st.st_rdev);
}

void terminal_dump(DumpContext& ctx, const DumpedFd& fd, json& description) {
  if (is_pty_master(fd.st.st_rdev))
    throw Error("not supported yet: pseudo-terminals created inside the tree (pty master)");
  if (!ctx.options().shell_job)
    throw Error("the terminal " + fd.link +
                " is outside the checkpointed tree: checkpoint it as a shell job (--shell-job)");
  auto object = ctx.object("terminals", fd.st.st_rdev, 0);
  if (object.created) {
    if (ctx.object_count("terminals") > 1)
      throw Error("not supported yet: more than one outside terminal (" + fd.link + ")");
    (*object.entry)["rdev"] = static_cast<uint64_t>(fd.st.st_rdev);
  }
  description["kind"] = "external-tty";
  description["terminal"] = object.id;
}

UniqueFd terminal_open(RestoreContext& ctx, const json& description) {
  const FileRestoreOptions& options = ctx.options();
  if (!options.shell_job)
    throw Error(
        "the tree was dumped with its outside terminal: restore it as a shell job "
        "(--shell-job)");
  int source = options.inherit_tty_fd;
  if (source < 0) {
    if (!::isatty(0)) throw Error("--shell-job: the restoring cryo's stdin is not a terminal");
    source = 0;
  } else if (!::isatty(source)) {
    throw_errno("--shell-job: fd " + std::to_string(source) + " is not a terminal");
  }
  // A description of our own on the same terminal: its flags (O_NONBLOCK...) are the tree's and
  // do not change cryo's.
  return reopen_fd(source, description.at("flags").get<int>());
}

}  // namespace

const FileKind kTerminalKind{{"external-tty"}, terminal_claims, terminal_dump, terminal_open};

}  // namespace cryo::ckpt::files
