// Event descriptors and file locks through a real dump and restore: a forked child sets up its
// fds, FileDumper takes them with pidfd_getfd, the child is killed, a FilePool is made from the
// images and a new child installs the fds and checks them from the inside (or stays alive so
// that the test can check from the outside, for locks).
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/kcmp.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/mman.h>
#include <sys/mount.h>
#include <sys/signalfd.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/timerfd.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <map>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint/file_locks.h"
#include "checkpoint/files.h"
#include "checkpoint/image/image_file.h"
#include "ckpt_fd_test_util.h"
#include "common/error.h"
#include "common/fs.h"

namespace cryo::ckpt {
namespace {

using testutil::Checks;
using testutil::keep_only;
using testutil::place;
using testutil::read_all;
using testutil::RestoredProcess;
using testutil::signal_ready;
using testutil::TreeProcess;
using testutil::write_string;

std::string fdinfo_of(pid_t pid, int fd) {
  return fs::read_file("/proc/" + std::to_string(pid) + "/fdinfo/" + std::to_string(fd));
}

bool contains(const std::string& text, const std::string& part) {
  return text.find(part) != std::string::npos;
}

uint64_t monotonic_ns() {
  struct timespec ts;
  ::clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

uint64_t to_ns(const struct timespec& ts) {
  return static_cast<uint64_t>(ts.tv_sec) * 1000000000ull + static_cast<uint64_t>(ts.tv_nsec);
}

using EventsTest = testutil::FdImagesTest;

TEST_F(EventsTest, EventFdCounterAndFlags) {
  const uint64_t big = uint64_t{1} << 40;
  TreeProcess tree([&](int ready_fd) {
    int sem = ::eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK);
    uint64_t five = 5;
    if (::write(sem, &five, sizeof five) != sizeof five) _exit(80);
    place(sem, 10);
    int counter = ::eventfd(0, EFD_CLOEXEC);
    if (::write(counter, &big, sizeof big) != sizeof big) _exit(81);
    place(counter, 11);
    keep_only({10, 11, 200});
    signal_ready(ready_fd);
  });
  dump(tree);
  pid_t dumped = tree.pid();
  tree.kill();

  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    std::string info = fdinfo_of(::getpid(), 10);
    c.expect(contains(info, "eventfd-semaphore: 1"), "fd 10 semaphore: " + info);
    c.expect(::fcntl(10, F_GETFL) & O_NONBLOCK, "fd 10 O_NONBLOCK");
    c.expect(!(::fcntl(10, F_GETFD) & FD_CLOEXEC), "fd 10 not close-on-exec");
    uint64_t value = 0;
    c.expect(::read(10, &value, sizeof value) == sizeof value && value == 1,
             "semaphore read gives 1");
    c.expect(contains(fdinfo_of(::getpid(), 10), "eventfd-count:                4"),
             "semaphore counter left at 4: " + fdinfo_of(::getpid(), 10));
    c.expect(!(::fcntl(11, F_GETFL) & O_NONBLOCK), "fd 11 blocking");
    c.expect(::fcntl(11, F_GETFD) & FD_CLOEXEC, "fd 11 close-on-exec");
    value = 0;
    c.expect(::read(11, &value, sizeof value) == sizeof value && value == big,
             "fd 11 counter is 2^40: " + std::to_string(value));
  });
  EXPECT_EQ(restored.failures(), "");
}

TEST_F(EventsTest, ManyEventFdsSharingOneAnonInodeAreDeduplicatedByDescription) {
  // Every eventfd has the same (dev, ino): descriptions are told apart by kcmp alone.
  TreeProcess tree([&](int ready_fd) {
    std::set<int> keep{200};
    for (int i = 0; i < 50; ++i) {
      place(::eventfd(static_cast<unsigned>(i + 1), 0), 10 + i);
      keep.insert(10 + i);
    }
    for (int i = 0; i < 10; ++i) {
      ::dup2(10 + i * 5, 70 + i);
      keep.insert(70 + i);
    }
    keep_only(keep);
    signal_ready(ready_fd);
  });
  dump(tree);
  pid_t dumped = tree.pid();
  tree.kill();
  json files = read_json_image(images_, "files.img");
  size_t eventfds = 0;
  for (const json& d : files.at("descriptions")) eventfds += d.at("kind") == "eventfd";
  EXPECT_EQ(eventfds, 50u);

  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    for (int i = 0; i < 10; ++i)
      c.expect(::syscall(SYS_kcmp, ::getpid(), ::getpid(), KCMP_FILE, 10 + i * 5, 70 + i) == 0,
               "fd " + std::to_string(70 + i) + " shares fd " + std::to_string(10 + i * 5));
    c.expect(::syscall(SYS_kcmp, ::getpid(), ::getpid(), KCMP_FILE, 10, 11) != 0,
             "fds 10 and 11 are two eventfds");
    for (int i = 0; i < 50; ++i) {
      uint64_t value = 0;
      c.expect(::read(10 + i, &value, sizeof value) == sizeof value &&
                   value == static_cast<uint64_t>(i + 1),
               "eventfd " + std::to_string(10 + i) + " counter");
    }
  });
  EXPECT_EQ(restored.failures(), "");
}

