#include "engine/network/netlink.h"

#include <arpa/inet.h>
#include <libmnl/libmnl.h>
#include <linux/if.h>
#include <linux/if_link.h>
#include <linux/rtnetlink.h>
#include <linux/veth.h>
#include <sys/random.h>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <vector>

#include "common/error.h"

namespace cryo::engine {

std::string format_mac(const MacAddress& mac) {
  char buf[18];
  std::snprintf(buf, sizeof buf, "%02x:%02x:%02x:%02x:%02x:%02x", mac[0], mac[1], mac[2], mac[3],
                mac[4], mac[5]);
  return buf;
}

MacAddress parse_mac(const std::string& text) {
  MacAddress mac{};
  unsigned int b[6];
  char trailing;
  if (std::sscanf(text.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x%c", &b[0], &b[1], &b[2], &b[3], &b[4],
                  &b[5], &trailing) != 6 ||
      text.size() != 17)
    throw Error("invalid MAC address " + text);
  for (int i = 0; i < 6; ++i) mac[i] = static_cast<uint8_t>(b[i]);
  if (mac[0] & 1) throw Error("invalid MAC address " + text + ": multicast address");
  return mac;
}

MacAddress random_mac() {
  MacAddress mac{};
  if (::getrandom(mac.data(), mac.size(), 0) != static_cast<ssize_t>(mac.size()))
    throw_errno("getrandom");
  mac[0] = static_cast<uint8_t>((mac[0] & 0xfe) | 0x02);
  return mac;
}

in_addr parse_ipv4(const std::string& text) {
  in_addr address{};
  if (::inet_pton(AF_INET, text.c_str(), &address) != 1)
    throw Error("invalid IPv4 address \"" + text + "\"");
  return address;
}

std::string format_ipv4(in_addr address) {
  char buf[INET_ADDRSTRLEN];
  ::inet_ntop(AF_INET, &address, buf, sizeof buf);
  return buf;
}

RtNetlink::RtNetlink() {
  socket_ = mnl_socket_open2(NETLINK_ROUTE, SOCK_CLOEXEC);
  if (!socket_) throw_errno("netlink socket");
  if (mnl_socket_bind(socket_, 0, MNL_SOCKET_AUTOPID) < 0) {
    int err = errno;
    mnl_socket_close(socket_);
    throw_errno("netlink bind", err);
  }
  port_id_ = mnl_socket_get_portid(socket_);
}

RtNetlink::~RtNetlink() {
  if (socket_) mnl_socket_close(socket_);
}

namespace {

struct Buffer {
  alignas(nlmsghdr) char bytes[16384];
};

nlmsghdr* start_request(Buffer& buf, uint16_t type, uint16_t flags) {
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.bytes);
  nlh->nlmsg_type = type;
  nlh->nlmsg_flags = static_cast<uint16_t>(NLM_F_REQUEST | NLM_F_ACK | flags);
  return nlh;
}

ifinfomsg* put_ifinfo(nlmsghdr* nlh) {
  auto* ifi = static_cast<ifinfomsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifinfomsg)));
  ifi->ifi_family = AF_UNSPEC;
  return ifi;
}

void check_name(const std::string& name) {
  if (name.empty() || name.size() >= IFNAMSIZ) throw Error("invalid interface name " + name);
}

}  // namespace

int RtNetlink::transact(nlmsghdr* request) {
  request->nlmsg_seq = ++sequence_;
  if (mnl_socket_sendto(socket_, request, request->nlmsg_len) < 0) throw_errno("netlink send");
  Buffer reply;
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(socket_, reply.bytes, sizeof reply.bytes);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("netlink receive");
    }
    // An error message carries the kernel's errno; the ack is an error message with errno 0.
    int ret =
        mnl_cb_run(reply.bytes, static_cast<size_t>(n), sequence_, port_id_, nullptr, nullptr);
    if (ret < 0) return errno;
    if (ret == MNL_CB_STOP) return 0;
  }
}

