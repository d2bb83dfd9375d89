// Which mounts of a container go with its checkpoint: tmpfs contents of the spec's mounts and of
// the tmpfs the application mounted itself, and a refusal for any other mount it made.
#include "engine/checkpoint/container_checkpoint_mounts.h"

#include <gtest/gtest.h>
#include <sys/mount.h>

#include "common/error.h"

namespace cryo::engine {
namespace {

nlohmann::json spec_with_mounts() {
  return {{"mounts",
           {{{"destination", "/proc"}, {"type", "proc"}, {"source", "proc"}},
            {{"destination", "/dev"}, {"type", "tmpfs"}, {"source", "tmpfs"}},
            {{"destination", "/dev/shm"}, {"type", "tmpfs"}, {"source", "shm"}},
            {{"destination", "/data"},
             {"type", "bind"},
             {"source", "/var/lib/vol"},
             {"options", {"rbind", "rprivate"}}}}},
          {"linux",
           {{"maskedPaths", {"/proc/kcore", "/proc/acpi"}}, {"readonlyPaths", {"/proc/sys"}}}}};
}

MountInfoEntry mount(const std::string& path, const std::string& fstype,
                     const std::string& options = "rw,nosuid,nodev",
                     const std::string& source = "x", const std::string& super_options = "rw") {
  return {path, options, fstype, source, super_options};
}

std::vector<MountInfoEntry> runtime_mounts() {
  return {mount("/", "overlay"),
          mount("/proc", "proc"),
          mount("/dev", "tmpfs"),
          mount("/dev/shm", "tmpfs"),
          mount("/data", "ext4"),
          mount("/data/sub", "ext4"),
          mount("/proc/kcore", "devtmpfs"),
          mount("/proc/acpi", "tmpfs", "ro"),
          mount("/proc/sys", "proc", "ro")};
}

TEST(ContainerCheckpointMounts, SpecTmpfsOtherThanDevIsSaved) {
  std::vector<SavedTmpfs> saved = tmpfs_to_save(spec_with_mounts(), runtime_mounts());
  ASSERT_EQ(saved.size(), 1u);
  EXPECT_EQ(saved[0].path, "/dev/shm");
  EXPECT_FALSE(saved[0].made_by_app);
  EXPECT_EQ(saved[0].archive, "tmpfs-0.tar");
}

TEST(ContainerCheckpointMounts, TmpfsOfTheApplicationIsSavedWithItsOptions) {
  auto mounts = runtime_mounts();
  mounts.push_back(mount("/scratch", "tmpfs", "ro,nosuid,noexec,relatime", "scratch",
                         "rw,size=2048k,mode=750,inode64"));
  std::vector<SavedTmpfs> saved = tmpfs_to_save(spec_with_mounts(), mounts);
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved[1].path, "/scratch");
  EXPECT_TRUE(saved[1].made_by_app);
  EXPECT_EQ(saved[1].flags, MS_RDONLY | MS_NOSUID | MS_NOEXEC | MS_RELATIME);
  EXPECT_EQ(saved[1].data, "size=2048k,mode=750,inode64");
  EXPECT_EQ(saved[1].source, "scratch");
  EXPECT_EQ(saved[1].archive, "tmpfs-1.tar");
}

TEST(ContainerCheckpointMounts, OtherMountsOfTheApplicationAreRefused) {
  auto mounts = runtime_mounts();
  mounts.push_back(mount("/mnt", "ext4", "rw", "/dev/vda1"));
  try {
    tmpfs_to_save(spec_with_mounts(), mounts);
    FAIL() << "a bind mount made by the application was accepted";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not supported yet: the container mounted ext4"),
              std::string::npos)
        << e.what();
  }
}

TEST(ContainerCheckpointMounts, SecondMountOnASpecPathIsTheApplications) {
  auto mounts = runtime_mounts();
  mounts.push_back(mount("/proc", "tmpfs"));  // stacked over the spec's /proc
  std::vector<SavedTmpfs> saved = tmpfs_to_save(spec_with_mounts(), mounts);
  ASSERT_EQ(saved.size(), 2u);
  EXPECT_EQ(saved[1].path, "/proc");
  EXPECT_TRUE(saved[1].made_by_app);
  auto over_shm = runtime_mounts();
  over_shm.push_back(mount("/dev/shm", "tmpfs"));
  EXPECT_THROW(tmpfs_to_save(spec_with_mounts(), over_shm), Error);
}

TEST(ContainerCheckpointMounts, JsonRoundTrip) {
  SavedTmpfs t{"/a b", true, MS_NOSUID, "size=1k", "src", "tmpfs-3.tar"};
  SavedTmpfs back = saved_tmpfs_from_json(to_json(t));
  EXPECT_EQ(back.path, t.path);
  EXPECT_EQ(back.made_by_app, t.made_by_app);
  EXPECT_EQ(back.flags, t.flags);
  EXPECT_EQ(back.data, t.data);
  EXPECT_EQ(back.source, t.source);
  EXPECT_EQ(back.archive, t.archive);
}

}  // namespace
}  // namespace cryo::engine
