/* A memfd held as an fd (not mapped): name, content, size, seals, offset; plus an O_PATH fd and
 * a directory fd with its getdents position. */
#define _GNU_SOURCE
#include <dirent.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/syscall.h>

#include "zdtm_files.h"

#define CONTENT "memfd content kept across restore"

int main(int argc, char** argv) {
  zf_init(argc, argv);
  int memfd = memfd_create("zdtm-memfd", MFD_ALLOW_SEALING);
  zf_setup(memfd >= 0, "memfd_create");
  zf_setup(write(memfd, CONTENT, sizeof CONTENT - 1) == sizeof CONTENT - 1, "write");
  zf_setup(fcntl(memfd, F_ADD_SEALS, F_SEAL_SHRINK | F_SEAL_GROW) == 0, "F_ADD_SEALS");
  zf_setup(lseek(memfd, 6, SEEK_SET) == 6, "lseek");
  struct stat memfd_st;
  zf_setup(fstat(memfd, &memfd_st) == 0, "fstat");

  char dir_path[8192], file_path[8300];
  zf_scratch_path(dir_path, sizeof dir_path, "dir");
  zf_setup(mkdir(dir_path, 0700) == 0, "mkdir");
  for (int i = 0; i < 40; i++) {
    snprintf(file_path, sizeof file_path, "%s/entry-%02d", dir_path, i);
    int f = open(file_path, O_WRONLY | O_CREAT, 0600);
    zf_setup(f >= 0, "create entry");
    close(f);
  }
  int path_fd = open(file_path, O_PATH);
  int dir_fd = open(dir_path, O_RDONLY | O_DIRECTORY);
  zf_setup(path_fd >= 0 && dir_fd >= 0, "open");
  /* Read part of the directory: the rest must come after restore, each entry once. */
  char buf[4096];
  long n = syscall(SYS_getdents64, dir_fd, buf, 256);
  zf_setup(n > 0, "getdents64");
  int seen_before = 0;
  for (long off = 0; off < n;) {
    struct dirent64* e = (struct dirent64*)(buf + off);
    if (strncmp(e->d_name, "entry-", 6) == 0) seen_before++;
    off += e->d_reclen;
  }

  zf_ready_and_wait();

  struct stat st;
  zf_check(fstat(memfd, &st) == 0 && st.st_size == sizeof CONTENT - 1, "memfd size");
  zf_check(fcntl(memfd, F_GET_SEALS) == (F_SEAL_SHRINK | F_SEAL_GROW), "memfd seals");
  zf_check(lseek(memfd, 0, SEEK_CUR) == 6, "memfd offset");
  char got[64] = {0};
  zf_check(read(memfd, got, sizeof got) == sizeof CONTENT - 7 && strcmp(got, CONTENT + 6) == 0,
           "memfd content \"%s\"", got);
  char link[256] = {0}, proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", memfd);
  zf_check(
      readlink(proc, link, sizeof link - 1) > 0 && strcmp(link, "/memfd:zdtm-memfd (deleted)") == 0,
      "memfd link %s", link);
  zf_check(ftruncate(memfd, 1) < 0 && errno == EPERM, "F_SEAL_SHRINK enforced");

  zf_check((fcntl(path_fd, F_GETFL) & O_PATH) != 0, "O_PATH kept");
  struct stat path_st, file_st;
  zf_check(fstat(path_fd, &path_st) == 0 && stat(file_path, &file_st) == 0 &&
               path_st.st_ino == file_st.st_ino,
           "O_PATH fd names the file");

  int seen_after = 0;
  for (;;) {
    n = syscall(SYS_getdents64, dir_fd, buf, sizeof buf);
    if (n <= 0) break;
    for (long off = 0; off < n;) {
      struct dirent64* e = (struct dirent64*)(buf + off);
      if (strncmp(e->d_name, "entry-", 6) == 0) seen_after++;
      off += e->d_reclen;
    }
  }
  zf_check(seen_before > 0 && seen_before + seen_after == 40,
           "directory position: %d entries before, %d after, of 40", seen_before, seen_after);
  zf_finish();
}
