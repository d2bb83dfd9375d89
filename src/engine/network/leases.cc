#include "engine/network/leases.h"

#include <arpa/inet.h>

#include <set>

#include "common/error.h"
#include "engine/network/netlink.h"
#include "engine/network/state_file.h"

namespace cryo::engine {

namespace {

uint32_t host_order(const std::string& text) {
  return ntohl(parse_ipv4(text).s_addr);
}

std::string dotted(uint32_t address) {
  in_addr a{htonl(address)};
  return format_ipv4(a);
}

}  // namespace

LeaseStore::LeaseStore(std::string network_dir, std::string subnet, int prefix_length,
                       std::string gateway)
    : network_dir_(std::move(network_dir)) {
  if (prefix_length < 8 || prefix_length > 30)
    throw Error("unsupported prefix length " + std::to_string(prefix_length));
  mask_ = 0xffffffffu << (32 - prefix_length);
  subnet_ = host_order(subnet) & mask_;
  gateway_ = host_order(gateway);
}

Lease LeaseStore::acquire(const std::string& container_id, const std::string& static_ip,
                          const std::string& static_mac, bool* created,
                          const std::set<std::string>& in_use,
                          const std::set<std::string>& reserved) {
  LockedJsonFile file(this->file());
  nlohmann::json& leases = file.data()["leases"];
  if (!leases.is_object()) leases = nlohmann::json::object();

  std::set<uint32_t> taken;
  for (auto& [id, lease] : leases.items())
    if (id != container_id) taken.insert(host_order(lease.at("ip").get<std::string>()));
  for (const auto& address : in_use) taken.insert(host_order(address));

  uint32_t broadcast = subnet_ | ~mask_;
  auto usable = [&](uint32_t a) {
    return (a & mask_) == subnet_ && a != subnet_ && a != broadcast && a != gateway_;
  };

  bool existed = leases.contains(container_id);
  Lease lease;
  if (existed) {
    lease.ip = leases[container_id].at("ip").get<std::string>();
    lease.mac = leases[container_id].at("mac").get<std::string>();
    if (in_use.count(lease.ip)) lease.ip.clear();
  }
  if (!static_ip.empty()) {
    uint32_t wanted = host_order(static_ip);
    if (!usable(wanted))
      throw Error("requested IP address " + static_ip + " is not available in network " +
                  dotted(subnet_) + "/" + std::to_string(__builtin_popcount(mask_)));
    if (taken.count(wanted))
      throw Error("requested IP address " + static_ip +
                  " is not available: it is already allocated to another container" +
                  (in_use.count(dotted(wanted)) ? " (of another cryo root)" : ""));
    lease.ip = dotted(wanted);
  } else if (lease.ip.empty()) {
    // Lowest free address: predictable, and the first container gets 10.88.0.2 like Podman's.
    for (uint32_t a = subnet_ + 1; a < broadcast; ++a) {
      if (usable(a) && !taken.count(a) && !reserved.count(dotted(a))) {
        lease.ip = dotted(a);
        break;
      }
    }
    if (lease.ip.empty()) throw Error("no free IP address left in network " + dotted(subnet_));
  }
  if (!static_mac.empty())
    lease.mac = format_mac(parse_mac(static_mac));
  else if (lease.mac.empty())
    lease.mac = format_mac(random_mac());

  leases[container_id] = {{"ip", lease.ip}, {"mac", lease.mac}};
  file.save();
  if (created) *created = !existed;
  return lease;
}

std::optional<Lease> LeaseStore::find(const std::string& container_id) const {
  LockedJsonFile file(this->file());
  const nlohmann::json& leases = file.data()["leases"];
  if (!leases.is_object() || !leases.contains(container_id)) return std::nullopt;
  return Lease{leases[container_id].at("ip").get<std::string>(),
               leases[container_id].at("mac").get<std::string>()};
}

void LeaseStore::release(const std::string& container_id) {
  LockedJsonFile file(this->file());
  nlohmann::json& leases = file.data()["leases"];
  if (!leases.is_object() || !leases.contains(container_id)) return;
  leases.erase(container_id);
  file.save();
}

}  // namespace cryo::engine
