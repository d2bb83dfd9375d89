#include "engine/checkpoint/archive_io.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
// XXH3 through the library's run-time dispatch (AVX2/AVX-512 where the CPU has them): the plain
// entry points of Debian's build use SSE2 only. Same hashes.
#include <xxh_x86dispatch.h>
// ZSTD_initStaticCCtx: the compressors' working memory in the archive's own buffers. Part of
// zstd's experimental API, which the shared library exports; built against the installed header.
#define ZSTD_STATIC_LINKING_ONLY
#include <zstd.h>

#include <cinttypes>
#include <condition_variable>
#include <cstdio>
#include <cstring>
#include <deque>
#include <fstream>
#include <iostream>
#include <mutex>
#include <set>
#include <sstream>
#include <thread>
#include <vector>

#include "checkpoint/image/image_file.h"
#include "common/buffer_pool.h"
#include "common/clock.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "common/thread_name.h"

namespace cryo::engine {

namespace {

std::string archive_message(archive* a) {
  const char* msg = archive_error_string(a);
  return msg ? msg : "unknown libarchive error";
}

std::string hex128(const XXH128_hash_t& h) {
  char buf[33];
  std::snprintf(buf, sizeof buf, "%016" PRIx64 "%016" PRIx64, static_cast<uint64_t>(h.high64),
                static_cast<uint64_t>(h.low64));
  return buf;
}

std::string hex64(uint64_t h) {
  char buf[17];
  std::snprintf(buf, sizeof buf, "%016" PRIx64, h);
  return buf;
}

std::string human_bytes(double bytes) {
  const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB"};
  int u = 0;
  while (bytes >= 1024 && u < 4) {
    bytes /= 1024;
    ++u;
  }
  char buf[64];
  std::snprintf(buf, sizeof buf, "%.1f %s", bytes, units[u]);
  return buf;
}

}  // namespace

ArchiveCompression parse_archive_compression(const std::string& name) {
  if (name == "zstd") return ArchiveCompression::kZstd;
  if (name == "gzip") return ArchiveCompression::kGzip;
  if (name == "none") return ArchiveCompression::kNone;
  throw ExitCodeError("selected compression algorithm (\"" + name +
                          "\") is not supported: only zstd, gzip and none are",
                      125);
}

std::string to_string(ArchiveCompression compression) {
  switch (compression) {
    case ArchiveCompression::kZstd:
      return "zstd";
    case ArchiveCompression::kGzip:
      return "gzip";
    case ArchiveCompression::kNone:
      return "none";
  }
  return "none";
}

// --- progress ---

TransferProgress::TransferProgress(std::string verb, bool enabled)
    : verb_(std::move(verb)), enabled_(enabled), start_us_(steady_now_us()) {}

TransferProgress::~TransferProgress() {
  finish();
}

void TransferProgress::add(uint64_t bytes) {
  bytes_ += bytes;
  if (!enabled_) return;
  uint64_t now = steady_now_us();
  if (drawn_ && now - last_draw_us_ < 200000) return;
  draw(now);
}

void TransferProgress::draw(uint64_t now) {
  last_draw_us_ = now;
  drawn_ = true;
  double seconds = static_cast<double>(now - start_us_) / 1e6;
  double rate = seconds > 0 ? static_cast<double>(bytes_) / seconds : 0;
  std::cerr << "\r" << verb_ << ": " << human_bytes(static_cast<double>(bytes_)) << ", "
            << human_bytes(rate) << "/s   " << std::flush;
}

void TransferProgress::finish() {
  if (!enabled_ || !drawn_) return;
  draw(steady_now_us());  // the total
  drawn_ = false;
  last_draw_us_ = 0;
  enabled_ = false;
  std::cerr << std::endl;
}

// --- writer ---

bool is_framed_image_entry(const std::string& name) {
  static const std::set<std::string> unframed = {"checkpoint/container.json", "checkpoint/dump.log",
                                                 "checkpoint/restore.log"};
  // The tmpfs contents (checkpoint/tmpfs-N.tar) are tars.
  return starts_with(name, "checkpoint/") && !unframed.count(name) &&
         !(starts_with(name, "checkpoint/tmpfs-") && name.ends_with(".tar"));
}

// The buffers the archive's bytes pass through, in one mapping per user (the export's output, its
// compressor, the import's decompressor) carved into pieces, the whole backed by transparent huge
// pages where the kernel gives them (madvise mode). Two costs of this VM shape it
// (docs/PERFORMANCE.md):
// - every new 4 KiB mapping costs ~3 µs at its first access, even populated, even of a page that
//   is resident (a 36 MiB memset after MADV_POPULATE_WRITE: 27-31 ms in 4 KiB pages, 1.3 ms in
//   2 MiB pages). Buffers of 1 MiB each in mappings of their own never got huge pages.
// - memory freed for ~2 s is handed back to the host (virtio-balloon free page reporting, in
//   blocks of 2 MiB and more): populating it again costs ~2 ms per MiB instead of ~0.07. So the
//   buffers are kept few and small, and come from the machine's BufferPool (common/buffer_pool.h):
//   files of a huge-page tmpfs whose pages stay the guest's between commands.
// Not inherited by child processes. The export's buffers fault in where they are first
// written rather than being populated ahead by its threads: populating holds the mmap lock, which
// the CLI's own mmap calls wait for while it freezes the container and reads its mappings (the
// steps before the page copy took 57-80 ms instead of 26-42 ms after 2.5 s of rest), and the copy
// gained less than that (medians 250 against 266 ms; whole command 336 against 326 ms). The
// import's buffers are populated at once (PopulatedBuffer, ParallelZstdSource).
class BufferArena {
 public:
  static constexpr size_t kPage = 4096;

  static size_t rounded(size_t n) { return (n + kPage - 1) / kPage * kPage; }

  // Room for pieces whose rounded() sizes add up to `capacity`.
  explicit BufferArena(size_t capacity)
      : capacity_(rounded(capacity)), memory_(BufferPool::system().take(capacity_)) {}
  BufferArena(const BufferArena&) = delete;
  BufferArena& operator=(const BufferArena&) = delete;

  // The next `n` bytes of the arena (page-aligned), not yet populated.
  char* take(size_t n) {
    if (used_ + rounded(n) > capacity_) throw Error("internal: archive buffers overcommitted");
    char* piece = memory_.data() + used_;
    used_ += rounded(n);
    return piece;
  }

  static void populate(char* p, size_t n) { PooledMemory::populate(p, rounded(n)); }

 private:
  size_t capacity_;
  size_t used_ = 0;
  PooledMemory memory_;
};

// One buffer in an arena of its own, populated at once.
class PopulatedBuffer {
 public:
  explicit PopulatedBuffer(size_t n) : arena_(n), data_(arena_.take(n)) {
    BufferArena::populate(data_, n);
  }
  char* get() const { return data_; }

 private:
  BufferArena arena_;
  char* data_;
};

// An entry at least this large asks for a flush as it ends (of what has reached the disk then).
constexpr uint64_t kEarlyFlushEntry = 64 << 20;

// The archive's bytes on their way to the fd: the producing thread fills buffers of
// one size, a thread of its own writes them in order. Full buffers are written with O_DIRECT
// when the file system takes it: straight from the buffers to the disk, without filling the
// page cache (whose fresh pages cost more than the disk on a virtual machine) and without a
// writeback left for the final fsync; the last, partial buffer is written through the page cache.
// Without O_DIRECT, each buffer's writeback is started at once (sync_file_range), keeping at most
// kWritebackInFlight buffers unwritten to disk. Either way the disk works while the dump and the
// compressor do. A third thread asks the disk to make the data durable (fdatasync) every
// kFlushEvery bytes: a virtual disk acknowledges writes into its host's cache, and a single
// flush at the end would wait for all of it, with nothing left to overlap (the final fsync of a
// 290 MB archive took 105 ms here). The writes that reach the disk during such a flush wait for
// it: the buffers hold enough of the compressor's output to go on meanwhile. What the final
// fsync waits for is what came after the last flush: with a flush every 32 MiB it took 9-11 ms
// of a 1 GiB export, every 8 MiB 2.5-3 ms, with no loss of rate (the uncompressed export too);
// and request_flush() at the end of a large entry (the pages) leaves it ~1 ms.
class ArchiveOutput {
 public:
  // The buffers' size (a multiple of every logical block size) and number. The uncompressed
  // bytes come faster than any disk takes them: large buffers, large O_DIRECT writes. After zstd
  // too: while every MiB of these buffers was fresh memory (0.2-2.5 ms of CPU each on this VM),
  // four of 2 MiB were no slower than six of 4 MiB (session 8); from the buffer pool, six of 4 MiB
  // (no wait for a free one, half the writes) made 1 GiB exports 13-16 ms faster (medians of 22
  // interleaved pairs, docs/PERFORMANCE.md, session 11).
  static constexpr size_t kBufferSize = 4 << 20;
  static constexpr size_t kBufferCount = 6;
  static constexpr size_t kWritebackInFlight = 8;
  static constexpr uint64_t kFlushEvery = 8 << 20;

