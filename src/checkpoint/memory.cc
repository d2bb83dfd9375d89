#include "checkpoint/memory.h"

#include <fcntl.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/uio.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <condition_variable>
#include <cstring>
#include <deque>
#include <exception>
#include <fstream>
#include <functional>
#include <future>
#include <mutex>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <thread>

#include "checkpoint/file_kinds/file_kind.h"
#include "checkpoint/remote_addr.h"
#include "checkpoint/threads.h"
#include "common/buffer_pool.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/interruption.h"
#include "common/log.h"
#include "common/phase_trace.h"
#include "common/shared_once_check.h"
#include "common/thread_name.h"
#include "common/unique_fd.h"

namespace cryo::ckpt {

namespace {

constexpr uint64_t kPresent = uint64_t{1} << 63;
constexpr uint64_t kSwapped = uint64_t{1} << 62;
constexpr uint64_t kFileOrSharedAnon = uint64_t{1} << 61;
constexpr uint64_t kPfnMask = (uint64_t{1} << 55) - 1;
constexpr size_t kCopyChunk = 2 << 20;  // bytes per process_vm_readv batch
constexpr size_t kMaxIov = 1024;
// Below this much memory a process's pages go into one image, copied by the dump's thread.
constexpr uint64_t kShardMinBytes = 16 << 20;

// The PFN of the kernel's shared zero page: a read fault of anonymous memory maps it.
uint64_t zero_page_pfn() {
  static uint64_t pfn = [] {
    void* page = ::mmap(nullptr, kPageSize, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (page == MAP_FAILED) return uint64_t{0};
    volatile char c = *static_cast<volatile char*>(page);
    (void)c;
    uint64_t entry = 0;
    UniqueFd fd(::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC));
    if (fd) {
      off_t offset = static_cast<off_t>(reinterpret_cast<uint64_t>(page) / kPageSize * 8);
      if (::pread(fd.get(), &entry, sizeof entry, offset) != sizeof entry) entry = 0;
    }
    ::munmap(page, kPageSize);
    return (entry & kPresent) ? (entry & kPfnMask) : uint64_t{0};
  }();
  return pfn;
}

// Pages of data almost always differ from zero in their first bytes: look there first, then
// 64 bytes at a time with an early exit, so that only the pages that are zero are read whole.
// Loads by memcpy: a page read into an output's room (the export) need not be aligned.
bool page_is_zero(const uint8_t* page) {
  auto word = [page](size_t i) {
    uint64_t w;
    std::memcpy(&w, page + i * 8, sizeof w);
    return w;
  };
  if (word(0) != 0) return false;
  for (size_t i = 0; i < kPageSize / 8; i += 8) {
    uint64_t acc = word(i) | word(i + 1) | word(i + 2) | word(i + 3) | word(i + 4) | word(i + 5) |
                   word(i + 6) | word(i + 7);
    if (acc != 0) return false;
  }
  return true;
}

struct Range {
  uint64_t addr;  // remote address
  uint64_t pages;
  uint64_t key;  // the address recorded in the run (vaddr, or offset in a shmem object)
  bool skip_zero;
  bool readable;
  // Not plain anonymous memory: a file or a driver is behind the mapping, which may be a
  // device's (MappingFlagsGate).
  bool after_flags = false;

  // `count` pages from page `first` on, with this range's attributes.
  Range part(uint64_t first, uint64_t count) const {
    Range r = *this;
    r.addr += first * kPageSize;
    r.key += first * kPageSize;
    r.pages = count;
    return r;
  }
};

// Device memory (mappings with VM_IO or VM_PFNMAP) must never be read: a read may act on the
// device. process_vm_readv cannot read it (get_user_pages refuses such mappings: EFAULT), but
// /proc/PID/mem can (through the mapping's own access method), so that fallback waits for the
// mappings' VmFlags, which say whether a mapping is a device's. The flags come from smaps, which a
// large process takes ~17 ms per GiB to give (it counts every page): the copy does not wait for
// them unless it needs the fallback for a mapping that is not plain anonymous memory.
class MappingFlagsGate {
 public:
  // `check` takes the flags in and throws if a mapping is a device's.
  explicit MappingFlagsGate(std::function<void()> check) : check_(std::move(check)) {}

  void pass() { check_.pass(); }
  void pass_before_fallback(const std::vector<Range>& pieces) {
    if (std::any_of(pieces.begin(), pieces.end(), [](const Range& r) { return r.after_flags; }))
      check_.pass();
  }

 private:
  SharedOnceCheck check_;
};

// Calls `run(piece, first_page, pages, offset_in_data)` for each run of pages worth keeping in
// `data`, the batch just read for `pieces` (in order): every page of a piece whose zero pages are
// not skipped, and the pages that are not all zeros otherwise.
template <typename OnRun>
void for_each_kept_run(const std::vector<Range>& pieces, const uint8_t* data, OnRun&& run) {
  size_t at = 0;
  for (const Range& piece : pieces) {
    auto skipped = [&](uint64_t page) {
      return piece.skip_zero && page_is_zero(data + at + page * kPageSize);
    };
    uint64_t i = 0;
    while (i < piece.pages) {
      if (skipped(i)) {
        ++i;
        continue;
      }
      uint64_t j = i + 1;
      while (j < piece.pages && !skipped(j)) ++j;
      run(piece, i, j - i, at + i * kPageSize);
      i = j;
    }
    at += piece.pages * kPageSize;
  }
}

// Buffers the page copier reads into, populated once for the whole dump (first touches cost
// ~10 µs per page here). Small enough to stay in the CPU caches between the read and the write.
class CopyBuffers {
 public:
  static constexpr size_t kCount = 4;
  static uint8_t* get(size_t index) {
    std::lock_guard lock(mutex());
    PooledMemory& memory = taken();
    if (memory.data() == nullptr) {
      // Pool memory where the machine has a pool (pages that stay populated between commands),
      // else fresh memory in transparent huge pages where the kernel gives them (madvise mode
      // here): populating is then a few 2 MiB faults rather than 2048 faults of ~8 µs, and the
      // copies into them miss the TLB less.
      memory = BufferPool::system().take(kCopyChunk * kCount);
      PooledMemory::populate(memory.data(), memory.size());
    }
    return reinterpret_cast<uint8_t*>(memory.data()) + index * kCopyChunk;
  }

