// Unix sockets (stream, datagram, seqpacket): listeners and bound sockets by path or abstract
// name, connected pairs inside the tree with the bytes queued in both directions (message
// boundaries kept), shutdown state. Peers are identified by inode through sock_diag
// (UNIX_DIAG_PEER); a connection whose two ends are both in the tree is recreated with
// socketpair(), so names of accepted connections are not kept. Peers outside the tree need
// FileDumpOptions::ext_unix_sk: the socket is then reconnected to the peer's name when it has
// one, otherwise restored as a connection whose peer has gone (docs/IMAGE-FORMAT.md "Sockets").
#include <fcntl.h>
#include <linux/netlink.h>
#include <linux/sock_diag.h>
#include <linux/sockios.h>
#include <linux/unix_diag.h>
#include <sched.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <cstddef>
#include <cstring>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "checkpoint/file_kinds/file_kind.h"
#include "checkpoint/file_kinds/socket_options.h"
#include "common/error.h"

namespace cryo::ckpt::files {

namespace {

using sockets::SocketIdentity;

constexpr int kListenState = 10;      // TCP_LISTEN as unix_diag reports it
constexpr int kEstablishedState = 1;  // TCP_ESTABLISHED
constexpr int kReceiveShutdown = 1;   // RCV_SHUTDOWN in sk_shutdown
constexpr int kSendShutdown = 2;      // SEND_SHUTDOWN

const char* type_name(int type) {
  switch (type) {
    case SOCK_STREAM:
      return "stream";
    case SOCK_DGRAM:
      return "datagram";
    case SOCK_SEQPACKET:
      return "seqpacket";
  }
  return "unknown type";
}

// --- names ------------------------------------------------------------------------------------

// {"path": "/run/x.sock"}, {"abstract": "<hex>"} or null (unnamed).
json name_json(const sockaddr_un& addr, socklen_t len) {
  if (len <= offsetof(sockaddr_un, sun_path)) return nullptr;
  size_t size = len - offsetof(sockaddr_un, sun_path);
  if (addr.sun_path[0] == '\0')
    return json{{"abstract", sockets::to_hex(std::string(addr.sun_path + 1, size - 1))}};
  return json{{"path", std::string(addr.sun_path, ::strnlen(addr.sun_path, size))}};
}

std::string name_text(const json& name) {
  if (name.is_null()) return "unnamed";
  if (name.contains("path")) return name.at("path").get<std::string>();
  return "@" + sockets::from_hex(name.at("abstract").get<std::string>());
}

json own_name(int fd) {
  sockaddr_un addr{};
  socklen_t len = sizeof addr;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) throw_errno("getsockname");
  return name_json(addr, len);
}

json peer_name(int fd) {
  sockaddr_un addr{};
  socklen_t len = sizeof addr;
  if (::getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) < 0) {
    if (errno == ENOTCONN) return nullptr;
    throw_errno("getpeername");
  }
  return name_json(addr, len);
}

// The socket address of a dumped name, byte for byte: a socket keeps the exact string it was
// bound with (getsockname reports it), so paths are never rewritten.
socklen_t name_address(const json& name, sockaddr_un* addr) {
  *addr = {};
  addr->sun_family = AF_UNIX;
  std::string sun;
  if (name.contains("abstract")) {
    sun = std::string(1, '\0') + sockets::from_hex(name.at("abstract").get<std::string>());
  } else {
    sun = name.at("path").get<std::string>();
    if (sun.empty() || sun[0] != '/')
      throw Error("not supported yet: unix socket bound to the relative path " + sun);
  }
  if (sun.size() > sizeof addr->sun_path) throw Error("unix socket address too long: " + sun);
  std::memcpy(addr->sun_path, sun.data(), sun.size());
  return static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + sun.size());
}

