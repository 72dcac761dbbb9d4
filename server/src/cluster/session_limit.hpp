#pragma once
/// \file
/// Which other nodes' `--max-sessions` differ from this node's, to warn once about each.
///
/// A cluster node's `signin` event carries its own `--max-sessions` (`max`), and every node
/// applies that value to the sign-in (docs/CLUSTER.md, "Devices across nodes"): nodes started
/// with different values make the cluster-wide device limit depend on where a user signs in.
/// Nothing fails, so the hub logs one warning per other node and value (hub::apply_one of a
/// `signin`), decided here.
///
/// @par Thread Safety
/// Not thread-safe: the hub's thread only (like the hub).

#include <cstddef>
#include <cstdint>
#include <set>
#include <string>
#include <utility>

namespace jim::server::cluster {

class session_limit_check {
 public:
  /// Pairs remembered at the most; beyond, nothing more is reported (a bound on a stream that
  /// names ever new nodes or values).
  static constexpr std::size_t max_remembered = 256;

  /// True when a `signin` of node `node` carrying `max` should be warned about: `node` is not
  /// `own_node`, `max` (0: an older jimd's event, no value) differs from `own_max`, and this
  /// (node, max) pair was not reported before.
  bool differs_first_time(std::string const& node, std::uint64_t max, std::string const& own_node,
                          std::uint64_t own_max) {
    if (max == 0 || max == own_max || node.empty() || node == own_node) return false;
    if (told_.size() >= max_remembered) return false;
    return told_.emplace(node, max).second;
  }

 private:
  std::set<std::pair<std::string, std::uint64_t>> told_;
};

}  // namespace jim::server::cluster
