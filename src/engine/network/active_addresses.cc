#include "engine/network/active_addresses.h"

#include "common/fs.h"

namespace cryo::engine {

ActiveAddresses::ActiveAddresses(const std::string& bridge, const std::string& dir)
    : file_(dir + "/" + bridge + ".json") {
  if (!file_.data()["addresses"].is_object()) file_.data()["addresses"] = nlohmann::json::object();
}

std::set<std::string> ActiveAddresses::used_by_others(const std::string& root,
                                                      const std::string& container_id) {
  std::set<std::string> used;
  auto& addresses = file_.data()["addresses"];
  for (auto it = addresses.begin(); it != addresses.end();) {
    bool mine = it->value("root", "") == root && it->value("container", "") == container_id;
    if (mine) {
      ++it;
    } else if (!fs::exists(it->value("netns", ""))) {
      it = addresses.erase(it);  // stale
    } else {
      used.insert(it.key());
      ++it;
    }
  }
  return used;
}

void ActiveAddresses::claim(const std::string& ip, const std::string& root,
                            const std::string& container_id, const std::string& netns_path) {
  file_.data()["addresses"][ip] = {
      {"root", root}, {"container", container_id}, {"netns", netns_path}};
}

void ActiveAddresses::release(const std::string& root, const std::string& container_id) {
  auto& addresses = file_.data()["addresses"];
  for (auto it = addresses.begin(); it != addresses.end();) {
    if (it->value("root", "") == root && it->value("container", "") == container_id)
      it = addresses.erase(it);
    else
      ++it;
  }
}

}  // namespace cryo::engine
