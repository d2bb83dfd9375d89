// Memory-class character devices and /dev/tty: reopened by device number from a fixed table of
// well-known paths, never from the dumped path (which, in a container, names the container's
// /dev). The device opened is checked to be the dumped one.
#include <fcntl.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>

#include "checkpoint/file_kinds/file_kind.h"
#include "common/error.h"

namespace cryo::ckpt::files {

namespace {

struct KnownDevice {
  unsigned major, minor;
  const char* path;
};

constexpr KnownDevice kKnownDevices[] = {
    {1, 3, "/dev/null"},   {1, 5, "/dev/zero"},    {1, 7, "/dev/full"},
    {1, 8, "/dev/random"}, {1, 9, "/dev/urandom"}, {5, 0, "/dev/tty"},
};

const KnownDevice* known_device(dev_t rdev) {
  for (const KnownDevice& d : kKnownDevices)
    if (major(rdev) == d.major && minor(rdev) == d.minor) return &d;
  return nullptr;
}

bool device_claims(const DumpedFd& fd) {
  return S_ISCHR(fd.st.st_mode) && !(fd.flags & O_PATH) && known_device(fd.st.st_rdev);
}

void device_dump(DumpContext&, const DumpedFd& fd, json& description) {
  description["kind"] = "device";
  description["rdev"] = static_cast<uint64_t>(fd.st.st_rdev);
}

UniqueFd device_open(RestoreContext&, const json& description) {
  auto rdev = static_cast<dev_t>(description.at("rdev").get<uint64_t>());
  const KnownDevice* device = known_device(rdev);
  if (device == nullptr)
    throw Error("unknown character device " + std::to_string(major(rdev)) + ":" +
                std::to_string(minor(rdev)));
  // /dev/tty opens the controlling terminal of the opener: the coordinator's, which is the one
  // the restored tree gets.
  int fd = ::open(device->path, open_flags(description.at("flags").get<int>()));
  if (fd < 0) throw_errno(std::string("open ") + device->path);
  UniqueFd owned(fd);
  struct stat st;
  if (::fstat(fd, &st) < 0) throw_errno("fstat");
  if (!S_ISCHR(st.st_mode) || st.st_rdev != rdev)
    throw Error(std::string(device->path) + " is not character device " +
                std::to_string(major(rdev)) + ":" + std::to_string(minor(rdev)) + " here");
  return owned;
}

}  // namespace

const FileKind kDeviceKind{{"device"}, device_claims, device_dump, device_open};

}  // namespace cryo::ckpt::files
