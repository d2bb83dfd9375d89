#include "engine/network/active_addresses.h"

#include "common/fs.h"

namespace cryo::engine {

namespace {

std::string key(const std::string& root, const std::string& container_id) {
  return root + "|" + container_id;
}

bool root_still_leases(const nlohmann::json& entry, const std::string& bridge_dir_name) {
  auto text = fs::read_file_if_exists(entry.value("root", "") + "/networks/" + bridge_dir_name +
                                      "/leases.json");
  if (!text) return false;
  nlohmann::json leases = nlohmann::json::parse(*text, nullptr, /*allow_exceptions=*/false);
  return leases.is_object() && leases.contains("leases") && leases["leases"].is_object() &&
         leases["leases"].contains(entry.value("container", ""));
}

}  // namespace

ActiveAddresses::ActiveAddresses(const std::string& bridge, const std::string& dir)
    : file_(dir + "/" + bridge + ".json", LockedJsonFile::Durability::kLiveState) {
  auto& data = file_.data();
  if (!data["containers"].is_object()) data["containers"] = nlohmann::json::object();
  data["bridge"] = bridge;
  data.erase("addresses");  // the format of an earlier version
}

OtherAddresses ActiveAddresses::others(const std::string& root, const std::string& container_id) {
  OtherAddresses result;
  std::string bridge = file_.data()["bridge"].get<std::string>();
  auto& containers = file_.data()["containers"];
  for (auto it = containers.begin(); it != containers.end();) {
    if (it.key() == key(root, container_id)) {
      ++it;
      continue;
    }
    bool live = it->value("live", false);
    bool stale = live ? !fs::exists(it->value("netns", "")) : !root_still_leases(*it, bridge);
    if (stale) {
      it = containers.erase(it);
      continue;
    }
    (live ? result.live : result.leased).insert(it->value("ip", ""));
    ++it;
  }
  return result;
}

void ActiveAddresses::claim(const std::string& ip, const std::string& root,
                            const std::string& container_id, const std::string& netns_path) {
  file_.data()["containers"][key(root, container_id)] = {{"root", root},
                                                         {"container", container_id},
                                                         {"ip", ip},
                                                         {"netns", netns_path},
                                                         {"live", true}};
}

void ActiveAddresses::deactivate(const std::string& root, const std::string& container_id) {
  auto& containers = file_.data()["containers"];
  auto it = containers.find(key(root, container_id));
  if (it == containers.end()) return;
  (*it)["live"] = false;
  (*it)["netns"] = "";
}

void ActiveAddresses::release(const std::string& root, const std::string& container_id) {
  file_.data()["containers"].erase(key(root, container_id));
}

}  // namespace cryo::engine