// Runs `fn` where paths resolve as the restored tree sees them: under the restore root when one
// is set (in a thread of its own with a private root: unshare(CLONE_FS) + chroot), else here.
void in_restore_root(RestoreContext& ctx, const std::function<void()>& fn) {
  const std::string& root = ctx.options().root_dir;
  if (root.empty() || root == "/") {
    fn();
    return;
  }
  std::string failure;
  int failure_errno = 0;
  std::thread worker([&] {
    try {
      if (::unshare(CLONE_FS) < 0) throw_errno("unshare(CLONE_FS)");
      if (::chroot(root.c_str()) < 0) throw_errno("chroot " + root);
      if (::chdir("/") < 0) throw_errno("chdir /");
      fn();
    } catch (const Error& e) {
      failure = e.what();
      failure_errno = e.sys_errno();
    }
  });
  worker.join();
  if (!failure.empty()) throw Error(failure, failure_errno);
}

// Binds `fd` to its dumped name; a stale socket file left at the path by the dumped socket is
// removed first, and the file gets the dumped mode and owner.
void bind_name(RestoreContext& ctx, int fd, const json& name, const json& file) {
  sockaddr_un addr;
  socklen_t len = name_address(name, &addr);
  in_restore_root(ctx, [&] {
    if (name.contains("path")) {
      auto path = name.at("path").get<std::string>();
      struct stat st;
      if (::lstat(path.c_str(), &st) == 0 && S_ISSOCK(st.st_mode) && ::unlink(path.c_str()) < 0)
        throw_errno("removing the stale socket file " + path);
    }
    if (::bind(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0)
      throw_errno("bind " + name_text(name));
    if (name.contains("path") && !file.is_null()) {
      auto path = name.at("path").get<std::string>();
      if (::chmod(path.c_str(), file.at("mode").get<mode_t>() & 07777) < 0)
        throw_errno("chmod " + path);
      if (::lchown(path.c_str(), file.at("uid").get<uid_t>(), file.at("gid").get<gid_t>()) < 0)
        throw_errno("chown " + path);
    }
  });
}

void connect_name(RestoreContext& ctx, int fd, const json& name) {
  sockaddr_un addr;
  socklen_t len = name_address(name, &addr);
  in_restore_root(ctx, [&] {
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), len) < 0)
      throw_errno("connect to " + name_text(name));
  });
}

// --- sock_diag --------------------------------------------------------------------------------

struct UnixDiag {
  int state = -1;
  uint32_t peer = 0;  // inode of the peer, 0: none (or gone)
  uint32_t rqueue = 0, wqueue = 0;
  int shutdown = 0;
  size_t embryos = 0;  // connections waiting in a listener's accept queue
};

UnixDiag query_diag(int diag_fd, uint64_t ino) {
  struct {
    nlmsghdr header;
    unix_diag_req req;
  } request{};
  request.header.nlmsg_len = sizeof request;
  request.header.nlmsg_type = SOCK_DIAG_BY_FAMILY;
  request.header.nlmsg_flags = NLM_F_REQUEST;
  request.req.sdiag_family = AF_UNIX;
  request.req.udiag_states = ~0u;
  request.req.udiag_ino = static_cast<uint32_t>(ino);
  request.req.udiag_show = UDIAG_SHOW_PEER | UDIAG_SHOW_RQLEN | UDIAG_SHOW_ICONS;
  request.req.udiag_cookie[0] = request.req.udiag_cookie[1] = ~0u;  // INET_DIAG_NOCOOKIE
  std::string answer = sockets::sock_diag_exchange(diag_fd, &request, sizeof request);
  unix_diag_msg msg;
  if (answer.size() < sizeof msg) throw Error("unix_diag: short answer");
  std::memcpy(&msg, answer.data(), sizeof msg);
  UnixDiag diag;
  diag.state = msg.udiag_state;
  for (const auto& [type, payload] : sockets::diag_attributes(answer, sizeof msg)) {
    if (type == UNIX_DIAG_PEER && payload.size() >= 4) std::memcpy(&diag.peer, payload.data(), 4);
    if (type == UNIX_DIAG_SHUTDOWN && !payload.empty()) diag.shutdown = payload[0];
    if (type == UNIX_DIAG_ICONS) diag.embryos = payload.size() / 4;
    if (type == UNIX_DIAG_RQLEN && payload.size() >= sizeof(unix_diag_rqlen)) {
      unix_diag_rqlen rq;
      std::memcpy(&rq, payload.data(), sizeof rq);
      diag.rqueue = rq.udiag_rqueue;
      diag.wqueue = rq.udiag_wqueue;
    }
  }
  return diag;
}

