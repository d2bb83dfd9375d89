// Per-thread state that lives in the kernel: registers, extended state, signal mask, pending
// signals, rseq, robust futex list, clear_child_tid.
#pragma once

#include <sys/types.h>
#include <sys/user.h>

#include <nlohmann/json.hpp>
#include <string>
#include <vector>

#include "checkpoint/ptrace.h"

namespace cryo::ckpt {

using json = nlohmann::json;

json regs_to_json(const user_regs_struct& regs);
user_regs_struct regs_from_json(const json& j);
std::string base64_encode(const void* data, size_t size);
std::vector<uint8_t> base64_decode(const std::string& text);

// A syscall interrupted by the freeze is set up to run again when the thread resumes from the
// image (the kernel's restart fixup, which a restored thread does not get).
void apply_syscall_restart(user_regs_struct& regs);

// From outside, with the thread stopped. `tid_address` comes from the thread itself.
json dump_thread(const PtraceAttachment& thread, uint64_t tid_address);
json siginfos_to_json(const std::vector<siginfo_t>& infos);
std::vector<siginfo_t> siginfos_from_json(const json& j);

// Sets registers, extended state and signal mask of a restored, stopped thread.
void restore_thread_registers(const PtraceAttachment& thread, const json& dumped);

}  // namespace cryo::ckpt
