/* A unix stream listener at a path (next to the result file) and one at an abstract name keep
 * their names: after restore each accepts a new connection from the process itself. */
#define _GNU_SOURCE
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "zdtmtst.h"

static socklen_t make_address(struct sockaddr_un* addr, const char* name, int abstract) {
  memset(addr, 0, sizeof *addr);
  addr->sun_family = AF_UNIX;
  size_t len = strlen(name);
  if (abstract) {
    memcpy(addr->sun_path + 1, name, len);
    len++;
  } else {
    memcpy(addr->sun_path, name, len);
  }
  return (socklen_t)(offsetof(struct sockaddr_un, sun_path) + len);
}

static void check(int s, const char* name, int abstract) {
  struct sockaddr_un addr;
  socklen_t len = make_address(&addr, name, abstract);
  int client = socket(AF_UNIX, SOCK_STREAM, 0);
  if (connect(client, (struct sockaddr*)&addr, len) < 0) test_fail("connect to %s", name);
  int conn = accept(s, NULL, NULL);
  if (conn < 0) test_fail("accept on %s", name);
  if (write(conn, "hi", 2) != 2) test_fail("write");
  char buf[2];
  if (read(client, buf, 2) != 2 || memcmp(buf, "hi", 2) != 0) test_fail("read from %s", name);
  close(conn);
  close(client);
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  char path[108], abstract_name[64];
  snprintf(path, sizeof path, "/tmp/zdtm-unix-listen-%d.sock", getpid());
  snprintf(abstract_name, sizeof abstract_name, "zdtm-unix-listen-%d", getpid());
  unlink(path);
  int named = socket(AF_UNIX, SOCK_STREAM, 0), abstract = socket(AF_UNIX, SOCK_STREAM, 0);
  struct sockaddr_un addr;
  socklen_t len = make_address(&addr, path, 0);
  if (bind(named, (struct sockaddr*)&addr, len) < 0 || listen(named, 8) < 0)
    test_fail("bind/listen %s", path);
  len = make_address(&addr, abstract_name, 1);
  if (bind(abstract, (struct sockaddr*)&addr, len) < 0 || listen(abstract, 8) < 0)
    test_fail("bind/listen @%s", abstract_name);
  test_ready();
  test_wait_for_sigterm();
  check(named, path, 0);
  check(abstract, abstract_name, 1);
  unlink(path);
  test_pass();
}
