#include "checkpoint/remote_addr.h"

#include <cstdio>

namespace cryo::ckpt {

std::string RemoteAddr::hex() const {
  char buf[24];
  std::snprintf(buf, sizeof buf, "0x%llx", static_cast<unsigned long long>(value_));
  return buf;
}

}  // namespace cryo::ckpt
