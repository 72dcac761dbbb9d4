#pragma once
/// \file
/// One benchmark result: an ordered set of fields printed as one JSON line (for scripts) and a
/// readable summary line (for people).

#include <cstdint>
#include <string>
#include <string_view>

namespace jim::bench {

class record {
 public:
  record& str(std::string_view key, std::string_view value);
  record& num(std::string_view key, double value, int decimals = 3);
  record& integer(std::string_view key, std::int64_t value);
  record& boolean(std::string_view key, bool value);
  /// A value that is already JSON (a nested object).
  record& raw(std::string_view key, std::string_view json);
  std::string json() const { return "{" + body_ + "}"; }

 private:
  void key(std::string_view k);
  std::string body_;
};

/// JSON string escaping for the few strings we print (labels, errors).
std::string quote(std::string_view s);

/// "2.31M", "512k", "87" with three significant digits.
std::string si(double v);

struct result {
  std::string json;   ///< one line, no newline
  std::string human;  ///< one line, no newline
  int exit_code = 0;  ///< 0 ok, 1 the run could not be carried out
};

}  // namespace jim::bench