  ArchiveOutput(int fd, std::string what, TransferProgress* progress)
      : fd_(fd), what_(std::move(what)), progress_(progress), arena_(kBufferCount * kBufferSize) {
    for (size_t i = 0; i < kBufferCount; ++i) {
      buffers_.push_back(arena_.take(kBufferSize));
      free_.push_back(i);
    }
    int flags = ::fcntl(fd_, F_GETFL);
    direct_ = flags >= 0 && ::lseek(fd_, 0, SEEK_CUR) == 0 &&
              ::fcntl(fd_, F_SETFL, flags | O_DIRECT) == 0;
  }

  // Starts the writer and the flusher.
  void start() {
    flusher_ = std::thread([this] { flusher_loop(); });
    try {
      writer_ = std::thread([this] { writer_loop(); });
    } catch (...) {
      stop();
      throw;
    }
  }

  ~ArchiveOutput() { stop(); }
  ArchiveOutput(const ArchiveOutput&) = delete;
  ArchiveOutput& operator=(const ArchiveOutput&) = delete;

  // Room in the current buffer (at least one byte); produced() says how much was filled.
  std::pair<char*, size_t> space() {
    if (current_ == kNone) current_ = take_free_buffer();
    return {buffers_[current_] + current_used_, kBufferSize - current_used_};
  }
  void produced(size_t n) {
    current_used_ += n;
    queued_bytes_ += n;
    if (current_used_ == kBufferSize) submit_current();
  }
  void append(const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    while (size > 0) {
      auto [room, room_size] = space();
      size_t n = std::min(size, room_size);
      std::memcpy(room, p, n);
      produced(n);
      p += n;
      size -= n;
    }
  }
  // Hands over the current buffer and waits until every byte is written.
  void flush() {
    if (current_ != kNone && current_used_ > 0) submit_current();
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return (filled_.empty() && !busy_) || error_errno_ != 0; });
    rethrow_locked();
  }
  uint64_t bytes() const { return queued_bytes_; }
  // Makes what is written so far durable, on the flusher thread, without waiting.
  void request_flush() {
    std::lock_guard lock(mutex_);
    flush_requested_ = true;
    flush_wanted_.notify_one();
  }

 private:
  static constexpr size_t kNone = static_cast<size_t>(-1);

  void stop() {
    {
      std::lock_guard lock(mutex_);
      filled_.clear();  // an abandoned archive: its partial file is removed anyway
      stopping_ = true;
      changed_.notify_all();
      flush_wanted_.notify_all();
    }
    if (writer_.joinable()) writer_.join();
    if (flusher_.joinable()) flusher_.join();
  }

  void flusher_loop() {
    name_this_thread("cryo-flush");
    std::unique_lock lock(mutex_);
    for (;;) {
      flush_wanted_.wait(lock, [&] { return flush_requested_ || stopping_; });
      if (stopping_) return;
      flush_requested_ = false;
      lock.unlock();
      int err = ::fdatasync(fd_) < 0 ? errno : 0;
      lock.lock();
      // An error reported here is not reported again by the final fsync.
      if (err != 0 && err != EINTR && error_errno_ == 0) {
        error_errno_ = err;
        error_doing_ = "fdatasync";
        changed_.notify_all();
      }
    }
  }

  size_t take_free_buffer() {
    std::unique_lock lock(mutex_);
    changed_.wait(lock, [&] { return !free_.empty() || error_errno_ != 0; });
    rethrow_locked();
    size_t buffer = free_.front();
    free_.pop_front();
    return buffer;
  }
  void submit_current() {
    std::lock_guard lock(mutex_);
    rethrow_locked();
    filled_.push_back({current_, current_used_});
    current_ = kNone;
    current_used_ = 0;
    changed_.notify_all();
  }
  void rethrow_locked() {
    if (error_errno_ != 0)
      throw_errno("writing archive " + what_ + ": " + error_doing_, error_errno_);
  }

  void writer_loop() {
    name_this_thread("cryo-write");
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return !filled_.empty() || stopping_; });
      if (filled_.empty()) return;
      auto [buffer, size] = filled_.front();
      filled_.pop_front();
      busy_ = true;
      lock.unlock();
      int err = write_out(buffers_[buffer], size);
      lock.lock();
      busy_ = false;
      if (err != 0) {
        error_errno_ = err;
        filled_.clear();
        changed_.notify_all();
        return;
      }
      free_.push_back(buffer);
      changed_.notify_all();
    }
  }

  // In the writer thread: 0 or an errno (error_doing_ says of what).
  int write_out(const char* p, size_t size) {
    uint64_t offset = written_;
    if (direct_ && size != kBufferSize) {
      // The tail: not a whole number of blocks.
      int flags = ::fcntl(fd_, F_GETFL);
      if (flags < 0 || ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) < 0) {
        error_doing_ = "fcntl";
        return errno;
      }
      direct_ = false;
    }
    size_t left = size;
    while (left > 0) {
      ssize_t n = ::write(fd_, p, left);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EINVAL && direct_) {
        // O_DIRECT was accepted by fcntl but not by this file system's write.
        int flags = ::fcntl(fd_, F_GETFL);
        if (flags >= 0 && ::fcntl(fd_, F_SETFL, flags & ~O_DIRECT) == 0) {
          direct_ = false;
          continue;
        }
      }
      if (n < 0) {
        error_doing_ = "write";
        return errno;
      }
      p += n;
      left -= static_cast<size_t>(n);
    }
    written_ += size;
    if (progress_) progress_->add(size);
    unflushed_ += size;
    if (unflushed_ >= kFlushEvery) {
      unflushed_ = 0;
      std::lock_guard lock(mutex_);
      flush_requested_ = true;
      flush_wanted_.notify_one();
    }
    if (writeback_ && !direct_) {
      if (::sync_file_range(fd_, static_cast<off_t>(offset), static_cast<off_t>(size),
                            SYNC_FILE_RANGE_WRITE) < 0) {
        writeback_ = false;  // not a file that has writeback (the final fsync reports errors)
        return 0;
      }
      in_flight_.push_back({offset, size});
      if (in_flight_.size() > kWritebackInFlight) {
        auto [old_offset, old_size] = in_flight_.front();
        in_flight_.pop_front();
        if (::sync_file_range(fd_, static_cast<off_t>(old_offset), static_cast<off_t>(old_size),
                              SYNC_FILE_RANGE_WAIT_BEFORE | SYNC_FILE_RANGE_WRITE |
                                  SYNC_FILE_RANGE_WAIT_AFTER) < 0 &&
            errno != EINTR) {
          error_doing_ = "writeback";
          return errno;
        }
      }
    }
    return 0;
  }

  int fd_;
  std::string what_;
  TransferProgress* progress_;  // only the writer thread adds to it
  BufferArena arena_;
  std::vector<char*> buffers_;
  size_t current_ = kNone;
  size_t current_used_ = 0;
  uint64_t queued_bytes_ = 0;

  std::thread writer_;
  std::thread flusher_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::condition_variable flush_wanted_;
  bool flush_requested_ = false;
  std::deque<size_t> free_;
  std::deque<std::pair<size_t, size_t>> filled_;  // (buffer, bytes), in order
  bool busy_ = false;
  bool stopping_ = false;
  int error_errno_ = 0;
  std::string error_doing_;
  // The writer thread's own.
  uint64_t written_ = 0;
  uint64_t unflushed_ = 0;
  bool direct_ = false;
  bool writeback_ = true;
  std::deque<std::pair<uint64_t, size_t>> in_flight_;
};

