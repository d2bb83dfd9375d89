// Image names, --change parsing and the image store (engine/image/image_store.h).
#include "engine/image/image_store.h"

#include <gtest/gtest.h>
#include <sys/stat.h>

#include <filesystem>

#include "common/error.h"
#include "common/fs.h"
#include "engine/storage/digest.h"
#include "engine/storage/layer_store.h"
#include "engine/storage/tar.h"
#include "image_test_util.h"

namespace cryo {
namespace {

using engine::apply_image_change;
using engine::ImageStore;
using engine::normalize_image_name;
using testing::path_exists;
using testing::TarEntry;
using testing::TempDir;
using testing::write_tar;

int count_entries(const std::string& dir) {
  if (!path_exists(dir)) return 0;
  int n = 0;
  for ([[maybe_unused]] const auto& e : std::filesystem::directory_iterator(dir)) ++n;
  return n;
}

template <typename Fn>
void expect_exit_error(Fn&& fn, int code, const std::string& message) {
  try {
    fn();
    FAIL() << "no error, expected \"" << message << "\"";
  } catch (const ExitCodeError& e) {
    EXPECT_EQ(e.exit_code(), code) << e.what();
    EXPECT_EQ(std::string(e.what()), message);
  }
}

TEST(ImageNames, NormalizedLikePodman) {
  EXPECT_EQ(normalize_image_name("busybox"), "localhost/busybox:latest");
  EXPECT_EQ(normalize_image_name("foo:1"), "localhost/foo:1");
  EXPECT_EQ(normalize_image_name("localhost/busybox"), "localhost/busybox:latest");
  EXPECT_EQ(normalize_image_name("quay.io/org/app"), "quay.io/org/app:latest");
  EXPECT_EQ(normalize_image_name("registry:5000/app:v2"), "registry:5000/app:v2");
  EXPECT_EQ(normalize_image_name("org/app"), "localhost/org/app:latest");
  EXPECT_EQ(normalize_image_name("busybox", "docker.io"), "docker.io/library/busybox:latest");
  EXPECT_EQ(normalize_image_name("me/app:1", "docker.io"), "docker.io/me/app:1");
  for (const char* bad : {"BusyBox", "foo:", "foo::1", "-foo", "foo/", ""}) {
    try {
      normalize_image_name(bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const ExitCodeError& e) {
      EXPECT_EQ(e.exit_code(), 125);
    }
  }
}

TEST(ImageChange, DockerfileInstructions) {
  nlohmann::json config = {{"config", nlohmann::json::object()}};
  apply_image_change(config, R"(CMD ["sh", "-c", "echo hi"])");
  EXPECT_EQ(config["config"]["Cmd"], nlohmann::json({"sh", "-c", "echo hi"}));
  apply_image_change(config, "CMD=httpd -f -p 80");
  EXPECT_EQ(config["config"]["Cmd"], nlohmann::json({"/bin/sh", "-c", "httpd -f -p 80"}));
  apply_image_change(config, R"(ENTRYPOINT ["/bin/busybox"])");
  EXPECT_EQ(config["config"]["Entrypoint"], nlohmann::json({"/bin/busybox"}));
  apply_image_change(config, R"(ENV A=1 B="two words")");
  apply_image_change(config, "ENV A 3");
  EXPECT_EQ(config["config"]["Env"], nlohmann::json({"B=two words", "A=3"}));
  apply_image_change(config, "WORKDIR /www");
  apply_image_change(config, "USER nobody");
  apply_image_change(config, "EXPOSE 80 53/udp");
  apply_image_change(config, "LABEL app=web");
  apply_image_change(config, "STOPSIGNAL SIGINT");
  apply_image_change(config, "volume /data");

  engine::ImageConfig parsed = engine::image_config_from_oci(config);
  EXPECT_EQ(parsed.working_dir, "/www");
  EXPECT_EQ(parsed.user, "nobody");
  EXPECT_EQ(parsed.exposed_ports, (std::vector<std::string>{"53/udp", "80/tcp"}));
  EXPECT_EQ(parsed.labels.at("app"), "web");
  EXPECT_EQ(parsed.stop_signal, "SIGINT");
  EXPECT_EQ(parsed.volumes, (std::vector<std::string>{"/data"}));
  EXPECT_EQ(parsed.entrypoint, (std::vector<std::string>{"/bin/busybox"}));

  for (const char* bad :
       {"FROM scratch", "CMD [\"unterminated\"", "CMD [1, 2]", "EXPOSE http", "CMD", "ENV =x"}) {
    try {
      apply_image_change(config, bad);
      ADD_FAILURE() << bad << " was accepted";
    } catch (const ExitCodeError& e) {
      EXPECT_EQ(e.exit_code(), 125);
    }
  }
}

TEST(ImageHuman, SizesAndDurations) {
  EXPECT_EQ(engine::human_size(0), "0 B");
  EXPECT_EQ(engine::human_size(1982492), "1.98 MB");
  EXPECT_EQ(engine::human_size(12300), "12.3 kB");
  EXPECT_EQ(engine::human_duration_since(100, 100), "Less than a second ago");
  EXPECT_EQ(engine::human_duration_since(0, 45), "45 seconds ago");
  EXPECT_EQ(engine::human_duration_since(0, 125), "2 minutes ago");
  EXPECT_EQ(engine::human_duration_since(0, 3 * 3600), "3 hours ago");
  EXPECT_EQ(engine::human_duration_since(0, 5 * 86400), "5 days ago");
}

struct StoreFixture {
  TempDir tmp;
  engine::StorePaths paths{tmp / "root", tmp / "run"};
  ImageStore store{paths};
  std::string rootfs = tmp / "rootfs.tar";
  StoreFixture() {
    write_tar(rootfs, {{.path = "bin", .type = AE_IFDIR, .perm = 0755},
                       {.path = "bin/hello", .perm = 0755, .data = "#!/bin/sh\necho hello\n"},
                       {.path = "etc/passwd", .data = "root:x:0:0:root:/root:/bin/sh\n"}});
  }
  engine::ImageRecord import(const std::string& name, std::vector<std::string> changes = {}) {
    return store.import_rootfs(rootfs, {std::move(changes), "", name});
  }
};

TEST(ImageStore, ImportResolveAndLayerDirs) {
  StoreFixture f;
  engine::ImageRecord image = f.import("busybox", {R"(CMD ["sh"])"});
  EXPECT_EQ(image.id.size(), 64u);
  EXPECT_EQ(image.id, storage::sha256_hex(f.store.config_bytes(image)));
  EXPECT_EQ(image.names, std::vector<std::string>{"localhost/busybox:latest"});
  EXPECT_EQ(image.config.cmd, std::vector<std::string>{"sh"});
  EXPECT_EQ(image.size, 51u);
  ASSERT_EQ(image.layer_digests.size(), 1u);
  EXPECT_EQ(image.layer_digests[0], "sha256:" + storage::sha256_file_hex(f.rootfs));

  for (const std::string& ref :
       {std::string("busybox"), std::string("busybox:latest"), std::string("localhost/busybox"),
        image.id, image.id.substr(0, 3), "sha256:" + image.id, "sha256:" + image.id.substr(0, 12)})
    EXPECT_EQ(f.store.resolve(ref).id, image.id) << ref;

  std::vector<std::string> dirs = f.store.layer_dirs(image);
  ASSERT_EQ(dirs.size(), 1u);
  EXPECT_EQ(dirs[0], f.paths.layers_dir() + "/" + image.layer_digests[0].substr(7) + "/diff");
  EXPECT_EQ(fs::read_file(dirs[0] + "/bin/hello"), "#!/bin/sh\necho hello\n");

  expect_exit_error([&] { f.store.resolve("nosuch"); }, 125, "nosuch: image not known");
  expect_exit_error([&] { f.store.resolve("busybox:other"); }, 125,
                    "busybox:other: image not known");

  nlohmann::json inspect = f.store.inspect(image);
  EXPECT_EQ(inspect["Id"], image.id);
  EXPECT_EQ(inspect["RepoTags"], nlohmann::json({"localhost/busybox:latest"}));
  EXPECT_EQ(inspect["Config"]["Cmd"], nlohmann::json({"sh"}));
  EXPECT_EQ(inspect["RootFS"]["Type"], "layers");
  EXPECT_EQ(inspect["RootFS"]["Layers"], nlohmann::json(image.layer_digests));
  EXPECT_EQ(inspect["Architecture"], "amd64");
  EXPECT_EQ(inspect["Os"], "linux");
}

TEST(ImageStore, SharedLayersAreRemovedWithTheirLastImage) {
  StoreFixture f;
  engine::ImageRecord a = f.import("a", {"CMD a"});
  engine::ImageRecord b = f.import("b", {"CMD b"});
  ASSERT_NE(a.id, b.id);
  ASSERT_EQ(a.layer_digests, b.layer_digests);
  EXPECT_EQ(count_entries(f.paths.layers_dir()), 1);  // unpacked once

  engine::RemoveResult removed = f.store.remove("a", false);
  EXPECT_EQ(removed.untagged, std::vector<std::string>{"localhost/a:latest"});
  EXPECT_EQ(removed.deleted, a.id);
  EXPECT_TRUE(path_exists(f.store.layer_dirs(b)[0]));
  f.store.remove(b.id, false);
  EXPECT_EQ(count_entries(f.paths.layers_dir()), 0);
  EXPECT_EQ(count_entries(f.paths.images_dir()), 0);
  expect_exit_error([&] { f.store.remove("a", false); }, 1, "a: image not known");
}

TEST(ImageStore, NamesMoveAndUntagOnlyRemovesOneName) {
  StoreFixture f;
  engine::ImageRecord first = f.import("app:1", {"CMD one"});
  engine::ImageRecord second = f.import("app:1", {"CMD two"});
  EXPECT_TRUE(f.store.resolve(first.id).names.empty());  // the name moved to the new image
  f.store.tag("app:1", "app:2");
  EXPECT_EQ(f.store.resolve("app:2").id, second.id);
  expect_exit_error([&] { f.store.remove(second.id, false); }, 125,
                    "unable to delete image \"" + second.id +
                        "\" by ID with more than one tag (localhost/app:1, localhost/app:2): "
                        "please force removal");
  engine::RemoveResult r = f.store.remove("app:1", false);
  EXPECT_EQ(r.untagged, std::vector<std::string>{"localhost/app:1"});
  EXPECT_FALSE(r.deleted.has_value());
  EXPECT_EQ(f.store.resolve("app:2").id, second.id);
}

TEST(ImageStore, ImageUsedByAContainerIsNotRemoved) {
  StoreFixture f;
  engine::ImageRecord image = f.import("busybox");
  std::string container = f.paths.container_dir("c0ffee");
  fs::mkdir_p(container);
  fs::write_file(container + "/container.json", nlohmann::json{{"image_id", image.id}}.dump());
  EXPECT_EQ(f.store.containers_using(image.id), std::vector<std::string>{"c0ffee"});
  expect_exit_error([&] { f.store.remove("busybox", false); }, 2,
                    "image used by c0ffee: image is in use by a container");
  std::vector<std::string> removed_containers;
  f.store.set_container_remover([&](const std::string& id) {
    removed_containers.push_back(id);
    fs::remove_all(f.paths.container_dir(id));
  });
  f.store.remove("busybox", true);
  EXPECT_EQ(removed_containers, std::vector<std::string>{"c0ffee"});
  EXPECT_FALSE(f.store.find("busybox").has_value());
}

TEST(ImageStore, CommitLayerStacksOnTheBaseImage) {
  StoreFixture f;
  engine::ImageRecord base = f.import("busybox", {R"(CMD ["sh"])", "ENV A=1"});
  // A rootfs diff as an overlay upper dir holds it: a new file and a whiteout.
  std::string upper = f.tmp / "upper";
  fs::mkdir_p(upper + "/etc");
  fs::write_file(upper + "/etc/added", "new");
  ASSERT_EQ(::mknod((upper + "/etc/passwd").c_str(), S_IFCHR | 0, 0), 0);
  std::string diff = f.tmp / "diff.tar";
  storage::CreateOptions create;
  create.overlay_whiteouts_to_oci = true;
  storage::create_tar(upper, diff, create);

  engine::ImageRecord committed = f.store.commit_layer("busybox", diff, {{"ENV B=2"}, "", "snap"});
  ASSERT_EQ(committed.layer_digests.size(), 2u);
  EXPECT_EQ(committed.layer_digests[0], base.layer_digests[0]);
  EXPECT_EQ(committed.names, std::vector<std::string>{"localhost/snap:latest"});
  EXPECT_EQ(committed.config.cmd, std::vector<std::string>{"sh"});
  EXPECT_EQ(committed.config.env, (std::vector<std::string>{"A=1", "B=2"}));
  EXPECT_EQ(committed.size, base.size + 3);
  std::vector<std::string> dirs = f.store.layer_dirs(committed);
  ASSERT_EQ(dirs.size(), 2u);
  EXPECT_EQ(fs::read_file(dirs[1] + "/etc/added"), "new");
  struct stat st;
  ASSERT_EQ(::lstat((dirs[1] + "/etc/passwd").c_str(), &st), 0);
  EXPECT_TRUE(S_ISCHR(st.st_mode));

  f.store.remove("busybox", false);
  EXPECT_TRUE(path_exists(dirs[0]));  // still a layer of snap
  f.store.remove("snap", false);
  EXPECT_EQ(count_entries(f.paths.layers_dir()), 0);
}

TEST(ImageStore, SaveLoadRoundTripKeepsTheImageId) {
  for (auto format : {engine::ArchiveFormat::kDockerArchive, engine::ArchiveFormat::kOciArchive}) {
    StoreFixture f;
    engine::ImageRecord image = f.import("busybox", {R"(CMD ["sh"])", "ENV A=1"});
    std::string archive = f.tmp / "saved.tar";
    f.store.save("busybox", archive, format);
    f.store.remove("busybox", false);
    EXPECT_EQ(count_entries(f.paths.layers_dir()), 0);
    std::vector<engine::ImageRecord> loaded = f.store.load(archive);
    ASSERT_EQ(loaded.size(), 1u);
    EXPECT_EQ(loaded[0].id, image.id);
    EXPECT_EQ(loaded[0].names, image.names);
    EXPECT_EQ(loaded[0].digest, image.digest);
    EXPECT_EQ(loaded[0].config.env, std::vector<std::string>{"A=1"});
    EXPECT_EQ(fs::read_file(f.store.layer_dirs(loaded[0])[0] + "/etc/passwd"),
              "root:x:0:0:root:/root:/bin/sh\n");
    EXPECT_EQ(count_entries(f.paths.root + "/tmp"), 0);
  }
}

// A docker-archive whose layer does not match the config's diff_id: nothing may be loaded.
TEST(ImageStore, LayerDigestMismatchLoadsNothing) {
  StoreFixture f;
  engine::ImageRecord image = f.import("busybox");
  std::string config = f.store.config_bytes(image);
  f.store.remove("busybox", false);

  std::string tampered_layer = f.tmp / "tampered.tar";
  write_tar(tampered_layer, {{.path = "bin/hello", .perm = 0755, .data = "evil"}});
  std::string layer_name = image.layer_digests[0].substr(7) + ".tar";
  nlohmann::json manifest =
      nlohmann::json::array({{{"Config", image.id + ".json"},
                              {"RepoTags", nlohmann::json::array({"busybox:latest"})},
                              {"Layers", nlohmann::json::array({layer_name})}}});
  std::string archive = f.tmp / "bad.tar";
  write_tar(archive, {{.path = image.id + ".json", .data = config},
                      {.path = layer_name, .data = fs::read_file(tampered_layer)},
                      {.path = "manifest.json", .data = manifest.dump()}});
  try {
    f.store.load(archive);
    FAIL() << "a tampered layer was loaded";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("digest mismatch"), std::string::npos) << e.what();
  }
  EXPECT_TRUE(f.store.list().empty());
  EXPECT_EQ(count_entries(f.paths.layers_dir()), 0);
  EXPECT_EQ(count_entries(f.paths.root + "/tmp"), 0);

  // A tampered config (its name is its digest) is refused as well.
  write_tar(archive, {{.path = image.id + ".json", .data = config + " "},
                      {.path = layer_name, .data = fs::read_file(f.rootfs)},
                      {.path = "manifest.json", .data = manifest.dump()}});
  EXPECT_THROW(f.store.load(archive), Error);
  EXPECT_TRUE(f.store.list().empty());
  EXPECT_EQ(count_entries(f.paths.layers_dir()), 0);

  // The same archive with the right layer loads, named the way Docker names it.
  write_tar(archive, {{.path = image.id + ".json", .data = config},
                      {.path = layer_name, .data = fs::read_file(f.rootfs)},
                      {.path = "manifest.json", .data = manifest.dump()}});
  std::vector<engine::ImageRecord> loaded = f.store.load(archive);
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].names, std::vector<std::string>{"docker.io/library/busybox:latest"});
  EXPECT_EQ(f.store.resolve("busybox").id, image.id);
}

