// `cryo cr check|dump|restore|show`: the checkpoint engine on any process tree, like CRIU.
#include <cstdio>
#include <iostream>

#include <sys/types.h>
#include "checkpoint/checkpoint.h"
#include "checkpoint/inventory.h"
#include "checkpoint/show.h"
#include "cli/cli.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/interruption.h"
#include "common/log.h"

namespace cryo::cli {

namespace {

struct CrDumpArgs {
  pid_t pid = -1;
  std::string dir;
  ckpt::DumpOptions options;
  bool verbose = false;
  bool print_stats = false;
};

struct CrRestoreArgs {
  std::string dir;
  ckpt::RestoreOptions options;
  bool verbose = false;
  bool print_stats = false;
};

}  // namespace

void register_cr_commands(CLI::App& app, GlobalOptions& global) {
  (void)global;
  CLI::App* cr = app.add_subcommand("cr", "Checkpoint/restore of any process tree (like CRIU)");
  cr->require_subcommand(1);

  CLI::App* check =
      cr->add_subcommand("check", "Check what this kernel supports for checkpoint/restore");
  check->callback([] {
    bool ok = true;
    for (const ckpt::KernelFeature& f : ckpt::check_kernel()) {
      std::printf("%-28s %-4s %s\n", f.name.c_str(), f.available ? "yes" : "NO", f.detail.c_str());
      if (!f.available && f.required) ok = false;
    }
    std::printf("%s\n", ok ? "Looks good." : "Dump/restore cannot work on this kernel.");
    exit_code() = ok ? 0 : 1;
  });

  auto dump_args = std::make_shared<CrDumpArgs>();
  CLI::App* dump = cr->add_subcommand("dump", "Checkpoint a process tree into an image directory");
  dump->add_option("-t,--tree", dump_args->pid, "PID of the root of the tree")->required();
  dump->add_option("-D,--images-dir", dump_args->dir, "Image directory")->required();
  dump->add_flag("-R,--leave-running", dump_args->options.leave_running, "Leave the tree running");
  dump->add_flag("--shell-job", dump_args->options.shell_job, "The tree is a shell job");
  dump->add_flag("--tcp-established", dump_args->options.tcp_established,
                 "Checkpoint established TCP connections");
  dump->add_flag("--file-locks", dump_args->options.file_locks, "Checkpoint file locks");
  dump->add_flag("--ext-unix-sk", dump_args->options.ext_unix_sk,
                 "Allow unix sockets connected to peers outside the tree");
  dump->add_option("--freeze-cgroup", dump_args->options.freezer_cgroup,
                   "Freeze the tree with this cgroup (v1 freezer or cgroup2 directory)");
  dump->add_flag("-v,--verbose", dump_args->verbose, "Verbose output");
  dump->add_flag("--print-stats", dump_args->print_stats, "Print dump statistics (microseconds)");
  // The tree is SIGKILLed at the end; its exit (the kernel freeing its memory) is not waited for.
  dump_args->options.wait_for_exit = false;
  dump->callback([dump_args] {
    if (dump_args->verbose) log::set_level(log::Level::kDebug);
    // As `container checkpoint`: never cut short in the middle of an injected syscall.
    DeferredTermination hold_termination;
    ckpt::DumpStats stats = with_context("dump of pid " + std::to_string(dump_args->pid), [&] {
      return ckpt::dump(dump_args->pid, dump_args->dir, dump_args->options);
    });
    if (dump_args->print_stats)
      std::printf(
          "freezing_time %lu\nfrozen_time %lu\nmemdump_time %lu\nmemwrite_time %lu\n"
          "pages_scanned %lu\npages_written %lu\n",
          stats.freezing_time, stats.frozen_time, stats.memdump_time, stats.memwrite_time,
          stats.pages_scanned, stats.pages_written);
  });

  auto restore_args = std::make_shared<CrRestoreArgs>();
  CLI::App* restore =
      cr->add_subcommand("restore", "Restore a process tree from an image directory");
  restore->add_option("-D,--images-dir", restore_args->dir, "Image directory")->required();
  restore->add_flag("-d,--restore-detached", restore_args->options.detach,
                    "Do not wait for the restored tree");
  restore->add_option("--pidfile", restore_args->options.pidfile, "Write the root's PID here");
  restore->add_flag("--shell-job", restore_args->options.shell_job, "The tree is a shell job");
  restore->add_flag("--tcp-established", restore_args->options.tcp_established,
                    "Restore established TCP connections");
  restore->add_flag("--file-locks", restore_args->options.file_locks, "Restore file locks");
  restore->add_flag("-v,--verbose", restore_args->verbose, "Verbose output");
  restore->add_flag("--print-stats", restore_args->print_stats, "Print restore statistics");
  restore->callback([restore_args] {
    if (restore_args->verbose) log::set_level(log::Level::kDebug);
    ckpt::RestoreResult result = with_context("restore from " + restore_args->dir, [&] {
      return ckpt::restore(restore_args->dir, restore_args->options);
    });
    if (restore_args->print_stats)
      std::printf("forking_time %lu\nrestore_time %lu\npages_restored %lu\n",
                  result.stats.forking_time, result.stats.restore_time,
                  result.stats.pages_restored);
    if (!restore_args->options.detach) exit_code() = ckpt::wait_restored_root(result.root_pid);
  });

  auto show_dir = std::make_shared<std::string>();
  CLI::App* show = cr->add_subcommand("show", "Show the images of a directory in readable form");
  show->add_option("dir", *show_dir, "Image directory")->required();
  show->callback([show_dir] { std::cout << ckpt::show_images(*show_dir); });
}

}  // namespace cryo::cli
