// Open files through a real dump and restore: a forked child sets up fds, FileDumper takes them
// with pidfd_getfd (no ptrace needed), the child is killed, a FilePool is created from the images
// and a new child installs the fds and checks every one of them from the inside.
#include "checkpoint/files.h"

#include <dirent.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/kcmp.h>
#include <pty.h>
#include <sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

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

int sys_kcmp(pid_t a, pid_t b, int type, unsigned long x, unsigned long y) {
  return static_cast<int>(::syscall(SYS_kcmp, a, b, type, x, y));
}

std::set<int> open_fds_of_self() {
  std::set<int> fds;
  DIR* dir = ::opendir("/proc/self/fd");
  if (dir == nullptr) return fds;
  while (dirent* e = ::readdir(dir))
    if (e->d_name[0] != '.' && std::atoi(e->d_name) != ::dirfd(dir))
      fds.insert(std::atoi(e->d_name));
  ::closedir(dir);
  return fds;
}

using FilesTest = testutil::FdImagesTest;

constexpr char kFileText[] = "hello world, restored";

TEST_F(FilesTest, RegularFilesDevicesPipesDeletedAndMemfdRoundTrip) {
  const std::string a = dir_ + "/a.txt", b = dir_ + "/b.txt", gone = dir_ + "/gone";
  fs::write_file(a, kFileText);
  fs::write_file(b, "log\n");
  // Deleted-file content: data, a hole, more data (sparse regions are not stored).
  std::string head(200000, 'h'), tail(5000, 't');
  const off_t tail_at = 3 << 20;

  TreeProcess tree([&](int ready) {
    int f = ::open(a.c_str(), O_RDWR);
    ::lseek(f, 5, SEEK_SET);
    place(f, 10);
    ::dup2(10, 11);  // one description, two fds: shared offset
    place(::open(b.c_str(), O_WRONLY | O_APPEND | O_CLOEXEC), 12);
    place(::open("/dev/null", O_RDWR | O_NONBLOCK), 13);
    int p[2];
    ::pipe2(p, 0);
    ::fcntl(p[1], F_SETPIPE_SZ, 128 * 1024);
    write_string(p[1], "queued bytes");
    ::fcntl(p[1], F_SETFL, O_NONBLOCK);
    place(p[0], 14);
    place(p[1], 15);
    place(::open(dir_.c_str(), O_RDONLY | O_DIRECTORY), 16);
    place(::open(a.c_str(), O_PATH), 17);
    int g = ::open(gone.c_str(), O_RDWR | O_CREAT, 0640);
    write_string(g, head);
    ::pwrite(g, tail.data(), tail.size(), tail_at);
    ::unlink(gone.c_str());
    ::lseek(g, 100, SEEK_SET);
    place(g, 18);
    int m = ::memfd_create("cryo-test", MFD_ALLOW_SEALING);
    write_string(m, "memfd data");
    ::fcntl(m, F_ADD_SEALS, F_SEAL_SHRINK);
    ::lseek(m, 2, SEEK_SET);
    place(m, 19);
    place(::open("/dev/urandom", O_RDONLY), 20);
    place(ready, 30);
    keep_only({10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20, 30});
    write_string(30, "r");
    ::close(30);
  });
  struct stat dir_st, a_st, memfd_st;
  ASSERT_EQ(::stat(dir_.c_str(), &dir_st), 0);
  ASSERT_EQ(::stat(a.c_str(), &a_st), 0);
  ASSERT_EQ(::stat(("/proc/" + std::to_string(tree.pid()) + "/fd/19").c_str(), &memfd_st), 0);
  dump({&tree});
  pid_t dumped = tree.pid();
  tree.kill();

  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  EXPECT_EQ(pool->max_fd(), 20);
  int memfd = pool->memfd_for_inode(memfd_st.st_ino);
  ASSERT_GE(memfd, 0);
  char memfd_text[11] = {};
  EXPECT_EQ(::pread(memfd, memfd_text, 10, 0), 10);
  EXPECT_STREQ(memfd_text, "memfd data");

  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    std::set<int> fds = open_fds_of_self();
    std::set<int> expected{0, 1, 2, 10, 11, 12, 13, 14, 15, 16, 17, 18, 19, 20};
    for (int fd : fds)
      if (fd <= 20) c.expect(expected.count(fd), "unexpected fd " + std::to_string(fd));
    for (int fd : expected) c.expect(fds.count(fd), "missing fd " + std::to_string(fd));
    c.expect(fds.size() == expected.size() + 1,
             "pool fds left open: " + std::to_string(fds.size()));

    // Shared offset of a dup'ed pair.
    c.expect(::lseek(10, 0, SEEK_CUR) == 5, "fd 10 offset");
    char buf[64] = {};
    c.expect(::read(10, buf, 6) == 6 && std::string(buf) == " world", "fd 10 content");
    c.expect(::lseek(11, 0, SEEK_CUR) == 11, "fd 11 shares fd 10's offset");
    c.expect(sys_kcmp(::getpid(), ::getpid(), KCMP_FILE, 10, 11) == 0, "fd 10 and 11 are one");
    c.expect((::fcntl(10, F_GETFL) & O_ACCMODE) == O_RDWR, "fd 10 O_RDWR");
    c.expect(!(::fcntl(10, F_GETFD) & FD_CLOEXEC), "fd 10 not close-on-exec");
    // O_APPEND, O_WRONLY, close-on-exec.
    int fl = ::fcntl(12, F_GETFL);
    c.expect((fl & O_ACCMODE) == O_WRONLY && (fl & O_APPEND), "fd 12 O_WRONLY|O_APPEND");
    c.expect(::fcntl(12, F_GETFD) & FD_CLOEXEC, "fd 12 close-on-exec");
    // /dev/null with O_NONBLOCK.
    struct stat st;
    c.expect(::fstat(13, &st) == 0 && st.st_rdev == makedev(1, 3), "fd 13 is /dev/null");
    c.expect(::fcntl(13, F_GETFL) & O_NONBLOCK, "fd 13 O_NONBLOCK");
    c.expect(::fstat(20, &st) == 0 && st.st_rdev == makedev(1, 9), "fd 20 is /dev/urandom");
    // Pipe: both ends of one pipe, bytes queued, size, flags.
    struct stat r_st, w_st;
    c.expect(::fstat(14, &r_st) == 0 && ::fstat(15, &w_st) == 0 && S_ISFIFO(r_st.st_mode) &&
                 r_st.st_ino == w_st.st_ino,
             "fds 14 and 15 are the two ends of one pipe");
    c.expect((::fcntl(14, F_GETFL) & O_ACCMODE) == O_RDONLY, "fd 14 read end");
    c.expect(!(::fcntl(14, F_GETFL) & O_NONBLOCK), "fd 14 blocking");
    c.expect((::fcntl(15, F_GETFL) & O_ACCMODE) == O_WRONLY, "fd 15 write end");
    c.expect(::fcntl(15, F_GETFL) & O_NONBLOCK, "fd 15 O_NONBLOCK");
    c.expect(::fcntl(15, F_GETPIPE_SZ) == 128 * 1024, "pipe size");
    int queued = -1;
    c.expect(::ioctl(14, FIONREAD, &queued) == 0 && queued == 12,
             "12 bytes queued, found " + std::to_string(queued));
    std::memset(buf, 0, sizeof buf);
    c.expect(::read(14, buf, 12) == 12 && std::string(buf) == "queued bytes", "pipe bytes");
    c.expect(::write(15, "x", 1) == 1 && ::read(14, buf, 1) == 1 && buf[0] == 'x',
             "pipe still connects its ends");
    // Directory and O_PATH.
    c.expect(::fstat(16, &st) == 0 && S_ISDIR(st.st_mode) && st.st_ino == dir_st.st_ino,
             "fd 16 is the directory");
    c.expect(::fcntl(17, F_GETFL) & O_PATH, "fd 17 O_PATH");
    c.expect(::fstat(17, &st) == 0 && st.st_ino == a_st.st_ino, "fd 17 is a.txt");
    // Deleted file: content (with its hole), size, offset, still deleted.
    c.expect(::fstat(18, &st) == 0 && st.st_nlink == 0, "fd 18 is deleted");
    c.expect(st.st_size == tail_at + static_cast<off_t>(tail.size()), "fd 18 size");
    c.expect((st.st_mode & 07777) == 0640, "fd 18 mode");
    c.expect(::lseek(18, 0, SEEK_CUR) == 100, "fd 18 offset");
    std::string got(head.size(), '\0');
    c.expect(
        ::pread(18, got.data(), got.size(), 0) == static_cast<ssize_t>(got.size()) && got == head,
        "fd 18 head");
    got.assign(tail.size(), '\0');
    c.expect(::pread(18, got.data(), got.size(), tail_at) == static_cast<ssize_t>(got.size()) &&
                 got == tail,
             "fd 18 tail");
    char zero = 1;
    c.expect(::pread(18, &zero, 1, tail_at - 1) == 1 && zero == 0, "fd 18 hole");
    std::string link = fs::read_link("/proc/self/fd/18");
    c.expect(link == gone + " (deleted)", "fd 18 link " + link);
    // memfd: name, content, seals, offset.
    link = fs::read_link("/proc/self/fd/19");
    c.expect(link == "/memfd:cryo-test (deleted)", "fd 19 link " + link);
    c.expect(::fcntl(19, F_GET_SEALS) == F_SEAL_SHRINK, "fd 19 seals");
    c.expect(::lseek(19, 0, SEEK_CUR) == 2, "fd 19 offset");
    std::memset(buf, 0, sizeof buf);
    c.expect(::read(19, buf, 8) == 8 && std::string(buf) == "mfd data", "fd 19 content");
  });
  EXPECT_EQ(restored.failures(), "");
  // Nothing of the restore is left in the directory (the ghost was unlinked at once).
  EXPECT_FALSE(fs::exists(gone));
}

