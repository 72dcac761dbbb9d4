#pragma once
/// What the client's unit tests share: JSON literals, a fixed clock and time zone, the text of
/// shown lines, the request a typed line becomes and what the outbox sends.

#include "commands.hpp"

#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <cstdint>
#include <cstdlib>
#include <ctime>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
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
inline std::vector<std::string> texts(chat_state::reaction const& r) { return texts(r.lines); }

/// The request typed line `line` becomes (fails the test when it becomes something else: a
/// usage hint, nothing); `now` (unix seconds) is the clock of `/at`, by default the real one.
inline boost::json::object request_of(std::string_view line,
                                      std::optional<std::int64_t> now = std::nullopt) {
  auto in = now ? parse_input(line, *now) : parse_input(line);
  auto* r = std::get_if<send_request>(&in);
  INFO("line: " << line);
  REQUIRE(r);
  return r->frame;
}

/// What the outbox of `s` sends now, as compact JSON texts.
inline std::vector<std::string> sends(chat_state& s) {
  std::vector<std::string> out;
  for (auto const& f : s.take_sendable(chat_state::clock::now()))
    out.push_back(boost::json::serialize(f));
  return out;
}

}  // namespace jim::client::test
