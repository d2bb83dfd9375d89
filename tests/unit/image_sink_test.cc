// Image sinks: the directory sink writes exactly the documented files (nothing partial on
// failure), the in-memory sink enforces the sink contract, and a whole dump through the
// in-memory sink gives the same bytes as the same dump into a directory.
#include "checkpoint/image/image_sink.h"

#include <fcntl.h>
#include <sched.h>
#include <signal.h>
#include <sys/uio.h>
#include <sys/wait.h>
#include <unistd.h>

#include <gtest/gtest.h>
#include <filesystem>
#include <map>
#include <string>
#include <vector>

#include "checkpoint/checkpoint.h"
#include "checkpoint/image/image_file.h"
#include "common/error.h"
#include "common/fs.h"

namespace cryo::ckpt {
namespace {

class ImageSinkTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cryo-sink-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
  }
  void TearDown() override { fs::remove_all(dir_); }

  std::map<std::string, std::string> directory_files(const std::string& dir) {
    std::map<std::string, std::string> files;
    for (const auto& entry : std::filesystem::directory_iterator(dir))
      files[entry.path().filename()] = fs::read_file(entry.path());
    return files;
  }

  std::string dir_;
};

std::string pattern(size_t size, char seed) {
  std::string s(size, '\0');
  for (size_t i = 0; i < size; ++i) s[i] = static_cast<char>(seed + i * 7 + (i >> 12));
  return s;
}

TEST_F(ImageSinkTest, DirectorySinkWritesExactFiles) {
  DirectorySink sink(dir_ + "/images");  // created by the sink
  std::string small = pattern(1000, 'a');
  std::string large = pattern((3 << 20) + 4096, 'b');
  {
    auto out = sink.create("small.img", small.size());
    out->write(small.data(), 600);
    out->write(small.data() + 600, 400);
    out->commit();
  }
  {
    auto out = sink.create("large.img", large.size());
    for (size_t at = 0; at < large.size(); at += 1 << 20)
      out->write(large.data() + at, std::min<size_t>(1 << 20, large.size() - at));
    out->commit();
  }
  sink.finish();
  auto files = directory_files(dir_ + "/images");
  ASSERT_EQ(files.size(), 2u);
  EXPECT_EQ(files["small.img"], small);
  EXPECT_EQ(files["large.img"], large);
}

TEST_F(ImageSinkTest, DirectorySinkRefusesWrongSizesAndAbortsCleanly) {
  DirectorySink sink(dir_);
  {
    auto out = sink.create("short.img", 100);
    out->write("0123456789", 10);
    EXPECT_THROW(out->commit(), Error);  // 90 bytes missing
  }
  {
    auto out = sink.create("long.img", 4);
    EXPECT_THROW(out->write("0123456789", 10), Error);
  }
  EXPECT_THROW(sink.create("../escape.img", 1), Error);
  // Every output above was aborted: nothing is left, not even a temporary file.
  EXPECT_TRUE(std::filesystem::is_empty(dir_));
}

TEST_F(ImageSinkTest, RawImageWriterThroughMemorySinkMatchesDirectory) {
  std::string payload = pattern(3 << 20, 'c');
  auto write_into = [&](ImageSink& sink) {
    RawImageWriter writer(sink, "pages-7.img", payload.size());
    writer.append(payload.data(), 5000);
    writer.append(payload.data() + 5000, payload.size() - 5000);
    writer.finish();
    write_json_image(sink, "core-7.img", json{{"pid", 7}});
    sink.finish();
  };
  DirectorySink directory(dir_);
  write_into(directory);
  MemorySink memory;
  write_into(memory);
  EXPECT_TRUE(memory.finished());
  EXPECT_EQ(memory.images(), directory_files(dir_));
  RawImageReader reader(dir_, "pages-7.img");
  reader.verify_checksum();
  EXPECT_EQ(reader.payload_size(), payload.size());
}

TEST_F(ImageSinkTest, RawImageWriterRefusesAPayloadOfAnotherSize) {
  MemorySink sink;
  {
    RawImageWriter writer(sink, "pipe-1.img", 10);
    EXPECT_THROW(writer.append("0123456789ab", 12), Error);
    writer.append("01234", 5);
    EXPECT_THROW(writer.finish(), Error);
  }
  EXPECT_TRUE(sink.images().empty());
}