int RtNetlink::link_index(const std::string& name) {
  check_name(name);
  Buffer buf;
  nlmsghdr* nlh = mnl_nlmsg_put_header(buf.bytes);
  nlh->nlmsg_type = RTM_GETLINK;
  nlh->nlmsg_flags = NLM_F_REQUEST;
  nlh->nlmsg_seq = ++sequence_;
  put_ifinfo(nlh);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  mnl_attr_put_u32(nlh, IFLA_EXT_MASK, RTEXT_FILTER_SKIP_STATS);
  if (mnl_socket_sendto(socket_, nlh, nlh->nlmsg_len) < 0) throw_errno("netlink send");
  std::vector<char> reply(1 << 16);
  for (;;) {
    ssize_t n = mnl_socket_recvfrom(socket_, reply.data(), reply.size());
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("netlink receive (RTM_GETLINK " + name + ")");
    }
    int index = 0;
    int ret = mnl_cb_run(
        reply.data(), static_cast<size_t>(n), sequence_, port_id_,
        [](const nlmsghdr* msg, void* data) {
          if (msg->nlmsg_type == RTM_NEWLINK) {
            auto* ifi = static_cast<const ifinfomsg*>(mnl_nlmsg_get_payload(msg));
            *static_cast<int*>(data) = ifi->ifi_index;
          }
          return MNL_CB_STOP;
        },
        &index);
    if (ret < 0) {
      if (errno == ENODEV) return 0;
      throw_errno("RTM_GETLINK " + name);
    }
    if (index > 0) return index;
    if (ret == MNL_CB_STOP) return 0;
  }
}

bool RtNetlink::create_bridge(const std::string& name, const MacAddress& mac) {
  check_name(name);
  Buffer buf;
  nlmsghdr* nlh = start_request(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  put_ifinfo(nlh);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  // A fixed address: otherwise the bridge takes the lowest address of its ports, and changes it
  // (and the neighbours' ARP entries go stale) as containers come and go.
  mnl_attr_put(nlh, IFLA_ADDRESS, mac.size(), mac.data());
  nlattr* linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "bridge");
  mnl_attr_nest_end(nlh, linkinfo);
  int err = transact(nlh);
  if (err == EEXIST) return false;
  if (err) throw_errno("create bridge " + name, err);
  return true;
}

void RtNetlink::create_veth(const std::string& host_name, int master_index,
                            const std::string& peer_name, int peer_netns_fd,
                            const MacAddress& peer_mac) {
  check_name(host_name);
  check_name(peer_name);
  Buffer buf;
  nlmsghdr* nlh = start_request(buf, RTM_NEWLINK, NLM_F_CREATE | NLM_F_EXCL);
  ifinfomsg* ifi = put_ifinfo(nlh);
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  mnl_attr_put_strz(nlh, IFLA_IFNAME, host_name.c_str());
  mnl_attr_put_u32(nlh, IFLA_MASTER, static_cast<uint32_t>(master_index));
  nlattr* linkinfo = mnl_attr_nest_start(nlh, IFLA_LINKINFO);
  mnl_attr_put_strz(nlh, IFLA_INFO_KIND, "veth");
  nlattr* data = mnl_attr_nest_start(nlh, IFLA_INFO_DATA);
  nlattr* peer = mnl_attr_nest_start(nlh, VETH_INFO_PEER);
  // The peer's attributes follow an ifinfomsg of their own.
  auto* peer_ifi = static_cast<ifinfomsg*>(mnl_nlmsg_get_payload_tail(nlh));
  std::memset(peer_ifi, 0, sizeof *peer_ifi);
  peer_ifi->ifi_family = AF_UNSPEC;
  nlh->nlmsg_len += MNL_ALIGN(sizeof(ifinfomsg));
  mnl_attr_put_strz(nlh, IFLA_IFNAME, peer_name.c_str());
  mnl_attr_put_u32(nlh, IFLA_NET_NS_FD, static_cast<uint32_t>(peer_netns_fd));
  mnl_attr_put(nlh, IFLA_ADDRESS, peer_mac.size(), peer_mac.data());
  mnl_attr_nest_end(nlh, peer);
  mnl_attr_nest_end(nlh, data);
  mnl_attr_nest_end(nlh, linkinfo);
  int err = transact(nlh);
  if (err) throw_errno("create veth pair " + host_name + "/" + peer_name, err);
}

