// Errors carry their context from the failing syscall up to the one message the user sees:
//   "checkpoint of container web: dumping pid 42: fd 7 (/tmp/x): pidfd_getfd: Operation not
//   permitted"
// Each layer that knows something about *what* was being done adds it with Error::add_context or
// with_context(); the innermost layer names the syscall and errno text.
#pragma once

#include <cerrno>
#include <stdexcept>
#include <string>
#include <string_view>
#include <utility>

namespace cryo {

class Error : public std::runtime_error {
 public:
  explicit Error(std::string message, int sys_errno = 0)
      : std::runtime_error(message), message_(std::move(message)), errno_(sys_errno) {}

  const char* what() const noexcept override { return message_.c_str(); }
  // errno of the syscall at the root of the error, 0 when it was not a syscall failure.
  int sys_errno() const noexcept { return errno_; }

  // Prepends an outer layer of context: "outer: inner".
  void add_context(std::string_view outer) { message_ = std::string(outer) + ": " + message_; }

 private:
  std::string message_;
  int errno_;
};

// Error for a failed syscall or library call that set errno: "what: strerror(errno)".
class SysError : public Error {
 public:
  SysError(std::string_view what, int err);
};

// Throws SysError with the current errno.
[[noreturn]] void throw_errno(std::string_view what);
[[noreturn]] void throw_errno(std::string_view what, int err);

// Returns the result of a raw syscall wrapper or throws with context when it is -1.
template <typename T>
T check_sys(T result, std::string_view what) {
  if (result == static_cast<T>(-1)) throw_errno(what);
  return result;
}

// Runs fn(); if it throws cryo::Error, the error gets `context` prepended and propagates.
template <typename Fn>
decltype(auto) with_context(std::string_view context, Fn&& fn) {
  try {
    return std::forward<Fn>(fn)();
  } catch (Error& e) {
    e.add_context(context);
    throw;
  }
}

// Errors that should end the CLI with a specific Podman-compatible exit code (125, 126, 127...).
class ExitCodeError : public Error {
 public:
  ExitCodeError(std::string message, int exit_code)
      : Error(std::move(message)), exit_code_(exit_code) {}
  int exit_code() const noexcept { return exit_code_; }

 private:
  int exit_code_;
};

}  // namespace cryo
