/* Unix socket pairs (stream, datagram, seqpacket) with bytes queued in both directions and a
 * half-closed stream: after restore every byte arrives in order, message boundaries are kept and
 * the pairs still connect their ends. */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtmtst.h"

static void send_message(int fd, const char* m) {
  if (send(fd, m, strlen(m), 0) != (ssize_t)strlen(m)) test_fail("send %s", m);
}

static void expect_message(int fd, const char* m, const char* what) {
  char buf[256];
  ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
  if (n != (ssize_t)strlen(m) || memcmp(buf, m, (size_t)n) != 0)
    test_fail("%s: expected message '%s', got %zd bytes", what, m, n);
}

static void read_exactly(int fd, void* buf, size_t size, const char* what) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = read(fd, (char*)buf + done, size - done);
    if (n <= 0) test_fail("%s: read ended after %zu of %zu bytes", what, done, size);
    done += (size_t)n;
  }
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  int stream[2], dgram[2], seqpacket[2], half[2];
  if (socketpair(AF_UNIX, SOCK_STREAM, 0, stream) || socketpair(AF_UNIX, SOCK_DGRAM, 0, dgram) ||
      socketpair(AF_UNIX, SOCK_SEQPACKET, 0, seqpacket) ||
      socketpair(AF_UNIX, SOCK_STREAM, 0, half))
    test_fail("socketpair");
  size_t big = 100000;
  unsigned char *data = malloc(big), *back = malloc(big);
  test_fill_random(data, big, 11);
  if (write(stream[0], data, big) != (ssize_t)big) test_fail("write big");
  if (write(stream[1], "reverse", 7) != 7) test_fail("write reverse");
  send_message(dgram[0], "d1");
  send_message(dgram[0], "d22");
  send_message(dgram[1], "d-back");
  send_message(seqpacket[1], "s1");
  send_message(seqpacket[1], "s22");
  if (write(half[1], "last", 4) != 4) test_fail("write last");
  shutdown(half[1], SHUT_WR);
  test_ready();
  test_wait_for_sigterm();

  read_exactly(stream[1], back, big, "stream to end 1");
  if (test_check_random(back, big, 11) != (size_t)-1) test_fail("stream bytes differ");
  char buf[16];
  read_exactly(stream[0], buf, 7, "stream to end 0");
  if (memcmp(buf, "reverse", 7) != 0) test_fail("reverse bytes differ");
  expect_message(dgram[1], "d1", "datagram 1");
  expect_message(dgram[1], "d22", "datagram 2");
  expect_message(dgram[0], "d-back", "datagram back");
  expect_message(seqpacket[0], "s1", "seqpacket 1");
  expect_message(seqpacket[0], "s22", "seqpacket 2");
  read_exactly(half[0], buf, 4, "half-closed stream");
  if (memcmp(buf, "last", 4) != 0) test_fail("bytes before shutdown differ");
  if (read(half[0], buf, 1) != 0) test_fail("no end of file after the peer's shutdown");
  if (write(half[0], "ok", 2) != 2) test_fail("the open direction of the half-closed pair");
  read_exactly(half[1], buf, 2, "open direction");
  send_message(dgram[0], "after");
  expect_message(dgram[1], "after", "datagram pair still connected");
  test_pass();
}
