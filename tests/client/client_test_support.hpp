#pragma once
/// What the client's unit tests share: JSON literals, a fixed clock and time zone, and the
/// text of shown lines.

#include "commands.hpp"

#include <boost/json.hpp>

#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <string>
#include <string_view>
#include <vector>

namespace jim::client::test {

/// `text` (a JSON object literal) parsed.
inline boost::json::object obj(std::string_view text) {
  return boost::json::parse(text).as_object();
}

/// Some day at 12:00 UTC (unix seconds), the tests' "now".
constexpr std::int64_t noon = 1700000000 - 1700000000 % 86400 + 12 * 3600;

/// Sets the process's time zone to UTC while constructed (local times in tests are UTC).
struct utc {
  utc() {
    setenv("TZ", "UTC", 1);
    tzset();
  }
};

/// The text of each line, in order.
inline std::vector<std::string> texts(std::vector<out_line> const& lines) {
  std::vector<std::string> out;
  for (auto const& l : lines) out.push_back(l.text);
  return out;
}

}  // namespace jim::client::test
