/* A finished connection whose fd stays open (as a server child holds it after the client left)
 * shares the listener's port: it restores beside the listener, still bound to that address and in
 * the CLOSE state (reads give end of file), and the listener accepts new connections. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtmtst.h"

int main(int argc, char** argv) {
  test_init(argc, argv);
  int listener = socket(AF_INET, SOCK_STREAM, 0);
  if (listener < 0) test_fail("socket");
  /* The original's own checks (leave-running mode) leave a TIME_WAIT on the port. */
  int one = 1;
  setsockopt(listener, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof addr;
  if (bind(listener, (struct sockaddr*)&addr, len) < 0) test_fail("bind");
  if (listen(listener, 8) < 0) test_fail("listen");
  if (getsockname(listener, (struct sockaddr*)&addr, &len) < 0) test_fail("getsockname");

  /* The client closes first; the server answers with its own FIN and, once that is
   * acknowledged, its socket is CLOSE while the fd stays open. */
  int client = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(client, (struct sockaddr*)&addr, len) < 0) test_fail("connect");
  int finished = accept(listener, NULL, NULL);
  if (finished < 0) test_fail("accept");
  struct sockaddr_in local;
  socklen_t local_len = sizeof local;
  if (getsockname(finished, (struct sockaddr*)&local, &local_len) < 0) test_fail("getsockname");
  close(client);
  char c;
  if (read(finished, &c, 1) != 0) test_fail("no end of file from the client");
  if (shutdown(finished, SHUT_WR) < 0) test_fail("shutdown");
  for (int i = 0; i < 5000 && test_tcp_state(finished) != TCP_CLOSE; ++i) usleep(1000);
  if (test_tcp_state(finished) != TCP_CLOSE) test_fail("the connection did not reach CLOSE");

  test_ready();
  test_wait_for_sigterm();

  if (test_tcp_state(finished) != TCP_CLOSE) test_fail("the finished connection is not CLOSE");
  struct sockaddr_in now;
  socklen_t now_len = sizeof now;
  if (getsockname(finished, (struct sockaddr*)&now, &now_len) < 0 || now_len != local_len ||
      memcmp(&now, &local, local_len) != 0)
    test_fail("the finished connection lost its address");
  if (read(finished, &c, 1) > 0) test_fail("a finished connection gave data");
  int again = socket(AF_INET, SOCK_STREAM, 0);
  if (connect(again, (struct sockaddr*)&addr, len) < 0) test_fail("connect after restore");
  int conn = accept(listener, NULL, NULL);
  if (conn < 0) test_fail("accept after restore");
  if (write(again, "ping", 4) != 4) test_fail("write");
  char buf[4];
  if (read(conn, buf, 4) != 4 || memcmp(buf, "ping", 4) != 0) test_fail("read");
  test_pass();
}
