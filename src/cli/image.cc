// Image commands: import, load, save, images, rmi, image inspect.
#include <cstdio>
#include <ctime>
#include <iostream>
#include <memory>

#include <fcntl.h>
#include <fnmatch.h>
#include <unistd.h>

#include <functional>

#include "cli/cli.h"
#include "common/error.h"
#include "common/fs.h"
#include "common/strings.h"
#include "engine/image/image_store.h"

namespace cryo::cli {

// `cryo inspect` falls back to this for names that are not containers (declare it in cli.h).
nlohmann::json inspect_images(const GlobalOptions& global, const std::vector<std::string>& refs);

// The subset of Go templates that `--format` arguments use in practice: "{{.A.B}}",
// "{{json .A}}", "{{.}}", literal text, and "\t" / "\n" written as two characters (Podman turns
// them into tab and newline). Values print the way Go's fmt prints them ("[a b]", "map[k:v]").
std::string render_go_template(const std::string& tmpl, const nlohmann::json& data);
// Lines of tab-separated cells aligned in columns two spaces apart (Go's tabwriter, as Podman).
std::string align_columns(const std::string& text);

namespace {

std::string go_print(const nlohmann::json& value) {
  if (value.is_string()) return value.get<std::string>();
  if (value.is_null()) return "<no value>";
  if (value.is_array()) {
    std::vector<std::string> items;
    for (const auto& item : value) items.push_back(go_print(item));
    return "[" + join(items, " ") + "]";
  }
  if (value.is_object()) {
    std::vector<std::string> items;
    for (const auto& [key, item] : value.items()) items.push_back(key + ":" + go_print(item));
    return "map[" + join(items, " ") + "]";
  }
  return value.dump();
}

const nlohmann::json& template_lookup(const nlohmann::json& data, const std::string& path,
                                      const std::string& action) {
  if (path == ".") return data;
  if (path.empty() || path[0] != '.')
    throw ExitCodeError("not supported yet: template action {{" + action + "}}", 125);
  static const nlohmann::json kMissing;
  const nlohmann::json* cur = &data;
  for (const std::string& key : split(path.substr(1), '.')) {
    if (!cur->is_object() || !cur->contains(key)) {
      if (cur->is_object())
        throw ExitCodeError("template: can't evaluate field " + key + " in {{" + action + "}}",
                            125);
      return kMissing;
    }
    cur = &(*cur)[key];
  }
  return *cur;
}

}  // namespace

std::string render_go_template(const std::string& tmpl, const nlohmann::json& data) {
  std::string out;
  size_t pos = 0;
  while (pos < tmpl.size()) {
    size_t open = tmpl.find("{{", pos);
    std::string literal =
        tmpl.substr(pos, open == std::string::npos ? std::string::npos : open - pos);
    for (size_t i = 0; i < literal.size(); ++i) {
      if (literal[i] == '\\' && i + 1 < literal.size() &&
          (literal[i + 1] == 't' || literal[i + 1] == 'n')) {
        out.push_back(literal[++i] == 't' ? '\t' : '\n');
      } else {
        out.push_back(literal[i]);
      }
    }
    if (open == std::string::npos) break;
    size_t close = tmpl.find("}}", open);
    if (close == std::string::npos)
      throw ExitCodeError("template: unclosed action in \"" + tmpl + "\"", 125);
    std::string action(trim(std::string_view(tmpl).substr(open + 2, close - open - 2)));
    if (starts_with(action, "json ")) {
      out += template_lookup(data, std::string(trim(action.substr(5))), action).dump();
    } else {
      out += go_print(template_lookup(data, action, action));
    }
    pos = close + 2;
  }
  return out;
}

std::string align_columns(const std::string& text) {
  std::vector<std::vector<std::string>> rows;
  for (const std::string& line : split(text, '\n')) rows.push_back(split(line, '\t'));
  if (!rows.empty() && rows.back().size() == 1 && rows.back()[0].empty()) rows.pop_back();
  std::vector<size_t> widths;
  for (const auto& row : rows)
    for (size_t i = 0; i + 1 < row.size(); ++i) {
      if (widths.size() <= i) widths.resize(i + 1, 0);
      widths[i] = std::max(widths[i], row[i].size());
    }
  std::string out;
  for (const auto& row : rows) {
    for (size_t i = 0; i < row.size(); ++i) {
      out += row[i];
      if (i + 1 < row.size()) out += std::string(widths[i] - row[i].size() + 2, ' ');
    }
    out += "\n";
  }
  return out;
}

namespace {

engine::ImageStore store_for(const GlobalOptions& global) {
  return engine::ImageStore(engine::StorePaths{global.root, global.runroot});
}

void add_import(CLI::App& parent, GlobalOptions& global) {
  struct Options {
    std::vector<std::string> changes;
    std::string message;
    std::string tarball;
    std::string reference;
    bool quiet = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = parent.add_subcommand("import", "Import a tarball to create a filesystem image");
  cmd->add_option("-c,--change", opts->changes,
                  "Apply a Dockerfile instruction (CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, "
                  "STOPSIGNAL, USER, VOLUME, WORKDIR)")
      ->allow_extra_args(false);
  cmd->add_option("-m,--message", opts->message, "Commit message for the imported image");
  cmd->add_flag("-q,--quiet", opts->quiet, "Suppress output");
  cmd->add_option("tarball", opts->tarball,
                  "Rootfs tarball (plain, gzip, zstd, xz, bzip2), - for stdin")
      ->required();
  cmd->add_option("reference", opts->reference, "Name for the image");
  cmd->callback([opts, &global] {
    engine::ImageStore store = store_for(global);
    engine::ImportOptions options{opts->changes, opts->message, opts->reference};
    if (!opts->quiet) std::fputs("Getting image source signatures\n", stderr);
    // Podman reads the tarball from stdin for "-"; libarchive reads /dev/stdin like any file.
    std::string tarball = opts->tarball == "-" ? "/dev/stdin" : opts->tarball;
    engine::ImageRecord image = store.import_rootfs(tarball, options);
    if (!opts->quiet) {
      std::fprintf(stderr, "Copying blob %s done\n",
                   image.layer_digests.back().substr(7, 12).c_str());
      std::fprintf(stderr, "Copying config %s done\nWriting manifest to image destination\n",
                   image.id.substr(0, 12).c_str());
    }
    std::printf("%s\n", image.id.c_str());
  });
}

void add_load(CLI::App& parent, GlobalOptions& global) {
  struct Options {
    std::string input;
    bool quiet = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = parent.add_subcommand("load", "Load image(s) from a tar archive");
  cmd->add_option("-i,--input", opts->input,
                  "Read from the specified archive file (default: stdin)");
  cmd->add_flag("-q,--quiet", opts->quiet, "Suppress the output");
  cmd->callback([opts, &global] {
    engine::ImageStore store = store_for(global);
    if (!opts->quiet) std::fputs("Getting image source signatures\n", stderr);
    if (opts->input.empty() && ::isatty(STDIN_FILENO))
      throw ExitCodeError("cannot read from terminal, use -i or redirect stdin", 125);
    std::string input = opts->input.empty() ? "/dev/stdin" : opts->input;
    for (const engine::ImageRecord& image : store.load(input)) {
      if (image.names.empty()) std::printf("Loaded image: sha256:%s\n", image.id.c_str());
      for (const std::string& name : image.names) std::printf("Loaded image: %s\n", name.c_str());
    }
  });
}

void add_save(CLI::App& parent, GlobalOptions& global) {
  struct Options {
    std::string output;
    std::string format = "docker-archive";
    std::string image;
    bool quiet = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = parent.add_subcommand("save", "Save image to an archive");
  cmd->add_option("-o,--output", opts->output, "Write to a specified file (default: stdout)");
  cmd->add_option("--format", opts->format, "Save image to docker-archive or oci-archive");
  cmd->add_flag("-q,--quiet", opts->quiet, "Suppress the output");
  cmd->add_option("image", opts->image, "Image to save")->required();
  cmd->callback([opts, &global] {
    engine::ArchiveFormat format;
    if (opts->format == "docker-archive") {
      format = engine::ArchiveFormat::kDockerArchive;
    } else if (opts->format == "oci-archive") {
      format = engine::ArchiveFormat::kOciArchive;
    } else {
      throw ExitCodeError(
          "unknown format \"" + opts->format + "\": supported are docker-archive and oci-archive",
          125);
    }
    if (!opts->output.empty()) {
      store_for(global).save(opts->image, opts->output, format);
      return;
    }
    if (::isatty(STDOUT_FILENO))
      throw ExitCodeError("refusing to save to terminal. Use -o flag or redirect", 125);
    // Saving renames a finished file into place, which a pipe does not allow: go through a
    // temporary file under the root.
    std::string temp_dir = global.root + "/tmp";
    fs::mkdir_p(temp_dir, 0700);
    std::string temp = temp_dir + "/save-" + random_hex(8) + ".tar";
    try {
      store_for(global).save(opts->image, temp, format);
      UniqueFd in = fs::open_or_throw(temp, O_RDONLY);
      char buf[1 << 16];
      for (;;) {
        ssize_t n = ::read(in.get(), buf, sizeof buf);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) throw_errno("read " + temp);
        if (n == 0) break;
        fs::write_all(STDOUT_FILENO, buf, static_cast<size_t>(n), "stdout");
      }
    } catch (...) {
      ::unlink(temp.c_str());
      throw;
    }
    ::unlink(temp.c_str());
  });
}

std::string repository_of(const std::string& name) {
  return name.substr(0, name.rfind(':'));
}
std::string tag_of(const std::string& name) {
  return name.substr(name.rfind(':') + 1);
}

void add_images(CLI::App& parent, const std::string& name, GlobalOptions& global) {
  struct Options {
    bool quiet = false;
    bool all = false;
    bool no_trunc = false;
    bool no_heading = false;
    std::string format;
    std::string filter_ref;
    std::vector<std::string> filters;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = parent.add_subcommand(name, "List images in local storage");
  cmd->add_flag("-q,--quiet", opts->quiet, "Display only image IDs");
  cmd->add_flag("-a,--all", opts->all, "Show all images (there are no intermediate images)");
  cmd->add_flag("--no-trunc", opts->no_trunc, "Do not truncate output");
  cmd->add_flag("-n,--noheading", opts->no_heading, "Do not print column headings");
  cmd->add_option("--format", opts->format, "Output format: json or a Go template");
  cmd->add_option("-f,--filter", opts->filters,
                  "Filter output: dangling=true|false, reference=PATTERN, id=PREFIX")
      ->allow_extra_args(false);
  cmd->add_option("image", opts->filter_ref, "Only images of this repository");
  cmd->callback([opts, &global] {
    engine::ImageStore store = store_for(global);
    std::vector<engine::ImageRecord> images = store.list();
    if (!opts->filter_ref.empty()) {
      std::string wanted = engine::normalize_image_name(opts->filter_ref);
      bool with_tag = opts->filter_ref.find(':') != std::string::npos;
      std::erase_if(images, [&](const engine::ImageRecord& image) {
        for (const std::string& n : image.names)
          if (with_tag ? n == wanted : repository_of(n) == repository_of(wanted)) return false;
        return true;
      });
    }
    for (const std::string& filter : opts->filters) {
      size_t eq = filter.find('=');
      std::string key = filter.substr(0, eq);
      std::string value = eq == std::string::npos ? "" : filter.substr(eq + 1);
      std::function<bool(const engine::ImageRecord&)> keep;
      if (key == "dangling" && (value == "true" || value == "false")) {
        keep = [value](const engine::ImageRecord& image) {
          return image.names.empty() == (value == "true");
        };
      } else if (key == "reference" && !value.empty()) {
        // Matches the full name or the name without its registry, like "busybox*" or
        // "localhost/*:latest"; without a tag the pattern matches the repository.
        keep = [value](const engine::ImageRecord& image) {
          for (const std::string& n : image.names) {
            std::string short_name = n.substr(n.find('/') + 1);
            for (const std::string& candidate :
                 {n, short_name, repository_of(n), repository_of(short_name)})
              if (::fnmatch(value.c_str(), candidate.c_str(), 0) == 0) return true;
          }
          return false;
        };
      } else if (key == "id" && !value.empty()) {
        keep = [value](const engine::ImageRecord& image) { return starts_with(image.id, value); };
      } else {
        throw ExitCodeError("not supported yet: image filter \"" + filter +
                                "\" (supported: dangling=true|false, reference=, id=)",
                            125);
      }
      std::erase_if(images, [&](const engine::ImageRecord& image) { return !keep(image); });
    }
    int64_t now = ::time(nullptr);
    if (opts->format == "json") {
      nlohmann::json out = nlohmann::json::array();
      for (const engine::ImageRecord& image : images) {
        nlohmann::json repo_digests = nlohmann::json::array();
        for (const std::string& n : image.names)
          repo_digests.push_back(repository_of(n) + "@" + image.digest);
        out.push_back(
            {{"Id", image.id},
             {"ParentId", ""},
             {"RepoTags", nullptr},
             {"RepoDigests", repo_digests},
             {"Size", image.size},
             {"SharedSize", 0},
             {"VirtualSize", image.size},
             {"Labels", image.config.labels.empty() ? nlohmann::json(nullptr)
                                                    : nlohmann::json(image.config.labels)},
             {"Containers", store.containers_using(image.id).size()},
             {"Names", image.names},
             {"Digest", image.digest},
             {"History", image.names},
             {"Created", image.created},
             {"CreatedAt", engine::rfc3339_time(image.created)}});
      }
      std::printf("%s\n", out.dump(4).c_str());
      return;
    }
    if (!opts->format.empty()) {
      std::string tmpl = opts->format;
      bool table = starts_with(tmpl, "table");
      if (table) tmpl = std::string(trim(tmpl.substr(5)));
      std::string text;
      if (table && !opts->no_heading) {
        nlohmann::json headers = {{"ID", "IMAGE ID"},
                                  {"Id", "IMAGE ID"},
                                  {"Repository", "REPOSITORY"},
                                  {"Tag", "TAG"},
                                  {"Digest", "DIGEST"},
                                  {"Size", "SIZE"},
                                  {"Created", "CREATED"},
                                  {"CreatedSince", "CREATED"},
                                  {"CreatedAt", "CREATED AT"},
                                  {"Names", "NAMES"},
                                  {"Containers", "CONTAINERS"},
                                  {"Labels", "LABELS"},
                                  {"VirtualSize", "VIRTUAL SIZE"},
                                  {"History", "HISTORY"},
                                  {"ReadOnly", "R/O"}};
        text += render_go_template(tmpl, headers) + "\n";
      }
      for (const engine::ImageRecord& image : images) {
        std::vector<std::string> names = image.names;
        if (names.empty()) names.push_back("<none>:<none>");
        for (const std::string& n : names) {
          nlohmann::json row = {
              {"ID", opts->no_trunc ? "sha256:" + image.id : image.id.substr(0, 12)},
              {"Id", image.id},
              {"Repository", repository_of(n)},
              {"Tag", tag_of(n)},
              {"Digest", image.digest},
              {"Size", engine::human_size(image.size)},
              {"VirtualSize", engine::human_size(image.size)},
              {"Created", engine::human_duration_since(image.created, now)},
              {"CreatedSince", engine::human_duration_since(image.created, now)},
              {"CreatedAt", engine::rfc3339_time(image.created)},
              {"Names", image.names},
              {"Containers", store.containers_using(image.id).size()},
              {"Labels", image.config.labels},
              {"History", image.names},
              {"ReadOnly", false}};
          text += render_go_template(tmpl, row) + "\n";
        }
      }
      std::fputs(align_columns(text).c_str(), stdout);
      return;
    }
    if (opts->quiet) {
      for (const engine::ImageRecord& image : images)
        std::printf("%s\n", opts->no_trunc ? ("sha256:" + image.id).c_str()
                                           : image.id.substr(0, 12).c_str());
      return;
    }
    std::vector<std::vector<std::string>> rows = {
        {"REPOSITORY", "TAG", "IMAGE ID", "CREATED", "SIZE"}};
    for (const engine::ImageRecord& image : images) {
      std::string id = opts->no_trunc ? "sha256:" + image.id : image.id.substr(0, 12);
      std::string created = engine::human_duration_since(image.created, now);
      std::string size = engine::human_size(image.size);
      if (image.names.empty()) rows.push_back({"<none>", "<none>", id, created, size});
      for (const std::string& n : image.names)
        rows.push_back({repository_of(n), tag_of(n), id, created, size});
    }
    std::vector<size_t> widths(rows[0].size(), 0);
    for (const auto& row : rows)
      for (size_t i = 0; i < row.size(); ++i) widths[i] = std::max(widths[i], row[i].size());
    for (size_t r = opts->no_heading ? 1 : 0; r < rows.size(); ++r) {
      const auto& row = rows[r];
      std::string line;
      for (size_t i = 0; i < row.size(); ++i) {
        line += row[i];
        if (i + 1 < row.size()) line += std::string(widths[i] - row[i].size() + 2, ' ');
      }
      std::printf("%s\n", line.c_str());
    }
  });
}

void add_rmi(CLI::App& parent, const std::string& name, GlobalOptions& global) {
  struct Options {
    bool force = false;
    bool all = false;
    std::vector<std::string> images;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = parent.add_subcommand(name, "Remove one or more images from local storage");
  cmd->add_flag("-f,--force", opts->force, "Force removal of the image and its containers");
  cmd->add_flag("-a,--all", opts->all, "Remove all images");
  cmd->add_option("image", opts->images, "Images to remove");
  cmd->callback([opts, &global] {
    engine::ImageStore store = store_for(global);
    std::vector<std::string> refs = opts->images;
    if (opts->all)
      for (const engine::ImageRecord& image : store.list()) refs.push_back(image.id);
    if (refs.empty()) throw ExitCodeError("image name or ID must be specified", 125);
    // Like Podman: go on with the other images, report each failure, exit with the last code.
    int code = 0;
    for (const std::string& ref : refs) {
      try {
        engine::RemoveResult result = store.remove(ref, opts->force);
        for (const std::string& n : result.untagged) std::printf("Untagged: %s\n", n.c_str());
        if (result.deleted) std::printf("Deleted: %s\n", result.deleted->c_str());
      } catch (const ExitCodeError& e) {
        if (opts->force && e.exit_code() == 1) continue;  // -f ignores unknown images
        std::fflush(stdout);
        std::fprintf(stderr, "Error: %s\n", e.what());
        code = e.exit_code();
      } catch (const Error& e) {
        std::fflush(stdout);
        std::fprintf(stderr, "Error: %s\n", e.what());
        code = 125;
      }
    }
    exit_code() = code;
  });
}

void add_inspect(CLI::App& parent, GlobalOptions& global) {
  auto images = std::make_shared<std::vector<std::string>>();
  auto format = std::make_shared<std::string>();
  CLI::App* cmd = parent.add_subcommand("inspect", "Display the configuration of an image");
  cmd->add_option("-f,--format", *format, "Output format: json or a Go template");
  cmd->add_option("image", *images, "Images to inspect")->required();
  cmd->callback([images, format, &global] {
    nlohmann::json inspected = inspect_images(global, *images);
    if (format->empty() || *format == "json") {
      std::printf("%s\n", inspected.dump(4).c_str());
      return;
    }
    for (const auto& image : inspected)
      std::printf("%s\n", render_go_template(*format, image).c_str());
  });
}

void add_tag(CLI::App& parent, GlobalOptions& global) {
  auto args = std::make_shared<std::vector<std::string>>();
  CLI::App* cmd = parent.add_subcommand("tag", "Add an additional name to a local image");
  cmd->add_option("image-and-names", *args, "IMAGE TARGET_NAME [TARGET_NAME...]")->required();
  cmd->callback([args, &global] {
    if (args->size() < 2)
      throw ExitCodeError("image name and at least one target name required", 125);
    engine::ImageStore store = store_for(global);
    for (size_t i = 1; i < args->size(); ++i) store.tag((*args)[0], (*args)[i]);
  });
}

void add_exists(CLI::App& parent, GlobalOptions& global) {
  auto ref = std::make_shared<std::string>();
  CLI::App* cmd = parent.add_subcommand("exists", "Check if an image exists in local storage");
  cmd->add_option("image", *ref, "Image")->required();
  cmd->callback([ref, &global] { exit_code() = store_for(global).find(*ref) ? 0 : 1; });
}

void add_prune(CLI::App& parent, GlobalOptions& global) {
  struct Options {
    bool all = false;
    bool force = false;
  };
  auto opts = std::make_shared<Options>();
  CLI::App* cmd = parent.add_subcommand("prune", "Remove unused images");
  cmd->add_flag("-a,--all", opts->all,
                "Remove all images not used by containers, not only unnamed");
  cmd->add_flag("-f,--force", opts->force, "Do not prompt for confirmation");
  cmd->callback([opts, &global] {
    if (!opts->force && ::isatty(STDIN_FILENO))
      throw ExitCodeError("not supported yet: interactive confirmation, use --force", 125);
    for (const std::string& id : store_for(global).prune(opts->all))
      std::printf("%s\n", id.c_str());
  });
}

}  // namespace

nlohmann::json inspect_images(const GlobalOptions& global, const std::vector<std::string>& refs) {
  engine::ImageStore store = store_for(global);
  nlohmann::json out = nlohmann::json::array();
  for (const std::string& ref : refs) out.push_back(store.inspect(store.resolve(ref)));
  return out;
}

void register_image_commands(CLI::App& app, GlobalOptions& global) {
  CLI::App* image = app.add_subcommand("image", "Manage images");
  image->require_subcommand(1);
  for (CLI::App* parent : {&app, image}) {
    add_import(*parent, global);
    add_load(*parent, global);
    add_save(*parent, global);
    add_tag(*parent, global);
  }
  add_images(app, "images", global);
  add_images(*image, "ls", global);
  add_images(*image, "list", global);
  add_rmi(app, "rmi", global);
  add_rmi(*image, "rm", global);
  add_inspect(*image, global);
  add_exists(*image, global);
  add_prune(*image, global);
}

}  // namespace cryo::cli
