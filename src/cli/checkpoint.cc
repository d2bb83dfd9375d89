// `cryo container checkpoint` and `cryo container restore` (whole containers, Podman options).
#include <chrono>
#include <cstdio>
#include <iostream>
#include <memory>
#include <nlohmann/json.hpp>

#include <unistd.h>

#include "cli/cli.h"
#include "common/error.h"
#include "common/interruption.h"
#include "common/phase_trace.h"
#include "engine/checkpoint/archive.h"
#include "engine/checkpoint/container_checkpoint.h"
#include "engine/container/manager.h"

namespace cryo::cli {

namespace {

using engine::ContainerManager;
using engine::ContainerRecord;
using engine::ContainerState;

uint64_t now_us() {
  return std::chrono::duration_cast<std::chrono::microseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

struct Selection {
  std::vector<std::string> names;
  bool all = false;
  bool latest = false;
};

void add_selection(CLI::App* cmd, Selection& s, const char* all_help) {
  cmd->add_flag("-a,--all", s.all, all_help);
  cmd->add_flag("-l,--latest", s.latest, "Act on the latest container podman is aware of");
  cmd->add_option("containers", s.names, "Containers");
}

// Full IDs of the containers the command acts on; `eligible` picks them for --all.
std::vector<std::string> select_containers(ContainerManager& manager, const Selection& s,
                                           bool (*eligible)(const ContainerRecord&)) {
  if ((s.all || s.latest) && !s.names.empty())
    throw ExitCodeError("--all, --latest and containers cannot be used together", 125);
  if (s.all && s.latest) throw ExitCodeError("--all and --latest cannot be used together", 125);
  std::vector<std::string> ids;
  if (s.all) {
    for (const auto& r : manager.list())
      if (eligible(r)) ids.push_back(r.id);
    return ids;
  }
  if (s.latest) {
    std::vector<ContainerRecord> records = manager.list();
    const ContainerRecord* latest = nullptr;
    for (const auto& r : records)
      if (!latest || r.created_ns > latest->created_ns) latest = &r;
    if (!latest) throw ExitCodeError("no containers to act on", 125);
    return {latest->id};
  }
  if (s.names.empty()) throw ExitCodeError("you must provide at least one name or id", 125);
  for (const auto& name : s.names) ids.push_back(manager.store().resolve_id(name));
  return ids;
}

// Runs `action` on each container; the last error is the command's, earlier ones are printed.
template <typename Action>
void for_each_container(const std::vector<std::string>& ids, Action action) {
  std::unique_ptr<ExitCodeError> last;
  for (const auto& id : ids) {
    try {
      action(id);
    } catch (const ExitCodeError& e) {
      if (last) std::cerr << "Error: " << last->what() << std::endl;
      last = std::make_unique<ExitCodeError>(e.what(), e.exit_code());
    } catch (const Error& e) {
      if (last) std::cerr << "Error: " << last->what() << std::endl;
      last = std::make_unique<ExitCodeError>(e.what(), 125);
    }
  }
  if (last) throw *last;
}

// The command succeeded and printed everything: the process ends now, without destroying the
// CLI's objects. The monitor (restore) is a fork of this process: every heap page the teardown
// would write costs a copy-on-write fault, with a TLB flush on every CPU, 5-10 ms in all on these
// VMs, between the command's output and its exit. Nothing else is pending: files and locks are
// closed by the kernel, stdout is flushed here.
[[noreturn]] void exit_without_teardown() {
  std::cout.flush();
  std::fflush(nullptr);
  raise_deferred_termination();
  ::_exit(exit_code());
}

}  // namespace

// --- export (-e) and import (-i): archives for migration between hosts ---
namespace {

struct ExportArgs {
  std::string file;
  std::string compression = "zstd";
  bool ignore_rootfs = false;
  bool ignore_volumes = false;
};

void add_export_options(CLI::App* cmd, ExportArgs& a) {
  cmd->add_option("-e,--export", a.file, "Export the checkpoint image to a tar.gz");
  cmd->add_option("-c,--compress", a.compression,
                  "Select compression algorithm (gzip, none, zstd) for checkpoint archive.");
  cmd->add_flag("--ignore-rootfs", a.ignore_rootfs,
                "Do not include root file-system changes when exporting");
  cmd->add_flag("--ignore-volumes", a.ignore_volumes,
                "Do not export volumes associated with container");
}

struct ImportArgs {
  std::string file;
  engine::ArchiveImportOptions options;
};

void add_import_options(CLI::App* cmd, ImportArgs& a) {
  cmd->add_option("-i,--import", a.file, "Restore from exported checkpoint archive (tar.gz)");
  cmd->add_option("-n,--name", a.options.name,
                  "Specify new name for container restored from exported checkpoint (only "
                  "works with image or --import)");
  cmd->add_option("-p,--publish", a.options.publish,
                  "Publish a container's port, or a range of ports, to the host (default [])");
  cmd->add_flag("--ignore-static-ip", a.options.ignore_static_ip,
                "Ignore IP address set via --static-ip");
  cmd->add_flag("--ignore-static-mac", a.options.ignore_static_mac,
                "Ignore MAC address set via --mac-address");
  cmd->add_flag("--ignore-rootfs", a.options.ignore_rootfs,
                "Do not apply root file-system changes when importing from exported checkpoint");
  cmd->add_flag("--ignore-volumes", a.options.ignore_volumes,
                "Do not restore associated volumes when importing from exported checkpoint");
}

// checkpoint -e: one container only (Podman's rule).
void run_export(const engine::StorePaths& paths, const std::vector<std::string>& ids,
                const ExportArgs& a, const engine::ContainerCheckpointOptions& checkpoint,
                bool print_stats, uint64_t t0) {
  if (ids.size() != 1)
    throw ExitCodeError("--export can only be used with a single container", 125);
  engine::ArchiveExportOptions options;
  options.checkpoint = checkpoint;
  options.compression = engine::parse_archive_compression(a.compression);
  options.ignore_rootfs = a.ignore_rootfs;
  options.ignore_volumes = a.ignore_volumes;
  options.progress = ::isatty(STDERR_FILENO) == 1;
  engine::ArchiveExportResult r = engine::export_container(paths, ids[0], a.file, options);
  if (!print_stats) {
    std::cout << ids[0] << std::endl;
    return;
  }
  const ckpt::DumpStats& s = r.checkpoint.stats;
  nlohmann::json stats = {
      {"Id", ids[0]},
      {"runtime_checkpoint_duration", r.checkpoint.runtime_checkpoint_duration_us},
      {"export_duration", r.archive_duration_us},
      {"archive_size", r.archive_bytes},
      {"archive_uncompressed_size", r.uncompressed_bytes},
      {"criu_statistics",
       {{"freezing_time", s.freezing_time},
        {"frozen_time", s.frozen_time},
        {"memdump_time", s.memdump_time},
        {"memwrite_time", s.memwrite_time},
        {"pages_scanned", s.pages_scanned},
        {"pages_written", s.pages_written}}}};
  std::cout << nlohmann::json{{"podman_checkpoint_duration", now_us() - t0},
                              {"container_statistics", nlohmann::json::array({stats})}}
                   .dump(4)
            << std::endl;
}

void run_import(const engine::StorePaths& paths, ImportArgs& a,
                const engine::ContainerRestoreOptions& restore, bool print_stats, uint64_t t0) {
  a.options.tcp_established = restore.tcp_established;
  a.options.file_locks = restore.file_locks;
  a.options.keep = restore.keep;
  a.options.log_level = restore.log_level;
  a.options.progress = ::isatty(STDERR_FILENO) == 1;
  engine::ArchiveImportResult r = engine::import_container(paths, a.file, a.options);
  if (!print_stats) {
    std::cout << r.id << std::endl;
    return;
  }
  const ckpt::RestoreStats& s = r.restore.stats;
  nlohmann::json stats = {{"Id", r.id},
                          {"runtime_restore_duration", r.restore.runtime_restore_duration_us},
                          {"import_duration", r.unpack_duration_us},
                          {"archive_uncompressed_size", r.archive_bytes},
                          {"criu_statistics",
                           {{"pages_compared", s.pages_compared},
                            {"pages_skipped_cow", s.pages_skipped_cow},
                            {"forking_time", s.forking_time},
                            {"restore_time", s.restore_time},
                            {"pages_restored", s.pages_restored}}}};
  std::cout << nlohmann::json{{"podman_restore_duration", now_us() - t0},
                              {"container_statistics", nlohmann::json::array({stats})}}
                   .dump(4)
            << std::endl;
}

}  // namespace

void register_checkpoint_commands(CLI::App& app, CLI::App& container, GlobalOptions& global) {
  (void)app;  // Podman has no top-level checkpoint/restore.
  GlobalOptions& g = global;

  {
    CLI::App* cmd = container.add_subcommand("checkpoint", "Checkpoint one or more containers");
    auto sel = std::make_shared<Selection>();
    auto opts = std::make_shared<engine::ContainerCheckpointOptions>();
    auto print_stats = std::make_shared<bool>(false);
    add_selection(cmd, *sel, "Checkpoint all running containers");
    auto exp = std::make_shared<ExportArgs>();
    add_export_options(cmd, *exp);
    cmd->add_flag("-R,--leave-running", opts->leave_running,
                  "Leave the container running after writing checkpoint to disk");
    cmd->add_flag("-k,--keep", opts->keep, "Keep all temporary checkpoint files");
    cmd->add_flag("--tcp-established", opts->tcp_established,
                  "Checkpoint a container with established TCP connections");
    cmd->add_flag("--file-locks", opts->file_locks, "Checkpoint a container with file locks");
    cmd->add_flag("--print-stats", *print_stats,
                  "Display checkpoint statistics (microseconds, JSON)");
    cmd->callback([&g, sel, opts, print_stats, exp] {
      uint64_t t0 = now_us();
      phase_mark("cli: checkpoint command parsed");
      // Ctrl-C or a kill stops the checkpoint where it can be undone, never in the middle of
      // an injected syscall; the process ends by that signal afterwards (main).
      DeferredTermination hold_termination;
      engine::StorePaths paths{g.root, g.runroot};
      ContainerManager manager(paths);
      auto ids = select_containers(manager, *sel, [](const ContainerRecord& r) {
        return r.state == ContainerState::kRunning;
      });
      if (!exp->file.empty()) return run_export(paths, ids, *exp, *opts, *print_stats, t0);
      if (exp->ignore_rootfs)
        throw ExitCodeError("--ignore-rootfs can only be used with --export", 125);
      if (exp->ignore_volumes)
        throw ExitCodeError("--ignore-volumes can only be used with --export", 125);
      nlohmann::json stats = nlohmann::json::array();
      for_each_container(ids, [&](const std::string& id) {
        engine::ContainerCheckpointResult r = engine::checkpoint_container(paths, id, *opts);
        if (!*print_stats) std::cout << id << std::endl;
        stats.push_back({{"Id", id},
                         {"runtime_checkpoint_duration", r.runtime_checkpoint_duration_us},
                         {"criu_statistics",
                          {{"freezing_time", r.stats.freezing_time},
                           {"frozen_time", r.stats.frozen_time},
                           {"memdump_time", r.stats.memdump_time},
                           {"memwrite_time", r.stats.memwrite_time},
                           {"pages_scanned", r.stats.pages_scanned},
                           {"pages_written", r.stats.pages_written}}}});
      });
      if (*print_stats)
        std::cout << nlohmann::json{{"podman_checkpoint_duration", now_us() - t0},
                                    {"container_statistics", stats}}
                         .dump(4)
                  << std::endl;
      exit_without_teardown();
    });
  }

  {
    CLI::App* cmd = container.add_subcommand("restore", "Restore one or more containers");
    auto sel = std::make_shared<Selection>();
    auto opts = std::make_shared<engine::ContainerRestoreOptions>();
    auto print_stats = std::make_shared<bool>(false);
    add_selection(cmd, *sel, "Restore all checkpointed containers");
    auto imp = std::make_shared<ImportArgs>();
    add_import_options(cmd, *imp);
    cmd->add_flag("-k,--keep", opts->keep, "Keep all temporary checkpoint files");
    cmd->add_flag("--tcp-established", opts->tcp_established,
                  "Restore a container with established TCP connections");
    cmd->add_flag("--file-locks", opts->file_locks, "Restore a container with file locks");
    cmd->add_flag("--print-stats", *print_stats, "Display restore statistics (microseconds, JSON)");
    cmd->callback([&g, sel, opts, print_stats, imp] {
      uint64_t t0 = now_us();
      phase_mark("cli: restore command parsed");
      engine::StorePaths paths{g.root, g.runroot};
      opts->log_level = g.log_level;
      if (!imp->file.empty()) {
        if (sel->all || sel->latest || !sel->names.empty())
          throw ExitCodeError("--import cannot be used with containers, --all or --latest", 125);
        return run_import(paths, *imp, *opts, *print_stats, t0);
      }
      if (!imp->options.name.empty() || !imp->options.publish.empty())
        throw ExitCodeError("--name and --publish can only be used with --import", 125);
      if (imp->options.ignore_rootfs)
        throw ExitCodeError("--ignore-rootfs can only be used with --import", 125);
      if (imp->options.ignore_volumes)
        throw ExitCodeError("--ignore-volumes can only be used with --import", 125);
      ContainerManager manager(paths);
      auto ids = select_containers(manager, *sel, [](const ContainerRecord& r) {
        return r.checkpointed && r.state != ContainerState::kRunning;
      });
      nlohmann::json stats = nlohmann::json::array();
      for_each_container(ids, [&](const std::string& id) {
        engine::ContainerRestoreResult r = engine::restore_container(paths, id, *opts);
        if (!*print_stats) std::cout << id << std::endl;
        stats.push_back({{"Id", id},
                         {"runtime_restore_duration", r.runtime_restore_duration_us},
                         {"criu_statistics",
                          {{"pages_compared", r.stats.pages_compared},
                           {"pages_skipped_cow", r.stats.pages_skipped_cow},
                           {"forking_time", r.stats.forking_time},
                           {"restore_time", r.stats.restore_time},
                           {"pages_restored", r.stats.pages_restored}}}});
      });
      if (*print_stats)
        std::cout << nlohmann::json{{"podman_restore_duration", now_us() - t0},
                                    {"container_statistics", stats}}
                         .dump(4)
                  << std::endl;
      exit_without_teardown();
    });
  }
}

}  // namespace cryo::cli
