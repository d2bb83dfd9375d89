/* Character devices: /dev/null, zero, full, random, urandom with their flags. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>

#include "zdtm_files.h"

struct dev {
  const char* path;
  int flags;
  unsigned minor;
  int fd;
};

int main(int argc, char** argv) {
  zf_init(argc, argv);
  struct dev devs[] = {
      {"/dev/null", O_RDWR, 3, -1},
      {"/dev/zero", O_RDONLY, 5, -1},
      {"/dev/full", O_WRONLY | O_NONBLOCK, 7, -1},
      {"/dev/random", O_RDONLY | O_CLOEXEC, 8, -1},
      {"/dev/urandom", O_RDONLY, 9, -1},
  };
  int n_devs = (int)(sizeof devs / sizeof devs[0]);
  for (int i = 0; i < n_devs; i++) {
    devs[i].fd = open(devs[i].path, devs[i].flags);
    zf_setup(devs[i].fd >= 0, devs[i].path);
  }

  zf_ready_and_wait();

  for (int i = 0; i < n_devs; i++) {
    struct stat st;
    int fd = devs[i].fd;
    zf_check(fstat(fd, &st) == 0 && S_ISCHR(st.st_mode) && major(st.st_rdev) == 1 &&
                 minor(st.st_rdev) == devs[i].minor,
             "%s: device number", devs[i].path);
    int fl = fcntl(fd, F_GETFL);
    zf_check((fl & O_ACCMODE) == (devs[i].flags & O_ACCMODE), "%s: access mode", devs[i].path);
    zf_check((fl & O_NONBLOCK) == (devs[i].flags & O_NONBLOCK), "%s: O_NONBLOCK", devs[i].path);
    zf_check(!(fcntl(fd, F_GETFD) & FD_CLOEXEC) == !(devs[i].flags & O_CLOEXEC),
             "%s: close-on-exec", devs[i].path);
  }
  char buf[16];
  memset(buf, 1, sizeof buf);
  zf_check(read(devs[1].fd, buf, sizeof buf) == sizeof buf && buf[0] == 0 && buf[15] == 0,
           "/dev/zero reads zeros");
  zf_check(write(devs[2].fd, "x", 1) < 0 && errno == ENOSPC, "/dev/full gives ENOSPC");
  zf_check(write(devs[0].fd, "x", 1) == 1, "/dev/null takes writes");
  zf_check(read(devs[4].fd, buf, sizeof buf) == sizeof buf, "/dev/urandom reads");
  zf_finish();
}
