#include "log_limiter.hpp"
#include "logging.hpp"

#include <boost/asio/detail/throw_error.hpp>
#include <boost/asio/error.hpp>
#include <boost/system/system_error.hpp>

#include <catch2/catch.hpp>

#include <stdexcept>
#include <string>

using jim::server::count_of;
using jim::server::escape_for_people;
using jim::server::plain_error;
using namespace std::string_literals;

TEST_CASE("Text for people: ordinary text is left exactly as it is", "[logging]") {
  CHECK(escape_for_people("alice (23:56): Hello, World!") == "alice (23:56): Hello, World!");
  CHECK(escape_for_people("") == "");
  CHECK(escape_for_people("Grüße, 你好, emoji 😀") == "Grüße, 你好, emoji 😀");
  // A backslash is doubled, so typed text cannot pass for an escaped control.
  CHECK(escape_for_people("C:\\dir") == "C:\\\\dir");
  CHECK(escape_for_people("a\\nb") == "a\\\\nb");
  CHECK(escape_for_people("a\nb") == "a\\nb");
  // Bidi text itself (Hebrew, Arabic letters) is fine; only the controls are escaped.
  CHECK(escape_for_people("שלום مرحبا") == "שלום مرحبا");
}

TEST_CASE("Text for people: controls become visible escapes", "[logging]") {
  SECTION("terminal escape sequences and C0 controls") {
    CHECK(escape_for_people("\x1b[2Jgone") == "\\x1b[2Jgone");
    CHECK(escape_for_people("a\nb\rc\td") == "a\\nb\\rc\\td");
    CHECK(escape_for_people("bell\a nul"s + '\0' + "!") == "bell\\x07 nul\\x00!");
    CHECK(escape_for_people("del\x7f") == "del\\x7f");
  }
  SECTION("a forged log line stays on the line of the real one") {
    const auto out =
        escape_for_people("hi\n2026-01-01 00:00:00.000 info hub register admin registered");
    CHECK(out.find('\n') == std::string::npos);
    CHECK(out.rfind("hi\\n2026", 0) == 0);
  }
  SECTION("C1 controls (as UTF-8) and the 8-bit CSI") {
    CHECK(escape_for_people("\xc2\x9b"
                            "2J") == "\\u009b2J");
    CHECK(escape_for_people("\xc2\x85") == "\\u0085");
  }
  SECTION("Unicode bidi controls and line separators") {
    CHECK(escape_for_people("abc\u202Edcb") == "abc\\u202edcb");
    for (char const* s : {"\u202A", "\u202B", "\u202C", "\u202D", "\u202E", "\u2066", "\u2067",
                          "\u2068", "\u2069", "\u200E", "\u200F", "\u061C", "\u2028", "\u2029"}) {
      const auto out = escape_for_people(s);
      CHECK(out.size() == 6);
      CHECK(out.rfind("\\u", 0) == 0);
    }
  }
  SECTION("bytes that are not valid UTF-8") {
    CHECK(escape_for_people("\xff\xfe") == "\\xff\\xfe");
    CHECK(escape_for_people("a\xc3") == "a\\xc3");                           // truncated
    CHECK(escape_for_people("\xc0\xaf") == "\\xc0\\xaf");                    // overlong '/'
    CHECK(escape_for_people("\xed\xa0\x80") == "\\xed\\xa0\\x80");           // a surrogate
    CHECK(escape_for_people("\xf4\x90\x80\x80") == "\\xf4\\x90\\x80\\x80");  // above U+10FFFF
    CHECK(escape_for_people("\xe2\x82x") == "\\xe2\\x82x");                  // cut by an ASCII byte
  }
  SECTION("whatever the input, the output is printable ASCII or valid, harmless UTF-8") {
    std::string all;
    for (int b = 0; b < 256; ++b) all += static_cast<char>(b);
    const auto out = escape_for_people(all + all);
    for (unsigned char ch : out) CHECK((ch >= 0x20 && ch < 0x7f));
  }
}

TEST_CASE("Counts read right in the singular and the plural", "[logging]") {
  CHECK(count_of(0, "room") == "0 rooms");
  CHECK(count_of(1, "room") == "1 room");
  CHECK(count_of(2, "account") == "2 accounts");
  CHECK(count_of(1, "match", "matches") == "1 match");
  CHECK(count_of(3, "match", "matches") == "3 matches");
}

TEST_CASE("Error texts lose Boost's source location", "[logging]") {
  try {
    boost::asio::detail::throw_error(boost::asio::error::address_in_use, "bind");
    FAIL("no throw");
  } catch (std::exception const& e) {
    const auto text = plain_error(e);
    CHECK(text.find("bind") != std::string::npos);
    CHECK(text.find("/usr/include") == std::string::npos);
    CHECK(text.find('[') == std::string::npos);
  }
  CHECK(plain_error(std::runtime_error("disk [sda] full")) == "disk [sda] full");
}

TEST_CASE("log_limiter lets one line through per period and counts those held back",
          "[logging]") {
  using namespace std::chrono_literals;
  jim::server::log_limiter limit(1s);
  const auto t0 = jim::server::log_limiter::clock::time_point{} + 100s;
  CHECK(limit.admit(t0) == 0u);  // the first line: nothing held back
  CHECK_FALSE(limit.admit(t0 + 1ms).has_value());
  CHECK_FALSE(limit.admit(t0 + 999ms).has_value());
  CHECK(limit.admit(t0 + 1s) == 2u);  // a period after the last line: two held back
  CHECK_FALSE(limit.admit(t0 + 1500ms).has_value());
  CHECK(limit.admit(t0 + 5s) == 1u);
  CHECK(limit.admit(t0 + 10s) == 0u);
}
