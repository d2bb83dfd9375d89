// A list of syscalls to run inside another process in one go, by code injected into it (one ptrace
// round trip for the whole list instead of ~30 µs per syscall). Used on dump (the parasite queries:
// sigaction, sigaltstack, timers, prctl...) and on restore (the restorer: munmap, mmap, preadv,
// mprotect, PR_SET_MM_MAP, credentials, seccomp...).
//
// In the target the batch is laid out as one block, placed at a RemoteAddr chosen by the caller:
//   [entries: BatchedSyscall[count] + terminator][data area]
// Pointer arguments refer to bytes added with data(); they are relocated to the block's address
// when the block is serialized with layout(base).
#pragma once

#include <cstddef>
#include <cstdint>
#include <initializer_list>
#include <string>
#include <utility>
#include <vector>

#include "checkpoint/remote_addr.h"

namespace cryo::ckpt {

// Binary layout read by the injected code (src/checkpoint/arch/x86_64 blob). 64 bytes.
struct BatchedSyscall {
  int64_t nr;  // kBatchEnd ends the list
  uint64_t args[6];
  int64_t result;  // written by the injected code: raw kernel return (-errno on failure)
};
static_assert(sizeof(BatchedSyscall) == 64);

// Entry flags are encoded in the high bits of nr so that the entry stays 64 bytes.
inline constexpr int64_t kBatchEnd = -1;
// Stop the batch when this syscall fails (result in [-4095, -1]); later entries keep result 0.
inline constexpr int64_t kBatchStopOnError = int64_t{1} << 32;
inline constexpr int64_t kBatchNrMask = 0xffffffff;

// An argument: an immediate value or an offset into the batch's data area.
struct BatchArg {
  static BatchArg value(uint64_t v) { return BatchArg{v, false}; }
  uint64_t raw;
  bool is_data_ref;
  BatchArg(uint64_t v) : raw(v), is_data_ref(false) {}  // NOLINT: immediates convert implicitly
  BatchArg(uint64_t v, bool ref) : raw(v), is_data_ref(ref) {}
};

class SyscallBatch {
 public:
  // Appends a syscall and returns its index (to read its result after the run).
  size_t add(long nr, std::initializer_list<BatchArg> args, bool stop_on_error = true);
  // Appends a stop: the injected code stops there as at the end of the list, and the caller runs
  // the entries after it later (RemoteSyscalls::run_prepared with `first_entry`), e.g. after
  // filling the target's memory from outside. Its result stays 0.
  size_t add_pause();
  // Copies `size` bytes into the data area (16-byte aligned); the returned argument becomes the
  // remote address of those bytes.
  BatchArg data(const void* bytes, size_t size);
  // Reserves zeroed space in the data area, e.g. for a syscall to write its output into.
  BatchArg reserve(size_t size);
  // Places, at `field` (a data reference, plus `offset_in_field` bytes), the 8-byte remote address
  // of `target` once the block is laid out: for structures that point into the data area
  // themselves (struct sock_fprog, struct iovec...).
  void set_pointer(BatchArg field, size_t offset_in_field, BatchArg target);
  // Replaces the default description ("syscall N") of entry `index`, used in error messages.
  void describe(size_t index, std::string text) { descriptions_[index] = std::move(text); }
  // Remote address of a data reference once the block is placed at `base`.
  RemoteAddr address_of(BatchArg ref, RemoteAddr base) const;
  // Offset of a data reference inside the serialized block (to read outputs back).
  size_t offset_of(BatchArg ref) const;

  size_t count() const { return entries_.size(); }
  // Size in bytes of the serialized block.
  size_t size() const;
  // Serializes the block for placement at `base`: entries with relocated pointers, then data.
  std::vector<uint8_t> layout(RemoteAddr base) const;
  // Reads result i back from a block serialized (and run) at any base.
  static int64_t result_of(const std::vector<uint8_t>& block, size_t index);
  const std::string& description(size_t index) const { return descriptions_[index]; }

 private:
  struct Entry {
    long nr;
    BatchArg args[6] = {0, 0, 0, 0, 0, 0};
    bool stop_on_error;
    bool pause = false;
  };
  std::vector<Entry> entries_;
  std::vector<std::string> descriptions_;
  std::vector<uint8_t> data_;
  struct PointerFixup {
    size_t data_offset;  // where the pointer goes, in the data area
    BatchArg target;
  };
  std::vector<PointerFixup> pointer_fixups_;
};

}  // namespace cryo::ckpt
