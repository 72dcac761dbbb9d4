#pragma once
/// \file
/// Small text helpers for option values and HTTP header values.

#include <string_view>
#include <vector>

namespace jim::server {

/// `s` without the spaces and tabs at either end (HTTP's optional white space, RFC 9110 §5.6.3).
inline std::string_view trim_blanks(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t')) s.remove_suffix(1);
  return s;
}

/// The items of the comma-separated list `list`, each trimmed (trim_blanks), in order; empty
/// ones included (`""` is one empty item, `"a,,b"` three), views into `list`.
inline std::vector<std::string_view> comma_items(std::string_view list) {
  std::vector<std::string_view> out;
  for (;;) {
    const auto comma = list.find(',');
    out.push_back(trim_blanks(list.substr(0, comma)));
    if (comma == std::string_view::npos) return out;
    list.remove_prefix(comma + 1);
  }
}

}  // namespace jim::server