  // Only once no copy runs (the end of a dump).
  static void release() {
    std::lock_guard lock(mutex());
    taken() = PooledMemory();
  }

 private:
  static std::mutex& mutex() {
    static std::mutex m;
    return m;
  }
  static PooledMemory& taken() {
    static PooledMemory memory;
    return memory;
  }
};

// Reads the `remote` pieces of process `pid` (the pages of `pieces`, `bytes` in all) into `data`.
void read_remote(pid_t pid, UniqueFd& mem, const std::vector<iovec>& remote,
                 const std::vector<Range>& pieces, uint8_t* data, size_t bytes,
                 MappingFlagsGate& gate) {
  bool all_readable =
      std::all_of(pieces.begin(), pieces.end(), [](const Range& r) { return r.readable; });
  ssize_t n = -1;
  if (all_readable) {
    iovec local{data, bytes};
    n = ::process_vm_readv(pid, &local, 1, remote.data(), remote.size(), 0);
  }
  if (n == static_cast<ssize_t>(bytes)) return;
  // Pages without read permission (PROT_NONE, write-only) are readable through /proc/PID/mem,
  // which reads with FOLL_FORCE.
  gate.pass_before_fallback(pieces);
  if (!mem) {
    std::string path = "/proc/" + std::to_string(pid) + "/mem";
    mem = UniqueFd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
    if (!mem) throw_errno("open " + path);
  }
  size_t at = 0;
  for (const iovec& iov : remote) {
    size_t got = 0;
    while (got < iov.iov_len) {
      ssize_t r = ::pread(mem.get(), data + at + got, iov.iov_len - got,
                          static_cast<off_t>(reinterpret_cast<uint64_t>(iov.iov_base) + got));
      if (r <= 0)
        throw_errno("process " + std::to_string(pid) + ": reading memory at " +
                    RemoteAddr(reinterpret_cast<uint64_t>(iov.iov_base) + got).hex());
      got += static_cast<size_t>(r);
    }
    at += iov.iov_len;
  }
}

// Cuts `ranges` into batches of at most `batch_limit()` bytes (asked as each batch begins: a
// multiple of the page size, at least one page) and kMaxIov pieces, in order, and calls
// `batch(remote, pieces, bytes)` for each.
template <typename Limit, typename Batch>
void for_each_batch(const std::vector<Range>& ranges, Limit&& batch_limit, Batch&& batch) {
  std::vector<iovec> remote;
  std::vector<Range> pieces;
  size_t bytes = 0;
  size_t limit = 0;
  auto flush = [&] {
    // Between two batches no page is half copied: a held Ctrl-C stops the dump here.
    throw_if_interrupted();
    if (!pieces.empty()) batch(remote, pieces, bytes);
    remote.clear();
    pieces.clear();
    bytes = 0;
  };
  for (const Range& r : ranges) {
    uint64_t done = 0;
    while (done < r.pages) {
      if (pieces.empty()) {
        limit = batch_limit();
        if (limit < kPageSize || limit % kPageSize != 0)
          throw std::logic_error("page batch limit of " + std::to_string(limit) + " bytes");
      }
      uint64_t room = (limit - bytes) / kPageSize;
      uint64_t n = std::min(room, r.pages - done);
      Range piece = r.part(done, n);
      remote.push_back({reinterpret_cast<void*>(piece.addr), n * kPageSize});
      pieces.push_back(piece);
      bytes += n * kPageSize;
      done += n;
      if (bytes == limit || remote.size() == kMaxIov) flush();
    }
  }
  flush();
}

size_t copy_chunk_limit() {
  return kCopyChunk;
}

// Appends a run of `pages` pages at `key`, stored at `offset` of image `image`, merging it into
// the last run when they are contiguous in both.
void add_run(std::vector<PageRun>& runs, uint64_t key, uint64_t pages, uint64_t offset,
             uint32_t image) {
  if (!runs.empty() && runs.back().image == image &&
      runs.back().vaddr + runs.back().pages * kPageSize == key &&
      runs.back().offset + runs.back().pages * kPageSize == offset)
    runs.back().pages += pages;
  else
    runs.push_back({key, pages, offset, image});
}

// Copies ranges of a process's memory into a raw image in large batches. Every page of the
// ranges goes into the image (its size was fixed from pagemap before any page was read); pages
// found to hold only zeros stay out of the runs, so restore leaves them untouched (zero).
//
// Reading (process_vm_readv into a buffer, zero-page detection, checksum) and writing (the
// sink's write) overlap when there is more than one batch: a writer thread takes filled buffers
// in order while the next ones are read, so the copy runs at the slower of the two, not at the
// sum of both.
class PageCopier {
 public:
  PageCopier(pid_t pid, RawImageWriter& out, MemoryDumpCounters& counters, MappingFlagsGate& gate)
      : pid_(pid), out_(out), counters_(counters), gate_(gate), next_offset_(out.payload_size()) {}

  ~PageCopier() { stop_writer(); }

  void copy(const std::vector<Range>& ranges, std::vector<PageRun>& runs) {
    if (out_.write_room(kMinRoom).first) {
      copy_in_place(ranges, runs);
      return;
    }
    uint64_t total_pages = 0;
    for (const Range& r : ranges) total_pages += r.pages;
    if (total_pages * kPageSize > kCopyChunk) start_writer();
    for_each_batch(ranges, copy_chunk_limit,
                   [&](const std::vector<iovec>& remote, const std::vector<Range>& pieces,
                       size_t bytes) { read_batch(remote, pieces, bytes, runs); });
    finish_writer();
  }

 private:
  // Less room than this in the output's frame: a fresh frame rather than a small batch.
  static constexpr size_t kMinRoom = 64 << 10;

