// Pure logic of the network part: -p parsing, IP leases and published-port records, status JSON.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <set>
#include <string>

#include "common/error.h"
#include "common/fs.h"
#include "engine/network/active_addresses.h"
#include "engine/network/leases.h"
#include "engine/network/netlink.h"
#include "engine/network/network.h"
#include "engine/network/ports.h"

namespace cryo::engine {
namespace {

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/cryo-net-unit-XXXXXX";
    if (!::mkdtemp(tmpl)) throw Error("mkdtemp failed");
    path_ = tmpl;
  }
  ~TempDir() { fs::remove_all(path_); }
  const std::string& path() const { return path_; }

 private:
  std::string path_;
};

TEST(ParsePublish, AllForms) {
  PortMapping p = parse_publish("8080");
  EXPECT_EQ(p.host_port, 0);  // Podman: a lone port is the container port, host port random
  EXPECT_EQ(p.container_port, 8080);
  EXPECT_EQ(p.protocol, "tcp");
  EXPECT_EQ(p.host_ip, "");

  p = parse_publish("8080:80");
  EXPECT_EQ(p.host_port, 8080);
  EXPECT_EQ(p.container_port, 80);

  p = parse_publish("127.0.0.1:8080:80");
  EXPECT_EQ(p.host_ip, "127.0.0.1");
  EXPECT_EQ(p.host_port, 8080);
  EXPECT_EQ(p.container_port, 80);

  p = parse_publish("8080:80/udp");
  EXPECT_EQ(p.protocol, "udp");
  EXPECT_EQ(p.host_port, 8080);

  p = parse_publish(":80");
  EXPECT_EQ(p.host_port, 0);
  EXPECT_EQ(p.container_port, 80);

  p = parse_publish("127.0.0.1::80/tcp");
  EXPECT_EQ(p.host_ip, "127.0.0.1");
  EXPECT_EQ(p.host_port, 0);

  p = parse_publish("0.0.0.0:9000:90");
  EXPECT_EQ(p.host_ip, "");  // all addresses
}

TEST(ParsePublish, Errors) {
  for (const char* bad : {"", "abc", "0", "70000", "8080:0", "80/icmp", "1:2:3:4", "x:80",
                          "300.1.1.1:80:80", "8080:", "-1"}) {
    EXPECT_THROW(parse_publish(bad), Error) << bad;
  }
  try {
    parse_publish("8080-8081:80-81");
    ADD_FAILURE();
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("not supported yet"), std::string::npos);
  }
}

TEST(NetworkStatusJson, RoundTrip) {
  NetworkStatus s;
  s.mode = "bridge";
  s.netns_path = "/run/cryo/netns/abc";
  s.interface = "eth0";
  s.host_veth = "vethabc";
  s.ip = "10.88.0.5";
  s.prefix_length = 16;
  s.gateway = "10.88.0.1";
  s.mac = "02:11:22:33:44:55";
  s.ports = {parse_publish("127.0.0.1:8080:80/udp")};
  NetworkStatus back = network_status_from_json(nlohmann::json::parse(to_json(s).dump()));
  EXPECT_EQ(back.mode, s.mode);
  EXPECT_EQ(back.netns_path, s.netns_path);
  EXPECT_EQ(back.host_veth, s.host_veth);
  EXPECT_EQ(back.ip, s.ip);
  EXPECT_EQ(back.prefix_length, 16);
  EXPECT_EQ(back.gateway, s.gateway);
  EXPECT_EQ(back.mac, s.mac);
  ASSERT_EQ(back.ports.size(), 1u);
  EXPECT_EQ(back.ports[0].host_ip, "127.0.0.1");
  EXPECT_EQ(back.ports[0].host_port, 8080);
  EXPECT_EQ(back.ports[0].container_port, 80);
  EXPECT_EQ(back.ports[0].protocol, "udp");
  NetworkRequest again = request_from_status(back);
  EXPECT_EQ(again.static_ip, "10.88.0.5");
  EXPECT_EQ(again.static_mac, s.mac);
}

TEST(Mac, ParseFormatRandom) {
  EXPECT_EQ(format_mac(parse_mac("02:AB:cd:00:11:ff")), "02:ab:cd:00:11:ff");
  EXPECT_THROW(parse_mac("01:00:5e:00:00:01"), Error);  // multicast
  EXPECT_THROW(parse_mac("02:00:00:00:00"), Error);
  EXPECT_THROW(parse_mac("02:00:00:00:00:00:00"), Error);
  MacAddress mac = random_mac();
  EXPECT_EQ(mac[0] & 0x01, 0);  // unicast
  EXPECT_EQ(mac[0] & 0x02, 2);  // locally administered
}

TEST(Leases, AllocateLowestFreeKeepAndRelease) {
  TempDir dir;
  LeaseStore store(dir.path() + "/cryo0", "10.88.0.0", 16, "10.88.0.1");
  bool created = false;
  Lease a = store.acquire("a", "", "", &created);
  EXPECT_TRUE(created);
  EXPECT_EQ(a.ip, "10.88.0.2");  // .0 network, .1 gateway
  Lease b = store.acquire("b", "", "");
  EXPECT_EQ(b.ip, "10.88.0.3");
  EXPECT_NE(a.mac, b.mac);
  // The same container gets the same lease back, from a fresh store object (persisted).
  LeaseStore reopened(dir.path() + "/cryo0", "10.88.0.0", 16, "10.88.0.1");
  Lease a2 = reopened.acquire("a", "", "", &created);
  EXPECT_FALSE(created);
  EXPECT_EQ(a2.ip, a.ip);
  EXPECT_EQ(a2.mac, a.mac);
  reopened.release("a");
  EXPECT_FALSE(reopened.find("a"));
  EXPECT_EQ(reopened.acquire("c", "", "").ip, "10.88.0.2");  // the freed address is reused
  reopened.release("a");                                     // releasing twice is fine
  auto text = fs::read_file(dir.path() + "/cryo0/leases.json");
  EXPECT_NE(text.find("10.88.0.3"), std::string::npos);
}

