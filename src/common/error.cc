#include "common/error.h"

#include <cstring>

namespace cryo {

SysError::SysError(std::string_view what, int err)
    : Error(std::string(what) + ": " + std::strerror(err), err) {}

void throw_errno(std::string_view what) {
  throw SysError(what, errno);
}
void throw_errno(std::string_view what, int err) {
  throw SysError(what, err);
}

}  // namespace cryo
