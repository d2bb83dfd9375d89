// Sockets through a real dump and restore (FileDumper -> FilePool): a forked child holds the
// sockets, FileDumper takes them with pidfd_getfd, the child is killed, a FilePool recreates them
// in this process (the coordinator) and a new child installs them and checks them from the inside
// while this process plays the other side of the connections (loopback only).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/mman.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstring>
#include <functional>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "checkpoint/files.h"
#include "checkpoint/image/image_file.h"
#include "ckpt_fd_test_util.h"
#include "common/error.h"
#include "common/fs.h"

namespace cryo::ckpt {
namespace {

using testutil::Checks;
using testutil::read_all;
using testutil::RestoredProcess;
using testutil::TreeProcess;

// Moves fds to their numbers (from -> to), safe when some targets are sources of others.
void place_all(const std::vector<std::pair<int, int>>& moves) {
  std::vector<std::pair<int, int>> parked;
  for (auto [from, to] : moves) {
    int high = ::fcntl(from, F_DUPFD, 500);
    if (high < 0) _exit(90);
    ::close(from);
    parked.emplace_back(high, to);
  }
  for (auto [high, to] : parked) {
    if (::dup2(high, to) < 0) _exit(90);
    ::close(high);
  }
}

void place(int fd, int to) {
  place_all({{fd, to}});
}

bool write_all(int fd, const std::string& s) {
  size_t done = 0;
  while (done < s.size()) {
    ssize_t n = ::send(fd, s.data() + done, s.size() - done, MSG_NOSIGNAL);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return false;
    done += static_cast<size_t>(n);
  }
  return true;
}

// Reads exactly `size` bytes (blocking); shorter on EOF or error.
std::string read_exactly(int fd, size_t size) {
  std::string out(size, '\0');
  size_t done = 0;
  while (done < size) {
    ssize_t n = ::read(fd, out.data() + done, size - done);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    done += static_cast<size_t>(n);
  }
  out.resize(done);
  return out;
}

// Byte `i` of a test stream: not periodic over short distances, so a lost, doubled or reordered
// chunk shows.
char pattern_byte(uint64_t i, uint64_t seed) {
  uint64_t x = (i + 1) * 0x9E3779B97F4A7C15ull ^ seed;
  x ^= x >> 29;
  return static_cast<char>(x & 0xff);
}

std::string pattern(uint64_t from, size_t size, uint64_t seed) {
  std::string out(size, '\0');
  for (size_t i = 0; i < size; ++i) out[i] = pattern_byte(from + i, seed);
  return out;
}

uint16_t local_port(int fd) {
  sockaddr_storage ss{};
  socklen_t len = sizeof ss;
  if (::getsockname(fd, reinterpret_cast<sockaddr*>(&ss), &len) < 0) return 0;
  if (ss.ss_family == AF_INET6) return ntohs(reinterpret_cast<sockaddr_in6&>(ss).sin6_port);
  return ntohs(reinterpret_cast<sockaddr_in&>(ss).sin_port);
}

int tcp_listener(int family, int backlog) {
  int s = ::socket(family, SOCK_STREAM, 0);
  int one = 1;
  ::setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(ss);
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof in;
  } else {
    ::setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    auto& in6 = reinterpret_cast<sockaddr_in6&>(ss);
    in6.sin6_family = AF_INET6;
    in6.sin6_addr = in6addr_loopback;
    len = sizeof in6;
  }
  EXPECT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&ss), len), 0) << std::strerror(errno);
  EXPECT_EQ(::listen(s, backlog), 0);
  return s;
}

int tcp_connect(int family, uint16_t port) {
  int s = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_storage ss{};
  socklen_t len;
  if (family == AF_INET) {
    auto& in = reinterpret_cast<sockaddr_in&>(ss);
    in.sin_family = AF_INET;
    in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    in.sin_port = htons(port);
    len = sizeof in;
  } else {
    auto& in6 = reinterpret_cast<sockaddr_in6&>(ss);
    in6.sin6_family = AF_INET6;
    in6.sin6_addr = in6addr_loopback;
    in6.sin6_port = htons(port);
    len = sizeof in6;
  }
  if (::connect(s, reinterpret_cast<sockaddr*>(&ss), len) < 0) {
    ::close(s);
    return -1;
  }
  return s;
}