TEST_F(EventsTest, EpollRegistrationsKeepEventsDataAndNumbers) {
  TreeProcess tree([&](int ready_fd) {
    int efd = ::eventfd(1, 0);
    place(efd, 10);
    int p[2];
    if (::pipe(p) < 0) _exit(80);
    place(p[0], 11);
    place(p[1], 12);
    write_string(12, "x");
    int ep = ::epoll_create1(0);
    place(ep, 13);
    struct epoll_event ev {};
    ev.events = EPOLLIN | EPOLLET;
    ev.data.u64 = 0xdead0010;
    if (::epoll_ctl(13, EPOLL_CTL_ADD, 10, &ev) < 0) _exit(81);
    ev.events = EPOLLIN;
    ev.data.u64 = 0xbeef0011;
    if (::epoll_ctl(13, EPOLL_CTL_ADD, 11, &ev) < 0) _exit(82);
    ev.events = EPOLLOUT | EPOLLONESHOT;
    ev.data.u64 = 77;
    if (::epoll_ctl(13, EPOLL_CTL_ADD, 12, &ev) < 0) _exit(83);
    keep_only({10, 11, 12, 13, 200});
    signal_ready(ready_fd);
  });
  dump(tree);
  pid_t dumped = tree.pid();
  tree.kill();

  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    auto wait_events = [](std::map<uint64_t, uint32_t>* out) {
      struct epoll_event events[8];
      int n = ::epoll_wait(13, events, 8, 0);
      for (int i = 0; i < n; ++i) (*out)[events[i].data.u64] = events[i].events;
      return n;
    };
    std::map<uint64_t, uint32_t> first;
    c.expect(wait_events(&first) == 3, "three registrations ready");
    c.expect(first[0xdead0010] == EPOLLIN, "eventfd reported with its data");
    c.expect(first[0xbeef0011] == EPOLLIN, "pipe read end reported with its data");
    c.expect(first[77] == EPOLLOUT, "pipe write end reported with its data");
    // Edge-triggered and one-shot registrations do not report again; level-triggered does.
    std::map<uint64_t, uint32_t> second;
    c.expect(wait_events(&second) == 1 && second.count(0xbeef0011), "only the level one again");
    // The registrations are keyed by the same fd numbers: MOD works, ADD finds them.
    struct epoll_event ev {};
    ev.events = EPOLLOUT;
    ev.data.u64 = 78;
    c.expect(::epoll_ctl(13, EPOLL_CTL_MOD, 12, &ev) == 0, "EPOLL_CTL_MOD of fd 12");
    c.expect(::epoll_ctl(13, EPOLL_CTL_ADD, 10, &ev) < 0 && errno == EEXIST,
             "fd 10 is registered already");
    std::map<uint64_t, uint32_t> third;
    wait_events(&third);
    c.expect(third.count(78) && third[78] == EPOLLOUT, "fd 12 re-armed with its new data");
    std::string info = fdinfo_of(::getpid(), 13);
    c.expect(contains(info, "tfd:       10 events: 80000019 data:         dead0010"),
             "fdinfo of fd 13: " + info);
  });
  EXPECT_EQ(restored.failures(), "");
}

