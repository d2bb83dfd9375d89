// The TCP packet hold (sockets::TcpPacketHold): an nftables table that drops a connection's
// segments both ways while it exists, recorded in the image directory, deleted by its owner unless
// kept for the restore, and then deleted by release_recorded_hold. Loopback connections of this
// process; the table is looked up with nft itself.
#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstdlib>
#include <filesystem>
#include <memory>
#include <string>

#include "checkpoint/file_kinds/sockets_tcp_hold.h"
#include "checkpoint/image/image_file.h"
#include "checkpoint/image/image_sink.h"
#include "common/unique_fd.h"

namespace cryo::ckpt::files::sockets {
namespace {

struct Connection {
  UniqueFd client, server;
  uint16_t client_port = 0, server_port = 0;
};

Connection connect_loopback() {
  Connection c;
  UniqueFd listener(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  EXPECT_EQ(::bind(listener.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
  EXPECT_EQ(::listen(listener.get(), 1), 0);
  ::getsockname(listener.get(), reinterpret_cast<sockaddr*>(&addr), &len);
  c.server_port = ntohs(addr.sin_port);
  c.client.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  EXPECT_EQ(::connect(c.client.get(), reinterpret_cast<sockaddr*>(&addr), len), 0);
  c.server.reset(::accept4(listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  sockaddr_in local{};
  len = sizeof local;
  ::getsockname(c.client.get(), reinterpret_cast<sockaddr*>(&local), &len);
  c.client_port = ntohs(local.sin_port);
  return c;
}

bool table_exists(const std::string& table) {
  std::string command = "nft list table inet " + table + " >/dev/null 2>&1";
  return std::system(command.c_str()) == 0;
}

// Whether `fd` has bytes to read within `ms` (a bound on waiting, not a measurement).
bool readable_within(int fd, int ms) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, ms) == 1;
}

class TcpHoldTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = std::filesystem::temp_directory_path() / ("cryo-tcp-hold-" + std::to_string(::getpid()));
    std::filesystem::create_directories(dir_);
    sink_ = std::make_unique<DirectorySink>(dir_.string());
  }
  void TearDown() override { std::filesystem::remove_all(dir_); }
  std::filesystem::path dir_;
  std::unique_ptr<DirectorySink> sink_;
};

TEST_F(TcpHoldTest, DropsTheConnectionsSegmentsUntilReleased) {
  Connection c = connect_loopback();
  std::string table;
  {
    TcpPacketHold hold;
    hold.hold(c.server.get(),
              TcpConnection{AF_INET, "127.0.0.1", c.server_port, "127.0.0.1", c.client_port},
              *sink_);
    table = hold.table();
    ASSERT_FALSE(table.empty());
    EXPECT_TRUE(table_exists(table));
    json record = read_json_image(dir_, kTcpHoldImage);
    EXPECT_EQ(record.at("table"), table);
    // The reverse direction is the same connection: no second rule set, no error.
    hold.hold(c.client.get(),
              TcpConnection{AF_INET, "127.0.0.1", c.client_port, "127.0.0.1", c.server_port},
              *sink_);

    ASSERT_EQ(::send(c.client.get(), "held", 4, 0), 4);
    EXPECT_FALSE(readable_within(c.server.get(), 500)) << "a held segment got through";
  }
  // The owner was not told to keep it: gone, and the client's retransmission gets through.
  EXPECT_FALSE(table_exists(table));
  ASSERT_TRUE(readable_within(c.server.get(), 60000));
  char buf[8] = {};
  ASSERT_EQ(::recv(c.server.get(), buf, sizeof buf, 0), 4);
  EXPECT_EQ(std::string(buf, 4), "held");
}

TEST_F(TcpHoldTest, KeptHoldIsReleasedFromTheRecord) {
  Connection c = connect_loopback();
  std::string table;
  {
    TcpPacketHold hold;
    hold.hold(c.server.get(),
              TcpConnection{AF_INET, "127.0.0.1", c.server_port, "127.0.0.1", c.client_port},
              *sink_);
    table = hold.table();
    hold.keep();
  }
  EXPECT_TRUE(table_exists(table)) << "a kept hold must outlive its owner";
  release_recorded_hold(dir_, c.client.get());
  EXPECT_FALSE(table_exists(table));
  // A second restore of the same images finds nothing to remove, and says nothing.
  EXPECT_NO_THROW(release_recorded_hold(dir_, c.client.get()));
}

}  // namespace
}  // namespace cryo::ckpt::files::sockets