// zstd on every core, without copying the data that is to be compressed when it comes in large
// writes: the tar stream is cut into independent zstd frames (level 1, content size recorded, no
// frame checksum: every entry carries its own), which concatenated are one valid .zst stream.
// A producer may also place its bytes straight into the staging frame (room(), then write() of
// that very pointer): the frame is handed to the workers once full and write() returns at once,
// so the producer goes on with its next bytes while the workers compress (the export's pages).
// A large write() from elsewhere is split into frames of at most kFrameSize compressed straight
// from the caller's buffer, by the workers and by the calling thread itself, and returns once
// they are compressed (the caller may then reuse its buffer). Small writes (tar headers, small
// entries) are copied into the staging frame. Compressed frames go to the output in stream
// order, written by whichever thread completes the next one.
class ZstdFrameCompressor {
 public:
  static constexpr size_t kFrameSize = 1 << 20;
  // Writes at least this large are compressed in place; smaller ones are copied to a staging
  // frame.
  static constexpr size_t kInPlaceMin = 128 << 10;

  ZstdFrameCompressor(ArchiveOutput& output, std::string what, unsigned workers)
      : output_(output), what_(std::move(what)) {
    size_t slots = 2 * workers + 2;
    // At most one frame per compressing thread (the workers and the calling thread) is being
    // compressed at a time: that many compression contexts.
    size_t contexts = workers + 1;
    // All in one arena, none allocated while the archive is written: the compression contexts
    // (~570 KiB each at level 1; allocated by zstd, they would be fresh 4 KiB pages, ~580 first
    // touches of ~10 µs at every export), per slot a compressed frame, and a staging frame for
    // each slot (a frame keeps its staging buffer until it is written) and the one being filled.
    // Every MiB of it costs 0.2-2.5 ms of CPU at its first touch on this VM (see BufferArena).
    size_t bound = ZSTD_compressBound(kFrameSize);
    size_t workspace = ZSTD_estimateCCtxSize(1);
    arena_ = std::make_unique<BufferArena>(contexts * BufferArena::rounded(workspace) +
                                           slots * BufferArena::rounded(bound) +
                                           (slots + 1) * BufferArena::rounded(kFrameSize));
    for (size_t i = 0; i < contexts; ++i) {
      char* context_memory = arena_->take(workspace);
      ZSTD_CCtx* cctx = ZSTD_initStaticCCtx(context_memory, workspace);
      if (!cctx) throw Error("cannot set up the zstd compressor for " + what_);
      // A static context starts with every parameter zero, the content size flag too: the
      // importer needs each frame's content size, so it is set explicitly.
      size_t r = ZSTD_CCtx_reset(cctx, ZSTD_reset_parameters);
      if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
      if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_contentSizeFlag, 1);
      if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 0);
      if (ZSTD_isError(r))
        throw Error("zstd compressor for " + what_ + ": " + ZSTD_getErrorName(r));
      free_contexts_.push_back(cctx);
    }
    for (size_t i = 0; i < slots; ++i) {
      auto slot = std::make_unique<Slot>();
      slot->compressed = arena_->take(bound);
      free_.push_back(slot.get());
      slots_.push_back(std::move(slot));
    }
    for (size_t i = 0; i <= slots; ++i) {
      char* buffer = arena_->take(kFrameSize);
      spare_staging_.push_back(buffer);
    }
    staging_ = spare_staging_.back();
    spare_staging_.pop_back();
    try {
      for (unsigned i = 0; i < workers; ++i) workers_.emplace_back([this] { worker_loop(); });
    } catch (...) {
      stop();
      throw;
    }
  }
  ~ZstdFrameCompressor() { stop(); }
  ZstdFrameCompressor(const ZstdFrameCompressor&) = delete;
  ZstdFrameCompressor& operator=(const ZstdFrameCompressor&) = delete;

  // Where the next bytes may be placed before they are written: the rest of the staging frame,
  // at least `min_size` bytes (a fresh frame when less is left; at most kFrameSize). Valid until
  // the next call.
  std::pair<char*, size_t> room(size_t min_size) {
    if (kFrameSize - staged_ < min_size && staged_ > 0) submit_staging();
    return {staging_ + staged_, kFrameSize - staged_};
  }

  // Whether the last write() found its bytes already in place (see room()).
  bool last_write_in_place() const { return last_in_place_; }

  void write(const void* data, size_t size) {
    const char* p = static_cast<const char*>(data);
    last_in_place_ = p == staging_ + staged_ && size <= kFrameSize - staged_;
    if (last_in_place_) {
      staged_ += size;
      if (staged_ == kFrameSize) submit_staging();
      return;
    }
    if (size < kInPlaceMin) {
      while (size > 0) {
        size_t n = std::min(size, kFrameSize - staged_);
        std::memcpy(staging_ + staged_, p, n);
        staged_ += n;
        p += n;
        size -= n;
        if (staged_ == kFrameSize) submit_staging();
      }
      return;
    }
    if (staged_ > 0) submit_staging();
    // Equal frames: no small remainder compressed alone.
    size_t frames = (size + kFrameSize - 1) / kFrameSize;
    size_t frame = (size + frames - 1) / frames;
    uint64_t first = next_seq_;
    for (size_t at = 0; at < size; at += frame)
      submit(p + at, std::min(frame, size - at), /*owned=*/nullptr);
    uint64_t last = next_seq_;
    // Helps until every frame that reads from the caller's buffer is compressed.
    std::unique_lock lock(mutex_);
    for (;;) {
      if (error_) {
        cancel_locked();
        changed_.wait(lock, [&] { return compressing_ == 0; });
        std::rethrow_exception(error_);
      }
      if (borrowed_done_locked(first, last)) return;
      if (!queued_.empty()) {
        compress_one_locked(lock);
        continue;
      }
      changed_.wait(lock);
    }
  }

  // Compresses what is staged and waits until every frame reached the output.
  void finish() {
    if (staged_ > 0) submit_staging();
    std::unique_lock lock(mutex_);
    for (;;) {
      if (error_) std::rethrow_exception(error_);
      if (emitted_ == next_seq_) return;
      if (!queued_.empty()) {
        compress_one_locked(lock);
        continue;
      }
      changed_.wait(lock);
    }
  }

 private:
  struct Slot {
    char* owned = nullptr;  // the staging buffer handed over with the frame
    char* compressed = nullptr;
    const char* input = nullptr;
    size_t input_size = 0;
    size_t compressed_size = 0;
    uint64_t seq = 0;
    bool done = false;
  };

  void submit_staging() {
    submit(staging_, staged_, staging_);
    staged_ = 0;
    std::lock_guard lock(mutex_);
    // One more staging buffer than slots, and each slot holds at most one: never empty here.
    staging_ = spare_staging_.back();
    spare_staging_.pop_back();
  }

  void submit(const char* input, size_t size, char* owned) {
    std::unique_lock lock(mutex_);
    for (;;) {
      if (error_) std::rethrow_exception(error_);
      if (!free_.empty()) break;
      // Every slot is queued or waiting to be written: help rather than wait.
      if (!queued_.empty())
        compress_one_locked(lock);
      else
        changed_.wait(lock);
    }
    Slot* slot = free_.back();
    free_.pop_back();
    slot->input = input;
    slot->input_size = size;
    slot->owned = owned;
    slot->seq = next_seq_++;
    slot->done = false;
    in_order_.push_back(slot);
    queued_.push_back(slot);
    work_.notify_one();
  }

  bool borrowed_done_locked(uint64_t first, uint64_t last) {
    for (Slot* s : in_order_)
      if (s->seq >= first && s->seq < last && !s->done) return false;
    return true;
  }

  // With the lock held on entry and on return; compresses the oldest queued frame unlocked.
  void compress_one_locked(std::unique_lock<std::mutex>& lock) {
    Slot* slot = queued_.front();
    queued_.pop_front();
    ++compressing_;
    // Never empty: one context per thread that compresses.
    ZSTD_CCtx* cctx = free_contexts_.back();
    free_contexts_.pop_back();
    lock.unlock();
    size_t n = ZSTD_compress2(cctx, slot->compressed, ZSTD_compressBound(kFrameSize), slot->input,
                              slot->input_size);
    lock.lock();
    free_contexts_.push_back(cctx);
    --compressing_;
    if (ZSTD_isError(n)) {
      if (!error_)
        error_ = std::make_exception_ptr(
            Error("zstd compressing archive " + what_ + ": " + ZSTD_getErrorName(n)));
      changed_.notify_all();
      return;
    }
    slot->compressed_size = n;
    slot->done = true;
    changed_.notify_all();
    emit_locked(lock);
  }

  // Writes the completed frames at the head of the stream, unless another thread is doing so.
  void emit_locked(std::unique_lock<std::mutex>& lock) {
    if (emitting_) return;
    emitting_ = true;
    while (!error_ && !in_order_.empty() && in_order_.front()->done) {
      Slot* slot = in_order_.front();
      lock.unlock();
      std::exception_ptr failed;
      try {
        output_.append(slot->compressed, slot->compressed_size);
      } catch (...) {
        failed = std::current_exception();
      }
      lock.lock();
      if (failed) {
        if (!error_) error_ = failed;
        break;
      }
      in_order_.pop_front();
      if (slot->owned) spare_staging_.push_back(slot->owned);
      slot->owned = nullptr;
      slot->input = nullptr;
      free_.push_back(slot);
      ++emitted_;
    }
    emitting_ = false;
    changed_.notify_all();
  }

  // After an error: frames not started are dropped (their input may be a caller's buffer).
  void cancel_locked() {
    queued_.clear();
    changed_.notify_all();
  }

  void worker_loop() {
    name_this_thread("cryo-zstd");
    std::unique_lock lock(mutex_);
    for (;;) {
      work_.wait(lock, [&] { return stopping_ || (!queued_.empty() && !error_); });
      if (stopping_) return;
      compress_one_locked(lock);
    }
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      queued_.clear();
      work_.notify_all();
    }
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  ArchiveOutput& output_;
  std::string what_;
  // The calling thread's.
  char* staging_ = nullptr;
  size_t staged_ = 0;
  uint64_t next_seq_ = 0;
  bool last_in_place_ = false;
  // Every buffer, made at construction (they live as long as this object).
  std::unique_ptr<BufferArena> arena_;
  // Shared, under mutex_.
  std::mutex mutex_;
  std::condition_variable changed_;  // for the calling thread: a frame compressed or written
  std::condition_variable work_;     // for the workers: a frame queued
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<Slot*> free_;
  std::vector<ZSTD_CCtx*> free_contexts_;  // in the arena
  std::deque<Slot*> queued_;               // waiting for a compressing thread, in stream order
  std::deque<Slot*> in_order_;             // submitted, not yet written, in stream order
  std::vector<char*> spare_staging_;
  size_t compressing_ = 0;
  uint64_t emitted_ = 0;
  bool emitting_ = false;
  bool stopping_ = false;
  std::exception_ptr error_;
  std::vector<std::thread> workers_;
};