TEST_F(EventsTest, EpollSetSharedByTwoProcessesIsRegisteredOnce) {
  // The child's pid, written by the tree process (a fork of a fork of the test).
  testutil::SharedPid child_pid;
  TreeProcess tree([&](int ready_fd) {
    place(::eventfd(3, 0), 10);
    place(::epoll_create1(0), 13);
    struct epoll_event ev {};
    ev.events = EPOLLIN;
    ev.data.u64 = 4242;
    if (::epoll_ctl(13, EPOLL_CTL_ADD, 10, &ev) < 0) _exit(81);
    keep_only({10, 13, 200});
    pid_t child = ::fork();
    if (child == 0) {
      ::close(200);
      for (;;) ::pause();
    }
    child_pid.set(child);
    signal_ready(ready_fd);
  });
  ASSERT_GT(child_pid.get(), 0);
  pid_t child = child_pid.get();
  int child_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, child, 0));
  ASSERT_GE(child_pidfd, 0);
  {
    FileDumper dumper(images_, {});
    dumper.dump_process(tree.pid(), tree.pidfd());
    dumper.dump_process(child, child_pidfd);
    dumper.finish();
  }
  ::kill(child, SIGKILL);
  ::close(child_pidfd);
  pid_t dumped = tree.pid();
  tree.kill();  // the killed child was the tree process's: init reaps it

  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  // The parent registers (it dumped the set); the child then sees the registration.
  RestoredProcess parent(*pool, dumped, nullptr);
  RestoredProcess restored_child(*pool, child, [&](Checks& c) {
    struct epoll_event got[4];
    int n = ::epoll_wait(13, got, 4, 0);
    c.expect(n == 1 && got[0].data.u64 == 4242 && got[0].events == EPOLLIN,
             "the shared set reports the eventfd once (" + std::to_string(n) + " events)");
    struct epoll_event ev {};
    ev.events = EPOLLIN;
    c.expect(::epoll_ctl(13, EPOLL_CTL_ADD, 10, &ev) < 0 && errno == EEXIST,
             "fd 10 is registered once in the shared set");
  });
  EXPECT_EQ(restored_child.failures(), "");
}

TEST_F(EventsTest, EpollRegistrationWhoseNumberWasReusedIsAddedThroughTheOtherFd) {
  TreeProcess tree([&](int ready_fd) {
    place(::eventfd(2, 0), 10);
    place(::epoll_create1(0), 13);
    struct epoll_event ev {};
    ev.events = EPOLLIN;
    ev.data.u64 = 1010;
    if (::epoll_ctl(13, EPOLL_CTL_ADD, 10, &ev) < 0) _exit(81);
    // The eventfd moves to 15 (still registered as (file, 10)); 10 becomes a pipe end.
    place(10, 15);
    int p[2];
    if (::pipe(p) < 0) _exit(82);
    place(p[1], 10);
    ::close(p[0]);
    keep_only({10, 13, 15, 200});
    signal_ready(ready_fd);
  });
  dump(tree);
  pid_t dumped = tree.pid();
  tree.kill();

  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    c.expect(fs::read_link("/proc/self/fd/10").rfind("pipe:", 0) == 0, "fd 10 is the pipe again");
    c.expect(fs::read_link("/proc/self/fd/15") == "anon_inode:[eventfd]", "fd 15 is the eventfd");
    struct epoll_event got[4];
    int n = ::epoll_wait(13, got, 4, 0);
    c.expect(n == 1 && got[0].data.u64 == 1010, "the eventfd reports with its data");
    struct epoll_event ev {};
    ev.events = EPOLLIN;
    // Registered as (eventfd, 10): (eventfd, 15) is a new registration, (pipe, 10) is none.
    c.expect(::epoll_ctl(13, EPOLL_CTL_ADD, 15, &ev) == 0, "ADD of fd 15 is a new registration");
    c.expect(::epoll_ctl(13, EPOLL_CTL_DEL, 10, nullptr) < 0 && errno == ENOENT,
             "the pipe at fd 10 is not registered");
    std::string info = fdinfo_of(::getpid(), 13);
    c.expect(contains(info, "tfd:       10 events:       19 data:              3f2"),
             "registered under number 10: " + info);
  });
  EXPECT_EQ(restored.failures(), "");
}