TEST_F(FilesTest, DescriptionsSharedBetweenProcessesStayShared) {
  const std::string a = dir_ + "/shared.txt";
  fs::write_file(a, kFileText);
  // Parent of the tree: opens the file and a pipe, forks a child that inherits both. The child
  // process is dumped too; it reports ready through the same pipe as its parent.
  pid_t grandchild = -1;
  int gc_pid_pipe[2];
  ASSERT_EQ(::pipe(gc_pid_pipe), 0);
  TreeProcess parent([&](int ready) {
    int f = ::open(a.c_str(), O_RDONLY);
    ::lseek(f, 3, SEEK_SET);
    place(f, 10);
    int p[2];
    ::pipe(p);
    place(p[0], 11);
    place(p[1], 12);
    write_string(12, "from parent");
    place(ready, 30);
    place(gc_pid_pipe[1], 31);
    keep_only({10, 11, 12, 30, 31});
    pid_t child = ::fork();
    if (child == 0) {
      ::close(30);
      ::close(31);
      ::close(12);  // the child keeps the read end only
      for (;;) ::pause();
    }
    write_string(31, std::string(reinterpret_cast<char*>(&child), sizeof child));
    ::close(31);
    ::close(11);  // the parent keeps the write end only
    // Ready only once the child has closed its copies: a dump any earlier would see them.
    const std::string child_fds = "/proc/" + std::to_string(child) + "/fd/";
    while (::access((child_fds + "12").c_str(), F_OK) == 0 ||
           ::access((child_fds + "30").c_str(), F_OK) == 0 ||
           ::access((child_fds + "31").c_str(), F_OK) == 0)
      ::usleep(1000);
    write_string(30, "r");
    ::close(30);
  });
  ::close(gc_pid_pipe[1]);
  ASSERT_EQ(::read(gc_pid_pipe[0], &grandchild, sizeof grandchild),
            static_cast<ssize_t>(sizeof grandchild));
  ::close(gc_pid_pipe[0]);
  int gc_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, grandchild, 0));
  ASSERT_GE(gc_pidfd, 0);
  {
    FileDumper dumper(images_, {});
    dumper.dump_process(parent.pid(), parent.pidfd());
    dumper.dump_process(grandchild, gc_pidfd);
    dumper.finish();
  }
  ::close(gc_pidfd);
  pid_t dumped_parent = parent.pid();
  ::kill(grandchild, SIGKILL);
  parent.kill();  // reaps its own child through init; the grandchild is killed above

  json files = read_json_image(images_, "files.img");
  // The file, the pipe's read and write ends, /dev/null on 0, 1 and 2 (opened one by one).
  EXPECT_EQ(files.at("descriptions").size(), 6u);
  EXPECT_EQ(files.at("pipes").size(), 1u);

  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  RestoredProcess r_parent(*pool, dumped_parent, nullptr);
  RestoredProcess r_child(*pool, grandchild, nullptr);
  EXPECT_EQ(sys_kcmp(r_parent.pid(), r_child.pid(), KCMP_FILE, 10, 10), 0)
      << "fd 10 of both processes is one description";
  std::string fdinfo = fs::read_file("/proc/" + std::to_string(r_child.pid()) + "/fdinfo/10");
  EXPECT_NE(fdinfo.find("pos:\t3\n"), std::string::npos) << fdinfo;
  struct stat w_st, r_st;
  ASSERT_EQ(::stat(("/proc/" + std::to_string(r_parent.pid()) + "/fd/12").c_str(), &w_st), 0);
  ASSERT_EQ(::stat(("/proc/" + std::to_string(r_child.pid()) + "/fd/11").c_str(), &r_st), 0);
  EXPECT_EQ(w_st.st_ino, r_st.st_ino) << "the parent's write end feeds the child's read end";
  EXPECT_FALSE(fs::exists("/proc/" + std::to_string(r_parent.pid()) + "/fd/11"));
  EXPECT_FALSE(fs::exists("/proc/" + std::to_string(r_child.pid()) + "/fd/12"));
  // The queued bytes, read from the child's end through /proc (a new reader of the same pipe).
  int reader =
      ::open(("/proc/" + std::to_string(r_child.pid()) + "/fd/11").c_str(), O_RDONLY | O_NONBLOCK);
  ASSERT_GE(reader, 0);
  pool.reset();  // the coordinator's copies are gone: only the restored tree holds the pipe
  char buf[32] = {};
  EXPECT_EQ(::read(reader, buf, sizeof buf), 11);
  EXPECT_STREQ(buf, "from parent");
  ::close(reader);
}

