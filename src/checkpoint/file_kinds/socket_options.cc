#include "checkpoint/file_kinds/socket_options.h"

#include <fcntl.h>
#include <linux/inet_diag.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <net/if.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <unistd.h>

#include <cstring>
#include <thread>

#include "checkpoint/image/image_file.h"
#include "common/error.h"

namespace cryo::ckpt::files::sockets {

namespace {

// An integer option and the sockets it exists on. Restored in this order, before bind: address
// reuse and IPV6_V6ONLY must precede bind.
struct IntOption {
  int level;
  int name;
  const char* key;
  bool (*applies)(const SocketIdentity& id);
};

bool any(const SocketIdentity&) {
  return true;
}
bool inet(const SocketIdentity& id) {
  return id.domain == AF_INET || id.domain == AF_INET6;
}
bool inet4(const SocketIdentity& id) {
  return id.domain == AF_INET;
}
bool inet6(const SocketIdentity& id) {
  return id.domain == AF_INET6;
}
bool udp4(const SocketIdentity& id) {
  return id.domain == AF_INET && id.type == SOCK_DGRAM;
}
bool udp6(const SocketIdentity& id) {
  return id.domain == AF_INET6 && id.type == SOCK_DGRAM;
}
bool tcp(const SocketIdentity& id) {
  return inet(id) && id.type == SOCK_STREAM;
}
bool unix_or_netlink(const SocketIdentity& id) {
  return id.domain == AF_UNIX || id.domain == AF_NETLINK;
}
bool unix_socket(const SocketIdentity& id) {
  return id.domain == AF_UNIX;
}

const IntOption kIntOptions[] = {
    {SOL_SOCKET, SO_REUSEADDR, "SO_REUSEADDR", inet},
    {SOL_SOCKET, SO_REUSEPORT, "SO_REUSEPORT", inet},
    {IPPROTO_IPV6, IPV6_V6ONLY, "IPV6_V6ONLY", inet6},
    {SOL_SOCKET, SO_KEEPALIVE, "SO_KEEPALIVE", inet},
    {SOL_SOCKET, SO_BROADCAST, "SO_BROADCAST", inet},
    {SOL_SOCKET, SO_OOBINLINE, "SO_OOBINLINE", tcp},
    {SOL_SOCKET, SO_PRIORITY, "SO_PRIORITY", any},
    {SOL_SOCKET, SO_MARK, "SO_MARK", inet},
    {SOL_SOCKET, SO_RCVLOWAT, "SO_RCVLOWAT", any},
    {SOL_SOCKET, SO_PASSCRED, "SO_PASSCRED", unix_or_netlink},
    {SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF", unix_socket},
    {SOL_SOCKET, SO_TIMESTAMP, "SO_TIMESTAMP", any},
    {IPPROTO_TCP, TCP_NODELAY, "TCP_NODELAY", tcp},
    {IPPROTO_TCP, TCP_CORK, "TCP_CORK", tcp},
    {IPPROTO_TCP, TCP_KEEPIDLE, "TCP_KEEPIDLE", tcp},
    {IPPROTO_TCP, TCP_KEEPINTVL, "TCP_KEEPINTVL", tcp},
    {IPPROTO_TCP, TCP_KEEPCNT, "TCP_KEEPCNT", tcp},
    {IPPROTO_TCP, TCP_SYNCNT, "TCP_SYNCNT", tcp},
    {IPPROTO_TCP, TCP_LINGER2, "TCP_LINGER2", tcp},
    {IPPROTO_TCP, TCP_DEFER_ACCEPT, "TCP_DEFER_ACCEPT", tcp},
    {IPPROTO_TCP, TCP_USER_TIMEOUT, "TCP_USER_TIMEOUT", tcp},
    {IPPROTO_TCP, TCP_NOTSENT_LOWAT, "TCP_NOTSENT_LOWAT", tcp},
    {IPPROTO_TCP, TCP_FASTOPEN, "TCP_FASTOPEN", tcp},
    {IPPROTO_IP, IP_TOS, "IP_TOS", inet4},
    {IPPROTO_IP, IP_TTL, "IP_TTL", inet4},
    {IPPROTO_IP, IP_FREEBIND, "IP_FREEBIND", inet4},
    {IPPROTO_IP, IP_TRANSPARENT, "IP_TRANSPARENT", inet4},
    {IPPROTO_IP, IP_PKTINFO, "IP_PKTINFO", inet4},
    {IPPROTO_IP, IP_RECVERR, "IP_RECVERR", inet4},
    {IPPROTO_IP, IP_MULTICAST_TTL, "IP_MULTICAST_TTL", udp4},
    {IPPROTO_IP, IP_MULTICAST_LOOP, "IP_MULTICAST_LOOP", udp4},
    {IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, "IP_BIND_ADDRESS_NO_PORT", inet},
    {IPPROTO_IPV6, IPV6_UNICAST_HOPS, "IPV6_UNICAST_HOPS", inet6},
    {IPPROTO_IPV6, IPV6_TCLASS, "IPV6_TCLASS", inet6},
    {IPPROTO_IPV6, IPV6_RECVPKTINFO, "IPV6_RECVPKTINFO", inet6},
    {IPPROTO_IPV6, IPV6_RECVERR, "IPV6_RECVERR", inet6},
    {IPPROTO_IPV6, IPV6_MULTICAST_HOPS, "IPV6_MULTICAST_HOPS", udp6},
    {IPPROTO_IPV6, IPV6_MULTICAST_LOOP, "IPV6_MULTICAST_LOOP", udp6},
};

// The kernel doubles SO_RCVBUF/SO_SNDBUF on set and reports the doubled value: half of the
// dumped value is set back.
struct BufferOption {
  int name;
  const char* key;
};
const BufferOption kBufferOptions[] = {{SO_RCVBUF, "SO_RCVBUF"}, {SO_SNDBUF, "SO_SNDBUF"}};

struct TimeoutOption {
  int name;
  const char* key;
};
const TimeoutOption kTimeoutOptions[] = {{SO_RCVTIMEO, "SO_RCVTIMEO_US"},
                                         {SO_SNDTIMEO, "SO_SNDTIMEO_US"}};

bool try_get_int(int fd, int level, int name, int* value) {
  socklen_t len = sizeof *value;
  return ::getsockopt(fd, level, name, value, &len) == 0;
}

int64_t get_timeout_us(int fd, int name, const char* key) {
  struct timeval tv {};
  socklen_t len = sizeof tv;
  if (::getsockopt(fd, SOL_SOCKET, name, &tv, &len) < 0)
    throw_errno(std::string("getsockopt ") + key);
  return static_cast<int64_t>(tv.tv_sec) * 1000000 + tv.tv_usec;
}

std::string get_bound_device(int fd) {
  char name[IFNAMSIZ + 1] = {};
  socklen_t len = IFNAMSIZ;
  if (::getsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, name, &len) < 0)
    throw_errno("getsockopt SO_BINDTODEVICE");
  return std::string(name, ::strnlen(name, len));
}

bool skipped(const std::vector<std::string>& skip, const std::string& key) {
  for (const std::string& s : skip)
    if (s == key) return true;
  return false;
}

}  // namespace

SocketIdentity identify(int fd) {
  SocketIdentity id;
  if (!try_get_int(fd, SOL_SOCKET, SO_DOMAIN, &id.domain)) return SocketIdentity{};
  if (!try_get_int(fd, SOL_SOCKET, SO_TYPE, &id.type) ||
      !try_get_int(fd, SOL_SOCKET, SO_PROTOCOL, &id.protocol))
    throw_errno("getsockopt SO_TYPE/SO_PROTOCOL");
  return id;
}

SocketIdentity identify(const DumpedFd& fd) {
  if (!S_ISSOCK(fd.st.st_mode) || fd.stolen < 0) return SocketIdentity{};
  return identify(fd.stolen);
}

json identity_json(const SocketIdentity& id) {
  return json{{"domain", id.domain}, {"type", id.type}, {"protocol", id.protocol}};
}

SocketIdentity identity_from_json(const json& description) {
  const json& s = description.at("socket");
  SocketIdentity id;
  id.domain = s.at("domain").get<int>();
  id.type = s.at("type").get<int>();
  id.protocol = s.at("protocol").get<int>();
  return id;
}

int get_int_option(int fd, int level, int name, const char* what) {
  int value = 0;
  if (!try_get_int(fd, level, name, &value)) throw_errno(std::string("getsockopt ") + what);
  return value;
}

void set_int_option(int fd, int level, int name, int value, const char* what) {
  if (::setsockopt(fd, level, name, &value, sizeof value) < 0)
    throw_errno(std::string("setsockopt ") + what + " " + std::to_string(value));
}

UniqueFd new_socket(const SocketIdentity& id) {
  int fd = ::socket(id.domain, id.type | SOCK_CLOEXEC, id.protocol);
  if (fd < 0)
    throw_errno("socket(" + std::to_string(id.domain) + ", " + std::to_string(id.type) + ", " +
                std::to_string(id.protocol) + ")");
  return UniqueFd(fd);
}

json dump_options(int fd, const SocketIdentity& id) {
  UniqueFd fresh = new_socket(id);
  json out = json::object();
  for (const IntOption& o : kIntOptions) {
    if (!o.applies(id)) continue;
    int value = 0, reference = 0;
    // Options a protocol does not know (ENOPROTOOPT) are simply not part of its state.
    if (!try_get_int(fd, o.level, o.name, &value)) continue;
    if (try_get_int(fresh.get(), o.level, o.name, &reference) && value == reference) continue;
    out[o.key] = value;
  }
  for (const BufferOption& o : kBufferOptions) {
    int value = get_int_option(fd, SOL_SOCKET, o.name, o.key);
    if (value != get_int_option(fresh.get(), SOL_SOCKET, o.name, o.key)) out[o.key] = value;
  }
  for (const TimeoutOption& o : kTimeoutOptions) {
    int64_t us = get_timeout_us(fd, o.name, o.key);
    if (us != 0) out[o.key] = us;
  }
  struct linger lg {};
  socklen_t len = sizeof lg;
  if (::getsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, &len) < 0) throw_errno("getsockopt SO_LINGER");
  if (lg.l_onoff) out["SO_LINGER_S"] = lg.l_linger;
  if (id.domain != AF_UNIX) {
    std::string device = get_bound_device(fd);
    if (!device.empty()) out["SO_BINDTODEVICE"] = device;
  }
  return out;
}

