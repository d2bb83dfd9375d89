#include "engine/network/nat.h"

#include <libmnl/libmnl.h>
#include <linux/netfilter.h>
#include <linux/netfilter/nf_tables.h>
#include <linux/netfilter/nfnetlink.h>
#include <nftables/libnftables.h>
#include <unistd.h>

#include <cstdio>
#include <memory>
#include <nlohmann/json.hpp>

#include "common/error.h"
#include "common/log.h"

namespace cryo::engine {

Nftables::Nftables() {
  ctx_ = nft_ctx_new(NFT_CTX_DEFAULT);
  if (!ctx_) throw Error("nft_ctx_new failed");
  nft_ctx_buffer_output(ctx_);
  nft_ctx_buffer_error(ctx_);
}

Nftables::~Nftables() {
  nft_ctx_free(ctx_);
}

bool Nftables::run(const std::string& commands, std::string* error, std::string* output) {
  int rc = nft_run_cmd_from_buffer(ctx_, commands.c_str());
  const char* err = nft_ctx_get_error_buffer(ctx_);
  const char* out = nft_ctx_get_output_buffer(ctx_);
  if (output) *output = out ? out : "";
  if (rc == 0) return true;
  if (error) *error = err ? err : "";
  return false;
}

void Nftables::run_or_throw(const std::string& commands, const std::string& what) {
  std::string error;
  if (!run(commands, &error)) {
    while (!error.empty() && error.back() == '\n') error.pop_back();
    throw Error(what + ": nftables: " + error);
  }
}

namespace {

std::string map_name(const PortMapping& port) {
  return port.protocol + (port.host_ip.empty() ? "_any" : "_addr");
}

std::string map_key(const PortMapping& port) {
  return port.host_ip.empty() ? std::to_string(port.host_port)
                              : port.host_ip + " . " + std::to_string(port.host_port);
}

std::string subnet_text(const BridgeNetworkConfig& c) {
  return c.subnet + "/" + std::to_string(c.prefix_length);
}

// Docker (through iptables-nft) sets the FORWARD policy of table ip filter to drop. An accept in
// our own forward chain cannot override a drop in another base chain, so accept the bridge's
// traffic in that chain too, once.
void accept_in_foreign_forward_chain(Nftables& nft, const BridgeNetworkConfig& config) {
  std::string output, error;
  if (!nft.run("list chain ip filter FORWARD", &error, &output)) return;  // no such chain
  bool drops = output.find("policy drop") != std::string::npos;
  bool ours = output.find("\"" + config.bridge + "\"") != std::string::npos;
  if (!drops || ours) return;
  LOG_INFO << "table ip filter chain FORWARD drops by default: accepting " << config.bridge
           << " traffic there";
  nft.run_or_throw("insert rule ip filter FORWARD oifname \"" + config.bridge +
                       "\" counter accept\n"
                       "insert rule ip filter FORWARD iifname \"" +
                       config.bridge + "\" counter accept\n",
                   "accept " + config.bridge + " traffic in table ip filter chain FORWARD");
}

}  // namespace

bool nft_ip_table_exists(const std::string& name) {
  std::unique_ptr<mnl_socket, decltype(&mnl_socket_close)> nl(mnl_socket_open(NETLINK_NETFILTER),
                                                              &mnl_socket_close);
  if (!nl) throw_errno("open netfilter netlink socket");
  if (mnl_socket_bind(nl.get(), 0, MNL_SOCKET_AUTOPID) < 0)
    throw_errno("bind netfilter netlink socket");
  std::vector<char> buf(MNL_SOCKET_BUFFER_SIZE);
  struct nlmsghdr* request = mnl_nlmsg_put_header(buf.data());
  request->nlmsg_type = (NFNL_SUBSYS_NFTABLES << 8) | NFT_MSG_GETTABLE;
  request->nlmsg_flags = NLM_F_REQUEST | NLM_F_ACK;
  uint32_t seq = static_cast<uint32_t>(::getpid());
  request->nlmsg_seq = seq;
  auto* header =
      static_cast<struct nfgenmsg*>(mnl_nlmsg_put_extra_header(request, sizeof(struct nfgenmsg)));
  header->nfgen_family = NFPROTO_IPV4;
  header->version = NFNETLINK_V0;
  header->res_id = 0;
  mnl_attr_put_strz(request, NFTA_TABLE_NAME, name.c_str());
  if (mnl_socket_sendto(nl.get(), request, request->nlmsg_len) < 0)
    throw_errno("netlink get nftables table ip " + name);
  unsigned port_id = mnl_socket_get_portid(nl.get());
  // The table (NFT_MSG_NEWTABLE) then the ack, or an error: ENOENT when there is no such table.
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(nl.get(), buf.data(), buf.size());
    if (n < 0) throw_errno("netlink get nftables table ip " + name);
    int rc = mnl_cb_run(buf.data(), static_cast<size_t>(n), seq, port_id, nullptr, nullptr);
    if (rc == MNL_CB_ERROR) {
      if (errno == ENOENT) return false;
      throw_errno("netlink get nftables table ip " + name);
    }
    if (rc == MNL_CB_STOP) return true;
  }
}

