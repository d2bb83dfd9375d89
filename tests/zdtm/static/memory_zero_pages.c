/* Pages written with zeros are not stored by a dump into a directory (docs/IMAGE-FORMAT.md) and
 * must come back as zeros: a 96 MiB region (several page images) where every fourth page and a
 * whole 8 MiB stretch were written with zeros, the other pages with random data, and a page
 * written with data then zeroed again. After restore the zero pages read zero and the data pages
 * hold their data. */
#define _GNU_SOURCE
#include <signal.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "zdtmtst.h"

#define PAGE 4096ul
#define SIZE (96ul << 20)
#define PAGES (SIZE / PAGE)
#define ZERO_STRETCH_FIRST (40ul << 20) / PAGE
#define ZERO_STRETCH_PAGES ((8ul << 20) / PAGE)

static int page_is_zero_by_design(size_t page) {
  return page % 4 == 0 ||
         (page >= ZERO_STRETCH_FIRST && page < ZERO_STRETCH_FIRST + ZERO_STRETCH_PAGES);
}

int main(int argc, char** argv) {
  test_init(argc, argv);
  unsigned char* region =
      mmap(NULL, SIZE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (region == MAP_FAILED) test_fail("mmap");
  for (size_t p = 0; p < PAGES; ++p) {
    if (page_is_zero_by_design(p))
      memset(region + p * PAGE, 0, PAGE); /* touched: a present page holding zeros */
    else
      test_fill_random(region + p * PAGE, PAGE, p);
  }
  /* Data that was there once and was zeroed again. */
  test_fill_random(region + 8 * PAGE, PAGE, 99);
  memset(region + 8 * PAGE, 0, PAGE);
  test_ready();
  test_wait_for_sigterm();
  static const unsigned char zero[PAGE];
  for (size_t p = 0; p < PAGES; ++p) {
    if (page_is_zero_by_design(p)) {
      if (memcmp(region + p * PAGE, zero, PAGE) != 0) test_fail("zero page %zu is not zero", p);
    } else {
      size_t bad = test_check_random(region + p * PAGE, PAGE, p);
      if (bad != (size_t)-1) test_fail("page %zu differs at offset %zu", p, bad);
    }
  }
  test_pass();
}