int get_int(int fd, int level, int name) {
  int v = -1;
  socklen_t len = sizeof v;
  if (::getsockopt(fd, level, name, &v, &len) < 0) return -1;
  return v;
}

class SocketsTest : public testutil::FdImagesTest {
 protected:
  // Dumps `tree` and kills it the way a checkpoint without --leave-running does.
  // Returns the dumped pid.
  pid_t dump_and_kill(TreeProcess& tree, FileDumpOptions options = {}) {
    pid_t pid = tree.pid();
    FileDumper dumper(images_, options);
    dumper.dump_process(tree.pid(), tree.pidfd());
    dumper.finish();
    dumper.keep_tcp_repair_for_kill();
    tree.kill();
    return pid;
  }
};

TEST_F(SocketsTest, TcpListenersAcceptOnTheirPortAfterRestore) {
  int v4 = tcp_listener(AF_INET, 7);
  int v6 = tcp_listener(AF_INET6, 5);
  int nodelay = 1;
  ::setsockopt(v4, IPPROTO_TCP, TCP_NODELAY, &nodelay, sizeof nodelay);
  ::fcntl(v4, F_SETFL, O_NONBLOCK);
  struct timeval timeout = {3, 0};
  ::setsockopt(v6, SOL_SOCKET, SO_RCVTIMEO, &timeout, sizeof timeout);
  uint16_t port4 = local_port(v4), port6 = local_port(v6);
  TreeProcess tree([&] {
    place_all({{v4, 10}, {v6, 11}});
    return std::set<int>{10, 11};
  });
  ::close(v4);
  ::close(v6);
  pid_t dumped = dump_and_kill(tree);

  json files = read_json_image(images_, "files.img");
  int listeners = 0;
  for (const json& d : files.at("descriptions"))
    if (d.at("kind") == "inet_socket" && d.at("state") == "listen") ++listeners;
  EXPECT_EQ(listeners, 2);

  auto pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    c.expect(get_int(10, SOL_SOCKET, SO_ACCEPTCONN) == 1, "fd 10 listens");
    c.expect(get_int(11, SOL_SOCKET, SO_ACCEPTCONN) == 1, "fd 11 listens");
    c.expect(local_port(10) == port4, "fd 10 port");
    c.expect(local_port(11) == port6, "fd 11 port");
    c.expect(get_int(10, SOL_SOCKET, SO_DOMAIN) == AF_INET, "fd 10 is IPv4");
    c.expect(get_int(11, IPPROTO_IPV6, IPV6_V6ONLY) == 1, "fd 11 IPV6_V6ONLY");
    c.expect(get_int(10, SOL_SOCKET, SO_REUSEADDR) == 1, "fd 10 SO_REUSEADDR");
    c.expect(get_int(10, IPPROTO_TCP, TCP_NODELAY) == 1, "fd 10 TCP_NODELAY");
    c.expect((::fcntl(10, F_GETFL) & O_NONBLOCK) != 0, "fd 10 O_NONBLOCK");
    c.expect((::fcntl(11, F_GETFL) & O_NONBLOCK) == 0, "fd 11 blocking");
    struct timeval tv {};
    socklen_t len = sizeof tv;
    ::getsockopt(11, SOL_SOCKET, SO_RCVTIMEO, &tv, &len);
    c.expect(tv.tv_sec == 3 && tv.tv_usec == 0, "fd 11 SO_RCVTIMEO");
    for (int fd : {10, 11}) {
      pollfd p{fd, POLLIN, 0};
      c.expect(::poll(&p, 1, -1) == 1, "poll for a connection");
      int conn = ::accept(fd, nullptr, nullptr);
      c.expect(conn >= 0, "accept on fd " + std::to_string(fd));
      c.expect(write_all(conn, "hi" + std::to_string(fd)), "write to the client");
      ::close(conn);
    }
  });
  // From here the sockets live only in the restored process: if it fails, connecting fails.
  pool.reset();
  int client4 = tcp_connect(AF_INET, port4);
  ASSERT_GE(client4, 0) << std::strerror(errno) << restored.failures();
  EXPECT_EQ(read_all(client4), "hi10");
  int client6 = tcp_connect(AF_INET6, port6);
  ASSERT_GE(client6, 0) << std::strerror(errno) << restored.failures();
  EXPECT_EQ(read_all(client6), "hi11");
  ::close(client4);
  ::close(client6);
  EXPECT_EQ(restored.failures(), "");
}