void restore_options(int fd, const json& options, const std::vector<std::string>& skip) {
  for (const IntOption& o : kIntOptions) {
    if (!options.contains(o.key) || skipped(skip, o.key)) continue;
    set_int_option(fd, o.level, o.name, options.at(o.key).get<int>(), o.key);
  }
  for (const BufferOption& o : kBufferOptions) {
    if (!options.contains(o.key) || skipped(skip, o.key)) continue;
    set_int_option(fd, SOL_SOCKET, o.name, options.at(o.key).get<int>() / 2, o.key);
  }
  for (const TimeoutOption& o : kTimeoutOptions) {
    if (!options.contains(o.key)) continue;
    auto us = options.at(o.key).get<int64_t>();
    struct timeval tv {};
    tv.tv_sec = static_cast<time_t>(us / 1000000);
    tv.tv_usec = static_cast<suseconds_t>(us % 1000000);
    if (::setsockopt(fd, SOL_SOCKET, o.name, &tv, sizeof tv) < 0)
      throw_errno(std::string("setsockopt ") + o.key);
  }
  if (options.contains("SO_LINGER_S")) {
    struct linger lg {};
    lg.l_onoff = 1;
    lg.l_linger = options.at("SO_LINGER_S").get<int>();
    if (::setsockopt(fd, SOL_SOCKET, SO_LINGER, &lg, sizeof lg) < 0)
      throw_errno("setsockopt SO_LINGER");
  }
  if (options.contains("SO_BINDTODEVICE")) {
    auto device = options.at("SO_BINDTODEVICE").get<std::string>();
    if (::setsockopt(fd, SOL_SOCKET, SO_BINDTODEVICE, device.c_str(),
                     static_cast<socklen_t>(device.size())) < 0)
      throw_errno("setsockopt SO_BINDTODEVICE " + device);
  }
}

