// Delivering a FIN that a restored TCP connection had received from a peer outside the dumped
// tree. A socket rebuilt in repair mode cannot be told that its peer closed its side: it is
// restored as established up to the FIN (rcv_nxt = the FIN's sequence number), and once it has
// left repair mode the peer's FIN is injected into the local stack as one raw packet from the
// peer's address to the socket's, in the socket's network namespace.
#pragma once

#include <cstdint>
#include <string>

namespace cryo::ckpt::files::sockets {

// The peer's FIN as the restored socket `socket_fd` must see it.
struct InjectedFin {
  int family = 0;  // the socket's (an IPv4-mapped IPv6 pair is sent as IPv4)
  std::string peer_ip;
  uint16_t peer_port = 0;
  std::string local_ip;
  uint16_t local_port = 0;
  uint32_t local_scope_id = 0;
  uint32_t seq = 0;     // the FIN's sequence number: the restored rcv_nxt
  uint32_t ack = 0;     // what the peer had acknowledged of ours (snd_una at dump)
  uint32_t window = 0;  // the peer's window in bytes (scaled down by `window_scale`)
  int window_scale = 0;
};

// Sends the FIN and waits until `socket_fd` has taken it (TCP_INFO leaves ESTABLISHED /
// FIN_WAIT1 / FIN_WAIT2); the packet is sent again a few times if it was not, and an Error
// says so if the socket never takes it.
void inject_peer_fin(int socket_fd, const InjectedFin& fin);

}  // namespace cryo::ckpt::files::sockets
