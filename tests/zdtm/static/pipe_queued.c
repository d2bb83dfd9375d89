/* A pipe between parent and child with bytes queued in it: the child wrote them and keeps the
 * write end; the parent holds the read end. The dump must peek them, not consume them: after
 * restore the parent reads exactly those bytes, then (the child gone) end of file. A second pipe,
 * enlarged, holds more than the default 64 KiB in the other direction. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <sys/wait.h>

#include "zdtm_files.h"

#define SMALL "queued between parent and child"
#define BIG_SIZE (200 * 1024)

static char pattern(long i) {
  return (char)(i % 251);
}

int main(int argc, char** argv) {
  zf_init(argc, argv);
  int down[2], up[2], sync_pipe[2];
  zf_setup(pipe(down) == 0 && pipe(up) == 0 && pipe(sync_pipe) == 0, "pipe");
  zf_setup(fcntl(down[1], F_SETPIPE_SZ, 256 * 1024) >= BIG_SIZE, "F_SETPIPE_SZ");
  pid_t child = fork();
  zf_setup(child >= 0, "fork");
  if (child == 0) {
    close(up[0]);
    close(down[1]);
    close(sync_pipe[0]);
    zf_setup(write(up[1], SMALL, sizeof SMALL - 1) == sizeof SMALL - 1, "child write");
    close(sync_pipe[1]);
    test_wait_for_sigterm();
    /* The parent's bytes are still queued for us, untouched by the dump. */
    /* All of it was queued before READY: non-blocking, a missing byte is a failure, not a hang. */
    if (fcntl(down[0], F_SETFL, O_NONBLOCK) != 0) _exit(4);
    static char big[BIG_SIZE];
    size_t done = 0;
    while (done < BIG_SIZE) {
      ssize_t n = read(down[0], big + done, BIG_SIZE - done);
      if (n <= 0) _exit(2);
      done += (size_t)n;
    }
    for (long i = 0; i < BIG_SIZE; i++)
      if (big[i] != pattern(i)) _exit(3);
    _exit(0);
  }
  close(up[1]);
  close(down[0]);
  close(sync_pipe[1]);
  char c;
  zf_setup(read(sync_pipe[0], &c, 1) == 0, "wait for the child");
  close(sync_pipe[0]);
  static char big[BIG_SIZE];
  for (long i = 0; i < BIG_SIZE; i++) big[i] = pattern(i);
  zf_setup(fcntl(down[1], F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK");
  zf_setup(write(down[1], big, BIG_SIZE) == BIG_SIZE, "parent write");

  zf_ready_and_wait();

  zf_check(fcntl(up[0], F_SETFL, O_NONBLOCK) == 0, "O_NONBLOCK on the read end");
  char buf[256] = {0};
  ssize_t n = read(up[0], buf, sizeof buf);
  zf_check(n == sizeof SMALL - 1 && memcmp(buf, SMALL, sizeof SMALL - 1) == 0,
           "queued bytes: got %zd bytes \"%s\"", n, buf);
  zf_check(read(up[0], buf, sizeof buf) < 0 && errno == EAGAIN, "nothing more queued");
  zf_check(fcntl(down[1], F_GETPIPE_SZ) >= BIG_SIZE, "pipe size kept");
  zf_check((fcntl(down[1], F_GETFL) & O_NONBLOCK) != 0, "O_NONBLOCK kept");
  kill(child, SIGTERM);
  int status = 0;
  zf_check(waitpid(child, &status, 0) == child, "waitpid");
  zf_check(WIFEXITED(status) && WEXITSTATUS(status) == 0,
           "child read the big queued buffer intact (status %d)", status);
  zf_check(fcntl(up[0], F_SETFL, 0) == 0 && read(up[0], buf, sizeof buf) == 0,
           "end of file once the child is gone: no stray write end");
  zf_finish();
}
