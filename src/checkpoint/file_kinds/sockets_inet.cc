// TCP and UDP sockets, IPv4 and IPv6. Listening and bound/unconnected TCP sockets and UDP sockets
// are recreated from their address, options and backlog. Established TCP connections (only with
// FileDumpOptions::tcp_established) are taken out of the network with TCP_REPAIR on the stolen
// socket: sequence numbers, both queues, window, negotiated options; the restore rebuilds them
// in repair mode (no handshake) and turns repair off, after which the peer just sees a pause.
#include <arpa/inet.h>
#include <fcntl.h>
#include <linux/sockios.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <memory>
#include <set>
#include <string>

#include "checkpoint/file_kinds/file_kind.h"
#include "checkpoint/file_kinds/socket_options.h"
#include "checkpoint/file_kinds/sockets_tcp_fin.h"
#include "checkpoint/file_kinds/sockets_tcp_hold.h"
#include "common/error.h"
#include "common/log.h"

namespace cryo::ckpt::files {

namespace {

using sockets::SocketIdentity;

const char* tcp_state_name(int state) {
  static const char* const names[] = {
      "?",     "ESTABLISHED", "SYN_SENT", "SYN_RECV", "FIN_WAIT1", "FIN_WAIT2",   "TIME_WAIT",
      "CLOSE", "CLOSE_WAIT",  "LAST_ACK", "LISTEN",   "CLOSING",   "NEW_SYN_RECV"};
  if (state < 0 || state >= static_cast<int>(std::size(names))) return "unknown";
  return names[state];
}

// --- addresses --------------------------------------------------------------------------------

json address_json(const sockaddr_storage& ss) {
  char text[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto& in = reinterpret_cast<const sockaddr_in&>(ss);
    ::inet_ntop(AF_INET, &in.sin_addr, text, sizeof text);
    return json{{"ip", text}, {"port", ntohs(in.sin_port)}};
  }
  if (ss.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6&>(ss);
    ::inet_ntop(AF_INET6, &in6.sin6_addr, text, sizeof text);
    return json{{"ip", text}, {"port", ntohs(in6.sin6_port)}, {"scope_id", in6.sin6_scope_id}};
  }
  throw Error("address of family " + std::to_string(ss.ss_family) + " in an inet socket");
}

socklen_t address_from_json(int family, const json& address, sockaddr_storage* ss) {
  *ss = {};
  auto ip = address.at("ip").get<std::string>();
  auto port = htons(address.at("port").get<uint16_t>());
  if (family == AF_INET) {
    auto* in = reinterpret_cast<sockaddr_in*>(ss);
    in->sin_family = AF_INET;
    in->sin_port = port;
    if (::inet_pton(AF_INET, ip.c_str(), &in->sin_addr) != 1) throw Error("bad IPv4 address " + ip);
    return sizeof *in;
  }
  auto* in6 = reinterpret_cast<sockaddr_in6*>(ss);
  in6->sin6_family = AF_INET6;
  in6->sin6_port = port;
  in6->sin6_scope_id = address.value("scope_id", 0u);
  if (::inet_pton(AF_INET6, ip.c_str(), &in6->sin6_addr) != 1)
    throw Error("bad IPv6 address " + ip);
  return sizeof *in6;
}

std::string address_text(const json& address) {
  auto ip = address.at("ip").get<std::string>();
  if (ip.find(':') != std::string::npos) ip = "[" + ip + "]";
  return ip + ":" + std::to_string(address.at("port").get<int>());
}

json local_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) throw_errno("getsockname");
  return address_json(ss);
}

// The peer's address, or null when the socket is not connected.
json peer_address(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) {
    if (errno == ENOTCONN) return nullptr;
    throw_errno("getpeername");
  }
  return address_json(ss);
}

bool is_bound(const json& address) {
  return address.at("port").get<int>() != 0;
}

