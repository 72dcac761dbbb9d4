#pragma once
/// \file
/// A fixed-size log-linear latency histogram (HDR-like): exact below 128 ns, then 64
/// sub-buckets per power of two (relative error < 0.8 %). Recording is a few instructions and
/// never allocates, so it can sit on the per-delivery path.

#include <array>
#include <bit>
#include <cstdint>

namespace jim::bench {

class histogram {
 public:
  void record(std::int64_t v) {
    const std::uint64_t u = v < 0 ? 0 : static_cast<std::uint64_t>(v);
    ++counts_[index(u)];
    ++n_;
    if (u > max_) max_ = u;
  }
  /// Adds every sample of `o` (pooling phases).
  void merge(histogram const& o) {
    for (std::size_t i = 0; i < counts_.size(); ++i) counts_[i] += o.counts_[i];
    n_ += o.n_;
    if (o.max_ > max_) max_ = o.max_;
  }
  std::uint64_t count() const { return n_; }
  std::uint64_t max() const { return max_; }
  /// The q-quantile (0 < q <= 1) as the midpoint of its bucket; 0 when empty.
  std::uint64_t quantile(double q) const {
    if (n_ == 0) return 0;
    auto target = static_cast<std::uint64_t>(q * static_cast<double>(n_));
    if (target < 1) target = 1;
    std::uint64_t seen = 0;
    for (std::size_t i = 0; i < counts_.size(); ++i) {
      seen += counts_[i];
      if (seen >= target) {
        const std::uint64_t mid = midpoint(i);
        return mid > max_ ? max_ : mid;
      }
    }
    return max_;
  }

 private:
  static constexpr unsigned sub_bits = 6;
  static constexpr std::uint64_t linear = 2u << sub_bits;  // 128: exact values below this

  static std::size_t index(std::uint64_t v) {
    if (v < linear) return static_cast<std::size_t>(v);
    const unsigned msb = 63u - static_cast<unsigned>(std::countl_zero(v));  // >= 7
    const std::uint64_t sub = (v >> (msb - sub_bits)) & ((1u << sub_bits) - 1);
    return static_cast<std::size_t>(linear + (msb - sub_bits - 1) * (1u << sub_bits) + sub);
  }
  static std::uint64_t midpoint(std::size_t i) {
    if (i < linear) return i;
    const std::uint64_t k = i - linear;
    const unsigned msb = static_cast<unsigned>(k >> sub_bits) + sub_bits + 1;
    const std::uint64_t sub = k & ((1u << sub_bits) - 1);
    const std::uint64_t lo = ((1u << sub_bits) + sub) << (msb - sub_bits);
    const std::uint64_t width = std::uint64_t{1} << (msb - sub_bits);
    return lo + width / 2;
  }

  std::array<std::uint64_t, linear + (64 - sub_bits - 1) * (1u << sub_bits)> counts_{};
  std::uint64_t n_ = 0;
  std::uint64_t max_ = 0;
};

}  // namespace jim::bench
