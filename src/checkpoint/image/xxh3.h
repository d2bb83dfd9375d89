// XXH3-64, the checksum of image files, through libxxhash's run-time dispatch (xxh_x86dispatch.h:
// AVX2/AVX-512 where the CPU has them): the plain entry points of Debian's build are compiled for
// baseline x86-64 (SSE2), 2.5x slower here on page data (a tenth of a dump's CPU time went to
// them). The same values either way: the image format does not change.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cryo::ckpt {

// Streaming XXH3-64 (no seed, default secret).
class Xxh3Hasher {
 public:
  Xxh3Hasher();
  ~Xxh3Hasher();
  Xxh3Hasher(const Xxh3Hasher&) = delete;
  Xxh3Hasher& operator=(const Xxh3Hasher&) = delete;

  void update(const void* data, size_t size);
  uint64_t digest() const;

 private:
  void* state_;  // XXH3_state_t
};

// One-shot XXH3-64.
uint64_t xxh3_64(const void* data, size_t size);

}  // namespace cryo::ckpt