  // The output has room for the bytes (the export's compressor, whose workers compress each
  // frame once it is full): every batch is read straight into it, checked and checksummed there
  // while in this core's cache, and written from there without a copy, all by this thread.
  void copy_in_place(const std::vector<Range>& ranges, std::vector<PageRun>& runs) {
    uint8_t* room = nullptr;
    auto room_limit = [&] {
      auto [data, size] = out_.write_room(kMinRoom);
      if (!data || size < kPageSize)
        throw std::logic_error(out_.name() + ": the output's room went away");
      room = static_cast<uint8_t*>(data);
      return std::min(size / kPageSize * kPageSize, kCopyChunk);
    };
    for_each_batch(
        ranges, room_limit,
        [&](const std::vector<iovec>& remote, const std::vector<Range>& pieces, size_t bytes) {
          uint64_t t0 = steady_now_us();
          read_and_check(remote, pieces, room, bytes, runs);
          uint64_t t1 = steady_now_us();
          out_.append_checksummed(room, bytes);
          counters_.read_us += t1 - t0;
          counters_.write_us += steady_now_us() - t1;
        });
  }

  void read_batch(const std::vector<iovec>& remote, const std::vector<Range>& pieces, size_t bytes,
                  std::vector<PageRun>& runs) {
    uint64_t t0 = steady_now_us();
    size_t buffer = take_free_buffer();
    read_and_check(remote, pieces, CopyBuffers::get(buffer), bytes, runs);
    counters_.read_us += steady_now_us() - t0;
    submit(buffer, bytes);
  }

  // Reads a batch into `data`, checksums it while it is still in this core's cache (the writer
  // may run elsewhere) and records the runs of its pages worth restoring.
  void read_and_check(const std::vector<iovec>& remote, const std::vector<Range>& pieces,
                      uint8_t* data, size_t bytes, std::vector<PageRun>& runs) {
    read_remote(pid_, mem_, remote, pieces, data, bytes, gate_);
    out_.add_to_checksum(data, bytes);
    const uint64_t base = next_offset_;
    for_each_kept_run(pieces, data,
                      [&](const Range& piece, uint64_t first, uint64_t pages, size_t at) {
                        add_run(runs, piece.key + first * kPageSize, pages, base + at, 0);
                        counters_.pages_written += pages;
                      });
    next_offset_ += bytes;
  }

  // --- the writer side ------------------------------------------------------------------------

  void write_buffer(size_t buffer, size_t bytes) {
    uint64_t t0 = steady_now_us();
    out_.append_checksummed(CopyBuffers::get(buffer), bytes);
    write_us_ += steady_now_us() - t0;
  }

  void start_writer() {
    for (size_t i = 0; i < CopyBuffers::kCount; ++i) free_.push_back(i);
    writer_ = std::thread([this] { writer_loop(); });
  }

  void writer_loop() {
    name_this_thread("cryo-pagewrite");
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return !filled_.empty() || closing_; });
      if (filled_.empty() || error_) return;  // closing, all written (or given up)
      auto [buffer, bytes] = filled_.front();
      filled_.pop_front();
      lock.unlock();
      try {
        write_buffer(buffer, bytes);
      } catch (...) {
        lock.lock();
        error_ = std::current_exception();
        changed_.notify_all();
        return;
      }
      lock.lock();
      free_.push_back(buffer);
      changed_.notify_all();
    }
  }

  size_t take_free_buffer() {
    if (!writer_.joinable()) return 0;  // synchronous: one buffer
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !free_.empty() || error_; });
    if (error_) std::rethrow_exception(error_);
    size_t buffer = free_.front();
    free_.pop_front();
    return buffer;
  }

  void submit(size_t buffer, size_t bytes) {
    if (!writer_.joinable()) {
      write_buffer(buffer, bytes);
      return;
    }
    std::lock_guard lock(mutex_);
    filled_.push_back({buffer, bytes});
    changed_.notify_all();
  }

  // Waits until every filled buffer is written; rethrows the writer's error.
  void finish_writer() {
    if (writer_.joinable()) {
      {
        std::lock_guard lock(mutex_);
        closing_ = true;
        changed_.notify_all();
      }
      writer_.join();
      if (error_) std::rethrow_exception(error_);
    }
    counters_.write_us += write_us_;
    write_us_ = 0;
  }

  // On an error of the reading side: the writer drops what is queued and ends.
  void stop_writer() noexcept {
    if (!writer_.joinable()) return;
    {
      std::lock_guard lock(mutex_);
      filled_.clear();
      closing_ = true;
      changed_.notify_all();
    }
    writer_.join();
  }

  pid_t pid_;
  RawImageWriter& out_;
  MemoryDumpCounters& counters_;
  MappingFlagsGate& gate_;
  uint64_t next_offset_;
  UniqueFd mem_;

  std::thread writer_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<size_t> free_;
  std::deque<std::pair<size_t, size_t>> filled_;  // (buffer, bytes), in image order
  bool closing_ = false;
  std::exception_ptr error_;
  uint64_t write_us_ = 0;  // by the writer thread, added to the counters at the end
};

// Page images of one process written in parallel into a sink with parallel outputs: the ranges
// are cut into `images` parts of about as many pages, each copied by a thread of its own into an
// image of its own (tmpfs serialises the writes to one file: one file per thread scales), which
// reads a batch, drops the pages that are zero (skip_zero ranges) and appends the others with one
// vectored write. Image sizes are known at the end only.
class ShardedPageDump {
 public:
  static_assert(kMaxPageImages <= CopyBuffers::kCount, "a copy buffer per image");

  ShardedPageDump(pid_t pid, ImageSink& sink, const std::string& base_name, size_t images,
                  MappingFlagsGate& gate)
      : pid_(pid), gate_(gate) {
    for (size_t i = 0; i < images; ++i) {
      std::string name = i == 0 ? base_name + ".img" : base_name + "." + std::to_string(i) + ".img";
      shards_.push_back(std::make_unique<Shard>());
      shards_.back()->writer = std::make_unique<RawImageWriter>(sink, name);
    }
  }

