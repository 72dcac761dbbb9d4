// The small text helpers (text.hpp) and what uses them: the WebSocket Origin check against
// --http-origins (http.hpp origin_allowed); --metrics-allow lists are in test_options.cpp.
#include "http.hpp"
#include "text.hpp"

#include <catch2/catch.hpp>

#include <string_view>
#include <vector>

using namespace jim::server;
using sv_list = std::vector<std::string_view>;

TEST_CASE("trim_blanks takes spaces and tabs off both ends, nothing else", "[text]") {
  CHECK(trim_blanks("") == "");
  CHECK(trim_blanks(" \t ") == "");
  CHECK(trim_blanks("\t a b \t") == "a b");
  CHECK(trim_blanks("\r\na\n") == "\r\na\n");
}

TEST_CASE("comma_items splits a list and trims each item, empty ones kept", "[text]") {
  CHECK(comma_items("") == sv_list{""});
  CHECK(comma_items("a") == sv_list{"a"});
  CHECK(comma_items(" a , b\t,c ") == sv_list{"a", "b", "c"});
  CHECK(comma_items("a,,b,") == sv_list{"a", "", "b", ""});
}

TEST_CASE("A WebSocket Origin is allowed without a list when it names the Host, else if listed",
          "[text][http]") {
  // No Origin header: not a browser.
  CHECK(origin_allowed("", "chat.example:7780", ""));
  CHECK(origin_allowed("  ", "chat.example:7780", "https://other.example"));
  // No list: the same host and port as the Host header (case-insensitive, a trailing '/').
  CHECK(origin_allowed("http://chat.example:7780", "chat.example:7780", ""));
  CHECK(origin_allowed("https://Chat.Example:7780/", " chat.example:7780 ", " \t"));
  CHECK_FALSE(origin_allowed("http://evil.example", "chat.example:7780", ""));
  CHECK_FALSE(origin_allowed("chat.example:7780", "chat.example:7780", ""));  // no scheme
  // A list: only its entries (trimmed, case-insensitive), the Host no longer counts.
  const std::string_view list = " https://a.example , https://B.example:8443,,";
  CHECK(origin_allowed("https://a.example", "chat.example", list));
  CHECK(origin_allowed("https://b.example:8443", "chat.example", list));
  CHECK(origin_allowed(" https://a.example\t", "chat.example", list));
  CHECK_FALSE(origin_allowed("https://chat.example", "chat.example", list));
  CHECK_FALSE(origin_allowed("https://a.example:444", "chat.example", list));
}
