// What the socket kinds (sockets_inet.cc, sockets_unix.cc, sockets_netlink.cc) share: the
// identity of a socket, its options (one table for every family), status flags, sock_diag
// queries in the socket's own network namespace, and queued bytes kept in raw images.
#pragma once

#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <vector>

#include "checkpoint/file_kinds/file_kind.h"
#include "common/unique_fd.h"

namespace cryo::ckpt::files::sockets {

struct SocketIdentity {
  int domain = -1;
  int type = -1;  // SOCK_STREAM, SOCK_DGRAM...
  int protocol = -1;
};

// SO_DOMAIN, SO_TYPE, SO_PROTOCOL of the socket `fd`; domain -1 when `fd` is not a socket.
SocketIdentity identify(int fd);
// The identity of a dumped fd (the socket behind fd.stolen); domain -1 for non-sockets.
SocketIdentity identify(const DumpedFd& fd);

json identity_json(const SocketIdentity& id);
SocketIdentity identity_from_json(const json& description);

int get_int_option(int fd, int level, int name, const char* what);
void set_int_option(int fd, int level, int name, int value, const char* what);

// The options of `fd` that differ from those of a fresh socket of the same identity (only those
// are restored, so that kernel defaults and autotuning stay as they are): {"SO_REUSEADDR": 1,
// "SO_RCVTIMEO_US": 500000, "SO_BINDTODEVICE": "lo", ...}.
json dump_options(int fd, const SocketIdentity& id);
// Sets dumped options on a new socket, before bind/connect/listen. Options whose name is in
// `skip` are left to the caller.
void restore_options(int fd, const json& options, const std::vector<std::string>& skip = {});

// A new socket, close-on-exec, blocking (the dumped O_NONBLOCK is applied last).
UniqueFd new_socket(const SocketIdentity& id);
// Puts the dumped file status flags (O_NONBLOCK, O_ASYNC) on a restored socket.
void apply_status_flags(int fd, int dumped_flags);

// A NETLINK_SOCK_DIAG socket in the network namespace of socket `sockfd` (SIOCGSKNS), which may
// differ from cryo's (a container's sockets dumped from the host).
UniqueFd sock_diag_socket(int sockfd);
// Sends `request` (a complete netlink message) and returns the payload of the first
// SOCK_DIAG_BY_FAMILY answer (without the nlmsghdr); throws on NLMSG_ERROR or no answer.
std::string sock_diag_exchange(int diag_fd, const void* request, size_t size);
// The attributes (rtattr) following a fixed-size header in a sock_diag answer: type -> payload.
std::vector<std::pair<int, std::string>> diag_attributes(const std::string& answer,
                                                         size_t header_size);

// Bytes kept in raw image `name` of the dump; their size in the returned json (with "image").
json write_bytes_image(ImageSink& sink, const std::string& name, const std::string& data);
std::string read_bytes_image(const std::string& image_dir, const json& entry);

// Writes all of `data` to the blocking socket `fd` with send(flags).
void send_all(int fd, const std::string& data, int flags, const char* what);

std::string to_hex(const std::string& bytes);
std::string from_hex(const std::string& hex);

}  // namespace cryo::ckpt::files::sockets
