// The injected syscall-batch runner (blob.S): bytes copied into a target process and run there.
#pragma once

#include <cstddef>
#include <cstdint>

extern "C" const uint8_t cryo_blob_start[];
extern "C" const uint8_t cryo_blob_end[];

namespace cryo::ckpt::x86_64 {

inline size_t blob_size() {
  return static_cast<size_t>(cryo_blob_end - cryo_blob_start);
}

}  // namespace cryo::ckpt::x86_64