  // Returns the runs of every image, in address order (`ranges` are).
  std::vector<PageRun> copy(const std::vector<Range>& ranges, MemoryDumpCounters& counters) {
    uint64_t total_pages = 0;
    for (const Range& r : ranges) total_pages += r.pages;
    // Image i takes the pages [total * i / n, total * (i + 1) / n) of the ranges in order.
    const size_t n = shards_.size();
    size_t next_range = 0;
    uint64_t done_in_range = 0;
    for (size_t i = 0; i < n; ++i) {
      uint64_t want = total_pages * (i + 1) / n - total_pages * i / n;
      while (want > 0 && next_range < ranges.size()) {
        const Range& r = ranges[next_range];
        uint64_t take = std::min(want, r.pages - done_in_range);
        shards_[i]->ranges.push_back(r.part(done_in_range, take));
        want -= take;
        done_in_range += take;
        if (done_in_range == r.pages) {
          ++next_range;
          done_in_range = 0;
        }
      }
    }
    std::vector<std::thread> threads;
    try {
      for (size_t i = 1; i < n; ++i) threads.emplace_back([this, i] { run_shard(i); });
    } catch (...) {
      stop_ = true;
      for (std::thread& t : threads) t.join();
      throw;
    }
    run_shard(0);
    for (std::thread& t : threads) t.join();
    if (first_error_) std::rethrow_exception(first_error_);
    std::vector<PageRun> runs;
    for (auto& shard : shards_) {
      uint64_t t0 = steady_now_us();
      shard->writer->finish();
      counters.write_us += steady_now_us() - t0;
      counters.read_us += shard->counters.read_us;
      counters.write_us += shard->counters.write_us;
      counters.pages_written += shard->counters.pages_written;
      runs.insert(runs.end(), shard->runs.begin(), shard->runs.end());
    }
    return runs;
  }

  std::vector<std::string> image_names() const {
    std::vector<std::string> names;
    for (const auto& shard : shards_) names.push_back(shard->writer->name());
    return names;
  }

 private:
  struct Shard {
    std::vector<Range> ranges;
    std::unique_ptr<RawImageWriter> writer;
    std::vector<PageRun> runs;
    MemoryDumpCounters counters;
  };

  void run_shard(size_t index) {
    if (index > 0) name_this_thread("cryo-pages");
    Shard& shard = *shards_[index];
    try {
      copy_shard(index, shard);
    } catch (...) {
      std::lock_guard lock(error_mutex_);
      if (!first_error_) first_error_ = std::current_exception();
      stop_ = true;
    }
  }

  void copy_shard(size_t index, Shard& shard) {
    uint8_t* data = CopyBuffers::get(index);
    UniqueFd mem;
    std::vector<iovec> keep;
    const auto image = static_cast<uint32_t>(index);
    for_each_batch(
        shard.ranges, copy_chunk_limit,
        [&](const std::vector<iovec>& remote, const std::vector<Range>& pieces, size_t bytes) {
          if (stop_) throw Error("stopped: another page image failed");
          uint64_t t0 = steady_now_us();
          read_remote(pid_, mem, remote, pieces, data, bytes, gate_);
          keep.clear();
          uint64_t offset = shard.writer->payload_size();
          for_each_kept_run(
              pieces, data, [&](const Range& piece, uint64_t first, uint64_t pages, size_t at) {
                uint64_t len = pages * kPageSize;
                if (!keep.empty() &&
                    static_cast<uint8_t*>(keep.back().iov_base) + keep.back().iov_len == data + at)
                  keep.back().iov_len += len;
                else
                  keep.push_back({data + at, len});
                add_run(shard.runs, piece.key + first * kPageSize, pages, offset, image);
                offset += len;
                shard.counters.pages_written += pages;
              });
          uint64_t t1 = steady_now_us();
          shard.counters.read_us += t1 - t0;
          if (!keep.empty()) shard.writer->append_vectored(keep.data(), keep.size());
          shard.counters.write_us += steady_now_us() - t1;
        });
  }

  pid_t pid_;
  MappingFlagsGate& gate_;
  std::vector<std::unique_ptr<Shard>> shards_;
  std::atomic<bool> stop_{false};
  std::mutex error_mutex_;
  std::exception_ptr first_error_;  // the first failure, not the "stopped" of the others
};

// PAGEMAP_SCAN (Linux 6.7, include/uapi/linux/fs.h: Debian 12's headers predate it): the kernel
// walks the page tables and returns regions of pages of the categories asked for, instead of 8
// bytes of pagemap per page for us to read and test.
struct PageRegion {
  uint64_t start;
  uint64_t end;
  uint64_t categories;
};
struct PagemapScanArg {
  uint64_t size;
  uint64_t flags;
  uint64_t start;
  uint64_t end;
  uint64_t walk_end;
  uint64_t vec;
  uint64_t vec_len;
  uint64_t max_pages;
  uint64_t category_inverted;
  uint64_t category_mask;
  uint64_t category_anyof_mask;
  uint64_t return_mask;
};
constexpr unsigned long kPagemapScan = _IOWR('f', 16, PagemapScanArg);
constexpr uint64_t kPageIsFile = 1 << 2;
constexpr uint64_t kPageIsPresent = 1 << 3;
constexpr uint64_t kPageIsSwapped = 1 << 4;
constexpr uint64_t kPageIsPfnZero = 1 << 5;