void bind_to(int fd, int family, const json& address) {
  sockaddr_storage ss;
  socklen_t len = address_from_json(family, address, &ss);
  if (::bind(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0)
    throw_errno("bind " + address_text(address));
}

// A finished connection (an fd still open after the connection ended) keeps the port it shares
// with its listener or sibling connections, so a plain bind() collides with them. In repair mode
// the kernel binds with forced reuse (as for a restored connection); leaving it resets the
// socket's reuse setting, which the caller restores with the other options afterwards.
void bind_finished_connection(int fd, int family, const json& address) {
  sockets::set_int_option(fd, IPPROTO_TCP, TCP_REPAIR, 1, "TCP_REPAIR");
  bind_to(fd, family, address);
  sockets::set_int_option(fd, IPPROTO_TCP, TCP_REPAIR, 0, "TCP_REPAIR off");
}

void connect_to(int fd, int family, const json& address) {
  sockaddr_storage ss;
  socklen_t len = address_from_json(family, address, &ss);
  if (::connect(fd, reinterpret_cast<sockaddr*>(&ss), len) < 0)
    throw_errno("connect " + address_text(address));
}

tcp_info get_tcp_info(int fd) {
  tcp_info info{};
  socklen_t len = sizeof info;
  if (::getsockopt(fd, IPPROTO_TCP, TCP_INFO, &info, &len) < 0) throw_errno("getsockopt TCP_INFO");
  return info;
}

// --- established TCP --------------------------------------------------------------------------

void select_queue(int fd, int queue) {
  sockets::set_int_option(fd, IPPROTO_TCP, TCP_REPAIR_QUEUE, queue, "TCP_REPAIR_QUEUE");
}

// The selected queue (repair mode) and the sequence number of its first byte. Segments that got
// past the packet hold before it was in place may still be processed while the queue is read:
// the end sequence (rcv_nxt, write_seq) is read around one peek of the whole queue and the peek
// retried until both readings agree.
struct QueueSnapshot {
  uint32_t first_seq;
  std::string data;
};

// The peek buffer starts at what the queue held a moment ago (plus slack) and doubles up to
// `max_room` if the queue was found larger: sizing it by the socket's buffer size instead cost
// ~25 ms per connection here (a zeroed 8 MiB buffer, every page a first-touch fault).
QueueSnapshot snapshot_queue(int fd, int queue, size_t room, size_t max_room, const char* what) {
  select_queue(fd, queue);
  room = std::min(room, max_room);
  auto buf = std::make_unique_for_overwrite<char[]>(room);
  for (int attempt = 0;; ++attempt) {
    auto end_before = static_cast<uint32_t>(
        sockets::get_int_option(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ"));
    ssize_t n;
    do {
      n = ::recv(fd, buf.get(), room, MSG_PEEK | MSG_DONTWAIT);
    } while (n < 0 && errno == EINTR);
    if (n < 0 && errno == EAGAIN) n = 0;
    if (n < 0) throw_errno(std::string("peeking the ") + what);
    if (static_cast<size_t>(n) == room) {
      if (room >= max_room) throw Error(std::string("the ") + what + " outgrew its peek buffer");
      room = std::min(room * 2, max_room);
      buf = std::make_unique_for_overwrite<char[]>(room);
      continue;
    }
    auto end_after = static_cast<uint32_t>(
        sockets::get_int_option(fd, IPPROTO_TCP, TCP_QUEUE_SEQ, "TCP_QUEUE_SEQ"));
    if (end_before == end_after)
      return QueueSnapshot{end_after - static_cast<uint32_t>(n),
                           std::string(buf.get(), static_cast<size_t>(n))};
    if (attempt == 100) throw Error(std::string("the ") + what + " keeps changing");
  }
}

bool fin_was_sent(int state) {
  return state == TCP_FIN_WAIT1 || state == TCP_FIN_WAIT2 || state == TCP_LAST_ACK ||
         state == TCP_CLOSING;
}

bool fin_was_received(int state) {
  return state == TCP_CLOSE_WAIT || state == TCP_LAST_ACK || state == TCP_CLOSING;
}

// Connections restored so far ("local -> peer"), to know once all exist whether the peer that
// closed its side of a connection is one of them (it sends its FIN again when it leaves repair
// mode) or is outside the tree (its FIN is injected).
struct RestoredTcpConnections {
  std::set<std::string> keys;
};

// An established or half-closed connection (FIN sent and/or received: `state`).
void dump_established(DumpContext& ctx, const DumpedFd& fd, const json& local, const json& peer,
                      int state, json& description) {
  int s = fd.stolen;
  // First the connection's packets are held back (both ways), so that nothing the queues and
  // sequence numbers read below depend on changes any more: no ACK frees the send queue, and
  // whatever the socket still transmits is dropped, so the peer has received nothing the dump
  // sees as unsent. The hold outlives the dump when the tree is killed (the restore lifts it).
  bool first_connection = false;
  auto& hold = ctx.kind_state<sockets::TcpPacketHold>("tcp_packet_hold", &first_connection);
  if (first_connection) {
    ctx.add_kill_action([&hold] { hold.keep(); });
    // A tree that runs on gets its connections back before it resumes, not after the dumper
    // is gone (its segments would wait for a retransmission meanwhile).
    ctx.add_resume_action([&hold] { hold.release(); });
  }
  sockets::TcpConnection connection{sockets::identify(s).domain, local.at("ip").get<std::string>(),
                                    local.at("port").get<uint16_t>(),
                                    peer.at("ip").get<std::string>(),
                                    peer.at("port").get<uint16_t>()};
  hold.hold(s, connection, ctx.sink());
  // From here on the connection sends nothing, not even ACKs or FIN/RST when the tree dies.
  sockets::set_int_option(s, IPPROTO_TCP, TCP_REPAIR, 1, "TCP_REPAIR");
  auto held = std::make_shared<UniqueFd>(::fcntl(s, F_DUPFD_CLOEXEC, 0));
  if (held->get() < 0) throw_errno("dup of the repaired socket");
  ctx.add_resume_action([held] {
    sockets::set_int_option(held->get(), IPPROTO_TCP, TCP_REPAIR, 0, "TCP_REPAIR off");
  });

  json tcp = json::object();
  int inq = 0, outq = 0, notsent = 0;
  if (::ioctl(s, SIOCINQ, &inq) < 0) throw_errno("ioctl SIOCINQ");
  if (::ioctl(s, SIOCOUTQ, &outq) < 0) throw_errno("ioctl SIOCOUTQ");
  // The unsent tail (write_seq - snd_nxt). It may still shrink while the queue is read (repair
  // mode does not stop a socket whose queue is not selected from transmitting), but what leaves
  // now is dropped by the hold: bytes counted here as unsent never reached the peer.
  if (::ioctl(s, SIOCOUTQNSD, &notsent) < 0) throw_errno("ioctl SIOCOUTQNSD");
  auto max_room = [&](int queued, int buffer_option) {
    return static_cast<size_t>(std::max(
               queued, sockets::get_int_option(s, SOL_SOCKET, buffer_option, "buffer size"))) *
               2 +
           65536;
  };
  auto room = [](int queued) { return static_cast<size_t>(std::max(queued, 0)) * 2 + 65536; };
  QueueSnapshot received =
      snapshot_queue(s, TCP_RECV_QUEUE, room(inq), max_room(inq, SO_RCVBUF), "receive queue");
  QueueSnapshot sending =
      snapshot_queue(s, TCP_SEND_QUEUE, room(outq), max_room(outq, SO_SNDBUF), "send queue");
  select_queue(s, TCP_NO_QUEUE);

  // Sequence numbers of the first queued byte: writing the queue back advances them to the
  // dumped rcv_nxt / write_seq.
  // A FIN takes a sequence number of its own, counted in rcv_nxt / write_seq but not in the
  // queues: the restore rebuilds the connection as established up to the FIN, and the FIN is
  // sent again after repair mode: ours by shutdown; the peer's by the peer's own shutdown when it
  // is restored too, or else injected as a packet from the peer (sockets_tcp_fin.h).
  bool fin_sent = fin_was_sent(state), fin_received = fin_was_received(state);
  if (fin_received) received.first_seq -= 1;
  if (fin_sent) {
    sending.first_seq -= 1;
    if (notsent > 0) notsent -= 1;  // the FIN itself was not sent yet (a closed window)
  }
  tcp["fin_sent"] = fin_sent;
  tcp["fin_received"] = fin_received;
  tcp["recv_seq"] = received.first_seq;
  tcp["send_seq"] = sending.first_seq;
  std::string base = "tcp-" + std::to_string(description.at("id").get<uint64_t>());
  tcp["recv_queue"] = sockets::write_bytes_image(ctx.sink(), base + "-recv.img", received.data);
  tcp["send_queue"] = sockets::write_bytes_image(ctx.sink(), base + "-send.img", sending.data);
  tcp["send_unsent"] = std::min<size_t>(static_cast<size_t>(notsent), sending.data.size());
  // Images of dumps without the packet hold recorded an unsent count the peer may have seen.
  tcp["unsent_held"] = true;

  tcp_info info = get_tcp_info(s);
  tcp["mss"] = sockets::get_int_option(s, IPPROTO_TCP, TCP_MAXSEG, "TCP_MAXSEG");
  tcp["sack"] = (info.tcpi_options & TCPI_OPT_SACK) != 0;
  if (info.tcpi_options & TCPI_OPT_WSCALE) {
    tcp["snd_wscale"] = static_cast<int>(info.tcpi_snd_wscale);
    tcp["rcv_wscale"] = static_cast<int>(info.tcpi_rcv_wscale);
  }
  if (info.tcpi_options & TCPI_OPT_TIMESTAMPS)
    tcp["timestamp"] = static_cast<uint32_t>(
        sockets::get_int_option(s, IPPROTO_TCP, TCP_TIMESTAMP, "TCP_TIMESTAMP"));

  tcp_repair_window window{};
  socklen_t len = sizeof window;
  if (::getsockopt(s, IPPROTO_TCP, TCP_REPAIR_WINDOW, &window, &len) < 0)
    throw_errno("getsockopt TCP_REPAIR_WINDOW");
  tcp["window"] = {{"snd_wl1", window.snd_wl1},
                   {"snd_wnd", window.snd_wnd},
                   {"max_window", window.max_window},
                   {"rcv_wnd", window.rcv_wnd},
                   {"rcv_wup", window.rcv_wup}};
  // Live buffer sizes: the queues must fit in the new socket while they are written back.
  tcp["sndbuf"] = sockets::get_int_option(s, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF");
  tcp["rcvbuf"] = sockets::get_int_option(s, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF");
  description["state"] = "established";
  description["tcp_state"] = tcp_state_name(state);
  description["local"] = local;
  description["peer"] = peer;
  description["tcp"] = std::move(tcp);
}

void restore_established(RestoreContext& ctx, int s, const SocketIdentity& id,
                         const json& description) {
  const json& tcp = description.at("tcp");
  const json& options = description.at("options");
  std::string received = sockets::read_bytes_image(ctx.image_dir(), tcp.at("recv_queue"));
  std::string sending = sockets::read_bytes_image(ctx.image_dir(), tcp.at("send_queue"));

  sockets::set_int_option(s, IPPROTO_TCP, TCP_REPAIR, 1, "TCP_REPAIR");
  select_queue(s, TCP_RECV_QUEUE);
  sockets::set_int_option(s, IPPROTO_TCP, TCP_QUEUE_SEQ, tcp.at("recv_seq").get<int>(),
                          "TCP_QUEUE_SEQ (receive)");
  select_queue(s, TCP_SEND_QUEUE);
  sockets::set_int_option(s, IPPROTO_TCP, TCP_QUEUE_SEQ, tcp.at("send_seq").get<int>(),
                          "TCP_QUEUE_SEQ (send)");

  sockets::restore_options(s, options, {"SO_REUSEADDR", "SO_SNDBUF", "SO_RCVBUF"});
  // Room for the queues (FORCE: above net.core.*mem_max as the autotuned original may be).
  auto room = [](int dumped, size_t queued) {
    return std::max<int64_t>(dumped / 2, static_cast<int64_t>(queued) * 2 + 65536);
  };
  sockets::set_int_option(s, SOL_SOCKET, SO_SNDBUFFORCE,
                          static_cast<int>(room(tcp.at("sndbuf").get<int>(), sending.size())),
                          "SO_SNDBUFFORCE");
  sockets::set_int_option(s, SOL_SOCKET, SO_RCVBUFFORCE,
                          static_cast<int>(room(tcp.at("rcvbuf").get<int>(), received.size())),
                          "SO_RCVBUFFORCE");

  // Repair mode binds with forced reuse: the port may be held by a listener of the tree (the
  // server end of an accepted connection). SO_REUSEADDR would replace that, so it is set after
  // repair mode is off (which resets it).
  bind_to(s, id.domain, description.at("local"));
  connect_to(s, id.domain, description.at("peer"));  // no handshake in repair mode

  std::vector<tcp_repair_opt> repair_options;
  repair_options.push_back({TCPOPT_MAXSEG, tcp.at("mss").get<uint32_t>()});
  if (tcp.contains("snd_wscale"))
    repair_options.push_back({TCPOPT_WINDOW, tcp.at("snd_wscale").get<uint32_t>() |
                                                 (tcp.at("rcv_wscale").get<uint32_t>() << 16)});
  if (tcp.at("sack").get<bool>()) repair_options.push_back({TCPOPT_SACK_PERMITTED, 0});
  if (tcp.contains("timestamp")) repair_options.push_back({TCPOPT_TIMESTAMP, 0});
  if (::setsockopt(s, IPPROTO_TCP, TCP_REPAIR_OPTIONS, repair_options.data(),
                   static_cast<socklen_t>(repair_options.size() * sizeof(tcp_repair_opt))) < 0)
    throw_errno("setsockopt TCP_REPAIR_OPTIONS");
  if (tcp.contains("timestamp"))
    sockets::set_int_option(s, IPPROTO_TCP, TCP_TIMESTAMP, tcp.at("timestamp").get<int>(),
                            "TCP_TIMESTAMP");

  // The part of the send queue that was sent goes in as sent (the kernel retransmits it when
  // the peer does not acknowledge it); the unsent tail is written after repair mode is off, as
  // new data that the kernel transmits at once (written in repair mode it would count as sent
  // and go out only on the retransmit timeout, a second for a fresh socket).
  size_t unsent = tcp.value("unsent_held", false)
                      ? std::min<size_t>(tcp.value("send_unsent", size_t{0}), sending.size())
                      : 0;
  auto unsent_tail = std::make_shared<std::string>(sending.substr(sending.size() - unsent));
  sending.resize(sending.size() - unsent);
  select_queue(s, TCP_SEND_QUEUE);
  sockets::send_all(s, sending, 0, "refilling the send queue");
  select_queue(s, TCP_RECV_QUEUE);
  sockets::send_all(s, received, 0, "refilling the receive queue");
  select_queue(s, TCP_NO_QUEUE);

  const json& w = tcp.at("window");
  tcp_repair_window window{};
  window.snd_wl1 = w.at("snd_wl1").get<uint32_t>();
  window.snd_wnd = w.at("snd_wnd").get<uint32_t>();
  window.max_window = w.at("max_window").get<uint32_t>();
  window.rcv_wnd = w.at("rcv_wnd").get<uint32_t>();
  window.rcv_wup = w.at("rcv_wup").get<uint32_t>();
  // A received FIN is not part of the restored rcv_nxt (it comes again from the peer): the
  // window edges the kernel checks against rcv_nxt may be one beyond it.
  uint32_t rcv_nxt = tcp.at("recv_seq").get<uint32_t>() + static_cast<uint32_t>(received.size());
  auto after = [](uint32_t a, uint32_t b) { return static_cast<int32_t>(a - b) > 0; };
  if (after(window.rcv_wup, rcv_nxt)) window.rcv_wup = rcv_nxt;
  if (after(window.snd_wl1, rcv_nxt + window.rcv_wnd)) window.snd_wl1 = rcv_nxt + window.rcv_wnd;
  if (::setsockopt(s, IPPROTO_TCP, TCP_REPAIR_WINDOW, &window, sizeof window) < 0)
    throw_errno("setsockopt TCP_REPAIR_WINDOW");
  // Repair mode goes off once every description exists (a peer inside the tree must be back
  // first, or the first probe would meet no socket and draw a reset). The peer retransmits
  // whatever it sent meanwhile, so the connection can go live in the coordinator, before the
  // process exists.
  auto held = std::make_shared<UniqueFd>(::fcntl(s, F_DUPFD_CLOEXEC, 0));
  if (held->get() < 0) throw_errno("dup of the repaired socket");
  std::string what =
      address_text(description.at("local")) + " -> " + address_text(description.at("peer"));
  int reuse_address = options.value("SO_REUSEADDR", 0);
  // The dump's packet hold is lifted once every connection exists again, before the first one
  // leaves repair mode (its window probe and unsent bytes must reach the peer).
  bool first_connection = false;
  ctx.kind_state<bool>("tcp_packet_hold_release", &first_connection);
  if (first_connection) {
    ctx.add_after_open([held, image_dir = ctx.image_dir()] {
      with_context("lifting the dump's TCP packet hold",
                   [&] { sockets::release_recorded_hold(image_dir, held->get()); });
    });
  }
  bool fin_sent = tcp.value("fin_sent", false);
  bool fin_received = tcp.value("fin_received", false);
  auto& restored = ctx.kind_state<RestoredTcpConnections>("tcp_restored_connections");
  restored.keys.insert(what);
  std::string reverse =
      address_text(description.at("peer")) + " -> " + address_text(description.at("local"));
  // The peer's FIN as it would arrive again: at the restored rcv_nxt, acknowledging what the
  // peer had acknowledged at dump (snd_una; an older ack than the socket's is accepted).
  sockets::InjectedFin peer_fin;
  peer_fin.family = id.domain;
  peer_fin.peer_ip = description.at("peer").at("ip").get<std::string>();
  peer_fin.peer_port = description.at("peer").at("port").get<uint16_t>();
  peer_fin.local_ip = description.at("local").at("ip").get<std::string>();
  peer_fin.local_port = description.at("local").at("port").get<uint16_t>();
  peer_fin.local_scope_id = description.at("local").value("scope_id", 0u);
  peer_fin.seq = rcv_nxt;
  peer_fin.ack = tcp.at("send_seq").get<uint32_t>();
  peer_fin.window = window.snd_wnd;
  peer_fin.window_scale = tcp.value("snd_wscale", 0);
  // Simultaneous close (CLOSING): ours went first; otherwise (CLOSE_WAIT, LAST_ACK) the peer's.
  bool ours_first = description.value("tcp_state", std::string()) == "CLOSING";
  ctx.add_after_open([held, what, reuse_address, unsent_tail, fin_sent, fin_received, &restored,
                      reverse, peer_fin, ours_first] {
    with_context("TCP connection " + what, [&] {
      sockets::set_int_option(held->get(), IPPROTO_TCP, TCP_REPAIR, 0, "TCP_REPAIR off");
      sockets::send_all(held->get(), *unsent_tail, MSG_DONTWAIT, "writing the unsent bytes");
      bool inject = fin_received && restored.keys.count(reverse) == 0;
      if (inject && !ours_first)
        with_context("injecting the FIN of the peer outside the tree",
                     [&] { sockets::inject_peer_fin(held->get(), peer_fin); });
      if (fin_sent && ::shutdown(held->get(), SHUT_WR) < 0)
        throw_errno("shutdown SHUT_WR (the FIN it had sent)");
      if (inject && ours_first)
        with_context("injecting the FIN of the peer outside the tree",
                     [&] { sockets::inject_peer_fin(held->get(), peer_fin); });
      if (reuse_address != 0)
        sockets::set_int_option(held->get(), SOL_SOCKET, SO_REUSEADDR, reuse_address,
                                "SO_REUSEADDR");
    });
  });
}

// --- the kind ---------------------------------------------------------------------------------

bool inet_claims(const DumpedFd& fd) {
  SocketIdentity id = sockets::identify(fd);
  return id.domain == AF_INET || id.domain == AF_INET6;
}

void inet_dump(DumpContext& ctx, const DumpedFd& fd, json& description) {
  SocketIdentity id = sockets::identify(fd);
  int s = fd.stolen;
  description["kind"] = "inet_socket";
  description["socket"] = sockets::identity_json(id);
  bool tcp = id.type == SOCK_STREAM && id.protocol == IPPROTO_TCP;
  bool udp = id.type == SOCK_DGRAM && id.protocol == IPPROTO_UDP;
  if (!tcp && !udp)
    throw Error("not supported yet: inet socket of type " + std::to_string(id.type) +
                ", protocol " + std::to_string(id.protocol) + " (only TCP and UDP)");
  description["options"] = sockets::dump_options(s, id);
  json local = local_address(s);
  description["local"] = local;

  if (udp) {
    description["peer"] = peer_address(s);
    description["state"] = description["peer"].is_null() ? "unconnected" : "connected";
    int queued = 0;
    if (::ioctl(s, SIOCINQ, &queued) < 0) throw_errno("ioctl SIOCINQ");
    if (queued > 0) {
      LOG_WARN << fd.describe() << ": UDP datagrams queued for " << address_text(local)
               << " are not part of the checkpoint (as if lost in the network)";
    }
    return;
  }

  tcp_info info = get_tcp_info(s);
  switch (info.tcpi_state) {
    case TCP_LISTEN: {
      description["state"] = "listen";
      // For listeners TCP_INFO reports the backlog in tcpi_sacked and the accept queue length
      // in tcpi_unacked.
      description["backlog"] = info.tcpi_sacked;
      if (info.tcpi_unacked > 0) {
        LOG_WARN << fd.describe() << ": " << info.tcpi_unacked << " connection(s) waiting in the "
                 << "accept queue of " << address_text(local)
                 << " are not part of the checkpoint (their clients get a reset)";
      }
      return;
    }
    case TCP_CLOSE:
      description["state"] = "closed";  // new, or bound, or a finished connection
      return;
    case TCP_ESTABLISHED:
    case TCP_FIN_WAIT1:
    case TCP_FIN_WAIT2:
    case TCP_CLOSE_WAIT:
    case TCP_LAST_ACK:
    case TCP_CLOSING: {
      json peer = peer_address(s);
      if (!ctx.options().tcp_established) {
        bool established = info.tcpi_state == TCP_ESTABLISHED;
        throw Error(std::string(established ? "established" : "half-closed") + " TCP connection " +
                    address_text(local) + " -> " + address_text(peer) + " (" +
                    (established ? "" : std::string(tcp_state_name(info.tcpi_state)) + "; ") +
                    "use --tcp-established)");
      }
      dump_established(ctx, fd, local, peer, info.tcpi_state, description);
      return;
    }
    default: {
      json peer = peer_address(s);
      throw Error(std::string("not supported yet: TCP connection in state ") +
                  tcp_state_name(info.tcpi_state) + " " + address_text(local) +
                  (peer.is_null() ? std::string() : " -> " + address_text(peer)));
    }
  }
}

UniqueFd inet_open(RestoreContext& ctx, const json& description) {
  SocketIdentity id = sockets::identity_from_json(description);
  UniqueFd s = sockets::new_socket(id);
  auto state = description.at("state").get<std::string>();
  const json& local = description.at("local");
  with_context("socket " + address_text(local) + " (" + state + ")", [&] {
    if (state == "established") {
      restore_established(ctx, s.get(), id, description);
      return;
    }
    sockets::restore_options(s.get(), description.at("options"));
    if (is_bound(local) && state == "closed" && id.type == SOCK_STREAM) {
      bind_finished_connection(s.get(), id.domain, local);
      sockets::restore_options(s.get(), description.at("options"));
    } else if (is_bound(local)) {
      bind_to(s.get(), id.domain, local);
    }
    if (state == "listen") {
      if (::listen(s.get(), description.at("backlog").get<int>()) < 0) throw_errno("listen");
    } else if (state == "connected") {
      connect_to(s.get(), id.domain, description.at("peer"));
    } else if (state != "closed" && state != "unconnected") {
      throw Error("unknown inet socket state in files.img: " + state);
    }
  });
  sockets::apply_status_flags(s.get(), description.at("flags").get<int>());
  return s;
}

}  // namespace

const FileKind kInetSocketKind{{"inet_socket"}, inet_claims, inet_dump, inet_open};

}  // namespace cryo::ckpt::files
