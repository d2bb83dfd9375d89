#include "checkpoint/arch/x86_64/cpu.h"

#include <cpuid.h>

namespace cryo::ckpt::x86_64 {

uint64_t xcr0() {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
  __cpuid(1, eax, ebx, ecx, edx);
  if (!(ecx & (1u << 27))) return 0;  // no OSXSAVE: xgetbv would fault
  uint32_t lo = 0, hi = 0;
  asm volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
  return (uint64_t{hi} << 32) | lo;
}

size_t xstate_size() {
  uint32_t eax = 0, ebx = 0, ecx = 0, edx = 0;
  if (!__get_cpuid_count(0xd, 0, &eax, &ebx, &ecx, &edx)) return 512 + 64;
  return ebx;
}

}  // namespace cryo::ckpt::x86_64
