#pragma once
/// \file
/// Text as a terminal shows it: UTF-8 made safe to print, its width in columns, and long
/// texts cut into messages at character boundaries. Widths come from the C library's
/// wcwidth() and need a UTF-8 LC_CTYPE (use_utf8_locale()); no Unicode tables of our own.

#include <cstddef>
#include <string>
#include <string_view>
#include <vector>

namespace jim::client {

/// Sets the locale from the environment (`setlocale(LC_ALL, "")`). When its character set is
/// not UTF-8 (no LANG/LC_* at all gives "C"), LC_CTYPE falls back to `C.UTF-8`: what jim sends
/// and receives is UTF-8 whatever the environment says. True when a UTF-8 LC_CTYPE is in force.
/// Call once, first thing in main (libedit and wcwidth() read it).
bool use_utf8_locale();

/// `s` as valid UTF-8 (RFC 3629: at most U+10FFFF, no surrogates, no overlong or 5- and
/// 6-byte forms): each maximal invalid subpart (the Unicode "substitution of maximal subparts"
/// practice, as WHATWG's decoder does) becomes U+FFFD. `replaced`, when given, is set to
/// whether anything was replaced. What jim sends is always valid UTF-8 (JSON requires it).
std::string valid_utf8(std::string_view s, bool* replaced = nullptr);

/// Text from the network, safe to print on one row: control characters become `^X` (tab a
/// space), C1 controls and the bidirectional embedding, override and isolate controls
/// (U+202A..U+202E, U+2066..U+2069: they can reorder what follows on the screen) become `?`.
/// Newlines are controls here too (`^J`); render_message() breaks lines itself.
std::string printable(std::string_view s);

/// Columns `utf8` takes on a terminal: wcwidth() of each character (East Asian wide
/// characters and most emoji 2, combining marks 0); a byte that is not valid UTF-8 counts 1,
/// as does a printable character wcwidth() does not know; control characters count 0.
std::size_t display_width(std::string_view utf8);

/// Where the cursor is after writing `utf8` from column 0 on a terminal `cols` wide that wraps
/// long lines: `row` counted from 0, `col` in 0..cols (`cols`: the row is full and the next
/// character goes to the next row). A wide character that does not fit at the end of a row
/// moves to the next one, as terminals do.
struct cursor_pos {
  std::size_t row = 0;
  std::size_t col = 0;
};
cursor_pos cursor_after(std::string_view utf8, std::size_t cols);

/// Cuts `text` into pieces of at most `max_bytes` bytes each (at least one character each,
/// whatever `max_bytes` is), at UTF-8 character boundaries, and not just before a zero-width
/// character (a combining mark stays with its base) or just after a zero-width joiner when
/// another boundary in the second half of the piece allows. Empty text gives no pieces.
std::vector<std::string> split_text(std::string_view text, std::size_t max_bytes);

}  // namespace jim::client
