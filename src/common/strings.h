#pragma once

#include <string>
#include <string_view>
#include <vector>

namespace cryo {

std::vector<std::string> split(std::string_view s, char sep);
std::string_view trim(std::string_view s);
bool starts_with(std::string_view s, std::string_view prefix);
std::string join(const std::vector<std::string>& parts, std::string_view sep);
// Random lowercase hex string of `bytes` bytes (2*bytes characters), from getrandom().
std::string random_hex(size_t bytes);

}  // namespace cryo
