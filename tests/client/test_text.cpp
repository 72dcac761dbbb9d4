// Text as jim shows it: widths, safe printing, multi-line messages, splitting long texts,
// Tab completion and what the input history keeps.
#include "commands.hpp"
#include "text.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include <clocale>
#include <cstdlib>
#include <ctime>

using namespace jim::client;
namespace json = boost::json;

namespace {

/// wcwidth() needs a UTF-8 LC_CTYPE, as jim sets one at start.
struct utf8_ctype {
  utf8_ctype() { REQUIRE(std::setlocale(LC_CTYPE, "C.UTF-8")); }
};

std::string joined(std::vector<std::string> const& pieces) {
  std::string all;
  for (auto const& p : pieces) all += p;
  return all;
}

}  // namespace

TEST_CASE("Display width: wide characters 2 columns, combining marks 0", "[client][text]") {
  utf8_ctype loc;
  CHECK(display_width("hello") == 5);
  CHECK(display_width("café") == 4);
  CHECK(display_width("Привет") == 6);
  CHECK(display_width("日本語") == 6);
  CHECK(display_width("👋") == 2);
  CHECK(display_width("e\xcc\x81") == 1);  // e + COMBINING ACUTE ACCENT
  CHECK(display_width("a\x1b") == 1);      // a control takes no column
  CHECK(display_width("\xff") == 1);       // not UTF-8: one column for '?'
}

TEST_CASE("The cursor position follows wrapping and wide characters", "[client][text]") {
  utf8_ctype loc;
  CHECK(cursor_after("abc", 80).row == 0);
  CHECK(cursor_after("abc", 80).col == 3);
  CHECK(cursor_after(std::string(80, 'x'), 80).row == 0);
  CHECK(cursor_after(std::string(80, 'x'), 80).col == 80);
  CHECK(cursor_after(std::string(81, 'x'), 80).row == 1);
  // 10 columns of prompt and 40 CJK characters: 90 columns, two rows.
  std::string line = "#general> ";
  for (int i = 0; i < 40; ++i) line += "語";
  CHECK(cursor_after(line, 80).row == 1);
  CHECK(cursor_after(line, 80).col == 10);
  // A wide character never straddles two rows: 79 columns then one more wide one.
  CHECK(cursor_after(std::string(79, 'x') + "語", 80).row == 1);
  CHECK(cursor_after(std::string(79, 'x') + "語", 80).col == 2);
}

TEST_CASE("Printable text: controls shown, bidi overrides neutralised, the rest kept", "[client][text]") {
  CHECK(printable("café Привет 👋 日本") == "café Привет 👋 日本");
  CHECK(printable("a\x1b[2Jb") == "a^[[2Jb");
  CHECK(printable("x\xc2\x85y") == "x?y");  // C1 NEL
  // RIGHT-TO-LEFT OVERRIDE, LEFT-TO-RIGHT EMBEDDING, POP, RIGHT-TO-LEFT ISOLATE, POP ISOLATE
  CHECK(printable("abc\xe2\x80\xae" "def") == "abc?def");
  CHECK(printable("\xe2\x80\xaa" "a\xe2\x80\xac") == "?a?");
  CHECK(printable("\xe2\x81\xa7" "a\xe2\x81\xa9") == "?a?");
  CHECK(printable("\xe2\x80\x8d") == "\xe2\x80\x8d");  // ZERO WIDTH JOINER stays (emoji sequences)
  CHECK(printable("bad\xff") == "bad?");
}

