#pragma once
/// \file
/// Protocol vocabulary shared by the daemon, the client and the tests: the response codes,
/// the name rules and the default limits of ../shared/protocol-contract.md.

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

namespace jim::proto {

/// Numeric response codes, as they appear in `"response"`.
enum class code : int {
  prompt = 100,  ///< sign-in prompt, see the `auth` field
  ok = 200,
  created = 201,       ///< account registered, room created
  accepted = 202,      ///< private message queued for an offline user
  bad_request = 400,   ///< malformed frame, bad field, unknown action, passwords differ
  unauthorized = 401,  ///< not signed in
  wrong_password = 402,
  forbidden = 403,     ///< wrong room password, not the owner, not a member
  not_found = 404,     ///< no such room or account
  conflict = 409,      ///< name already taken
  too_large = 413,     ///< frame or message too large
  rate_limited = 429,  ///< see `retry_after`
  internal_error = 500,
  unavailable = 503,  ///< server full or shutting down
};

constexpr int to_int(code c) noexcept {
  return static_cast<int>(c);
}
/// True for 1xx/2xx codes: their text goes in `"alert"`, others in `"error"`.
constexpr bool is_success(code c) noexcept {
  return to_int(c) < 400;
}
/// Short English reason, used when a reply carries no more precise text.
std::string_view reason(code c) noexcept;

/// Limits with their contract defaults; the daemon overrides them from its options.
struct limits {
  std::size_t max_frame = 65536;   ///< bytes of one frame
  std::size_t max_message = 4096;  ///< bytes of one chat text
  /// Seconds a scheduled `msg`'s `"at"` may lie ahead of now (--schedule-max).
  std::int64_t schedule_max = 7 * 24 * 3600;
};

inline constexpr std::size_t max_account_name = 25;
inline constexpr std::size_t max_room_name = 32;
inline constexpr std::size_t max_tag = 64;
inline constexpr std::size_t max_password = 1024;
/// Longest `user.token` accepted (jimd's tokens are 43 characters).
inline constexpr std::size_t max_token = 256;
/// Characters (code points) of a `presence` `user.status`, before and after sign-in
/// (contract: "Watching, unread and presence").
inline constexpr std::size_t max_status_chars = 64;
/// Bytes of a `report` or `ban` reason.
inline constexpr std::size_t max_reason = 512;
inline constexpr int history_default_limit = 50;
inline constexpr int history_max_limit = 500;
inline constexpr std::string_view general_room = "#general";

/// 1–25 characters of `[A-Za-z0-9_.-]`.
bool valid_account_name(std::string_view name) noexcept;
/// 1–32 characters of `[A-Za-z0-9_-]`, without the leading `#`.
bool valid_room_name(std::string_view bare_name) noexcept;
/// Removes one leading `#`, if any.
std::string_view strip_hash(std::string_view room) noexcept;
/// ASCII lower case: the key names are unique and looked up by.
std::string fold(std::string_view name);
/// Characters (code points) of a UTF-8 string: the bytes that do not continue a sequence.
std::size_t utf8_length(std::string_view s) noexcept;

}  // namespace jim::proto