TEST(Leases, StaticIpAndMac) {
  TempDir dir;
  LeaseStore store(dir.path() + "/cryo0", "10.88.0.0", 16, "10.88.0.1");
  Lease a = store.acquire("a", "10.88.5.5", "02:00:00:00:00:07");
  EXPECT_EQ(a.ip, "10.88.5.5");
  EXPECT_EQ(a.mac, "02:00:00:00:00:07");
  EXPECT_THROW(store.acquire("b", "10.88.5.5", ""), Error);      // taken
  EXPECT_THROW(store.acquire("b", "10.89.0.2", ""), Error);      // outside the subnet
  EXPECT_THROW(store.acquire("b", "10.88.0.1", ""), Error);      // the gateway
  EXPECT_THROW(store.acquire("b", "10.88.255.255", ""), Error);  // broadcast
  EXPECT_FALSE(store.find("b"));
  // The same container may ask for its own address again (restore with --ip).
  EXPECT_EQ(store.acquire("a", "10.88.5.5", "").ip, "10.88.5.5");
}

TEST(Leases, SmallSubnetRunsOut) {
  TempDir dir;
  LeaseStore store(dir.path() + "/net", "192.168.7.0", 30, "192.168.7.1");
  EXPECT_EQ(store.acquire("a", "", "").ip, "192.168.7.2");
  EXPECT_THROW(store.acquire("b", "", ""), Error);
}

TEST(PortRegistry, ConflictsAndRandomPorts) {
  TempDir dir;
  PortRegistry registry(dir.path() + "/ports.json");
  // Random host ports on loopback: resolved to distinct, non-zero ports.
  auto ports =
      registry.claim("a", {parse_publish("127.0.0.1::80"), parse_publish("127.0.0.1::81")});
  ASSERT_EQ(ports.size(), 2u);
  EXPECT_NE(ports[0].host_port, 0);
  EXPECT_NE(ports[0].host_port, ports[1].host_port);
  // Another container cannot take one of them, on that address or on all addresses.
  PortMapping same = ports[0];
  same.container_port = 90;
  EXPECT_THROW(registry.claim("b", {same}), ExitCodeError);
  PortMapping any = same;
  any.host_ip = "";
  EXPECT_THROW(registry.claim("b", {any}), ExitCodeError);
  // udp is a different port space.
  PortMapping udp = same;
  udp.protocol = "udp";
  EXPECT_EQ(registry.claim("b", {udp}).size(), 1u);
  // Released ports can be taken again.
  registry.release("a");
  EXPECT_EQ(registry.claim("c", {same})[0].host_port, same.host_port);
}

}  // namespace
}  // namespace cryo::engine

namespace cryo::engine {
namespace {

TEST(ActiveAddresses, OtherRootsLiveAndLeasedAddresses) {
  TempDir dir;
  std::string netns = dir.path() + "/netns-file";
  fs::write_file(netns, "");
  // Root A: c1 live, c2 stopped with its lease kept, c3 live but its netns is gone (crashed).
  std::string root_a = dir.path() + "/rootA";
  LeaseStore leases_a(root_a + "/networks/cryo0", "10.88.0.0", 16, "10.88.0.1");
  leases_a.acquire("c1", "10.88.0.2", "");
  leases_a.acquire("c2", "10.88.0.3", "");
  {
    ActiveAddresses active("cryo0", dir.path());
    active.claim("10.88.0.2", root_a, "c1", netns);
    active.claim("10.88.0.3", root_a, "c2", netns);
    active.deactivate(root_a, "c2");
    active.claim("10.88.0.4", root_a, "c3", dir.path() + "/gone");
    active.save();
  }
  std::string root_b = dir.path() + "/rootB";
  LeaseStore leases_b(root_b + "/networks/cryo0", "10.88.0.0", 16, "10.88.0.1");
  {
    ActiveAddresses active("cryo0", dir.path());
    OtherAddresses others = active.others(root_b, "x");
    EXPECT_EQ(others.live, std::set<std::string>{"10.88.0.2"});
    EXPECT_EQ(others.leased, std::set<std::string>{"10.88.0.3"});
    EXPECT_TRUE(active.others(root_a, "c1").live.empty());  // its own address does not count
    // A new lease of root B skips both; a static --ip may take over the stopped one only.
    EXPECT_EQ(leases_b.acquire("x", "", "", nullptr, others.live, others.leased).ip, "10.88.0.4");
    EXPECT_EQ(leases_b.acquire("y", "10.88.0.3", "", nullptr, others.live, others.leased).ip,
              "10.88.0.3");
    EXPECT_THROW(leases_b.acquire("z", "10.88.0.2", "", nullptr, others.live, others.leased),
                 Error);
    active.release(root_a, "c1");
    active.save();
  }
  leases_a.release("c2");  // c2 removed by root A: its entry is stale from now on
  ActiveAddresses active("cryo0", dir.path());
  OtherAddresses others = active.others(root_b, "x");
  EXPECT_TRUE(others.live.empty());
  EXPECT_TRUE(others.leased.empty());
}

}  // namespace
}  // namespace cryo::engine
