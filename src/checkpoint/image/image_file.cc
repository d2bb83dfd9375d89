#include "checkpoint/image/image_file.h"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cstring>
#include <vector>

#include "common/error.h"
#include "common/fs.h"

namespace cryo::ckpt {

namespace {

constexpr char kMagic[8] = {'C', 'R', 'Y', 'O', 'I', 'M', 'G', '\0'};
constexpr char kEndMagic[8] = {'C', 'R', 'Y', 'O', 'E', 'N', 'D', '\0'};

struct Header {
  char magic[8];
  uint32_t version;
  uint32_t kind;
  uint64_t payload_size;
  uint64_t reserved;
};
static_assert(sizeof(Header) == kImageHeaderSize);

struct Trailer {
  uint64_t hash;
  char magic[8];
};
static_assert(sizeof(Trailer) == kImageTrailerSize);

Header make_header(PayloadKind kind, uint64_t size) {
  Header h{};
  std::memcpy(h.magic, kMagic, sizeof kMagic);
  h.version = kImageFormatVersion;
  h.kind = static_cast<uint32_t>(kind);
  h.payload_size = size;
  return h;
}

Trailer make_trailer(uint64_t hash) {
  Trailer t{};
  t.hash = hash;
  std::memcpy(t.magic, kEndMagic, sizeof kEndMagic);
  return t;
}

void pread_exact(int fd, void* out, size_t size, uint64_t offset, const std::string& path) {
  auto* p = static_cast<char*>(out);
  while (size > 0) {
    ssize_t n = ::pread(fd, p, size, static_cast<off_t>(offset));
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("read " + path);
    }
    if (n == 0) throw Error(path + ": image file is truncated");
    p += n;
    size -= static_cast<size_t>(n);
    offset += static_cast<uint64_t>(n);
  }
}

// Validates header and trailer; returns payload size and expected hash.
void check_frame(int fd, const std::string& path, PayloadKind kind, uint64_t* size,
                 uint64_t* hash) {
  struct stat st;
  if (::fstat(fd, &st) < 0) throw_errno("stat " + path);
  uint64_t file_size = static_cast<uint64_t>(st.st_size);
  if (file_size < kImageHeaderSize + kImageTrailerSize)
    throw Error(path + ": image file is truncated (" + std::to_string(file_size) + " bytes)");
  Header h;
  pread_exact(fd, &h, sizeof h, 0, path);
  if (std::memcmp(h.magic, kMagic, sizeof kMagic) != 0)
    throw Error(path + ": not a cryo image file (bad magic)");
  if (h.version != kImageFormatVersion)
    throw Error(path + ": image format version " + std::to_string(h.version) +
                " is not supported (this cryo reads version " +
                std::to_string(kImageFormatVersion) + ")");
  if (h.kind != static_cast<uint32_t>(kind))
    throw Error(path + ": unexpected payload kind " + std::to_string(h.kind));
  if (h.payload_size != file_size - kImageHeaderSize - kImageTrailerSize)
    throw Error(path + ": image file is truncated or has trailing data (header says " +
                std::to_string(h.payload_size) + " payload bytes, file has " +
                std::to_string(file_size) + " bytes)");
  Trailer t;
  pread_exact(fd, &t, sizeof t, kImageHeaderSize + h.payload_size, path);
  if (std::memcmp(t.magic, kEndMagic, sizeof kEndMagic) != 0)
    throw Error(path + ": image file is corrupted (bad trailer)");
  *size = h.payload_size;
  *hash = t.hash;
}

}  // namespace

void write_json_image(ImageSink& sink, const std::string& name, const json& value) {
  std::string payload = value.dump(1);
  Header h = make_header(PayloadKind::kJson, payload.size());
  Trailer t = make_trailer(xxh3_64(payload.data(), payload.size()));
  std::unique_ptr<ImageOutput> out = sink.create(name, image_file_size(payload.size()));
  out->write(&h, sizeof h);
  out->write(payload.data(), payload.size());
  out->write(&t, sizeof t);
  out->commit();
}

void write_json_image(const std::string& dir, const std::string& name, const json& value) {
  DirectorySink sink(dir);
  write_json_image(sink, name, value);
  sink.finish();
}

