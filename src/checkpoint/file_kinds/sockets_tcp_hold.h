// Holding back the packets of established TCP connections while their tree is dumped and until
// it is restored: an nftables table of its own, in the connections' network namespace, drops
// every segment of each held connection (both directions, input and output). Without it a peer
// whose segment arrives while the dumped socket is gone gets a reset, and a socket in repair mode
// keeps processing ACKs (and may transmit) while its queues are read.
//
// The table outlives the dump when the tree is killed (the restore removes it just before the
// restored connections leave repair mode); a failed dump or one that leaves the tree running
// removes it again. Its name and network namespace are recorded in the image kTcpHoldImage.
#pragma once

#include <sys/types.h>

#include <cstdint>
#include <memory>
#include <set>
#include <string>
#include <tuple>

#include "checkpoint/file_kinds/file_kind.h"

struct nft_ctx;

namespace cryo::ckpt::files::sockets {

struct NftContextFree {
  void operator()(nft_ctx* ctx) const;
};
// A libnftables context whose netlink socket is in one network namespace.
using NftContext = std::unique_ptr<nft_ctx, NftContextFree>;
NftContext open_nft_context_in(int netns);

inline constexpr const char* kTcpHoldImage = "tcp-hold.img";

// One TCP connection as seen from the dumped socket.
struct TcpConnection {
  int family = 0;  // AF_INET or AF_INET6 (the socket's; IPv4-mapped addresses are held as IPv4)
  std::string local_ip;
  uint16_t local_port = 0;
  std::string peer_ip;
  uint16_t peer_port = 0;
};

// Owns the hold table of one dump: created with the first connection, deleted on destruction
// unless keep() handed it over to the checkpoint.
class TcpPacketHold {
 public:
  TcpPacketHold() = default;
  TcpPacketHold(const TcpPacketHold&) = delete;
  TcpPacketHold& operator=(const TcpPacketHold&) = delete;
  ~TcpPacketHold();

  // Drops the packets of `connection` from now on. `socket_fd` is the dumped socket: its network
  // namespace is where the table goes. The table name and namespace are written to kTcpHoldImage
  // in `sink` when the table is created. Adding a connection (or its reverse) twice is a
  // no-op.
  void hold(int socket_fd, const TcpConnection& connection, ImageSink& sink);
  // The checkpoint keeps the table (the dumped tree is killed): the restore removes it.
  void keep() { kept_ = true; }
  // Removes the table now (the dumped tree runs on).
  void release();
  const std::string& table() const { return table_; }

 private:
  std::string table_;  // empty until the first connection
  uint64_t netns_dev_ = 0, netns_ino_ = 0;
  UniqueFd netns_;
  NftContext nft_;  // created with the table, reused for every connection and the release
  std::set<std::tuple<std::string, uint16_t, std::string, uint16_t>> held_;
  bool kept_ = false;
};

// Restore side: removes the hold table recorded in `image_dir` (if the dump made one) from the
// network namespace of `socket_fd`, a restored socket. Does nothing when that namespace is not
// the one the table was made in (the dumped namespace is gone, and its table with it).
void release_recorded_hold(const std::string& image_dir, int socket_fd);

}  // namespace cryo::ckpt::files::sockets