TEST_F(FilesTest, FifoKeepsQueuedBytesAndFlags) {
  const std::string fifo = dir_ + "/fifo";
  ASSERT_EQ(::mkfifo(fifo.c_str(), 0600), 0);
  TreeProcess tree([&](int ready) {
    place(::open(fifo.c_str(), O_RDONLY | O_NONBLOCK), 10);
    place(::open(fifo.c_str(), O_WRONLY), 11);
    write_string(11, "fifo bytes");
    place(ready, 30);
    keep_only({10, 11, 30});
    write_string(30, "r");
    ::close(30);
  });
  dump({&tree});
  pid_t dumped = tree.pid();
  tree.kill();
  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    struct stat st;
    c.expect(::fstat(10, &st) == 0 && S_ISFIFO(st.st_mode), "fd 10 is a FIFO");
    c.expect(fs::read_link("/proc/self/fd/10") == fifo, "fd 10 path");
    c.expect(::fcntl(10, F_GETFL) & O_NONBLOCK, "fd 10 O_NONBLOCK");
    c.expect(!(::fcntl(11, F_GETFL) & O_NONBLOCK), "fd 11 blocking");
    c.expect((::fcntl(11, F_GETFL) & O_ACCMODE) == O_WRONLY, "fd 11 O_WRONLY");
    char buf[32] = {};
    c.expect(::read(10, buf, sizeof buf) == 10 && std::string(buf) == "fifo bytes",
             std::string("fifo content ") + buf);
  });
  EXPECT_EQ(restored.failures(), "");
}

