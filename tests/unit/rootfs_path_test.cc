// Mount points resolved inside a container root: symlinks in the image never lead outside it.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common/error.h"
#include "common/fs.h"
#include "engine/runtime/rootfs_path.h"

namespace cryo::engine {
namespace {

class RootfsPath : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cryo-rootfs-path-unit.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    root_ = dir_ + "/root";
    outside_ = dir_ + "/outside";
    fs::mkdir_p(root_ + "/etc");
    fs::mkdir_p(outside_);
    root_fd_ = fs::open_or_throw(root_, O_PATH | O_DIRECTORY);
  }
  void TearDown() override { fs::remove_all(dir_); }

  // The path of what `fd` refers to, as the host sees it.
  static std::string where(const UniqueFd& fd) {
    char buf[4096];
    ssize_t n = ::readlink(fd_path(fd.get()).c_str(), buf, sizeof buf - 1);
    EXPECT_GT(n, 0);
    return std::string(buf, static_cast<size_t>(n > 0 ? n : 0));
  }
  static bool is_file(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0 && S_ISREG(st.st_mode);
  }
  static bool is_dir(const std::string& path) {
    struct stat st;
    return ::lstat(path.c_str(), &st) == 0 && S_ISDIR(st.st_mode);
  }

  std::string dir_, root_, outside_;
  UniqueFd root_fd_;
};

TEST_F(RootfsPath, CreatesMissingDirectoriesAndFile) {
  UniqueFd fd = open_mount_point(root_fd_.get(), "/a/b/c", MountPointKind::kDirectory);
  EXPECT_EQ(where(fd), root_ + "/a/b/c");
  EXPECT_TRUE(is_dir(root_ + "/a/b/c"));
  UniqueFd file = open_mount_point(root_fd_.get(), "/etc/hosts", MountPointKind::kFile);
  EXPECT_EQ(where(file), root_ + "/etc/hosts");
  EXPECT_TRUE(is_file(root_ + "/etc/hosts"));
  // Existing: found, nothing changes.
  UniqueFd again = open_mount_point(root_fd_.get(), "/etc/hosts", MountPointKind::kFile);
  EXPECT_EQ(where(again), root_ + "/etc/hosts");
}

TEST_F(RootfsPath, AbsoluteDanglingSymlinkStaysInside) {
  // /etc/hosts -> <outside>/victim, which does not exist on the host.
  ASSERT_EQ(::symlink((outside_ + "/victim").c_str(), (root_ + "/etc/hosts").c_str()), 0);
  UniqueFd fd = open_mount_point(root_fd_.get(), "/etc/hosts", MountPointKind::kFile);
  EXPECT_EQ(where(fd), root_ + outside_ + "/victim");
  EXPECT_TRUE(is_file(root_ + outside_ + "/victim"));
  EXPECT_FALSE(fs::exists(outside_ + "/victim"));
}

TEST_F(RootfsPath, SymlinkToExistingHostDirectoryStaysInside) {
  // /data -> <outside>, an existing host directory; /data/sub must not appear there.
  ASSERT_EQ(::symlink(outside_.c_str(), (root_ + "/data").c_str()), 0);
  UniqueFd fd = open_mount_point(root_fd_.get(), "/data/sub", MountPointKind::kDirectory);
  EXPECT_EQ(where(fd), root_ + outside_ + "/sub");
  EXPECT_FALSE(fs::exists(outside_ + "/sub"));
}

TEST_F(RootfsPath, DotDotAndRelativeSymlinksStopAtTheRoot) {
  ASSERT_EQ(::symlink("../../../../../../tmp/escape", (root_ + "/etc/up").c_str()), 0);
  UniqueFd fd = open_mount_point(root_fd_.get(), "/etc/up/x", MountPointKind::kDirectory);
  EXPECT_EQ(where(fd), root_ + "/tmp/escape/x");
  UniqueFd dots = open_mount_point(root_fd_.get(), "/../../etc/../y", MountPointKind::kDirectory);
  EXPECT_EQ(where(dots), root_ + "/y");
}

TEST_F(RootfsPath, SymlinkLoopIsAnError) {
  ASSERT_EQ(::symlink("/loop", (root_ + "/loop").c_str()), 0);
  EXPECT_THROW(open_mount_point(root_fd_.get(), "/loop/x", MountPointKind::kDirectory), Error);
}

TEST_F(RootfsPath, OpenInRootReportsAbsentPathsAndStaysInside) {
  EXPECT_FALSE(open_in_root(root_fd_.get(), "/absent", O_PATH));
  EXPECT_EQ(errno, ENOENT);
  // /host -> /proc/self/root means the root's own /proc, absent here, not the host's.
  ASSERT_EQ(::symlink("/proc/self/root", (root_ + "/host").c_str()), 0);
  EXPECT_FALSE(open_in_root(root_fd_.get(), "/host/etc", O_PATH));
  EXPECT_EQ(errno, ENOENT);
}

}  // namespace
}  // namespace cryo::engine
