// The clock the checkpoint engine times its phases with (statistics and logs).
#pragma once

#include <chrono>
#include <cstdint>

namespace cryo {

// Microseconds on the steady clock: only differences between two readings mean something.
inline uint64_t steady_now_us() {
  return static_cast<uint64_t>(std::chrono::duration_cast<std::chrono::microseconds>(
                                   std::chrono::steady_clock::now().time_since_epoch())
                                   .count());
}

}  // namespace cryo