TEST_F(FilesTest, UnsupportedKindsFailNamingPidFdAndKind) {
  TreeProcess tree([&](int ready) {
    // Packet sockets have no kind of their own.
    place(::socket(AF_PACKET, SOCK_DGRAM, 0), 10);
    place(ready, 30);
    keep_only({10, 30});
    write_string(30, "r");
    ::close(30);
  });
  FileDumper dumper(images_, {});
  try {
    dumper.dump_process(tree.pid(), tree.pidfd());
    FAIL() << "dumping a socket did not fail";
  } catch (const Error& e) {
    std::string expected = "pid " + std::to_string(tree.pid()) + ": fd 10 (socket:[";
    EXPECT_NE(std::string(e.what()).find(expected), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("unsupported file kind"), std::string::npos) << e.what();
  }
}

TEST_F(FilesTest, OutsideTerminalNeedsShellJobAndIsRestoredOntoOurs) {
  int master = -1, slave = -1;
  ASSERT_EQ(::openpty(&master, &slave, nullptr, nullptr, nullptr), 0);
  TreeProcess tree([&](int ready) {
    place(::dup(slave), 0);
    ::dup2(0, 1);
    place(ready, 30);
    keep_only({0, 1, 30});
    write_string(30, "r");
    ::close(30);
  });
  {
    FileDumper dumper(images_, {});
    try {
      // A pty slave may be the tree's own: the dump knows once it has seen every fd.
      dumper.dump_process(tree.pid(), tree.pidfd());
      dumper.finish();
      ADD_FAILURE() << "a terminal outside the tree was dumped without --shell-job";
    } catch (const Error& e) {
      EXPECT_NE(std::string(e.what()).find("fd 0 (/dev/pts/"), std::string::npos) << e.what();
      EXPECT_NE(std::string(e.what()).find("--shell-job"), std::string::npos) << e.what();
    }
  }
  FileDumpOptions dump_options;
  dump_options.shell_job = true;
  dump({&tree}, dump_options);
  pid_t dumped = tree.pid();
  tree.kill();

  // The restoring side's terminal: another pty.
  int our_master = -1, our_slave = -1;
  ASSERT_EQ(::openpty(&our_master, &our_slave, nullptr, nullptr, nullptr), 0);
  struct stat ours;
  ASSERT_EQ(::fstat(our_slave, &ours), 0);
  FileRestoreOptions options;
  options.shell_job = true;
  options.inherit_tty_fd = our_slave;
  std::unique_ptr<FilePool> pool = FilePool::open(images_, options);
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    struct stat st;
    c.expect(::fstat(0, &st) == 0 && st.st_rdev == ours.st_rdev, "fd 0 is our terminal");
    c.expect(sys_kcmp(::getpid(), ::getpid(), KCMP_FILE, 0, 1) == 0, "fds 0 and 1 are one");
    c.expect(::isatty(1), "fd 1 is a terminal");
  });
  EXPECT_EQ(restored.failures(), "");
  ::close(master);
  ::close(slave);
  ::close(our_master);
  ::close(our_slave);
}

