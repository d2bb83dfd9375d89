// Safe extraction and creation of layer tars (engine/storage/tar.h).
#include <gtest/gtest.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <sys/xattr.h>

#include <algorithm>

#include "common/error.h"
#include "common/fs.h"
#include "engine/storage/digest.h"
#include "engine/storage/tar.h"
#include "image_test_util.h"

namespace cryo {
namespace {

using storage::extract_tar;
using storage::ExtractOptions;
using testing::path_exists;
using testing::TarEntry;
using testing::TempDir;
using testing::write_tar;

struct ExtractFixture {
  TempDir tmp;
  std::string dest = tmp / "dest";
  std::string tar = tmp / "layer.tar";
  ExtractFixture() { fs::mkdir_p(dest); }
};

void expect_refused(const std::string& tar, const std::string& dest, const std::string& what) {
  try {
    extract_tar(tar, dest);
    FAIL() << "extraction of " << what << " succeeded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("refusing archive entry"), std::string::npos) << e.what();
  }
}

TEST(ImageTar, RefusesDotDotComponent) {
  ExtractFixture f;
  fs::mkdir_p(f.dest + "/sub");
  write_tar(f.tar, {{.path = "sub/../../evil", .data = "x"}});
  expect_refused(f.tar, f.dest, "../evil");
  EXPECT_FALSE(path_exists(f.tmp / "evil"));
  write_tar(f.tar, {{.path = "../evil", .data = "x"}});
  expect_refused(f.tar, f.dest, "../evil");
  EXPECT_FALSE(path_exists(f.tmp / "evil"));
}

TEST(ImageTar, RefusesAbsolutePath) {
  ExtractFixture f;
  std::string outside = f.tmp / "abs-evil";
  write_tar(f.tar, {{.path = outside, .data = "x"}});
  expect_refused(f.tar, f.dest, "an absolute path");
  EXPECT_FALSE(path_exists(outside));
}

TEST(ImageTar, RefusesWritingThroughSymlinkToOutside) {
  ExtractFixture f;
  std::string outside = f.tmp / "outside";
  fs::mkdir_p(outside);
  write_tar(f.tar, {{.path = "escape", .type = AE_IFLNK, .perm = 0777, .link = outside},
                    {.path = "escape/pwned", .data = "owned"}});
  expect_refused(f.tar, f.dest, "a file behind a symlink");
  EXPECT_FALSE(path_exists(outside + "/pwned"));
  // The symlink itself is fine inside the layer: it only resolves inside the container.
  EXPECT_EQ(fs::read_link(f.dest + "/escape"), outside);

  // Relative symlinks climbing out are refused the same way.
  ExtractFixture g;
  write_tar(g.tar, {{.path = "up", .type = AE_IFLNK, .perm = 0777, .link = "../.."},
                    {.path = "up/tmp/pwned2", .data = "owned"}});
  expect_refused(g.tar, g.dest, "a file behind a relative symlink");
  EXPECT_FALSE(path_exists("/tmp/pwned2"));
}

TEST(ImageTar, HardlinksCannotReachOutside) {
  ExtractFixture f;
  std::string victim = f.tmp / "victim";
  fs::write_file(victim, "original");
  write_tar(f.tar, {{.path = "h", .link = "../victim", .hardlink = true}});
  expect_refused(f.tar, f.dest, "a hardlink to ../victim");

  // A hardlink to a symlink pointing outside links the symlink, and a later file entry with the
  // same name replaces the link instead of writing through it.
  write_tar(f.tar, {{.path = "sl", .type = AE_IFLNK, .perm = 0777, .link = victim},
                    {.path = "hl", .link = "sl", .hardlink = true},
                    {.path = "hl", .data = "overwritten"}});
  extract_tar(f.tar, f.dest);
  EXPECT_EQ(fs::read_file(victim), "original");
  EXPECT_EQ(fs::read_file(f.dest + "/hl"), "overwritten");
  struct stat st;
  ASSERT_EQ(::lstat((f.dest + "/sl").c_str(), &st), 0);
  EXPECT_TRUE(S_ISLNK(st.st_mode));
}

TEST(ImageTar, KeepsOwnershipPermissionsXattrsDevicesAndHardlinks) {
  ExtractFixture f;
  write_tar(f.tar,
            {{.path = "dir", .type = AE_IFDIR, .perm = 0750, .uid = 7, .gid = 8},
             {.path = "dir/suid",
              .perm = 04755,
              .data = "#!/bin/sh\n",
              .uid = 1234,
              .gid = 5678,
              .xattrs = {{"user.cryo", "value"}}},
             {.path = "dir/link", .link = "dir/suid", .hardlink = true},
             {.path = "dev/null", .type = AE_IFCHR, .perm = 0666, .rdev_major = 1, .rdev_minor = 3},
             {.path = "fifo", .type = AE_IFIFO, .perm = 0600},
             {.path = "sym", .type = AE_IFLNK, .perm = 0777, .link = "dir/suid"}});
  storage::ExtractStats stats = extract_tar(f.tar, f.dest);
  EXPECT_EQ(stats.entries, 6u);
  EXPECT_EQ(stats.regular_bytes, 10u);

  struct stat st;
  ASSERT_EQ(::stat((f.dest + "/dir").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 0750u);
  EXPECT_EQ(st.st_uid, 7u);
  EXPECT_EQ(st.st_gid, 8u);
  EXPECT_EQ(st.st_mtime, 1700000000);  // directory times survive the creation of children

  ASSERT_EQ(::stat((f.dest + "/dir/suid").c_str(), &st), 0);
  EXPECT_EQ(st.st_mode & 07777, 04755u);
  EXPECT_EQ(st.st_uid, 1234u);
  EXPECT_EQ(st.st_gid, 5678u);
  EXPECT_EQ(st.st_nlink, 2u);
  char value[16] = {};
  ASSERT_EQ(::getxattr((f.dest + "/dir/suid").c_str(), "user.cryo", value, sizeof value), 5);
  EXPECT_STREQ(value, "value");
  struct stat linked;
  ASSERT_EQ(::stat((f.dest + "/dir/link").c_str(), &linked), 0);
  EXPECT_EQ(linked.st_ino, st.st_ino);

  ASSERT_EQ(::lstat((f.dest + "/dev/null").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(1, 3));
  EXPECT_EQ(st.st_mode & 07777, 0666u);
  ASSERT_EQ(::lstat((f.dest + "/fifo").c_str(), &st), 0);
  EXPECT_TRUE(S_ISFIFO(st.st_mode));
  EXPECT_EQ(fs::read_link(f.dest + "/sym"), "dir/suid");
}

TEST(ImageTar, OciWhiteoutsBecomeOverlayWhiteoutsAndBack) {
  ExtractFixture f;
  write_tar(f.tar, {{.path = "etc", .type = AE_IFDIR, .perm = 0755},
                    {.path = "etc/.wh.removed.conf", .perm = 0},
                    {.path = "opaque", .type = AE_IFDIR, .perm = 0755},
                    {.path = "opaque/.wh..wh..opq", .perm = 0},
                    {.path = "opaque/kept", .data = "k"}});
  ExtractOptions options;
  options.oci_whiteouts = true;
  extract_tar(f.tar, f.dest, options);

  struct stat st;
  ASSERT_EQ(::lstat((f.dest + "/etc/removed.conf").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));
  EXPECT_EQ(st.st_rdev, makedev(0, 0));
  EXPECT_FALSE(path_exists(f.dest + "/etc/.wh.removed.conf"));
  char value[4] = {};
  ASSERT_EQ(::getxattr((f.dest + "/opaque").c_str(), "trusted.overlay.opaque", value, sizeof value),
            1);
  EXPECT_EQ(value[0], 'y');
  EXPECT_FALSE(path_exists(f.dest + "/opaque/.wh..wh..opq"));
  EXPECT_EQ(fs::read_file(f.dest + "/opaque/kept"), "k");

  // Archiving the tree as a rootfs diff turns them back into OCI whiteout entries.
  std::string diff = f.tmp / "diff.tar";
  storage::CreateOptions create;
  create.overlay_whiteouts_to_oci = true;
  storage::create_tar(f.dest, diff, create);
  std::vector<std::string> paths = testing::tar_paths(diff);
  auto has = [&](const std::string& p) {
    return std::find(paths.begin(), paths.end(), p) != paths.end();
  };
  EXPECT_TRUE(has("etc/.wh.removed.conf"));
  EXPECT_TRUE(has("opaque/.wh..wh..opq"));
  EXPECT_TRUE(has("opaque/kept"));
  EXPECT_FALSE(has("etc/removed.conf"));

  // Without the option a plain extraction keeps .wh. files as they are.
  ExtractFixture plain;
  extract_tar(f.tar, plain.dest);
  EXPECT_TRUE(path_exists(plain.dest + "/etc/.wh.removed.conf"));
}

TEST(ImageTar, OverlayXattrsFromArchivesAreDropped) {
  ExtractFixture f;
  write_tar(f.tar, {{.path = "d",
                     .type = AE_IFDIR,
                     .perm = 0755,
                     .xattrs = {{"trusted.overlay.redirect", "/etc"}, {"user.kept", "1"}}}});
  ExtractOptions options;
  options.oci_whiteouts = true;
  extract_tar(f.tar, f.dest, options);
  char value[16];
  EXPECT_LT(::getxattr((f.dest + "/d").c_str(), "trusted.overlay.redirect", value, sizeof value),
            0);
  EXPECT_EQ(::getxattr((f.dest + "/d").c_str(), "user.kept", value, sizeof value), 1);
}

TEST(ImageTar, CreateThenExtractRoundTripsATree) {
  ExtractFixture f;
  write_tar(f.tar, {{.path = "a/b/c", .perm = 0600, .data = "hello", .uid = 3, .gid = 4},
                    {.path = "a/l", .type = AE_IFLNK, .perm = 0777, .link = "b/c"},
                    {.path = "a/h", .link = "a/b/c", .hardlink = true}});
  extract_tar(f.tar, f.dest);
  std::string copy_tar = f.tmp / "copy.tar.zst";
  storage::CreateOptions zstd;
  zstd.compression = storage::Compression::kZstd;
  storage::create_tar(f.dest, copy_tar, zstd);
  std::string copy = f.tmp / "copy";
  fs::mkdir_p(copy);
  extract_tar(copy_tar, copy);
  EXPECT_EQ(fs::read_file(copy + "/a/b/c"), "hello");
  EXPECT_EQ(fs::read_link(copy + "/a/l"), "b/c");
  struct stat c, h;
  ASSERT_EQ(::stat((copy + "/a/b/c").c_str(), &c), 0);
  ASSERT_EQ(::stat((copy + "/a/h").c_str(), &h), 0);
  EXPECT_EQ(c.st_ino, h.st_ino);
  EXPECT_EQ(c.st_uid, 3u);
  EXPECT_EQ(c.st_mode & 0777, 0600u);

  // decompress_file hashes the uncompressed stream: the same digest as the plain tar's bytes.
  std::string plain_tar = f.tmp / "plain.tar";
  std::string digest = storage::decompress_file(copy_tar, plain_tar);
  EXPECT_EQ(digest, storage::sha256_file_hex(plain_tar));
  EXPECT_NE(digest, storage::sha256_file_hex(copy_tar));
}

TEST(ImageTar, DigestHelpers) {
  EXPECT_EQ(storage::sha256_hex("abc"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_EQ(storage::digest_hex(
                "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  EXPECT_THROW(storage::digest_hex("sha512:abc"), Error);
  EXPECT_THROW(storage::digest_hex("sha256:../../etc"), Error);
}

}  // namespace
}  // namespace cryo
