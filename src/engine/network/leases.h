// IP address leases of a bridge network, persisted in <root>/networks/<bridge>/leases.json so that
// a container keeps its address (and MAC) across restarts, checkpoint and restore. A lease lives
// from the first setup of a container until the container is removed.
#pragma once

#include <netinet/in.h>

#include <optional>
#include <set>
#include <string>

namespace cryo::engine {

struct Lease {
  std::string ip;
  std::string mac;
};

class LeaseStore {
 public:
  // `network_dir` holds leases.json; addresses are leased from subnet/prefix_length, skipping the
  // network address, the gateway and the broadcast address.
  LeaseStore(std::string network_dir, std::string subnet, int prefix_length, std::string gateway);

  // Returns the container's lease, creating it if needed. `static_ip` (--ip) must be in the subnet
  // and free (else an error); a different static_ip or static_mac replaces the old lease's values.
  // `created` tells whether the lease is new (so a failed setup can release it). Addresses in
  // `in_use` (live elsewhere on the bridge: other engine roots) are never given, and a lease on
  // one moves; addresses in `reserved` (leased by other roots) are not picked for a new lease but
  // may be asked for with static_ip.
  Lease acquire(const std::string& container_id, const std::string& static_ip,
                const std::string& static_mac, bool* created = nullptr,
                const std::set<std::string>& in_use = {},
                const std::set<std::string>& reserved = {});
  std::optional<Lease> find(const std::string& container_id) const;
  // Releases the container's lease; no-op when it has none.
  void release(const std::string& container_id);

  std::string file() const { return network_dir_ + "/leases.json"; }

 private:
  std::string network_dir_;
  uint32_t subnet_ = 0;  // host byte order
  uint32_t mask_ = 0;
  uint32_t gateway_ = 0;
};

}  // namespace cryo::engine