void RtNetlink::set_link_up(int index) {
  Buffer buf;
  nlmsghdr* nlh = start_request(buf, RTM_NEWLINK, 0);
  ifinfomsg* ifi = put_ifinfo(nlh);
  ifi->ifi_index = index;
  ifi->ifi_flags = IFF_UP;
  ifi->ifi_change = IFF_UP;
  int err = transact(nlh);
  if (err) throw_errno("set link " + std::to_string(index) + " up", err);
}

void RtNetlink::set_bridge_port_hairpin(int index) {
  Buffer buf;
  nlmsghdr* nlh = start_request(buf, RTM_SETLINK, 0);
  ifinfomsg* ifi = put_ifinfo(nlh);
  ifi->ifi_family = AF_BRIDGE;
  ifi->ifi_index = index;
  nlattr* protinfo = mnl_attr_nest_start(nlh, IFLA_PROTINFO);
  mnl_attr_put_u8(nlh, IFLA_BRPORT_MODE, 1);
  mnl_attr_nest_end(nlh, protinfo);
  int err = transact(nlh);
  if (err) throw_errno("set hairpin mode on bridge port " + std::to_string(index), err);
}

bool RtNetlink::add_address(int index, in_addr address, int prefix_length) {
  Buffer buf;
  nlmsghdr* nlh = start_request(buf, RTM_NEWADDR, NLM_F_CREATE | NLM_F_EXCL);
  auto* ifa = static_cast<ifaddrmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(ifaddrmsg)));
  ifa->ifa_family = AF_INET;
  ifa->ifa_prefixlen = static_cast<uint8_t>(prefix_length);
  ifa->ifa_scope = RT_SCOPE_UNIVERSE;
  ifa->ifa_index = static_cast<uint32_t>(index);
  mnl_attr_put(nlh, IFA_LOCAL, sizeof address, &address);
  mnl_attr_put(nlh, IFA_ADDRESS, sizeof address, &address);
  in_addr broadcast = address;
  uint32_t host_mask = prefix_length >= 32 ? 0 : (0xffffffffu >> prefix_length);
  broadcast.s_addr |= htonl(host_mask);
  mnl_attr_put(nlh, IFA_BROADCAST, sizeof broadcast, &broadcast);
  int err = transact(nlh);
  if (err == EEXIST) return false;
  if (err)
    throw_errno("add address " + format_ipv4(address) + "/" + std::to_string(prefix_length), err);
  return true;
}

void RtNetlink::add_default_route(in_addr gateway) {
  Buffer buf;
  nlmsghdr* nlh = start_request(buf, RTM_NEWROUTE, NLM_F_CREATE | NLM_F_EXCL);
  auto* rtm = static_cast<rtmsg*>(mnl_nlmsg_put_extra_header(nlh, sizeof(rtmsg)));
  rtm->rtm_family = AF_INET;
  rtm->rtm_dst_len = 0;
  rtm->rtm_table = RT_TABLE_MAIN;
  rtm->rtm_protocol = RTPROT_BOOT;
  rtm->rtm_scope = RT_SCOPE_UNIVERSE;
  rtm->rtm_type = RTN_UNICAST;
  mnl_attr_put(nlh, RTA_GATEWAY, sizeof gateway, &gateway);
  int err = transact(nlh);
  if (err) throw_errno("add default route via " + format_ipv4(gateway), err);
}

bool RtNetlink::delete_link(const std::string& name) {
  check_name(name);
  Buffer buf;
  nlmsghdr* nlh = start_request(buf, RTM_DELLINK, 0);
  put_ifinfo(nlh);
  mnl_attr_put_strz(nlh, IFLA_IFNAME, name.c_str());
  int err = transact(nlh);
  if (err == ENODEV) return false;
  if (err) throw_errno("delete link " + name, err);
  return true;
}

}  // namespace cryo::engine