void apply_status_flags(int fd, int dumped_flags) {
  int status = ::fcntl(fd, F_GETFL);
  if (status < 0) throw_errno("fcntl F_GETFL");
  int wanted = (status & ~(O_NONBLOCK | O_ASYNC)) | (dumped_flags & (O_NONBLOCK | O_ASYNC));
  if (wanted != status && ::fcntl(fd, F_SETFL, wanted) < 0) throw_errno("fcntl F_SETFL");
}

UniqueFd sock_diag_socket(int sockfd) {
  int ns = ::ioctl(sockfd, SIOCGSKNS);
  if (ns < 0) throw_errno("ioctl SIOCGSKNS");
  UniqueFd netns(ns);
  struct stat theirs, ours;
  if (::fstat(netns.get(), &theirs) < 0) throw_errno("fstat network namespace");
  if (::stat("/proc/thread-self/ns/net", &ours) < 0) throw_errno("stat /proc/thread-self/ns/net");
  auto open_diag = [] {
    int fd = ::socket(AF_NETLINK, SOCK_RAW | SOCK_CLOEXEC, NETLINK_SOCK_DIAG);
    if (fd < 0) throw_errno("socket NETLINK_SOCK_DIAG");
    return UniqueFd(fd);
  };
  if (theirs.st_ino == ours.st_ino && theirs.st_dev == ours.st_dev) return open_diag();
  // A netlink socket belongs to the namespace it is created in: create it from a thread of its
  // own that enters the socket's namespace (setns of one thread leaves the others where they are).
  UniqueFd result;
  std::string failure;
  std::thread creator([&] {
    try {
      if (::setns(netns.get(), CLONE_NEWNET) < 0) throw_errno("setns to the socket's netns");
      result = open_diag();
    } catch (const Error& e) {
      failure = e.what();
    }
  });
  creator.join();
  if (!failure.empty()) throw Error(failure);
  return result;
}

