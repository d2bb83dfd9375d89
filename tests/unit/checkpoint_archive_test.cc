// The checkpoint archive as untrusted input: entries that would land outside the destination,
// links and devices are refused; a real checkpoint (a dumped process) packed into an archive and
// then damaged (bytes flipped, cut short) is always refused cleanly or, when the damage hit only
// padding, unpacked intact, and nothing is ever written outside the destination. Also the host
// compatibility check (architecture, XCR0, CPU flags).
#include <archive.h>
#include <archive_entry.h>
#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <zstd.h>

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/image/image_sink.h"
#include "checkpoint/memory.h"
#include "checkpoint/tree.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/unique_fd.h"
#include "engine/checkpoint/archive_io.h"

namespace cryo::engine {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cryo-archive-test.XXXXXX";
    char* p = ::mkdtemp(tmpl);
    if (!p) throw std::runtime_error("mkdtemp");
    path_ = p;
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

std::set<std::string> tree(const std::string& root, const std::string& rel = "") {
  std::set<std::string> out;
  std::string dir = rel.empty() ? root : root + "/" + rel;
  DIR* d = ::opendir(dir.c_str());
  if (!d) return out;
  while (dirent* e = ::readdir(d)) {
    std::string name = e->d_name;
    if (name == "." || name == "..") continue;
    std::string child = rel.empty() ? name : rel + "/" + name;
    out.insert(child);
    struct stat st;
    if (::lstat((root + "/" + child).c_str(), &st) == 0 && S_ISDIR(st.st_mode))
      for (auto& c : tree(root, child)) out.insert(c);
  }
  ::closedir(d);
  return out;
}

// A raw archive written entry by entry with libarchive: what an attacker can make.
class RawTar {
 public:
  explicit RawTar(const std::string& path) : a_(archive_write_new()) {
    archive_write_set_format_pax_restricted(a_);
    EXPECT_EQ(archive_write_open_filename(a_, path.c_str()), ARCHIVE_OK);
  }
  ~RawTar() { archive_write_free(a_); }
  void file(const std::string& name, const std::string& data) {
    archive_entry* e = entry(name, AE_IFREG);
    archive_entry_set_size(e, static_cast<la_int64_t>(data.size()));
    archive_write_header(a_, e);
    archive_write_data(a_, data.data(), data.size());
    archive_entry_free(e);
  }
  void symlink(const std::string& name, const std::string& target) {
    archive_entry* e = entry(name, AE_IFLNK);
    archive_entry_set_symlink(e, target.c_str());
    archive_write_header(a_, e);
    archive_entry_free(e);
  }
  void hardlink(const std::string& name, const std::string& target) {
    archive_entry* e = entry(name, AE_IFREG);
    archive_entry_set_hardlink(e, target.c_str());
    archive_write_header(a_, e);
    archive_entry_free(e);
  }
  void device(const std::string& name) {
    archive_entry* e = entry(name, AE_IFCHR);
    archive_write_header(a_, e);
    archive_entry_free(e);
  }
  void close() { archive_write_close(a_); }

 private:
  static archive_entry* entry(const std::string& name, mode_t type) {
    archive_entry* e = archive_entry_new();
    archive_entry_set_pathname(e, name.c_str());
    archive_entry_set_filetype(e, type);
    archive_entry_set_perm(e, 0644);
    return e;
  }
  archive* a_;
};

void expect_refused(const std::function<void(RawTar&)>& build, const std::string& why) {
  TempDir tmp;
  std::string dest = tmp.path() + "/target";
  fs::mkdir_p(dest);
  {
    RawTar tar(tmp.path() + "/a.tar");
    build(tar);
    tar.close();
  }
  try {
    unpack_checkpoint_archive(tmp.path() + "/a.tar", dest, nullptr);
    ADD_FAILURE() << "accepted an archive with " << why;
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("archive"), std::string::npos) << e.what();
  }
  std::set<std::string> expected = {"a.tar", "target"};
  std::set<std::string> top;
  for (auto& p : tree(tmp.path()))
    if (p.find('/') == std::string::npos) top.insert(p);
  EXPECT_EQ(top, expected) << why;
  EXPECT_FALSE(fs::exists("/tmp/cryo-archive-escape")) << why;
}

