// Injects syscalls and batches into a forked child and checks that it resumes intact.
#include <fcntl.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <string>

#include <gtest/gtest.h>

#include "checkpoint/arch/x86_64/blob.h"
#include "checkpoint/ptrace.h"
#include "checkpoint/remote_syscall.h"
#include "checkpoint/syscall_batch.h"

namespace cryo::ckpt {
namespace {

// A child that counts in a loop while blocked in read() on a pipe: once it reads a byte it writes
// back its counter state so the parent can check it resumed where it was.
struct Child {
  pid_t pid = -1;
  int to_child = -1;
  int from_child = -1;

  Child() {
    int down[2], up[2];
    if (pipe(down) != 0 || pipe(up) != 0) abort();
    pid = fork();
    if (pid == 0) {
      close(down[1]);
      close(up[0]);
      volatile uint64_t counter = 0x1234;
      char c;
      // Blocked in read: the injected code must leave the syscall to restart.
      while (read(down[0], &c, 1) != 1) {
      }
      counter = counter + static_cast<uint64_t>(c);
      uint64_t value = counter;
      if (write(up[1], &value, sizeof value) != sizeof value) _exit(3);
      _exit(0);
    }
    close(down[0]);
    close(up[1]);
    to_child = down[1];
    from_child = up[0];
  }
  ~Child() {
    if (pid > 0) {
      kill(pid, SIGKILL);
      waitpid(pid, nullptr, 0);
    }
    close(to_child);
    close(from_child);
  }
  // Lets the child finish and returns what it reports.
  uint64_t finish() {
    char c = 1;
    EXPECT_EQ(write(to_child, &c, 1), 1);
    uint64_t value = 0;
    EXPECT_EQ(read(from_child, &value, sizeof value), static_cast<ssize_t>(sizeof value));
    int status = 0;
    EXPECT_EQ(waitpid(pid, &status, 0), pid);
    pid = -1;
    EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << "status " << status;
    return value;
  }
};

TEST(RemoteSyscalls, InjectsSyscallsAndTheTargetResumesIntact) {
  Child child;
  usleep(20000);  // let it block in read()
  {
    PtraceAttachment attachment = PtraceAttachment::seize_and_interrupt(child.pid);
    user_regs_struct before = attachment.get_regs();
    {
      RemoteSyscalls remote(attachment);
      EXPECT_EQ(remote.syscall(SYS_getpid), child.pid);
      EXPECT_EQ(remote.syscall(SYS_gettid), child.pid);
      long addr = remote.syscall(SYS_mmap, 0, 8192, PROT_READ | PROT_WRITE,
                                 MAP_PRIVATE | MAP_ANONYMOUS, static_cast<uint64_t>(-1), 0);
      ASSERT_GT(addr, 0);
      const char text[] = "hello from the tracer";
      remote.write_memory(RemoteAddr(addr), text, sizeof text);
      char back[sizeof text] = {};
      remote.read_memory(RemoteAddr(addr), back, sizeof back);
      EXPECT_STREQ(back, text);
      // The child writes our text into its own pipe end; we read it from a fresh pipe given by
      // an injected pipe2 would be complicated: use /proc/PID/fd of an injected memfd instead.
      long memfd = remote.syscall(SYS_memfd_create, static_cast<uint64_t>(addr), 0);
      ASSERT_GE(memfd, 0);
      EXPECT_EQ(remote.syscall(SYS_write, memfd, addr, sizeof text),
                static_cast<long>(sizeof text));
      std::string path = "/proc/" + std::to_string(child.pid) + "/fd/" + std::to_string(memfd);
      int fd = open(path.c_str(), O_RDONLY);
      ASSERT_GE(fd, 0);
      char from_file[sizeof text] = {};
      EXPECT_EQ(pread(fd, from_file, sizeof from_file, 0), static_cast<ssize_t>(sizeof text));
      close(fd);
      EXPECT_STREQ(from_file, text);
      EXPECT_EQ(remote.syscall(SYS_close, memfd), 0);
      EXPECT_EQ(remote.syscall(SYS_munmap, addr, 8192), 0);
      EXPECT_EQ(remote.syscall(SYS_close, 12345), -EBADF);
    }
    user_regs_struct after = attachment.get_regs();
    EXPECT_EQ(before.rip, after.rip);
    EXPECT_EQ(before.rsp, after.rsp);
    EXPECT_EQ(before.orig_rax, after.orig_rax);
  }
  EXPECT_EQ(child.finish(), 0x1235u);
}

TEST(RemoteSyscalls, RunsABatchInOneStop) {
  Child child;
  usleep(20000);
  {
    PtraceAttachment attachment = PtraceAttachment::seize_and_interrupt(child.pid);
    RemoteSyscalls remote(attachment);
    SyscallBatch batch;
    size_t getpid_index = batch.add(SYS_getpid, {});
    BatchArg name = batch.data("batch", 6);
    size_t memfd_index = batch.add(SYS_memfd_create, {name, 0});
    size_t bad_close = batch.add(SYS_close, {99999}, /*stop_on_error=*/false);
    size_t after_bad = batch.add(SYS_getppid, {});
    size_t failing = batch.add(SYS_close, {99998}, /*stop_on_error=*/true);
    size_t never = batch.add(SYS_getpid, {});
    std::vector<uint8_t> block = remote.run_batch(batch);
    EXPECT_EQ(SyscallBatch::result_of(block, getpid_index), child.pid);
    int64_t memfd = SyscallBatch::result_of(block, memfd_index);
    EXPECT_GE(memfd, 0);
    EXPECT_EQ(SyscallBatch::result_of(block, bad_close), -EBADF);
    EXPECT_EQ(SyscallBatch::result_of(block, after_bad), getpid());
    EXPECT_EQ(SyscallBatch::result_of(block, failing), -EBADF);
    EXPECT_EQ(SyscallBatch::result_of(block, never), 0);
    std::string link = "/proc/" + std::to_string(child.pid) + "/fd/" + std::to_string(memfd);
    char target[256] = {};
    ASSERT_GT(readlink(link.c_str(), target, sizeof target - 1), 0);
    EXPECT_EQ(std::string(target), "/memfd:batch (deleted)");
    EXPECT_EQ(remote.syscall(SYS_close, static_cast<uint64_t>(memfd)), 0);
  }
  EXPECT_EQ(child.finish(), 0x1235u);
}

// A pause stops the injected code like the end of the list; run_prepared goes on from the entry
// after it (the restorer pauses so that the coordinator can fill the memory in between).
TEST(RemoteSyscalls, StopsAtAPauseAndGoesOnAfterIt) {
  Child child;
  usleep(20000);
  {
    PtraceAttachment attachment = PtraceAttachment::seize_and_interrupt(child.pid);
    RemoteSyscalls remote(attachment);
    SyscallBatch batch;
    size_t before = batch.add(SYS_getpid, {});
    size_t pause = batch.add_pause();
    size_t after = batch.add(SYS_getppid, {});
    constexpr size_t kArea = 64 << 10;
    RemoteAddr area = remote.scratch(kArea);
    const size_t blob = static_cast<size_t>(cryo_blob_end - cryo_blob_start);
    remote.write_memory(area, cryo_blob_start, blob);
    RemoteAddr block_at = area + (blob + 63) / 64 * 64;
    std::vector<uint8_t> block = batch.layout(block_at);
    remote.write_memory(block_at, block.data(), block.size());
    RemoteAddr stack_top = area + (kArea - 64);

    block = remote.run_prepared(area, kArea, block_at, block.size(), stack_top);
    EXPECT_EQ(SyscallBatch::result_of(block, before), child.pid);
    EXPECT_EQ(SyscallBatch::result_of(block, pause), 0);
    EXPECT_EQ(SyscallBatch::result_of(block, after), 0) << "ran past the pause";

    block = remote.run_prepared(area, kArea, block_at, block.size(), stack_top,
                                block_at + (pause + 1) * sizeof(BatchedSyscall));
    EXPECT_EQ(SyscallBatch::result_of(block, after), getpid());
  }
  EXPECT_EQ(child.finish(), 0x1235u);
}

}  // namespace
}  // namespace cryo::ckpt