TEST_F(FilesTest, RestoreErrorNamesPidFdAndPath) {
  const std::string a = dir_ + "/vanishing";
  fs::write_file(a, "x");
  TreeProcess tree([&](int ready) {
    place(::open(a.c_str(), O_RDONLY), 4);
    place(ready, 30);
    keep_only({4, 30});
    write_string(30, "r");
    ::close(30);
  });
  dump({&tree});
  pid_t dumped = tree.pid();
  tree.kill();
  ASSERT_EQ(::unlink(a.c_str()), 0);
  try {
    FilePool::open(images_, {});
    FAIL() << "restoring a missing file did not fail";
  } catch (const Error& e) {
    std::string expected = "restoring fd 4 of pid " + std::to_string(dumped) + " (" + a +
                           "): open: No such file or directory";
    EXPECT_EQ(std::string(e.what()), expected);
  }
}

TEST_F(FilesTest, DirectIoAndEventFdMessage) {
  const std::string a = dir_ + "/direct";
  fs::write_file(a, std::string(8192, 'd'));
  int probe = ::open(a.c_str(), O_RDONLY | O_DIRECT);
  if (probe < 0) GTEST_SKIP() << "O_DIRECT is not supported on " << dir_;
  ::close(probe);
  TreeProcess tree([&](int ready) {
    place(::open(a.c_str(), O_RDONLY | O_DIRECT | O_NOATIME), 10);
    ::lseek(10, 4096, SEEK_SET);
    place(ready, 30);
    keep_only({10, 30});
    write_string(30, "r");
    ::close(30);
  });
  dump({&tree});
  pid_t dumped = tree.pid();
  tree.kill();
  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    int fl = ::fcntl(10, F_GETFL);
    c.expect(fl & O_DIRECT, "fd 10 O_DIRECT");
    c.expect(fl & O_NOATIME, "fd 10 O_NOATIME");
    c.expect(::lseek(10, 0, SEEK_CUR) == 4096, "fd 10 offset");
  });
  EXPECT_EQ(restored.failures(), "");

  TreeProcess with_eventfd([&](int ready) {
    place(static_cast<int>(::syscall(SYS_userfaultfd, O_CLOEXEC)), 7);
    place(ready, 30);
    keep_only({7, 30});
    write_string(30, "r");
    ::close(30);
  });
  FileDumper dumper(images_, {});
  try {
    dumper.dump_process(with_eventfd.pid(), with_eventfd.pidfd());
    FAIL() << "dumping a userfaultfd did not fail";
  } catch (const Error& e) {
    EXPECT_EQ(std::string(e.what()), "pid " + std::to_string(with_eventfd.pid()) +
                                         ": fd 7 (anon_inode:[userfaultfd]): unsupported file "
                                         "kind userfaultfd");
  }
}

