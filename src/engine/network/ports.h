// Host ports published by the containers of one engine root (<root>/networks/ports.json), so
// that two containers cannot publish the same host port. A port with a listening socket on the
// host is refused too (bind() test). The NAT rules themselves live in nftables (nat.h).
#pragma once

#include <string>
#include <vector>

#include "engine/network/network.h"

namespace cryo::engine {

class PortRegistry {
 public:
  explicit PortRegistry(std::string file) : file_(std::move(file)) {}
  // Checks that every port is free (not published by another container, no host socket bound
  // to it), picks a free host port for those with host_port 0, records them for the container
  // and returns them resolved. Throws ExitCodeError(125) "... address already in use".
  std::vector<PortMapping> claim(const std::string& container_id,
                                 const std::vector<PortMapping>& ports);
  void release(const std::string& container_id);
  // The ports recorded for the container (what its NAT rules are).
  std::vector<PortMapping> recorded(const std::string& container_id);

 private:
  std::string file_;
};

}  // namespace cryo::engine