TEST(CheckpointArchive, RefusesEntriesOutsideTheLayout) {
  expect_refused([](RawTar& t) { t.file("../cryo-archive-escape", "x"); }, "a .. path");
  expect_refused([](RawTar& t) { t.file("/tmp/cryo-archive-escape", "x"); }, "an absolute path");
  expect_refused([](RawTar& t) { t.file("checkpoint/../../cryo-archive-escape", "x"); },
                 "a .. inside");
  expect_refused([](RawTar& t) { t.symlink("checkpoint", "/tmp"); }, "a symlink directory");
  expect_refused(
      [](RawTar& t) { t.symlink("checkpoint/inventory.img", "/tmp/cryo-archive-escape"); },
      "a symlink file");
  expect_refused([](RawTar& t) { t.hardlink("config.dump", "/etc/passwd"); }, "a hard link");
  expect_refused([](RawTar& t) { t.device("checkpoint/dev"); }, "a device");
  expect_refused([](RawTar& t) { t.file("checkpoint/sub/deeper.img", "x"); }, "a subdirectory");
  expect_refused([](RawTar& t) { t.file("random-file", "x"); }, "an unknown name");
  expect_refused(
      [](RawTar& t) {
        t.file("config.dump", "{}");
        t.file("config.dump", "{}");
      },
      "a duplicate");
  expect_refused([](RawTar& t) { t.file("config.dump", "{}"); }, "no checksums");
}

// A real checkpoint of a sleeping child, packed as an export archive.
std::string make_real_archive(const std::string& dir, ArchiveCompression compression) {
  std::string images = dir + "/images";
  fs::mkdir_p(images);
  pid_t child = ::fork();
  if (child == 0) {
    ::setsid();
    std::vector<char> data(1 << 20, 'x');  // some page data
    for (;;) ::pause();
  }
  ::usleep(20000);
  try {
    ckpt::dump(child, images, {});
  } catch (...) {
    ::kill(child, SIGKILL);
    ::waitpid(child, nullptr, 0);
    throw;
  }
  ::kill(child, SIGKILL);
  ::waitpid(child, nullptr, 0);
  std::string path = dir + "/real.tar";
  UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
  ArchiveWriter w(fd.get(), path, compression, nullptr);
  nlohmann::json manifest = {{"format_version", kArchiveFormatVersion}, {"host", describe_host()}};
  w.add_bytes(kManifestEntry, manifest.dump());
  w.add_bytes("config.dump", "{}");
  w.add_directory("checkpoint");
  std::vector<std::string> names;
  for (auto& p : tree(images)) names.push_back(p);
  std::sort(names.begin(), names.end());
  for (auto& n : names) w.add_file("checkpoint/" + n, images + "/" + n);
  w.finish();
  fs::remove_all(images);
  return path;
}