// The private anonymous pages of [start, end) (present or swapped, not file or shared memory
// pages, not the zero page), as pages_to_dump() selects them from pagemap; nullopt when this
// kernel has no PAGEMAP_SCAN.
std::optional<std::vector<std::pair<uint64_t, uint64_t>>> scan_private_pages(int pagemap,
                                                                             uint64_t start,
                                                                             uint64_t end) {
  static std::atomic<bool> unsupported{false};
  if (unsupported) return std::nullopt;
  std::vector<std::pair<uint64_t, uint64_t>> out;  // (addr, pages)
  thread_local std::vector<PageRegion> regions(512);
  for (uint64_t at = start; at < end;) {
    PagemapScanArg arg{};
    arg.size = sizeof arg;
    arg.start = at;
    arg.end = end;
    arg.vec = reinterpret_cast<uint64_t>(regions.data());
    arg.vec_len = regions.size();
    arg.category_anyof_mask = kPageIsPresent | kPageIsSwapped;
    arg.category_inverted = kPageIsFile | kPageIsPfnZero;
    arg.category_mask = kPageIsFile | kPageIsPfnZero;
    arg.return_mask = kPageIsPresent | kPageIsSwapped;
    long n = ::ioctl(pagemap, kPagemapScan, &arg);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == ENOTTY || errno == EINVAL) {
        unsupported = true;
        return std::nullopt;
      }
      throw_errno("PAGEMAP_SCAN of " + RemoteAddr(at).hex() + "-" + RemoteAddr(end).hex());
    }
    for (long i = 0; i < n; ++i) {
      const PageRegion& r = regions[static_cast<size_t>(i)];
      uint64_t pages = (r.end - r.start) / kPageSize;
      if (!out.empty() && out.back().first + out.back().second * kPageSize == r.start)
        out.back().second += pages;
      else
        out.push_back({r.start, pages});
    }
    if (arg.walk_end <= at) throw Error("PAGEMAP_SCAN made no progress at " + RemoteAddr(at).hex());
    at = arg.walk_end;
  }
  return out;
}

// Pages of [start, end) worth dumping according to pagemap. `shared`: every present or swapped
// page counts (shared memory pages are "file" pages); otherwise only private anonymous ones
// (COW copies in file mappings), and not the zero page.
std::vector<std::pair<uint64_t, uint64_t>> pages_to_dump(int pagemap, uint64_t start, uint64_t end,
                                                         bool shared,
                                                         MemoryDumpCounters& counters) {
  std::vector<std::pair<uint64_t, uint64_t>> out;  // (addr, pages)
  const uint64_t zero_pfn = zero_page_pfn();
  constexpr uint64_t kEntriesPerRead = 64 * 1024;
  // Sized to the area: a zeroed buffer of the largest size for every small VMA cost more than the
  // pagemap reads themselves.
  std::vector<uint64_t> entries(std::min(kEntriesPerRead, (end - start) / kPageSize));
  for (uint64_t addr = start; addr < end;) {
    uint64_t count = std::min(kEntriesPerRead, (end - addr) / kPageSize);
    ssize_t n =
        ::pread(pagemap, entries.data(), count * 8, static_cast<off_t>(addr / kPageSize * 8));
    if (n != static_cast<ssize_t>(count * 8)) throw_errno("reading pagemap");
    counters.pages_scanned += count;
    for (uint64_t i = 0; i < count; ++i) {
      uint64_t e = entries[i];
      bool wanted = (e & (kPresent | kSwapped)) != 0;
      if (wanted && !shared) {
        if (e & kFileOrSharedAnon)
          wanted = false;
        else if ((e & kPresent) && zero_pfn && (e & kPfnMask) == zero_pfn)
          wanted = false;
      }
      if (!wanted) continue;
      uint64_t page = addr + i * kPageSize;
      if (!out.empty() && out.back().first + out.back().second * kPageSize == page)
        ++out.back().second;
      else
        out.push_back({page, 1});
    }
    addr += count * kPageSize;
  }
  return out;
}

int parse_prot(const std::string& perms) {
  int prot = 0;
  if (perms[0] == 'r') prot |= PROT_READ;
  if (perms[1] == 'w') prot |= PROT_WRITE;
  if (perms[2] == 'x') prot |= PROT_EXEC;
  return prot;
}

bool is_header_line(const std::string& line) {
  size_t dash = line.find('-');
  size_t space = line.find(' ');
  return dash != std::string::npos && space != std::string::npos && dash < space;
}

}  // namespace

const char* vma_kind_name(VmaKind kind) {
  switch (kind) {
    case VmaKind::kAnon:
      return "anon";
    case VmaKind::kFilePrivate:
      return "file_private";
    case VmaKind::kFileShared:
      return "file_shared";
    case VmaKind::kSharedAnon:
      return "shared_anon";
    case VmaKind::kSysvShm:
      return "sysv_shm";
    case VmaKind::kVdso:
      return "vdso";
    case VmaKind::kVvar:
      return "vvar";
    case VmaKind::kVvarVclock:
      return "vvar_vclock";
    case VmaKind::kVsyscall:
      return "vsyscall";
  }
  return "?";
}

VmaKind vma_kind_from_name(const std::string& name) {
  for (VmaKind k : {VmaKind::kAnon, VmaKind::kFilePrivate, VmaKind::kFileShared,
                    VmaKind::kSharedAnon, VmaKind::kSysvShm, VmaKind::kVdso, VmaKind::kVvar,
                    VmaKind::kVvarVclock, VmaKind::kVsyscall})
    if (name == vma_kind_name(k)) return k;
  throw Error("unknown VMA kind in image: " + name);
}

bool Vma::has_flag(const char* flag) const {
  return std::find(vm_flags.begin(), vm_flags.end(), flag) != vm_flags.end();
}