// An established loopback connection: the tree holds the server end with bytes queued both
// ways (its send queue backed up by the client's small receive window, its receive queue
// unread); this process is the client, outside the tree.
struct Connection {
  int client = -1;
  int server = -1;
};

Connection connect_pair(int family) {
  int listener = tcp_listener(family, 1);
  Connection c;
  c.client = ::socket(family, SOCK_STREAM | SOCK_CLOEXEC, 0);
  int small = 4096;
  ::setsockopt(c.client, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  ::close(c.client);
  c.client = tcp_connect(family, local_port(listener));
  c.server = ::accept(listener, nullptr, nullptr);
  ::close(listener);
  return c;
}

TEST_F(SocketsTest, EstablishedTcpKeepsEveryQueuedByteInOrder) {
  for (int family : {AF_INET, AF_INET6}) {
    SCOPED_TRACE(family == AF_INET ? "IPv4" : "IPv6");
    Connection conn = connect_pair(family);
    ASSERT_GE(conn.client, 0);
    ASSERT_GE(conn.server, 0);
    // The tree writes until its send queue is full; the count comes back through shared memory.
    auto* sent_by_tree = static_cast<uint64_t*>(
        ::mmap(nullptr, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0));
    ASSERT_NE(sent_by_tree, MAP_FAILED);
    constexpr uint64_t kServerSeed = 1, kClientSeed = 2;
    constexpr size_t kClientBefore = 60000, kClientAfter = 3000, kServerAfter = 20000;
    ASSERT_TRUE(write_all(conn.client, pattern(0, kClientBefore, kClientSeed)));
    TreeProcess tree([&] {
      place(conn.server, 12);
      ::fcntl(12, F_SETFL, O_NONBLOCK);
      std::string chunk;
      uint64_t sent = 0;
      for (;;) {
        chunk = pattern(sent, 8192, kServerSeed);
        ssize_t n = ::send(12, chunk.data(), chunk.size(), MSG_NOSIGNAL);
        if (n <= 0) break;
        sent += static_cast<uint64_t>(n);
      }
      ::fcntl(12, F_SETFL, 0);
      *sent_by_tree = sent;
      return std::set<int>{12};
    });
    ::close(conn.server);
    uint64_t sent_before = *sent_by_tree;
    ASSERT_GT(sent_before, 0u);

    FileDumpOptions options;
    options.tcp_established = true;
    pid_t dumped = dump_and_kill(tree, options);
    json files = read_json_image(images_, "files.img");
    bool found = false;
    for (const json& d : files.at("descriptions")) {
      if (d.at("kind") != "inet_socket") continue;
      found = true;
      EXPECT_EQ(d.at("state"), "established");
      EXPECT_EQ(d.at("tcp").at("recv_queue").at("bytes"), kClientBefore);
      EXPECT_GT(d.at("tcp").at("send_queue").at("bytes").get<uint64_t>(), 0u);
    }
    EXPECT_TRUE(found);

    auto pool = FilePool::open(images_, {});
    RestoredProcess restored(*pool, dumped, [&](Checks& c) {
      std::string got = read_exactly(12, kClientBefore + kClientAfter);
      c.expect(got == pattern(0, kClientBefore + kClientAfter, kClientSeed),
               "bytes from the client: " + std::to_string(got.size()) + " read, in order: " +
                   std::to_string(got == pattern(0, got.size(), kClientSeed)));
      c.expect(write_all(12, pattern(sent_before, kServerAfter, kServerSeed)),
               "writing after restore");
    });
    pool.reset();
    // The client goes on talking: more bytes its way, and everything the tree sent, in order.
    ASSERT_TRUE(write_all(conn.client, pattern(kClientBefore, kClientAfter, kClientSeed)));
    std::string got = read_exactly(conn.client, sent_before + kServerAfter);
    EXPECT_EQ(got.size(), sent_before + kServerAfter);
    EXPECT_TRUE(got == pattern(0, sent_before + kServerAfter, kServerSeed))
        << "the stream from the tree differs";
    EXPECT_EQ(restored.failures(), "");
    ::close(conn.client);
    ::munmap(sent_by_tree, 4096);
    fs::remove_all(images_);
    fs::mkdir_p(images_);
  }
}

TEST_F(SocketsTest, EstablishedTcpWithoutTheOptionFailsNamingItAndLeavesItWorking) {
  Connection conn = connect_pair(AF_INET);
  uint16_t server_port = local_port(conn.server);
  TreeProcess tree([&] {
    place(conn.server, 7);
    return std::set<int>{7};
  });
  ::close(conn.server);
  try {
    FileDumper dumper(images_, {});
    dumper.dump_process(tree.pid(), tree.pidfd());
    ADD_FAILURE() << "dump did not fail";
  } catch (const Error& e) {
    std::string message = e.what();
    EXPECT_NE(message.find("fd 7"), std::string::npos) << message;
    EXPECT_NE(message.find("established TCP connection 127.0.0.1:" + std::to_string(server_port) +
                           " -> 127.0.0.1:" + std::to_string(local_port(conn.client))),
              std::string::npos)
        << message;
    EXPECT_NE(message.find("(use --tcp-established)"), std::string::npos) << message;
  }
  // A dump with the option that is abandoned (the tree resumes) turns repair mode off again:
  // the connection still carries data (the kernel acknowledges and queues it for the tree).
  {
    FileDumpOptions options;
    options.tcp_established = true;
    FileDumper dumper(images_, options);
    dumper.dump_process(tree.pid(), tree.pidfd());
    dumper.finish();
  }
  ASSERT_TRUE(write_all(conn.client, "still alive"));
  // Waits (untimed) until the tree's end acknowledged everything; a socket left in repair mode
  // would never do it and the test would hang instead of passing.
  int outq = -1;
  while (outq != 0) {
    ASSERT_EQ(::ioctl(conn.client, TIOCOUTQ, &outq), 0);
    if (outq != 0) ::usleep(1000);
  }
  ::close(conn.client);
}

}  // namespace
}  // namespace cryo::ckpt

