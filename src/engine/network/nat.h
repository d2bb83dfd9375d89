// Port publishing by kernel NAT (libnftables), no userspace proxy. One table `ip cryo`:
//   maps tcp_any/udp_any (host port -> container ip . port) and tcp_addr/udp_addr
//   (host ip . host port -> container ip . port), used by a `published` chain that both the
//   prerouting (traffic from outside and from containers) and output (local, e.g. curl
//   127.0.0.1:PORT) nat hooks jump to for local destination addresses; masquerade in postrouting
//   for the bridge subnet leaving and for 127.0.0.0/8 sources towards the bridge (route_localnet);
//   forward accept for the bridge. A container's rules are exactly its map elements, so adding
//   them is one atomic transaction (a key already taken, e.g. by an engine with another root,
//   fails it) and removing them touches nothing else.
#pragma once

#include <functional>
#include <string>
#include <vector>

#include "engine/network/network.h"

struct nft_ctx;

namespace cryo::engine {

class Nftables {
 public:
  Nftables();
  ~Nftables();
  Nftables(const Nftables&) = delete;
  Nftables& operator=(const Nftables&) = delete;

  // Runs nft commands as one transaction; returns false and fills *error on failure.
  bool run(const std::string& commands, std::string* error, std::string* output = nullptr);
  void run_or_throw(const std::string& commands, const std::string& what);

 private:
  nft_ctx* ctx_ = nullptr;
};

struct BridgeNetworkConfig {
  std::string bridge = "cryo0";
  std::string subnet = "10.88.0.0";
  int prefix_length = 16;
  std::string gateway = "10.88.0.1";
};

// Whether nftables has table `name` of family ip (one netlink round trip).
bool nft_ip_table_exists(const std::string& name);
// Creates table ip cryo when missing (concurrent callers are safe: creation is one transaction
// that fails as a whole if the table appeared meanwhile). When another table's FORWARD chain has
// a drop policy (Docker's iptables-nft rules), inserts accept rules for the bridge there.
// `nftables` gives the libnftables context, made only when needed (it costs milliseconds).
void ensure_nat_table(const std::function<Nftables&()>& nftables,
                      const BridgeNetworkConfig& config);
// Adds the DNAT elements of `ports` towards container_ip, all or none.
void add_port_rules(Nftables& nft, const std::string& container_ip,
                    const std::vector<PortMapping>& ports);
// Removes the DNAT elements of `ports`; missing ones are skipped.
void remove_port_rules(Nftables& nft, const std::vector<PortMapping>& ports);

}  // namespace cryo::engine
