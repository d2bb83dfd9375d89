// Shared libraries loaded on first use. libarchive, libnftables and libcrypto (with the ~15
// libraries they pull in: libxml2, ICU, nettle, gmp, jansson...) cost most of the CLI's start in
// the dynamic loader, and most commands (ps, inspect, checkpoint and restore in place...) never
// call them. They are not linked: for each function they export, the build generates a stub of
// the same name (cmake/LazyLibraries.cmake) whose first call dlopen()s the library, looks the
// function up and jumps to it; later calls jump straight to it. Callers use the libraries'
// ordinary headers and calls.
#pragma once

#include <string>

namespace cryo {

// Loads the library now (a no-op when loaded already). Throws an Error naming the library, what
// needed it and the loader's message when it cannot be loaded (not installed, broken...).
void load_lazy_library(const std::string& soname, const std::string& needed_for);

// Whether the library is loaded in this process (tests).
bool lazy_library_loaded(const std::string& soname);

}  // namespace cryo

// Called by the generated stubs on the first call of a function: loads its library, stores the
// function's address in *slot and returns it. `library_and_symbol` is "soname\0symbol". Throws
// (the stubs' trampoline has unwind information, so the exception reaches the C++ caller).
extern "C" void* cryo_lazy_resolve(void** slot, const char* library_and_symbol);
