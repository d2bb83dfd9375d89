// CPU facts that decide whether an image's register state can be restored here.
#pragma once

#include <cstddef>
#include <cstdint>

namespace cryo::ckpt::x86_64 {

// XCR0: the xsave features the kernel enabled (the layout of NT_X86_XSTATE).
uint64_t xcr0();
// Size of the xsave area for the enabled features (CPUID 0xd, subleaf 0, ebx).
size_t xstate_size();

}  // namespace cryo::ckpt::x86_64