json read_json_image(const std::string& dir, const std::string& name) {
  std::string path = dir + "/" + name;
  UniqueFd fd = fs::open_or_throw(path, O_RDONLY);
  uint64_t size, hash;
  check_frame(fd.get(), path, PayloadKind::kJson, &size, &hash);
  if (size > (uint64_t{1} << 31)) throw Error(path + ": JSON image is implausibly large");
  std::string payload(size, '\0');
  pread_exact(fd.get(), payload.data(), size, kImageHeaderSize, path);
  if (xxh3_64(payload.data(), payload.size()) != hash)
    throw Error(path + ": image file is corrupted (checksum mismatch)");
  try {
    return json::parse(payload);
  } catch (const json::exception& e) {
    throw Error(path + ": image file is corrupted: " + e.what());
  }
}

RawImageWriter::RawImageWriter(ImageSink& sink, const std::string& name, uint64_t payload_size)
    : name_(name), announced_(payload_size), sized_(true) {
  out_ = sink.create(name, image_file_size(payload_size));
  Header h = make_header(PayloadKind::kRaw, payload_size);
  out_->write(&h, sizeof h);
}

RawImageWriter::RawImageWriter(ImageSink& sink, const std::string& name)
    : name_(name), announced_(UINT64_MAX), sized_(false) {
  out_ = sink.create_unsized(name);
  Header h = make_header(PayloadKind::kRaw, 0);  // its size is rewritten by finish()
  out_->write(&h, sizeof h);
}

RawImageWriter::~RawImageWriter() = default;

void RawImageWriter::append(const void* data, size_t size) {
  add_to_checksum(data, size);
  append_checksummed(data, size);
}

void RawImageWriter::add_to_checksum(const void* data, size_t size) {
  if (size > announced_ - checksummed_)
    throw Error(name_ + ": payload larger than the " + std::to_string(announced_) +
                " bytes announced");
  hash_.update(data, size);
  checksummed_ += size;
}

void RawImageWriter::append_checksummed(const void* data, size_t size) {
  if (size > announced_ - size_)
    throw Error(name_ + ": payload larger than the " + std::to_string(announced_) +
                " bytes announced");
  out_->write(data, size);
  size_ += size;
}

void RawImageWriter::append_vectored(const iovec* pieces, size_t count) {
  uint64_t total = 0;
  for (size_t i = 0; i < count; ++i) total += pieces[i].iov_len;
  if (total > announced_ - size_)
    throw Error(name_ + ": payload larger than the " + std::to_string(announced_) +
                " bytes announced");
  for (size_t i = 0; i < count; ++i) hash_.update(pieces[i].iov_base, pieces[i].iov_len);
  out_->write_vectored(pieces, count);
  size_ += total;
  checksummed_ += total;
}

void RawImageWriter::finish() {
  if (sized_ && size_ != announced_)
    throw Error(name_ + ": payload of " + std::to_string(size_) + " bytes, " +
                std::to_string(announced_) + " announced");
  if (checksummed_ != size_)
    throw Error(name_ + ": " + std::to_string(checksummed_) + " payload bytes checksummed, " +
                std::to_string(size_) + " written");
  Trailer t = make_trailer(hash_.digest());
  out_->write(&t, sizeof t);
  if (!sized_) {
    Header h = make_header(PayloadKind::kRaw, size_);
    out_->overwrite(0, &h, sizeof h);
  }
  out_->commit();
  out_.reset();
}

RawImageReader::RawImageReader(const std::string& dir, const std::string& name)
    : path_(dir + "/" + name) {
  fd_ = fs::open_or_throw(path_, O_RDONLY);
  check_frame(fd_.get(), path_, PayloadKind::kRaw, &size_, &expected_hash_);
}

void RawImageReader::verify_checksum() const {
  Xxh3Hasher state;
  std::vector<char> buf(4 << 20);
  uint64_t done = 0;
  while (done < size_) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), size_ - done));
    pread_exact(fd_.get(), buf.data(), n, kImageHeaderSize + done, path_);
    state.update(buf.data(), n);
    done += n;
  }
  uint64_t hash = state.digest();
  if (hash != expected_hash_) throw Error(path_ + ": image file is corrupted (checksum mismatch)");
}

void RawImageReader::read_at(uint64_t offset, void* out, size_t size) const {
  if (offset + size > size_) throw Error(path_ + ": read past the end of the payload");
  pread_exact(fd_.get(), out, size, kImageHeaderSize + offset, path_);
}

}  // namespace cryo::ckpt