TEST_F(ImageSinkTest, MemorySinkEnforcesOneOpenOutputAndFinishLast) {
  MemorySink sink;
  auto first = sink.create("a.img", 1);
  EXPECT_THROW(sink.create("b.img", 1), Error);
  EXPECT_THROW(sink.finish(), Error);
  first->write("x", 1);
  first->commit();
  first.reset();
  EXPECT_THROW(sink.create("a.img", 1), Error);  // written twice
  sink.finish();
  EXPECT_THROW(sink.create("c.img", 1), Error);
  EXPECT_EQ(sink.images().at("a.img"), "x");
}

TEST_F(ImageSinkTest, SinksWithParallelOutputsTakeOutputsSizedAtCommit) {
  MemorySink streaming;
  EXPECT_FALSE(streaming.parallel_outputs());
  EXPECT_THROW(streaming.create_unsized("pages-1.img"), Error);
  EXPECT_THROW(RawImageWriter(streaming, "pages-1.img"), Error);

  MemorySink parallel(/*parallel_outputs=*/true);
  EXPECT_TRUE(parallel.parallel_outputs());
  auto first = parallel.create_unsized("a.img");
  auto second = parallel.create("b.img", 2);  // two outputs open at once
  first->write("hello", 5);
  first->overwrite(0, "J", 1);
  EXPECT_THROW(first->overwrite(4, "xy", 2), Error);  // past what was written
  EXPECT_THROW(second->overwrite(0, "z", 1), Error);  // a sized output is never rewritten
  second->write("ok", 2);
  EXPECT_THROW(parallel.finish(), Error);
  first->commit();
  second->commit();
  first.reset();
  second.reset();
  parallel.finish();
  EXPECT_EQ(parallel.images().at("a.img"), "Jello");
  EXPECT_EQ(parallel.images().at("b.img"), "ok");
}

TEST_F(ImageSinkTest, RawImageSizedAtFinishIsAValidImageInBothSinks) {
  std::string payload = pattern(5 << 20, 'p');
  auto write_into = [&](ImageSink& sink) {
    RawImageWriter writer(sink, "pages-9.1.img");
    // Pieces as the page dump writes them: the pages of a batch that are not zero.
    std::vector<iovec> pieces = {
        {payload.data(), 4096},
        {payload.data() + 4096, 3 << 20},
        {payload.data() + 4096 + (3 << 20), payload.size() - 4096 - (3 << 20)}};
    writer.append_vectored(pieces.data(), pieces.size());
    EXPECT_EQ(writer.payload_size(), payload.size());
    writer.finish();
    sink.finish();
  };
  DirectorySink directory(dir_);
  ASSERT_TRUE(directory.parallel_outputs());
  write_into(directory);
  MemorySink memory(/*parallel_outputs=*/true);
  write_into(memory);
  EXPECT_EQ(memory.images(), directory_files(dir_));
  RawImageReader reader(dir_, "pages-9.1.img");
  EXPECT_EQ(reader.payload_size(), payload.size());
  reader.verify_checksum();
  std::string back(payload.size(), '\0');
  reader.read_at(0, back.data(), back.size());
  EXPECT_TRUE(back == payload);
  // An unfinished one leaves nothing behind.
  {
    DirectorySink again(dir_ + "/again");
    RawImageWriter writer(again, "pages-9.img");
    writer.append(payload.data(), 4096);
  }
  EXPECT_TRUE(std::filesystem::is_empty(dir_ + "/again"));
}

// A quiet process: its own session, pinned to one CPU (rseq's cpu_id stays put), no fds but
// /dev/null, blocked in pause().
pid_t start_quiet_process(size_t touched_bytes) {
  pid_t child = fork();
  if (child == 0) {
    cpu_set_t cpus;
    CPU_ZERO(&cpus);
    CPU_SET(0, &cpus);
    sched_setaffinity(0, sizeof cpus, &cpus);
    setsid();
    int null = open("/dev/null", O_RDWR);
    for (int fd = 0; fd < 3; ++fd) dup2(null, fd);
    close_range(3, ~0u, 0);
    auto* memory = static_cast<char*>(malloc(touched_bytes));
    for (size_t i = 0; i < touched_bytes; ++i) memory[i] = static_cast<char>(i * 31 + (i >> 12));
    for (size_t i = 0; i < touched_bytes; i += 3 * 4096) memory[i + 100] = 0;
    kill(getpid(), SIGSTOP);
    for (;;) pause();
  }
  int status = 0;
  waitpid(child, &status, WUNTRACED);
  kill(child, SIGCONT);
  // Blocked in pause() (syscall 34) for good: both dumps then see the same registers.
  std::string syscall_file = "/proc/" + std::to_string(child) + "/syscall";
  while (fs::read_file(syscall_file).rfind("34 ", 0) != 0) usleep(1000);
  return child;
}

