// Image names, `--change` instructions and the human-readable columns of `images`.
#include <cctype>
#include <cmath>
#include <cstdio>
#include <ctime>

#include "common/error.h"
#include "common/strings.h"
#include "engine/image/image_store.h"

namespace cryo::engine {
namespace {

[[noreturn]] void invalid_reference(const std::string& name, const std::string& why) {
  throw ExitCodeError("invalid reference format: " + name + ": " + why, 125);
}

bool is_lower_alnum(char c) {
  return (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
}

// A repository path component: lowercase alphanumerics separated by ".", "_", "__" or "-"s.
bool valid_path_component(const std::string& c) {
  if (c.empty() || !is_lower_alnum(c.front()) || !is_lower_alnum(c.back())) return false;
  for (char ch : c)
    if (!is_lower_alnum(ch) && ch != '.' && ch != '_' && ch != '-') return false;
  return true;
}

bool valid_tag(const std::string& tag) {
  if (tag.empty() || tag.size() > 128) return false;
  if (!(std::isalnum(static_cast<unsigned char>(tag[0])) || tag[0] == '_')) return false;
  for (char ch : tag)
    if (!std::isalnum(static_cast<unsigned char>(ch)) && ch != '_' && ch != '.' && ch != '-')
      return false;
  return true;
}

// Splits shell-like words: whitespace separates, quotes group, backslash escapes.
std::vector<std::string> split_words(const std::string& s, const std::string& change) {
  std::vector<std::string> words;
  std::string cur;
  bool in_word = false;
  char quote = 0;
  for (size_t i = 0; i < s.size(); ++i) {
    char c = s[i];
    if (quote) {
      if (c == quote) {
        quote = 0;
      } else if (c == '\\' && quote == '"' && i + 1 < s.size()) {
        cur.push_back(s[++i]);
      } else {
        cur.push_back(c);
      }
    } else if (c == '"' || c == '\'') {
      quote = c;
      in_word = true;
    } else if (c == '\\' && i + 1 < s.size()) {
      cur.push_back(s[++i]);
      in_word = true;
    } else if (std::isspace(static_cast<unsigned char>(c))) {
      if (in_word) words.push_back(std::move(cur));
      cur.clear();
      in_word = false;
    } else {
      cur.push_back(c);
      in_word = true;
    }
  }
  if (quote) throw ExitCodeError("--change \"" + change + "\": unterminated quote", 125);
  if (in_word) words.push_back(std::move(cur));
  return words;
}

// JSON form ["a","b"] or shell form (run by /bin/sh -c), as in a Dockerfile.
nlohmann::json command_value(const std::string& value, const std::string& change) {
  if (!value.empty() && value.front() == '[') {
    nlohmann::json parsed = nlohmann::json::parse(value, nullptr, false);
    if (parsed.is_discarded() || !parsed.is_array())
      throw ExitCodeError("--change \"" + change + "\": malformed JSON array", 125);
    for (const auto& item : parsed)
      if (!item.is_string())
        throw ExitCodeError("--change \"" + change + "\": array items must be strings", 125);
    return parsed;
  }
  return nlohmann::json::array({"/bin/sh", "-c", value});
}

// KEY=value pairs ("A=1 B='two words'"), or the legacy single "KEY value" form.
std::vector<std::pair<std::string, std::string>> key_values(const std::string& value,
                                                            const std::string& change) {
  std::vector<std::pair<std::string, std::string>> out;
  std::vector<std::string> words = split_words(value, change);
  if (words.empty()) throw ExitCodeError("--change \"" + change + "\": missing value", 125);
  if (words[0].find('=') == std::string::npos) {
    std::string key = words[0];
    size_t rest = value.find(key) + key.size();
    out.emplace_back(key, std::string(trim(value.substr(rest))));
    return out;
  }
  for (const std::string& w : words) {
    size_t eq = w.find('=');
    if (eq == std::string::npos || eq == 0)
      throw ExitCodeError("--change \"" + change + "\": expected KEY=value, got \"" + w + "\"",
                          125);
    out.emplace_back(w.substr(0, eq), w.substr(eq + 1));
  }
  return out;
}

std::vector<std::string> string_list(const nlohmann::json& j, const char* key) {
  std::vector<std::string> out;
  if (j.contains(key) && j[key].is_array())
    for (const auto& item : j[key])
      if (item.is_string()) out.push_back(item.get<std::string>());
  return out;
}

std::string string_field(const nlohmann::json& j, const char* key) {
  return j.contains(key) && j[key].is_string() ? j[key].get<std::string>() : std::string();
}

}  // namespace

std::string normalize_image_name(const std::string& name, const std::string& default_domain) {
  if (name.empty()) invalid_reference(name, "empty name");
  std::string rest = name;
  std::string digest;
  if (size_t at = rest.find('@'); at != std::string::npos) {
    digest = rest.substr(at);
    rest = rest.substr(0, at);
  }
  std::string domain = default_domain;
  size_t slash = rest.find('/');
  if (slash != std::string::npos) {
    std::string first = rest.substr(0, slash);
    if (first.find('.') != std::string::npos || first.find(':') != std::string::npos ||
        first == "localhost") {
      domain = first;
      rest = rest.substr(slash + 1);
    }
  }
  std::string tag;
  size_t colon = rest.rfind(':');
  if (colon != std::string::npos && rest.find('/', colon) == std::string::npos) {
    tag = rest.substr(colon + 1);
    rest = rest.substr(0, colon);
    if (!valid_tag(tag)) invalid_reference(name, "invalid tag \"" + tag + "\"");
  }
  for (const std::string& c : split(rest, '/')) {
    for (char ch : c)
      if (ch >= 'A' && ch <= 'Z') invalid_reference(name, "repository name must be lowercase");
    if (!valid_path_component(c)) invalid_reference(name, "invalid repository name");
  }
  if (domain == "docker.io" && rest.find('/') == std::string::npos) rest = "library/" + rest;
  if (!digest.empty()) return domain + "/" + rest + (tag.empty() ? "" : ":" + tag) + digest;
  return domain + "/" + rest + ":" + (tag.empty() ? "latest" : tag);
}

void apply_image_change(nlohmann::json& oci_config, const std::string& change) {
  std::string text(trim(change));
  size_t split_at = text.find_first_of(" \t=");
  if (split_at == std::string::npos || split_at == 0)
    throw ExitCodeError("--change \"" + change + "\": expected \"INSTRUCTION value\"", 125);
  std::string instruction = text.substr(0, split_at);
  for (char& c : instruction) c = static_cast<char>(std::toupper(static_cast<unsigned char>(c)));
  std::string value(trim(text.substr(split_at + 1)));
  if (value.empty()) throw ExitCodeError("--change \"" + change + "\": missing value", 125);

  if (!oci_config.contains("config") || !oci_config["config"].is_object())
    oci_config["config"] = nlohmann::json::object();
  nlohmann::json& config = oci_config["config"];

  if (instruction == "CMD") {
    config["Cmd"] = command_value(value, change);
  } else if (instruction == "ENTRYPOINT") {
    config["Entrypoint"] = command_value(value, change);
  } else if (instruction == "ENV") {
    std::vector<std::string> env = string_list(config, "Env");
    for (const auto& [key, val] : key_values(value, change)) {
      std::string prefix = key + "=";
      std::erase_if(env, [&](const std::string& e) { return starts_with(e, prefix); });
      env.push_back(prefix + val);
    }
    config["Env"] = env;
  } else if (instruction == "LABEL") {
    if (!config.contains("Labels") || !config["Labels"].is_object())
      config["Labels"] = nlohmann::json::object();
    for (const auto& [key, val] : key_values(value, change)) config["Labels"][key] = val;
  } else if (instruction == "WORKDIR") {
    config["WorkingDir"] = value;
  } else if (instruction == "USER") {
    config["User"] = value;
  } else if (instruction == "STOPSIGNAL") {
    config["StopSignal"] = value;
  } else if (instruction == "EXPOSE") {
    if (!config.contains("ExposedPorts") || !config["ExposedPorts"].is_object())
      config["ExposedPorts"] = nlohmann::json::object();
    for (std::string port : split_words(value, change)) {
      std::string number = port.substr(0, port.find('/'));
      if (number.empty() || number.find_first_not_of("0123456789-") != std::string::npos)
        throw ExitCodeError("--change \"" + change + "\": invalid port \"" + port + "\"", 125);
      if (port.find('/') == std::string::npos) port += "/tcp";
      config["ExposedPorts"][port] = nlohmann::json::object();
    }
  } else if (instruction == "VOLUME") {
    if (!config.contains("Volumes") || !config["Volumes"].is_object())
      config["Volumes"] = nlohmann::json::object();
    nlohmann::json paths = value.front() == '[' ? command_value(value, change)
                                                : nlohmann::json(split_words(value, change));
    for (const auto& p : paths) config["Volumes"][p.get<std::string>()] = nlohmann::json::object();
  } else {
    throw ExitCodeError("--change \"" + change + "\": unsupported instruction \"" + instruction +
                            "\" (supported: CMD, ENTRYPOINT, ENV, EXPOSE, LABEL, STOPSIGNAL, "
                            "USER, VOLUME, WORKDIR)",
                        125);
  }
}

ImageConfig image_config_from_oci(const nlohmann::json& oci_config) {
  ImageConfig out;
  if (!oci_config.contains("config") || !oci_config["config"].is_object()) return out;
  const nlohmann::json& c = oci_config["config"];
  out.cmd = string_list(c, "Cmd");
  out.entrypoint = string_list(c, "Entrypoint");
  out.env = string_list(c, "Env");
  out.working_dir = string_field(c, "WorkingDir");
  out.user = string_field(c, "User");
  out.stop_signal = string_field(c, "StopSignal");
  if (c.contains("ExposedPorts") && c["ExposedPorts"].is_object())
    for (const auto& [port, unused] : c["ExposedPorts"].items()) out.exposed_ports.push_back(port);
  if (c.contains("Volumes") && c["Volumes"].is_object())
    for (const auto& [path, unused] : c["Volumes"].items()) out.volumes.push_back(path);
  if (c.contains("Labels") && c["Labels"].is_object())
    for (const auto& [key, val] : c["Labels"].items())
      if (val.is_string()) out.labels[key] = val.get<std::string>();
  return out;
}

std::string human_duration_since(int64_t then_seconds, int64_t now_seconds) {
  int64_t seconds = now_seconds - then_seconds;
  if (seconds < 0) seconds = 0;
  int64_t minutes = seconds / 60;
  int64_t hours = static_cast<int64_t>(std::llround(static_cast<double>(seconds) / 3600.0));
  std::string text;
  if (seconds < 1) {
    text = "Less than a second";
  } else if (seconds == 1) {
    text = "1 second";
  } else if (seconds < 60) {
    text = std::to_string(seconds) + " seconds";
  } else if (minutes == 1) {
    text = "About a minute";
  } else if (minutes < 60) {
    text = std::to_string(minutes) + " minutes";
  } else if (hours == 1) {
    text = "About an hour";
  } else if (hours < 48) {
    text = std::to_string(hours) + " hours";
  } else if (hours < 24 * 7 * 2) {
    text = std::to_string(hours / 24) + " days";
  } else if (hours < 24 * 30 * 2) {
    text = std::to_string(hours / 24 / 7) + " weeks";
  } else if (hours < 24 * 365 * 2) {
    text = std::to_string(hours / 24 / 30) + " months";
  } else {
    text = std::to_string(hours / 24 / 365) + " years";
  }
  return text + " ago";
}

std::string rfc3339_time(int64_t seconds, long nanos) {
  time_t t = static_cast<time_t>(seconds);
  struct tm tm;
  gmtime_r(&t, &tm);
  char buf[64];
  int n = std::snprintf(buf, sizeof buf, "%04d-%02d-%02dT%02d:%02d:%02d", tm.tm_year + 1900,
                        tm.tm_mon + 1, tm.tm_mday, tm.tm_hour, tm.tm_min, tm.tm_sec);
  if (nanos != 0) std::snprintf(buf + n, sizeof buf - static_cast<size_t>(n), ".%09ld", nanos);
  return std::string(buf) + "Z";
}

std::string human_size(uint64_t bytes) {
  static const char* kUnits[] = {"B", "kB", "MB", "GB", "TB", "PB"};
  double value = static_cast<double>(bytes);
  size_t unit = 0;
  while (value >= 1000.0 && unit + 1 < std::size(kUnits)) {
    value /= 1000.0;
    ++unit;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.3g %s", value, kUnits[unit]);
  return buf;
}

}  // namespace cryo::engine
