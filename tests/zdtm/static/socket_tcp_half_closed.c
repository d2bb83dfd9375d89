/* Half-closed loopback TCP connections inside the tree: on the first, one end wrote bytes and
 * shut its side (FIN_WAIT2), the other end has them unread with the FIN after them (CLOSE_WAIT);
 * on the second, one end shut its side with bytes still unsent behind a closed window
 * (FIN_WAIT1, the FIN not sent yet). After restore each reader gets every byte and then the end
 * of the stream, and the still open direction carries new bytes and its own FIN. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtmtst.h"

static void connected_pair(int* client, int* server, int client_rcvbuf) {
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  if (bind(l, (struct sockaddr*)&addr, len) < 0 || listen(l, 1) < 0) test_fail("listen");
  getsockname(l, (struct sockaddr*)&addr, &len);
  *client = socket(AF_INET, SOCK_STREAM, 0);
  if (client_rcvbuf > 0)
    setsockopt(*client, SOL_SOCKET, SO_RCVBUF, &client_rcvbuf, sizeof client_rcvbuf);
  if (connect(*client, (struct sockaddr*)&addr, len) < 0) test_fail("connect");
  *server = accept(l, NULL, NULL);
  if (*server < 0) test_fail("accept");
  close(l);
}

/* Reads exactly `size` bytes and then expects the end of the stream. */
static void read_all_then_eof(int fd, unsigned char* buf, size_t size, const char* what) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = read(fd, buf + done, size - done);
    if (n <= 0) test_fail("%s: read ended after %zu of %zu bytes (%zd)", what, done, size, n);
    done += (size_t)n;
  }
  char extra;
  ssize_t n = read(fd, &extra, 1);
  if (n != 0) test_fail("%s: expected the end of the stream, read returned %zd", what, n);
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  /* First connection: writer shut its side, the reader has not read anything. */
  int writer, reader;
  connected_pair(&writer, &reader, 0);
  const size_t first_size = 10000;
  unsigned char* first = malloc(first_size);
  test_fill_random(first, first_size, 21);
  if (write(writer, first, first_size) != (ssize_t)first_size) test_fail("write first");
  if (shutdown(writer, SHUT_WR) < 0) test_fail("shutdown writer");
  while (test_tcp_state(reader) != TCP_CLOSE_WAIT || test_tcp_state(writer) != TCP_FIN_WAIT2)
    usleep(1000);

  /* Second connection: the sender's bytes back up behind a small receive window, then it shuts
   * its side: the FIN waits behind the unsent bytes. */
  int slow_reader, sender;
  connected_pair(&slow_reader, &sender, 4096);
  const size_t second_max = 4 << 20;
  unsigned char *second = malloc(second_max), *in = malloc(second_max);
  test_fill_random(second, second_max, 22);
  fcntl(sender, F_SETFL, O_NONBLOCK);
  size_t queued = 0;
  for (;;) {
    ssize_t n = send(sender, second + queued, second_max - queued, 0);
    if (n <= 0) break;
    queued += (size_t)n;
  }
  fcntl(sender, F_SETFL, 0);
  if (shutdown(sender, SHUT_WR) < 0) test_fail("shutdown sender");
  if (test_tcp_state(sender) != TCP_FIN_WAIT1)
    test_fail("sender in state %d", test_tcp_state(sender));
  test_ready();
  test_wait_for_sigterm();

  if (test_tcp_state(reader) != TCP_CLOSE_WAIT)
    test_fail("reader in state %d after restore, not CLOSE_WAIT", test_tcp_state(reader));
  int writer_state = test_tcp_state(writer);
  if (writer_state != TCP_FIN_WAIT2 && writer_state != TCP_FIN_WAIT1)
    test_fail("writer in state %d after restore", writer_state);
  read_all_then_eof(reader, in, first_size, "first connection");
  if (test_check_random(in, first_size, 21) != (size_t)-1) test_fail("first bytes differ");
  /* The open direction still works, and its FIN finishes the connection. */
  if (write(reader, "back", 4) != 4) test_fail("write back");
  if (shutdown(reader, SHUT_WR) < 0) test_fail("shutdown reader");
  read_all_then_eof(writer, in, 4, "reverse direction");
  if (memcmp(in, "back", 4) != 0) test_fail("reverse bytes differ");

  read_all_then_eof(slow_reader, in, queued, "second connection");
  if (test_check_random(in, queued, 22) != (size_t)-1) test_fail("second bytes differ");
  if (write(slow_reader, "more", 4) != 4) test_fail("write more");
  if (shutdown(slow_reader, SHUT_WR) < 0) test_fail("shutdown slow reader");
  read_all_then_eof(sender, in, 4, "second reverse direction");
  if (memcmp(in, "more", 4) != 0) test_fail("second reverse bytes differ");
  test_pass();
}