namespace cryo::ckpt {
namespace {

std::string recv_message(int fd) {
  char buf[4096];
  ssize_t n = ::recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  return n < 0 ? std::string("<error>") : std::string(buf, static_cast<size_t>(n));
}

int unix_listener(int type, const std::string& name, bool abstract, int backlog) {
  int s = ::socket(AF_UNIX, type, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string sun = abstract ? std::string(1, '\0') + name : name;
  std::memcpy(addr.sun_path, sun.data(), sun.size());
  EXPECT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&addr),
                   static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + sun.size())),
            0)
      << std::strerror(errno);
  if (type != SOCK_DGRAM) {
    EXPECT_EQ(::listen(s, backlog), 0);
  }
  return s;
}

int unix_connect(int type, const std::string& name, bool abstract) {
  int s = ::socket(AF_UNIX, type | SOCK_CLOEXEC, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::string sun = abstract ? std::string(1, '\0') + name : name;
  std::memcpy(addr.sun_path, sun.data(), sun.size());
  if (::connect(s, reinterpret_cast<sockaddr*>(&addr),
                static_cast<socklen_t>(offsetof(sockaddr_un, sun_path) + sun.size())) < 0) {
    ::close(s);
    return -1;
  }
  return s;
}

TEST_F(SocketsTest, UnixPairsKeepQueuedBytesBothWaysMessageBoundariesAndShutdown) {
  int stream[2], dgram[2], seqpacket[2], closing[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, stream), 0);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_DGRAM, 0, dgram), 0);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_SEQPACKET, 0, seqpacket), 0);
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, closing), 0);
  std::string big = pattern(0, 150000, 3);
  TreeProcess tree([&] {
    write_all(stream[1], "to ten");
    write_all(stream[0], big);  // queued for fd 11, more than one skb
    for (const char* m : {"one", "", "three"}) ::send(dgram[1], m, std::strlen(m), 0);
    ::send(dgram[0], "back", 4, 0);
    ::send(seqpacket[0], "seq-a", 5, 0);
    ::send(seqpacket[0], "seq-bb", 6, 0);
    write_all(closing[1], "bye");
    ::shutdown(closing[1], SHUT_WR);
    ::fcntl(dgram[0], F_SETFL, O_NONBLOCK);
    place_all({{stream[0], 10},
               {stream[1], 11},
               {dgram[0], 12},
               {dgram[1], 13},
               {seqpacket[0], 14},
               {seqpacket[1], 15},
               {closing[0], 16},
               {closing[1], 17}});
    return std::set<int>{10, 11, 12, 13, 14, 15, 16, 17};
  });
  for (int fd : {stream[0], stream[1], dgram[0], dgram[1], seqpacket[0], seqpacket[1], closing[0],
                 closing[1]})
    ::close(fd);
  pid_t dumped = dump_and_kill(tree);
  EXPECT_EQ(read_json_image(images_, "files.img").at("unix_pairs").size(), 4u);

  auto pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    c.expect(read_exactly(10, 6) == "to ten", "stream bytes for fd 10");
    c.expect(read_exactly(11, big.size()) == big, "stream bytes for fd 11");
    c.expect(write_all(10, "ping") && read_exactly(11, 4) == "ping", "fds 10 and 11 connected");
    c.expect(recv_message(12) == "one", "first datagram");
    c.expect(recv_message(12) == "", "empty datagram kept");
    c.expect(recv_message(12) == "three", "third datagram");
    c.expect(recv_message(12) == "<error>" && errno == EAGAIN, "no more datagrams");
    c.expect(recv_message(13) == "back", "datagram the other way");
    c.expect((::fcntl(12, F_GETFL) & O_NONBLOCK) != 0, "fd 12 O_NONBLOCK");
    c.expect(get_int(14, SOL_SOCKET, SO_TYPE) == SOCK_SEQPACKET, "fd 14 seqpacket");
    c.expect(recv_message(15) == "seq-a" && recv_message(15) == "seq-bb", "seqpacket messages");
    c.expect(read_exactly(16, 3) == "bye", "bytes before the shutdown");
    char x;
    c.expect(::read(16, &x, 1) == 0, "end of file after the peer's shutdown");
    c.expect(write_all(16, "reply") && read_exactly(17, 5) == "reply", "the other way still open");
  });
  EXPECT_EQ(restored.failures(), "");
}