std::vector<Vma> read_vmas(pid_t pid, VmaDetail detail) {
  std::string path =
      "/proc/" + std::to_string(pid) + (detail == VmaDetail::kWithFlags ? "/smaps" : "/maps");
  std::ifstream in(path);
  if (!in) throw Error("cannot open " + path);
  std::vector<Vma> vmas;
  std::string line;
  while (std::getline(in, line)) {
    if (is_header_line(line)) {
      Vma vma;
      char perms[8] = {};
      char dev[32] = {};
      int consumed = 0;
      unsigned long long start, end, offset, inode;
      if (std::sscanf(line.c_str(), "%llx-%llx %7s %llx %31s %llu %n", &start, &end, perms, &offset,
                      dev, &inode, &consumed) < 6)
        throw Error("unexpected line in " + path + ": " + line);
      vma.start = start;
      vma.end = end;
      vma.offset = offset;
      vma.inode = inode;
      vma.dev = dev;
      vma.prot = parse_prot(perms);
      vma.shared = perms[3] == 's';
      vma.path =
          consumed > 0 && static_cast<size_t>(consumed) <= line.size() ? line.substr(consumed) : "";
      if (vma.path == "[vdso]")
        vma.kind = VmaKind::kVdso;
      else if (vma.path == "[vvar]")
        vma.kind = VmaKind::kVvar;
      else if (vma.path == "[vvar_vclock]")
        vma.kind = VmaKind::kVvarVclock;
      else if (vma.path == "[vsyscall]")
        vma.kind = VmaKind::kVsyscall;
      else if (vma.shared && vma.path.rfind("/SYSV", 0) == 0)
        vma.kind = VmaKind::kSysvShm;
      else if (vma.shared &&
               (vma.path.rfind("/dev/zero", 0) == 0 || vma.path.rfind("/memfd:", 0) == 0))
        vma.kind = VmaKind::kSharedAnon;
      else if (vma.path.empty() || vma.path[0] == '[')
        vma.kind = VmaKind::kAnon;
      else
        vma.kind = vma.shared ? VmaKind::kFileShared : VmaKind::kFilePrivate;
      vmas.push_back(vma);
    } else if (line.rfind("VmFlags:", 0) == 0 && !vmas.empty()) {
      std::istringstream flags(line.substr(8));
      std::string flag;
      while (flags >> flag) vmas.back().vm_flags.push_back(flag);
    }
  }
  return vmas;
}

json vma_to_json(const Vma& vma) {
  return {{"start", vma.start},       {"end", vma.end},
          {"prot", vma.prot},         {"shared", vma.shared},
          {"offset", vma.offset},     {"dev", vma.dev},
          {"inode", vma.inode},       {"path", vma.path},
          {"vm_flags", vma.vm_flags}, {"kind", vma_kind_name(vma.kind)}};
}

Vma vma_from_json(const json& j) {
  Vma vma;
  vma.start = j.at("start");
  vma.end = j.at("end");
  vma.prot = j.at("prot");
  vma.shared = j.at("shared");
  vma.offset = j.at("offset");
  vma.dev = j.at("dev");
  vma.inode = j.at("inode");
  vma.path = j.at("path");
  vma.vm_flags = j.at("vm_flags").get<std::vector<std::string>>();
  vma.kind = vma_kind_from_name(j.at("kind"));
  return vma;
}

namespace {

// A long run list is one base64 string of packed records, each four little-endian uint64
// (vaddr, pages, offset, image): a large process has thousands of runs (4,102 for 1 GiB of
// mixed memory), and as JSON arrays they cost ~2 ms of building plus their serialization with
// the tree frozen (last page copied to mm image written: 5.4-5.8 ms, packed 4.0-4.5 ms, most of
// it waiting for the compressor). A short list stays readable.
constexpr size_t kMaxRunsAsArrays = 64;
constexpr size_t kPackedRunSize = 4 * sizeof(uint64_t);

}  // namespace

json runs_to_json(const std::vector<PageRun>& runs) {
  if (runs.size() > kMaxRunsAsArrays) {
    std::string packed(runs.size() * kPackedRunSize, '\0');
    char* at = packed.data();
    for (const PageRun& r : runs) {
      const uint64_t fields[4] = {r.vaddr, r.pages, r.offset, r.image};
      static_assert(sizeof fields == kPackedRunSize);
      std::memcpy(at, fields, sizeof fields);  // x86-64: little-endian already
      at += sizeof fields;
    }
    return base64_encode(packed.data(), packed.size());
  }
  json list = json::array();
  for (const PageRun& r : runs) {
    if (r.image == 0)
      list.push_back({r.vaddr, r.pages, r.offset});
    else
      list.push_back({r.vaddr, r.pages, r.offset, r.image});
  }
  return list;
}

std::vector<PageRun> runs_from_json(const json& j) {
  std::vector<PageRun> runs;
  if (j.is_string()) {
    std::vector<uint8_t> packed = base64_decode(j.get<std::string>());
    if (packed.size() % kPackedRunSize != 0)
      throw Error("page runs: " + std::to_string(packed.size()) +
                  " packed bytes, not a whole number of runs");
    runs.reserve(packed.size() / kPackedRunSize);
    for (size_t at = 0; at < packed.size(); at += kPackedRunSize) {
      uint64_t fields[4];
      std::memcpy(fields, packed.data() + at, sizeof fields);
      if (fields[3] > UINT32_MAX) throw Error("page runs: image index out of range");
      runs.push_back({fields[0], fields[1], fields[2], static_cast<uint32_t>(fields[3])});
    }
    return runs;
  }
  runs.reserve(j.size());
  for (const json& r : j)
    runs.push_back({r.at(0), r.at(1), r.at(2), r.size() > 3 ? r.at(3).get<uint32_t>() : 0u});
  return runs;
}