// The thread that writes into the archive compresses too (a frame it fills in place while the
// workers are busy, or its share of a large write): one worker per other core.
unsigned compressor_workers() {
  return std::max(2u, std::thread::hardware_concurrency()) - 1;
}

void ArchiveWriter::Free::operator()(archive* a) const {
  archive_write_free(a);
}

ArchiveWriter::ArchiveWriter(int fd, std::string what, ArchiveCompression compression,
                             TransferProgress* progress)
    : what_(std::move(what)),
      // libarchive is loaded here, on first use (lazy_library.h), before the output's threads
      // start.
      archive_(archive_write_new()),
      output_(std::make_unique<ArchiveOutput>(fd, what_, progress)),
      entry_hash_(XXH3_createState()) {
  if (!archive_ || !entry_hash_) throw Error("out of memory creating archive " + what_);
  archive* a = archive_.get();
  archive_write_set_format_pax_restricted(a);
  switch (compression) {
    case ArchiveCompression::kZstd:
      // Our own frames on every core (see ZstdFrameCompressor), fed straight from the tar writer.
      zstd_ = std::make_unique<ZstdFrameCompressor>(*output_, what_, compressor_workers());
      break;
    case ArchiveCompression::kGzip:
      if (archive_write_add_filter_gzip(a) != ARCHIVE_OK) fail("gzip filter");
      if (archive_write_set_filter_option(a, "gzip", "compression-level", "1") != ARCHIVE_OK)
        fail("gzip options");
      break;
    case ArchiveCompression::kNone:
      break;
  }
  output_->start();
  // No blocking: libarchive hands its output straight to write_callback, which buffers.
  archive_write_set_bytes_per_block(a, 0);
  if (archive_write_open(a, this, nullptr, &ArchiveWriter::write_callback, nullptr) != ARCHIVE_OK)
    fail("open");
}

ArchiveWriter::~ArchiveWriter() {
  // An unfinished archive is abandoned: libarchive's closing writes go nowhere.
  abandoned_ = true;
  archive_.reset();
  zstd_.reset();
  XXH3_freeState(entry_hash_);
}

uint64_t ArchiveWriter::compressed_bytes() const {
  return output_->bytes();
}

ssize_t ArchiveWriter::write_callback(archive* a, void* self_ptr, const void* buffer,
                                      size_t length) {
  auto* self = static_cast<ArchiveWriter*>(self_ptr);
  if (self->abandoned_) return static_cast<ssize_t>(length);
  try {
    if (self->zstd_)
      self->zstd_->write(buffer, length);
    else
      self->output_->append(buffer, length);
  } catch (...) {
    // Not through libarchive's C frames: rethrown by fail().
    self->callback_error_ = std::current_exception();
    archive_set_error(a, EIO, "write failed");
    return -1;
  }
  return static_cast<ssize_t>(length);
}

void ArchiveWriter::fail(const std::string& doing) {
  if (callback_error_) std::rethrow_exception(callback_error_);
  throw Error("writing archive " + what_ + ": " + doing + ": " + archive_message(archive_.get()));
}

namespace {
struct EntryFree {
  void operator()(archive_entry* e) const { archive_entry_free(e); }
};
std::unique_ptr<archive_entry, EntryFree> new_entry(const std::string& name, mode_t type,
                                                    mode_t perm, uint64_t size) {
  std::unique_ptr<archive_entry, EntryFree> e(archive_entry_new());
  if (!e) throw Error("archive_entry_new failed");
  archive_entry_set_pathname(e.get(), name.c_str());
  archive_entry_set_filetype(e.get(), type);
  archive_entry_set_perm(e.get(), perm);
  archive_entry_set_size(e.get(), static_cast<la_int64_t>(size));
  archive_entry_set_mtime(e.get(), ::time(nullptr), 0);
  return e;
}
}  // namespace

void ArchiveWriter::add_directory(const std::string& name) {
  auto e = new_entry(name, AE_IFDIR, 0700, 0);
  if (archive_write_header(archive_.get(), e.get()) != ARCHIVE_OK) fail("entry " + name);
}

void ArchiveWriter::begin_entry(const std::string& name, uint64_t size) {
  if (!entry_name_.empty()) throw Error("archive entry " + entry_name_ + " is still open");
  auto e = new_entry(name, AE_IFREG, 0600, size);
  if (archive_write_header(archive_.get(), e.get()) != ARCHIVE_OK) fail("entry " + name);
  entry_name_ = name;
  entry_size_ = size;
  entry_written_ = 0;
  entry_framed_ =
      is_framed_image_entry(name) && size >= ckpt::kImageHeaderSize + ckpt::kImageTrailerSize;
  if (!entry_framed_) XXH3_128bits_reset(entry_hash_);
}

