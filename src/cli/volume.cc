// Volume commands: volume create, ls, rm, inspect, prune, exists (Podman's output and exit codes).
#include <unistd.h>

#include <cstdio>
#include <iostream>
#include <map>
#include <regex>
#include <string>
#include <vector>

#include "cli/cli.h"
#include "common/error.h"
#include "engine/volume/volume_store.h"

namespace cryo::cli {

namespace {

using engine::Volume;
using engine::VolumeStore;

engine::StorePaths store_paths(const GlobalOptions& global) {
  return {global.root, global.runroot};
}

std::map<std::string, std::string> parse_key_values(const std::vector<std::string>& items,
                                                    const std::string& flag) {
  std::map<std::string, std::string> out;
  for (const auto& item : items) {
    auto eq = item.find('=');
    std::string key = item.substr(0, eq);
    if (key.empty()) throw ExitCodeError("invalid " + flag + " \"" + item + "\": empty key", 125);
    out[key] = eq == std::string::npos ? "" : item.substr(eq + 1);
  }
  return out;
}

std::string labels_text(const std::map<std::string, std::string>& labels) {
  std::string out = "map[";
  bool first = true;
  for (const auto& [k, v] : labels) {
    out += (first ? "" : " ") + k + ":" + v;
    first = false;
  }
  return out + "]";
}

// The fields a Go template can name, as Podman's volume ls/inspect offer them.
std::string field(const Volume& v, const std::string& name) {
  if (name == "Name") return v.name;
  if (name == "Driver") return v.driver;
  if (name == "Mountpoint") return v.mountpoint;
  if (name == "CreatedAt") return v.created_at;
  if (name == "Scope") return "local";
  if (name == "Labels") return labels_text(v.labels);
  if (name == "Options") return labels_text(v.options);
  throw ExitCodeError("template: can't evaluate field " + name + " in type volume", 125);
}

std::string header_of(const std::string& name) {
  if (name == "Name") return "VOLUME NAME";
  std::string upper;
  for (char c : name) upper += static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  return upper;
}

// A Go-template subset: {{.Field}} and {{ .Field }}, "table " prefix for a header, \t and \n.
std::string render(const std::string& format, const Volume* v) {
  static const std::regex placeholder(R"(\{\{\s*\.(\w+)\s*\}\})");
  std::string text = format;
  for (auto [from, to] : {std::pair{"\\t", "\t"}, std::pair{"\\n", "\n"}}) {
    for (size_t pos; (pos = text.find(from)) != std::string::npos;) text.replace(pos, 2, to);
  }
  std::string out;
  auto begin = std::sregex_iterator(text.begin(), text.end(), placeholder);
  size_t last = 0;
  for (auto it = begin; it != std::sregex_iterator(); ++it) {
    out += text.substr(last, static_cast<size_t>(it->position()) - last);
    out += v ? field(*v, (*it)[1]) : header_of((*it)[1]);
    last = static_cast<size_t>(it->position() + it->length());
  }
  if (text.find("{{") != std::string::npos && begin == std::sregex_iterator())
    throw ExitCodeError("not supported yet: template \"" + format + "\"", 125);
  return out + text.substr(last);
}

void print_formatted(const std::vector<Volume>& volumes, std::string format, bool noheading) {
  bool table = format.rfind("table ", 0) == 0 || format == "table";
  if (table) format = format == "table" ? "{{.Driver}}\t{{.Name}}" : format.substr(6);
  if (table && !noheading) std::cout << render(format, nullptr) << "\n";
  for (const auto& v : volumes) std::cout << render(format, &v) << "\n";
}

void print_json(const std::vector<Volume>& volumes) {
  nlohmann::ordered_json array = nlohmann::ordered_json::array();
  for (const auto& v : volumes) array.push_back(engine::to_json(v));
  std::cout << array.dump(4) << "\n";
}

// --filter of volume ls/prune: name=, label=KEY[=VALUE], driver=, dangling=true|false.
bool matches(const VolumeStore& store, const Volume& v, const std::vector<std::string>& filters) {
  for (const auto& filter : filters) {
    auto eq = filter.find('=');
    if (eq == std::string::npos)
      throw ExitCodeError("invalid filter \"" + filter + "\": expected key=value", 125);
    std::string key = filter.substr(0, eq), value = filter.substr(eq + 1);
    if (key == "name") {
      if (!std::regex_search(v.name, std::regex(value))) return false;
    } else if (key == "driver") {
      if (v.driver != value) return false;
    } else if (key == "label") {
      auto eq2 = value.find('=');
      auto it = v.labels.find(value.substr(0, eq2));
      if (it == v.labels.end()) return false;
      if (eq2 != std::string::npos && it->second != value.substr(eq2 + 1)) return false;
    } else if (key == "dangling") {
      if (value != "true" && value != "false")
        throw ExitCodeError("invalid filter \"" + filter + "\": dangling is true or false", 125);
      if (store.users(v.name).empty() != (value == "true")) return false;
    } else {
      throw ExitCodeError("not supported yet: volume filter \"" + key + "\"", 125);
    }
  }
  return true;
}

}  // namespace

void register_volume_commands(CLI::App& app, GlobalOptions& global) {
  CLI::App* volume = app.add_subcommand("volume", "Manage volumes");
  volume->require_subcommand(1);

  {
    auto* cmd = volume->add_subcommand("create", "Create a new volume");
    struct Options {
      std::string name, driver = "local";
      std::vector<std::string> labels, opts;
      bool ignore = false;
    };
    auto o = std::make_shared<Options>();
    cmd->add_option("name", o->name, "Volume name (random when omitted)");
    cmd->add_option("-d,--driver", o->driver, "Volume driver (local)");
    cmd->add_option("-l,--label", o->labels, "Set metadata for a volume (key=value)");
    cmd->add_option("-o,--opt", o->opts, "Set driver specific options");
    cmd->add_flag("--ignore", o->ignore, "Don't fail if the volume already exists");
    cmd->callback([o, &global] {
      if (o->driver != "local")
        throw ExitCodeError("not supported yet: volume driver \"" + o->driver + "\"", 125);
      VolumeStore store(store_paths(global));
      Volume v = store.create(o->name, parse_key_values(o->labels, "label"),
                              parse_key_values(o->opts, "option"), o->ignore);
      std::cout << v.name << "\n";
    });
  }

  {
    auto* cmd = volume->add_subcommand("ls", "List volumes");
    cmd->alias("list");
    struct Options {
      bool quiet = false, noheading = false;
      std::string format;
      std::vector<std::string> filters;
    };
    auto o = std::make_shared<Options>();
    cmd->add_flag("-q,--quiet", o->quiet, "Print volume names only");
    cmd->add_flag("-n,--noheading", o->noheading, "Do not print headers");
    cmd->add_option("--format", o->format, "json or a Go template");
    cmd->add_option("-f,--filter", o->filters, "Filter volume output");
    cmd->callback([o, &global] {
      VolumeStore store(store_paths(global));
      std::vector<Volume> volumes;
      for (auto& v : store.list())
        if (matches(store, v, o->filters)) volumes.push_back(v);
      if (o->format == "json") return print_json(volumes);
      if (o->quiet) {
        for (const auto& v : volumes) std::cout << v.name << "\n";
        return;
      }
      if (!o->format.empty()) return print_formatted(volumes, o->format, o->noheading);
      if (!o->noheading) std::printf("%-12s%s\n", "DRIVER", "VOLUME NAME");
      for (const auto& v : volumes) std::printf("%-12s%s\n", v.driver.c_str(), v.name.c_str());
    });
  }

  {
    auto* cmd = volume->add_subcommand("inspect", "Display detailed information on volumes");
    struct Options {
      std::vector<std::string> names;
      bool all = false;
      std::string format;
    };
    auto o = std::make_shared<Options>();
    cmd->add_option("names", o->names, "Volumes");
    cmd->add_flag("-a,--all", o->all, "Inspect all volumes");
    cmd->add_option("-f,--format", o->format, "json or a Go template");
    cmd->callback([o, &global] {
      VolumeStore store(store_paths(global));
      if (o->all == !o->names.empty())
        throw ExitCodeError(o->all ? "when --all is set no volume names may be given"
                                   : "provide one or more volume names or use --all",
                            125);
      std::vector<Volume> volumes;
      if (o->all) volumes = store.list();
      for (const auto& name : o->names) volumes.push_back(store.get(name));
      if (o->format.empty() || o->format == "json") return print_json(volumes);
      print_formatted(volumes, o->format, true);
    });
  }

  {
    auto* cmd = volume->add_subcommand("rm", "Remove one or more volumes");
    cmd->alias("remove");
    struct Options {
      std::vector<std::string> names;
      bool all = false, force = false;
    };
    auto o = std::make_shared<Options>();
    cmd->add_option("names", o->names, "Volumes");
    cmd->add_flag("-a,--all", o->all, "Remove all volumes");
    cmd->add_flag("-f,--force", o->force, "Remove volumes even if in use");
    cmd->callback([o, &global] {
      VolumeStore store(store_paths(global));
      if (o->all == !o->names.empty())
        throw ExitCodeError(o->all ? "when --all is set no volume names may be given"
                                   : "choose either one or more volumes or all",
                            125);
      std::vector<std::string> names = o->names;
      if (o->all)
        for (const auto& v : store.list()) names.push_back(v.name);
      // Podman: 1 when a volume did not exist, 2 when one is in use, 125 for anything else.
      bool missing = false, in_use = false, other = false;
      for (const auto& name : names) {
        if (!store.find(name)) {
          missing = true;
          std::fprintf(stderr, "Error: no such volume %s\n", name.c_str());
          continue;
        }
        try {
          store.remove(name, o->force);
          std::cout << name << "\n";
        } catch (const ExitCodeError& e) {
          (e.exit_code() == 2 ? in_use : other) = true;
          std::fprintf(stderr, "Error: %s\n", e.what());
        } catch (const Error& e) {
          other = true;
          std::fprintf(stderr, "Error: %s\n", e.what());
        }
      }
      std::fflush(stdout);
      exit_code() = other ? 125 : in_use ? 2 : missing ? 1 : 0;
    });
  }

  {
    auto* cmd = volume->add_subcommand("prune", "Remove all unused volumes");
    struct Options {
      bool force = false;
      std::vector<std::string> filters;
    };
    auto o = std::make_shared<Options>();
    cmd->add_flag("-f,--force", o->force, "Do not prompt for confirmation");
    cmd->add_option("--filter", o->filters, "Only prune volumes matching the filters");
    cmd->callback([o, &global] {
      if (!o->force) {
        std::cout << "WARNING! This will remove all volumes not used by at least one container. "
                     "The following volumes will be removed:\n";
        VolumeStore store(store_paths(global));
        for (const auto& v : store.list())
          if (store.users(v.name).empty() && matches(store, v, o->filters))
            std::cout << v.name << "\n";
        std::cout << "Are you sure you want to continue? [y/N] " << std::flush;
        std::string answer;
        std::getline(std::cin, answer);
        if (answer != "y" && answer != "Y" && answer != "yes") return;
      }
      VolumeStore store(store_paths(global));
      for (const auto& v : store.list()) {
        if (!store.users(v.name).empty() || !matches(store, v, o->filters)) continue;
        store.remove(v.name);
        std::cout << v.name << "\n";
      }
    });
  }

  {
    auto* cmd = volume->add_subcommand("exists", "Check if a volume exists");
    auto name = std::make_shared<std::string>();
    cmd->add_option("name", *name, "Volume")->required();
    cmd->callback(
        [name, &global] { exit_code() = VolumeStore(store_paths(global)).find(*name) ? 0 : 1; });
  }
}

}  // namespace cryo::cli
