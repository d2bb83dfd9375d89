/* A file deleted while open: content (with a hole), size, mode, offset, still deleted. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <sys/stat.h>

#include "zdtm_files.h"

#define HEAD (300 * 1024)
#define TAIL_AT (4 << 20)

static char pattern(long i) {
  return (char)('a' + (i * 7) % 26);
}

int main(int argc, char** argv) {
  zf_init(argc, argv);
  char path[8192];
  zf_scratch_path(path, sizeof path, "file_deleted");
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
  zf_setup(fd >= 0, "open");
  static char buf[HEAD];
  for (long i = 0; i < HEAD; i++) buf[i] = pattern(i);
  zf_setup(write(fd, buf, HEAD) == HEAD, "write");
  zf_setup(pwrite(fd, "tail", 4, TAIL_AT) == 4, "pwrite");
  zf_setup(unlink(path) == 0, "unlink");
  zf_setup(lseek(fd, 1234, SEEK_SET) == 1234, "lseek");

  zf_ready_and_wait();

  struct stat st;
  zf_check(fstat(fd, &st) == 0, "fstat");
  zf_check(st.st_nlink == 0, "still deleted (nlink %ld)", (long)st.st_nlink);
  zf_check(st.st_size == TAIL_AT + 4, "size %ld", (long)st.st_size);
  zf_check((st.st_mode & 07777) == 0640, "mode %o", st.st_mode & 07777);
  zf_check(lseek(fd, 0, SEEK_CUR) == 1234, "offset");
  static char got[HEAD];
  zf_check(pread(fd, got, HEAD, 0) == HEAD, "read head");
  zf_check(memcmp(got, buf, HEAD) == 0, "head content");
  char tail[5] = {0};
  zf_check(pread(fd, tail, 4, TAIL_AT) == 4 && strcmp(tail, "tail") == 0, "tail content");
  char zero = 1;
  zf_check(pread(fd, &zero, 1, TAIL_AT - 1) == 1 && zero == 0, "hole reads as zero");
  char link[8300] = {0}, proc[64];
  snprintf(proc, sizeof proc, "/proc/self/fd/%d", fd);
  zf_check(readlink(proc, link, sizeof link - 1) > 0 && strstr(link, " (deleted)") != NULL,
           "link %s", link);
  zf_check(access(path, F_OK) != 0, "no file left at %s", path);
  zf_finish();
}
