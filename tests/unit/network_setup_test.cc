// Real network setups (root only): netns, bridge, veth, leases and published ports, checked on
// the kernel's actual state, and cleaned up to the last veth and NAT element.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <net/if.h>
#include <netinet/in.h>
#include <sched.h>
#include <signal.h>
#include <stdlib.h>
#include <sys/mount.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <string>
#include <thread>

#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "common/subprocess.h"
#include "common/unique_fd.h"
#include "engine/network/netns.h"
#include "engine/network/network.h"

namespace cryo::engine {
namespace {

class NetworkSetupTest : public ::testing::Test {
 protected:
  void SetUp() override {
    if (::geteuid() != 0) GTEST_SKIP() << "needs root";
    char tmpl[] = "/tmp/cryo-network-test-XXXXXX";
    ASSERT_NE(::mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    paths_.root = dir_ + "/root";
    paths_.runroot = dir_ + "/run";
  }
  void TearDown() override {
    if (dir_.empty()) return;
    // Teardown removed every netns mount, and the netns directory's own bind mount with the last.
    std::string mounts = fs::read_file("/proc/self/mountinfo");
    EXPECT_EQ(mounts.find(dir_), std::string::npos) << mounts;
    if (mounts.find(dir_) != std::string::npos)
      ::umount2((paths_.runroot + "/netns").c_str(), MNT_DETACH);
    fs::remove_all(dir_);
  }

  static bool link_exists(const std::string& name) { return ::if_nametoindex(name.c_str()) != 0; }

  std::string dir_;
  StorePaths paths_;
};

// Runs busybox httpd inside the netns; returns its pid.
pid_t start_httpd_in(const std::string& netns_path, const std::string& docroot, int port) {
  pid_t pid = ::fork();
  if (pid == 0) {
    int fd = ::open(netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) < 0) ::_exit(120);
    std::string p = std::to_string(port);
    ::execlp("busybox", "busybox", "httpd", "-f", "-p", p.c_str(), "-h", docroot.c_str(),
             static_cast<char*>(nullptr));
    ::_exit(127);
  }
  return pid;
}

// Fetches url with curl, retrying only while the connection is refused (the server is starting;
// bounded, never a timing assertion). Anything else, e.g. a timeout, fails at once.
std::string fetch(const std::string& url) {
  ProcessResult result;
  for (int i = 0; i < 200; ++i) {
    result = run_process({"curl", "-s", "--max-time", "10", url});
    if (result.exit_code != 7) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  if (result.exit_code == 0) return result.output;
  return "curl failed: " + result.output + " exit " + std::to_string(result.exit_code);
}

std::string nft_map(const std::string& map) {
  return run_process({"nft", "list", "map", "ip", "cryo", map}).output;
}

TEST_F(NetworkSetupTest, NoneModeHasOnlyLoopbackAndIsRemoved) {
  NetworkManager manager(paths_);
  std::string id = random_hex(32);
  NetworkStatus status = manager.setup(id, NetworkRequest{.mode = "none"});
  EXPECT_EQ(status.netns_path, paths_.runroot + "/netns/" + id);
  ProcessResult inside =
      run_process({"nsenter", "--net=" + status.netns_path, "ip", "-o", "link", "show"});
  ASSERT_EQ(inside.exit_code, 0) << inside.output;
  EXPECT_NE(inside.output.find("lo: <LOOPBACK,UP"), std::string::npos) << inside.output;
  EXPECT_EQ(inside.output.find("eth0"), std::string::npos) << inside.output;
  manager.teardown(id, status);
  EXPECT_FALSE(fs::exists(status.netns_path));
  manager.teardown(id, status);  // twice is fine
}

TEST_F(NetworkSetupTest, HostModeCreatesNothing) {
  NetworkManager manager(paths_);
  std::string id = random_hex(32);
  NetworkStatus status =
      manager.setup(id, NetworkRequest{.mode = "host", .ports = {parse_publish("8080:80")}});
  EXPECT_EQ(status.mode, "host");
  EXPECT_TRUE(status.netns_path.empty());
  EXPECT_FALSE(fs::exists(paths_.runroot + "/netns/" + id));
  manager.teardown(id, status);
}

TEST_F(NetworkSetupTest, BridgePublishesPortsAndTearsDownExactly) {
  NetworkManager manager(paths_);
  std::string id = random_hex(32);
  std::string docroot = dir_ + "/www";
  fs::mkdir_p(docroot);
  std::string marker = "hello from " + id + "\n";
  fs::write_file(docroot + "/index.html", marker);

  NetworkRequest request;
  request.ports = {parse_publish("127.0.0.1::8080")};  // a free high host port, loopback only
  NetworkStatus status = manager.setup(id, request);
  ASSERT_EQ(status.ports.size(), 1u);
  uint16_t host_port = status.ports[0].host_port;
  EXPECT_NE(host_port, 0);
  EXPECT_EQ(status.interface, "eth0");
  EXPECT_TRUE(starts_with(status.ip, "10.88.")) << status.ip;
  EXPECT_EQ(status.gateway, "10.88.0.1");
  EXPECT_EQ(status.prefix_length, 16);
  EXPECT_TRUE(link_exists("cryo0"));
  EXPECT_TRUE(link_exists(status.host_veth));
  EXPECT_NE(nft_map("tcp_addr")
                .find("127.0.0.1 . " + std::to_string(host_port) + " : " + status.ip + " . 8080"),
            std::string::npos)
      << nft_map("tcp_addr");

  ProcessResult inside =
      run_process({"nsenter", "--net=" + status.netns_path, "ip", "-o", "addr", "show", "eth0"});
  EXPECT_NE(inside.output.find(status.ip + "/16"), std::string::npos) << inside.output;
  ProcessResult link =
      run_process({"nsenter", "--net=" + status.netns_path, "ip", "-o", "link", "show", "eth0"});
  EXPECT_NE(link.output.find(status.mac), std::string::npos) << link.output;

  pid_t httpd = start_httpd_in(status.netns_path, docroot, 8080);
  ASSERT_GT(httpd, 0);
  std::string via_port = fetch("http://127.0.0.1:" + std::to_string(host_port) + "/index.html");
  std::string via_ip = fetch("http://" + status.ip + ":8080/index.html");
  ::kill(httpd, SIGKILL);
  ::waitpid(httpd, nullptr, 0);
  EXPECT_EQ(via_port, marker) << status.ip << " " << status.mac << " port " << host_port << "\n"
                              << run_process({"ip", "neigh"}).output;
  EXPECT_EQ(via_ip, marker);

  // The lease is persistent: a second setup (restart) gets the same IP and MAC back.
  manager.teardown(id, status);
  EXPECT_FALSE(link_exists(status.host_veth));
  EXPECT_FALSE(fs::exists(status.netns_path));
  EXPECT_EQ(nft_map("tcp_addr").find("127.0.0.1 . " + std::to_string(host_port) + " "),
            std::string::npos);
  NetworkStatus again = manager.setup(id, request_from_status(status));
  EXPECT_EQ(again.ip, status.ip);
  EXPECT_EQ(again.mac, status.mac);
  EXPECT_EQ(again.ports[0].host_port, host_port);
  manager.teardown(id, again);
  manager.release(id);
  std::string leases = fs::read_file(paths_.networks_dir() + "/cryo0/leases.json");
  EXPECT_EQ(leases.find(id), std::string::npos) << leases;
}

TEST_F(NetworkSetupTest, HostPortInUseFailsAndLeavesNothing) {
  // A listening socket on the host holds the port.
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&address), sizeof address), 0);
  ASSERT_EQ(::listen(listener.get(), 1), 0);
  socklen_t length = sizeof address;
  ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&address), &length);
  uint16_t busy = ntohs(address.sin_port);

  NetworkManager manager(paths_);
  std::string id = random_hex(32);
  NetworkRequest request;
  request.ports = {parse_publish("127.0.0.1:" + std::to_string(busy) + ":80")};
  try {
    manager.setup(id, request);
    ADD_FAILURE() << "setup succeeded on a busy port";
  } catch (const ExitCodeError& e) {
    EXPECT_EQ(e.exit_code(), 125);
    EXPECT_NE(std::string(e.what()).find("address already in use"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(manager.netns_path(id)));
  EXPECT_FALSE(link_exists(NetworkManager::host_veth_name(id)));
  auto leases = fs::read_file_if_exists(paths_.networks_dir() + "/cryo0/leases.json");
  EXPECT_TRUE(!leases || leases->find(id) == std::string::npos);
}

TEST_F(NetworkSetupTest, SecondContainerCannotPublishTheSameHostPort) {
  NetworkManager manager(paths_);
  std::string first = random_hex(32), second = random_hex(32);
  NetworkRequest request;
  request.ports = {parse_publish("127.0.0.1::80")};
  NetworkStatus a = manager.setup(first, request);
  NetworkRequest clash;
  clash.ports = {a.ports[0]};
  clash.ports[0].container_port = 81;
  try {
    manager.setup(second, clash);
    ADD_FAILURE() << "two containers published the same host port";
  } catch (const ExitCodeError& e) {
    EXPECT_NE(std::string(e.what()).find("address already in use"), std::string::npos) << e.what();
  }
  EXPECT_FALSE(fs::exists(manager.netns_path(second)));
  // The first container's rule is untouched by the failed second setup.
  EXPECT_NE(nft_map("tcp_addr").find(" . " + std::to_string(a.ports[0].host_port) + " : " + a.ip),
            std::string::npos);
  manager.teardown(first, a);
  manager.release(first);
}

TEST_F(NetworkSetupTest, StaticIpIsHonouredAndExclusive) {
  NetworkManager manager(paths_);
  std::string first = random_hex(32), second = random_hex(32);
  NetworkRequest request;
  // Random within 10.88.128.0/17, so that concurrent runs of this test do not ask for the same.
  unsigned random = std::stoul(random_hex(2), nullptr, 16);
  std::string static_ip =
      "10.88." + std::to_string(128 + (random >> 8) % 127) + "." + std::to_string(2 + random % 250);
  request.static_ip = static_ip;
  request.static_mac = "02:42:ac:11:00:99";
  NetworkStatus a = manager.setup(first, request);
  EXPECT_EQ(a.ip, static_ip);
  EXPECT_EQ(a.mac, "02:42:ac:11:00:99");
  EXPECT_THROW(manager.setup(second, request), Error);
  EXPECT_FALSE(fs::exists(manager.netns_path(second)));
  manager.teardown(first, a);
  manager.release(first);
}

TEST_F(NetworkSetupTest, ContainersReachEachOtherOverTheBridge) {
  NetworkManager manager(paths_);
  std::string server = random_hex(32), client = random_hex(32);
  std::string docroot = dir_ + "/www";
  fs::mkdir_p(docroot);
  fs::write_file(docroot + "/index.html", "peer\n");
  NetworkStatus a = manager.setup(server, NetworkRequest{});
  NetworkStatus b = manager.setup(client, NetworkRequest{});
  EXPECT_NE(a.ip, b.ip);
  pid_t httpd = start_httpd_in(a.netns_path, docroot, 8080);
  ProcessResult result;
  for (int i = 0; i < 200; ++i) {
    result = run_process({"nsenter", "--net=" + b.netns_path, "curl", "-s", "--max-time", "10",
                          "http://" + a.ip + ":8080/index.html"});
    if (result.exit_code != 7) break;
    std::this_thread::sleep_for(std::chrono::milliseconds(25));
  }
  ::kill(httpd, SIGKILL);
  ::waitpid(httpd, nullptr, 0);
  EXPECT_EQ(result.output, "peer\n");
  manager.teardown(server, a);
  manager.teardown(client, b);
  manager.release(server);
  manager.release(client);
}

TEST_F(NetworkSetupTest, PublishedPortReachableFromContainersIncludingItself) {
  // Published on the bridge's gateway address (internal to this machine): another container
  // reaches it through DNAT, and so does the container itself (hairpin on its bridge port).
  NetworkManager manager(paths_);
  std::string server = random_hex(32), client = random_hex(32);
  std::string docroot = dir_ + "/www";
  fs::mkdir_p(docroot);
  fs::write_file(docroot + "/index.html", "published\n");
  NetworkRequest request;
  request.ports = {parse_publish("10.88.0.1::8080")};
  NetworkStatus a = manager.setup(server, request);
  NetworkStatus b = manager.setup(client, NetworkRequest{});
  std::string url = "http://10.88.0.1:" + std::to_string(a.ports[0].host_port) + "/index.html";
  pid_t httpd = start_httpd_in(a.netns_path, docroot, 8080);
  auto fetch_from = [&](const std::string& netns) {
    ProcessResult result;
    for (int i = 0; i < 200; ++i) {
      result = run_process({"nsenter", "--net=" + netns, "curl", "-s", "--max-time", "10", url});
      if (result.exit_code != 7) break;
      std::this_thread::sleep_for(std::chrono::milliseconds(25));
    }
    return result.output;
  };
  std::string from_other = fetch_from(b.netns_path);
  std::string from_itself = fetch_from(a.netns_path);
  ::kill(httpd, SIGKILL);
  ::waitpid(httpd, nullptr, 0);
  EXPECT_EQ(from_other, "published\n");
  EXPECT_EQ(from_itself, "published\n");
  manager.teardown(server, a);
  manager.teardown(client, b);
  manager.release(server);
  manager.release(client);
}

TEST_F(NetworkSetupTest, UdpPortIsPublished) {
  NetworkManager manager(paths_);
  std::string id = random_hex(32);
  NetworkRequest request;
  request.ports = {parse_publish("127.0.0.1::5353/udp")};
  NetworkStatus status = manager.setup(id, request);
  ASSERT_EQ(status.ports.size(), 1u);
  EXPECT_EQ(status.ports[0].protocol, "udp");
  uint16_t host_port = status.ports[0].host_port;
  EXPECT_NE(nft_map("udp_addr")
                .find("127.0.0.1 . " + std::to_string(host_port) + " : " + status.ip + " . 5353"),
            std::string::npos);
  // A UDP server in the container answering every datagram upper-cased.
  pid_t server = ::fork();
  if (server == 0) {
    int fd = ::open(status.netns_path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0 || ::setns(fd, CLONE_NEWNET) < 0) ::_exit(120);
    ::execlp("python3", "python3", "-c",
             "import socket\n"
             "s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
             "s.bind(('0.0.0.0', 5353))\n"
             "while True:\n"
             "    d, a = s.recvfrom(100)\n"
             "    s.sendto(d.upper(), a)\n",
             static_cast<char*>(nullptr));
    ::_exit(127);
  }
  UniqueFd client(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  timeval wait{0, 200000};
  ::setsockopt(client.get(), SOL_SOCKET, SO_RCVTIMEO, &wait, sizeof wait);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_port = htons(host_port);
  to.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  std::string reply;
  // Datagrams sent before the server binds are lost: resend until one is answered (bounded).
  for (int attempt = 0; attempt < 100 && reply.empty(); ++attempt) {
    ::sendto(client.get(), "ping", 4, 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
    char buf[16];
    ssize_t n = ::recv(client.get(), buf, sizeof buf, 0);
    if (n > 0) reply.assign(buf, static_cast<size_t>(n));
  }
  ::kill(server, SIGKILL);
  ::waitpid(server, nullptr, 0);
  EXPECT_EQ(reply, "PING");
  manager.teardown(id, status);
  manager.release(id);
  EXPECT_EQ(nft_map("udp_addr").find("127.0.0.1 . " + std::to_string(host_port) + " "),
            std::string::npos);
}

}  // namespace
}  // namespace cryo::engine
