// The on-disk format of checkpoint image files (see docs/IMAGE-FORMAT.md).
//
// Every file in an image directory is
//   header  (32 bytes): magic "CRYOIMG\0", u32 format version, u32 payload kind, u64 payload size,
//                       u64 reserved (0)
//   payload (payload size bytes): JSON text (kind kJson) or raw bytes (kind kRaw, e.g. page data)
//   trailer (16 bytes): u64 XXH3-64 of the payload, magic "CRYOEND\0"
// Raw payloads are written as one contiguous run so they can be streamed, compressed and read
// with preadv straight into the restored process's memory: payload offset = kImageHeaderSize.
#pragma once

#include <cstdint>
#include <memory>
#include <nlohmann/json.hpp>
#include <string>

#include "checkpoint/image/image_sink.h"
#include "checkpoint/image/xxh3.h"
#include "common/unique_fd.h"

namespace cryo::ckpt {

using json = nlohmann::json;

// 2: a process's pages may be in several page images (mm "pages_images", a run's 4th field), and
// page images written to a directory hold no zero pages.
inline constexpr uint32_t kImageFormatVersion = 2;
inline constexpr size_t kImageHeaderSize = 32;
inline constexpr size_t kImageTrailerSize = 16;

enum class PayloadKind : uint32_t { kJson = 1, kRaw = 2 };

// Size of an image file whose payload has `payload_size` bytes.
constexpr uint64_t image_file_size(uint64_t payload_size) {
  return kImageHeaderSize + payload_size + kImageTrailerSize;
}

// Writes `value` as JSON image `name` through `sink` (dump code writes every image this way).
void write_json_image(ImageSink& sink, const std::string& name, const json& value);
// The same as a single file `dir/name`, made durable before returning (outside of dumps).
void write_json_image(const std::string& dir, const std::string& name, const json& value);
// Reads and verifies (magic, version, size, checksum) a JSON image file.
json read_json_image(const std::string& dir, const std::string& name);

// Streams raw image `name` of exactly `payload_size` payload bytes into a sink: append() (or
// fill in place) until the payload is complete, then finish(). The checksum is computed as the
// data goes by. Destroying an unfinished writer aborts the output.
class RawImageWriter {
 public:
  RawImageWriter(ImageSink& sink, const std::string& name, uint64_t payload_size);
  // An image whose payload size is whatever was appended at finish() (the header is rewritten
  // then); `sink` must have parallel_outputs().
  RawImageWriter(ImageSink& sink, const std::string& name);
  ~RawImageWriter();
  RawImageWriter(const RawImageWriter&) = delete;
  RawImageWriter& operator=(const RawImageWriter&) = delete;

  // Offset of the next appended byte inside the payload.
  uint64_t payload_size() const { return size_; }
  uint64_t announced_size() const { return announced_; }
  void append(const void* data, size_t size);
  // append() in two halves, for a pipeline that checksums bytes on the thread that just read
  // them (still in its cache) and writes them on another: every payload byte goes through both,
  // each half in payload order.
  void add_to_checksum(const void* data, size_t size);
  void append_checksummed(const void* data, size_t size);
  // The output's room for the next bytes (ImageOutput::write_room).
  std::pair<void*, size_t> write_room(size_t min_size) { return out_->write_room(min_size); }
  // Appends the pieces in order, in one write when the sink can.
  void append_vectored(const iovec* pieces, size_t count);
  void finish();
  const std::string& name() const { return name_; }

 private:
  std::string name_;
  std::unique_ptr<ImageOutput> out_;
  Xxh3Hasher hash_;
  uint64_t announced_;
  bool sized_;
  uint64_t size_ = 0;
  uint64_t checksummed_ = 0;
};

// Opens a raw image file and verifies header and trailer. verify_checksum() reads the whole payload
// once; callers that restore pages read them with pread/preadv at payload_offset() + offset.
class RawImageReader {
 public:
  RawImageReader(const std::string& dir, const std::string& name);
  uint64_t payload_size() const { return size_; }
  static constexpr uint64_t payload_offset() { return kImageHeaderSize; }
  void verify_checksum() const;
  // The XXH3-64 of the payload recorded in the trailer (for readers that hash on the way).
  uint64_t expected_checksum() const { return expected_hash_; }
  void read_at(uint64_t offset, void* out, size_t size) const;
  int fd() const { return fd_.get(); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
  UniqueFd fd_;
  uint64_t size_ = 0;
  uint64_t expected_hash_ = 0;
};

}  // namespace cryo::ckpt