TEST(ImageStore, LayerStorePrepareMismatchLeavesNothing) {
  StoreFixture f;
  storage::LayerStore layers(f.paths);
  std::string wrong = "sha256:" + std::string(64, '0');
  EXPECT_THROW(layers.prepare(f.rootfs, wrong), Error);
  EXPECT_EQ(count_entries(f.paths.layers_dir()), 0);
}

}  // namespace
}  // namespace cryo

namespace cryo {
namespace {

// An OCI archive whose "blobs" is a symlink to a host directory must not make load read there,
// even when the host file's digest is the one the index names.
TEST(ImageStore, LoadDoesNotFollowSymlinksInTheArchive) {
  StoreFixture f;
  std::string host_dir = f.tmp / "host";
  std::string manifest = R"({"schemaVersion":2,"config":{"digest":"sha256:x"},"layers":[]})";
  std::string digest = storage::sha256_hex(manifest);
  fs::mkdir_p(host_dir + "/sha256");
  fs::write_file(host_dir + "/sha256/" + digest, manifest);
  std::string index =
      nlohmann::json{{"schemaVersion", 2},
                     {"manifests", nlohmann::json::array({{{"digest", "sha256:" + digest}}})}}
          .dump();
  std::string archive = f.tmp / "evil-oci.tar";
  write_tar(archive, {{.path = "oci-layout", .data = R"({"imageLayoutVersion":"1.0.0"})"},
                      {.path = "index.json", .data = index},
                      {.path = "blobs", .type = AE_IFLNK, .perm = 0777, .link = host_dir}});
  try {
    f.store.load(archive);
    FAIL() << "load followed the blobs symlink";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("blobs is not a directory"), std::string::npos)
        << e.what();
  }
  EXPECT_TRUE(f.store.list().empty());
}

}  // namespace
}  // namespace cryo