void ArchiveWriter::write(const void* data, size_t size) {
  if (entry_written_ + size > entry_size_)
    throw Error("archive entry " + entry_name_ + " gets more than its " +
                std::to_string(entry_size_) + " bytes");
  if (entry_framed_) {
    // Keeps the trailer's bytes as they go by.
    uint64_t trailer_at = entry_size_ - ckpt::kImageTrailerSize;
    uint64_t end = entry_written_ + size;
    if (end > trailer_at) {
      uint64_t from = std::max(entry_written_, trailer_at);
      std::memcpy(entry_trailer_ + (from - trailer_at),
                  static_cast<const char*>(data) + (from - entry_written_), end - from);
    }
  } else {
    XXH3_128bits_update(entry_hash_, data, size);
  }
  const char* p = static_cast<const char*>(data);
  bool placed = room_ != nullptr && data == room_;
  room_ = nullptr;
  while (size > 0) {
    la_ssize_t n = archive_write_data(archive_.get(), p, size);
    if (n <= 0) fail("entry " + entry_name_);
    p += n;
    size -= static_cast<size_t>(n);
    entry_written_ += static_cast<uint64_t>(n);
    uncompressed_bytes_ += static_cast<uint64_t>(n);
  }
  // libarchive hands entry data to the compressor as it gets it (no blocking, see the
  // constructor); bytes placed in the frame would be overwritten by anything written first.
  if (placed && !zstd_->last_write_in_place())
    throw Error("writing archive " + what_ + ": entry " + entry_name_ +
                ": the bytes placed in the compressor's frame did not reach it in place");
}

std::pair<void*, size_t> ArchiveWriter::write_room(size_t min_size) {
  if (!zstd_ || entry_name_.empty()) return {nullptr, 0};
  auto [room, room_size] = zstd_->room(min_size);
  room_ = room;
  return {room, room_size};
}

void ArchiveWriter::end_entry() {
  if (entry_written_ != entry_size_)
    throw Error("archive entry " + entry_name_ + " got " + std::to_string(entry_written_) +
                " of its " + std::to_string(entry_size_) + " bytes");
  if (archive_write_finish_entry(archive_.get()) != ARCHIVE_OK) fail("entry " + entry_name_);
  // What follows a large entry (a process's pages) is usually small: flushed now, the disk has
  // little left for the final fsync.
  if (entry_size_ >= kEarlyFlushEntry) output_->request_flush();
  if (entry_framed_) {
    uint64_t image_hash;
    std::memcpy(&image_hash, entry_trailer_, sizeof image_hash);
    checksums_[entry_name_] = {{"size", entry_size_}, {"image_xxh3_64", hex64(image_hash)}};
  } else {
    checksums_[entry_name_] = {{"size", entry_size_},
                               {"xxh3_128", hex128(XXH3_128bits_digest(entry_hash_))}};
  }
  entry_name_.clear();
}

void ArchiveWriter::add_bytes(const std::string& name, std::string_view data) {
  begin_entry(name, data.size());
  write(data.data(), data.size());
  end_entry();
}

void ArchiveWriter::add_file(const std::string& name, const std::string& source_path) {
  UniqueFd fd = fs::open_or_throw(source_path, O_RDONLY | O_CLOEXEC | O_NOFOLLOW);
  struct stat st;
  if (::fstat(fd.get(), &st) < 0) throw_errno("stat " + source_path);
  if (!S_ISREG(st.st_mode)) throw Error(source_path + " is not a regular file");
  begin_entry(name, static_cast<uint64_t>(st.st_size));
  // Small files (the spec, the stats) take a small buffer: one from the heap, not a mapping.
  std::vector<char> buf(std::clamp<size_t>(static_cast<size_t>(st.st_size), 1, 1 << 20));
  uint64_t left = static_cast<uint64_t>(st.st_size);
  while (left > 0) {
    ssize_t n = ::read(fd.get(), buf.data(), std::min<uint64_t>(buf.size(), left));
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) throw_errno("read " + source_path);
    if (n == 0) throw Error(source_path + " shrank while being archived");
    write(buf.data(), static_cast<size_t>(n));
    left -= static_cast<uint64_t>(n);
  }
  end_entry();
}

void ArchiveWriter::finish() {
  std::string text = checksums_.dump(1) + "\n";
  add_bytes(kChecksumsEntry, text);
  if (archive_write_close(archive_.get()) != ARCHIVE_OK) fail("close");
  if (zstd_) zstd_->finish();
  output_->flush();
}

// --- reader ---

namespace {

constexpr char kImageMagic[8] = {'C', 'R', 'Y', 'O', 'I', 'M', 'G', '\0'};
constexpr char kImageEndMagic[8] = {'C', 'R', 'Y', 'O', 'E', 'N', 'D', '\0'};
const std::set<std::string> kTopLevelFiles = {
    kManifestEntry,    kChecksumsEntry, "config.dump", "spec.dump",     "network.status",
    "rootfs-diff.tar", "deleted.files", "stats-dump",  "container.log", "devshm-checkpoint.tar"};
constexpr uint64_t kMaxJsonEntry = 64ull << 20;

// Checks a framed checkpoint image (header, payload XXH3-64, trailer) as its bytes go by.
class ImageStreamVerifier {
 public:
  explicit ImageStreamVerifier(std::string name) : name_(std::move(name)) {
    state_ = XXH3_createState();
    if (!state_) throw Error("out of memory");
    XXH3_64bits_reset(state_);
  }
  ~ImageStreamVerifier() { XXH3_freeState(state_); }
  ImageStreamVerifier(const ImageStreamVerifier&) = delete;
  ImageStreamVerifier& operator=(const ImageStreamVerifier&) = delete;

  void update(const char* p, size_t n) {
    while (n > 0) {
      if (seen_ < ckpt::kImageHeaderSize) {
        size_t take = std::min(n, ckpt::kImageHeaderSize - static_cast<size_t>(seen_));
        std::memcpy(header_ + seen_, p, take);
        advance(p, n, take);
        if (seen_ == ckpt::kImageHeaderSize) parse_header();
      } else if (seen_ < ckpt::kImageHeaderSize + payload_size_) {
        uint64_t left = ckpt::kImageHeaderSize + payload_size_ - seen_;
        size_t take = static_cast<size_t>(std::min<uint64_t>(n, left));
        XXH3_64bits_update(state_, p, take);
        advance(p, n, take);
      } else {
        uint64_t at = seen_ - ckpt::kImageHeaderSize - payload_size_;
        if (at >= ckpt::kImageTrailerSize) bad("data after the trailer");
        size_t take = std::min(n, ckpt::kImageTrailerSize - static_cast<size_t>(at));
        std::memcpy(trailer_ + at, p, take);
        advance(p, n, take);
      }
    }
  }

  // Returns the payload's XXH3-64 (equal to the trailer's).
  uint64_t finish() {
    if (seen_ < ckpt::kImageHeaderSize + payload_size_ + ckpt::kImageTrailerSize) bad("truncated");
    if (std::memcmp(trailer_ + 8, kImageEndMagic, 8) != 0) bad("bad end magic");
    uint64_t expected;
    std::memcpy(&expected, trailer_, 8);
    uint64_t actual = XXH3_64bits_digest(state_);
    if (expected != actual) bad("checksum mismatch");
    return actual;
  }

 private:
  void advance(const char*& p, size_t& n, size_t take) {
    p += take;
    n -= take;
    seen_ += take;
  }
  void parse_header() {
    if (std::memcmp(header_, kImageMagic, 8) != 0) bad("not a cryo image file (bad magic)");
    uint32_t version, kind;
    std::memcpy(&version, header_ + 8, 4);
    std::memcpy(&kind, header_ + 12, 4);
    std::memcpy(&payload_size_, header_ + 16, 8);
    if (version != ckpt::kImageFormatVersion)
      bad("image format version " + std::to_string(version) + " is not supported");
    if (kind != static_cast<uint32_t>(ckpt::PayloadKind::kJson) &&
        kind != static_cast<uint32_t>(ckpt::PayloadKind::kRaw))
      bad("unknown payload kind " + std::to_string(kind));
    if (payload_size_ > (1ull << 50)) bad("impossible payload size");
    // Every header byte is checked (the archive's checksum of an image is its payload's).
    uint64_t reserved;
    std::memcpy(&reserved, header_ + 24, 8);
    if (reserved != 0) bad("reserved header bytes are not zero");
  }
  [[noreturn]] void bad(const std::string& why) {
    throw Error("checkpoint image " + name_ + ": " + why);
  }

