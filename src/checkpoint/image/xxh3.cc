#include "checkpoint/image/xxh3.h"

#include <xxh_x86dispatch.h>
#include <xxhash.h>

#include <new>

namespace cryo::ckpt {

namespace {

XXH3_state_t* state_of(void* state) {
  return static_cast<XXH3_state_t*>(state);
}

}  // namespace

Xxh3Hasher::Xxh3Hasher() : state_(XXH3_createState()) {
  if (!state_) throw std::bad_alloc();
  XXH3_64bits_reset(state_of(state_));
}

Xxh3Hasher::~Xxh3Hasher() {
  XXH3_freeState(state_of(state_));
}

void Xxh3Hasher::update(const void* data, size_t size) {
  XXH3_64bits_update_dispatch(state_of(state_), data, size);
}

uint64_t Xxh3Hasher::digest() const {
  return XXH3_64bits_digest(static_cast<const XXH3_state_t*>(state_));
}

uint64_t xxh3_64(const void* data, size_t size) {
  return XXH3_64bits_dispatch(data, size);
}

}  // namespace cryo::ckpt
