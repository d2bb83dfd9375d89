// The helper of FilesWrittenOnDeath writes its files when the process that made it dies without
// saying it is done, and only then.
#include "common/files_written_on_death.h"

#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>
#include <thread>

#include "common/fs.h"
#include "image_test_util.h"

namespace cryo {
namespace {

class FilesWrittenOnDeathTest : public ::testing::Test {
 protected:
  void SetUp() override {
    // Existing, empty files: the helper opens them for writing (as it does a cgroup's files); it
    // neither creates nor truncates them.
    for (const char* name : {"a", "b"}) fs::write_file(dir_ / name, "");
  }

  // Runs `body` in a child process; returns its wait status.
  template <typename Body>
  int in_child(Body body) {
    pid_t pid = ::fork();
    if (pid == 0) {
      body();
      std::_Exit(0);
    }
    int status = 0;
    ::waitpid(pid, &status, 0);
    return status;
  }

  // The file's content once it is not empty any more, or "" after 5 s.
  std::string await_change(const std::string& path) {
    for (int i = 0; i < 500; ++i) {
      std::string text = fs::read_file(path);
      if (!text.empty()) return text;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    return "";
  }

  cryo::testing::TempDir dir_;
};

TEST_F(FilesWrittenOnDeathTest, WritesWhenTheProcessIsKilled) {
  int status = in_child([&] {
    FilesWrittenOnDeath guard({{dir_ / "a", "THAWED"}, {dir_ / "missing", "x"}, {dir_ / "b", "0"}});
    ::kill(::getpid(), SIGKILL);
  });
  ASSERT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  // The helper outlives the killed process (reparented); it writes what exists, in order.
  EXPECT_EQ(await_change(dir_ / "b"), "0");
  EXPECT_EQ(fs::read_file(dir_ / "a"), "THAWED");
  EXPECT_FALSE(fs::exists(dir_ / "missing"));
}

TEST_F(FilesWrittenOnDeathTest, WritesNothingWhenDone) {
  int status = in_child([&] {
    pid_t helper;
    {
      FilesWrittenOnDeath guard({{dir_ / "a", "THAWED"}});
      helper = guard.helper_pid();
    }
    // Reaped by the destructor: no such child any more.
    std::_Exit(::kill(helper, 0) < 0 && errno == ESRCH ? 0 : 3);
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  EXPECT_EQ(fs::read_file(dir_ / "a"), "");
}

TEST_F(FilesWrittenOnDeathTest, HelperInItsOwnSessionWritesWhenTheProcessExitsWithoutDone) {
  int status = in_child([&] {
    FilesWrittenOnDeath guard({{dir_ / "a", "THAWED"}});
    // A session of its own (a terminal's Ctrl-C or hangup is not for it); give it a moment to
    // call setsid().
    for (int i = 0; i < 500 && ::getsid(guard.helper_pid()) != guard.helper_pid(); ++i)
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    std::_Exit(::getsid(guard.helper_pid()) == guard.helper_pid() ? 0 : 4);
  });
  ASSERT_TRUE(WIFEXITED(status));
  EXPECT_EQ(WEXITSTATUS(status), 0);
  // The process ended (_exit) without the "done" byte: the helper wrote.
  EXPECT_EQ(await_change(dir_ / "a"), "THAWED");
}

}  // namespace
}  // namespace cryo