  std::string name_;
  XXH3_state_t* state_;
  char header_[ckpt::kImageHeaderSize] = {};
  char trailer_[ckpt::kImageTrailerSize] = {};
  uint64_t seen_ = 0;
  uint64_t payload_size_ = 0;
};

// Decompresses a zstd archive made of independent frames (as ArchiveWriter writes them) on every
// core, handing the tar reader the frames' contents in order, each straight from the buffer it was
// decompressed into. The compressed file is untrusted: every frame must declare its content size
// (at most kMaxFrame) and decompress to exactly that; an incomplete last frame is a truncation.
class ParallelZstdSource {
 public:
  // The writer's frames (ZstdFrameCompressor::kFrameSize).
  static constexpr size_t kMaxFrame = 1 << 20;
  static constexpr size_t kWindow = 8 << 20;  // compressed bytes read ahead of the frame scan

  // Whether the file at `fd` (at offset 0) is zstd whose first frame fits this reader (a frame
  // written by another tool, e.g. `zstd` without --content-size, goes to libarchive's reader).
  static bool suits(int fd) {
    char head[18];  // the largest frame header
    ssize_t n = ::pread(fd, head, sizeof head, 0);
    if (n < 4) return false;
    unsigned long long size = ZSTD_getFrameContentSize(head, static_cast<size_t>(n));
    return size != ZSTD_CONTENTSIZE_UNKNOWN && size != ZSTD_CONTENTSIZE_ERROR && size <= kMaxFrame;
  }

  ParallelZstdSource(int fd, unsigned workers) : fd_(fd), window_(kWindow) {
    size_t slots = 2 * workers + 2;
    size_t bound = ZSTD_compressBound(kMaxFrame);
    arena_ = std::make_unique<BufferArena>(slots * (BufferArena::rounded(bound) + kMaxFrame));
    for (size_t i = 0; i < slots; ++i) {
      auto slot = std::make_unique<Slot>();
      slot->compressed = arena_->take(bound);
      slot->content = arena_->take(kMaxFrame);
      BufferArena::populate(slot->compressed, bound);
      BufferArena::populate(slot->content, kMaxFrame);
      free_.push_back(slot.get());
      slots_.push_back(std::move(slot));
    }
    own_dctx_ = ZSTD_createDCtx();
    if (!own_dctx_) throw Error("out of memory creating a zstd decompressor");
    try {
      for (unsigned i = 0; i < workers; ++i) workers_.emplace_back([this] { worker_loop(); });
    } catch (...) {
      stop();
      throw;
    }
  }
  ~ParallelZstdSource() {
    stop();
    ZSTD_freeDCtx(own_dctx_);
  }
  ParallelZstdSource(const ParallelZstdSource&) = delete;
  ParallelZstdSource& operator=(const ParallelZstdSource&) = delete;

  // libarchive's read callback: the next frame's content (valid until the next call), 0 at the
  // end, -1 on an error (the message set on the archive).
  static la_ssize_t read_callback(archive* a, void* self_ptr, const void** buffer) {
    auto* self = static_cast<ParallelZstdSource*>(self_ptr);
    try {
      return static_cast<la_ssize_t>(self->next(buffer));
    } catch (const std::exception& e) {
      archive_set_error(a, EIO, "%s", e.what());
      return -1;
    }
  }

 private:
  struct Slot {
    char* compressed = nullptr;
    char* content = nullptr;
    size_t compressed_size = 0;
    size_t content_size = 0;
    uint64_t frame = 0;  // its number in the file, for errors
    bool done = false;
    std::string error;
  };

  size_t next(const void** buffer) {
    std::unique_lock lock(mutex_);
    if (handed_out_) {
      free_.push_back(handed_out_);
      handed_out_ = nullptr;
    }
    for (;;) {
      lock.unlock();
      fill();
      lock.lock();
      if (in_order_.empty()) return 0;  // the end (fill() threw on a truncation)
      Slot* head = in_order_.front();
      if (!head->done && !queued_.empty()) {
        // Decompresses the oldest waiting frame here rather than wait.
        Slot* slot = queued_.front();
        queued_.pop_front();
        lock.unlock();
        decompress(slot, own_dctx_);
        lock.lock();
        continue;
      }
      done_.wait(lock, [&] { return head->done; });
      in_order_.pop_front();
      if (!head->error.empty()) {
        std::string error = head->error;
        free_.push_back(head);
        throw Error(error);
      }
      handed_out_ = head;
      if (head->content_size == 0) {  // a skippable frame: nothing for the reader
        free_.push_back(head);
        handed_out_ = nullptr;
        continue;
      }
      *buffer = head->content;
      return head->content_size;
    }
  }

  // Queues frames while slots are free (the calling thread's work: reading and scanning).
  void fill() {
    for (;;) {
      Slot* slot;
      {
        std::lock_guard lock(mutex_);
        if (free_.empty()) return;
        slot = free_.back();
      }
      size_t frame_size = 0;
      if (!scan(&frame_size)) return;  // the end of the file
      std::memcpy(slot->compressed, window_.get() + window_start_, frame_size);
      window_start_ += frame_size;
      slot->compressed_size = frame_size;
      slot->frame = frames_++;
      slot->done = false;
      slot->error.clear();
      std::lock_guard lock(mutex_);
      free_.pop_back();
      in_order_.push_back(slot);
      queued_.push_back(slot);
      work_.notify_one();
    }
  }

  // The compressed size of the frame at window_start_, reading more of the file as needed; false
  // at the end of the file. Throws on a truncated or malformed frame.
  bool scan(size_t* frame_size) {
    for (;;) {
      size_t available = window_end_ - window_start_;
      if (available > 0) {
        size_t n = ZSTD_findFrameCompressedSize(window_.get() + window_start_, available);
        // A valid frame can be longer than any compression of kMaxFrame bytes (empty blocks, a
        // skippable frame): more than a slot holds.
        if (!ZSTD_isError(n) && n > ZSTD_compressBound(kMaxFrame))
          throw Error("damaged archive: zstd frame " + std::to_string(frames_) + " has " +
                      std::to_string(n) + " compressed bytes, more than a frame of at most " +
                      std::to_string(kMaxFrame) + " bytes needs");
        if (!ZSTD_isError(n)) {
          *frame_size = n;
          return true;
        }
        if (eof_)
          throw Error("damaged or truncated archive: zstd frame " + std::to_string(frames_) + ": " +
                      ZSTD_getErrorName(n));
        if (available >= ZSTD_compressBound(kMaxFrame))
          throw Error("damaged archive: zstd frame " + std::to_string(frames_) +
                      " is not a frame of at most " + std::to_string(kMaxFrame) + " bytes");
      } else if (eof_) {
        return false;
      }
      // Moves the rest to the front and reads on.
      std::memmove(window_.get(), window_.get() + window_start_, available);
      window_start_ = 0;
      window_end_ = available;
      while (window_end_ < kWindow && !eof_) {
        ssize_t n = ::read(fd_, window_.get() + window_end_, kWindow - window_end_);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("read");
        if (n == 0) eof_ = true;
        window_end_ += static_cast<size_t>(n);
        if (window_end_ - available >= (1 << 20)) break;  // enough for now
      }
    }
  }

  void decompress(Slot* slot, ZSTD_DCtx* dctx) {
    const char* in = slot->compressed;
    std::string error;
    unsigned long long declared = ZSTD_getFrameContentSize(in, slot->compressed_size);
    size_t n = 0;
    uint32_t magic = 0;
    std::memcpy(&magic, in, std::min<size_t>(4, slot->compressed_size));
    if ((magic & ZSTD_MAGIC_SKIPPABLE_MASK) == ZSTD_MAGIC_SKIPPABLE_START) {
      n = 0;
    } else if (declared == ZSTD_CONTENTSIZE_UNKNOWN || declared == ZSTD_CONTENTSIZE_ERROR ||
               declared > kMaxFrame) {
      error = "does not declare a content size of at most " + std::to_string(kMaxFrame) + " bytes";
    } else {
      n = ZSTD_decompressDCtx(dctx, slot->content, static_cast<size_t>(declared), in,
                              slot->compressed_size);
      if (ZSTD_isError(n))
        error = ZSTD_getErrorName(n);
      else if (n != declared)
        error = "content size differs from the declared one";
    }
    std::lock_guard lock(mutex_);
    slot->content_size = n;
    if (!error.empty())
      slot->error = "damaged archive: zstd frame " + std::to_string(slot->frame) + ": " + error;
    slot->done = true;
    done_.notify_all();
  }

