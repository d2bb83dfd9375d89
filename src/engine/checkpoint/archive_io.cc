#include "engine/checkpoint/archive_io.h"

#include <archive.h>
#include <archive_entry.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/utsname.h>
#include <unistd.h>
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
#include "common/clock.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"

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

// The archive's bytes on their way to the fd: the producing thread fills buffers of
// kBufferSize, a thread of its own writes them in order. Full buffers are written with O_DIRECT
// when the file system takes it: straight from the buffers to the disk, without filling the
// page cache (whose fresh pages cost more than the disk on a virtual machine) and without a
// writeback left for the final fsync; the last, partial buffer is written through the page cache.
// Without O_DIRECT, each buffer's writeback is started at once (sync_file_range), keeping at most
// kWritebackInFlight buffers unwritten to disk. Either way the disk works while the dump and the
// compressor do.
class ArchiveOutput {
 public:
  static constexpr size_t kBufferSize = 4 << 20;  // a multiple of every logical block size
  static constexpr size_t kBufferCount = 4;
  static constexpr size_t kWritebackInFlight = 8;

  ArchiveOutput(int fd, std::string what, TransferProgress* progress)
      : fd_(fd), what_(std::move(what)), progress_(progress) {
    for (size_t i = 0; i < kBufferCount; ++i) {
      void* p = nullptr;
      if (::posix_memalign(&p, 4096, kBufferSize) != 0)
        throw Error("out of memory for the buffers of archive " + what_);
      buffers_.emplace_back(static_cast<char*>(p));
      free_.push_back(i);
    }
    int flags = ::fcntl(fd_, F_GETFL);
    direct_ = flags >= 0 && ::lseek(fd_, 0, SEEK_CUR) == 0 &&
              ::fcntl(fd_, F_SETFL, flags | O_DIRECT) == 0;
    writer_ = std::thread([this] { writer_loop(); });
  }

  ~ArchiveOutput() {
    {
      std::lock_guard lock(mutex_);
      filled_.clear();  // an abandoned archive: its partial file is removed anyway
      stopping_ = true;
      changed_.notify_all();
    }
    writer_.join();
  }
  ArchiveOutput(const ArchiveOutput&) = delete;
  ArchiveOutput& operator=(const ArchiveOutput&) = delete;

  // Room in the current buffer (at least one byte); produced() says how much was filled.
  std::pair<char*, size_t> space() {
    if (current_ == kNone) current_ = take_free_buffer();
    return {buffers_[current_].get() + current_used_, kBufferSize - current_used_};
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

 private:
  static constexpr size_t kNone = static_cast<size_t>(-1);

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
    std::unique_lock lock(mutex_);
    for (;;) {
      changed_.wait(lock, [&] { return !filled_.empty() || stopping_; });
      if (filled_.empty()) return;
      auto [buffer, size] = filled_.front();
      filled_.pop_front();
      busy_ = true;
      lock.unlock();
      int err = write_out(buffers_[buffer].get(), size);
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
  struct FreeBuffer {
    void operator()(char* p) const { std::free(p); }
  };
  std::vector<std::unique_ptr<char, FreeBuffer>> buffers_;
  size_t current_ = kNone;
  size_t current_used_ = 0;
  uint64_t queued_bytes_ = 0;

  std::thread writer_;
  std::mutex mutex_;
  std::condition_variable changed_;
  std::deque<size_t> free_;
  std::deque<std::pair<size_t, size_t>> filled_;  // (buffer, bytes), in order
  bool busy_ = false;
  bool stopping_ = false;
  int error_errno_ = 0;
  std::string error_doing_;
  // The writer thread's own.
  uint64_t written_ = 0;
  bool direct_ = false;
  bool writeback_ = true;
  std::deque<std::pair<uint64_t, size_t>> in_flight_;
};

void ArchiveWriter::Free::operator()(archive* a) const {
  archive_write_free(a);
}

void ArchiveWriter::ZstdFree::operator()(void* cctx) const {
  ZSTD_freeCCtx(static_cast<ZSTD_CCtx*>(cctx));
}

ArchiveWriter::ArchiveWriter(int fd, std::string what, ArchiveCompression compression,
                             TransferProgress* progress)
    : what_(std::move(what)),
      output_(std::make_unique<ArchiveOutput>(fd, what_, progress)),
      archive_(archive_write_new()),
      entry_hash_(XXH3_createState()) {
  if (!archive_ || !entry_hash_) throw Error("out of memory creating archive " + what_);
  archive* a = archive_.get();
  archive_write_set_format_pax_restricted(a);
  switch (compression) {
    case ArchiveCompression::kZstd: {
      // libzstd directly: level 1 with one worker per core (the archive is written while the
      // container is frozen), fed straight from the tar writer.
      ZSTD_CCtx* cctx = ZSTD_createCCtx();
      if (!cctx) throw Error("out of memory creating the zstd compressor for " + what_);
      zstd_.reset(cctx);
      unsigned cores = std::max(1u, std::thread::hardware_concurrency());
      size_t r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_compressionLevel, 1);
      if (!ZSTD_isError(r))
        r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_nbWorkers, static_cast<int>(cores));
      if (!ZSTD_isError(r)) r = ZSTD_CCtx_setParameter(cctx, ZSTD_c_checksumFlag, 1);
      if (ZSTD_isError(r))
        throw Error("zstd compressor for " + what_ + ": " + ZSTD_getErrorName(r));
      break;
    }
    case ArchiveCompression::kGzip:
      if (archive_write_add_filter_gzip(a) != ARCHIVE_OK) fail("gzip filter");
      if (archive_write_set_filter_option(a, "gzip", "compression-level", "1") != ARCHIVE_OK)
        fail("gzip options");
      break;
    case ArchiveCompression::kNone:
      break;
  }
  // No blocking: libarchive hands its output straight to write_callback, which buffers.
  archive_write_set_bytes_per_block(a, 0);
  if (archive_write_open(a, this, nullptr, &ArchiveWriter::write_callback, nullptr) != ARCHIVE_OK)
    fail("open");
}