TEST_F(SocketsTest, UnixListenersAndBoundDatagramSocketKeepTheirNames) {
  const std::string path = dir_ + "/server.sock", dgram_path = dir_ + "/dgram.sock";
  const std::string abstract = "cryo-test-" + std::to_string(::getpid());
  int listener = unix_listener(SOCK_STREAM, path, false, 4);
  ::chmod(path.c_str(), 0600);
  int abstract_listener = unix_listener(SOCK_SEQPACKET, abstract, true, 3);
  int receiver = unix_listener(SOCK_DGRAM, dgram_path, false, 0);
  // Queued by a sender outside the tree.
  int sender = ::socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_un to{};
  to.sun_family = AF_UNIX;
  std::strcpy(to.sun_path, dgram_path.c_str());
  for (const char* m : {"first", "second"})
    ::sendto(sender, m, std::strlen(m), 0, reinterpret_cast<sockaddr*>(&to), sizeof to);
  ::close(sender);
  TreeProcess tree([&] {
    place_all({{listener, 20}, {abstract_listener, 21}, {receiver, 22}});
    return std::set<int>{20, 21, 22};
  });
  ::close(listener);
  ::close(abstract_listener);
  ::close(receiver);
  pid_t dumped = dump_and_kill(tree);
  // The dead listener's socket file is still there, refusing connections; the restore replaces it.
  struct stat st;
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_EQ(unix_connect(SOCK_STREAM, path, false), -1);

  auto pool = FilePool::open(images_, {});
  ASSERT_EQ(::lstat(path.c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 07777, 0600u);
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    c.expect(get_int(20, SOL_SOCKET, SO_ACCEPTCONN) == 1, "fd 20 listens");
    sockaddr_un bound{};
    socklen_t bound_len = sizeof bound;
    c.expect(::getsockname(20, reinterpret_cast<sockaddr*>(&bound), &bound_len) == 0 &&
                 std::string(bound.sun_path) == path,
             "fd 20 keeps its exact name: " + std::string(bound.sun_path));
    c.expect(get_int(21, SOL_SOCKET, SO_TYPE) == SOCK_SEQPACKET, "fd 21 seqpacket");
    c.expect(recv_message(22) == "first" && recv_message(22) == "second", "queued datagrams");
    for (int fd : {20, 21}) {
      int conn = ::accept(fd, nullptr, nullptr);
      c.expect(conn >= 0, "accept on fd " + std::to_string(fd));
      c.expect(write_all(conn, "hello " + std::to_string(fd)), "write");
      ::close(conn);
    }
  });
  pool.reset();
  int client = unix_connect(SOCK_STREAM, path, false);
  ASSERT_GE(client, 0) << std::strerror(errno) << restored.failures();
  EXPECT_EQ(read_all(client), "hello 20");
  int seq_client = unix_connect(SOCK_SEQPACKET, abstract, true);
  ASSERT_GE(seq_client, 0) << std::strerror(errno) << restored.failures();
  EXPECT_EQ(read_all(seq_client), "hello 21");
  ::close(client);
  ::close(seq_client);
  EXPECT_EQ(restored.failures(), "");
}

