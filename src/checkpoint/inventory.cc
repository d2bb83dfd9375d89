#include "checkpoint/inventory.h"

#include <sys/utsname.h>

#include <sstream>

#include "checkpoint/arch/x86_64/cpu.h"
#include "checkpoint/image/image_file.h"
#include "common/error.h"

namespace cryo::ckpt {

namespace {
std::string hex(uint64_t v) {
  std::ostringstream out;
  out << "0x" << std::hex << v;
  return out.str();
}
}  // namespace

void write_inventory(ImageSink& sink, pid_t root, const DumpOptions& options) {
  utsname uts{};
  ::uname(&uts);
  json inv;
  inv["format_version"] = kImageFormatVersion;
  inv["arch"] = "x86_64";
  inv["xcr0"] = x86_64::xcr0();
  inv["xstate_size"] = x86_64::xstate_size();
  inv["root_pid"] = root;
  inv["kernel_release"] = uts.release;
  inv["options"] = {{"leave_running", options.leave_running},
                    {"shell_job", options.shell_job},
                    {"tcp_established", options.tcp_established},
                    {"file_locks", options.file_locks},
                    {"freezer_cgroup", options.freezer_cgroup}};
  write_json_image(sink, "inventory.img", inv);
}

json read_and_check_inventory(const std::string& image_dir) {
  json inv = with_context("image directory " + image_dir,
                          [&] { return read_json_image(image_dir, "inventory.img"); });
  if (inv.at("arch") != "x86_64")
    throw Error("images are for architecture " + inv.at("arch").get<std::string>() +
                ", this machine is x86_64");
  uint64_t dumped = inv.at("xcr0");
  uint64_t here = x86_64::xcr0();
  if ((dumped & ~here) != 0)
    throw Error("images were dumped on a CPU with xsave features " + hex(dumped) +
                " but this machine enables only " + hex(here) + " (missing " + hex(dumped & ~here) +
                "): the register state cannot be restored here");
  return inv;
}

}  // namespace cryo::ckpt
