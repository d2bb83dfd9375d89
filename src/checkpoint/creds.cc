// Credentials of a thread: uids, gids (real, effective, saved, fs), supplementary groups,
// capability sets (effective, permitted, inheritable, bounding, ambient) and securebits.
#include <linux/capability.h>
#include <linux/securebits.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#include <cstdlib>

#include "checkpoint/process_attrs_internal.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"

namespace cryo::ckpt::attrs {

namespace {

struct CapabilitySets {
  uint64_t effective = 0;
  uint64_t permitted = 0;
  uint64_t inheritable = 0;
};

// The argument block of capset(2), version 3: header then two 32-bit halves of each set.
struct CapsetArgs {
  __user_cap_header_struct header;
  __user_cap_data_struct data[2];
};

CapsetArgs capset_args(const CapabilitySets& sets) {
  CapsetArgs args{};
  args.header.version = _LINUX_CAPABILITY_VERSION_3;
  args.header.pid = 0;
  for (int half = 0; half < 2; ++half) {
    args.data[half].effective = static_cast<uint32_t>(sets.effective >> (32 * half));
    args.data[half].permitted = static_cast<uint32_t>(sets.permitted >> (32 * half));
    args.data[half].inheritable = static_cast<uint32_t>(sets.inheritable >> (32 * half));
  }
  return args;
}

void append_capset(const CapabilitySets& sets, SyscallBatch& batch, const std::string& what) {
  CapsetArgs args = capset_args(sets);
  BatchArg header = batch.data(&args.header, sizeof args.header);
  BatchArg data = batch.data(args.data, sizeof args.data);
  add_step(batch, SYS_capset, {header, data}, what);
}

CapabilitySets own_capabilities() {
  CapsetArgs args{};
  args.header.version = _LINUX_CAPABILITY_VERSION_3;
  if (::syscall(SYS_capget, &args.header, args.data) != 0) throw_errno("capget");
  CapabilitySets sets;
  for (int half = 0; half < 2; ++half) {
    sets.effective |= uint64_t{args.data[half].effective} << (32 * half);
    sets.permitted |= uint64_t{args.data[half].permitted} << (32 * half);
    sets.inheritable |= uint64_t{args.data[half].inheritable} << (32 * half);
  }
  return sets;
}

uint64_t parse_hex_field(const std::map<std::string, std::string>& status, const std::string& key) {
  auto it = status.find(key);
  if (it == status.end()) throw Error("no " + key + " in status");
  return std::strtoull(it->second.c_str(), nullptr, 16);
}

std::vector<uint32_t> ids_of(const json& creds, const char* key) {
  auto ids = creds.at(key).get<std::vector<uint32_t>>();
  if (ids.size() != 4)
    throw Error(std::string("creds: ") + key + " must hold real, effective, saved, fs");
  return ids;
}

}  // namespace

int last_capability() {
  static const int last = [] {
    std::string text = fs::read_file("/proc/sys/kernel/cap_last_cap");
    return std::atoi(text.c_str());
  }();
  return last;
}

void queue_creds_dump(pid_t pid, pid_t tid, DumpQueries& queries, json& out) {
  std::map<std::string, std::string> status = read_status(pid, tid);
  json caps = {{"effective", parse_hex_field(status, "CapEff")},
               {"permitted", parse_hex_field(status, "CapPrm")},
               {"inheritable", parse_hex_field(status, "CapInh")},
               {"bounding", parse_hex_field(status, "CapBnd")},
               {"ambient", parse_hex_field(status, "CapAmb")}};
  size_t group_count = split(std::string(status["Groups"]), ' ').size();
  if (trim(status["Groups"]).empty()) group_count = 0;

  // Ids are read by the thread itself so that they are in its own user namespace.
  SyscallBatch& batch = queries.batch();
  BatchArg uids = batch.reserve(3 * sizeof(uint32_t));
  BatchArg gids = batch.reserve(3 * sizeof(uint32_t));
  auto at = [](BatchArg base, size_t i) { return BatchArg(base.raw + i * sizeof(uint32_t), true); };
  size_t getresuid =
      queries.add(SYS_getresuid, {at(uids, 0), at(uids, 1), at(uids, 2)}, "getresuid");
  size_t getresgid =
      queries.add(SYS_getresgid, {at(gids, 0), at(gids, 1), at(gids, 2)}, "getresgid");
  // An invalid id changes nothing and returns the current one.
  size_t fsuid = queries.add(SYS_setfsuid, {static_cast<uint64_t>(-1)}, "setfsuid(-1)");
  size_t fsgid = queries.add(SYS_setfsgid, {static_cast<uint64_t>(-1)}, "setfsgid(-1)");
  BatchArg groups = batch.reserve(std::max<size_t>(group_count, 1) * sizeof(uint32_t));
  size_t getgroups = queries.add(SYS_getgroups, {group_count, groups}, "getgroups");
  size_t securebits = queries.add(SYS_prctl, {PR_GET_SECUREBITS, 0, 0, 0, 0}, "PR_GET_SECUREBITS");

  queries.then([&out, caps, uids, gids, groups, getresuid, getresgid, fsuid, fsgid, getgroups,
                securebits, at](const BatchOutput& output) {
    output.checked_result(getresuid);
    output.checked_result(getresgid);
    auto id = [&](BatchArg base, size_t i) { return output.read<uint32_t>(at(base, i)); };
    json creds;
    creds["uids"] = {id(uids, 0), id(uids, 1), id(uids, 2),
                     static_cast<uint32_t>(output.result(fsuid))};
    creds["gids"] = {id(gids, 0), id(gids, 1), id(gids, 2),
                     static_cast<uint32_t>(output.result(fsgid))};
    auto count = static_cast<size_t>(output.checked_result(getgroups));
    json group_list = json::array();
    for (size_t i = 0; i < count; ++i) group_list.push_back(id(groups, i));
    creds["groups"] = std::move(group_list);
    creds["caps"] = caps;
    creds["securebits"] = output.checked_result(securebits);
    out["creds"] = std::move(creds);
  });
}

// Order matters: uid changes drop capabilities unless SECBIT_KEEP_CAPS is set, ambient
// capabilities are cleared by a uid change and must be in the permitted and inheritable sets,
// the inheritable set must be within the bounding set when it is set, and bounding drops and
// securebits need CAP_SETPCAP. So: keep-caps, groups, gids, uids, effective = all we hold
// (with the final inheritable set), fs ids, bounding, ambient, securebits; the final capset comes
// later (append_final_capset) so that prctl and seccomp between keep their privileges.
void append_creds_restore(const json& creds, SyscallBatch& batch) {
  std::vector<uint32_t> uids = ids_of(creds, "uids");
  std::vector<uint32_t> gids = ids_of(creds, "gids");
  auto groups = creds.at("groups").get<std::vector<uint32_t>>();
  const json& caps = creds.at("caps");
  uint64_t inheritable = caps.at("inheritable").get<uint64_t>();
  uint64_t bounding = caps.at("bounding").get<uint64_t>();
  uint64_t ambient = caps.at("ambient").get<uint64_t>();
  uint64_t securebits = creds.at("securebits").get<uint64_t>();
  uint64_t held = own_capabilities().permitted;

  add_step(batch, SYS_prctl, {PR_SET_SECUREBITS, SECBIT_KEEP_CAPS, 0, 0, 0},
           "prctl(PR_SET_SECUREBITS, KEEP_CAPS)");
  BatchArg group_list = groups.empty() ? BatchArg(0) : batch.data(groups.data(), groups.size() * 4);
  add_step(batch, SYS_setgroups, {groups.size(), group_list},
           "setgroups(" + std::to_string(groups.size()) + " groups)");
  add_step(batch, SYS_setresgid, {gids[0], gids[1], gids[2]},
           "setresgid(" + std::to_string(gids[0]) + ", " + std::to_string(gids[1]) + ", " +
               std::to_string(gids[2]) + ")");
  add_step(batch, SYS_setresuid, {uids[0], uids[1], uids[2]},
           "setresuid(" + std::to_string(uids[0]) + ", " + std::to_string(uids[1]) + ", " +
               std::to_string(uids[2]) + ")");
  append_capset(CapabilitySets{held, held, inheritable}, batch,
                "capset(effective = permitted = ours, final inheritable)");
  // setfs[ug]id return the previous id, never an error: the batch cannot stop on them.
  batch.add(SYS_setfsgid, {gids[3]}, false);
  batch.describe(batch.count() - 1, "setfsgid(" + std::to_string(gids[3]) + ")");
  batch.add(SYS_setfsuid, {uids[3]}, false);
  batch.describe(batch.count() - 1, "setfsuid(" + std::to_string(uids[3]) + ")");
  for (int cap = 0; cap <= last_capability(); ++cap) {
    if (bounding & (uint64_t{1} << cap)) continue;
    add_step(batch, SYS_prctl, {PR_CAPBSET_DROP, static_cast<uint64_t>(cap), 0, 0, 0},
             "prctl(PR_CAPBSET_DROP, " + std::to_string(cap) + ")");
  }
  for (int cap = 0; cap <= last_capability(); ++cap) {
    if (!(ambient & (uint64_t{1} << cap))) continue;
    add_step(batch, SYS_prctl,
             {PR_CAP_AMBIENT, PR_CAP_AMBIENT_RAISE, static_cast<uint64_t>(cap), 0, 0},
             "prctl(PR_CAP_AMBIENT_RAISE, " + std::to_string(cap) + ")");
  }
  add_step(batch, SYS_prctl, {PR_SET_SECUREBITS, securebits, 0, 0, 0},
           "prctl(PR_SET_SECUREBITS, " + std::to_string(securebits) + ")");
}

void append_final_capset(const json& creds, SyscallBatch& batch) {
  const json& caps = creds.at("caps");
  append_capset(
      CapabilitySets{caps.at("effective").get<uint64_t>(), caps.at("permitted").get<uint64_t>(),
                     caps.at("inheritable").get<uint64_t>()},
      batch, "capset(dumped sets)");
}

}  // namespace cryo::ckpt::attrs
