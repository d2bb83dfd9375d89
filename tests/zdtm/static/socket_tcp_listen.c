/* TCP listeners (IPv4 and IPv6 loopback, kernel-chosen high ports) keep their port, backlog
 * behaviour and options: after restore each accepts a new connection from the process itself. */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

#include "zdtmtst.h"

static int listener(int family, socklen_t* len, struct sockaddr_storage* addr) {
  int s = socket(family, SOCK_STREAM, 0);
  if (s < 0) test_fail("socket");
  int one = 1;
  setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  setsockopt(s, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  memset(addr, 0, sizeof *addr);
  if (family == AF_INET) {
    struct sockaddr_in* in = (struct sockaddr_in*)addr;
    in->sin_family = AF_INET;
    in->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    *len = sizeof *in;
  } else {
    setsockopt(s, IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
    struct sockaddr_in6* in6 = (struct sockaddr_in6*)addr;
    in6->sin6_family = AF_INET6;
    in6->sin6_addr = in6addr_loopback;
    *len = sizeof *in6;
  }
  if (bind(s, (struct sockaddr*)addr, *len) < 0) test_fail("bind");
  if (listen(s, 16) < 0) test_fail("listen");
  if (getsockname(s, (struct sockaddr*)addr, len) < 0) test_fail("getsockname");
  return s;
}

static void check(int s, const struct sockaddr_storage* addr, socklen_t len, const char* what) {
  struct sockaddr_storage now;
  socklen_t now_len = sizeof now;
  if (getsockname(s, (struct sockaddr*)&now, &now_len) < 0 || now_len != len ||
      memcmp(&now, addr, len) != 0)
    test_fail("%s: the bound address changed", what);
  int v = 0;
  socklen_t vlen = sizeof v;
  if (getsockopt(s, SOL_SOCKET, SO_ACCEPTCONN, &v, &vlen) < 0 || v != 1)
    test_fail("%s: not listening", what);
  vlen = sizeof v;
  if (getsockopt(s, IPPROTO_TCP, TCP_NODELAY, &v, &vlen) < 0 || v != 1)
    test_fail("%s: TCP_NODELAY lost", what);
  int client = socket(addr->ss_family, SOCK_STREAM, 0);
  if (connect(client, (const struct sockaddr*)addr, len) < 0) test_fail("%s: connect", what);
  int conn = accept(s, NULL, NULL);
  if (conn < 0) test_fail("%s: accept", what);
  if (write(client, "ping", 4) != 4) test_fail("%s: write", what);
  char buf[4];
  if (read(conn, buf, 4) != 4 || memcmp(buf, "ping", 4) != 0) test_fail("%s: read", what);
  close(conn);
  close(client);
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  struct sockaddr_storage a4, a6;
  socklen_t l4, l6;
  int s4 = listener(AF_INET, &l4, &a4);
  int s6 = listener(AF_INET6, &l6, &a6);
  fcntl(s4, F_SETFL, O_NONBLOCK);
  test_ready();
  test_wait_for_sigterm();
  if (!(fcntl(s4, F_GETFL) & O_NONBLOCK)) test_fail("O_NONBLOCK lost");
  fcntl(s4, F_SETFL, 0);
  check(s4, &a4, l4, "IPv4 listener");
  check(s6, &a6, l6, "IPv6 listener");
  test_pass();
}