  void worker_loop() {
    name_this_thread("cryo-unzstd");
    ZSTD_DCtx* dctx = ZSTD_createDCtx();
    std::unique_lock lock(mutex_);
    for (;;) {
      work_.wait(lock, [&] { return stopping_ || !queued_.empty(); });
      if (stopping_) break;
      Slot* slot = queued_.front();
      queued_.pop_front();
      lock.unlock();
      if (dctx) {
        decompress(slot, dctx);
      } else {
        std::lock_guard relock(mutex_);
        slot->error = "out of memory creating a zstd decompressor";
        slot->done = true;
        done_.notify_all();
      }
      lock.lock();
    }
    lock.unlock();
    ZSTD_freeDCtx(dctx);
  }

  void stop() {
    {
      std::lock_guard lock(mutex_);
      stopping_ = true;
      queued_.clear();
      work_.notify_all();
    }
    for (auto& t : workers_) t.join();
    workers_.clear();
  }

  int fd_;
  // The calling thread's: the compressed bytes read ahead.
  PopulatedBuffer window_;
  size_t window_start_ = 0;
  size_t window_end_ = 0;
  bool eof_ = false;
  uint64_t frames_ = 0;
  ZSTD_DCtx* own_dctx_ = nullptr;
  Slot* handed_out_ = nullptr;  // its content is the tar reader's until the next call
  // Shared, under mutex_.
  std::mutex mutex_;
  std::condition_variable work_;
  std::condition_variable done_;
  std::unique_ptr<BufferArena> arena_;  // the slots' buffers
  std::vector<std::unique_ptr<Slot>> slots_;
  std::vector<Slot*> free_;
  std::deque<Slot*> queued_;
  std::deque<Slot*> in_order_;
  bool stopping_ = false;
  std::vector<std::thread> workers_;
};

struct ReadArchiveFree {
  void operator()(archive* a) const { archive_read_free(a); }
};

[[noreturn]] void refuse(const std::string& entry, const std::string& why) {
  throw Error("refusing archive entry \"" + entry + "\": " + why);
}

bool valid_component(const std::string& c) {
  return !c.empty() && c != "." && c != ".." && c.find('/') == std::string::npos &&
         c.find('\0') == std::string::npos && c.size() < 256;
}

// Where an entry may go: "" for the top level, else the directory ("checkpoint", "volumes").
struct EntryPlace {
  std::string dir;
  std::string name;
};

EntryPlace classify(const std::string& path, bool is_dir) {
  if (path.empty()) refuse(path, "empty name");
  if (path[0] == '/') refuse(path, "absolute path");
  std::vector<std::string> parts = split(path, '/');
  // A trailing slash on directories.
  if (is_dir && !parts.empty() && parts.back().empty()) parts.pop_back();
  for (const auto& c : parts) {
    if (c == "..") refuse(path, "\"..\" component");
    if (!valid_component(c)) refuse(path, "malformed path");
  }
  if (is_dir) {
    if (parts.size() == 1 &&
        (parts[0] == "checkpoint" || parts[0] == "volumes" || parts[0] == "userdata"))
      return {"", parts[0]};
    refuse(path, "unexpected directory (the layout has only checkpoint/, volumes/, userdata/)");
  }
  if (parts.size() == 1) {
    if (!kTopLevelFiles.count(parts[0])) refuse(path, "not part of a checkpoint archive");
    return {"", parts[0]};
  }
  if (parts.size() == 2 && parts[0] == "checkpoint") return {"checkpoint", parts[1]};
  if (parts.size() == 2 && parts[0] == "userdata" &&
      (parts[1] == "hosts" || parts[1] == "hostname" || parts[1] == "resolv.conf"))
    return {"userdata", parts[1]};
  if (parts.size() == 2 && parts[0] == "volumes" && parts[1].size() > 4 &&
      parts[1].compare(parts[1].size() - 4, 4, ".tar") == 0)
    return {"volumes", parts[1]};
  refuse(path, "not part of a checkpoint archive");
}

UniqueFd open_subdir(int dest_fd, const std::string& dir, const std::string& entry) {
  if (dir.empty()) {
    int fd = ::fcntl(dest_fd, F_DUPFD_CLOEXEC, 0);
    if (fd < 0) throw_errno("dup");
    return UniqueFd(fd);
  }
  if (::mkdirat(dest_fd, dir.c_str(), 0700) < 0 && errno != EEXIST) throw_errno("mkdir " + dir);
  int fd = ::openat(dest_fd, dir.c_str(), O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOTDIR || errno == ELOOP) refuse(entry, dir + " is not a directory");
    throw_errno("open " + dir);
  }
  return UniqueFd(fd);
}

}  // namespace