TEST_F(FilesTest, InheritedDescriptionIsTheCallersOwn) {
  // The tree's stdout is a pipe whose reader is outside the tree (a monitor).
  int outside[2];
  ASSERT_EQ(::pipe(outside), 0);
  TreeProcess tree([&](int ready) {
    place(::dup(outside[1]), 1);
    place(ready, 30);
    keep_only({1, 30});
    write_string(30, "r");
    ::close(30);
  });
  struct stat st;
  ASSERT_EQ(::fstat(outside[1], &st), 0);
  dump({&tree});
  pid_t dumped = tree.pid();
  tree.kill();
  ::close(outside[0]);
  ::close(outside[1]);

  int monitor[2];
  ASSERT_EQ(::pipe(monitor), 0);
  FileRestoreOptions options;
  options.inherit_fds["pipe:[" + std::to_string(st.st_ino) + "]"] = monitor[1];
  std::unique_ptr<FilePool> pool = FilePool::open(images_, options);
  ::close(monitor[1]);
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    c.expect(::write(1, "to the monitor", 14) == 14, "write to stdout");
  });
  EXPECT_EQ(restored.failures(), "");
  pool.reset();
  EXPECT_EQ(read_all(monitor[0]), "to the monitor");
  ::close(monitor[0]);
}

TEST_F(FilesTest, SharedFdTableIsRecordedOnceAndInstalledByItsOwner) {
  // A process and a CLONE_FILES child: one fd table, recorded with the process dumped first and
  // installed by it (the restore forks the sharer with CLONE_FILES: zdtm fd_table_shared).
  pid_t sharer = -1;
  int pid_pipe[2];
  ASSERT_EQ(::pipe(pid_pipe), 0);
  TreeProcess tree([&](int ready) {
    place(ready, 30);
    place(pid_pipe[1], 31);
    keep_only({30, 31});
    static char stack[64 * 1024];
    pid_t child = ::clone(
        [](void*) -> int {
          for (;;) ::pause();
        },
        stack + sizeof stack, CLONE_FILES | SIGCHLD, nullptr);
    write_string(31, std::string(reinterpret_cast<char*>(&child), sizeof child));
    ::close(31);
    write_string(30, "r");
    ::close(30);
  });
  ::close(pid_pipe[1]);
  ASSERT_EQ(::read(pid_pipe[0], &sharer, sizeof sharer), static_cast<ssize_t>(sizeof sharer));
  ::close(pid_pipe[0]);
  int sharer_pidfd = static_cast<int>(::syscall(SYS_pidfd_open, sharer, 0));
  ASSERT_GE(sharer_pidfd, 0);
  {
    FileDumper dumper(images_, {});
    dumper.dump_process(tree.pid(), tree.pidfd());
    dumper.dump_process(sharer, sharer_pidfd);
    dumper.finish();
  }
  ::close(sharer_pidfd);
  ::kill(sharer, SIGKILL);
  json table = read_json_image(images_, "fdtable-" + std::to_string(sharer) + ".img");
  EXPECT_EQ(table.value("shared_with", -1), tree.pid());
  EXPECT_TRUE(table.at("fds").empty()) << "the shared table's fds are recorded once";
  std::unique_ptr<FilePool> pool = FilePool::open(images_, {});
  EXPECT_EQ(pool->fd_table_owner(sharer), tree.pid());
  EXPECT_EQ(pool->fd_table_owner(tree.pid()), tree.pid());
  EXPECT_EQ(pool->fd_table_sharers(tree.pid()), std::vector<pid_t>{sharer});
  EXPECT_TRUE(pool->fd_table_sharers(sharer).empty());
  try {
    pool->install(sharer, nullptr);
    ADD_FAILURE() << "the sharer installed a table of its own";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("that process installs it"), std::string::npos)
        << e.what();
  }
}

}  // namespace
}  // namespace cryo::ckpt
