// Restore's page filling from outside (fill_process_memory): pages land at their run addresses
// in another process, pages of the payload in no run stay unpopulated there, and a corrupted
// payload or a run outside it is refused.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "checkpoint/image/image_file.h"
#include "checkpoint/image/image_sink.h"
#include "checkpoint/memory.h"
#include "checkpoint/restorer.h"
#include "common/error.h"
#include "image_test_util.h"

namespace cryo::ckpt {
namespace {

// A child holding, untouched, the private anonymous area the parent mapped at `area`; killed and
// reaped on destruction.
class TargetProcess {
 public:
  explicit TargetProcess(uint8_t* area) : area_(area) {
    pid_ = ::fork();
    if (pid_ == 0) {
      for (;;) ::pause();
    }
  }
  ~TargetProcess() {
    ::kill(pid_, SIGKILL);
    ::waitpid(pid_, nullptr, 0);
  }
  pid_t pid() const { return pid_; }

  std::vector<uint8_t> read_page(size_t page) const {
    std::vector<uint8_t> bytes(kPageSize);
    iovec local{bytes.data(), kPageSize};
    iovec remote{area_ + page * kPageSize, kPageSize};
    if (::process_vm_readv(pid_, &local, 1, &remote, 1, 0) != static_cast<ssize_t>(kPageSize))
      ADD_FAILURE() << "process_vm_readv: " << std::strerror(errno);
    return bytes;
  }

  // Whether the page is present in the child's page tables (pagemap bit 63).
  bool present(size_t page) const {
    std::string path = "/proc/" + std::to_string(pid_) + "/pagemap";
    int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    uint64_t entry = 0;
    off_t at = static_cast<off_t>(reinterpret_cast<uint64_t>(area_ + page * kPageSize) / kPageSize *
                                  sizeof entry);
    bool ok = fd >= 0 && ::pread(fd, &entry, sizeof entry, at) == sizeof entry;
    if (fd >= 0) ::close(fd);
    EXPECT_TRUE(ok) << "reading " << path;
    return (entry >> 63) & 1;
  }