// --- queued bytes -----------------------------------------------------------------------------

struct Queue {
  std::string bytes;
  std::vector<size_t> messages;  // lengths, for datagram and seqpacket
};

// The socket's receive queue, peeked with SO_PEEK_OFF walking forward (message by message for
// datagram and seqpacket); the dumped peek offset is put back afterwards.
Queue peek_queue(int fd, int type, int shutdown) {
  Queue queue;
  int inq = 0;
  if (::ioctl(fd, SIOCINQ, &inq) < 0) throw_errno("ioctl SIOCINQ");
  if (inq == 0 && type == SOCK_STREAM) return queue;
  int saved_offset = sockets::get_int_option(fd, SOL_SOCKET, SO_PEEK_OFF, "SO_PEEK_OFF");
  sockets::set_int_option(fd, SOL_SOCKET, SO_PEEK_OFF, 0, "SO_PEEK_OFF");
  struct Restore {
    int fd, offset;
    ~Restore() { ::setsockopt(fd, SOL_SOCKET, SO_PEEK_OFF, &offset, sizeof offset); }
  } restore{fd, saved_offset};
  int buffer_size = sockets::get_int_option(fd, SOL_SOCKET, SO_RCVBUF, "SO_RCVBUF");
  std::string buf(static_cast<size_t>(std::max(inq, buffer_size)) + 65536, '\0');
  for (;;) {
    iovec iov{buf.data(), buf.size()};
    alignas(cmsghdr) char control[CMSG_SPACE(sizeof(int) * 253)];
    msghdr msg{};
    msg.msg_iov = &iov;
    msg.msg_iovlen = 1;
    msg.msg_control = control;
    msg.msg_controllen = sizeof control;
    ssize_t n = ::recvmsg(fd, &msg, MSG_PEEK | MSG_DONTWAIT | MSG_CMSG_CLOEXEC);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN) break;
      throw_errno("peeking the receive queue");
    }
    for (cmsghdr* c = CMSG_FIRSTHDR(&msg); c != nullptr; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS) {
        // Peeking installed copies of the fds in flight here: drop them.
        size_t count = (c->cmsg_len - CMSG_LEN(0)) / sizeof(int);
        for (size_t i = 0; i < count; ++i) {
          int passed;
          std::memcpy(&passed, CMSG_DATA(c) + i * sizeof(int), sizeof passed);
          ::close(passed);
        }
        throw Error("not supported yet: file descriptors in flight (SCM_RIGHTS) in the queue");
      }
    }
    if (msg.msg_flags & MSG_TRUNC) throw Error("a queued message outgrew the peek buffer");
    if (n == 0) {
      if (type == SOCK_STREAM) break;  // end of data (the peer shut down)
      if (type == SOCK_SEQPACKET && (shutdown & kReceiveShutdown) &&
          queue.bytes.size() == static_cast<size_t>(inq))
        break;
    }
    queue.bytes.append(buf.data(), static_cast<size_t>(n));
    if (type != SOCK_STREAM) queue.messages.push_back(static_cast<size_t>(n));
  }
  return queue;
}

json queue_json(DumpContext& ctx, const std::string& image, const Queue& queue) {
  json out = sockets::write_bytes_image(ctx.sink(), image, queue.bytes);
  if (!queue.messages.empty()) out["messages"] = queue.messages;
  return out;
}

// Sends a dumped queue into the socket `fd` (whose peer receives it), message by message for
// datagram and seqpacket; `to` addresses an unconnected receiver.
void send_queue(RestoreContext& ctx, int fd, int type, const json& queue, const sockaddr_un* to,
                socklen_t to_len) {
  std::string bytes = sockets::read_bytes_image(ctx.image_dir(), queue);
  if (bytes.empty() && !queue.contains("messages")) return;
  if (type == SOCK_STREAM) {
    sockets::send_all(fd, bytes, MSG_DONTWAIT, "writing the queued bytes back");
    return;
  }
  size_t at = 0;
  for (const json& length : queue.at("messages")) {
    auto size = length.get<size_t>();
    if (at + size > bytes.size()) throw Error("queued messages exceed their image");
    ssize_t n = ::sendto(fd, bytes.data() + at, size, MSG_DONTWAIT | MSG_NOSIGNAL,
                         reinterpret_cast<const sockaddr*>(to), to_len);
    if (n < 0) throw_errno("writing a queued message back");
    if (static_cast<size_t>(n) != size) throw Error("a queued message was cut");
    at += size;
  }
}