TEST_F(EventsTest, EpollRegistrationOfAFileTheProcessNoLongerHoldsFailsTheDump) {
  testutil::SharedPid child_pid;
  TreeProcess tree([&](int ready_fd) {
    place(::eventfd(0, 0), 10);
    place(::epoll_create1(0), 13);
    struct epoll_event ev {};
    ev.events = EPOLLIN;
    if (::epoll_ctl(13, EPOLL_CTL_ADD, 10, &ev) < 0) _exit(81);
    keep_only({10, 13, 200});
    pid_t child = ::fork();  // keeps the eventfd (and the registration) alive
    if (child == 0) {
      ::close(200);
      for (;;) ::pause();
    }
    child_pid.set(child);
    ::close(10);
    signal_ready(ready_fd);
  });
  pid_t child = child_pid.get();
  std::string error = dump_error(tree);
  if (child > 0) ::kill(child, SIGKILL);
  EXPECT_TRUE(
      contains(error, "pid " + std::to_string(tree.pid()) + ": fd 13 (anon_inode:[eventpoll])"))
      << error;
  EXPECT_TRUE(contains(error, "epoll registration of fd 10 whose file the process no longer holds"))
      << error;
}

TEST_F(EventsTest, SignalFdMaskAndFlags) {
  TreeProcess tree([&](int ready_fd) {
    sigset_t mask;
    sigemptyset(&mask);
    sigaddset(&mask, SIGUSR1);
    sigaddset(&mask, SIGRTMIN + 2);
    place(::signalfd(-1, &mask, SFD_NONBLOCK), 10);
    keep_only({10, 200});
    signal_ready(ready_fd);
  });
  std::string dumped_mask;
  {
    std::string info = fdinfo_of(tree.pid(), 10);
    dumped_mask = info.substr(info.find("sigmask:"));
  }
  dump(tree);
  pid_t dumped = tree.pid();
  tree.kill();

  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    std::string info = fdinfo_of(::getpid(), 10);
    c.expect(contains(info, dumped_mask), "fdinfo of fd 10: " + info);
    c.expect(::fcntl(10, F_GETFL) & O_NONBLOCK, "fd 10 O_NONBLOCK");
    sigset_t block;
    sigemptyset(&block);
    sigaddset(&block, SIGUSR1);
    sigaddset(&block, SIGUSR2);
    ::sigprocmask(SIG_BLOCK, &block, nullptr);
    ::raise(SIGUSR2);  // not in the mask: not read through the signalfd
    ::raise(SIGUSR1);
    struct signalfd_siginfo si {};
    c.expect(::read(10, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR1,
             "SIGUSR1 read through fd 10");
    c.expect(::read(10, &si, sizeof si) < 0 && errno == EAGAIN, "SIGUSR2 not read");
  });
  EXPECT_EQ(restored.failures(), "");
}