void ensure_nat_table(const std::function<Nftables&()>& nftables,
                      const BridgeNetworkConfig& config) {
  // The common case, every start: one netlink round trip instead of libnftables parsing and
  // evaluating the whole definition against a fetched ruleset (tens of ms on this VM).
  if (nft_ip_table_exists("cryo")) {
    if (nft_ip_table_exists("filter")) accept_in_foreign_forward_chain(nftables(), config);
    return;
  }
  Nftables& nft = nftables();
  const std::string& br = config.bridge;
  std::string subnet = subnet_text(config);
  std::string definition =
      "create table ip cryo\n"
      "table ip cryo {\n"
      "  map tcp_any { type inet_service : ipv4_addr . inet_service; }\n"
      "  map udp_any { type inet_service : ipv4_addr . inet_service; }\n"
      "  map tcp_addr { type ipv4_addr . inet_service : ipv4_addr . inet_service; }\n"
      "  map udp_addr { type ipv4_addr . inet_service : ipv4_addr . inet_service; }\n"
      "  chain published {\n"
      "    dnat ip to ip daddr . tcp dport map @tcp_addr\n"
      "    dnat ip to ip daddr . udp dport map @udp_addr\n"
      "    dnat ip to tcp dport map @tcp_any\n"
      "    dnat ip to udp dport map @udp_any\n"
      "  }\n"
      "  chain prerouting {\n"
      "    type nat hook prerouting priority dstnat; policy accept;\n"
      "    fib daddr type local jump published\n"
      "  }\n"
      "  chain output {\n"
      "    type nat hook output priority -100; policy accept;\n"
      "    fib daddr type local jump published\n"
      "  }\n"
      "  chain postrouting {\n"
      "    type nat hook postrouting priority srcnat; policy accept;\n"
      // A TCP connection first seen mid-stream from a container is one restored by a migration
      // (its peer knows the container's own address): never masqueraded.
      "    ip saddr " +
      subnet +
      " tcp flags & (syn | ack) != syn accept\n"
      "    ip saddr " +
      subnet + " ip daddr != " + subnet +
      " masquerade\n"
      "    oifname \"" +
      br +
      "\" ip saddr 127.0.0.0/8 masquerade\n"
      "    oifname \"" +
      br + "\" ip saddr " + subnet +
      " ct status dnat masquerade\n"
      "  }\n"
      "  chain forward {\n"
      "    type filter hook forward priority filter; policy accept;\n"
      "    oifname \"" +
      br +
      "\" accept\n"
      "    iifname \"" +
      br +
      "\" accept\n"
      "  }\n"
      "}\n";
  std::string error;
  if (!nft.run(definition, &error)) {
    // "File exists" from `create table`: the table is there already (made by us or a concurrent
    // engine). Anything else is a real failure.
    if (error.find("File exists") == std::string::npos) {
      while (!error.empty() && error.back() == '\n') error.pop_back();
      throw Error("create nftables table ip cryo: " + error);
    }
  }
  accept_in_foreign_forward_chain(nft, config);
}

void add_port_rules(Nftables& nft, const std::string& container_ip,
                    const std::vector<PortMapping>& ports) {
  if (ports.empty()) return;
  std::string commands;
  for (const auto& port : ports)
    commands += "create element ip cryo " + map_name(port) + " { " + map_key(port) + " : " +
                container_ip + " . " + std::to_string(port.container_port) + " }\n";
  std::string error;
  if (!nft.run(commands, &error)) {
    while (!error.empty() && error.back() == '\n') error.pop_back();
    if (error.find("File exists") != std::string::npos)
      throw ExitCodeError(
          "publish ports: bind: address already in use (a host port is already published by "
          "another cryo engine): " +
              error,
          125);
    throw Error("publish ports: nftables: " + error);
  }
}

void remove_port_rules(Nftables& nft, const std::vector<PortMapping>& ports) {
  for (const auto& port : ports) {
    std::string error;
    if (!nft.run("delete element ip cryo " + map_name(port) + " { " + map_key(port) + " }\n",
                 &error) &&
        error.find("No such file or directory") == std::string::npos) {
      while (!error.empty() && error.back() == '\n') error.pop_back();
      throw Error("remove published port " + std::to_string(port.host_port) +
                  ": nftables: " + error);
    }
  }
}

}  // namespace cryo::engine