ArchiveWriter::~ArchiveWriter() {
  // An unfinished archive is abandoned: libarchive's closing writes go nowhere.
  abandoned_ = true;
  archive_.reset();
  XXH3_freeState(entry_hash_);
}

uint64_t ArchiveWriter::compressed_bytes() const {
  return output_->bytes();
}

void ArchiveWriter::compress(const void* data, size_t size, bool end) {
  auto* cctx = static_cast<ZSTD_CCtx*>(zstd_.get());
  ZSTD_inBuffer in{data, size, 0};
  for (;;) {
    auto [room, room_size] = output_->space();
    ZSTD_outBuffer out{room, room_size, 0};
    size_t left = ZSTD_compressStream2(cctx, &out, &in, end ? ZSTD_e_end : ZSTD_e_continue);
    if (ZSTD_isError(left)) throw Error(std::string("zstd: ") + ZSTD_getErrorName(left));
    output_->produced(out.pos);
    if (end ? left == 0 : in.pos == in.size) return;
  }
}

ssize_t ArchiveWriter::write_callback(archive* a, void* self_ptr, const void* buffer,
                                      size_t length) {
  auto* self = static_cast<ArchiveWriter*>(self_ptr);
  if (self->abandoned_) return static_cast<ssize_t>(length);
  try {
    if (self->zstd_)
      self->compress(buffer, length, false);
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
  while (size > 0) {
    la_ssize_t n = archive_write_data(archive_.get(), p, size);
    if (n <= 0) fail("entry " + entry_name_);
    p += n;
    size -= static_cast<size_t>(n);
    entry_written_ += static_cast<uint64_t>(n);
    uncompressed_bytes_ += static_cast<uint64_t>(n);
  }
}

void ArchiveWriter::end_entry() {
  if (entry_written_ != entry_size_)
    throw Error("archive entry " + entry_name_ + " got " + std::to_string(entry_written_) +
                " of its " + std::to_string(entry_size_) + " bytes");
  if (archive_write_finish_entry(archive_.get()) != ARCHIVE_OK) fail("entry " + entry_name_);
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
  std::vector<char> buf(1 << 20);
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
  if (zstd_) compress(nullptr, 0, true);
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
    // libarchive's own decompression, in this thread: its small blocks are checked and written
    // while still in the cache (a decompression thread of its own filling large buffers was
    // measured slower: the checks and writes then read every byte back from memory).
    archive_read_support_filter_zstd(a.get());
    archive_read_support_filter_gzip(a.get());
    archive_read_support_format_tar(a.get());
    int opened = archive_read_open_fd(a.get(), in.get(), 1 << 20);
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