TEST_F(EventsTest, TimerFdRemainingTimeIntervalTicksAndAbsoluteExpiry) {
  const uint64_t second = 1000000000ull;
  const uint64_t start = monotonic_ns();
  struct timespec realtime_now;
  ::clock_gettime(CLOCK_REALTIME, &realtime_now);
  const uint64_t abs_expiry = (static_cast<uint64_t>(realtime_now.tv_sec) + 200) * second;
  TreeProcess tree([&](int ready_fd) {
    int relative = ::timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
    struct itimerspec spec {};
    spec.it_value.tv_sec = 100;
    spec.it_interval.tv_sec = 7;
    spec.it_interval.tv_nsec = 5000;
    if (::timerfd_settime(relative, 0, &spec, nullptr) < 0) _exit(80);
    place(relative, 10);
    // A one-shot timer that expires before the dump, never read: one tick pending.
    int expired = ::timerfd_create(CLOCK_MONOTONIC, 0);
    struct itimerspec soon {};
    soon.it_value.tv_nsec = 1000;
    if (::timerfd_settime(expired, 0, &soon, nullptr) < 0) _exit(81);
    for (;;) {
      struct itimerspec left;
      ::timerfd_gettime(expired, &left);
      if (left.it_value.tv_sec == 0 && left.it_value.tv_nsec == 0) break;
      ::usleep(100);
    }
    place(expired, 11);
    int absolute = ::timerfd_create(CLOCK_REALTIME, 0);
    struct itimerspec at {};
    at.it_value.tv_sec = static_cast<time_t>(abs_expiry / second);
    if (::timerfd_settime(absolute, TFD_TIMER_ABSTIME, &at, nullptr) < 0) _exit(82);
    place(absolute, 12);
    keep_only({10, 11, 12, 200});
    signal_ready(ready_fd);
  });
  dump(tree);
  pid_t dumped = tree.pid();
  tree.kill();

  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    struct itimerspec left {};
    c.expect(::timerfd_gettime(10, &left) == 0, "timerfd_gettime fd 10");
    uint64_t remaining = to_ns(left.it_value);
    uint64_t elapsed = monotonic_ns() - start;
    c.expect(remaining <= 100 * second && remaining + elapsed >= 100 * second,
             "fd 10 remaining " + std::to_string(remaining) + " ns after " +
                 std::to_string(elapsed) + " ns");
    c.expect(left.it_interval.tv_sec == 7 && left.it_interval.tv_nsec == 5000, "fd 10 interval");
    c.expect(::fcntl(10, F_GETFL) & O_NONBLOCK, "fd 10 O_NONBLOCK");
    std::string info = fdinfo_of(::getpid(), 10);
    c.expect(contains(info, "clockid: 1\n"), "fd 10 CLOCK_MONOTONIC: " + info);

    uint64_t ticks = 0;
    c.expect(::read(11, &ticks, sizeof ticks) == sizeof ticks && ticks == 1,
             "fd 11 one tick pending: " + std::to_string(ticks));

    info = fdinfo_of(::getpid(), 12);
    c.expect(contains(info, "settime flags: 01\n"), "fd 12 TFD_TIMER_ABSTIME: " + info);
    c.expect(contains(info, "clockid: 0\n"), "fd 12 CLOCK_REALTIME: " + info);
    c.expect(::timerfd_gettime(12, &left) == 0, "timerfd_gettime fd 12");
    struct timespec now;
    ::clock_gettime(CLOCK_REALTIME, &now);
    uint64_t expiry = to_ns(now) + to_ns(left.it_value);
    uint64_t off = expiry > abs_expiry ? expiry - abs_expiry : abs_expiry - expiry;
    c.expect(off < second,
             "fd 12 expires at its absolute time (off by " + std::to_string(off) + " ns)");
  });
  EXPECT_EQ(restored.failures(), "");
}

TEST_F(EventsTest, InotifyWatchesKeepTheirWdsAndReportEvents) {
  const std::string watched = dir_ + "/watched", removed = dir_ + "/removed",
                    other = dir_ + "/other";
  fs::mkdir_p(watched);
  fs::mkdir_p(removed);
  fs::mkdir_p(other);
  TreeProcess tree([&](int ready_fd) {
    int in = ::inotify_init1(IN_NONBLOCK);
    if (::inotify_add_watch(in, watched.c_str(), IN_CREATE) != 1) _exit(80);
    if (::inotify_add_watch(in, removed.c_str(), IN_CREATE) != 2) _exit(81);
    if (::inotify_add_watch(in, other.c_str(), IN_CREATE | IN_DELETE | IN_ONESHOT) != 3) _exit(82);
    ::inotify_rm_watch(in, 2);
    // Read the IN_IGNORED away: the dumped queue is empty.
    char buf[4096];
    while (::read(in, buf, sizeof buf) > 0) {
    }
    place(in, 10);
    keep_only({10, 200});
    signal_ready(ready_fd);
  });
  dump(tree);
  pid_t dumped = tree.pid();
  tree.kill();

  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    std::string info = fdinfo_of(::getpid(), 10);
    c.expect(contains(info, "inotify wd:1 ") && contains(info, "inotify wd:3 ") &&
                 !contains(info, "inotify wd:2 "),
             "wds 1 and 3: " + info);
    c.expect(contains(info, "wd:3 ") && contains(info, "mask:80000300"),
             "wd 3 keeps IN_ONESHOT: " + info);
    c.expect(::fcntl(10, F_GETFL) & O_NONBLOCK, "fd 10 O_NONBLOCK");
    fs::write_file(other + "/new-file", "x");
    fs::write_file(watched + "/another", "y");
    alignas(struct inotify_event) char buf[4096];
    ssize_t n = ::read(10, buf, sizeof buf);
    std::vector<std::pair<int, std::string>> events;
    for (ssize_t at = 0; at < n;) {
      auto* e = reinterpret_cast<struct inotify_event*>(buf + at);
      events.emplace_back(e->wd, e->len ? e->name : "");
      c.expect(e->mask == IN_CREATE || (e->wd == 3 && e->mask == IN_IGNORED),
               "event mask " + std::to_string(e->mask) + " on wd " + std::to_string(e->wd));
      at += static_cast<ssize_t>(sizeof(struct inotify_event) + e->len);
    }
    c.expect(events.size() >= 2 && events[0] == std::make_pair(3, std::string("new-file")) &&
                 events[events.size() - 1] == std::make_pair(1, std::string("another")),
             "creation events on wd 3 then wd 1 (" + std::to_string(events.size()) + " events)");
  });
  EXPECT_EQ(restored.failures(), "");
}

