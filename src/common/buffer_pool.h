// Large I/O buffers (an export's compressor frames and output, an import's read-ahead) in memory
// that is already populated, kept between commands.
//
// Why: on this kind of virtual machine, memory a process touches for the first time costs
// 0.2-2.5 ms of CPU per MiB (the host backs the guest's free pages anew: free page reporting hands
// them back to it). An export's ~20 MiB of fresh buffers cost it 30-65 ms, a tenth of the export
// of a 1 GiB container. Pages of a tmpfs file stay allocated to the guest: mapped again by the
// next command (whole 2 MiB pages on a tmpfs mounted with huge=always), 18 MiB cost 0.2-1.2 ms
// to map and 0.6-0.9 ms to write first.
//
// The pool is a directory of files, each used by one command at a time (a record lock). A buffer
// is zeroed when it is given back: the pool keeps no container's data after a command that ends,
// only after one killed half way, until the next command takes the file.
#pragma once

#include <cstddef>
#include <mutex>
#include <set>
#include <string>
#include <utility>

#include "common/unique_fd.h"

namespace cryo {

// A pool file taken within this process (see buffer_pool.cc). Move-only.
class FileReservation {
 public:
  FileReservation() = default;
  // Held unless another user of this process has `path`.
  explicit FileReservation(std::string path);
  FileReservation(FileReservation&& other) noexcept : path_(std::exchange(other.path_, {})) {}
  FileReservation& operator=(FileReservation&& other) noexcept {
    if (this != &other) {
      FileReservation dropped(std::move(*this));
      path_ = std::exchange(other.path_, {});
    }
    return *this;
  }
  ~FileReservation();
  bool held() const { return !path_.empty(); }

 private:
  static std::mutex& mutex();
  static std::set<std::string>& in_use();
  std::string path_;
};

// Memory from a BufferPool: a pool file mapped shared, or fresh anonymous memory when no pool
// file was free. Aligned to 2 MiB; not inherited by child processes (MADV_DONTFORK: a fork
// would turn every page copy-on-write). Move-only; unmaps (and zeroes a pool file's pages) on
// destruction.
class PooledMemory {
 public:
  PooledMemory() = default;
  PooledMemory(PooledMemory&& other) noexcept;
  PooledMemory& operator=(PooledMemory&& other) noexcept;
  PooledMemory(const PooledMemory&) = delete;
  PooledMemory& operator=(const PooledMemory&) = delete;
  ~PooledMemory();

  char* data() const { return data_; }
  size_t size() const { return size_; }
  // Whether the memory is a pool file's (else fresh anonymous memory).
  bool pooled() const { return static_cast<bool>(file_); }

  // Faults the pages of [p, p + n) in, writable. Kernels before 5.14 lack MADV_POPULATE_WRITE:
  // their pages fault in at first use, which is only slower. In steps: each call holds the
  // process's mmap lock, which other threads' mmap and munmap (malloc, dlopen) wait for.
  static void populate(char* p, size_t n);

 private:
  friend class BufferPool;
  // Maps `size` bytes at a 2 MiB boundary: of `fd` shared, or anonymous when `fd` < 0. Throws
  // when the address space is short.
  void map(size_t size, int fd);
  void release() noexcept;

  void* mapping_ = nullptr;
  size_t mapping_size_ = 0;
  char* data_ = nullptr;
  size_t size_ = 0;
  UniqueFd file_;  // holds the file's lock
  FileReservation reservation_;
};

class BufferPool {
 public:
  static constexpr size_t kHugePage = 2 << 20;
  // Commands that can hold pool memory at once (each holds one or two files); more fall back to
  // fresh memory.
  static constexpr int kFiles = 6;
  // No pool file grows beyond this: larger requests get fresh memory.
  static constexpr size_t kMaxFileSize = 32 << 20;

  // A pool in `dir` as it is (no mount); an empty `dir`: no pool, fresh memory only.
  explicit BufferPool(std::string dir);

  // The machine's pool: a tmpfs with huge pages at /run/cryo-buffers, mounted by the first
  // command that needs it (root only). CRYO_BUFFER_POOL=off disables it; CRYO_BUFFER_POOL=DIR
  // uses DIR as it is. Without it (no permission to mount, a kernel without transparent huge
  // pages), fresh memory.
  static BufferPool& system();

  // At least `bytes` (rounded up to 2 MiB) of writable memory: a pool file's when one is free,
  // else fresh anonymous memory (with the huge page hint). Pool pages are not populated here:
  // the caller's first touch maps them, at a fraction of a fresh page's cost. Throws only when
  // even fresh memory cannot be mapped.
  PooledMemory take(size_t bytes) const;

  const std::string& dir() const { return dir_; }

 private:
  PooledMemory take_file(size_t bytes) const;

  std::string dir_;
};

}  // namespace cryo
