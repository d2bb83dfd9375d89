#include "checkpoint/checkpoint.h"
#include "common/error.h"
namespace cryo::ckpt {
RestoreResult restore(const std::string&, const RestoreOptions&) {
  throw Error("not supported yet: restore");
}
}  // namespace cryo::ckpt