// Unmounts (lazily) on destruction.
struct ScopedMount {
  std::string target;
  ~ScopedMount() {
    if (!target.empty()) ::umount2(target.c_str(), MNT_DETACH);
  }
};

TEST_F(EventsTest, InotifyWatchOnOverlayfsIsFoundWithoutFileHandles) {
  for (const char* sub : {"/lower/dir", "/upper", "/work", "/merged"}) fs::mkdir_p(dir_ + sub);
  const std::string merged = dir_ + "/merged";
  std::string options =
      "lowerdir=" + dir_ + "/lower,upperdir=" + dir_ + "/upper,workdir=" + dir_ + "/work";
  ScopedMount mount;
  if (::mount("overlay", merged.c_str(), "overlay", 0, options.c_str()) < 0)
    GTEST_SKIP() << "overlayfs mount: " << std::strerror(errno);
  mount.target = merged;
  const std::string watched = merged + "/dir";
  TreeProcess tree([&](int ready_fd) {
    int in = ::inotify_init1(0);
    if (::inotify_add_watch(in, watched.c_str(), IN_CREATE) != 1) _exit(80);
    place(in, 10);
    keep_only({10, 200});
    signal_ready(ready_fd);
  });
  dump(tree);
  pid_t dumped = tree.pid();
  tree.kill();

  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    fs::write_file(watched + "/created", "x");
    alignas(struct inotify_event) char buf[4096];
    ssize_t n = ::read(10, buf, sizeof buf);
    auto* e = reinterpret_cast<struct inotify_event*>(buf);
    c.expect(n >= static_cast<ssize_t>(sizeof *e) && e->wd == 1 && e->mask == IN_CREATE &&
                 std::string(e->name) == "created",
             "creation in the overlay directory reported on wd 1");
  });
  EXPECT_EQ(restored.failures(), "");
}

TEST_F(EventsTest, PidFdOfATreeProcessIsReopenedOnTheRestoredPid) {
  TreeProcess tree([&](int ready_fd) {
    place(static_cast<int>(::syscall(SYS_pidfd_open, ::getpid(), O_NONBLOCK)), 10);
    keep_only({10, 200});
    signal_ready(ready_fd);
  });
  dump(tree);
  pid_t dumped = tree.pid();
  tree.kill();

  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  RestoredProcess restored(
      *pool, dumped,
      [&](Checks& c) {
        c.expect(::getpid() == dumped, "restored with the dumped pid");
        std::string info = fdinfo_of(::getpid(), 10);
        c.expect(contains(info, "Pid:\t" + std::to_string(dumped) + "\n"), "fdinfo: " + info);
        c.expect(::fcntl(10, F_GETFL) & O_NONBLOCK, "fd 10 O_NONBLOCK");
        // pidfd_open makes close-on-exec fds; the dumped one was.
        c.expect(::fcntl(10, F_GETFD) & FD_CLOEXEC, "fd 10 close-on-exec");
        c.expect(fs::read_link("/proc/self/fd/10") == "anon_inode:[pidfd]", "fd 10 is a pidfd");
      },
      /*same_pid=*/true);
  EXPECT_EQ(restored.failures(), "");
}

TEST_F(EventsTest, PidFdOutsideTheTreeFailsAtRestore) {
  pid_t outside = ::getpid();
  TreeProcess tree([&](int ready_fd) {
    place(static_cast<int>(::syscall(SYS_pidfd_open, outside, 0)), 10);
    keep_only({10, 200});
    signal_ready(ready_fd);
  });
  dump(tree);
  tree.kill();
  try {
    FilePool::open(images_, {});
    FAIL() << "a pidfd of a process outside the tree was restored";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "fd 10 of pid")) << e.what();
    EXPECT_TRUE(contains(e.what(), "a pidfd of pid " + std::to_string(outside) +
                                       ", which is not a process of the restored tree"))
        << e.what();
  }
}

