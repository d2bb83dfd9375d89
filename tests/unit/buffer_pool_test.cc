// BufferPool: pool files are shared out one command at a time, given back zeroed, and when none is
// free (or the pool is off) the memory is fresh; either way it is 2 MiB-aligned and not inherited.
#include "common/buffer_pool.h"

#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "image_test_util.h"

namespace cryo {
namespace {

using testing::TempDir;

bool aligned_to_huge_page(const char* p) {
  return reinterpret_cast<uintptr_t>(p) % BufferPool::kHugePage == 0;
}

std::string file_content(const std::string& path, size_t size) {
  std::string bytes(size, '\xff');
  int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "unreadable";
  ssize_t n = ::pread(fd, bytes.data(), size, 0);
  ::close(fd);
  if (n != static_cast<ssize_t>(size)) return "short";
  return bytes;
}

TEST(BufferPool, EachTakerGetsAFileOfItsOwnRoundedToHugePages) {
  TempDir dir;
  BufferPool pool(dir.path());
  PooledMemory first = pool.take(3 << 20);
  PooledMemory second = pool.take(100);
  ASSERT_TRUE(first.pooled());
  ASSERT_TRUE(second.pooled());
  EXPECT_EQ(first.size(), size_t{4} << 20);
  EXPECT_EQ(second.size(), BufferPool::kHugePage);
  EXPECT_TRUE(aligned_to_huge_page(first.data()));
  EXPECT_TRUE(aligned_to_huge_page(second.data()));
  // Both writable, and distinct: the second's writes do not show in the first.
  std::memset(first.data(), 'a', first.size());
  std::memset(second.data(), 'b', second.size());
  EXPECT_EQ(first.data()[first.size() - 1], 'a');
  // The memory is the file's: what is written is in buffer-0.
  EXPECT_EQ(file_content(dir / "buffer-0", 4), "aaaa");
  EXPECT_EQ(file_content(dir / "buffer-1", 4), "bbbb");
}

TEST(BufferPool, GivenBackZeroedAndTakenAgain) {
  TempDir dir;
  BufferPool pool(dir.path());
  {
    PooledMemory memory = pool.take(1 << 20);
    ASSERT_TRUE(memory.pooled());
    std::memset(memory.data(), 's', memory.size());
  }
  // No data of the last command stays in the pool.
  EXPECT_EQ(file_content(dir / "buffer-0", BufferPool::kHugePage),
            std::string(BufferPool::kHugePage, '\0'));
  PooledMemory again = pool.take(1 << 20);
  ASSERT_TRUE(again.pooled());
  struct stat st {};
  EXPECT_NE(::stat((dir / "buffer-1").c_str(), &st), 0) << "a second file for a single taker";
  // A larger request later grows the file.
  again = PooledMemory();
  PooledMemory larger = pool.take(6 << 20);
  ASSERT_TRUE(larger.pooled());
  ASSERT_EQ(::stat((dir / "buffer-0").c_str(), &st), 0);
  EXPECT_EQ(st.st_size, 6 << 20);
}

TEST(BufferPool, FreshMemoryWhenEveryFileIsTakenOrTheRequestTooLarge) {
  TempDir dir;
  BufferPool pool(dir.path());
  std::vector<PooledMemory> held;
  for (int i = 0; i < BufferPool::kFiles; ++i) {
    held.push_back(pool.take(4096));
    ASSERT_TRUE(held.back().pooled()) << i;
  }
  PooledMemory extra = pool.take(4096);
  EXPECT_FALSE(extra.pooled());
  ASSERT_NE(extra.data(), nullptr);
  EXPECT_TRUE(aligned_to_huge_page(extra.data()));
  std::memset(extra.data(), 1, extra.size());

  held.pop_back();  // one file free again
  EXPECT_TRUE(pool.take(4096).pooled());
  EXPECT_FALSE(pool.take(BufferPool::kMaxFileSize + 1).pooled());
}

TEST(BufferPool, AnotherProcessDoesNotGetAFileInUse) {
  TempDir dir;
  BufferPool pool(dir.path());
  PooledMemory ours = pool.take(4096);
  ASSERT_TRUE(ours.pooled());
  pid_t child = ::fork();
  if (child == 0) {
    // Inherited mappings would be copy-on-write for the parent: none is (MADV_DONTFORK). The
    // child's own take finds buffer-0 locked by the parent and gets buffer-1.
    bool inherited = ::msync(ours.data(), 4096, MS_ASYNC) == 0 || errno != ENOMEM;
    PooledMemory theirs = pool.take(4096);
    struct stat st {};
    bool second_file = theirs.pooled() && ::stat((dir / "buffer-1").c_str(), &st) == 0;
    _exit(inherited ? 2 : second_file ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
}

// A process forked while a file was taken (the restored processes of an import, helpers) keeps
// the descriptor but must not keep the file from the next command.
TEST(BufferPool, AForkedChildDoesNotHoldTheFile) {
  TempDir dir;
  BufferPool pool(dir.path());
  int hold[2];
  ASSERT_EQ(::pipe(hold), 0);
  PooledMemory ours = pool.take(4096);
  ASSERT_TRUE(ours.pooled());
  pid_t sleeper = ::fork();
  if (sleeper == 0) {
    ::close(hold[1]);
    char c;
    while (::read(hold[0], &c, 1) < 0) {
    }
    _exit(0);
  }
  ::close(hold[0]);
  ours = PooledMemory();  // given back while the child lives
  pid_t next_command = ::fork();
  if (next_command == 0) {
    PooledMemory theirs = pool.take(4096);
    struct stat st {};
    bool first_file = theirs.pooled() && ::stat((dir / "buffer-1").c_str(), &st) != 0;
    _exit(first_file ? 0 : 1);
  }
  int status = 0;
  ASSERT_EQ(::waitpid(next_command, &status, 0), next_command);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << status;
  ::close(hold[1]);
  ASSERT_EQ(::waitpid(sleeper, &status, 0), sleeper);
}

TEST(BufferPool, WithoutADirectoryEveryTakeIsFresh) {
  BufferPool off("");
  PooledMemory memory = off.take(5 << 20);
  EXPECT_FALSE(memory.pooled());
  EXPECT_EQ(memory.size(), size_t{6} << 20);
  std::memset(memory.data(), 7, memory.size());
}

}  // namespace
}  // namespace cryo
