#include <gtest/gtest.h>
#include <signal.h>
#include <unistd.h>

#include <atomic>
#include <chrono>
#include <thread>
#include <vector>

#include "checkpoint/remote_addr.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/shared_once_check.h"
#include "common/signal_names.h"
#include "common/strings.h"
#include "common/subprocess.h"

namespace cryo {
namespace {

TEST(Error, ContextIsPrependedOutermostFirst) {
  try {
    with_context("dumping pid 42",
                 [] { with_context("fd 7", [] { throw_errno("pidfd_getfd", EPERM); }); });
    FAIL() << "no exception";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "dumping pid 42: fd 7: pidfd_getfd: Operation not permitted");
    EXPECT_EQ(e.sys_errno(), EPERM);
  }
}

TEST(Fs, AtomicWriteReplacesContentAndLeavesNoTemporaryFile) {
  char dir[] = "/tmp/cryo-unit-XXXXXX";
  ASSERT_NE(mkdtemp(dir), nullptr);
  std::string path = std::string(dir) + "/state.json";
  fs::write_file_atomic(path, "one");
  fs::write_file_atomic(path, "two");
  EXPECT_EQ(fs::read_file(path), "two");
  int entries = 0;
  for ([[maybe_unused]] auto& e : std::filesystem::directory_iterator(dir)) ++entries;
  EXPECT_EQ(entries, 1);
  EXPECT_FALSE(fs::read_file_if_exists(std::string(dir) + "/missing").has_value());
  EXPECT_THROW(fs::read_file(std::string(dir) + "/missing"), Error);
  fs::remove_all(dir);
}

TEST(Strings, SplitTrimJoinRandomHex) {
  EXPECT_EQ(split("a:b::c", ':'), (std::vector<std::string>{"a", "b", "", "c"}));
  EXPECT_EQ(trim("  x y \n"), "x y");
  EXPECT_EQ(join({"a", "b"}, ", "), "a, b");
  std::string id = random_hex(32);
  EXPECT_EQ(id.size(), 64u);
  EXPECT_NE(id, random_hex(32));
}

TEST(Subprocess, CapturesOutputAndExitCode) {
  ProcessResult r = run_process({"sh", "-c", "echo hi; exit 3"});
  EXPECT_EQ(r.exit_code, 3);
  EXPECT_EQ(r.output, "hi\n");
  EXPECT_THROW(run_process_or_throw({"false"}), Error);
}

TEST(RemoteAddr, ArithmeticAndFormatting) {
  ckpt::RemoteAddr a(0x1000);
  EXPECT_EQ((a + 0x10).value(), 0x1010u);
  EXPECT_EQ((a + 0x10) - a, 0x10u);
  EXPECT_EQ(a.hex(), "0x1000");
  EXPECT_LT(a, a + 1);
}

TEST(SignalNames, ByNameAndNumber) {
  EXPECT_EQ(signal_number("TERM"), SIGTERM);
  EXPECT_EQ(signal_number("sigint"), SIGINT);
  EXPECT_EQ(signal_number("SIGHUP"), SIGHUP);
  EXPECT_EQ(signal_number("9"), SIGKILL);
  EXPECT_EQ(signal_number("NOPE"), 0);
  EXPECT_EQ(signal_number("0"), 0);
  EXPECT_EQ(signal_number("9x"), 0);
  EXPECT_EQ(signal_number(""), 0);
  EXPECT_EQ(signal_name(SIGTERM), "SIGTERM");
  EXPECT_EQ(signal_name(SIGRTMIN + 1).rfind("signal ", 0), 0u);
}

TEST(SharedOnceCheck, RunsOnceAndSharesItsOutcome) {
  int runs = 0;
  SharedOnceCheck ok([&] { ++runs; });
  ok.pass();
  ok.pass();
  EXPECT_EQ(runs, 1);

  int failed_runs = 0;
  SharedOnceCheck failing([&] {
    ++failed_runs;
    throw Error("device mapping at 0x1000");
  });
  for (int i = 0; i < 3; ++i) {
    try {
      failing.pass();
      FAIL() << "no exception on call " << i;
    } catch (const Error& e) {
      EXPECT_STREQ(e.what(), "device mapping at 0x1000");
    }
  }
  EXPECT_EQ(failed_runs, 1);
}

TEST(SharedOnceCheck, ThreadsArrivingMeanwhileWaitForTheFirst) {
  std::atomic<int> runs{0};
  std::atomic<bool> release{false};
  std::atomic<int> passed{0};
  SharedOnceCheck slow([&] {
    ++runs;
    while (!release) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  });
  std::vector<std::thread> threads;
  for (int i = 0; i < 4; ++i)
    threads.emplace_back([&] {
      slow.pass();
      ++passed;
    });
  // No thread gets past pass() while the check runs.
  while (runs == 0) std::this_thread::sleep_for(std::chrono::milliseconds(1));
  std::this_thread::sleep_for(std::chrono::milliseconds(20));
  EXPECT_EQ(passed, 0);
  release = true;
  for (std::thread& t : threads) t.join();
  EXPECT_EQ(passed, 4);
  EXPECT_EQ(runs, 1);
}

}  // namespace
}  // namespace cryo
