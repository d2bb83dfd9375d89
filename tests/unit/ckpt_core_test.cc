// The checkpoint core's building blocks on real processes: syscall-restart fixup, base64, smaps
// parsing, freezing a tree, and the memory dump's page selection.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <thread>

#include <gtest/gtest.h>

#include "checkpoint/image/image_file.h"
#include "checkpoint/image/image_sink.h"
#include "checkpoint/memory.h"
#include "checkpoint/threads.h"
#include "checkpoint/tree.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"

namespace cryo::ckpt {
namespace {

TEST(CkptThreads, SyscallRestartFixup) {
  user_regs_struct regs{};
  regs.orig_rax = 0;                       // read
  regs.rax = static_cast<uint64_t>(-512);  // -ERESTARTSYS
  regs.rip = 0x1002;
  apply_syscall_restart(regs);
  EXPECT_EQ(regs.rax, 0u);
  EXPECT_EQ(regs.rip, 0x1000u);
  EXPECT_EQ(static_cast<int64_t>(regs.orig_rax), -1);

  regs.orig_rax = 35;                      // nanosleep
  regs.rax = static_cast<uint64_t>(-516);  // -ERESTART_RESTARTBLOCK
  regs.rip = 0x2002;
  apply_syscall_restart(regs);
  EXPECT_EQ(static_cast<int64_t>(regs.rax), -EINTR);
  EXPECT_EQ(regs.rip, 0x2002u);

  regs.orig_rax = static_cast<uint64_t>(-1);  // not in a syscall: untouched
  regs.rax = 7;
  apply_syscall_restart(regs);
  EXPECT_EQ(regs.rax, 7u);
}

TEST(CkptThreads, Base64RoundTrip) {
  for (size_t n = 0; n < 40; ++n) {
    std::string data;
    for (size_t i = 0; i < n; ++i) data += static_cast<char>(i * 37 + 11);
    std::string text = base64_encode(data.data(), data.size());
    EXPECT_EQ(text.size() % 4, 0u);
    std::vector<uint8_t> back = base64_decode(text);
    EXPECT_EQ(std::string(back.begin(), back.end()), data) << n;
  }
  EXPECT_EQ(base64_encode("Man", 3), "TWFu");
  EXPECT_THROW(base64_decode("TW*u"), cryo::Error);
}

// Short run lists stay readable arrays; long ones are packed into one base64 string. Both read
// back to the same runs, and a packed string that is not whole records is refused.
TEST(CkptMemory, PageRunsRoundTripAsArraysAndPacked) {
  for (size_t count : {size_t{0}, size_t{3}, size_t{64}, size_t{65}, size_t{5000}}) {
    std::vector<PageRun> runs;
    for (size_t i = 0; i < count; ++i)
      runs.push_back({0x7f0000000000ull + i * 0x10000, i % 17 + 1, i * 4096 * 3,
                      static_cast<uint32_t>(i % 3 == 0 ? 0 : i % 5)});
    json j = runs_to_json(runs);
    EXPECT_EQ(j.is_string(), count > 64) << count;
    std::vector<PageRun> back = runs_from_json(json::parse(j.dump()));
    ASSERT_EQ(back.size(), runs.size()) << count;
    for (size_t i = 0; i < count; ++i) {
      EXPECT_EQ(back[i].vaddr, runs[i].vaddr);
      EXPECT_EQ(back[i].pages, runs[i].pages);
      EXPECT_EQ(back[i].offset, runs[i].offset);
      EXPECT_EQ(back[i].image, runs[i].image);
    }
  }
  std::vector<PageRun> many(100, PageRun{4096, 1, 0});
  std::string packed = runs_to_json(many).get<std::string>();
  EXPECT_THROW(runs_from_json(json(packed.substr(0, packed.size() - 8))), cryo::Error);
}

TEST(CkptMemory, ReadsVmasWithKindsProtectionsAndFlags) {
  size_t page = 4096;
  auto* area = static_cast<uint8_t*>(
      mmap(nullptr, 3 * page, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(area, MAP_FAILED);
  ASSERT_EQ(mprotect(area + page, page, PROT_READ), 0);
  ASSERT_EQ(madvise(area + 2 * page, page, MADV_DONTFORK), 0);
  auto* shared = static_cast<uint8_t*>(
      mmap(nullptr, page, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
  std::map<uint64_t, Vma> by_start;
  for (const Vma& v : read_vmas(getpid())) by_start[v.start] = v;
  auto at = [&](void* p) { return by_start.at(reinterpret_cast<uint64_t>(p)); };
  EXPECT_EQ(at(area).prot, PROT_READ | PROT_WRITE);
  EXPECT_EQ(at(area).kind, VmaKind::kAnon);
  EXPECT_EQ(at(area + page).prot, PROT_READ);
  EXPECT_TRUE(at(area + 2 * page).has_flag("dc"));
  EXPECT_EQ(at(shared).kind, VmaKind::kSharedAnon);
  bool vdso = false;
  for (auto& [start, v] : by_start) vdso |= v.kind == VmaKind::kVdso;
  EXPECT_TRUE(vdso);
  munmap(area, 3 * page);
  munmap(shared, page);
}

// A child with a grandchild, both sleeping; killed on destruction.
struct SmallTree {
  pid_t child = -1;
  int pipe_fds[2];
  pid_t grandchild = -1;
  SmallTree() {
    if (pipe(pipe_fds) != 0) abort();
    child = fork();
    if (child == 0) {
      pid_t g = fork();
      if (g == 0) {
        for (;;) pause();
      }
      if (write(pipe_fds[1], &g, sizeof g) != sizeof g) _exit(1);
      for (;;) pause();
    }
    if (read(pipe_fds[0], &grandchild, sizeof grandchild) != sizeof grandchild) abort();
  }
  ~SmallTree() {
    kill(grandchild, SIGKILL);
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    close(pipe_fds[0]);
    close(pipe_fds[1]);
  }
};

TEST(CkptTree, FreezesEveryProcessAndResumes) {
  SmallTree tree;
  {
    FrozenTree frozen = FrozenTree::freeze(tree.child);
    auto& processes = frozen.processes();
    ASSERT_EQ(processes.size(), 2u);
    EXPECT_EQ(processes[0].info.pid, tree.child);
    EXPECT_EQ(processes[1].info.pid, tree.grandchild);
    EXPECT_EQ(processes[1].info.ppid, tree.child);
    EXPECT_EQ(processes[0].children, std::vector<pid_t>{tree.grandchild});
    for (auto& p : processes) {
      ASSERT_EQ(p.threads.size(), 1u);
      // Stopped by ptrace: registers are readable.
      EXPECT_NE(p.threads[0].get_regs().rip, 0u);
    }
    std::string status = fs::read_file("/proc/" + std::to_string(tree.child) + "/status");
    EXPECT_NE(status.find("TracerPid:\t" + std::to_string(getpid())), std::string::npos);
  }
  // Detached: no tracer any more, and still alive.
  std::string status = fs::read_file("/proc/" + std::to_string(tree.child) + "/status");
  EXPECT_NE(status.find("TracerPid:\t0"), std::string::npos);
  EXPECT_EQ(kill(tree.grandchild, 0), 0);
}

TEST(CkptMemory, DumpsTouchedNonZeroPagesOnly) {
  constexpr size_t kPages = 64;
  auto* area = static_cast<uint8_t*>(mmap(nullptr, kPages * kPageSize, PROT_READ | PROT_WRITE,
                                          MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
  ASSERT_NE(area, MAP_FAILED);
  // Pages 0-9: data; 10-19: written with zeros; 20-29: read only (zero page); 30-63: untouched.
  for (size_t p = 0; p < 10; ++p) memset(area + p * kPageSize, static_cast<int>(p + 1), kPageSize);
  for (size_t p = 10; p < 20; ++p) area[p * kPageSize] = 0;
  volatile uint8_t sink = 0;
  for (size_t p = 20; p < 30; ++p) sink = sink + area[p * kPageSize];
  pid_t child = fork();
  if (child == 0) {
    for (;;) pause();
  }
  std::string dir = std::filesystem::temp_directory_path() / ("ckpt-core-test-" + random_hex(4));
  std::filesystem::create_directories(dir);
  json mm;
  {
    FrozenTree frozen = FrozenTree::freeze(child);
    MemoryDumpCounters counters;
    TreeMemory tree;
    DirectorySink sink(dir);
    mm = dump_memory(child, sink, counters, tree);
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
  uint64_t start = reinterpret_cast<uint64_t>(area);
  uint64_t end = start + kPages * kPageSize;
  // One page image, or more when the test binary's own memory (the child's copy) is large.
  std::vector<std::unique_ptr<RawImageReader>> images;
  for (const json& name : mm.at("pages_images")) {
    images.push_back(std::make_unique<RawImageReader>(dir, name.get<std::string>()));
    images.back()->verify_checksum();
  }
  uint64_t dumped_in_area = 0;
  for (const PageRun& run : runs_from_json(mm.at("runs"))) {
    if (run.vaddr >= end || run.vaddr + run.pages * kPageSize <= start) continue;
    ASSERT_LT(run.image, images.size());
    for (uint64_t i = 0; i < run.pages; ++i) {
      uint64_t addr = run.vaddr + i * kPageSize;
      if (addr < start || addr >= end) continue;  // a neighbouring mapping's page
      ASSERT_LT(addr, start + 10 * kPageSize) << "a zero or untouched page was dumped";
      std::vector<uint8_t> bytes(kPageSize);
      images[run.image]->read_at(run.offset + i * kPageSize, bytes.data(), kPageSize);
      EXPECT_EQ(memcmp(bytes.data(), area + (addr - start), kPageSize), 0);
      ++dumped_in_area;
    }
  }
  EXPECT_EQ(dumped_in_area, 10u);
  std::filesystem::remove_all(dir);
  munmap(area, kPages * kPageSize);
}

}  // namespace
}  // namespace cryo::ckpt

namespace cryo::ckpt {
namespace {

// A process with more memory than one page image takes: `kPages` pages, every third one written
// with zeros, the others with data.
struct BigChild {
  static constexpr size_t kPages = 8192;  // 32 MiB
  uint8_t* area = nullptr;
  pid_t pid = -1;
  BigChild() {
    area = static_cast<uint8_t*>(mmap(nullptr, kPages * kPageSize, PROT_READ | PROT_WRITE,
                                      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0));
    for (size_t p = 0; p < kPages; ++p) {
      if (p % 3 == 0)
        area[p * kPageSize + 100] = 0;
      else
        memset(area + p * kPageSize, static_cast<int>(p % 251 + 1), kPageSize);
    }
    pid = fork();
    if (pid == 0) {
      for (;;) pause();
    }
  }
  ~BigChild() {
    kill(pid, SIGKILL);
    waitpid(pid, nullptr, 0);
    munmap(area, kPages * kPageSize);
  }
  uint64_t start() const { return reinterpret_cast<uint64_t>(area); }
  uint64_t end() const { return start() + kPages * kPageSize; }
};

uint64_t image_payload_pages(const std::string& image_file) {
  return (image_file.size() - kImageHeaderSize - kImageTrailerSize) / kPageSize;
}

uint64_t run_pages(const std::vector<PageRun>& runs) {
  uint64_t pages = 0;
  for (const PageRun& r : runs) pages += r.pages;
  return pages;
}

TEST(CkptMemory, DirectoryDumpWritesSeveralPageImagesWithoutZeroPages) {
  BigChild child;
  std::string dir = std::filesystem::temp_directory_path() / ("ckpt-core-test-" + random_hex(4));
  struct RemoveDir {
    std::string path;
    ~RemoveDir() { std::filesystem::remove_all(path); }
  } remove_dir{dir};
  json mm;
  MemoryDumpCounters counters;
  {
    FrozenTree frozen = FrozenTree::freeze(child.pid);
    TreeMemory tree;
    DirectorySink sink(dir);
    mm = dump_memory(child.pid, sink, counters, tree);
    sink.finish();
  }
  size_t expected_images =
      std::clamp<size_t>(std::thread::hardware_concurrency(), 1, kMaxPageImages);
  ASSERT_EQ(mm.at("pages_images").size(), expected_images);
  EXPECT_EQ(mm.at("pages_images").at(0), "pages-" + std::to_string(child.pid) + ".img");
  std::vector<std::unique_ptr<RawImageReader>> images;
  uint64_t stored = 0;
  for (const json& name : mm.at("pages_images")) {
    images.push_back(std::make_unique<RawImageReader>(dir, name.get<std::string>()));
    images.back()->verify_checksum();
    stored += images.back()->payload_size();
  }
  std::vector<PageRun> runs = runs_from_json(mm.at("runs"));
  // Every stored page is in a run: no zero page is stored.
  EXPECT_EQ(stored, run_pages(runs) * kPageSize);
  EXPECT_EQ(counters.pages_written, run_pages(runs));
  std::vector<bool> seen(BigChild::kPages, false);
  std::set<uint32_t> images_used;
  for (const PageRun& run : runs) {
    ASSERT_LT(run.image, images.size());
    if (run.vaddr >= child.end() || run.vaddr + run.pages * kPageSize <= child.start()) continue;
    images_used.insert(run.image);
    for (uint64_t i = 0; i < run.pages; ++i) {
      uint64_t addr = run.vaddr + i * kPageSize;
      if (addr < child.start() || addr >= child.end()) continue;  // a neighbouring mapping's
      uint64_t page = (addr - child.start()) / kPageSize;
      ASSERT_NE(page % 3, 0u) << "zero page " << page << " was dumped";
      seen[page] = true;
      std::vector<uint8_t> bytes(kPageSize);
      images[run.image]->read_at(run.offset + i * kPageSize, bytes.data(), kPageSize);
      EXPECT_EQ(memcmp(bytes.data(), child.area + page * kPageSize, kPageSize), 0) << page;
    }
  }
  for (size_t p = 0; p < BigChild::kPages; ++p) {
    if (p % 3 != 0) {
      EXPECT_TRUE(seen[p]) << "page " << p << " was not dumped";
    }
  }
  EXPECT_EQ(images_used.size(), std::min<size_t>(expected_images, 2))
      << "the area's pages are spread over the images";
}

TEST(CkptMemory, StreamingSinkGetsOnePageImageOfTheSizeAnnounced) {
  BigChild child;
  MemorySink sink;  // a streaming sink: one output at a time, sized up front
  json mm;
  {
    FrozenTree frozen = FrozenTree::freeze(child.pid);
    MemoryDumpCounters counters;
    TreeMemory tree;
    mm = dump_memory(child.pid, sink, counters, tree);
  }
  ASSERT_EQ(mm.at("pages_images").size(), 1u);
  const std::string& image = sink.images().at(mm.at("pages_images").at(0).get<std::string>());
  std::vector<PageRun> runs = runs_from_json(mm.at("runs"));
  for (const PageRun& run : runs) EXPECT_EQ(run.image, 0u);
  // The zero pages of the area are in the payload (its size was fixed before reading), in no run.
  EXPECT_GE(image_payload_pages(image), run_pages(runs) + BigChild::kPages / 3);
}

}  // namespace
}  // namespace cryo::ckpt
