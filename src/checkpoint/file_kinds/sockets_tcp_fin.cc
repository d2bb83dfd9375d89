#include "checkpoint/file_kinds/sockets_tcp_fin.h"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip6.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstring>
#include <exception>
#include <optional>
#include <thread>
#include <vector>

#include "common/error.h"
#include "common/log.h"
#include "common/unique_fd.h"

namespace cryo::ckpt::files::sockets {

namespace {

// A raw socket that sends whole IP packets (headers included) of one family.
class RawPacketSocket {
 public:
  explicit RawPacketSocket(int family) {
    if (family == AF_INET) {
      // IPPROTO_RAW implies IP_HDRINCL; the kernel fills in the IP checksum and id.
      fd_ = UniqueFd(::socket(AF_INET, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_RAW));
      if (fd_.get() < 0) throw_errno("socket(AF_INET, SOCK_RAW, IPPROTO_RAW)");
    } else {
      fd_ = UniqueFd(::socket(AF_INET6, SOCK_RAW | SOCK_CLOEXEC, IPPROTO_TCP));
      if (fd_.get() < 0) throw_errno("socket(AF_INET6, SOCK_RAW, IPPROTO_TCP)");
      int on = 1;
      if (::setsockopt(fd_.get(), IPPROTO_IPV6, IPV6_HDRINCL, &on, sizeof on) < 0)
        throw_errno("setsockopt IPV6_HDRINCL");
    }
  }
  void send_to(const std::vector<uint8_t>& packet, const sockaddr* to, socklen_t len) const {
    ssize_t n = ::sendto(fd_.get(), packet.data(), packet.size(), 0, to, len);
    if (n < 0) throw_errno("sendto (raw packet)");
    if (static_cast<size_t>(n) != packet.size()) throw Error("short write of a raw packet");
  }