namespace {

// Dumps one shared memory object (shared anonymous mapping, memfd, SysV segment) through the
// mapping's file: its data extents are found first (the image's size), then copied.
json dump_shared_object(const std::string& map_file, const Vma& vma, ImageSink& sink,
                        MemoryDumpCounters& counters) {
  UniqueFd object(::open(map_file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!object) throw_errno("open " + map_file);
  struct stat st {};
  if (::fstat(object.get(), &st) < 0) throw_errno("fstat " + map_file);
  uint64_t t0 = steady_now_us();
  std::vector<std::pair<off_t, off_t>> extents;  // [data, hole)
  uint64_t payload = 0;
  for (off_t pos = 0; pos < st.st_size;) {
    off_t data = ::lseek(object.get(), pos, SEEK_DATA);
    if (data < 0) break;  // ENXIO: no data after pos
    off_t hole = ::lseek(object.get(), data, SEEK_HOLE);
    if (hole < 0 || hole > st.st_size) hole = st.st_size;
    extents.push_back({data, hole});
    // A partial last page is stored whole, zero-filled.
    payload += (static_cast<uint64_t>(hole - data) + kPageSize - 1) / kPageSize * kPageSize;
    pos = hole;
  }
  std::string name = "shmem-" + std::to_string(vma.inode) + ".img";
  RawImageWriter shm(sink, name, payload);
  std::vector<PageRun> shm_runs;
  std::vector<uint8_t> buffer(kCopyChunk);  // rare (shared memory only): a plain buffer will do
  for (auto [data, hole] : extents) {
    for (off_t at = data; at < hole;) {
      size_t want =
          static_cast<size_t>(std::min<off_t>(static_cast<off_t>(buffer.size()), hole - at));
      ssize_t got = ::pread(object.get(), buffer.data(), want, at);
      if (got < 0) throw_errno("reading shared memory " + vma.path);
      if (static_cast<size_t>(got) != want)
        throw Error("shared memory " + vma.path + " shrank while being dumped");
      size_t n = (want + kPageSize - 1) / kPageSize * kPageSize;
      std::memset(buffer.data() + want, 0, n - want);
      uint64_t offset = shm.payload_size();
      shm.append(buffer.data(), n);
      shm_runs.push_back({static_cast<uint64_t>(at), n / kPageSize, offset});
      counters.pages_written += n / kPageSize;
      at += got;
    }
  }
  counters.pages_scanned += static_cast<uint64_t>(st.st_size) / kPageSize;
  counters.read_us += steady_now_us() - t0;
  shm.finish();
  return {{"inode", vma.inode},
          {"size", static_cast<uint64_t>(st.st_size)},
          {"image", name},
          {"runs", runs_to_json(shm_runs)}};
}

// A mapped file that is a device, or that was deleted since it was mapped: a device other than
// /dev/zero is refused; a deleted file's content is saved once for the tree.
void check_mapped_file(pid_t pid, const std::string& map_file, const Vma& vma, ImageSink& sink,
                       TreeMemory& tree) {
  constexpr std::string_view kDeleted = " (deleted)";
  bool deleted =
      vma.path.size() > kDeleted.size() &&
      vma.path.compare(vma.path.size() - kDeleted.size(), kDeleted.size(), kDeleted) == 0;
  if (!deleted && vma.path.rfind("/dev/", 0) != 0) return;
  UniqueFd file(::open(map_file.c_str(), O_RDONLY | O_CLOEXEC));
  if (!file) throw_errno("process " + std::to_string(pid) + ": open " + map_file);
  struct stat st {};
  if (::fstat(file.get(), &st) < 0) throw_errno("fstat " + map_file);
  if (S_ISCHR(st.st_mode) || S_ISBLK(st.st_mode)) {
    if (S_ISCHR(st.st_mode) && st.st_rdev == makedev(1, 5)) return;  // /dev/zero
    throw Error("process " + std::to_string(pid) + " maps the device " + vma.path + " (" +
                (S_ISCHR(st.st_mode) ? "char " : "block ") + std::to_string(major(st.st_rdev)) +
                ":" + std::to_string(minor(st.st_rdev)) + ") at " + RemoteAddr(vma.start).hex() +
                ": not supported yet (only /dev/zero mappings are)");
  }
  if (!deleted || st.st_nlink != 0) {
    if (deleted)
      throw Error("process " + std::to_string(pid) + " maps " + vma.path +
                  ": not supported yet: a mapped file unlinked from its path that still has "
                  "other links");
    return;
  }
  if (!S_ISREG(st.st_mode))
    throw Error("process " + std::to_string(pid) + " maps the deleted " + vma.path +
                ", not a regular file: not supported yet");
  std::pair<uint64_t, uint64_t> key{st.st_dev, st.st_ino};
  if (tree.deleted_files.count(key)) return;
  for (const auto& [other, entry] : tree.deleted_files)
    if (entry.at("path") == vma.path)
      throw Error("not supported yet: two different deleted files mapped under one path (" +
                  vma.path + ")");
  std::string name = "mapped-ghost-" + std::to_string(tree.deleted_files.size() + 1) + ".img";
  json entry = {{"path", vma.path},
                {"dev", static_cast<uint64_t>(st.st_dev)},
                {"ino", static_cast<uint64_t>(st.st_ino)},
                {"mode", static_cast<uint32_t>(st.st_mode)},
                {"uid", st.st_uid},
                {"gid", st.st_gid}};
  entry["content"] = files::dump_file_content(sink, name, file.get());
  tree.deleted_files[key] = std::move(entry);
}

}  // namespace

// The process's resident memory (/proc/PID/statm), 0 when unreadable.
uint64_t resident_bytes(pid_t pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/statm");
  uint64_t size_pages = 0, resident_pages = 0;
  if (!(in >> size_pages >> resident_pages)) return 0;
  return resident_pages * kPageSize;
}

namespace {

// Anonymous memory that no driver maps (no device can stand behind it): the heap, the stack,
// unnamed and named (PR_SET_VMA_ANON_NAME) private anonymous mappings.
bool is_plain_anonymous(const Vma& vma) {
  return vma.kind == VmaKind::kAnon && !vma.shared &&
         (vma.path.empty() || vma.path == "[heap]" || vma.path == "[stack]" ||
          vma.path.rfind("[anon:", 0) == 0);
}

}  // namespace

void release_page_copy_buffers() {
  CopyBuffers::release();
}

json dump_memory(pid_t pid, ImageSink& sink, MemoryDumpCounters& counters, TreeMemory& tree) {
  std::map<uint64_t, json>& dumped_shmem = tree.shmem;
  std::string proc = "/proc/" + std::to_string(pid);
  // The VmFlags exist only in smaps, whose reading counts every page of the process (~17 ms per
  // GiB): for a large process it is read on a thread of its own while the pages to copy are found
  // from the mappings of /proc/PID/maps (the same ones: the process is frozen); a small one
  // reads smaps alone, which costs less than a thread. Device mappings are refused, not read
  // (MappingFlagsGate): the page copy starts before the flags are known.
  // The kernel's own mappings are made anew, file and SysV shared ones mapped again at restore.
  auto not_copied = [](const Vma& vma) {
    return vma.kind == VmaKind::kVdso || vma.kind == VmaKind::kVvar ||
           vma.kind == VmaKind::kVvarVclock || vma.kind == VmaKind::kVsyscall ||
           vma.kind == VmaKind::kFileShared || vma.kind == VmaKind::kSysvShm;
  };
  const bool large = resident_bytes(pid) >= kShardMinBytes;
  std::vector<Vma> vmas = read_vmas(pid, large ? VmaDetail::kWithoutFlags : VmaDetail::kWithFlags);
  std::future<std::vector<Vma>> vmas_with_flags;
  if (large)
    vmas_with_flags = std::async(std::launch::async, [pid] {
      name_this_thread("cryo-smaps");
      return read_vmas(pid, VmaDetail::kWithFlags);
    });
  auto take_flags = [&] {
    if (vmas_with_flags.valid()) {
      std::vector<Vma> flagged = vmas_with_flags.get();
      if (flagged.size() != vmas.size())
        throw Error("process " + std::to_string(pid) + ": " + std::to_string(flagged.size()) +
                    " mappings in smaps, " + std::to_string(vmas.size()) + " in maps");
      for (size_t i = 0; i < vmas.size(); ++i) {
        if (flagged[i].start != vmas[i].start || flagged[i].end != vmas[i].end)
          throw Error("process " + std::to_string(pid) + ": mapping " +
                      RemoteAddr(vmas[i].start).hex() + " differs between maps and smaps");
        vmas[i].vm_flags = std::move(flagged[i].vm_flags);
      }
    }
    for (const Vma& vma : vmas)
      if (!not_copied(vma) && (vma.has_flag("io") || vma.has_flag("pf")))
        throw Error("process " + std::to_string(pid) + ": device mapping " + vma.path + " at " +
                    RemoteAddr(vma.start).hex() + ": not supported yet");
  };
  phase_mark("dump: mappings read");
  UniqueFd pagemap(::open((proc + "/pagemap").c_str(), O_RDONLY | O_CLOEXEC));
  if (!pagemap) throw_errno("open " + proc + "/pagemap");

  std::vector<Range> ranges;
  uint64_t pages_in_ranges = 0;
  json vma_list = json::array();
  for (const Vma& vma : vmas) {
    char range[64];
    std::snprintf(range, sizeof range, "/map_files/%lx-%lx", static_cast<unsigned long>(vma.start),
                  static_cast<unsigned long>(vma.end));
    if (vma.kind == VmaKind::kFilePrivate || vma.kind == VmaKind::kFileShared)
      check_mapped_file(pid, proc + range, vma, sink, tree);
    if (not_copied(vma)) continue;
    if (vma.kind == VmaKind::kSharedAnon) {
      if (dumped_shmem.count(vma.inode)) continue;
      // The whole object, read through the mapping's file (map_files): pages written only by
      // other processes or not yet faulted in here are in it too. Dumped once per object.
      dumped_shmem[vma.inode] = dump_shared_object(proc + range, vma, sink, counters);
      continue;
    }
    uint64_t t0 = steady_now_us();
    auto scanned = scan_private_pages(pagemap.get(), vma.start, vma.end);
    if (scanned) counters.pages_scanned += vma.size() / kPageSize;
    auto present = scanned ? std::move(*scanned)
                           : pages_to_dump(pagemap.get(), vma.start, vma.end, false, counters);
    counters.read_us += steady_now_us() - t0;
    for (auto [addr, n] : present) {
      ranges.push_back({addr, n, addr, vma.kind == VmaKind::kAnon, (vma.prot & PROT_READ) != 0,
                        !is_plain_anonymous(vma)});
      pages_in_ranges += n;
    }
  }
  MappingFlagsGate flags_gate(take_flags);
  phase_mark("dump: pages to copy found");
  std::string pages_base = "pages-" + std::to_string(pid);
  std::vector<PageRun> runs;
  json pages_images = json::array();
  if (sink.parallel_outputs()) {
    size_t images = 1;
    if (pages_in_ranges * kPageSize >= kShardMinBytes)
      images = std::clamp<size_t>(std::thread::hardware_concurrency(), 1, kMaxPageImages);
    ShardedPageDump dump(pid, sink, pages_base, images, flags_gate);
    runs = dump.copy(ranges, counters);
    for (const std::string& name : dump.image_names()) pages_images.push_back(name);
  } else {
    // The image's size is known from pagemap before any page is read (a streaming sink needs it).
    RawImageWriter pages(sink, pages_base + ".img", pages_in_ranges * kPageSize);
    PageCopier copier(pid, pages, counters, flags_gate);
    copier.copy(ranges, runs);
    uint64_t t0 = steady_now_us();
    pages.finish();
    counters.write_us += steady_now_us() - t0;
    pages_images.push_back(pages.name());
  }

  phase_mark("dump: pages copied");
  flags_gate.pass();
  for (const Vma& vma : vmas) vma_list.push_back(vma_to_json(vma));
  json mm;
  mm["vmas"] = vma_list;
  mm["runs"] = runs_to_json(runs);
  mm["pages_images"] = pages_images;
  std::string auxv = fs::read_file(proc + "/auxv");
  mm["auxv"] = base64_encode(auxv.data(), auxv.size());
  mm["exe"] = fs::read_link(proc + "/exe");

  // mm fields of /proc/PID/stat (fields 26-28 and 45-51).
  std::string stat = fs::read_file(proc + "/stat");
  std::istringstream in(stat.substr(stat.rfind(')') + 2));
  std::vector<std::string> f;
  std::string field;
  while (in >> field) f.push_back(field);
  auto at = [&](int proc_field) { return std::stoull(f.at(static_cast<size_t>(proc_field - 3))); };
  mm["start_code"] = at(26);
  mm["end_code"] = at(27);
  mm["start_stack"] = at(28);
  mm["start_data"] = at(45);
  mm["end_data"] = at(46);
  mm["start_brk"] = at(47);
  mm["arg_start"] = at(48);
  mm["arg_end"] = at(49);
  mm["env_start"] = at(50);
  mm["env_end"] = at(51);
  return mm;
}

}  // namespace cryo::ckpt