TEST_F(SocketsTest, UnixPeerOutsideTheTreeNeedsExtUnixSk) {
  int pair[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM, 0, pair), 0);
  ASSERT_TRUE(write_all(pair[1], "from outside"));
  TreeProcess tree([&] {
    place(pair[0], 9);
    return std::set<int>{9};
  });
  ::close(pair[0]);
  try {
    FileDumper dumper(images_, {});
    dumper.dump_process(tree.pid(), tree.pidfd());
    dumper.finish();
    ADD_FAILURE() << "dump did not fail";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("fd 9"), std::string::npos) << e.what();
    EXPECT_NE(std::string(e.what()).find("outside the dumped tree"), std::string::npos) << e.what();
  }
  FileDumpOptions options;
  options.ext_unix_sk = true;
  pid_t dumped = dump_and_kill(tree, options);
  ::close(pair[1]);
  auto pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    c.expect(read_exactly(9, 12) == "from outside", "queued bytes from the outside peer");
    char x;
    c.expect(::read(9, &x, 1) == 0, "then end of file: the outside peer is gone");
  });
  EXPECT_EQ(restored.failures(), "");
}

}  // namespace
}  // namespace cryo::ckpt

namespace cryo::ckpt {
namespace {

int udp_socket(uint16_t port) {
  int s = ::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  in.sin_port = htons(port);
  EXPECT_EQ(::bind(s, reinterpret_cast<sockaddr*>(&in), sizeof in), 0);
  return s;
}

sockaddr_in loopback(uint16_t port) {
  sockaddr_in in{};
  in.sin_family = AF_INET;
  in.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  in.sin_port = htons(port);
  return in;
}

TEST_F(SocketsTest, UdpSocketsKeepAddressAndPeerAndNetlinkItsGroupsAndPortId) {
  int outside = udp_socket(0);
  int bound = udp_socket(0);
  int connected = udp_socket(0);
  int broadcast = 1;
  ::setsockopt(bound, SOL_SOCKET, SO_BROADCAST, &broadcast, sizeof broadcast);
  sockaddr_in to_outside = loopback(local_port(outside));
  ASSERT_EQ(::connect(connected, reinterpret_cast<sockaddr*>(&to_outside), sizeof to_outside), 0);
  uint16_t bound_port = local_port(bound), connected_port = local_port(connected);
  uint16_t outside_port = local_port(outside);

  int netlink = ::socket(AF_NETLINK, SOCK_RAW, NETLINK_ROUTE);
  sockaddr_nl nl{};
  nl.nl_family = AF_NETLINK;
  nl.nl_pid = 0x40000000u + static_cast<uint32_t>(::getpid());
  nl.nl_groups = RTMGRP_LINK;
  ASSERT_EQ(::bind(netlink, reinterpret_cast<sockaddr*>(&nl), sizeof nl), 0)
      << std::strerror(errno);
  int group = RTNLGRP_IPV4_IFADDR;
  ASSERT_EQ(::setsockopt(netlink, SOL_NETLINK, NETLINK_ADD_MEMBERSHIP, &group, sizeof group), 0);
  uint32_t port_id = nl.nl_pid;

  TreeProcess tree([&] {
    place_all({{bound, 10}, {connected, 11}, {netlink, 12}});
    return std::set<int>{10, 11, 12};
  });
  ::close(bound);
  ::close(connected);
  ::close(netlink);
  pid_t dumped = dump_and_kill(tree);
  auto pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    c.expect(local_port(10) == bound_port, "fd 10 port");
    c.expect(get_int(10, SOL_SOCKET, SO_BROADCAST) == 1, "fd 10 SO_BROADCAST");
    c.expect(local_port(11) == connected_port, "fd 11 port");
    sockaddr_in peer{};
    socklen_t len = sizeof peer;
    c.expect(::getpeername(11, reinterpret_cast<sockaddr*>(&peer), &len) == 0 &&
                 ntohs(peer.sin_port) == outside_port,
             "fd 11 connected to the outside socket");
    char buf[64];
    ssize_t n = ::recv(10, buf, sizeof buf, 0);
    c.expect(n == 5 && std::string(buf, 5) == "query", "datagram to fd 10");
    c.expect(::send(11, "answer", 6, 0) == 6, "send on the connected fd 11");

    sockaddr_nl local{};
    len = sizeof local;
    c.expect(::getsockname(12, reinterpret_cast<sockaddr*>(&local), &len) == 0 &&
                 local.nl_pid == port_id,
             "netlink port id");
    uint32_t groups[4] = {};
    len = sizeof groups;
    c.expect(::getsockopt(12, SOL_NETLINK, NETLINK_LIST_MEMBERSHIPS, groups, &len) == 0 &&
                 groups[0] == ((1u << (RTNLGRP_LINK - 1)) | (1u << (RTNLGRP_IPV4_IFADDR - 1))),
             "netlink groups");
    // The socket talks to the kernel: a link dump gets an answer.
    struct {
      nlmsghdr header;
      rtgenmsg body;
    } request{};
    request.header.nlmsg_len = sizeof request;
    request.header.nlmsg_type = RTM_GETLINK;
    request.header.nlmsg_flags = NLM_F_REQUEST | NLM_F_DUMP;
    request.body.rtgen_family = AF_UNSPEC;
    c.expect(::send(12, &request, sizeof request, 0) == sizeof request, "netlink request");
    char answer[8192];
    n = ::recv(12, answer, sizeof answer, 0);
    c.expect(n > 0 && reinterpret_cast<nlmsghdr*>(answer)->nlmsg_type == RTM_NEWLINK,
             "netlink answer");
  });
  pool.reset();
  sockaddr_in to_bound = loopback(bound_port);
  ASSERT_EQ(
      ::sendto(outside, "query", 5, 0, reinterpret_cast<sockaddr*>(&to_bound), sizeof to_bound), 5);
  char buf[64];
  sockaddr_in from{};
  socklen_t len = sizeof from;
  ssize_t n = ::recvfrom(outside, buf, sizeof buf, 0, reinterpret_cast<sockaddr*>(&from), &len);
  EXPECT_EQ(std::string(buf, static_cast<size_t>(std::max<ssize_t>(n, 0))), "answer");
  EXPECT_EQ(ntohs(from.sin_port), connected_port);
  EXPECT_EQ(restored.failures(), "");
  ::close(outside);
}

}  // namespace
}  // namespace cryo::ckpt

