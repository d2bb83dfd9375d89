/* Memory of every kind a process can hold, checked after restore: private anonymous memory with
 * random data, a big 64 MiB region, shared anonymous memory between parent and child (a write
 * after restore is seen by the other), a private file mapping with a COW-modified page, an
 * mprotect'ed region, guard pages, a PROT_NONE modified page of a file mapping, madvise flags
 * (DONTFORK, WIPEONFORK, HUGEPAGE), mlock, and the brk heap grown with sbrk. */
#define _GNU_SOURCE
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include "zdtmtst.h"

#define PAGE 4096
#define BIG (64ul << 20)

static int has_vmflag(void* addr, const char* flag) {
  FILE* f = fopen("/proc/self/smaps", "r");
  if (!f) return 0;
  char line[512];
  int in = 0, found = 0;
  unsigned long want = (unsigned long)addr;
  while (fgets(line, sizeof line, f)) {
    unsigned long start, end;
    if (sscanf(line, "%lx-%lx ", &start, &end) == 2 && strchr(line, '-') < strchr(line, ' ')) {
      in = want >= start && want < end;
      continue;
    }
    if (in && strncmp(line, "VmFlags:", 8) == 0) {
      char pattern[8];
      snprintf(pattern, sizeof pattern, " %s", flag);
      found = strstr(line, pattern) != NULL;
      break;
    }
  }
  fclose(f);
  return found;
}