// The sender's buffer must hold everything written back before the receiver reads it.
void make_room(int sender, const json& queue) {
  auto bytes = queue.at("bytes").get<int64_t>();
  size_t messages = queue.contains("messages") ? queue.at("messages").size() : 0;
  int64_t needed = bytes * 2 + static_cast<int64_t>(messages) * 1024 + 65536;
  int current = sockets::get_int_option(sender, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF");
  if (current < needed)
    sockets::set_int_option(sender, SOL_SOCKET, SO_SNDBUFFORCE, static_cast<int>(needed / 2 + 1),
                            "SO_SNDBUFFORCE");
}

// --- dump -------------------------------------------------------------------------------------

// Unix sockets of one dump, for the checks that need all of them.
struct UnixDumpState {
  std::map<uint64_t, std::string> dumped;  // inode -> describe()
  struct PairEnd {
    json* pair;
    int end;
    uint64_t peer;
    std::string what;
  };
  std::vector<PairEnd> pair_ends;
  struct NamedPeer {
    uint64_t peer;
    std::string what;
  };
  std::vector<NamedPeer> named_peers;
};

void check_peers(const UnixDumpState& state, bool ext_unix_sk) {
  for (const auto& end : state.pair_ends) {
    json& pair = *end.pair;
    if (pair.value("peer_gone", false)) continue;
    if (!pair.at("ends").at(1 - end.end).is_null()) continue;
    if (!ext_unix_sk)
      throw Error(end.what + ": unix socket connected to inode " + std::to_string(end.peer) +
                  " outside the dumped tree (use ext_unix_sk / --ext-unix-sk)");
    pair["external"] = true;
  }
  for (const auto& named : state.named_peers)
    if (!ext_unix_sk && !state.dumped.count(named.peer))
      throw Error(named.what + ": unix socket connected to inode " + std::to_string(named.peer) +
                  " outside the dumped tree (use ext_unix_sk / --ext-unix-sk)");
}

// The socket file of a path name, as the tree sees it: its mode and owner to restore.
json socket_file(pid_t pid, const json& name) {
  if (name.is_null() || !name.contains("path")) return nullptr;
  auto path = name.at("path").get<std::string>();
  struct stat st;
  if (path.empty() || path[0] != '/' ||
      ::lstat(("/proc/" + std::to_string(pid) + "/root" + path).c_str(), &st) < 0 ||
      !S_ISSOCK(st.st_mode))
    return nullptr;
  return json{{"mode", st.st_mode & 07777}, {"uid", st.st_uid}, {"gid", st.st_gid}};
}

bool unix_claims(const DumpedFd& fd) {
  return sockets::identify(fd).domain == AF_UNIX;
}

void unix_dump(DumpContext& ctx, const DumpedFd& fd, json& description) {
  SocketIdentity id = sockets::identify(fd);
  int s = fd.stolen;
  if (id.type != SOCK_STREAM && id.type != SOCK_DGRAM && id.type != SOCK_SEQPACKET)
    throw Error("not supported yet: unix socket of type " + std::to_string(id.type));
  bool created = false;
  auto& state = ctx.kind_state<UnixDumpState>("unix_socket", &created);
  if (created) {
    bool ext = ctx.options().ext_unix_sk;
    ctx.add_finish_check([&state, ext] { check_peers(state, ext); });
  }
  auto ino = static_cast<uint64_t>(fd.st.st_ino);
  state.dumped[ino] = fd.describe();

  UniqueFd diag_socket = sockets::sock_diag_socket(s);
  UnixDiag diag = query_diag(diag_socket.get(), ino);
  json name = own_name(s);
  description["kind"] = "unix_socket";
  description["socket"] = sockets::identity_json(id);
  description["options"] = sockets::dump_options(s, id);
  description["name"] = name;
  description["file"] = socket_file(fd.pid, name);
  description["sndbuf"] = sockets::get_int_option(s, SOL_SOCKET, SO_SNDBUF, "SO_SNDBUF");
  std::string image_base = "unix-" + std::to_string(description.at("id").get<uint64_t>());

  if (diag.state == kListenState) {
    if (diag.embryos > 0 || diag.rqueue > 0)
      throw Error(
          "not supported yet: " + std::to_string(std::max<size_t>(diag.embryos, diag.rqueue)) +
          " connection(s) waiting in the accept queue of unix socket " + name_text(name));
    description["state"] = "listen";
    description["backlog"] = diag.wqueue;
    return;
  }

  Queue queue = peek_queue(s, id.type, diag.shutdown);
  bool connection = id.type != SOCK_DGRAM;
  bool mutual = false;
  if (diag.peer != 0 && !connection) {
    UnixDiag peer = query_diag(diag_socket.get(), diag.peer);
    mutual = peer.peer == ino;
  }
  bool peer_gone = connection && diag.peer == 0 && diag.state == kEstablishedState;

  if ((connection && diag.peer != 0) || mutual || peer_gone) {
    uint64_t low = peer_gone ? ino : std::min<uint64_t>(ino, diag.peer);
    auto pair = ctx.object("unix_pairs", 0, low);
    json& entry = *pair.entry;
    if (pair.created) {
      entry["type"] = id.type;
      entry["ends"] = json::array({nullptr, nullptr});
      if (peer_gone) entry["peer_gone"] = true;
    }
    int end = ino == low ? 0 : 1;
    json this_end = {{"ino", ino},
                     {"shutdown", diag.shutdown},
                     {"queue", queue_json(ctx, image_base + "-queue.img", queue)},
                     {"peer_name", peer_name(s)}};
    entry["ends"][end] = std::move(this_end);
    state.pair_ends.push_back({pair.entry, end, diag.peer, fd.describe()});
    description["state"] = "pair";
    description["pair"] = pair.id;
    description["end"] = end;
    return;
  }

  description["queue"] = queue_json(ctx, image_base + "-queue.img", queue);
  if (!queue.bytes.empty() || !queue.messages.empty()) {
    // Written back at restore through a socket of cryo's: only an unconnected, named datagram
    // socket accepts that.
    if (diag.peer != 0 || name.is_null())
      throw Error("not supported yet: messages queued on the " +
                  std::string(diag.peer != 0 ? "connected" : "unnamed") + " unix datagram socket " +
                  name_text(name));
  }
  if (diag.peer != 0) {
    json peer = peer_name(s);
    if (peer.is_null())
      throw Error("not supported yet: unix datagram socket connected to an unnamed socket");
    description["state"] = "connected_to_name";
    description["peer_name"] = peer;
    state.named_peers.push_back({diag.peer, fd.describe()});
    return;
  }
  if (connection && diag.state != 7 /* TCP_CLOSE */)
    throw Error(std::string("not supported yet: unix ") + type_name(id.type) + " socket in state " +
                std::to_string(diag.state));
  description["state"] = "unconnected";
}

// --- restore ----------------------------------------------------------------------------------

void apply_shutdown(int fd, int shutdown) {
  if ((shutdown & kSendShutdown) && ::shutdown(fd, SHUT_WR) < 0 && errno != ENOTCONN)
    throw_errno("shutdown SHUT_WR");
  if ((shutdown & kReceiveShutdown) && ::shutdown(fd, SHUT_RD) < 0 && errno != ENOTCONN)
    throw_errno("shutdown SHUT_RD");
}

// Creates both ends of a pair (or one end whose peer is outside the tree or gone) as object fds
// 0 and 1 of the pair object.
void create_pair(RestoreContext& ctx, uint64_t pair_id) {
  const json& pair = ctx.object("unix_pairs", pair_id);
  auto type = pair.at("type").get<int>();
  const json& ends = pair.at("ends");
  bool external = pair.value("external", false) || pair.value("peer_gone", false);
  if (external) {
    int present = ends.at(0).is_null() ? 1 : 0;
    const json& end = ends.at(present);
    const json& peer = end.at("peer_name");
    if (!pair.value("peer_gone", false) && !peer.is_null()) {
      // Reconnected to the outside peer by its name: a new connection.
      if (end.at("queue").at("bytes").get<uint64_t>() > 0 || end.at("queue").contains("messages"))
        throw Error("not supported yet: bytes queued from the outside peer " + name_text(peer));
      UniqueFd s = sockets::new_socket({AF_UNIX, type, 0});
      connect_name(ctx, s.get(), peer);
      apply_shutdown(s.get(), end.at("shutdown").get<int>());
      ctx.set_object_fd(pair_id, std::move(s), present);
      return;
    }
  }
  int fds[2];
  if (::socketpair(AF_UNIX, type | SOCK_CLOEXEC, 0, fds) < 0) throw_errno("socketpair");
  UniqueFd sides[2] = {UniqueFd(fds[0]), UniqueFd(fds[1])};
  for (int k = 0; k < 2; ++k) {
    const json& end = ends.at(k);
    if (end.is_null()) continue;
    // End k's receive queue is written by the other side.
    make_room(sides[1 - k].get(), end.at("queue"));
    send_queue(ctx, sides[1 - k].get(), type, end.at("queue"), nullptr, 0);
  }
  for (int k = 0; k < 2; ++k) {
    if (ends.at(k).is_null()) {
      sides[k].reset();  // the peer outside the tree, or gone: the survivor sees it closed
      continue;
    }
    apply_shutdown(sides[k].get(), ends.at(k).at("shutdown").get<int>());
    ctx.set_object_fd(pair_id, std::move(sides[k]), k);
  }
}

UniqueFd unix_open(RestoreContext& ctx, const json& description) {
  SocketIdentity id = sockets::identity_from_json(description);
  auto state = description.at("state").get<std::string>();
  const json& name = description.at("name");
  const json& options = description.at("options");
  UniqueFd s;
  with_context("unix socket " + name_text(name) + " (" + state + ")", [&] {
    if (state == "pair") {
      auto pair_id = description.at("pair").get<uint64_t>();
      int end = description.at("end").get<int>();
      if (ctx.object_fd(pair_id, 0) < 0 && ctx.object_fd(pair_id, 1) < 0) create_pair(ctx, pair_id);
      int held = ctx.object_fd(pair_id, end);
      if (held < 0) throw Error("internal: pair end " + std::to_string(end) + " missing");
      // The pool keeps one description per socket: a dup of the held end is that description.
      s = UniqueFd(::fcntl(held, F_DUPFD_CLOEXEC, 0));
      if (!s) throw_errno("dup of a socket pair end");
      sockets::restore_options(s.get(), options);
      sockets::set_int_option(s.get(), SOL_SOCKET, SO_SNDBUF,
                              description.at("sndbuf").get<int>() / 2, "SO_SNDBUF");
      return;
    }
    s = sockets::new_socket(id);
    sockets::restore_options(s.get(), options);
    if (!name.is_null()) bind_name(ctx, s.get(), name, description.at("file"));
    if (state == "listen") {
      if (::listen(s.get(), description.at("backlog").get<int>()) < 0) throw_errno("listen");
    } else if (state == "connected_to_name") {
      // The peer may be a socket of the tree opened later: connect once every socket exists.
      auto held = std::make_shared<UniqueFd>(::fcntl(s.get(), F_DUPFD_CLOEXEC, 0));
      if (held->get() < 0) throw_errno("dup of the socket");
      json peer = description.at("peer_name");
      ctx.add_after_open([&ctx, held, peer, name] {
        with_context("unix socket " + name_text(name),
                     [&] { connect_name(ctx, held->get(), peer); });
      });
    } else if (state == "unconnected") {
      const json& queue = description.at("queue");
      if (queue.contains("messages")) {
        UniqueFd sender = sockets::new_socket({AF_UNIX, SOCK_DGRAM, 0});
        sockaddr_un to;
        socklen_t len = name_address(name, &to);
        make_room(sender.get(), queue);
        in_restore_root(ctx, [&] { send_queue(ctx, sender.get(), SOCK_DGRAM, queue, &to, len); });
      }
    } else {
      throw Error("unknown unix socket state in files.img: " + state);
    }
  });
  sockets::apply_status_flags(s.get(), description.at("flags").get<int>());
  return s;
}

}  // namespace

const FileKind kUnixSocketKind{{"unix_socket"}, unix_claims, unix_dump, unix_open};

}  // namespace cryo::ckpt::files
