// Container records, lookup, naming, OCI spec generation and cgroups of the runtime.
#include <gtest/gtest.h>
#include <sched.h>
#include <signal.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include <regex>

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "engine/container/container.h"
#include "engine/container/manager.h"
#include "engine/container/oci_spec.h"
#include "engine/runtime/cgroup.h"
#include "engine/runtime/runtime.h"

namespace cryo::engine {
namespace {

class TempStore : public ::testing::Test {
 protected:
  void SetUp() override {
    char tmpl[] = "/tmp/cryo-runtime-unit.XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    paths_ = {dir_ + "/root", dir_ + "/run"};
  }
  void TearDown() override { fs::remove_all(dir_); }

  ContainerRecord make(const std::string& name) {
    ContainerRecord r;
    r.name = name;
    r.image_id = std::string(64, 'a');
    r.image_name = "localhost/busybox:latest";
    r.config.cmd = {"sleep", "1"};
    return ContainerStore(paths_).create(r);
  }

  std::string dir_;
  StorePaths paths_;
};

template <typename Fn>
int exit_code_of(Fn&& fn, std::string* message = nullptr) {
  try {
    fn();
  } catch (const ExitCodeError& e) {
    if (message) *message = e.what();
    return e.exit_code();
  }
  return 0;
}

TEST(ContainerNames, GeneratedNamesAreAdjectiveUnderscoreSurname) {
  std::regex pattern("^[a-z]+_[a-z]+$");
  for (int i = 0; i < 50; ++i) {
    std::string name = generate_container_name();
    EXPECT_TRUE(std::regex_match(name, pattern)) << name;
    EXPECT_TRUE(valid_container_name(name)) << name;
  }
}

TEST(ContainerNames, ValidationFollowsPodman) {
  EXPECT_TRUE(valid_container_name("web"));
  EXPECT_TRUE(valid_container_name("a.b-c_d9"));
  EXPECT_FALSE(valid_container_name(""));
  EXPECT_FALSE(valid_container_name("-web"));
  EXPECT_FALSE(valid_container_name("we b"));
  EXPECT_FALSE(valid_container_name("a/b"));
}

TEST_F(TempStore, CreateWritesRecordWithFullIdAndDirectories) {
  ContainerRecord r = make("");
  EXPECT_TRUE(std::regex_match(r.id, std::regex("^[0-9a-f]{64}$"))) << r.id;
  EXPECT_FALSE(r.name.empty());
  EXPECT_GT(r.created_ns, 0);
  EXPECT_TRUE(fs::exists(paths_.container_dir(r.id) + "/container.json"));
  EXPECT_TRUE(fs::exists(paths_.run_container_dir(r.id)));
  ContainerRecord loaded = ContainerStore(paths_).load(r.id);
  EXPECT_EQ(loaded.name, r.name);
  EXPECT_EQ(loaded.config.cmd, r.config.cmd);
  EXPECT_EQ(loaded.state, ContainerState::kCreated);
}

TEST_F(TempStore, NameInUseIsPodmansError) {
  ContainerRecord first = make("web");
  std::string message;
  EXPECT_EQ(exit_code_of([&] { make("web"); }, &message), 125);
  EXPECT_EQ(message,
            "creating container storage: the container name \"web\" is already in use by " +
                first.id +
                ". You have to remove that container to be able to reuse that name: that "
                "name is already in use");
  EXPECT_EQ(ContainerStore(paths_).list().size(), 1u);
  EXPECT_EQ(exit_code_of([&] { make("bad name"); }), 125);
}

TEST_F(TempStore, LookupByIdPrefixAndName) {
  ContainerStore store(paths_);
  ContainerRecord a = make("alpha");
  ContainerRecord b = make("beta");
  EXPECT_EQ(store.resolve_id(a.id), a.id);
  EXPECT_EQ(store.resolve_id("alpha"), a.id);
  EXPECT_EQ(store.resolve_id("beta"), b.id);
  // The shortest unique prefix of a's ID.
  size_t n = 1;
  while (b.id.compare(0, n, a.id, 0, n) == 0) ++n;
  EXPECT_EQ(store.resolve_id(a.id.substr(0, n)), a.id);
  std::string message;
  EXPECT_EQ(exit_code_of([&] { store.resolve_id("gamma"); }, &message), 125);
  EXPECT_EQ(message, "no container with name or ID \"gamma\" found: no such container");
}

TEST_F(TempStore, AmbiguousPrefixIsAnError) {
  ContainerStore store(paths_);
  ContainerRecord a = make("one");
  // A second record whose ID shares a's first 20 characters.
  ContainerRecord b = a;
  b.id = a.id.substr(0, 20) + std::string(44, a.id[20] == '0' ? '1' : '0');
  b.name = "two";
  fs::mkdir_p(paths_.container_dir(b.id));
  store.save(b);
  std::string message;
  EXPECT_EQ(exit_code_of([&] { store.resolve_id(a.id.substr(0, 10)); }, &message), 125);
  EXPECT_NE(message.find("more than one result"), std::string::npos) << message;
  // b differs from a at index 20 by construction: 21 characters are unique.
  EXPECT_EQ(store.resolve_id(a.id.substr(0, 21)), a.id);
}

TEST_F(TempStore, RecordJsonRoundTripKeepsEveryField) {
  ContainerRecord r = make("full");
  r.config.entrypoint = {"/bin/sh", "-c"};
  r.config.env = {"A=1", "PATH=/bin"};
  r.config.tty = true;
  r.config.interactive = true;
  r.config.auto_remove = true;
  r.config.mounts = {{"/src", "/dst", "", true}, {"/v/_data", "/data", "vol", false}};
  r.config.ports = {{"127.0.0.1", 8080, 80, "tcp"}};
  r.config.memory_limit = 1 << 20;
  r.config.pids_limit = 10;
  r.config.labels = {{"k", "v"}};
  r.state = ContainerState::kExited;
  r.pid = 42;
  r.monitor_pid = 41;
  r.monitor_start_time = 12345;
  r.exit_code = 137;
  r.started_ns = 1;
  r.finished_ns = 2;
  r.network_status = {{"mode", "bridge"}, {"ip", "10.88.0.5"}};
  r.checkpointed = true;
  r.checkpointed_ns = 3;
  r.restored = true;
  r.restored_ns = 4;
  ContainerRecord back = container_record_from_json(to_json(r));
  EXPECT_EQ(to_json(back), to_json(r));
  EXPECT_EQ(back.config.mounts[1].volume_name, "vol");
  EXPECT_EQ(back.state, ContainerState::kExited);
  EXPECT_EQ(back.full_command(), (std::vector<std::string>{"/bin/sh", "-c", "sleep", "1"}));
}

TEST(ContainerTime, Rfc3339WithNanoseconds) {
  EXPECT_EQ(format_rfc3339_ns(1795377600123456789LL), "2026-11-22T20:00:00.123456789+00:00");
  EXPECT_EQ(format_rfc3339_ns(0), "1970-01-01T00:00:00.000000000+00:00");
}

TEST(ContainerProcess, StartTimeIdentifiesAProcess) {
  uint64_t mine = process_start_time(::getpid());
  EXPECT_GT(mine, 0u);
  EXPECT_EQ(process_start_time(::getpid()), mine);
  pid_t child = ::fork();
  if (child == 0) ::_exit(0);
  ASSERT_GT(child, 0);
  ASSERT_EQ(::waitpid(child, nullptr, 0), child);
  EXPECT_EQ(process_start_time(child), 0u);  // reaped: gone
}

TEST(ContainerRequests, MemorySizes) {
  EXPECT_EQ(parse_memory_size("1048576"), 1048576);
  EXPECT_EQ(parse_memory_size("64m"), 64 << 20);
  EXPECT_EQ(parse_memory_size("1g"), 1LL << 30);
  EXPECT_EQ(parse_memory_size("512k"), 512 << 10);
  EXPECT_EQ(parse_memory_size("1.5g"), 3LL << 29);
  EXPECT_EQ(parse_memory_size("2MB"), 2 << 20);
  EXPECT_EQ(exit_code_of([] { parse_memory_size("lots"); }), 125);
  EXPECT_EQ(exit_code_of([] { parse_memory_size("5x"); }), 125);
}

TEST_F(TempStore, VolumeSpecs) {
  MountRequest named = parse_volume("data:/var/data", paths_);
  EXPECT_EQ(named.volume_name, "data");
  EXPECT_EQ(named.source, paths_.root + "/volumes/data/_data");
  EXPECT_EQ(named.destination, "/var/data");
  EXPECT_FALSE(named.read_only);
  MountRequest bind = parse_volume(dir_ + ":/h:ro", paths_);
  EXPECT_EQ(bind.source, dir_);
  EXPECT_TRUE(bind.volume_name.empty());
  EXPECT_TRUE(bind.read_only);
  EXPECT_EQ(exit_code_of([&] { parse_volume("data", paths_); }), 125);
  EXPECT_EQ(exit_code_of([&] { parse_volume("data:relative", paths_); }), 125);
  EXPECT_EQ(exit_code_of([&] { parse_volume("/no/such/dir:/x", paths_); }), 125);
  EXPECT_EQ(exit_code_of([&] { parse_volume("data:/x:bogus", paths_); }), 125);
}

TEST_F(TempStore, UsersResolveThroughTheImagePasswdAndGroup) {
  std::string upper = dir_ + "/upper", lower = dir_ + "/lower";
  fs::mkdir_p(upper + "/etc");
  fs::mkdir_p(lower + "/etc");
  fs::write_file(lower + "/etc/passwd", "root:x:0:0:root:/root:/bin/sh\n");
  // The highest layer wins.
  fs::write_file(upper + "/etc/passwd",
                 "root:x:0:0:root:/root:/bin/sh\nwww:x:33:44:www:/var/www:/bin/false\n");
  fs::write_file(upper + "/etc/group", "root:x:0:\nweb:x:44:\nextra:x:50:www,other\n");
  std::vector<std::string> layers = {upper, lower};
  ResolvedUser www = resolve_user("www", layers);
  EXPECT_EQ(www.uid, 33u);
  EXPECT_EQ(www.gid, 44u);
  EXPECT_EQ(www.home, "/var/www");
  EXPECT_EQ(www.additional_gids, std::vector<gid_t>{50});
  ResolvedUser numeric = resolve_user("1000:extra", layers);
  EXPECT_EQ(numeric.uid, 1000u);
  EXPECT_EQ(numeric.gid, 50u);
  ResolvedUser root = resolve_user("", layers);
  EXPECT_EQ(root.uid, 0u);
  EXPECT_EQ(root.home, "/root");
  EXPECT_EQ(exit_code_of([&] { resolve_user("nobody-here", layers); }), 125);
  EXPECT_EQ(exit_code_of([&] { resolve_user("www:nogroup", layers); }), 125);
}

SpecInputs spec_inputs(const std::string& netns) {
  SpecInputs in;
  in.lower_dirs = {"/l2", "/l1"};
  in.upper_dir = "/c/upper";
  in.work_dir = "/c/work";
  in.rootfs_dir = "/c/merged";
  in.user.uid = 33;
  in.user.gid = 44;
  in.netns_path = netns;
  in.hosts_file = "/c/userdata/hosts";
  in.resolv_file = "/c/userdata/resolv.conf";
  in.hostname_file = "/c/userdata/hostname";
  return in;
}

TEST(OciSpec, GeneratedSpecRecordsTheSandbox) {
  ContainerRecord r;
  r.id = std::string(64, 'b');
  r.config.entrypoint = {"httpd"};
  r.config.cmd = {"-f", "-p", "8080"};
  r.config.env = {"PATH=/bin", "container=podman"};
  r.config.working_dir = "/www";
  r.config.hostname = "bbbbbbbbbbbb";
  r.config.memory_limit = 64 << 20;
  r.config.pids_limit = 32;
  r.config.mounts = {{"/host", "/data", "", true}};
  nlohmann::json spec = make_oci_spec(r, spec_inputs("/run/netns/x"));

  const auto& process = spec["process"];
  EXPECT_EQ(process["args"], nlohmann::json({"httpd", "-f", "-p", "8080"}));
  EXPECT_EQ(process["cwd"], "/www");
  EXPECT_EQ(process["user"]["uid"], 33);
  EXPECT_EQ(process["user"]["gid"], 44);
  std::vector<std::string> caps = {"CAP_CHOWN",   "CAP_DAC_OVERRIDE", "CAP_FOWNER",
                                   "CAP_FSETID",  "CAP_KILL",         "CAP_NET_BIND_SERVICE",
                                   "CAP_SETFCAP", "CAP_SETGID",       "CAP_SETPCAP",
                                   "CAP_SETUID",  "CAP_SYS_CHROOT"};
  for (const char* set : {"bounding", "effective", "permitted"})
    EXPECT_EQ(process["capabilities"][set].get<std::vector<std::string>>(), caps) << set;
  struct rlimit nofile;
  ASSERT_EQ(::getrlimit(RLIMIT_NOFILE, &nofile), 0);
  bool saw_nofile = false;
  for (const auto& rl : process["rlimits"]) {
    if (rl["type"] != "RLIMIT_NOFILE") continue;
    saw_nofile = true;
    EXPECT_LE(rl["hard"].get<rlim_t>(), nofile.rlim_max);
    EXPECT_LE(rl["soft"].get<rlim_t>(), rl["hard"].get<rlim_t>());
  }
  EXPECT_TRUE(saw_nofile);

  EXPECT_EQ(spec["root"]["path"], "/c/merged");
  EXPECT_EQ(spec["hostname"], "bbbbbbbbbbbb");
  EXPECT_EQ(spec["annotations"][kAnnotationLowerDirs], "/l2:/l1");
  std::map<std::string, nlohmann::json> mounts;
  for (const auto& m : spec["mounts"]) mounts[m["destination"]] = m;
  for (const char* d : {"/proc", "/dev", "/dev/pts", "/dev/shm", "/dev/mqueue", "/sys",
                        "/etc/hosts", "/etc/resolv.conf", "/etc/hostname", "/data"})
    EXPECT_TRUE(mounts.count(d)) << d;
  auto options = [&](const char* d) {
    return mounts[d]["options"].get<std::vector<std::string>>();
  };
  auto has = [](const std::vector<std::string>& v, const char* o) {
    return std::find(v.begin(), v.end(), o) != v.end();
  };
  EXPECT_TRUE(has(options("/dev/pts"), "newinstance"));
  EXPECT_TRUE(has(options("/dev/pts"), "ptmxmode=0666"));
  EXPECT_TRUE(has(options("/sys"), "ro"));
  EXPECT_TRUE(has(options("/data"), "ro"));
  EXPECT_EQ(mounts["/data"]["source"], "/host");
  EXPECT_EQ(mounts["/etc/hosts"]["source"], "/c/userdata/hosts");

  const auto& linux = spec["linux"];
  std::map<std::string, nlohmann::json> namespaces;
  for (const auto& ns : linux["namespaces"]) namespaces[ns["type"]] = ns;
  for (const char* t : {"pid", "network", "ipc", "uts", "mount", "cgroup", "time"})
    EXPECT_TRUE(namespaces.count(t)) << t;
  EXPECT_EQ(namespaces["network"]["path"], "/run/netns/x");
  EXPECT_EQ(linux["resources"]["memory"]["limit"], 64 << 20);
  EXPECT_EQ(linux["resources"]["pids"]["limit"], 32);
  auto masked = linux["maskedPaths"].get<std::vector<std::string>>();
  for (const char* p : {"/proc/kcore", "/proc/keys", "/proc/timer_list", "/proc/sched_debug",
                        "/sys/firmware", "/proc/scsi", "/proc/acpi"})
    EXPECT_TRUE(has(masked, p)) << p;
  auto readonly = linux["readonlyPaths"].get<std::vector<std::string>>();
  for (const char* p : {"/proc/sys", "/proc/sysrq-trigger", "/proc/irq", "/proc/bus", "/proc/fs"})
    EXPECT_TRUE(has(readonly, p)) << p;

  // A netns joined by path is not created; the others are.
  int flags = sandbox_clone_flags(spec);
  EXPECT_EQ(flags, CLONE_NEWPID | CLONE_NEWNS | CLONE_NEWUTS | CLONE_NEWIPC);
}

TEST(OciSpec, HostNetworkSharesTheHostNamespace) {
  ContainerRecord r;
  r.id = std::string(64, 'c');
  r.config.cmd = {"true"};
  nlohmann::json spec = make_oci_spec(r, spec_inputs(""));
  for (const auto& ns : spec["linux"]["namespaces"]) EXPECT_NE(ns["type"], "network");
  EXPECT_EQ(sandbox_clone_flags(spec) & CLONE_NEWNET, 0);
  SpecInputs none = spec_inputs("");
  none.new_netns_without_path = true;
  EXPECT_NE(sandbox_clone_flags(make_oci_spec(r, none)) & CLONE_NEWNET, 0);
}

TEST(Cgroups, NamePerEngineStore) {
  std::string id(64, 'a');
  EXPECT_EQ(container_cgroup_name({"/var/lib/cryo", "/run/cryo"}, id), "cryo/" + id);
  EXPECT_EQ(container_cgroup_name({"/elsewhere", "/run/cryo/"}, id), "cryo/" + id);
  std::string a = container_cgroup_name({"/tmp/a/root", "/tmp/a/run"}, id);
  std::string b = container_cgroup_name({"/tmp/b/root", "/tmp/b/run"}, id);
  EXPECT_NE(a, b);
  EXPECT_EQ(a, container_cgroup_name({"/tmp/a/root", "/tmp/a/./run/"}, id));
  for (const std::string& name : {a, b}) {
    EXPECT_TRUE(starts_with(name, "cryo-")) << name;
    EXPECT_EQ(name.substr(name.find('/') + 1), id);
    EXPECT_EQ(name.find('/'), std::string("cryo-").size() + 12) << name;
  }
}

TEST(Cgroups, CreateLimitFreezeThawRemove) {
  if (::geteuid() != 0) GTEST_SKIP() << "needs root";
  std::string id = "unit-" + random_hex(8);
  // A store of its own: its parent cgroup goes with its only container.
  std::string name = container_cgroup_name({"/nonexistent/root", "/nonexistent/run-" + id}, id);
  ContainerCgroup cg = ContainerCgroup::create(name, {32 << 20, 16});
  std::string freezer = cg.freezer_path();
  ASSERT_FALSE(freezer.empty());
  for (const auto& dir : cg.dirs()) EXPECT_TRUE(fs::exists(dir)) << dir;
  bool v2 = ContainerCgroup::host_is_pure_cgroup2();
  std::string memory_dir, pids_dir;
  for (const auto& dir : cg.dirs()) {
    if (v2 || dir.find("/memory/") != std::string::npos) memory_dir = dir;
    if (v2 || dir.find("/pids/") != std::string::npos) pids_dir = dir;
  }
  EXPECT_EQ(std::string(
                trim(fs::read_file(memory_dir + (v2 ? "/memory.max" : "/memory.limit_in_bytes")))),
            std::to_string(32 << 20));
  EXPECT_EQ(std::string(trim(fs::read_file(pids_dir + "/pids.max"))), "16");

  pid_t child = ::fork();
  if (child == 0) {
    for (;;) ::pause();
  }
  ASSERT_GT(child, 0);
  cg.add_process(child);
  EXPECT_NE(fs::read_file(freezer + "/cgroup.procs").find(std::to_string(child)),
            std::string::npos);
  {
    FrozenCgroup frozen(freezer);
    std::string state =
        fs::exists(freezer + "/freezer.state")
            ? std::string(trim(fs::read_file(freezer + "/freezer.state")))
            : (fs::read_file(freezer + "/cgroup.events").find("frozen 1") != std::string::npos
                   ? "FROZEN"
                   : "THAWED");
    EXPECT_EQ(state, "FROZEN");
  }
  if (fs::exists(freezer + "/freezer.state")) {
    EXPECT_EQ(std::string(trim(fs::read_file(freezer + "/freezer.state"))), "THAWED");
  }
  // remove() ends what is still inside and deletes every directory.
  cg.remove();
  int status = 0;
  ASSERT_EQ(::waitpid(child, &status, 0), child);
  EXPECT_TRUE(WIFSIGNALED(status) && WTERMSIG(status) == SIGKILL);
  for (const auto& dir : cg.dirs()) {
    EXPECT_FALSE(fs::exists(dir)) << dir;
    EXPECT_FALSE(fs::exists(dir.substr(0, dir.rfind('/')))) << "parent of " << dir;
  }
}

}  // namespace
}  // namespace cryo::engine