void fuzz(ArchiveCompression compression, int iterations) {
  TempDir tmp;
  std::string original_path = make_real_archive(tmp.path(), compression);
  std::string original = fs::read_file(original_path);
  ASSERT_GT(original.size(), 1000u);
  // The undamaged archive unpacks and verifies.
  std::string dest = tmp.path() + "/target";
  fs::mkdir_p(dest);
  UnpackedArchive good = unpack_checkpoint_archive(original_path, dest, nullptr);
  EXPECT_TRUE(fs::exists(dest + "/checkpoint/inventory.img"));
  std::set<std::string> good_tree = tree(dest);
  std::map<std::string, std::string> good_files;
  for (auto& p : good_tree) {
    struct stat st;
    if (::lstat((dest + "/" + p).c_str(), &st) == 0 && S_ISREG(st.st_mode))
      good_files[p] = fs::read_file(dest + "/" + p);
  }
  fs::remove_all(dest);

  std::mt19937_64 rng(compression == ArchiveCompression::kNone ? 1 : 2);
  int refused = 0;
  for (int i = 0; i < iterations; ++i) {
    std::string damaged = original;
    int kind = static_cast<int>(rng() % 3);
    if (kind != 1) {  // flip 1..8 bytes
      int flips = 1 + static_cast<int>(rng() % 8);
      for (int f = 0; f < flips; ++f)
        damaged[rng() % damaged.size()] ^= static_cast<char>(1 + rng() % 255);
    }
    if (kind != 0) damaged.resize(rng() % damaged.size());  // cut short
    std::string path = tmp.path() + "/damaged.tar";
    fs::write_file(path, damaged);
    fs::mkdir_p(dest);
    try {
      unpack_checkpoint_archive(path, dest, nullptr);
      // Damage that verification cannot see can only have hit padding: the content is intact.
      for (auto& [p, content] : good_files)
        EXPECT_EQ(fs::read_file(dest + "/" + p), content) << "iteration " << i << ": " << p;
    } catch (const Error&) {
      ++refused;
    }
    for (auto& p : tree(dest)) EXPECT_TRUE(good_tree.count(p)) << "iteration " << i << ": " << p;
    std::set<std::string> top;
    for (auto& p : tree(tmp.path()))
      if (p.find('/') == std::string::npos) top.insert(p);
    EXPECT_EQ(top, (std::set<std::string>{"damaged.tar", "real.tar", "target"}))
        << "iteration " << i;
    fs::remove_all(dest);
  }
  EXPECT_GT(refused, iterations / 2);
}

TEST(CheckpointArchive, FuzzedPlainArchiveNeverEscapesOrCrashes) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (ptrace of the dumped child)";
  fuzz(ArchiveCompression::kNone, 300);
}

TEST(CheckpointArchive, FuzzedZstdArchiveNeverEscapesOrCrashes) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (ptrace of the dumped child)";
  fuzz(ArchiveCompression::kZstd, 300);
}

