/* Files deleted while mapped (no fd left): a private mapping with a page changed since (COW) and
 * pages still from the file, and a shared writable mapping of another deleted file. Their content
 * must come back from the image, and the mappings must still name deleted files. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>

#include "zdtm_files.h"

#define PAGES 8
#define PAGE 4096

static int maps_line_has(void* addr, const char* needle) {
  FILE* maps = fopen("/proc/self/maps", "r");
  if (!maps) return 0;
  char line[1024];
  int found = 0;
  while (fgets(line, sizeof line, maps)) {
    unsigned long start;
    if (sscanf(line, "%lx-", &start) == 1 && start == (unsigned long)addr) {
      found = strstr(line, needle) != NULL;
      break;
    }
  }
  fclose(maps);
  return found;
}

static unsigned char* map_deleted(const char* name, int prot, int flags, uint64_t seed) {
  char path[8300];
  zf_scratch_path(path, sizeof path, name);
  int fd = open(path, O_RDWR | O_CREAT | O_TRUNC, 0640);
  zf_setup(fd >= 0, "create");
  static unsigned char content[PAGES * PAGE];
  test_fill_random(content, sizeof content, seed);
  zf_setup(write(fd, content, sizeof content) == sizeof content, "write");
  unsigned char* map = mmap(NULL, sizeof content, prot, flags, fd, 0);
  zf_setup(map != MAP_FAILED, "mmap");
  zf_setup(unlink(path) == 0, "unlink");
  close(fd);
  return map;
}

int main(int argc, char** argv) {
  zf_init(argc, argv);
  unsigned char* priv = map_deleted("private", PROT_READ | PROT_WRITE, MAP_PRIVATE, 11);
  unsigned char* shared = map_deleted("shared", PROT_READ | PROT_WRITE, MAP_SHARED, 22);
  memset(priv + 2 * PAGE, 0x5a, PAGE); /* a private copy of page 2 */
  memcpy(shared + 3 * PAGE, "written through the shared mapping", 34);

  zf_ready_and_wait();

  static unsigned char expected[PAGES * PAGE];
  test_fill_random(expected, sizeof expected, 11);
  memset(expected + 2 * PAGE, 0x5a, PAGE);
  zf_check(memcmp(priv, expected, sizeof expected) == 0, "private mapping content");
  test_fill_random(expected, sizeof expected, 22);
  memcpy(expected + 3 * PAGE, "written through the shared mapping", 34);
  zf_check(memcmp(shared, expected, sizeof expected) == 0, "shared mapping content");
  zf_check(maps_line_has(priv, "(deleted)"), "private mapping names a deleted file");
  zf_check(maps_line_has(shared, "(deleted)"), "shared mapping names a deleted file");
  /* Still writable and still backed by a file. */
  shared[0] = 0x77;
  zf_check(msync(shared, PAGE, MS_SYNC) == 0 && shared[0] == 0x77, "shared mapping writable");
  zf_finish();
}
