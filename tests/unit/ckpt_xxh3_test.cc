// The image checksum: Xxh3Hasher and xxh3_64 (libxxhash's dispatch to AVX2/AVX-512) give the
// values of libxxhash's plain XXH3-64, one-shot and streamed in pieces of any size, so the image
// format is unchanged.
#include "checkpoint/image/xxh3.h"

#include <xxhash.h>

#include <cstdint>
#include <vector>

#include <gtest/gtest.h>

namespace cryo::ckpt {
namespace {

std::vector<uint8_t> bytes(size_t size) {
  std::vector<uint8_t> data(size);
  uint64_t x = 0x9E3779B97F4A7C15ull;
  for (auto& b : data) {
    x ^= x << 13;
    x ^= x >> 7;
    x ^= x << 17;
    b = static_cast<uint8_t>(x);
  }
  return data;
}

TEST(CkptXxh3, MatchesLibxxhashOneShotAndStreamed) {
  // Sizes around XXH3's internal boundaries (16, 128, 240 bytes, stripes, 1 KiB blocks).
  for (size_t size : {0ul, 1ul, 16ul, 17ul, 128ul, 129ul, 240ul, 241ul, 1024ul, 4096ul, 65537ul,
                      (2ul << 20) + 123}) {
    std::vector<uint8_t> data = bytes(size);
    const uint64_t expected = XXH3_64bits(data.data(), data.size());
    EXPECT_EQ(xxh3_64(data.data(), data.size()), expected) << size;
    for (size_t piece : {1ul, 7ul, 4096ul, 1ul << 20}) {
      Xxh3Hasher hasher;
      for (size_t at = 0; at < size; at += piece)
        hasher.update(data.data() + at, std::min(piece, size - at));
      EXPECT_EQ(hasher.digest(), expected) << size << " in pieces of " << piece;
    }
  }
}

}  // namespace
}  // namespace cryo::ckpt