TEST_CASE("A multi-line message shows its lines indented under the first", "[client][format]") {
  setenv("TZ", "UTC", 1);
  tzset();
  constexpr std::int64_t noon = 1700000000 - 1700000000 % 86400 + 12 * 3600;
  auto m = json::parse(R"({"action":"msg","from":"bob","to":"#general","message":"one\ntwo\r\nthree\n"})").as_object();
  m["time"] = noon;
  CHECK(render_message(m, "alice", "#general", false, noon).text ==
        "bob (12:00): one\n"
        "             two\n"
        "             three");
}

TEST_CASE("Long texts are split at character boundaries", "[client][text]") {
  utf8_ctype loc;
  CHECK(split_text("", 10).empty());
  CHECK(split_text("short", 10) == std::vector<std::string>{"short"});
  CHECK(split_text("abcdefghij", 4) == std::vector<std::string>{"abcd", "efgh", "ij"});

  // Two-byte letters never cut in half, whatever the bound.
  const std::string cyrillic = "ПриветПривет";  // 12 letters, 24 bytes
  for (std::size_t max = 2; max <= 25; ++max) {
    auto pieces = split_text(cyrillic, max);
    INFO("max " << max);
    CHECK(joined(pieces) == cyrillic);
    for (auto const& p : pieces) {
      CHECK(p.size() <= max);
      CHECK(p.size() % 2 == 0);
    }
  }
  // An emoji is four bytes: a bound of 5 takes one at a time.
  CHECK(split_text("👋👋👋", 5) == std::vector<std::string>{"👋", "👋", "👋"});
  // Too small a bound still makes progress, one character a piece.
  CHECK(split_text("👋a", 2) == std::vector<std::string>{"👋", "a"});
  // A combining mark stays with its letter: é written as e + U+0301 (2 bytes).
  CHECK(split_text("abce\xcc\x81xyz", 4) == std::vector<std::string>{"abc", "e\xcc\x81x", "yz"});
}

TEST_CASE("The input history keeps a /join without its password", "[client][commands]") {
  CHECK(for_history("/join dev s3cret") == "/join dev");
  CHECK(for_history("/JOIN  dev   s3cret ") == "/join dev");
  CHECK(for_history("/join dev") == "/join dev");
  CHECK(for_history("hello /join dev pw") == "hello /join dev pw");
  CHECK(for_history("/msg bob hi") == "/msg bob hi");
}

TEST_CASE("Tab completes commands, names and rooms", "[client][commands]") {
  const std::vector<std::string> names{"Alice", "alex", "bob"};
  const std::vector<std::string> rooms{"#dev", "#design", "#general"};
  using v = std::vector<std::string>;
  CHECK(completions("", "/j", names, rooms) == v{"/join"});
  CHECK(completions("", "/h", names, rooms) == v{"/help", "/history"});
  CHECK(completions("", "/", names, rooms).size() == 35);
  CHECK(completions("", "/s", names, rooms) == v{"/scheduled", "/switch"});
  CHECK(completions("/query ", "B", names, rooms) == v{"bob"});
  CHECK(completions("/switch ", "#d", names, rooms) == v{"#design", "#dev"});
  CHECK(completions("/msg ", "b", names, rooms) == v{"bob"});
  CHECK(completions("/MSG ", "al", names, rooms) == v{"Alice", "alex"});
  CHECK(completions("/msg bob ", "a", names, rooms) == v{"Alice", "alex"});
  CHECK(completions("/join ", "de", names, rooms) == v{"design", "dev"});
  CHECK(completions("/join ", "#g", names, rooms) == v{"#general"});
  CHECK(completions("/join dev ", "x", names, rooms).empty());  // a password: nothing to offer
  CHECK(completions("/invite ", "B", names, rooms) == v{"bob"});
  CHECK(completions("/invite bob ", "d", names, rooms) == v{"design", "dev"});
  CHECK(completions("/history ", "#de", names, rooms) == v{"#design", "#dev"});
  CHECK(completions("/history ", "b", names, rooms) == v{"bob"});
  CHECK(completions("", "ali", names, rooms) == v{"Alice"});  // a chat line: names
  CHECK(completions("thanks ", "#d", names, rooms) == v{"#design", "#dev"});
  CHECK(completions("/rooms ", "a", names, rooms).empty());
  CHECK(completions("", "zz", names, rooms).empty());
}

TEST_CASE("Lines jim is given leave as valid UTF-8: invalid sequences become U+FFFD", "[client][text]") {
  const std::string r = "\xEF\xBF\xBD";
  bool replaced = true;
  CHECK(valid_utf8("ok é € 😀", &replaced) == "ok é € 😀");
  CHECK_FALSE(replaced);
  CHECK(valid_utf8("\xF4\x8F\xBF\xBF", &replaced) == "\xF4\x8F\xBF\xBF");  // U+10FFFF, the last
  CHECK_FALSE(replaced);
  // Issue 16: beyond U+10FFFF, the 5-byte form, a stray byte (each maximal subpart once).
  CHECK(valid_utf8("a\xF4\x90\x80\x80z", &replaced) == "a" + r + r + r + r + "z");
  CHECK(replaced);
  CHECK(valid_utf8("\xF8\x88\x80\x80\x80") == r + r + r + r + r);
  CHECK(valid_utf8("ok\xFF" "bad") == "ok" + r + "bad");
  // Surrogates, overlong forms, a sequence cut short (its valid prefix is one subpart).
  CHECK(valid_utf8("\xED\xA0\x80") == r + r + r);
  CHECK(valid_utf8("\xC0\xAF") == r + r);
  CHECK(valid_utf8("\xE0\x80\xAF") == r + r + r);
  CHECK(valid_utf8("\xE2\x82x") == r + "x");
  CHECK(valid_utf8("\xF0\x9F\x98") == r);
  CHECK(valid_utf8("") == "");
}