// The zstd archive is a sequence of independent frames, each declaring its content size, that
// import decompresses in parallel: a frame cut short, damaged, or declaring an impossible size is
// refused cleanly; a zstd stream from another tool (no content sizes) is still read.
TEST(CheckpointArchive, ZstdFramesAreCheckedOneByOne) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (ptrace of the dumped child)";
  TempDir tmp;
  std::string original = fs::read_file(make_real_archive(tmp.path(), ArchiveCompression::kZstd));
  struct Frame {
    size_t offset, size;
  };
  std::vector<Frame> frames;
  std::string content;
  for (size_t at = 0; at < original.size();) {
    size_t n = ZSTD_findFrameCompressedSize(original.data() + at, original.size() - at);
    ASSERT_FALSE(ZSTD_isError(n)) << "frame at " << at << ": " << ZSTD_getErrorName(n);
    unsigned long long declared = ZSTD_getFrameContentSize(original.data() + at, n);
    ASSERT_NE(declared, ZSTD_CONTENTSIZE_UNKNOWN);
    ASSERT_NE(declared, ZSTD_CONTENTSIZE_ERROR);
    std::string piece(declared, '\0');
    // Each frame decompresses alone.
    ASSERT_EQ(ZSTD_decompress(piece.data(), piece.size(), original.data() + at, n), declared);
    content += piece;
    frames.push_back({at, n});
    at += n;
  }
  ASSERT_GE(frames.size(), 2u);

  auto unpack = [&](const std::string& bytes) {
    std::string path = tmp.path() + "/archive.tar.zst";
    std::string dest = tmp.path() + "/target";
    fs::write_file(path, bytes);
    fs::remove_all(dest);
    fs::mkdir_p(dest);
    unpack_checkpoint_archive(path, dest, nullptr);
    return fs::read_file(dest + "/checkpoint/inventory.img");
  };
  // Refused with a message holding one of `whys`.
  auto refused_with = [&](const std::string& bytes, std::vector<std::string> whys) {
    try {
      unpack(bytes);
      ADD_FAILURE() << "accepted: " << whys[0];
    } catch (const Error& e) {
      std::string message = e.what();
      EXPECT_TRUE(std::any_of(whys.begin(), whys.end(), [&](const std::string& why) {
        return message.find(why) != std::string::npos;
      })) << message;
    }
  };
  std::string inventory = unpack(original);
  ASSERT_FALSE(inventory.empty());

  const Frame& second = frames[1];
  refused_with(original.substr(0, second.offset + second.size / 2), {"truncated"});
  std::string damaged = original;
  for (size_t i = second.size / 3; i < second.size / 3 + 16; ++i)
    damaged[second.offset + i] ^= 0x5a;
  // Without a frame checksum, damage zstd cannot see is the entries' checksums' to find.
  refused_with(damaged, {"damaged archive: zstd frame", "checksum mismatch"});
  // A frame declaring more than a frame may hold.
  std::string big(3 << 20, 'y');
  std::string oversized(ZSTD_compressBound(big.size()), '\0');
  oversized.resize(ZSTD_compress(oversized.data(), oversized.size(), big.data(), big.size(), 1));
  refused_with(original.substr(0, second.offset) + oversized + original.substr(second.offset),
               {"content size"});
  // A valid frame longer than any compression of a frame's content: a 2 MiB skippable frame.
  std::string skippable("\x50\x2a\x4d\x18", 4);
  uint32_t skipped = 2 << 20;
  skippable.append(reinterpret_cast<const char*>(&skipped), 4);
  skippable.append(skipped, 's');
  refused_with(original.substr(0, second.offset) + skippable + original.substr(second.offset),
               {"compressed bytes"});

  // One frame without a declared size, as `zstd` writes from a pipe: libarchive's reader.
  ZSTD_CCtx* cctx = ZSTD_createCCtx();
  ASSERT_NE(cctx, nullptr);
  std::string stream(ZSTD_compressBound(content.size()) + 64, '\0');
  ZSTD_outBuffer out{stream.data(), stream.size(), 0};
  ZSTD_inBuffer in{content.data(), content.size(), 0};
  size_t left = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_continue);
  ASSERT_FALSE(ZSTD_isError(left));
  do {
    left = ZSTD_compressStream2(cctx, &out, &in, ZSTD_e_end);
    ASSERT_FALSE(ZSTD_isError(left));
  } while (left != 0);
  ZSTD_freeCCtx(cctx);
  stream.resize(out.pos);
  ASSERT_EQ(ZSTD_getFrameContentSize(stream.data(), stream.size()), ZSTD_CONTENTSIZE_UNKNOWN);
  EXPECT_EQ(unpack(stream), inventory);
}

// An image's integrity in the archive is its own framing: every header byte is checked, and its
// XXH3-64 must be the one checksums.json records.
TEST(CheckpointArchive, FramedImagesAreCheckedByTheirOwnChecksum) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (ptrace of the dumped child)";
  EXPECT_TRUE(is_framed_image_entry("checkpoint/inventory.img"));
  EXPECT_FALSE(is_framed_image_entry("checkpoint/container.json"));
  EXPECT_FALSE(is_framed_image_entry("checkpoint/tmpfs-0.tar"));
  EXPECT_FALSE(is_framed_image_entry("config.dump"));
  TempDir tmp;
  std::string original = fs::read_file(make_real_archive(tmp.path(), ArchiveCompression::kNone));
  auto refused_with = [&](const std::string& damaged, const std::string& why) {
    std::string path = tmp.path() + "/damaged.tar";
    std::string dest = tmp.path() + "/target";
    fs::write_file(path, damaged);
    fs::mkdir_p(dest);
    try {
      unpack_checkpoint_archive(path, dest, nullptr);
      ADD_FAILURE() << "accepted: " << why;
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find(why), std::string::npos) << e.what();
    }
    fs::remove_all(dest);
  };
  // The inventory image's header starts the data block after its tar header (the magic may also
  // occur inside page data: the dumped child's memory is a copy of this test's).
  std::string entry_name("checkpoint/inventory.img\0", 25);
  size_t tar_header = 0;
  for (;; tar_header += 1) {
    tar_header = original.find(entry_name, tar_header);
    ASSERT_NE(tar_header, std::string::npos);
    if (tar_header % 512 == 0) break;
  }
  size_t image = tar_header + 512;
  ASSERT_EQ(original.compare(image, 8, std::string("CRYOIMG\0", 8)), 0);
  std::string damaged = original;
  damaged[image + 24] ^= 1;  // a reserved header byte
  refused_with(damaged, "reserved header bytes");
  // checksums.json is the last entry (the text may also occur inside page data).
  size_t recorded = original.rfind("\"image_xxh3_64\": \"");
  ASSERT_NE(recorded, std::string::npos);
  damaged = original;
  char& digit = damaged[recorded + 18];
  digit = digit == '0' ? '1' : '0';
  refused_with(damaged, "corrupted");
}

