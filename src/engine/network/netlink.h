// A small rtnetlink client (libmnl) for what container networking needs: links (bridge, veth),
// addresses and routes. Each RtNetlink talks to the network namespace it was created in.
#pragma once

#include <netinet/in.h>

#include <array>
#include <cstdint>
#include <string>

struct mnl_socket;
struct nlmsghdr;

namespace cryo::engine {

using MacAddress = std::array<uint8_t, 6>;

std::string format_mac(const MacAddress& mac);
MacAddress parse_mac(const std::string& text);  // throws cryo::Error
// A random unicast, locally administered MAC address.
MacAddress random_mac();
in_addr parse_ipv4(const std::string& text);  // throws cryo::Error
std::string format_ipv4(in_addr address);

class RtNetlink {
 public:
  // Opens a NETLINK_ROUTE socket in the calling thread's current network namespace.
  RtNetlink();
  ~RtNetlink();
  RtNetlink(const RtNetlink&) = delete;
  RtNetlink& operator=(const RtNetlink&) = delete;

  // Interface index of `name`, 0 when there is no such link.
  int link_index(const std::string& name);
  // Creates a bridge; returns false when a link of that name already exists.
  bool create_bridge(const std::string& name, const MacAddress& mac);
  // Creates a veth pair: `host_name` here, enslaved to `master_index` and up; the peer created
  // directly in the namespace of `peer_netns_fd` as `peer_name` with `peer_mac` (down).
  void create_veth(const std::string& host_name, int master_index, const std::string& peer_name,
                   int peer_netns_fd, const MacAddress& peer_mac);
  void set_link_up(int index);
  // Lets a bridge port send frames back where they came from: a container reaching its own
  // published port through the host's address (DNAT back to itself).
  void set_bridge_port_hairpin(int index);
  // Adds an IPv4 address; returns false when the address was already there.
  bool add_address(int index, in_addr address, int prefix_length);
  void add_default_route(in_addr gateway);
  // Deletes a link; returns false when it did not exist.
  bool delete_link(const std::string& name);

 private:
  // Sends one request and waits for its ack; returns 0 or the positive errno of the kernel.
  int transact(nlmsghdr* request);
  mnl_socket* socket_ = nullptr;
  uint32_t port_id_ = 0;
  uint32_t sequence_ = 0;
};

}  // namespace cryo::engine