TEST_F(EventsTest, UnsupportedKindNamesProcessFdAndKind) {
  TreeProcess tree([&](int ready_fd) {
    place(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC)), 9);
    keep_only({9, 200});
    signal_ready(ready_fd);
  });
  EXPECT_EQ(dump_error(tree), "pid " + std::to_string(tree.pid()) +
                                  ": fd 9 (anon_inode:[userfaultfd]): unsupported file kind "
                                  "userfaultfd");
  int ring_fd = -1;
  {
    // io_uring_setup(entries, params): a params block of 120 bytes, zeroed.
    alignas(8) char params[120] = {};
    ring_fd = static_cast<int>(::syscall(SYS_io_uring_setup, 4, params));
  }
  if (ring_fd < 0) GTEST_SKIP() << "io_uring_setup: " << std::strerror(errno);
  ::close(ring_fd);
  TreeProcess ring([&](int ready_fd) {
    alignas(8) char params[120] = {};
    place(static_cast<int>(::syscall(SYS_io_uring_setup, 4, params)), 9);
    keep_only({9, 200});
    signal_ready(ready_fd);
  });
  EXPECT_EQ(dump_error(ring), "pid " + std::to_string(ring.pid()) +
                                  ": fd 9 (anon_inode:[io_uring]): unsupported file kind "
                                  "io_uring");
}