namespace cryo::ckpt {
namespace {

// The web server case with its client inside the tree: a listener, and both ends of a
// connection it accepted (the server end shares the listener's port), all rebuilt.
TEST_F(SocketsTest, EstablishedTcpWithBothEndsAndTheListenerInTheTree) {
  int listener = tcp_listener(AF_INET, 4);
  uint16_t port = local_port(listener);
  Connection conn;
  conn.client = tcp_connect(AF_INET, port);
  conn.server = ::accept(listener, nullptr, nullptr);
  ASSERT_GE(conn.client, 0);
  ASSERT_GE(conn.server, 0);
  ASSERT_TRUE(write_all(conn.client, pattern(0, 30000, 7)));
  ASSERT_TRUE(write_all(conn.server, pattern(0, 2000, 8)));
  TreeProcess tree([&] {
    place_all({{listener, 19}, {conn.client, 20}, {conn.server, 21}});
    return std::set<int>{19, 20, 21};
  });
  ::close(listener);
  ::close(conn.client);
  ::close(conn.server);
  FileDumpOptions options;
  options.tcp_established = true;
  pid_t dumped = dump_and_kill(tree, options);
  auto pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    c.expect(read_exactly(21, 30000) == pattern(0, 30000, 7), "bytes client -> server");
    c.expect(read_exactly(20, 2000) == pattern(0, 2000, 8), "bytes server -> client");
    c.expect(write_all(20, "after") && read_exactly(21, 5) == "after", "new bytes one way");
    c.expect(write_all(21, "back") && read_exactly(20, 4) == "back", "new bytes the other way");
    c.expect(local_port(21) == port && local_port(19) == port, "ports");
    int second = tcp_connect(AF_INET, port);
    c.expect(second >= 0 && ::accept(19, nullptr, nullptr) >= 0, "the listener accepts");
  });
  EXPECT_EQ(restored.failures(), "");
}

}  // namespace
}  // namespace cryo::ckpt

namespace cryo::ckpt {
namespace {

// A datagram socket connected to a named socket of the tree that is restored after it (a higher
// fd): the connection is made once every socket exists.
TEST_F(SocketsTest, UnixDatagramConnectedToANamedSocketOfTheTree) {
  const std::string path = dir_ + "/log.sock";
  int server = unix_listener(SOCK_DGRAM, path, false, 0);
  int client = unix_connect(SOCK_DGRAM, path, false);
  ASSERT_GE(client, 0);
  TreeProcess tree([&] {
    place_all({{client, 5}, {server, 6}});
    return std::set<int>{5, 6};
  });
  ::close(server);
  ::close(client);
  pid_t dumped = dump_and_kill(tree);
  auto pool = FilePool::open(images_, {});
  RestoredProcess restored(*pool, dumped, [&](Checks& c) {
    c.expect(::send(5, "log line", 8, 0) == 8, "send on the connected socket");
    c.expect(recv_message(6) == "log line", "the named socket receives it");
  });
  EXPECT_EQ(restored.failures(), "");
}

}  // namespace
}  // namespace cryo::ckpt
