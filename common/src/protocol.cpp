#include "jim/protocol.hpp"

#include <algorithm>

namespace jim::proto {

std::string_view reason(code c) noexcept {
  switch (c) {
    case code::prompt:
      return "continue";
    case code::ok:
      return "ok";
    case code::created:
      return "created";
    case code::accepted:
      return "accepted";
    case code::bad_request:
      return "bad request";
    case code::unauthorized:
      return "not signed in";
    case code::wrong_password:
      return "wrong password";
    case code::forbidden:
      return "forbidden";
    case code::not_found:
      return "not found";
    case code::conflict:
      return "conflict";
    case code::too_large:
      return "too large";
    case code::rate_limited:
      return "rate limited";
    case code::internal_error:
      return "internal error";
    case code::unavailable:
      return "service unavailable";
  }
  return "unknown";
}

namespace {
constexpr bool is_alnum(char c) noexcept {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9');
}
}  // namespace

bool valid_account_name(std::string_view name) noexcept {
  return !name.empty() && name.size() <= max_account_name &&
         std::all_of(name.begin(), name.end(),
                     [](char c) { return is_alnum(c) || c == '_' || c == '.' || c == '-'; });
}

bool valid_room_name(std::string_view bare_name) noexcept {
  return !bare_name.empty() && bare_name.size() <= max_room_name &&
         std::all_of(bare_name.begin(), bare_name.end(),
                     [](char c) { return is_alnum(c) || c == '_' || c == '-'; });
}

std::string_view strip_hash(std::string_view room) noexcept {
  if (!room.empty() && room.front() == '#') room.remove_prefix(1);
  return room;
}

std::size_t utf8_length(std::string_view s) noexcept {
  return static_cast<std::size_t>(std::count_if(
      s.begin(), s.end(), [](char c) { return (static_cast<unsigned char>(c) & 0xC0) != 0x80; }));
}

std::string fold(std::string_view name) {
  std::string out(name);
  for (char& c : out)
    if (c >= 'A' && c <= 'Z') c = static_cast<char>(c - 'A' + 'a');
  return out;
}

}  // namespace jim::proto