// The dump's images as entries checkpoint/NAME of an archive (as the export streams them), with
// the writer's room for the next bytes offered to the dump; counts the bytes written from it.
class ArchiveImageSink : public ckpt::ImageSink {
 public:
  explicit ArchiveImageSink(ArchiveWriter& writer) : writer_(writer) {}
  std::unique_ptr<ckpt::ImageOutput> create(const std::string& name, uint64_t size) override {
    writer_.begin_entry("checkpoint/" + name, size);
    return std::make_unique<Output>(*this);
  }
  void finish() override {}
  std::string describe() const override { return "test archive"; }
  uint64_t bytes_in_place = 0;
  uint64_t bytes_copied = 0;

 private:
  class Output : public ckpt::ImageOutput {
   public:
    explicit Output(ArchiveImageSink& sink) : sink_(sink) {}
    void write(const void* data, size_t size) override {
      (data == room_ ? sink_.bytes_in_place : sink_.bytes_copied) += size;
      room_ = nullptr;
      sink_.writer_.write(data, size);
    }
    std::pair<void*, size_t> write_room(size_t min_size) override {
      auto room = sink_.writer_.write_room(min_size);
      room_ = room.first;
      return room;
    }
    void commit() override { sink_.writer_.end_entry(); }

   private:
    ArchiveImageSink& sink_;
    const void* room_ = nullptr;
  };
  ArchiveWriter& writer_;
};

