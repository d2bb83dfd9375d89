// Passing open fds between processes over a unix socket (SCM_RIGHTS), one fd per message.
#pragma once

#include <string>

#include "common/unique_fd.h"

namespace cryo {

// Sends `fd` over the connected unix socket `socket`. `what` names the fd in errors
// ("pty master"). Throws cryo::Error.
void send_fd(int socket, int fd, const std::string& what);

// Receives one fd sent by send_fd, close-on-exec. Does not block: the sender has sent it before
// the caller learned it may read (e.g. the sender exited or reported). Throws cryo::Error naming
// `what` when no fd is there.
UniqueFd receive_fd(int socket, const std::string& what);

}  // namespace cryo
