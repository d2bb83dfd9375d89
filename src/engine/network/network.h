// Container networking: a persistent network namespace per container, the default bridge network
// (10.88.0.0/16 like Podman's), veth pairs, IP leases, and port publishing by kernel NAT.
#pragma once

#include <cstdint>
#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "engine/state/paths.h"

namespace cryo::engine {

// One published port. host_port 0 asks for a free host port, chosen by setup().
struct PortMapping {
  std::string host_ip;  // "" = all addresses
  uint16_t host_port = 0;
  uint16_t container_port = 0;
  std::string protocol = "tcp";  // "tcp" or "udp"
};

struct NetworkRequest {
  std::string mode = "bridge";  // bridge | host | none
  std::string static_ip;        // --ip
  std::string static_mac;       // --mac-address
  std::vector<PortMapping> ports;
};

// What was set up; stored with the container (and exported as network.status on checkpoint).
struct NetworkStatus {
  std::string mode;
  std::string netns_path;  // bind-mounted netns file; "" for host mode
  std::string interface;   // "eth0" inside the container
  std::string host_veth;
  std::string ip;
  int prefix_length = 0;
  std::string gateway;
  std::string mac;
  std::vector<PortMapping> ports;
};

nlohmann::json to_json(const NetworkStatus& status);
NetworkStatus network_status_from_json(const nlohmann::json& j);
// The request that rebuilds the same network (mode, IP, MAC, the same host ports) for a restore.
NetworkRequest request_from_status(const NetworkStatus& status);
// Parses -p/--publish: [[ip:][hostPort]:]containerPort[/protocol]. Throws cryo::Error.
PortMapping parse_publish(const std::string& spec);

class NetworkManager {
 public:
  explicit NetworkManager(StorePaths paths);
  // Creates the container's netns and, in bridge mode, the bridge (once), a veth pair, an IP lease
  // and the NAT rules for its ports. Fails cleanly (nothing left) with a clear message, e.g. when
  // a host port is already in use. Port conflicts are Podman's exit code 125.
  // The netns exists before any process of the container: the runtime joins it (setns, or the
  // OCI spec's network namespace path = status.netns_path); it outlives the processes, so a
  // checkpoint may keep it or tear it down and a restore set it up again. A setup of the same
  // container id gets its leased IP and MAC back; use request_from_status() to also ask for the
  // same host ports (or to carry the addresses over to another id or engine root). Stale leftovers
  // of the same container id (netns file, host veth) are replaced. Host mode creates nothing.
  NetworkStatus setup(const std::string& container_id, const NetworkRequest& request);
  // Removes what setup() created (NAT rules, published-port records, veth pair, netns); safe to
  // call twice and on partial setups. The IP lease (and MAC) is kept, so that the next setup of
  // the same container (restart, restore) gets the same addresses: call release() when the
  // container is removed.
  void teardown(const std::string& container_id, const NetworkStatus& status);
  // Takes over the network an in-place checkpoint kept for the restore (see
  // ContainerRecord::network_kept): true when its netns and host veth are still there and its
  // host ports are still free (claimed again, Podman's "address already in use" error otherwise);
  // false when something is missing (the caller tears it down and calls setup()). Its NAT rules
  // are not checked: nothing of cryo removes them while the container is checkpointed.
  bool take_over_kept(const std::string& container_id, const NetworkStatus& status);
  // Releases the container's IP lease (container removal). No-op when it has none.
  void release(const std::string& container_id);
  // Tears down what a setup() of this container left without its status being recorded (a cryo
  // process killed midway): found by the netns file, the veth name and the port registry.
  void remove_leftovers(const std::string& container_id);

  // Where setup() puts the container's netns file: <runroot>/netns/<container_id>.
  std::string netns_path(const std::string& container_id) const;
  // Host side veth name of a container: "veth" + the first 11 characters of its id.
  static std::string host_veth_name(const std::string& container_id);

 private:
  void setup_bridge(const std::string& container_id, const NetworkRequest& request,
                    NetworkStatus& status);
  StorePaths paths_;
};

}  // namespace cryo::engine