 private:
  UniqueFd fd_;
};

uint32_t checksum_add(uint32_t sum, const void* data, size_t size) {
  const auto* bytes = static_cast<const uint8_t*>(data);
  for (size_t i = 0; i + 1 < size; i += 2)
    sum += static_cast<uint32_t>(bytes[i] << 8 | bytes[i + 1]);
  if (size % 2) sum += static_cast<uint32_t>(bytes[size - 1] << 8);
  return sum;
}

uint16_t checksum_fold(uint32_t sum) {
  while (sum >> 16) sum = (sum & 0xffff) + (sum >> 16);
  return htons(static_cast<uint16_t>(~sum & 0xffff));
}

tcphdr fin_header(const InjectedFin& fin) {
  tcphdr tcp{};
  tcp.source = htons(fin.peer_port);
  tcp.dest = htons(fin.local_port);
  tcp.seq = htonl(fin.seq);
  tcp.ack_seq = htonl(fin.ack);
  tcp.doff = sizeof(tcphdr) / 4;
  tcp.fin = 1;
  tcp.ack = 1;
  tcp.window = htons(static_cast<uint16_t>(
      std::min<uint32_t>(fin.window >> std::clamp(fin.window_scale, 0, 14), 0xffff)));
  return tcp;
}

void parse(int family, const std::string& ip, void* out) {
  if (::inet_pton(family, ip.c_str(), out) != 1)
    throw Error("bad " + std::string(family == AF_INET ? "IPv4" : "IPv6") + " address " + ip);
}

// "::ffff:a.b.c.d" -> "a.b.c.d"; other addresses stay as they are.
std::string unmapped(const std::string& ip) {
  const std::string prefix = "::ffff:";
  if (ip.size() > prefix.size() && ip.compare(0, prefix.size(), prefix) == 0 &&
      ip.find('.') != std::string::npos)
    return ip.substr(prefix.size());
  return ip;
}

// The packet on the wire: the IP header (v4 or v6), then the TCP header.
template <typename IpHeader>
std::vector<uint8_t> ip_packet(const IpHeader& ip, const tcphdr& tcp) {
  std::vector<uint8_t> packet(sizeof ip + sizeof tcp);
  std::memcpy(packet.data(), &ip, sizeof ip);
  std::memcpy(packet.data() + sizeof ip, &tcp, sizeof tcp);
  return packet;
}

void send_fin_v4(const RawPacketSocket& raw, const InjectedFin& fin, const std::string& peer_ip,
                 const std::string& local_ip) {
  iphdr ip{};
  ip.version = 4;
  ip.ihl = sizeof(iphdr) / 4;
  ip.ttl = 64;
  ip.protocol = IPPROTO_TCP;
  ip.frag_off = htons(IP_DF);
  ip.tot_len = htons(sizeof(iphdr) + sizeof(tcphdr));
  parse(AF_INET, peer_ip, &ip.saddr);
  parse(AF_INET, local_ip, &ip.daddr);
  tcphdr tcp = fin_header(fin);
  uint8_t pseudo[12] = {};
  std::memcpy(pseudo, &ip.saddr, 4);
  std::memcpy(pseudo + 4, &ip.daddr, 4);
  pseudo[9] = IPPROTO_TCP;
  pseudo[11] = sizeof(tcphdr);
  tcp.check = checksum_fold(checksum_add(checksum_add(0, pseudo, sizeof pseudo), &tcp, sizeof tcp));
  std::vector<uint8_t> packet = ip_packet(ip, tcp);
  sockaddr_in to{};
  to.sin_family = AF_INET;
  to.sin_addr.s_addr = ip.daddr;
  raw.send_to(packet, reinterpret_cast<const sockaddr*>(&to), sizeof to);
}

void send_fin_v6(const RawPacketSocket& raw, const InjectedFin& fin) {
  ip6_hdr ip{};
  ip.ip6_flow = htonl(6u << 28);
  ip.ip6_plen = htons(sizeof(tcphdr));
  ip.ip6_nxt = IPPROTO_TCP;
  ip.ip6_hlim = 64;
  parse(AF_INET6, fin.peer_ip, &ip.ip6_src);
  parse(AF_INET6, fin.local_ip, &ip.ip6_dst);
  tcphdr tcp = fin_header(fin);
  uint8_t pseudo[40] = {};
  std::memcpy(pseudo, &ip.ip6_src, 16);
  std::memcpy(pseudo + 16, &ip.ip6_dst, 16);
  pseudo[35] = sizeof(tcphdr);
  pseudo[39] = IPPROTO_TCP;
  tcp.check = checksum_fold(checksum_add(checksum_add(0, pseudo, sizeof pseudo), &tcp, sizeof tcp));
  std::vector<uint8_t> packet = ip_packet(ip, tcp);
  sockaddr_in6 to{};
  to.sin6_family = AF_INET6;
  to.sin6_addr = ip.ip6_dst;
  to.sin6_scope_id = fin.local_scope_id;
  raw.send_to(packet, reinterpret_cast<const sockaddr*>(&to), sizeof to);
}

int tcp_state_of(int fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0) throw_errno("getsockopt TCP_INFO");
  return info.tcpi_state;
}

bool fin_taken(int state) {
  return state != TCP_ESTABLISHED && state != TCP_FIN_WAIT1 && state != TCP_FIN_WAIT2;
}

// The raw socket is made in the restored socket's network namespace: a thread of its own enters
// it (setns of one thread leaves cryo's other threads where they are).
RawPacketSocket raw_socket_in_netns_of(int socket_fd, int family) {
  int ns = ::ioctl(socket_fd, SIOCGSKNS);
  if (ns < 0) throw_errno("ioctl SIOCGSKNS");
  UniqueFd netns(ns);
  std::exception_ptr failure;
  std::optional<RawPacketSocket> raw;
  std::thread maker([&] {
    try {
      if (::setns(netns.get(), CLONE_NEWNET) < 0)
        throw_errno("setns into the socket's network namespace");
      raw.emplace(family);
    } catch (...) {
      failure = std::current_exception();
    }
  });
  maker.join();
  if (failure) std::rethrow_exception(failure);
  return std::move(*raw);
}

}  // namespace

void inject_peer_fin(int socket_fd, const InjectedFin& fin) {
  std::string peer_ip = unmapped(fin.peer_ip), local_ip = unmapped(fin.local_ip);
  bool as_ipv4 = fin.family == AF_INET || (peer_ip != fin.peer_ip && local_ip != fin.local_ip);
  RawPacketSocket raw = raw_socket_in_netns_of(socket_fd, as_ipv4 ? AF_INET : AF_INET6);
  // The looped-back packet is processed in softirq context, normally before sendto returns; a
  // packet lost on the way (a full backlog) is sent again.
  constexpr int kAttempts = 20;
  for (int attempt = 0; attempt < kAttempts; ++attempt) {
    if (as_ipv4) {
      send_fin_v4(raw, fin, peer_ip, local_ip);
    } else {
      send_fin_v6(raw, fin);
    }
    for (int check = 0; check < 10; ++check) {
      if (fin_taken(tcp_state_of(socket_fd))) return;
      std::this_thread::sleep_for(std::chrono::milliseconds(10));
    }
    LOG_DEBUG << "the injected FIN (seq " << fin.seq << ") was not taken yet, sending it again";
  }
  throw Error("the socket did not take the injected FIN of its peer (state " +
              std::to_string(tcp_state_of(socket_fd)) + ")");
}

}  // namespace cryo::ckpt::files::sockets
