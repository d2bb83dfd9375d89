// Seccomp state of a thread: mode and the chain of BPF filters with their flags. Dumped from
// outside by ptrace (the thread must be ptrace-stopped by us); restored in the thread by its own
// batch, oldest filter first, as the last step of that batch.
#include <errno.h>
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>

#include <algorithm>
#include <cstdlib>

#include "checkpoint/process_attrs_internal.h"
#include "common/error.h"

namespace cryo::ckpt::attrs {

namespace {

// Flags a restored filter can be installed with again. A filter with a user-notification listener
// (SECCOMP_FILTER_FLAG_NEW_LISTENER) would need its listener fd rebuilt too.
constexpr uint64_t kRestorableFilterFlags =
    SECCOMP_FILTER_FLAG_LOG | SECCOMP_FILTER_FLAG_SPEC_ALLOW;

long ptrace_request(int request, pid_t tid, unsigned long addr, void* data) {
  return ::ptrace(static_cast<__ptrace_request>(request), tid, addr, data);
}

}  // namespace

json dump_seccomp(pid_t pid, pid_t tid) {
  std::map<std::string, std::string> status = read_status(pid, tid);
  int mode = std::atoi(status["Seccomp"].c_str());
  json seccomp = {{"mode", mode}, {"filters", json::array()}};
  if (mode == SECCOMP_MODE_DISABLED) return seccomp;
  if (mode == SECCOMP_MODE_STRICT)
    throw Error("thread " + std::to_string(tid) +
                ": not supported yet: seccomp strict mode (it would forbid the syscalls that "
                "finish a restore)");

  // Index 0 is the oldest filter (the kernel counts back from the newest).
  std::vector<json> oldest_first;
  for (unsigned long index = 0;; ++index) {
    long count = ptrace_request(PTRACE_SECCOMP_GET_FILTER, tid, index, nullptr);
    if (count < 0) {
      if (errno == ENOENT) break;
      throw_errno("PTRACE_SECCOMP_GET_FILTER(thread " + std::to_string(tid) + ", filter " +
                  std::to_string(index) + ")");
    }
    std::vector<sock_filter> program(static_cast<size_t>(count));
    if (ptrace_request(PTRACE_SECCOMP_GET_FILTER, tid, index, program.data()) != count)
      throw_errno("PTRACE_SECCOMP_GET_FILTER(thread " + std::to_string(tid) + ")");
    __ptrace_seccomp_metadata metadata{index, 0};
    if (ptrace_request(PTRACE_SECCOMP_GET_METADATA, tid, sizeof metadata, &metadata) < 0)
      throw_errno("PTRACE_SECCOMP_GET_METADATA(thread " + std::to_string(tid) + ")");
    if (metadata.flags & ~kRestorableFilterFlags)
      throw Error("thread " + std::to_string(tid) + ": not supported yet: seccomp filter flags " +
                  std::to_string(metadata.flags));
    json instructions = json::array();
    for (const sock_filter& insn : program)
      instructions.push_back({insn.code, insn.jt, insn.jf, insn.k});
    oldest_first.push_back({{"flags", metadata.flags}, {"program", std::move(instructions)}});
  }
  auto expected = status.find("Seccomp_filters");
  if (expected != status.end() &&
      static_cast<size_t>(std::atoi(expected->second.c_str())) != oldest_first.size())
    throw Error("thread " + std::to_string(tid) + ": seccomp reports " + expected->second +
                " filters, ptrace gave " + std::to_string(oldest_first.size()));
  seccomp["filters"] = std::move(oldest_first);
  return seccomp;
}

void append_seccomp_restore(const json& seccomp, SyscallBatch& batch) {
  int mode = seccomp.at("mode").get<int>();
  if (mode == SECCOMP_MODE_DISABLED) return;
  if (mode != SECCOMP_MODE_FILTER)
    throw Error("not supported yet: seccomp mode " + std::to_string(mode));
  size_t number = 0;
  for (const json& filter : seccomp.at("filters")) {
    std::vector<sock_filter> program;
    for (const json& insn : filter.at("program"))
      program.push_back(sock_filter{insn.at(0).get<uint16_t>(), insn.at(1).get<uint8_t>(),
                                    insn.at(2).get<uint8_t>(), insn.at(3).get<uint32_t>()});
    if (program.empty() || program.size() > BPF_MAXINSNS)
      throw Error("seccomp filter with " + std::to_string(program.size()) + " instructions");
    BatchArg instructions = batch.data(program.data(), program.size() * sizeof(sock_filter));
    sock_fprog header{static_cast<unsigned short>(program.size()), nullptr};
    BatchArg fprog = batch.data(&header, sizeof header);
    batch.set_pointer(fprog, offsetof(sock_fprog, filter), instructions);
    add_step(batch, SYS_seccomp,
             {SECCOMP_SET_MODE_FILTER, filter.at("flags").get<uint64_t>(), fprog},
             "seccomp(SET_MODE_FILTER, filter " + std::to_string(number++) + ")");
  }
}

}  // namespace cryo::ckpt::attrs