namespace cryo {
namespace {

// A multi-platform OCI index: only the linux/amd64 manifest is loaded (the arm64 one names blobs
// the archive does not even contain).
TEST(ImageStore, LoadPicksLinuxAmd64FromAnImageIndex) {
  StoreFixture f;
  std::string layer = fs::read_file(f.rootfs);
  std::string layer_digest = storage::sha256_hex(layer);
  std::string config =
      nlohmann::json{
          {"architecture", "amd64"},
          {"os", "linux"},
          {"config", {{"Cmd", nlohmann::json::array({"hello"})}}},
          {"rootfs",
           {{"type", "layers"}, {"diff_ids", nlohmann::json::array({"sha256:" + layer_digest})}}}}
          .dump();
  std::string config_digest = storage::sha256_hex(config);
  std::string manifest =
      nlohmann::json{
          {"schemaVersion", 2},
          {"config", {{"digest", "sha256:" + config_digest}, {"size", config.size()}}},
          {"layers",
           nlohmann::json::array({{{"digest", "sha256:" + layer_digest}, {"size", layer.size()}}})}}
          .dump();
  std::string manifest_digest = storage::sha256_hex(manifest);
  nlohmann::json platforms =
      nlohmann::json::array({{{"digest", "sha256:" + std::string(64, 'a')},
                              {"platform", {{"os", "linux"}, {"architecture", "arm64"}}}},
                             {{"digest", "sha256:" + manifest_digest},
                              {"platform", {{"os", "linux"}, {"architecture", "amd64"}}}}});
  std::string image_index = nlohmann::json{{"schemaVersion", 2}, {"manifests", platforms}}.dump();
  std::string image_index_digest = storage::sha256_hex(image_index);
  std::string index =
      nlohmann::json{
          {"schemaVersion", 2},
          {"manifests",
           nlohmann::json::array(
               {{{"mediaType", "application/vnd.oci.image.index.v1+json"},
                 {"digest", "sha256:" + image_index_digest},
                 {"annotations", {{"org.opencontainers.image.ref.name", "quay.io/x/multi:1"}}}}})}}
          .dump();
  std::string archive = f.tmp / "multi.tar";
  write_tar(archive, {{.path = "oci-layout", .data = R"({"imageLayoutVersion":"1.0.0"})"},
                      {.path = "index.json", .data = index},
                      {.path = "blobs/sha256/" + image_index_digest, .data = image_index},
                      {.path = "blobs/sha256/" + manifest_digest, .data = manifest},
                      {.path = "blobs/sha256/" + config_digest, .data = config},
                      {.path = "blobs/sha256/" + layer_digest, .data = layer}});
  std::vector<engine::ImageRecord> loaded = f.store.load(archive);
  ASSERT_EQ(loaded.size(), 1u);
  EXPECT_EQ(loaded[0].id, config_digest);
  EXPECT_EQ(loaded[0].names, std::vector<std::string>{"quay.io/x/multi:1"});
  EXPECT_EQ(loaded[0].config.cmd, std::vector<std::string>{"hello"});
  EXPECT_EQ(f.store.resolve("multi:1").id, config_digest);
}

}  // namespace
}  // namespace cryo