 private:
  uint8_t* area_;
  pid_t pid_ = -1;
};

// A page image whose payload holds `count` pages, page i filled with byte i + 1 except the
// pages listed in `zero` (all zero, as the dump leaves them in the payload but in no run).
std::vector<PageRun> write_page_image(const std::string& dir, uint64_t area, size_t count,
                                      const std::vector<size_t>& zero) {
  DirectorySink sink(dir);
  RawImageWriter writer(sink, "pages-1.img", count * kPageSize);
  std::vector<PageRun> runs;
  std::vector<uint8_t> page(kPageSize);
  for (size_t i = 0; i < count; ++i) {
    bool is_zero = std::find(zero.begin(), zero.end(), i) != zero.end();
    std::memset(page.data(), is_zero ? 0 : static_cast<int>(i + 1), kPageSize);
    writer.append(page.data(), kPageSize);
    if (is_zero) continue;
    uint64_t vaddr = area + i * kPageSize;
    if (!runs.empty() && runs.back().vaddr + runs.back().pages * kPageSize == vaddr)
      ++runs.back().pages;
    else
      runs.push_back({vaddr, 1, i * kPageSize});
  }
  writer.finish();
  sink.finish();
  return runs;
}

// More pages than one worker's chunk, so that several threads and the ordered checksum are used.
constexpr size_t kPages = 600;

TEST(FillProcessMemory, WritesRunsInPlaceAndLeavesOtherPagesUntouched) {
  auto* area = static_cast<uint8_t*>(::mmap(nullptr, kPages * kPageSize, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(area, MAP_FAILED);
  testing::TempDir dir;
  const std::vector<size_t> zero = {0, 5, 6, 7, 300, 599};
  std::vector<PageRun> runs =
      write_page_image(dir.path(), reinterpret_cast<uint64_t>(area), kPages, zero);
  {
    TargetProcess target(area);
    RawImageReader pages(dir.path(), "pages-1.img");
    EXPECT_EQ(fill_process_memory(target.pid(), {&pages}, runs),
              (kPages - zero.size()) * kPageSize);
    for (size_t i = 0; i < kPages; ++i) {
      bool is_zero = std::find(zero.begin(), zero.end(), i) != zero.end();
      EXPECT_EQ(target.present(i), !is_zero) << "page " << i;
      if (is_zero) continue;
      std::vector<uint8_t> bytes = target.read_page(i);
      std::vector<uint8_t> expected(kPageSize, static_cast<uint8_t>(i + 1));
      EXPECT_EQ(bytes, expected) << "page " << i;
    }
  }
  ::munmap(area, kPages * kPageSize);
}

TEST(FillProcessMemory, RefusesACorruptedPayloadAndARunOutsideIt) {
  auto* area = static_cast<uint8_t*>(::mmap(nullptr, kPages * kPageSize, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(area, MAP_FAILED);
  testing::TempDir dir;
  // Page 400 is in no run: a flipped byte there is found all the same.
  std::vector<PageRun> runs =
      write_page_image(dir.path(), reinterpret_cast<uint64_t>(area), kPages, {400});
  {
    int fd = ::open((dir / "pages-1.img").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t byte = 0xff;
    off_t at = static_cast<off_t>(RawImageReader::payload_offset() + 400 * kPageSize + 17);
    ASSERT_EQ(::pwrite(fd, &byte, 1, at), 1);
    ::close(fd);
  }
  TargetProcess target(area);
  RawImageReader pages(dir.path(), "pages-1.img");
  try {
    fill_process_memory(target.pid(), {&pages}, runs);
    ADD_FAILURE() << "a corrupted page image was accepted";
  } catch (const cryo::Error& e) {
    EXPECT_NE(std::string(e.what()).find("checksum mismatch"), std::string::npos) << e.what();
  }
  std::vector<PageRun> outside = {{reinterpret_cast<uint64_t>(area), 2, (kPages - 1) * kPageSize}};
  try {
    fill_process_memory(target.pid(), {&pages}, outside);
    ADD_FAILURE() << "a run past the payload was accepted";
  } catch (const cryo::Error& e) {
    EXPECT_NE(std::string(e.what()).find("outside the image's payload"), std::string::npos)
        << e.what();
  }
  ::munmap(area, kPages * kPageSize);
}

// Page i in image i % 2, written as a dump into a directory writes them: sized at the end, zero
// pages left out of both the images and the runs.
std::vector<PageRun> write_two_page_images(const std::string& dir, uint64_t area, size_t count,
                                           const std::vector<size_t>& zero) {
  DirectorySink sink(dir);
  std::vector<std::unique_ptr<RawImageWriter>> writers;
  writers.push_back(std::make_unique<RawImageWriter>(sink, "pages-1.img"));
  writers.push_back(std::make_unique<RawImageWriter>(sink, "pages-1.1.img"));
  std::vector<PageRun> runs;
  std::vector<uint8_t> page(kPageSize);
  for (size_t i = 0; i < count; ++i) {
    if (std::find(zero.begin(), zero.end(), i) != zero.end()) continue;
    RawImageWriter& writer = *writers[i % 2];
    std::memset(page.data(), static_cast<int>(i + 1), kPageSize);
    runs.push_back({area + i * kPageSize, 1, writer.payload_size(), static_cast<uint32_t>(i % 2)});
    iovec piece{page.data(), kPageSize};
    writer.append_vectored(&piece, 1);
  }
  for (auto& writer : writers) writer->finish();
  sink.finish();
  return runs;
}

TEST(FillProcessMemory, FillsFromSeveralImagesAndChecksEach) {
  auto* area = static_cast<uint8_t*>(::mmap(nullptr, kPages * kPageSize, PROT_READ | PROT_WRITE,
                                            MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(area, MAP_FAILED);
  testing::TempDir dir;
  const std::vector<size_t> zero = {2, 3, 10, 301, 598};
  std::vector<PageRun> runs =
      write_two_page_images(dir.path(), reinterpret_cast<uint64_t>(area), kPages, zero);
  RawImageReader first(dir.path(), "pages-1.img");
  RawImageReader second(dir.path(), "pages-1.1.img");
  // Only the pages that are not zero are stored.
  EXPECT_EQ(first.payload_size() + second.payload_size(), (kPages - zero.size()) * kPageSize);
  {
    TargetProcess target(area);
    EXPECT_EQ(fill_process_memory(target.pid(), {&first, &second}, runs),
              (kPages - zero.size()) * kPageSize);
    for (size_t i = 0; i < kPages; ++i) {
      bool is_zero = std::find(zero.begin(), zero.end(), i) != zero.end();
      EXPECT_EQ(target.present(i), !is_zero) << "page " << i;
      if (is_zero) continue;
      std::vector<uint8_t> expected(kPageSize, static_cast<uint8_t>(i + 1));
      EXPECT_EQ(target.read_page(i), expected) << "page " << i;
    }
    // A run naming an image that is not there.
    std::vector<PageRun> stray = {{reinterpret_cast<uint64_t>(area), 1, 0, 2}};
    try {
      fill_process_memory(target.pid(), {&first, &second}, stray);
      ADD_FAILURE() << "a run of a third image was accepted";
    } catch (const cryo::Error& e) {
      EXPECT_NE(std::string(e.what()).find("names page image 2 of 2"), std::string::npos)
          << e.what();
    }
  }
  // A flipped byte in the second image is found.
  {
    int fd = ::open((dir / "pages-1.1.img").c_str(), O_RDWR);
    ASSERT_GE(fd, 0);
    uint8_t byte = 0x00;
    off_t at = static_cast<off_t>(RawImageReader::payload_offset() + 7 * kPageSize + 5);
    ASSERT_EQ(::pwrite(fd, &byte, 1, at), 1);
    ::close(fd);
  }
  {
    TargetProcess target(area);
    RawImageReader damaged(dir.path(), "pages-1.1.img");
    try {
      fill_process_memory(target.pid(), {&first, &damaged}, runs);
      ADD_FAILURE() << "a corrupted second page image was accepted";
    } catch (const cryo::Error& e) {
      EXPECT_NE(std::string(e.what()).find("pages-1.1.img: image file is corrupted"),
                std::string::npos)
          << e.what();
    }
  }
  ::munmap(area, kPages * kPageSize);
}

}  // namespace
}  // namespace cryo::ckpt
