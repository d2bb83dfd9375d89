// The checkpoint core's building blocks on real processes: syscall-restart fixup, base64, smaps
// parsing, freezing a tree, and the memory dump's page selection.
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <filesystem>
#include <map>
#include <string>

#include <gtest/gtest.h>

#include "checkpoint/image/image_file.h"
#include "checkpoint/memory.h"
#include "checkpoint/threads.h"
#include "checkpoint/tree.h"
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
  RawImageReader pages(dir, mm.at("pages_image").get<std::string>());
  pages.verify_checksum();
  uint64_t dumped_in_area = 0;
  for (const PageRun& run : runs_from_json(mm.at("runs"))) {
    if (run.vaddr >= end || run.vaddr + run.pages * kPageSize <= start) continue;
    for (uint64_t i = 0; i < run.pages; ++i) {
      uint64_t addr = run.vaddr + i * kPageSize;
      ASSERT_GE(addr, start);
      ASSERT_LT(addr, start + 10 * kPageSize) << "a zero or untouched page was dumped";
      std::vector<uint8_t> bytes(kPageSize);
      pages.read_at(run.offset + i * kPageSize, bytes.data(), kPageSize);
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