static int prot_of(void* addr) {
  FILE* f = fopen("/proc/self/maps", "r");
  char line[512];
  int prot = -1;
  while (f && fgets(line, sizeof line, f)) {
    unsigned long start, end;
    char perms[8];
    if (sscanf(line, "%lx-%lx %7s", &start, &end, perms) == 3 && (unsigned long)addr >= start &&
        (unsigned long)addr < end) {
      prot = (perms[0] == 'r' ? PROT_READ : 0) | (perms[1] == 'w' ? PROT_WRITE : 0) |
             (perms[2] == 'x' ? PROT_EXEC : 0);
      break;
    }
  }
  if (f) fclose(f);
  return prot;
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  /* Private anonymous, partly touched (the untouched half must stay zero). */
  size_t small = 1 << 20;
  unsigned char* priv =
      mmap(NULL, small, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  test_fill_random(priv, small / 2, 1);
  /* Big region: random data with a zero-filled stretch in the middle. */
  unsigned char* big = mmap(NULL, BIG, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  test_fill_random(big, BIG, 2);
  memset(big + BIG / 4, 0, BIG / 4);
  /* Shared anonymous between parent and child. */
  volatile unsigned long* shared =
      mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
  shared[0] = 0x5a5a;
  /* Private file mapping (of our own executable, which outlives us) with one page modified (COW)
   * and one left as in the file. */
  int fd = open("/proc/self/exe", O_RDONLY);
  unsigned char filedata[2 * PAGE];
  if (pread(fd, filedata, sizeof filedata, 0) != sizeof filedata) test_fail("read of exe");
  unsigned char* fmap = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
  close(fd);
  memset(fmap, 0xab, 100);
  /* Read-only region with data, and guard pages (PROT_NONE) around a region. */
  unsigned char* ro =
      mmap(NULL, 3 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  test_fill_random(ro + PAGE, PAGE, 4);
  mprotect(ro, PAGE, PROT_NONE);
  mprotect(ro + PAGE, PAGE, PROT_READ);
  mprotect(ro + 2 * PAGE, PAGE, PROT_NONE);
  /* A modified page of a private file mapping, then made PROT_NONE: only /proc/PID/mem reads it,
   * and for a mapping that is not plain anonymous memory that read waits for the VmFlags. */
  int exe = open("/proc/self/exe", O_RDONLY);
  unsigned char* hidden = mmap(NULL, PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, exe, 0);
  close(exe);
  if (hidden == MAP_FAILED) test_fail("mmap of the exe");
  test_fill_random(hidden, PAGE, 6);
  mprotect(hidden, PAGE, PROT_NONE);
  /* madvise flags and mlock. */
  unsigned char* adv =
      mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  madvise(adv, 2 * PAGE, MADV_DONTFORK);
  madvise(adv + 2 * PAGE, 2 * PAGE, MADV_WIPEONFORK);
  madvise(adv + 4 * PAGE, 2 * PAGE, MADV_HUGEPAGE);
  if (mlock(adv + 6 * PAGE, 2 * PAGE) != 0) test_fail("mlock");
  adv[6 * PAGE] = 77;
  /* brk heap. */
  unsigned char* heap = sbrk(3 * PAGE + 100);
  test_fill_random(heap, 3 * PAGE + 100, 5);
  void* brk_before = sbrk(0);

  int up[2], down[2];
  if (pipe(up) || pipe(down)) test_fail("pipe");
  pid_t child = fork();
  if (child == 0) {
    /* Waits for the parent's word, then checks the shared page and answers through it. */
    close(down[1]);
    close(up[0]);
    char c;
    if (read(down[0], &c, 1) != 1) _exit(1);
    if (shared[1] != 0x1111) _exit(2);
    shared[1] = 0x2222;
    if (write(up[1], "x", 1) != 1) _exit(3);
    _exit(0);
  }
  test_ready();
  test_wait_for_sigterm();

  /* Before anything mallocs (stdio grows the heap). */
  if (sbrk(0) != brk_before) test_fail("brk moved: %p vs %p", sbrk(0), brk_before);
  if (syscall(SYS_brk, 0) != (long)brk_before)
    test_fail("kernel brk differs: %lx vs %p", syscall(SYS_brk, 0), brk_before);
  size_t bad;
  if ((bad = test_check_random(priv, small / 2, 1)) != (size_t)-1)
    test_fail("private differs at %zu", bad);
  for (size_t i = small / 2; i < small; i++)
    if (priv[i]) test_fail("untouched private memory not zero at %zu", i);
  for (size_t i = BIG / 4; i < BIG / 2; i++)
    if (big[i]) test_fail("zero stretch not zero at %zu", i);
  unsigned char* expected = malloc(BIG);
  test_fill_random(expected, BIG, 2);
  memset(expected + BIG / 4, 0, BIG / 4);
  if (memcmp(expected, big, BIG) != 0) test_fail("big region differs");
  free(expected);
  if (shared[0] != 0x5a5a) test_fail("shared memory lost its value");
  for (int i = 0; i < 100; i++)
    if (fmap[i] != 0xab) test_fail("COW page of the file mapping lost");
  if (memcmp(fmap + 100, filedata + 100, 2 * PAGE - 100) != 0) test_fail("file mapping differs");
  if (test_check_random(ro + PAGE, PAGE, 4) != (size_t)-1) test_fail("read-only region differs");
  if (prot_of(ro) != 0 || prot_of(ro + PAGE) != PROT_READ || prot_of(ro + 2 * PAGE) != 0)
    test_fail("protections not restored: %d %d %d", prot_of(ro), prot_of(ro + PAGE),
              prot_of(ro + 2 * PAGE));
  if (prot_of(hidden) != 0) test_fail("PROT_NONE of the file mapping's page lost");
  mprotect(hidden, PAGE, PROT_READ);
  if (test_check_random(hidden, PAGE, 6) != (size_t)-1)
    test_fail("PROT_NONE page of a private file mapping differs");
  if (!has_vmflag(adv, "dc")) test_fail("MADV_DONTFORK lost");
  if (!has_vmflag(adv + 2 * PAGE, "wf")) test_fail("MADV_WIPEONFORK lost");
  if (!has_vmflag(adv + 4 * PAGE, "hg")) test_fail("MADV_HUGEPAGE lost");
  if (!has_vmflag(adv + 6 * PAGE, "lo")) test_fail("mlock lost");
  if (adv[6 * PAGE] != 77) test_fail("locked page lost its value");
  if (test_check_random(heap, 3 * PAGE + 100, 5) != (size_t)-1) test_fail("heap differs");
  unsigned char* more = sbrk(PAGE);
  if (more == (void*)-1) test_fail("sbrk after restore failed");
  more[0] = 1;
  /* Shared memory still shared with the child: a write here is seen there and back. */
  shared[1] = 0x1111;
  if (write(down[1], "go", 1) != 1) test_fail("pipe to child");
  char c;
  if (read(up[0], &c, 1) != 1) test_fail("child did not answer");
  int status;
  if (waitpid(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status) != 0)
    test_fail("child failed: status %d", status);
  if (shared[1] != 0x2222) test_fail("child's write to shared memory not seen");
  test_pass();
}
