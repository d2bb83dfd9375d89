// Netlink sockets (NETLINK_ROUTE, NETLINK_GENERIC, ...): protocol, bound port id, multicast
// group memberships, destination, options. Messages queued for the socket (unread replies or
// notifications) are not part of the checkpoint, as if they were dropped under memory pressure
// (ENOBUFS is how netlink reports that).
#include <linux/netlink.h>
#include <sys/socket.h>

#include <string>
#include <vector>

#include "checkpoint/file_kinds/file_kind.h"
#include "checkpoint/file_kinds/socket_options.h"
#include "common/error.h"
#include "common/log.h"

#ifndef SOL_NETLINK
#define SOL_NETLINK 270
#endif

namespace cryo::ckpt::files {

namespace {

using sockets::SocketIdentity;

struct NetlinkOption {
  int name;
  const char* key;
};
const NetlinkOption kNetlinkOptions[] = {
    {NETLINK_PKTINFO, "NETLINK_PKTINFO"},
    {NETLINK_BROADCAST_ERROR, "NETLINK_BROADCAST_ERROR"},
    {NETLINK_NO_ENOBUFS, "NETLINK_NO_ENOBUFS"},
    {NETLINK_LISTEN_ALL_NSID, "NETLINK_LISTEN_ALL_NSID"},
    {NETLINK_CAP_ACK, "NETLINK_CAP_ACK"},
    {NETLINK_EXT_ACK, "NETLINK_EXT_ACK"},
    {NETLINK_GET_STRICT_CHK, "NETLINK_GET_STRICT_CHK"},
};

std::vector<uint32_t> memberships(int fd) {
  std::vector<uint32_t> words(32);
  socklen_t len = static_cast<socklen_t>(words.size() * sizeof(uint32_t));
  if (::getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, words.data(), &len) < 0)
    throw_errno("getsockopt NETLINK_LIST_MEMBERSHIPS");
  if (len > words.size() * sizeof(uint32_t)) {
    words.resize(len / sizeof(uint32_t));
    if (::getsockopt(fd, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, words.data(), &len) < 0)
      throw_errno("getsockopt NETLINK_LIST_MEMBERSHIPS");
  }
  words.resize(len / sizeof(uint32_t));
  std::vector<uint32_t> groups;
  for (size_t w = 0; w < words.size(); ++w)
    for (uint32_t bit = 0; bit < 32; ++bit)
      if (words[w] & (1u << bit)) groups.push_back(static_cast<uint32_t>(w * 32 + bit + 1));
  return groups;
}

bool netlink_claims(const DumpedFd& fd) {
  return sockets::identify(fd).domain == AF_NETLINK;
}

void netlink_dump(DumpContext&, const DumpedFd& fd, json& description) {
  SocketIdentity id = sockets::identify(fd);
  int s = fd.stolen;
  description["kind"] = "netlink_socket";
  description["socket"] = sockets::identity_json(id);
  description["options"] = sockets::dump_options(s, id);
  json netlink_options = json::object();
  for (const NetlinkOption& o : kNetlinkOptions) {
    int value = 0;
    socklen_t len = sizeof value;
    if (::getsockopt(s, SOL_NETLINK, o.name, &value, &len) == 0 && value != 0)
      netlink_options[o.key] = value;
  }
  description["netlink_options"] = std::move(netlink_options);
  sockaddr_nl local{};
  socklen_t len = sizeof local;
  if (::getsockname(s, reinterpret_cast<sockaddr*>(&local), &len) < 0) throw_errno("getsockname");
  description["port_id"] = local.nl_pid;
  description["groups"] = memberships(s);
  sockaddr_nl peer{};
  len = sizeof peer;
  if (::getpeername(s, reinterpret_cast<sockaddr*>(&peer), &len) == 0 &&
      (peer.nl_pid != 0 || peer.nl_groups != 0))
    description["peer"] = {{"port_id", peer.nl_pid}, {"groups", peer.nl_groups}};
}

UniqueFd netlink_open(RestoreContext&, const json& description) {
  SocketIdentity id = sockets::identity_from_json(description);
  UniqueFd s = sockets::new_socket(id);
  auto port_id = description.at("port_id").get<uint32_t>();
  with_context("netlink socket (protocol " + std::to_string(id.protocol) + ", port id " +
                   std::to_string(port_id) + ")",
               [&] {
                 sockets::restore_options(s.get(), description.at("options"));
                 for (const NetlinkOption& o : kNetlinkOptions)
                   if (description.at("netlink_options").contains(o.key))
                     sockets::set_int_option(s.get(), SOL_NETLINK, o.name,
                                             description.at("netlink_options").at(o.key).get<int>(),
                                             o.key);
                 if (port_id != 0) {
                   sockaddr_nl local{};
                   local.nl_family = AF_NETLINK;
                   local.nl_pid = port_id;
                   if (::bind(s.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) < 0) {
                     if (errno != EADDRINUSE) throw_errno("bind");
                     // Port ids default to the pid of the process that bound first; another
                     // socket of this namespace may hold it now. The kernel answers requests at
                     // whatever port id the socket has, so a new one keeps it working.
                     LOG_WARN << "netlink port id " << port_id
                              << " is taken in this network namespace: the restored socket gets "
                                 "a new one";
                     local.nl_pid = 0;
                     if (::bind(s.get(), reinterpret_cast<sockaddr*>(&local), sizeof local) < 0)
                       throw_errno("bind (automatic port id)");
                   }
                 }
                 for (const json& group : description.at("groups")) {
                   int g = group.get<int>();
                   sockets::set_int_option(s.get(), SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, g,
                                           "NETLINK_ADD_MEMBERSHIP");
                 }
                 if (description.contains("peer")) {
                   sockaddr_nl peer{};
                   peer.nl_family = AF_NETLINK;
                   peer.nl_pid = description.at("peer").at("port_id").get<uint32_t>();
                   peer.nl_groups = description.at("peer").at("groups").get<uint32_t>();
                   if (::connect(s.get(), reinterpret_cast<sockaddr*>(&peer), sizeof peer) < 0)
                     throw_errno("connect");
                 }
               });
  sockets::apply_status_flags(s.get(), description.at("flags").get<int>());
  return s;
}

}  // namespace

const FileKind kNetlinkSocketKind{{"netlink_socket"}, netlink_claims, netlink_dump, netlink_open};

}  // namespace cryo::ckpt::files
