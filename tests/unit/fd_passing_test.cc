#include "common/fd_passing.h"

#include <fcntl.h>
#include <gtest/gtest.h>
#include <sys/socket.h>
#include <unistd.h>

#include "common/error.h"

namespace cryo {
namespace {

TEST(FdPassing, SentFdIsTheSameOpenFile) {
  int sp[2], p[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  ASSERT_EQ(::pipe2(p, O_CLOEXEC), 0);
  UniqueFd left(sp[0]), right(sp[1]), read_end(p[0]), write_end(p[1]);
  send_fd(left.get(), write_end.get(), "pipe");
  UniqueFd received = receive_fd(right.get(), "pipe");
  ASSERT_TRUE(received);
  EXPECT_NE(received.get(), write_end.get());
  EXPECT_EQ(::fcntl(received.get(), F_GETFD) & FD_CLOEXEC, FD_CLOEXEC);
  ASSERT_EQ(::write(received.get(), "x", 1), 1);
  char c = 0;
  ASSERT_EQ(::read(read_end.get(), &c, 1), 1);
  EXPECT_EQ(c, 'x');
}

TEST(FdPassing, NothingSentIsAnErrorNamingTheFd) {
  int sp[2];
  ASSERT_EQ(::socketpair(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0, sp), 0);
  UniqueFd left(sp[0]), right(sp[1]);
  left.reset();  // EOF without an fd
  try {
    receive_fd(right.get(), "console master");
    FAIL() << "no error";
  } catch (const Error& e) {
    EXPECT_NE(std::string(e.what()).find("console master"), std::string::npos) << e.what();
  }
}

}  // namespace
}  // namespace cryo
