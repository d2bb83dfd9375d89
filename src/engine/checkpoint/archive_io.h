// The container checkpoint archive as a byte stream (see docs/CHECKPOINT-ARCHIVE.md): writing it
// entry by entry while the checkpoint proceeds, and unpacking an untrusted one into a directory,
// with every entry's checksum and every checkpoint image's own framing and checksum verified.
#pragma once

#include <xxhash.h>

#include <cstdint>
#include <exception>
#include <map>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>
#include <string_view>
#include <utility>

struct archive;

namespace cryo::engine {

enum class ArchiveCompression { kZstd, kGzip, kNone };
// "zstd" | "gzip" | "none"; anything else is ExitCodeError 125 with Podman's wording.
ArchiveCompression parse_archive_compression(const std::string& name);
std::string to_string(ArchiveCompression compression);

// The entries an archive always has, and the one written last that checks all others.
inline constexpr const char* kManifestEntry = "export.json";
inline constexpr const char* kChecksumsEntry = "checksums.json";
// 2: framed images are checked by their own XXH3-64 (checksums.json "image_xxh3_64").
inline constexpr int kArchiveFormatVersion = 2;

// "Exporting: 1.2 GiB, 850.3 MiB/s" on stderr, redrawn at most every 200 ms. Silent unless
// enabled (the CLI enables it when stderr is a terminal).
class TransferProgress {
 public:
  TransferProgress(std::string verb, bool enabled);
  ~TransferProgress();
  void add(uint64_t bytes);
  // Ends the line (once).
  void finish();

 private:
  void draw(uint64_t now_us);
  std::string verb_;
  bool enabled_;
  bool drawn_ = false;
  uint64_t bytes_ = 0;
  uint64_t start_us_ = 0;
  uint64_t last_draw_us_ = 0;
};

// Whether the archive entry `name` is a framed checkpoint image (checkpoint/NAME other than the
// unframed container.json and logs): its integrity is its own trailer's XXH3-64, verified by
// the importer as the bytes go by, so the archive records that value instead of hashing the
// entry a second time.
bool is_framed_image_entry(const std::string& name);

class ArchiveOutput;
class ZstdFrameCompressor;

// Writes a tar archive (pax, zstd-compressed on all cores, gzip or plain) to an fd, entry by entry.
// Every entry's size and checksum go into kChecksumsEntry, written by finish(): XXH3-128 of the
// entry, or for a framed image the XXH3-64 of its trailer. The data passes through libarchive's
// tar writer without blocking copies, through our own zstd frames compressed on every core (the
// dump may read pages straight into them: write_room()) and into large buffers that a thread of
// their own writes to the fd, making it durable as it goes: compression, writing and the dump
// that feeds write() overlap.
class ArchiveWriter {
 public:
  // `what` names the output in errors. `progress` (may be null) counts compressed bytes written.
  ArchiveWriter(int fd, std::string what, ArchiveCompression compression,
                TransferProgress* progress);
  ~ArchiveWriter();
  ArchiveWriter(const ArchiveWriter&) = delete;
  ArchiveWriter& operator=(const ArchiveWriter&) = delete;

  void add_directory(const std::string& name);
  void add_bytes(const std::string& name, std::string_view data);
  // Copies the regular file at `source_path` as entry `name`.
  void add_file(const std::string& name, const std::string& source_path);
  // A streamed entry: exactly `size` bytes follow through write(), then end_entry().
  void begin_entry(const std::string& name, uint64_t size);
  void write(const void* data, size_t size);
  // Where the open entry's next bytes may be placed before write() of that pointer, which then
  // takes them without a copy (with -c zstd: the compressor's frame being filled): at least
  // `min_size` bytes, or {nullptr, 0} (other compressions). Valid until the next call.
  std::pair<void*, size_t> write_room(size_t min_size);
  void end_entry();
  // Writes the checksums and the end of the archive, flushes the compressor and waits until every
  // byte was written to the fd (not synced: the caller fsyncs).
  void finish();

  uint64_t compressed_bytes() const;
  uint64_t uncompressed_bytes() const { return uncompressed_bytes_; }

 private:
  struct Free {
    void operator()(archive* a) const;
  };
  static ssize_t write_callback(archive* a, void* self, const void* buffer, size_t length);
  [[noreturn]] void fail(const std::string& doing);

  std::string what_;
  std::unique_ptr<archive, Free> archive_;
  std::unique_ptr<ArchiveOutput> output_;
  std::unique_ptr<ZstdFrameCompressor> zstd_;  // with -c zstd
  std::exception_ptr callback_error_;  // of the output or the compressor, seen in the callback
  bool abandoned_ = false;
  uint64_t uncompressed_bytes_ = 0;
  // The open streamed entry.
  std::string entry_name_;
  uint64_t entry_size_ = 0;
  uint64_t entry_written_ = 0;
  bool entry_framed_ = false;
  const void* room_ = nullptr;  // the last write_room(), until the next write()
  char entry_trailer_[16] = {};
  XXH3_state_t* entry_hash_;
  nlohmann::json checksums_ = nlohmann::json::object();
};

struct UnpackedArchive {
  nlohmann::json manifest;  // export.json
  uint64_t entries = 0;
  uint64_t bytes = 0;  // uncompressed entry bytes
};

// Unpacks the archive at `path` into the empty directory `dest`. The archive is untrusted: only
// regular files and directories with the layout's names are accepted (no links, devices, "..",
// absolute paths, duplicates), each file is created with O_EXCL|O_NOFOLLOW below `dest`, every
// entry's size and XXH3-128 must match kChecksumsEntry, every checkpoint image under checkpoint/
// must have a valid header, trailer and XXH3-64, and the archive must end properly. Throws
// cryo::Error naming the archive and the entry; the caller removes `dest` on failure.
UnpackedArchive unpack_checkpoint_archive(const std::string& path, const std::string& dest,
                                          TransferProgress* progress);

// What export records of the host: {"arch", "xcr0", "cpu_flags"}.
nlohmann::json describe_host();
// Throws ExitCodeError(125) when the host described by `manifest["host"]` needs what this host
// lacks: another architecture, XSAVE state components missing from this host's XCR0, or CPU
// feature flags that user space uses (avx2, avx512*, ...) missing here.
void check_host_compatibility(const nlohmann::json& manifest);
// The same check against an explicit description of this host (tests).
void check_host_compatibility(const nlohmann::json& manifest, const nlohmann::json& this_host);

}  // namespace cryo::engine
