#include "engine/network/network.h"

#include <fcntl.h>
#include <unistd.h>

#include <cerrno>
#include <filesystem>
#include <optional>
#include <set>

#include "common/clock.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/log.h"
#include "common/strings.h"
#include "engine/network/active_addresses.h"
#include "engine/network/leases.h"
#include "engine/network/nat.h"
#include "engine/network/netlink.h"
#include "engine/network/netns.h"
#include "engine/network/ports.h"

namespace cryo::engine {

namespace {

nlohmann::json port_json(const PortMapping& p) {
  return {{"host_ip", p.host_ip},
          {"host_port", p.host_port},
          {"container_port", p.container_port},
          {"protocol", p.protocol}};
}

uint16_t parse_port(const std::string& text, const std::string& what, const std::string& spec) {
  if (text.empty() || text.size() > 5 || text.find_first_not_of("0123456789") != std::string::npos)
    throw Error("invalid " + what + " \"" + text + "\" in port mapping \"" + spec + "\"");
  unsigned long value = std::stoul(text);
  if (value == 0 || value > 65535)
    throw Error("invalid " + what + " " + text + " in port mapping \"" + spec +
                "\": must be between 1 and 65535");
  return static_cast<uint16_t>(value);
}

// Writes a sysctl under /proc/sys when its value differs (writing is what costs).
void set_sysctl(const std::string& name, const std::string& value) {
  std::string path = "/proc/sys/" + name;
  auto current = fs::read_file_if_exists(path);
  if (current && std::string(trim(*current)) == value) return;
  with_context("set " + name + "=" + value, [&] { fs::write_file(path, value + "\n"); });
}

// Debug-level timing of the setup steps (`--log-level debug`), for bench/run_rm.sh.
class SetupTimer {
 public:
  void step(const char* name) {
    uint64_t now = steady_now_us();
    LOG_DEBUG << "timing network " << name << ": " << (now - last_) << " us";
    last_ = now;
  }

