// An address in another process's address space. Never dereferenced here; only passed to
// process_vm_readv/writev, /proc/PID/mem, ptrace and injected syscalls.
#pragma once

#include <compare>
#include <cstdint>
#include <string>

namespace cryo::ckpt {

class RemoteAddr {
 public:
  constexpr RemoteAddr() = default;
  constexpr explicit RemoteAddr(uint64_t value) : value_(value) {}
  constexpr uint64_t value() const { return value_; }
  constexpr RemoteAddr operator+(uint64_t offset) const { return RemoteAddr(value_ + offset); }
  constexpr uint64_t operator-(RemoteAddr other) const { return value_ - other.value_; }
  constexpr auto operator<=>(const RemoteAddr&) const = default;
  constexpr bool is_null() const { return value_ == 0; }
  std::string hex() const;

 private:
  uint64_t value_ = 0;
};

}  // namespace cryo::ckpt
