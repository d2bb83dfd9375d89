// VolumeStore on a temporary root: create, list, use by containers, remove, prune.
#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>

#include <string>

#include "common/error.h"
#include "common/fs.h"
#include "engine/volume/volume_store.h"

namespace cryo::engine {
namespace {

class VolumeStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cryo-volume-unit-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    paths_.root = dir_ + "/root";
    paths_.runroot = dir_ + "/run";
  }
  void TearDown() override { fs::remove_all(dir_); }

  void use_in_container(const std::string& id, const std::string& volume) {
    fs::mkdir_p(paths_.container_dir(id));
    nlohmann::json config = {
        {"id", id}, {"volumes", {{{"name", volume}, {"destination", "/data"}, {"rw", true}}}}};
    fs::write_file(paths_.container_dir(id) + "/container.json", config.dump());
  }

  std::string dir_;
  StorePaths paths_;
};

TEST_F(VolumeStoreTest, CreateInspectPersist) {
  VolumeStore store(paths_);
  Volume v = store.create("data", {{"app", "web"}});
  EXPECT_EQ(v.name, "data");
  EXPECT_EQ(v.driver, "local");
  EXPECT_EQ(v.mountpoint, paths_.root + "/volumes/data/_data");
  struct stat st;
  ASSERT_EQ(::stat(v.mountpoint.c_str(), &st), 0);
  EXPECT_TRUE(S_ISDIR(st.st_mode));
  EXPECT_EQ(v.created_at.size(), std::string("2026-01-01T00:00:00.000000000Z").size());

  VolumeStore reopened(paths_);
  Volume back = reopened.get("data");
  EXPECT_EQ(back.created_at, v.created_at);
  EXPECT_EQ(back.labels.at("app"), "web");
  nlohmann::ordered_json j = to_json(back);
  EXPECT_EQ(j.begin().key(), "Name");  // Podman's field order
  EXPECT_EQ(j["Mountpoint"], v.mountpoint);
  EXPECT_EQ(j["Scope"], "local");
}

TEST_F(VolumeStoreTest, NamesDuplicatesAndRandomNames) {
  VolumeStore store(paths_);
  store.create("dup");
  try {
    store.create("dup");
    ADD_FAILURE();
  } catch (const ExitCodeError& e) {
    EXPECT_EQ(e.exit_code(), 125);
    EXPECT_NE(std::string(e.what()).find("already exists"), std::string::npos);
  }
  EXPECT_EQ(store.create("dup", {}, {}, /*ignore_existing=*/true).name, "dup");
  Volume anonymous = store.create("");
  EXPECT_EQ(anonymous.name.size(), 64u);
  EXPECT_EQ(anonymous.name.find_first_not_of("0123456789abcdef"), std::string::npos);
  for (const char* bad : {"../x", ".hidden", "a/b", "-x", "sp ace"})
    EXPECT_THROW(store.create(bad), ExitCodeError) << bad;
  EXPECT_THROW(store.get("missing"), ExitCodeError);
  EXPECT_THROW(store.create("opts", {}, {{"type", "tmpfs"}}), ExitCodeError);  // not yet
  std::vector<Volume> all = store.list();
  ASSERT_EQ(all.size(), 2u);
}

TEST_F(VolumeStoreTest, EnsureCreatesOnce) {
  VolumeStore store(paths_);
  Volume first = store.ensure("cache");
  fs::write_file(first.mountpoint + "/kept", "x");
  Volume second = store.ensure("cache");
  EXPECT_EQ(second.created_at, first.created_at);
  EXPECT_TRUE(fs::exists(second.mountpoint + "/kept"));
}

TEST_F(VolumeStoreTest, InUseVolumesAreKept) {
  VolumeStore store(paths_);
  store.create("used");
  store.create("free");
  use_in_container("c1", "used");
  EXPECT_EQ(store.users("used"), std::vector<std::string>{"c1"});
  try {
    store.remove("used");
    ADD_FAILURE();
  } catch (const ExitCodeError& e) {
    EXPECT_EQ(e.exit_code(), 2);
    EXPECT_NE(std::string(e.what()).find("c1"), std::string::npos);
  }
  EXPECT_EQ(store.prune(), std::vector<std::string>{"free"});
  EXPECT_TRUE(store.find("used"));
  EXPECT_FALSE(fs::exists(paths_.volumes_dir() + "/free"));
  fs::remove_all(paths_.container_dir("c1"));
  store.remove("used");
  EXPECT_FALSE(fs::exists(paths_.volumes_dir() + "/used"));
  EXPECT_TRUE(store.list().empty());
}

TEST_F(VolumeStoreTest, RuntimeRecordMountsCount) {
  VolumeStore store(paths_);
  store.create("web");
  fs::mkdir_p(paths_.container_dir("c2"));
  nlohmann::json record = {{"id", "c2"},
                           {"config",
                            {{"mounts",
                              {{{"source", "/x"}, {"destination", "/y"}, {"volume_name", ""}},
                               {{"source", store.get("web").mountpoint},
                                {"destination", "/srv"},
                                {"volume_name", "web"},
                                {"read_only", false}}}}}}};
  fs::write_file(paths_.container_dir("c2") + "/container.json", record.dump());
  EXPECT_EQ(store.users("web"), std::vector<std::string>{"c2"});
  EXPECT_TRUE(store.users("other").empty());
}

TEST_F(VolumeStoreTest, DataWithoutMetadataIsAdoptedNotWiped) {
  // A directory made with the volume layout but no volume.json (e.g. a bare mkdir).
  fs::mkdir_p(paths_.volumes_dir() + "/legacy/_data");
  fs::write_file(paths_.volumes_dir() + "/legacy/_data/keep", "data");
  VolumeStore store(paths_);
  EXPECT_FALSE(store.find("legacy"));
  Volume v = store.ensure("legacy");
  EXPECT_EQ(fs::read_file(v.mountpoint + "/keep"), "data");
}

TEST_F(VolumeStoreTest, CopyUpFlag) {
  VolumeStore store(paths_);
  EXPECT_TRUE(store.create("v").needs_copy_up);
  store.set_needs_copy_up("v", false);
  EXPECT_FALSE(store.get("v").needs_copy_up);
}

}  // namespace
}  // namespace cryo::engine
