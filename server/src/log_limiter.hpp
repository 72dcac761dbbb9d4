#pragma once
/// \file
/// One log line per period for warnings a storm could repeat by the hundred.

#include <chrono>
#include <cstdint>
#include <optional>

namespace jim::server {

/// At most one line per `period` for a warning that a storm could repeat by the hundred (a
/// refused connection, a refused sign-in): the caller asks before each line and says in the
/// line it writes how many were held back.
///
/// @par Thread Safety
/// One thread (the I/O thread).
class log_limiter {
 public:
  using clock = std::chrono::steady_clock;
  explicit log_limiter(clock::duration period) : period_(period) {}
  /// Counts one occurrence at `now`. A line may be written when the last one is at least
  /// `period` old (or none was written): then the number of occurrences held back since that
  /// line (this one not counted), else nullopt.
  std::optional<std::uint64_t> admit(clock::time_point now) {
    if (written_ && now - last_ < period_) {
      ++held_;
      return std::nullopt;
    }
    written_ = true;
    last_ = now;
    const std::uint64_t held = held_;
    held_ = 0;
    return held;
  }

 private:
  clock::duration period_;
  clock::time_point last_{};
  bool written_ = false;
  std::uint64_t held_ = 0;
};

}  // namespace jim::server