 private:
  uint64_t last_ = steady_now_us();
};

const BridgeNetworkConfig& default_network() {
  static const BridgeNetworkConfig config;
  return config;
}

// Creates the bridge with its gateway address, once; returns its interface index.
int ensure_bridge(RtNetlink& host, const BridgeNetworkConfig& config) {
  int index = host.link_index(config.bridge);
  if (index == 0) {
    host.create_bridge(config.bridge, random_mac());  // false: a concurrent engine made it
    index = host.link_index(config.bridge);
    if (index == 0) throw Error("bridge " + config.bridge + " vanished after its creation");
  }
  host.add_address(index, parse_ipv4(config.gateway), config.prefix_length);
  host.set_link_up(index);
  set_sysctl("net/ipv4/ip_forward", "1");
  // Lets locally generated traffic from 127.0.0.0/8 (curl 127.0.0.1:PORT, DNATed by the output
  // hook) be routed out of the bridge; postrouting then masquerades it.
  set_sysctl("net/ipv4/conf/" + config.bridge + "/route_localnet", "1");
  return index;
}

}  // namespace

nlohmann::json to_json(const NetworkStatus& s) {
  nlohmann::json ports = nlohmann::json::array();
  for (const auto& p : s.ports) ports.push_back(port_json(p));
  return {{"mode", s.mode},
          {"netns_path", s.netns_path},
          {"interface", s.interface},
          {"host_veth", s.host_veth},
          {"ip", s.ip},
          {"prefix_length", s.prefix_length},
          {"gateway", s.gateway},
          {"mac", s.mac},
          {"ports", ports}};
}

NetworkStatus network_status_from_json(const nlohmann::json& j) {
  try {
    NetworkStatus s;
    s.mode = j.value("mode", "");
    s.netns_path = j.value("netns_path", "");
    s.interface = j.value("interface", "");
    s.host_veth = j.value("host_veth", "");
    s.ip = j.value("ip", "");
    s.prefix_length = j.value("prefix_length", 0);
    s.gateway = j.value("gateway", "");
    s.mac = j.value("mac", "");
    if (j.contains("ports")) {
      for (const auto& p : j.at("ports")) {
        PortMapping port;
        port.host_ip = p.value("host_ip", "");
        port.host_port = p.value("host_port", uint16_t{0});
        port.container_port = p.value("container_port", uint16_t{0});
        port.protocol = p.value("protocol", "tcp");
        s.ports.push_back(port);
      }
    }
    return s;
  } catch (const nlohmann::json::exception& e) {
    throw Error(std::string("invalid network status: ") + e.what());
  }
}

NetworkRequest request_from_status(const NetworkStatus& status) {
  NetworkRequest request;
  request.mode = status.mode;
  request.static_ip = status.ip;
  request.static_mac = status.mac;
  request.ports = status.ports;
  return request;
}

PortMapping parse_publish(const std::string& spec) {
  PortMapping port;
  std::string rest = spec;
  if (auto slash = rest.rfind('/'); slash != std::string::npos) {
    port.protocol = rest.substr(slash + 1);
    rest = rest.substr(0, slash);
    if (port.protocol == "sctp")
      throw Error("not supported yet: sctp in port mapping \"" + spec + "\"");
    if (port.protocol != "tcp" && port.protocol != "udp")
      throw Error("invalid protocol \"" + port.protocol + "\" in port mapping \"" + spec +
                  "\": must be tcp or udp");
  }
  if (rest.find('[') != std::string::npos)
    throw Error("not supported yet: IPv6 host address in port mapping \"" + spec + "\"");
  if (rest.find('-') != std::string::npos)
    throw Error("not supported yet: port ranges in port mapping \"" + spec + "\"");
  std::vector<std::string> parts = split(rest, ':');
  if (parts.empty() || parts.size() > 3)
    throw Error("invalid port mapping \"" + spec +
                "\": expected [[ip:][hostPort]:]containerPort[/protocol]");
  port.container_port = parse_port(parts.back(), "container port", spec);
  if (parts.size() >= 2 && !parts[parts.size() - 2].empty())
    port.host_port = parse_port(parts[parts.size() - 2], "host port", spec);
  if (parts.size() == 3 && !parts[0].empty()) {
    port.host_ip = with_context("port mapping \"" + spec + "\"",
                                [&] { return format_ipv4(parse_ipv4(parts[0])); });
    if (port.host_ip == "0.0.0.0") port.host_ip.clear();
  }
  return port;
}

NetworkManager::NetworkManager(StorePaths paths) : paths_(std::move(paths)) {
  // Absolute, so that the machine-wide address registry names roots unambiguously.
  paths_.root = std::filesystem::absolute(paths_.root).lexically_normal();
  paths_.runroot = std::filesystem::absolute(paths_.runroot).lexically_normal();
}

std::string NetworkManager::netns_path(const std::string& container_id) const {
  return paths_.runroot + "/netns/" + container_id;
}

std::string NetworkManager::host_veth_name(const std::string& container_id) {
  return "veth" + container_id.substr(0, 11);
}

NetworkStatus NetworkManager::setup(const std::string& container_id,
                                    const NetworkRequest& request) {
  return with_context("network of container " + container_id.substr(0, 12), [&] {
    if (container_id.empty() || container_id.find('/') != std::string::npos ||
        container_id[0] == '.')
      throw Error("invalid container id \"" + container_id + "\"");
    NetworkStatus status;
    status.mode = request.mode;
    if (request.mode != "bridge" && request.mode != "host" && request.mode != "none")
      throw ExitCodeError(
          "unsupported network mode \"" + request.mode + "\": must be bridge, host or none", 125);
    if (request.mode != "bridge" && !request.ports.empty()) {
      LOG_WARN << "Port mappings have been discarded as one of the Host, Container, Pod, and "
                  "None network modes are in use";
    }
    if (request.mode == "host") return status;

    // Leftovers of this same container whose teardown never ran (a crash): replace them.
    remove_leftovers(container_id);
    try {
      SetupTimer timer;
      create_persistent_netns(netns_path(container_id));
      timer.step("netns");
      status.netns_path = netns_path(container_id);
      if (request.mode == "bridge") setup_bridge(container_id, request, status);
    } catch (...) {
      try {
        teardown(container_id, status);
      } catch (const Error& e) {
        LOG_WARN << "cleaning up the failed network setup of " << container_id << ": " << e.what();
      }
      throw;
    }
    return status;
  });
}

void NetworkManager::setup_bridge(const std::string& container_id, const NetworkRequest& request,
                                  NetworkStatus& status) {
  const BridgeNetworkConfig& config = default_network();
  SetupTimer timer;
  LeaseStore leases(paths_.networks_dir() + "/" + config.bridge, config.subnet,
                    config.prefix_length, config.gateway);
  bool lease_created = false;
  Lease lease;
  {
    // Machine-wide while the address is picked: other engine roots use the same bridge.
    ActiveAddresses active(config.bridge);
    OtherAddresses others = active.others(paths_.root, container_id);
    lease = leases.acquire(container_id, request.static_ip, request.static_mac, &lease_created,
                           others.live, others.leased);
    active.claim(lease.ip, paths_.root, container_id, status.netns_path);
    active.save();
  }
  timer.step("lease");
  try {
    PortRegistry registry(paths_.networks_dir() + "/ports.json");
    std::vector<PortMapping> ports = registry.claim(container_id, request.ports);
    timer.step("port registry");

    RtNetlink host;
    int bridge_index = ensure_bridge(host, config);
    std::optional<Nftables> nft;
    auto nftables = [&]() -> Nftables& {
      if (!nft) nft.emplace();
      return *nft;
    };
    timer.step("bridge");
    ensure_nat_table(nftables, config);
    timer.step("nat table");

    UniqueFd netns = open_netns(status.netns_path);
    std::string veth = host_veth_name(container_id);
    host.create_veth(veth, bridge_index, "eth0", netns.get(), parse_mac(lease.mac));
    status.host_veth = veth;
    int veth_index = host.link_index(veth);
    if (veth_index == 0) throw Error(veth + " missing right after its creation");
    host.set_bridge_port_hairpin(veth_index);
    timer.step("veth");

    std::optional<RtNetlink> inside;
    {
      NetnsGuard enter(netns.get());
      inside.emplace();
    }
    int eth0 = inside->link_index("eth0");
    if (eth0 == 0) throw Error("eth0 missing in " + status.netns_path + " after veth creation");
    inside->add_address(eth0, parse_ipv4(lease.ip), config.prefix_length);
    inside->set_link_up(eth0);
    inside->add_default_route(parse_ipv4(config.gateway));

    // The address may have belonged to a container with another MAC a moment ago: a cached ARP
    // entry would send the host's packets to that MAC for up to a minute.
    host.delete_neighbour(bridge_index, parse_ipv4(lease.ip));
    timer.step("addresses and routes");

    if (!ports.empty()) add_port_rules(nftables(), lease.ip, ports);
    timer.step("port rules");
    status.ports = ports;
    status.interface = "eth0";
    status.ip = lease.ip;
    status.prefix_length = config.prefix_length;
    status.gateway = config.gateway;
    status.mac = lease.mac;
  } catch (...) {
    if (lease_created) {
      try {
        leases.release(container_id);
        ActiveAddresses active(config.bridge);
        active.release(paths_.root, container_id);
        active.save();
      } catch (const Error& e) {
        LOG_WARN << "releasing the IP lease of " << container_id << ": " << e.what();
      }
    }
    throw;
  }
}

bool NetworkManager::take_over_kept(const std::string& container_id, const NetworkStatus& status) {
  return with_context("kept network of container " + container_id.substr(0, 12), [&] {
    if (status.mode == "host") return true;
    if (status.netns_path.empty() || !fs::exists(status.netns_path)) return false;
    if (status.mode == "bridge") {
      if (status.host_veth.empty() || RtNetlink().link_index(status.host_veth) == 0) return false;
      PortRegistry(paths_.networks_dir() + "/ports.json").claim(container_id, status.ports);
    }
    return true;
  });
}

void NetworkManager::teardown(const std::string& container_id, const NetworkStatus& status) {
  if (status.mode == "host") return;
  std::optional<Error> first_error;
  auto attempt = [&](auto&& step) {
    try {
      step();
    } catch (const Error& e) {
      if (!first_error)
        first_error = e;
      else
        LOG_WARN << e.what();
    }
  };
  if (!status.ports.empty())
    attempt([&] {
      Nftables nft;
      remove_port_rules(nft, status.ports);
    });
  if (status.mode == "bridge") {
    attempt([&] { PortRegistry(paths_.networks_dir() + "/ports.json").release(container_id); });
    attempt([&] {
      ActiveAddresses active(default_network().bridge);
      active.deactivate(paths_.root, container_id);
      active.save();
    });
  }
  if (!status.host_veth.empty())
    attempt([&] {
      RtNetlink host;
      host.delete_link(status.host_veth);
    });
  if (!status.netns_path.empty()) attempt([&] { remove_persistent_netns(status.netns_path); });
  if (first_error) {
    first_error->add_context("network teardown of container " + container_id.substr(0, 12));
    throw *first_error;
  }
}

void NetworkManager::remove_leftovers(const std::string& container_id) {
  if (!fs::exists(netns_path(container_id))) return;
  LOG_WARN << "removing the stale network of container " << container_id;
  NetworkStatus stale;
  stale.mode = "bridge";
  stale.netns_path = netns_path(container_id);
  stale.host_veth = host_veth_name(container_id);
  stale.ports = PortRegistry(paths_.networks_dir() + "/ports.json").recorded(container_id);
  teardown(container_id, stale);
}

void NetworkManager::release(const std::string& container_id) {
  const BridgeNetworkConfig& config = default_network();
  ActiveAddresses active(config.bridge);
  LeaseStore(paths_.networks_dir() + "/" + config.bridge, config.subnet, config.prefix_length,
             config.gateway)
      .release(container_id);
  active.release(paths_.root, container_id);
  active.save();
}

}  // namespace cryo::engine
