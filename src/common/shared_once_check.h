// A check that runs once, by whichever thread needs it first, and whose outcome every caller
// shares: the threads that come meanwhile wait for it, and a failure is rethrown to each of them
// and to every later caller (a check that failed is not run again).
#pragma once

#include <exception>
#include <functional>
#include <mutex>
#include <utility>

namespace cryo {

class SharedOnceCheck {
 public:
  explicit SharedOnceCheck(std::function<void()> check) : check_(std::move(check)) {}
  SharedOnceCheck(const SharedOnceCheck&) = delete;
  SharedOnceCheck& operator=(const SharedOnceCheck&) = delete;

  void pass() {
    std::lock_guard lock(mutex_);
    if (!checked_) {
      checked_ = true;
      try {
        check_();
      } catch (...) {
        error_ = std::current_exception();
      }
    }
    if (error_) std::rethrow_exception(error_);
  }

 private:
  std::function<void()> check_;
  std::mutex mutex_;
  bool checked_ = false;
  std::exception_ptr error_;
};

}  // namespace cryo
