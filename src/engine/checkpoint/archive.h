// Export of a checkpointed container into one archive and import of such an archive on another
// engine (`cryo container checkpoint -e FILE`, `cryo container restore -i FILE`): migration
// between hosts. The layout follows Podman's (docs/CHECKPOINT-ARCHIVE.md).
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "engine/checkpoint/archive_io.h"
#include "engine/checkpoint/container_checkpoint.h"
#include "engine/state/paths.h"

namespace cryo::engine {

struct ArchiveExportOptions {
  ContainerCheckpointOptions checkpoint;  // -R, -k, --tcp-established, --file-locks
  ArchiveCompression compression = ArchiveCompression::kZstd;
  bool ignore_rootfs = false;
  bool ignore_volumes = false;
  bool progress = false;  // bytes and rate on stderr
};

struct ArchiveExportResult {
  ContainerCheckpointResult checkpoint;
  uint64_t archive_bytes = 0;       // compressed, as written
  uint64_t uncompressed_bytes = 0;  // entry bytes
  uint64_t archive_duration_us = 0;
};

// Checkpoints the running container `id` and writes the archive `file` (through a temporary file
// beside it, renamed at the end). On any failure the partial file is removed and the container
// is running again (a dump that ended it is restored in place).
ArchiveExportResult export_container(const StorePaths& paths, const std::string& id,
                                     const std::string& file, const ArchiveExportOptions& options);

struct ArchiveImportOptions {
  std::string name;                  // -n: a new container (new ID) with this name
  std::vector<std::string> publish;  // -p: replaces the archive's port mappings
  bool ignore_static_ip = false;
  bool ignore_static_mac = false;
  bool ignore_rootfs = false;
  bool ignore_volumes = false;
  bool tcp_established = false;
  bool file_locks = false;
  bool keep = false;  // keep the unpacked checkpoint in the container directory
  bool progress = false;
  std::string log_level = "warn";
};

struct ArchiveImportResult {
  std::string id;
  ContainerRestoreResult restore;
  uint64_t unpack_duration_us = 0;
  uint64_t archive_bytes = 0;
};

// Unpacks and verifies the archive completely, checks this host (architecture, CPU features, the
// container's image), then creates the container (volumes, rootfs changes) and restores it.
// Any failure leaves nothing behind: no container record, volume, mount, veth or cgroup.
ArchiveImportResult import_container(const StorePaths& paths, const std::string& file,
                                     const ArchiveImportOptions& options);

}  // namespace cryo::engine
