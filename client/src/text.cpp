#include "text.hpp"

#include <clocale>
#include <cstring>
#include <cwchar>
#include <langinfo.h>

namespace jim::client {

namespace {

/// One decoded UTF-8 sequence: its code point and length, or `valid == false` and length 1
/// for a byte that does not start a well-formed sequence.
struct decoded {
  char32_t cp = 0;
  std::size_t len = 1;
  bool valid = false;
};

decoded decode(std::string_view s, std::size_t at) {
  const auto b0 = static_cast<unsigned char>(s[at]);
  if (b0 < 0x80) return {b0, 1, true};
  std::size_t len = 0;
  char32_t cp = 0;
  if (b0 >= 0xc2 && b0 <= 0xdf) {
    len = 2;
    cp = b0 & 0x1fu;
  } else if (b0 >= 0xe0 && b0 <= 0xef) {
    len = 3;
    cp = b0 & 0x0fu;
  } else if (b0 >= 0xf0 && b0 <= 0xf4) {
    len = 4;
    cp = b0 & 0x07u;
  } else {
    return {};
  }
  if (at + len > s.size()) return {};
  for (std::size_t i = 1; i < len; ++i) {
    const auto b = static_cast<unsigned char>(s[at + i]);
    if ((b & 0xc0u) != 0x80u) return {};
    cp = (cp << 6) | (b & 0x3fu);
  }
  // Overlong forms, surrogates and code points past U+10FFFF are not characters.
  if ((len == 3 && cp < 0x800) || (len == 4 && (cp < 0x10000 || cp > 0x10ffff)) ||
      (cp >= 0xd800 && cp <= 0xdfff))
    return {};
  return {cp, len, true};
}

bool is_control(char32_t cp) { return cp < 0x20 || (cp >= 0x7f && cp < 0xa0); }

/// Columns of one decoded character (see display_width()).
std::size_t columns_of(decoded const& d) {
  if (!d.valid) return 1;
  if (is_control(d.cp)) return 0;
  const int w = ::wcwidth(static_cast<wchar_t>(d.cp));
  return w < 0 ? 1 : static_cast<std::size_t>(w);
}

bool zero_width(decoded const& d) { return d.valid && !is_control(d.cp) && ::wcwidth(static_cast<wchar_t>(d.cp)) == 0; }

bool is_bidi_control(char32_t cp) { return (cp >= 0x202a && cp <= 0x202e) || (cp >= 0x2066 && cp <= 0x2069); }

}  // namespace

bool use_utf8_locale() {
  std::setlocale(LC_ALL, "");
  auto utf8 = [] {
    char const* cs = nl_langinfo(CODESET);
    return cs && (std::strcmp(cs, "UTF-8") == 0 || std::strcmp(cs, "utf8") == 0);
  };
  if (utf8()) return true;
  return std::setlocale(LC_CTYPE, "C.UTF-8") != nullptr && utf8();
}

std::string valid_utf8(std::string_view s, bool* replaced) {
  std::string out;
  out.reserve(s.size());
  bool any = false;
  std::size_t i = 0;
  while (i < s.size()) {
    const auto b = static_cast<unsigned char>(s[i]);
    if (b < 0x80) {
      out += static_cast<char>(b);
      ++i;
      continue;
    }
    // The length and the range of the second byte (Unicode Table 3-7, well-formed sequences).
    std::size_t len = 0;
    unsigned char lo = 0x80, hi = 0xBF;
    if (b >= 0xC2 && b <= 0xDF) {
      len = 2;
    } else if (b >= 0xE0 && b <= 0xEF) {
      len = 3;
      if (b == 0xE0) lo = 0xA0;
      if (b == 0xED) hi = 0x9F;  // no surrogates
    } else if (b >= 0xF0 && b <= 0xF4) {
      len = 4;
      if (b == 0xF0) lo = 0x90;
      if (b == 0xF4) hi = 0x8F;  // at most U+10FFFF
    }
    std::size_t good = len == 0 ? 0 : 1;  // bytes of a valid prefix
    while (good > 0 && good < len && i + good < s.size()) {
      const auto c = static_cast<unsigned char>(s[i + good]);
      if (good == 1 ? (c < lo || c > hi) : (c < 0x80 || c > 0xBF)) break;
      ++good;
    }
    if (len != 0 && good == len) {
      out.append(s.substr(i, len));
      i += len;
      continue;
    }
    out += "\xEF\xBF\xBD";  // U+FFFD for the maximal invalid subpart
    any = true;
    i += good == 0 ? 1 : good;
  }
  if (replaced) *replaced = any;
  return out;
}

std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size();) {
    const auto d = decode(s, i);
    if (!d.valid) {
      out += '?';  // not UTF-8 (jimd never sends it): never a stray byte to the terminal
    } else if (d.cp == '\t') {
      out += ' ';
    } else if (d.cp < 0x20 || d.cp == 0x7f) {
      out += '^';
      out += static_cast<char>(d.cp ^ 0x40);
    } else if ((d.cp >= 0x80 && d.cp < 0xa0) || is_bidi_control(d.cp)) {
      out += '?';  // C1 controls (some terminals obey them) and bidi overrides
    } else {
      out.append(s.substr(i, d.len));
    }
    i += d.len;
  }
  return out;
}

std::size_t display_width(std::string_view utf8) {
  std::size_t w = 0;
  for (std::size_t i = 0; i < utf8.size();) {
    const auto d = decode(utf8, i);
    w += columns_of(d);
    i += d.len;
  }
  return w;
}

cursor_pos cursor_after(std::string_view utf8, std::size_t cols) {
  if (cols == 0) cols = 1;
  cursor_pos p;
  for (std::size_t i = 0; i < utf8.size();) {
    const auto d = decode(utf8, i);
    i += d.len;
    const std::size_t w = columns_of(d);
    if (w == 0) continue;
    if (p.col + w > cols) {
      ++p.row;
      p.col = 0;
    }
    p.col += w;
  }
  return p;
}

std::vector<std::string> split_text(std::string_view text, std::size_t max_bytes) {
  std::vector<std::string> pieces;
  while (!text.empty()) {
    if (text.size() <= max_bytes) {
      pieces.emplace_back(text);
      break;
    }
    // Character boundaries up to max_bytes; the last good one wins, the last plain one is
    // the fallback, and the first character always goes (a piece is never empty).
    std::size_t plain = 0, good = 0;
    decoded prev;
    for (std::size_t i = 0; i < text.size();) {
      const auto d = decode(text, i);
      if (i > 0) {
        if (i > max_bytes) break;
        plain = i;
        if (!zero_width(d) && !(prev.valid && prev.cp == 0x200d)) good = i;
      }
      prev = d;
      i += d.len;
      if (plain == 0 && i > max_bytes) {
        plain = i;  // one character over the bound: it still goes alone
        break;
      }
    }
    const std::size_t cut = good * 2 > plain ? good : plain;
    pieces.emplace_back(text.substr(0, cut));
    text.remove_prefix(cut);
  }
  return pieces;
}

}  // namespace jim::client
