#include "engine/network/ports.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "common/error.h"
#include "common/unique_fd.h"
#include "engine/network/netlink.h"
#include "engine/network/state_file.h"

namespace cryo::engine {

namespace {

std::string describe(const PortMapping& port) {
  return (port.protocol == "udp" ? "udp " : "tcp ") +
         (port.host_ip.empty() ? std::string("0.0.0.0") : port.host_ip) + ":" +
         std::to_string(port.host_port);
}

bool overlaps(const PortMapping& a, const PortMapping& b) {
  return a.protocol == b.protocol && a.host_port == b.host_port &&
         (a.host_ip.empty() || b.host_ip.empty() || a.host_ip == b.host_ip);
}

// Binds a socket to the host address and port; returns the bound port (useful with port 0),
// or 0 with *err set when the bind failed.
uint16_t try_bind(const PortMapping& port, int* err) {
  int type = port.protocol == "udp" ? SOCK_DGRAM : SOCK_STREAM;
  UniqueFd fd(::socket(AF_INET, type | SOCK_CLOEXEC, 0));
  if (!fd) throw_errno("socket");
  if (type == SOCK_STREAM) {
    // Connections in TIME_WAIT do not make a port busy; a listening socket still does.
    int one = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  }
  sockaddr_in address{};
  address.sin_family = AF_INET;
  address.sin_port = htons(port.host_port);
  address.sin_addr = port.host_ip.empty() ? in_addr{htonl(INADDR_ANY)} : parse_ipv4(port.host_ip);
  if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&address), sizeof address) < 0) {
    *err = errno;
    return 0;
  }
  socklen_t length = sizeof address;
  if (::getsockname(fd.get(), reinterpret_cast<sockaddr*>(&address), &length) < 0)
    throw_errno("getsockname");
  return ntohs(address.sin_port);
}

nlohmann::json port_to_json(const PortMapping& p) {
  return {{"host_ip", p.host_ip},
          {"host_port", p.host_port},
          {"container_port", p.container_port},
          {"protocol", p.protocol}};
}

PortMapping port_from_json(const nlohmann::json& j) {
  PortMapping p;
  p.host_ip = j.value("host_ip", "");
  p.host_port = j.value("host_port", uint16_t{0});
  p.container_port = j.value("container_port", uint16_t{0});
  p.protocol = j.value("protocol", "tcp");
  return p;
}

}  // namespace

std::vector<PortMapping> PortRegistry::claim(const std::string& container_id,
                                             const std::vector<PortMapping>& ports) {
  if (ports.empty()) return {};
  LockedJsonFile file(file_, LockedJsonFile::Durability::kLiveState);
  nlohmann::json& published = file.data()["containers"];
  if (!published.is_object()) published = nlohmann::json::object();

  std::vector<PortMapping> taken;
  for (auto& [id, list] : published.items())
    if (id != container_id)
      for (auto& entry : list) taken.push_back(port_from_json(entry));

  std::vector<PortMapping> resolved;
  for (PortMapping port : ports) {
    if (port.host_port == 0) {
      // The kernel picks a free ephemeral port; retry if another container already has it.
      for (int attempt = 0; port.host_port == 0; ++attempt) {
        if (attempt == 64) throw Error("no free host port found for " + describe(port));
        int err = 0;
        PortMapping candidate = port;
        candidate.host_port = try_bind(port, &err);
        if (candidate.host_port == 0) throw_errno("bind " + describe(port), err);
        bool busy = false;
        for (const auto& other : taken) busy = busy || overlaps(other, candidate);
        for (const auto& other : resolved) busy = busy || overlaps(other, candidate);
        if (!busy) port = candidate;
      }
    } else {
      for (const auto& other : taken)
        if (overlaps(other, port))
          throw ExitCodeError("listen " + describe(port) +
                                  ": bind: address already in use (published by another "
                                  "container)",
                              125);
      for (const auto& other : resolved)
        if (overlaps(other, port))
          throw ExitCodeError(
              "listen " + describe(port) + ": bind: address already in use (published twice)", 125);
      int err = 0;
      if (try_bind(port, &err) == 0) {
        if (err == EADDRINUSE)
          throw ExitCodeError("listen " + describe(port) + ": bind: address already in use", 125);
        throw ExitCodeError("listen " + describe(port) + ": bind: " + std::strerror(err), 125);
      }
    }
    resolved.push_back(port);
  }
  nlohmann::json list = nlohmann::json::array();
  for (const auto& port : resolved) list.push_back(port_to_json(port));
  // A restore taking over its kept network claims the ports it holds already: nothing to write.
  if (published.contains(container_id) && published[container_id] == list) return resolved;
  published[container_id] = list;
  file.save();
  return resolved;
}

std::vector<PortMapping> PortRegistry::recorded(const std::string& container_id) {
  LockedJsonFile file(file_, LockedJsonFile::Durability::kLiveState);
  nlohmann::json& published = file.data()["containers"];
  std::vector<PortMapping> ports;
  if (published.is_object() && published.contains(container_id))
    for (const auto& entry : published[container_id]) ports.push_back(port_from_json(entry));
  return ports;
}

void PortRegistry::release(const std::string& container_id) {
  LockedJsonFile file(file_, LockedJsonFile::Durability::kLiveState);
  nlohmann::json& published = file.data()["containers"];
  if (!published.is_object() || !published.contains(container_id)) return;
  published.erase(container_id);
  file.save();
}

}  // namespace cryo::engine