// With -c zstd the export reads a process's pages straight into the compressor's frames: the
// archive's page image is byte for byte what a plain streaming dump of the same frozen process
// gives, and nearly all its bytes went through the frames without a copy. Other compressions
// offer no room (the dump copies through its own buffers).
TEST(CheckpointArchive, PagesReadIntoTheCompressorsFramesMatchAStreamedDump) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root (ptrace of the dumped child)";
  constexpr size_t kPages = 6144;  // 24 MiB: zero pages, repeated bytes, incompressible ones
  auto* area = static_cast<uint8_t*>(
      ::mmap(nullptr, kPages * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(area, MAP_FAILED);
  std::mt19937_64 rng(7);
  for (size_t p = 0; p < kPages; ++p) {
    uint8_t* page = area + p * 4096;
    if (p % 3 == 0)
      page[0] = 0;  // touched, all zeros
    else if (p % 3 == 1)
      std::memset(page, static_cast<int>(p % 251 + 1), 4096);
    else
      for (size_t i = 0; i < 4096; i += 8) {
        uint64_t v = rng();
        std::memcpy(page + i, &v, sizeof v);
      }
  }
  pid_t child = ::fork();
  if (child == 0) {
    for (;;) ::pause();
  }
  struct Reap {
    pid_t pid;
    uint8_t* area;
    ~Reap() {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, nullptr, 0);
      ::munmap(area, kPages * 4096);
    }
  } reap{child, area};

  TempDir tmp;
  std::string path = tmp.path() + "/pages.tar.zst";
  ckpt::MemorySink plain;
  nlohmann::json plain_mm, archived_mm;
  uint64_t in_place = 0, copied = 0;
  {
    ckpt::FrozenTree frozen = ckpt::FrozenTree::freeze(child);
    ckpt::MemoryDumpCounters counters;
    ckpt::TreeMemory plain_tree, archived_tree;
    plain_mm = ckpt::dump_memory(child, plain, counters, plain_tree);

    UniqueFd fd(::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    ArchiveWriter writer(fd.get(), path, ArchiveCompression::kZstd, nullptr);
    nlohmann::json manifest = {{"format_version", kArchiveFormatVersion},
                               {"host", describe_host()}};
    writer.add_bytes(kManifestEntry, manifest.dump());
    writer.add_bytes("config.dump", "{}");
    writer.add_directory("checkpoint");
    ArchiveImageSink sink(writer);
    archived_mm = ckpt::dump_memory(child, sink, counters, archived_tree);
    writer.finish();
    in_place = sink.bytes_in_place;
    copied = sink.bytes_copied;
  }
  EXPECT_EQ(archived_mm.at("runs"), plain_mm.at("runs"));
  std::string image = "pages-" + std::to_string(child) + ".img";
  ASSERT_EQ(plain.images().count(image), 1u);
  const std::string& expected = plain.images().at(image);
  EXPECT_GE(in_place, kPages * 4096 * 9 / 10) << "copied: " << copied;

  std::string dest = tmp.path() + "/target";
  fs::mkdir_p(dest);
  unpack_checkpoint_archive(path, dest, nullptr);
  std::string unpacked = fs::read_file(dest + "/checkpoint/" + image);
  ASSERT_EQ(unpacked.size(), expected.size());
  EXPECT_TRUE(unpacked == expected) << "the archived page image differs from the plain dump's";

  for (ArchiveCompression other : {ArchiveCompression::kNone, ArchiveCompression::kGzip}) {
    UniqueFd fd(
        ::open((tmp.path() + "/other").c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600));
    ArchiveWriter writer(fd.get(), "other", other, nullptr);
    writer.begin_entry("checkpoint/x.img", 4096);
    EXPECT_EQ(writer.write_room(4096).first, nullptr);
  }
}

TEST(CheckpointArchive, HostCompatibility) {
  nlohmann::json here = {
      {"arch", "x86_64"}, {"xcr0", "0x7"}, {"cpu_flags", {"sse2", "avx", "avx2", "ht"}}};
  auto manifest = [](nlohmann::json host) { return nlohmann::json{{"host", host}}; };
  EXPECT_NO_THROW(check_host_compatibility(
      manifest({{"arch", "x86_64"}, {"xcr0", "0x7"}, {"cpu_flags", {"sse2", "avx2", "vmx"}}}),
      here));
  try {
    check_host_compatibility(manifest({{"arch", "aarch64"}, {"xcr0", "0x0"}}), here);
    ADD_FAILURE() << "another architecture accepted";
  } catch (const ExitCodeError& e) {
    EXPECT_NE(std::string(e.what()).find("made on aarch64"), std::string::npos) << e.what();
  }
  try {
    check_host_compatibility(manifest({{"arch", "x86_64"}, {"xcr0", "0xe7"}}), here);
    ADD_FAILURE() << "missing XCR0 components accepted";
  } catch (const ExitCodeError& e) {
    EXPECT_NE(std::string(e.what()).find("missing bits 0xe0"), std::string::npos) << e.what();
  }
  try {
    check_host_compatibility(
        manifest({{"arch", "x86_64"}, {"xcr0", "0x7"}, {"cpu_flags", {"avx2", "avx512f"}}}), here);
    ADD_FAILURE() << "missing avx512f accepted";
  } catch (const ExitCodeError& e) {
    EXPECT_NE(std::string(e.what()).find("lacks: avx512f"), std::string::npos) << e.what();
  }
  // This host is compatible with itself.
  EXPECT_NO_THROW(check_host_compatibility(nlohmann::json{{"host", describe_host()}}));
}

}  // namespace
}  // namespace cryo::engine
