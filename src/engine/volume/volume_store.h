// Named volumes (driver "local"): <root>/volumes/NAME/_data holds the data, volume.json the
// metadata. A container uses a volume when its <root>/containers/ID/container.json has an entry
// {"name": NAME, "destination": PATH, "rw": BOOL} in its "volumes" array, or (the runtime's
// record) an entry {"volume_name": NAME, ...} in "config"."mounts".
#pragma once

#include <map>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "engine/state/paths.h"

namespace cryo::engine {

struct Volume {
  std::string name;
  std::string driver = "local";
  std::string mountpoint;  // <root>/volumes/NAME/_data
  std::string created_at;  // RFC 3339 with nanoseconds, UTC
  std::map<std::string, std::string> labels;
  std::map<std::string, std::string> options;
  // True until the runtime has copied the image's content at the mount destination into the
  // volume on its first use (Podman's copy-up).
  bool needs_copy_up = true;
};

// Podman's `volume inspect` object.
nlohmann::ordered_json to_json(const Volume& volume);

class VolumeStore {
 public:
  explicit VolumeStore(StorePaths paths);

  // Creates a volume; an empty name gets a random 64-hex-digit one. An existing name is an
  // error (ExitCodeError 125) unless ignore_existing, which returns the existing volume.
  Volume create(const std::string& name, const std::map<std::string, std::string>& labels = {},
                const std::map<std::string, std::string>& options = {},
                bool ignore_existing = false);
  // The volume `name`, created when missing (`run -v name:/path`).
  Volume ensure(const std::string& name);
  std::optional<Volume> find(const std::string& name) const;
  // Throws ExitCodeError "no such volume NAME" (exit code 125; `volume rm` maps it to 1).
  Volume get(const std::string& name) const;
  std::vector<Volume> list() const;  // sorted by name
  // IDs of the containers whose container.json lists the volume.
  std::vector<std::string> users(const std::string& name) const;
  // Removes a volume and its data. In use: ExitCodeError with exit code 2 (Podman's); `force`
  // would remove those containers first, which the volume store cannot do: not supported yet.
  void remove(const std::string& name, bool force = false);
  // Removes every volume no container uses; returns their names.
  std::vector<std::string> prune();
  void set_needs_copy_up(const std::string& name, bool needs_copy_up);

  static bool valid_name(const std::string& name);
  std::string volume_dir(const std::string& name) const;

 private:
  void save(const Volume& volume) const;
  StorePaths paths_;
};

}  // namespace cryo::engine
