#include "checkpoint/threads.h"

#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <array>
#include <cerrno>
#include <cstring>

#include "common/error.h"

namespace cryo::ckpt {

namespace {

// clang-format alternates between two layouts of this macro, one per run.
// clang-format off
#define CRYO_REGS(X) \
  X(r15) X(r14) X(r13) X(r12) X(rbp) X(rbx) X(r11) X(r10) X(r9) \
  X(r8) X(rax) X(rcx) X(rdx) X(rsi) X(rdi) X(orig_rax) X(rip) X(cs) \
  X(eflags) X(rsp) X(ss) X(fs_base) X(gs_base) X(ds) X(es) X(fs) X(gs)
// clang-format on

constexpr char kAlphabet[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";

// Kernel-internal restart codes a syscall returns when a signal (or ptrace stop) interrupts it.
constexpr long kErestartSys = 512;
constexpr long kErestartNoIntr = 513;
constexpr long kErestartNoHand = 514;
constexpr long kErestartRestartBlock = 516;

}  // namespace

json regs_to_json(const user_regs_struct& regs) {
  json j;
#define CRYO_TO_JSON(name) j[#name] = static_cast<uint64_t>(regs.name);
  CRYO_REGS(CRYO_TO_JSON)
#undef CRYO_TO_JSON
  return j;
}

user_regs_struct regs_from_json(const json& j) {
  user_regs_struct regs{};
#define CRYO_FROM_JSON(name) regs.name = j.at(#name).get<uint64_t>();
  CRYO_REGS(CRYO_FROM_JSON)
#undef CRYO_FROM_JSON
  return regs;
}

std::string base64_encode(const void* data, size_t size) {
  const auto* p = static_cast<const uint8_t*>(data);
  std::string out;
  out.reserve((size + 2) / 3 * 4);
  for (size_t i = 0; i < size; i += 3) {
    uint32_t v = uint32_t{p[i]} << 16;
    if (i + 1 < size) v |= uint32_t{p[i + 1]} << 8;
    if (i + 2 < size) v |= p[i + 2];
    out += kAlphabet[(v >> 18) & 63];
    out += kAlphabet[(v >> 12) & 63];
    out += i + 1 < size ? kAlphabet[(v >> 6) & 63] : '=';
    out += i + 2 < size ? kAlphabet[v & 63] : '=';
  }
  return out;
}

std::vector<uint8_t> base64_decode(const std::string& text) {
  // A table, not a search of the alphabet per character: packed page runs are ~175 KB per GiB.
  static const std::array<int8_t, 256> kValue = [] {
    std::array<int8_t, 256> table;
    table.fill(-1);
    for (int i = 0; i < 64; ++i) table[static_cast<uint8_t>(kAlphabet[i])] = static_cast<int8_t>(i);
    return table;
  }();
  std::vector<uint8_t> out;
  out.reserve(text.size() / 4 * 3);
  uint32_t v = 0;
  int bits = 0;
  for (char c : text) {
    if (c == '=') break;
    int8_t value = kValue[static_cast<uint8_t>(c)];
    if (value < 0) throw Error("invalid base64 in image");
    v = (v << 6) | static_cast<uint32_t>(value);
    bits += 6;
    if (bits >= 8) {
      bits -= 8;
      out.push_back(static_cast<uint8_t>((v >> bits) & 0xff));
    }
  }
  return out;
}

void apply_syscall_restart(user_regs_struct& regs) {
  if (static_cast<long>(regs.orig_rax) < 0) return;
  long ret = static_cast<long>(regs.rax);
  if (ret == -kErestartSys || ret == -kErestartNoIntr || ret == -kErestartNoHand) {
    regs.rax = regs.orig_rax;
    regs.rip -= 2;
  } else if (ret == -kErestartRestartBlock) {
    regs.rax = static_cast<uint64_t>(-EINTR);
  }
  regs.orig_rax = static_cast<uint64_t>(-1);
}

json siginfos_to_json(const std::vector<siginfo_t>& infos) {
  json list = json::array();
  for (const siginfo_t& info : infos)
    list.push_back({{"signo", info.si_signo},
                    {"code", info.si_code},
                    {"raw", base64_encode(&info, sizeof info)}});
  return list;
}

std::vector<siginfo_t> siginfos_from_json(const json& j) {
  std::vector<siginfo_t> out;
  for (const json& item : j) {
    std::vector<uint8_t> raw = base64_decode(item.at("raw").get<std::string>());
    if (raw.size() != sizeof(siginfo_t)) throw Error("siginfo of unexpected size in image");
    siginfo_t info;
    std::memcpy(&info, raw.data(), sizeof info);
    out.push_back(info);
  }
  return out;
}

json dump_thread(const PtraceAttachment& thread, uint64_t tid_address) {
  pid_t tid = thread.tid();
  json j;
  j["tid"] = tid;
  user_regs_struct regs = thread.get_regs();
  j["regs_as_stopped"] = regs_to_json(regs);
  apply_syscall_restart(regs);
  j["regs"] = regs_to_json(regs);
  std::vector<uint8_t> xstate = thread.get_xstate();
  j["xstate"] = base64_encode(xstate.data(), xstate.size());
  j["sigmask"] = thread.get_sigmask();
  j["pending_signals"] = siginfos_to_json(thread.peek_pending_signals(false));
  j["clear_child_tid"] = tid_address;

  uint64_t head = 0;
  size_t len = 0;
  if (::syscall(SYS_get_robust_list, tid, &head, &len) != 0)
    throw_errno("thread " + std::to_string(tid) + ": get_robust_list");
  j["robust_list"] = {{"head", head}, {"len", len}};

  struct {
    uint64_t rseq_abi_pointer;
    uint32_t rseq_abi_size;
    uint32_t signature;
    uint32_t flags;
    uint32_t pad;
  } rseq{};
  constexpr int kGetRseqConfiguration = 0x420f;
  if (::ptrace(static_cast<__ptrace_request>(kGetRseqConfiguration), tid,
               reinterpret_cast<void*>(sizeof rseq), &rseq) < 0)
    throw_errno("thread " + std::to_string(tid) + ": PTRACE_GET_RSEQ_CONFIGURATION");
  j["rseq"] = {{"pointer", rseq.rseq_abi_pointer},
               {"size", rseq.rseq_abi_size},
               {"signature", rseq.signature},
               {"flags", rseq.flags}};
  return j;
}

void restore_thread_registers(const PtraceAttachment& thread, const json& dumped) {
  user_regs_struct regs = regs_from_json(dumped.at("regs"));
  regs.orig_rax = static_cast<uint64_t>(-1);
  thread.set_regs(regs);
  thread.set_xstate(base64_decode(dumped.at("xstate").get<std::string>()));
  thread.set_sigmask(dumped.at("sigmask").get<uint64_t>());
}

}  // namespace cryo::ckpt