TEST_F(ImageSinkTest, DumpThroughMemorySinkGivesTheDirectoryDumpsBytes) {
  pid_t child = start_quiet_process(8 << 20);
  DumpOptions options;
  options.leave_running = true;
  std::string images = dir_ + "/images";
  try {
    dump(child, images, options);
    // With parallel outputs, as the directory: the same page images (no zero pages).
    MemorySink memory(/*parallel_outputs=*/true);
    options.sink = &memory;
    dump(child, dir_ + "/unused", options);
    EXPECT_TRUE(memory.finished());
    EXPECT_FALSE(fs::exists(dir_ + "/unused"));
    auto files = directory_files(images);
    EXPECT_TRUE(files.count("pages-" + std::to_string(child) + ".img"));
    EXPECT_TRUE(files.count("inventory.img"));
    ASSERT_EQ(memory.images().size(), files.size());
    for (const auto& [name, bytes] : files) {
      ASSERT_TRUE(memory.images().count(name)) << name;
      EXPECT_TRUE(memory.images().at(name) == bytes) << name << " differs";
    }
  } catch (...) {
    kill(child, SIGKILL);
    waitpid(child, nullptr, 0);
    throw;
  }
  kill(child, SIGKILL);
  waitpid(child, nullptr, 0);
}

}  // namespace
}  // namespace cryo::ckpt

namespace cryo::ckpt {
namespace {

// Fd tables shared by CLONE_FILES are restored by forking each sharer from the table's owner:
// a tree whose sharers are not the owner's children (here two siblings, the second made with
// CLONE_FILES | CLONE_PARENT by the first) is refused by dump() before anything is written, and
// runs on untraced.
TEST_F(ImageSinkTest, DumpRefusesSharedFdTablesOfSiblingsAndLeavesTheTreeRunning) {
  int ready[2];
  ASSERT_EQ(pipe(ready), 0);
  pid_t root = fork();
  if (root == 0) {
    setsid();
    pid_t first = fork();
    if (first == 0) {
      static char stack[64 * 1024];
      pid_t sibling = clone(
          [](void*) -> int {
            for (;;) pause();
          },
          stack + sizeof stack, CLONE_FILES | CLONE_PARENT, nullptr);
      pid_t pids[2] = {getpid(), sibling};
      if (write(ready[1], pids, sizeof pids) != sizeof pids) _exit(1);
      for (;;) pause();
    }
    for (;;) pause();
  }
  close(ready[1]);
  pid_t sharers[2] = {-1, -1};
  ASSERT_EQ(read(ready[0], sharers, sizeof sharers), static_cast<ssize_t>(sizeof sharers));
  close(ready[0]);
  MemorySink sink;
  DumpOptions options;
  options.sink = &sink;
  options.shell_job = true;
  try {
    dump(root, dir_, options);
    ADD_FAILURE() << "a tree sharing an fd table between siblings was dumped";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not supported yet: pid " + std::to_string(sharers[1]) +
                                         " shares the fd table (CLONE_FILES) of pid " +
                                         std::to_string(sharers[0]) + ", which is not its parent"),
              std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(sink.images().empty());
  EXPECT_FALSE(sink.finished());
  for (pid_t p : {root, sharers[0], sharers[1]}) {
    EXPECT_EQ(kill(p, 0), 0) << p;
    std::string status = fs::read_file("/proc/" + std::to_string(p) + "/status");
    EXPECT_NE(status.find("TracerPid:\t0"), std::string::npos) << p;
  }
  for (pid_t p : {sharers[1], sharers[0], root}) kill(p, SIGKILL);
  waitpid(root, nullptr, 0);
}

}  // namespace
}  // namespace cryo::ckpt
