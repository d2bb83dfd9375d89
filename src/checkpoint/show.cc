#include "checkpoint/show.h"

#include <dirent.h>
#include <fcntl.h>
#include <linux/sched.h>
#include <signal.h>
#include <sys/ioctl.h>
#include <sys/prctl.h>
#include <sys/ptrace.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <sstream>

#include "checkpoint/arch/x86_64/cpu.h"
#include "checkpoint/image/image_file.h"
#include "checkpoint/memory.h"
#include "checkpoint/ptrace.h"
#include "common/error.h"
#include "common/fs.h"

namespace cryo::ckpt {

namespace {

std::string hex(uint64_t v) {
  std::ostringstream out;
  out << "0x" << std::hex << v;
  return out.str();
}

// Shortens the bulky parts of an image for reading (xstate, raw siginfo, long page-run lists).
void abbreviate(json& j) {
  if (j.is_object()) {
    for (auto& [key, value] : j.items()) {
      if ((key == "xstate" || key == "raw" || key == "auxv") && value.is_string())
        value = "<" + std::to_string(value.get<std::string>().size() * 3 / 4) + " bytes>";
      else if (key == "runs" && (value.is_string() || (value.is_array() && value.size() > 16))) {
        std::vector<PageRun> runs = runs_from_json(value);
        uint64_t pages = 0;
        for (const PageRun& r : runs) pages += r.pages;
        value = std::to_string(runs.size()) + " runs, " + std::to_string(pages) + " pages";
      } else if ((key == "start" || key == "end" || key == "rip" || key == "rsp" ||
                  key == "fs_base") &&
                 value.is_number_unsigned())
        value = hex(value.get<uint64_t>());
      else
        abbreviate(value);
    }
  } else if (j.is_array()) {
    for (auto& item : j) abbreviate(item);
  }
}

}  // namespace

std::string show_images(const std::string& image_dir) {
  std::vector<std::string> names;
  DIR* dir = ::opendir(image_dir.c_str());
  if (!dir) throw_errno("opendir " + image_dir);
  while (dirent* e = ::readdir(dir)) {
    std::string name = e->d_name;
    if (name.size() > 4 && name.substr(name.size() - 4) == ".img") names.push_back(name);
  }
  ::closedir(dir);
  std::sort(names.begin(), names.end());
  std::ostringstream out;
  for (const std::string& name : names) {
    out << "== " << name << "\n";
    if (name.rfind("pages-", 0) == 0 || name.rfind("shmem-", 0) == 0 ||
        name.rfind("data-", 0) == 0) {
      try {
        RawImageReader reader(image_dir, name);
        out << "raw page data, " << reader.payload_size() << " bytes ("
            << reader.payload_size() / 4096 << " pages)\n";
      } catch (const Error& e) {
        out << "(not a raw image: " << e.what() << ")\n";
      }
      continue;
    }
    try {
      json j = read_json_image(image_dir, name);
      abbreviate(j);
      out << j.dump(2) << "\n";
    } catch (const Error& e) {
      out << "(unreadable: " << e.what() << ")\n";
    }
  }
  return out.str();
}

std::vector<KernelFeature> check_kernel() {
  std::vector<KernelFeature> features;
  auto add = [&](std::string name, bool ok, bool required, std::string detail) {
    features.push_back({std::move(name), ok, required, std::move(detail)});
  };

  // PTRACE_SEIZE + INTERRUPT on a child of our own.
  {
    pid_t child = ::fork();
    if (child == 0) {
      ::pause();
      ::_exit(0);
    }
    bool ok = false;
    std::string detail;
    if (child > 0) {
      try {
        PtraceAttachment a = PtraceAttachment::seize_and_interrupt(child);
        a.get_regs();
        a.get_xstate();
        ok = true;
      } catch (const Error& e) {
        detail = e.what();
      }
      ::kill(child, SIGKILL);
      ::waitpid(child, nullptr, 0);
    }
    add("ptrace seize/interrupt", ok, true, detail);
  }
  errno = 0;
  long r = ::syscall(SYS_pidfd_getfd, -1, 0, 0);
  add("pidfd_getfd", !(r < 0 && errno == ENOSYS), true, "");
  errno = 0;
  r = ::syscall(SYS_clone3, nullptr, 0);
  add("clone3 (set_tid)", !(r < 0 && errno == ENOSYS), true, "");
  unsigned int mm_map_size = 0;
  r = ::prctl(PR_SET_MM, PR_SET_MM_MAP_SIZE, &mm_map_size, 0, 0);
  add("prctl PR_SET_MM_MAP", r == 0, true,
      r == 0 ? "struct size " + std::to_string(mm_map_size) : std::strerror(errno));
  add("time namespace", fs::exists("/proc/self/ns/time"), false, "");
  errno = 0;
  r = ::syscall(SYS_userfaultfd, O_CLOEXEC | O_NONBLOCK);
  bool uffd = r >= 0;
  if (r >= 0) ::close(static_cast<int>(r));
  add("userfaultfd", uffd, false, uffd ? "" : std::strerror(errno));
  {
    int fd = ::open("/proc/self/pagemap", O_RDONLY | O_CLOEXEC);
    constexpr unsigned long kPagemapScan = 0xc0606610;  // _IOWR('f', 16, struct pm_scan_arg)
    errno = 0;
    int rr = fd >= 0 ? ::ioctl(fd, kPagemapScan, nullptr) : -1;
    bool ok = fd >= 0 && !(rr < 0 && errno == ENOTTY);
    if (fd >= 0) ::close(fd);
    add("pagemap scan ioctl", ok, false, "");
  }
  add("kcmp", ::syscall(SYS_kcmp, ::getpid(), ::getpid(), 0, 0, 0) >= 0, false, "");
  add("xstate", x86_64::xcr0() != 0, true,
      "XCR0 " + hex(x86_64::xcr0()) + ", " + std::to_string(x86_64::xstate_size()) + " bytes");
  auto pid_max = fs::read_file_if_exists("/proc/sys/kernel/pid_max");
  add("pid_max", pid_max.has_value(), false,
      pid_max ? std::string(pid_max->substr(0, pid_max->find('\n'))) : "");
  return features;
}

int wait_restored_root(pid_t root) {
  int status = 0;
  for (;;) {
    pid_t r = ::waitpid(root, &status, 0);
    if (r == root) break;
    if (r < 0 && errno == EINTR) continue;
    throw_errno("waiting for the restored root " + std::to_string(root));
  }
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return 1;
}

}  // namespace cryo::ckpt
