#include "common/lazy_library.h"

#include <dlfcn.h>

#include <atomic>
#include <cstring>
#include <map>
#include <mutex>

#include "common/error.h"

namespace cryo {

namespace {

std::mutex& libraries_mutex() {
  static std::mutex mutex;
  return mutex;
}

// soname -> handle; handles are never closed (the stubs keep addresses into them).
std::map<std::string, void*>& libraries() {
  static std::map<std::string, void*> handles;
  return handles;
}

void* load_locked(const std::string& soname, const std::string& needed_for) {
  auto it = libraries().find(soname);
  if (it != libraries().end()) return it->second;
  void* handle = ::dlopen(soname.c_str(), RTLD_NOW | RTLD_LOCAL);
  if (!handle) {
    const char* message = ::dlerror();
    throw Error("cannot load the shared library " + soname + " (needed for " + needed_for +
                "): " + (message ? message : "unknown dlopen error") +
                "; is its Debian package installed (scripts/install-deps.sh)?");
  }
  libraries().emplace(soname, handle);
  return handle;
}

}  // namespace

void load_lazy_library(const std::string& soname, const std::string& needed_for) {
  std::lock_guard<std::mutex> lock(libraries_mutex());
  load_locked(soname, needed_for);
}

bool lazy_library_loaded(const std::string& soname) {
  std::lock_guard<std::mutex> lock(libraries_mutex());
  return libraries().count(soname) != 0;
}

}  // namespace cryo

extern "C" void* cryo_lazy_resolve(void** slot, const char* library_and_symbol) {
  std::string soname = library_and_symbol;
  const char* symbol = library_and_symbol + soname.size() + 1;
  std::lock_guard<std::mutex> lock(cryo::libraries_mutex());
  void* handle = cryo::load_locked(soname, symbol);
  ::dlerror();
  void* address = ::dlsym(handle, symbol);
  if (!address) {
    const char* message = ::dlerror();
    throw cryo::Error("the shared library " + soname + " has no function " + symbol + ": " +
                      (message ? message : "dlsym returned NULL"));
  }
  // Other threads read the slot without the lock: one aligned 8-byte store, seen whole or not.
  __atomic_store_n(slot, address, __ATOMIC_RELEASE);
  return address;
}