UnpackedArchive unpack_checkpoint_archive(const std::string& path, const std::string& dest,
                                          TransferProgress* progress) {
  return with_context("archive " + path, [&] {
    UniqueFd dest_fd = fs::open_or_throw(dest, O_RDONLY | O_DIRECTORY | O_NOFOLLOW | O_CLOEXEC);
    UniqueFd in = fs::open_or_throw(path, O_RDONLY | O_CLOEXEC);
    std::unique_ptr<archive, ReadArchiveFree> a(archive_read_new());
    if (!a) throw Error("archive_read_new failed");
    // A cryo archive's zstd frames are decompressed on every core (ParallelZstdSource);
    // anything else by libarchive in this thread.
    std::unique_ptr<ParallelZstdSource> frames;
    if (ParallelZstdSource::suits(in.get()))
      frames = std::make_unique<ParallelZstdSource>(
          in.get(), std::max(1u, std::thread::hardware_concurrency()));
    archive_read_support_format_tar(a.get());
    int opened;
    if (frames) {
      opened = archive_read_open(a.get(), frames.get(), nullptr, &ParallelZstdSource::read_callback,
                                 nullptr);
    } else {
      archive_read_support_filter_zstd(a.get());
      archive_read_support_filter_gzip(a.get());
      opened = archive_read_open_fd(a.get(), in.get(), 1 << 20);
    }
    if (opened != ARCHIVE_OK)
      throw Error("damaged, truncated or not a checkpoint archive: " + archive_message(a.get()));

    UnpackedArchive out;
    std::map<std::string, std::pair<uint64_t, std::string>> seen;  // path -> size, hash
    std::string checksums_text, manifest_text;
    XXH3_state_t* hash = XXH3_createState();
    if (!hash) throw Error("out of memory");
    std::unique_ptr<XXH3_state_t, XXH_errorcode (*)(XXH3_state_t*)> hash_owner(hash,
                                                                               XXH3_freeState);
    for (;;) {
      archive_entry* e = nullptr;
      int r = archive_read_next_header(a.get(), &e);
      if (r == ARCHIVE_EOF) break;
      if (r != ARCHIVE_OK && r != ARCHIVE_WARN)
        throw Error("damaged or truncated archive: " + archive_message(a.get()));
      const char* raw = archive_entry_pathname(e);
      std::string name = raw ? raw : "";
      mode_t type = archive_entry_filetype(e);
      if (archive_entry_hardlink(e)) refuse(name, "hard links are not part of the layout");
      if (type != AE_IFREG && type != AE_IFDIR)
        refuse(name, "only regular files and directories are part of the layout");
      EntryPlace place = classify(name, type == AE_IFDIR);
      std::string key = place.dir.empty() ? place.name : place.dir + "/" + place.name;
      ++out.entries;
      if (type == AE_IFDIR) {
        open_subdir(dest_fd.get(), place.name, name);
        continue;
      }
      if (seen.count(key)) refuse(name, "duplicate entry");
      if (!archive_entry_size_is_set(e) || archive_entry_size(e) < 0)
        refuse(name, "entry without a size");
      uint64_t size = static_cast<uint64_t>(archive_entry_size(e));
      bool keep_in_memory = key == kChecksumsEntry || key == kManifestEntry;
      if (keep_in_memory && size > kMaxJsonEntry) refuse(name, "too large");
      UniqueFd dir = open_subdir(dest_fd.get(), place.dir, name);
      UniqueFd file(::openat(dir.get(), place.name.c_str(),
                             O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600));
      if (!file) {
        if (errno == EEXIST) refuse(name, "duplicate entry");
        throw_errno("create " + key);
      }
      std::unique_ptr<ImageStreamVerifier> image;
      if (is_framed_image_entry(key)) image = std::make_unique<ImageStreamVerifier>(place.name);
      std::string* text = key == kChecksumsEntry  ? &checksums_text
                          : key == kManifestEntry ? &manifest_text
                                                  : nullptr;
      // A framed image's integrity is its own XXH3-64; anything else gets an XXH3-128.
      if (!image) XXH3_128bits_reset(hash);
      uint64_t written = 0;
      for (;;) {
        const void* block;
        size_t length;
        la_int64_t offset;
        int rr = archive_read_data_block(a.get(), &block, &length, &offset);
        if (rr == ARCHIVE_EOF) break;
        if (rr != ARCHIVE_OK && rr != ARCHIVE_WARN)
          throw Error("damaged or truncated archive at entry " + key + ": " +
                      archive_message(a.get()));
        if (offset < 0 || static_cast<uint64_t>(offset) != written)
          refuse(name, "sparse entries are not part of the layout");
        if (written + length > size) refuse(name, "more data than its size");
        const char* p = static_cast<const char*>(block);
        if (image)
          image->update(p, length);
        else
          XXH3_128bits_update(hash, p, length);
        if (text) text->append(p, length);
        fs::write_all(file.get(), p, length, "extracting " + key);
        written += length;
        if (progress) progress->add(length);
      }
      if (written != size) throw Error("truncated archive: entry " + key + " is incomplete");
      if (image)
        seen[key] = {size, hex64(image->finish())};
      else
        seen[key] = {size, hex128(XXH3_128bits_digest(hash))};
      out.bytes += size;
    }

    if (checksums_text.empty())
      throw Error("incomplete archive: no " + std::string(kChecksumsEntry) +
                  " (truncated, or not made by cryo container checkpoint --export)");
    nlohmann::json checksums;
    try {
      checksums = nlohmann::json::parse(checksums_text);
    } catch (const nlohmann::json::exception& e) {
      throw Error(std::string(kChecksumsEntry) + " is not valid JSON: " + e.what());
    }
    if (!checksums.is_object()) throw Error(std::string(kChecksumsEntry) + " is not an object");
    for (auto& [key, value] : seen) {
      if (key == kChecksumsEntry) continue;
      if (!checksums.contains(key)) throw Error("entry " + key + " has no checksum");
      const nlohmann::json& c = checksums[key];
      const char* field = is_framed_image_entry(key) ? "image_xxh3_64" : "xxh3_128";
      if (!c.is_object() || !c.contains("size") || !c["size"].is_number_unsigned() ||
          !c.contains(field) || !c[field].is_string())
        throw Error("malformed checksum of entry " + key);
      if (c["size"].get<uint64_t>() != value.first || c[field].get<std::string>() != value.second)
        throw Error("entry " + key + " is corrupted (checksum mismatch)");
    }
    for (auto& [key, value] : checksums.items())
      if (!seen.count(key)) throw Error("incomplete archive: entry " + key + " is missing");
    if (manifest_text.empty()) throw Error("no " + std::string(kManifestEntry));
    try {
      out.manifest = nlohmann::json::parse(manifest_text);
    } catch (const nlohmann::json::exception& e) {
      throw Error(std::string(kManifestEntry) + " is not valid JSON: " + e.what());
    }
    if (!out.manifest.is_object() ||
        out.manifest.value("format_version", 0) != kArchiveFormatVersion)
      throw Error("unsupported checkpoint archive format (this cryo reads version " +
                  std::to_string(kArchiveFormatVersion) + ")");
    return out;
  });
}

// --- host compatibility ---

namespace {

uint64_t read_xcr0() {
#if defined(__x86_64__)
  uint32_t eax, ebx, ecx, edx;
  asm volatile("cpuid" : "=a"(eax), "=b"(ebx), "=c"(ecx), "=d"(edx) : "a"(1), "c"(0));
  if (!(ecx & (1u << 27))) return 0;  // no OSXSAVE
  uint32_t lo, hi;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (static_cast<uint64_t>(hi) << 32) | lo;
#else
  return 0;
#endif
}

std::vector<std::string> cpu_flags() {
  std::ifstream in("/proc/cpuinfo");
  std::string line;
  while (std::getline(in, line)) {
    if (!starts_with(line, "flags")) continue;
    auto colon = line.find(':');
    if (colon == std::string::npos) break;
    std::istringstream words(line.substr(colon + 1));
    std::vector<std::string> flags;
    for (std::string w; words >> w;) flags.push_back(w);
    return flags;
  }
  return {};
}

// Flags whose absence makes code that selected them at startup (glibc's ifuncs, JITs) fault.
bool user_visible_flag(const std::string& f) {
  static const std::set<std::string> exact = {
      "sse",  "sse2",      "ssse3",      "sse4_1", "sse4_2",     "pni",      "avx",
      "avx2", "fma",       "f16c",       "bmi1",   "bmi2",       "popcnt",   "movbe",
      "aes",  "pclmulqdq", "sha_ni",     "adx",    "rdrand",     "rdseed",   "lzcnt",
      "abm",  "xsave",     "xsaveopt",   "xsavec", "clflushopt", "clwb",     "erms",
      "fsrm", "vaes",      "vpclmulqdq", "gfni",   "amx_tile",   "amx_int8", "amx_bf16"};
  return exact.count(f) || starts_with(f, "avx512");
}

std::string hex(uint64_t v) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "0x%" PRIx64, v);
  return buf;
}

}  // namespace

nlohmann::json describe_host() {
  struct utsname u;
  if (::uname(&u) < 0) throw_errno("uname");
  return {{"arch", u.machine}, {"xcr0", hex(read_xcr0())}, {"cpu_flags", cpu_flags()}};
}

void check_host_compatibility(const nlohmann::json& manifest) {
  check_host_compatibility(manifest, describe_host());
}

void check_host_compatibility(const nlohmann::json& manifest, const nlohmann::json& this_host) {
  const nlohmann::json& source = manifest.contains("host") && manifest["host"].is_object()
                                     ? manifest["host"]
                                     : throw Error("the archive does not describe its host");
  auto text = [](const nlohmann::json& j, const char* key) {
    return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
  };
  std::string arch = text(source, "arch"), here = text(this_host, "arch");
  if (arch != here)
    throw ExitCodeError("the checkpoint was made on " + (arch.empty() ? "an unknown" : arch) +
                            " and cannot be restored on this " + here + " host",
                        125);
  uint64_t xcr0 = 0, host_xcr0 = 0;
  try {
    xcr0 = std::stoull(text(source, "xcr0"), nullptr, 16);
    host_xcr0 = std::stoull(text(this_host, "xcr0"), nullptr, 16);
  } catch (const std::exception&) {
    throw Error("the archive's host description has no valid xcr0");
  }
  if (uint64_t missing = xcr0 & ~host_xcr0)
    throw ExitCodeError(
        "the checkpoint needs CPU state components this host does not enable: "
        "XCR0 " +
            hex(xcr0) + " at the source, " + hex(host_xcr0) + " here (missing bits " +
            hex(missing) + ")",
        125);
  std::set<std::string> host_flags;
  if (this_host.contains("cpu_flags") && this_host["cpu_flags"].is_array())
    for (const auto& f : this_host["cpu_flags"])
      if (f.is_string()) host_flags.insert(f.get<std::string>());
  std::vector<std::string> missing;
  if (source.contains("cpu_flags") && source["cpu_flags"].is_array())
    for (const auto& f : source["cpu_flags"])
      if (f.is_string() && user_visible_flag(f.get<std::string>()) &&
          !host_flags.count(f.get<std::string>()))
        missing.push_back(f.get<std::string>());
  if (!missing.empty())
    throw ExitCodeError("the checkpoint needs CPU features this host lacks: " + join(missing, " "),
                        125);
}

}  // namespace cryo::engine