TEST_F(EventsTest, FileLocksAreRefusedWithoutTheOptionAndHeldAfterRestore) {
  const std::string posix = dir_ + "/posix", flocked = dir_ + "/flock", ofd = dir_ + "/ofd";
  for (const std::string& f : {posix, flocked, ofd}) fs::write_file(f, std::string(200, 'l'));
  TreeProcess tree([&](int ready_fd) {
    place(::open(posix.c_str(), O_RDWR), 10);
    struct flock range {};
    range.l_type = F_WRLCK;
    range.l_whence = SEEK_SET;
    range.l_start = 0;
    range.l_len = 100;
    if (::fcntl(10, F_SETLK, &range) < 0) _exit(80);
    ::dup2(10, 14);  // a second fd of the same description: one lock all the same
    place(::open(flocked.c_str(), O_RDONLY), 11);
    if (::flock(11, LOCK_EX) < 0) _exit(81);
    place(::open(ofd.c_str(), O_RDONLY), 12);
    struct flock shared {};
    shared.l_type = F_RDLCK;
    shared.l_whence = SEEK_SET;
    shared.l_start = 10;
    shared.l_len = 0;
    if (::fcntl(12, F_OFD_SETLK, &shared) < 0) _exit(82);
    keep_only({10, 11, 12, 14, 200});
    signal_ready(ready_fd);
  });
  EXPECT_EQ(dump_error(tree), "pid " + std::to_string(tree.pid()) + ": fd 10 (" + posix +
                                  "): pid " + std::to_string(tree.pid()) +
                                  " holds a POSIX lock on " + posix + ": use --file-locks");
  FileDumpOptions with_locks;
  with_locks.file_locks = true;
  dump(tree, with_locks);
  pid_t dumped = tree.pid();
  tree.kill();

  try {
    FilePool::open(images_, {});
    ADD_FAILURE() << "a checkpoint with locks was restored without --file-locks";
  } catch (const Error& e) {
    EXPECT_TRUE(contains(e.what(), "file lock(s)") && contains(e.what(), "use --file-locks"))
        << e.what();
  }
  FileRestoreOptions restore_locks;
  restore_locks.file_locks = true;
  std::unique_ptr<FilePool> pool = FilePool::open(images_, restore_locks);
  std::vector<FilePool::PosixLock> posix_locks = pool->posix_locks(dumped);
  ASSERT_EQ(posix_locks.size(), 1u) << "one lock, though two fds of its description";
  EXPECT_EQ(posix_locks[0].fd, 10);
  EXPECT_TRUE(posix_locks[0].write);
  EXPECT_EQ(posix_locks[0].start, 0u);
  EXPECT_EQ(posix_locks[0].length, 100u);
  RestoredProcess restored(*pool, dumped, nullptr);
  // The coordinator's copies are gone: the locks live on in the restored process alone.
  pool.reset();

  // From another process (this test): every lock conflicts.
  int p = ::open(posix.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(p, 0);
  struct flock probe {};
  probe.l_type = F_WRLCK;
  probe.l_whence = SEEK_SET;
  probe.l_start = 50;
  probe.l_len = 1;
  EXPECT_EQ(::fcntl(p, F_SETLK, &probe), -1);
  EXPECT_TRUE(errno == EAGAIN || errno == EACCES) << std::strerror(errno);
  probe.l_type = F_WRLCK;
  ASSERT_EQ(::fcntl(p, F_GETLK, &probe), 0);
  EXPECT_EQ(probe.l_type, F_WRLCK);
  EXPECT_EQ(probe.l_pid, restored.pid());
  EXPECT_EQ(probe.l_start, 0);
  EXPECT_EQ(probe.l_len, 100);
  probe.l_type = F_WRLCK;
  probe.l_start = 100;  // beyond the range: free
  probe.l_len = 1;
  EXPECT_EQ(::fcntl(p, F_SETLK, &probe), 0) << std::strerror(errno);
  ::close(p);

  int f = ::open(flocked.c_str(), O_RDONLY | O_CLOEXEC);
  ASSERT_GE(f, 0);
  EXPECT_EQ(::flock(f, LOCK_SH | LOCK_NB), -1);
  EXPECT_EQ(errno, EWOULDBLOCK);
  ::close(f);

  int o = ::open(ofd.c_str(), O_RDWR | O_CLOEXEC);
  ASSERT_GE(o, 0);
  struct flock write_probe {};
  write_probe.l_type = F_WRLCK;
  write_probe.l_whence = SEEK_SET;
  write_probe.l_start = 150;
  write_probe.l_len = 1;
  EXPECT_EQ(::fcntl(o, F_OFD_SETLK, &write_probe), -1);
  EXPECT_EQ(errno, EAGAIN);
  struct flock read_probe = write_probe;
  read_probe.l_type = F_RDLCK;
  EXPECT_EQ(::fcntl(o, F_OFD_SETLK, &read_probe), 0) << "a shared lock allows readers";
  write_probe.l_start = 0;
  write_probe.l_len = 10;  // before the locked range
  EXPECT_EQ(::fcntl(o, F_OFD_SETLK, &write_probe), 0) << std::strerror(errno);
  ::close(o);

  std::string fdinfo = fdinfo_of(restored.pid(), 11);
  EXPECT_TRUE(contains(fdinfo, "FLOCK  ADVISORY  WRITE")) << fdinfo;
}

TEST(FileLockLines, ParsesKindsModesAndRanges) {
  using files::FileLock;
  FileLock posix = files::parse_fdinfo_lock("lock:\t1: POSIX  ADVISORY  WRITE 42 00:2a:123 0 EOF");
  EXPECT_EQ(posix.kind, FileLock::Kind::kPosix);
  EXPECT_TRUE(posix.write);
  EXPECT_EQ(posix.start, 0u);
  EXPECT_EQ(posix.length, 0u);
  FileLock ofd = files::parse_fdinfo_lock("lock:\t2: OFDLCK ADVISORY  READ  -1 fe:00:99 10 19");
  EXPECT_EQ(ofd.kind, FileLock::Kind::kOfd);
  EXPECT_FALSE(ofd.write);
  EXPECT_EQ(ofd.start, 10u);
  EXPECT_EQ(ofd.length, 10u);
  FileLock flock = files::parse_fdinfo_lock("lock:\t3: FLOCK  ADVISORY  READ  7 fe:00:99 0 EOF");
  EXPECT_EQ(flock.kind, FileLock::Kind::kFlock);
  try {
    files::parse_fdinfo_lock("lock:\t1: LEASE  ACTIVE    READ  42 00:2a:123 0 EOF");
    ADD_FAILURE() << "a lease was accepted";
  } catch (const Error& e) {
    EXPECT_STREQ(e.what(), "not supported yet: a file lock of type LEASE");
  }
  EXPECT_THROW(files::parse_fdinfo_lock("lock:\t1: POSIX ADVISORY WRITE"), Error);
  EXPECT_THROW(files::parse_fdinfo_lock("lock:\t1: POSIX  ADVISORY  WRITE 1 0:1:2 20 10"), Error);
}

}  // namespace
}  // namespace cryo::ckpt