std::string sock_diag_exchange(int diag_fd, const void* request, size_t size) {
  struct sockaddr_nl kernel {};
  kernel.nl_family = AF_NETLINK;
  if (::sendto(diag_fd, request, size, 0, reinterpret_cast<sockaddr*>(&kernel), sizeof kernel) < 0)
    throw_errno("sock_diag request");
  std::vector<char> buf(64 * 1024);
  std::string payload;
  bool found = false;
  for (;;) {
    ssize_t n = ::recv(diag_fd, buf.data(), buf.size(), 0);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno("sock_diag answer");
    }
    int left = static_cast<int>(n);
    for (auto* h = reinterpret_cast<nlmsghdr*>(buf.data()); NLMSG_OK(h, left);
         h = NLMSG_NEXT(h, left)) {
      if (h->nlmsg_type == NLMSG_DONE) {
        if (!found) throw Error("sock_diag: no answer (the socket is gone?)");
        return payload;
      }
      if (h->nlmsg_type == NLMSG_ERROR) {
        auto* err = static_cast<nlmsgerr*>(NLMSG_DATA(h));
        if (err->error == 0) continue;
        throw_errno("sock_diag", -err->error);
      }
      if (h->nlmsg_type == SOCK_DIAG_BY_FAMILY && !found) {
        payload.assign(static_cast<const char*>(NLMSG_DATA(h)), h->nlmsg_len - NLMSG_HDRLEN);
        found = true;
      }
      if (!(h->nlmsg_flags & NLM_F_MULTI) && found) return payload;
    }
  }
}

std::vector<std::pair<int, std::string>> diag_attributes(const std::string& answer,
                                                         size_t header_size) {
  std::vector<std::pair<int, std::string>> out;
  if (answer.size() < header_size) throw Error("sock_diag: short answer");
  size_t at = NLMSG_ALIGN(header_size);
  while (at + sizeof(rtattr) <= answer.size()) {
    rtattr attr;
    std::memcpy(&attr, answer.data() + at, sizeof attr);
    if (attr.rta_len < sizeof attr || at + attr.rta_len > answer.size()) break;
    out.emplace_back(attr.rta_type,
                     answer.substr(at + RTA_LENGTH(0), attr.rta_len - RTA_LENGTH(0)));
    at += RTA_ALIGN(attr.rta_len);
  }
  return out;
}

json write_bytes_image(ImageSink& sink, const std::string& name, const std::string& data) {
  RawImageWriter writer(sink, name, data.size());
  writer.append(data.data(), data.size());
  writer.finish();
  return json{{"image", name}, {"bytes", data.size()}};
}

std::string read_bytes_image(const std::string& image_dir, const json& entry) {
  RawImageReader reader(image_dir, entry.at("image").get<std::string>());
  reader.verify_checksum();
  auto bytes = entry.at("bytes").get<uint64_t>();
  if (reader.payload_size() != bytes)
    throw Error(reader.path() + ": holds " + std::to_string(reader.payload_size()) +
                " bytes, files.img says " + std::to_string(bytes));
  std::string data(bytes, '\0');
  reader.read_at(0, data.data(), data.size());
  return data;
}

void send_all(int fd, const std::string& data, int flags, const char* what) {
  size_t done = 0;
  while (done < data.size()) {
    ssize_t n = ::send(fd, data.data() + done, data.size() - done, flags | MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw_errno(std::string(what) + " (" + std::to_string(done) + " of " +
                  std::to_string(data.size()) + " bytes written)");
    }
    done += static_cast<size_t>(n);
  }
}

std::string to_hex(const std::string& bytes) {
  static const char digits[] = "0123456789abcdef";
  std::string out;
  for (unsigned char c : bytes) {
    out += digits[c >> 4];
    out += digits[c & 15];
  }
  return out;
}

std::string from_hex(const std::string& hex) {
  if (hex.size() % 2) throw Error("odd-length hex string in files.img");
  auto nibble = [](char c) -> int {
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    throw Error("bad hex digit in files.img");
  };
  std::string out;
  for (size_t i = 0; i < hex.size(); i += 2)
    out += static_cast<char>(nibble(hex[i]) * 16 + nibble(hex[i + 1]));
  return out;
}

}  // namespace cryo::ckpt::files::sockets
