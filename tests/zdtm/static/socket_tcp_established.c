/* Both ends of an established loopback TCP connection, with bytes queued both ways (one side's
 * send queue backed up against a small receive window). Needs --tcp-established. After restore
 * every byte arrives in order and the connection carries new data both ways. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtmtst.h"

static void read_exactly(int fd, unsigned char* buf, size_t size, const char* what) {
  size_t done = 0;
  while (done < size) {
    ssize_t n = read(fd, buf + done, size - done);
    if (n <= 0) test_fail("%s: read ended after %zu of %zu bytes", what, done, size);
    done += (size_t)n;
  }
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  int l = socket(AF_INET, SOCK_STREAM, 0);
  struct sockaddr_in addr = {.sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK)};
  socklen_t len = sizeof addr;
  if (bind(l, (struct sockaddr*)&addr, len) < 0 || listen(l, 1) < 0) test_fail("listen");
  getsockname(l, (struct sockaddr*)&addr, &len);
  int client = socket(AF_INET, SOCK_STREAM, 0);
  int small = 4096;
  setsockopt(client, SOL_SOCKET, SO_RCVBUF, &small, sizeof small);
  if (connect(client, (struct sockaddr*)&addr, len) < 0) test_fail("connect");
  int server = accept(l, NULL, NULL);
  if (server < 0) test_fail("accept");
  close(l);

  size_t to_client_max = 8 << 20, to_server = 40000;
  unsigned char *out = malloc(to_client_max), *in = malloc(to_client_max);
  test_fill_random(out, to_client_max, 5);
  fcntl(server, F_SETFL, O_NONBLOCK);
  size_t queued = 0;
  for (;;) {
    ssize_t n = send(server, out + queued, to_client_max - queued, 0);
    if (n <= 0) break;
    queued += (size_t)n;
  }
  fcntl(server, F_SETFL, 0);
  unsigned char* up = malloc(to_server);
  test_fill_random(up, to_server, 6);
  if (write(client, up, to_server) != (ssize_t)to_server) test_fail("write to server");
  test_ready();
  test_wait_for_sigterm();

  read_exactly(server, in, to_server, "bytes to the server");
  if (test_check_random(in, to_server, 6) != (size_t)-1) test_fail("bytes to the server differ");
  read_exactly(client, in, queued, "bytes to the client");
  if (test_check_random(in, queued, 5) != (size_t)-1) test_fail("bytes to the client differ");
  if (write(client, "more", 4) != 4 || write(server, "back", 4) != 4) test_fail("write after");
  read_exactly(server, in, 4, "new bytes to the server");
  if (memcmp(in, "more", 4) != 0) test_fail("new bytes to the server differ");
  read_exactly(client, in, 4, "new bytes to the client");
  if (memcmp(in, "back", 4) != 0) test_fail("new bytes to the client differ");
  test_pass();
}
