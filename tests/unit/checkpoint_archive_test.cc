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
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cstdlib>
#include <functional>
#include <map>
#include <random>
#include <set>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/image/image_file.h"
#include "common/error.h"
#include "common/fs.h"
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
  // An image's header starts a tar data block (the magic also occurs inside page data).
  size_t image = 0;
  for (;; image += 8) {
    image = original.find(std::string("CRYOIMG\0", 8), image);
    ASSERT_NE(image, std::string::npos);
    if (image % 512 == 0 && original[image + 8] == static_cast<char>(ckpt::kImageFormatVersion) &&
        original[image + 12] == 1)
      break;
  }
  std::string damaged = original;
  damaged[image + 24] ^= 1;  // a reserved header byte
  refused_with(damaged, "reserved header bytes");
  // checksums.json is the archive's last entry; the text may also occur in dumped memory.
  size_t recorded = original.rfind("\"image_xxh3_64\": \"");
  ASSERT_NE(recorded, std::string::npos);
  damaged = original;
  char& digit = damaged[recorded + 18];
  digit = digit == '0' ? '1' : '0';
  refused_with(damaged, "corrupted");
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
