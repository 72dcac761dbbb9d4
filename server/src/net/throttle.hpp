#pragma once
/// \file
/// Per-source-address connection limits for both listeners: at most `max_open` connections at
/// once and `new_per_window` new ones per `window` from one address (IPv4, IPv4-mapped IPv6 as
/// IPv4, IPv6 grouped by /64). The numbers are ergo's defaults (ergo.conf `limits`:
/// max-concurrent-connections 16, connect-throttling 32 per 10 minutes); the rate is a token
/// bucket (`new_per_window` tokens, refilled evenly over `window`) rather than ergo's fixed window,
/// so a client never gets twice the allowance across a window boundary.

#include <boost/asio/ip/address.hpp>

#include <chrono>
#include <cstddef>
#include <cstdint>
#include <list>
#include <string>
#include <unordered_map>
#include <utility>

namespace jim::server::net {

/// What a source address is counted as: an IPv4 address (`v6` false, the address in the low
/// 32 bits) or the first 64 bits of an IPv6 address.
struct source_key {
  std::uint64_t bits = 0;
  bool v6 = false;
  bool operator==(source_key const&) const = default;
};

/// The group `address` belongs to (IPv4-mapped IPv6 `::ffff:a.b.c.d` is the IPv4 a.b.c.d).
source_key source_of(boost::asio::ip::address const& address);

/// "203.0.113.7" or "2001:db8:1:2::/64", for logs.
std::string to_string(source_key const& key);

/// Limits of throttle (from --max-conns-per-ip, --new-conns-per-ip, --throttle-loopback).
struct throttle_limits {
  std::size_t max_open = 16;        ///< simultaneous connections per source
  std::size_t new_per_window = 32;  ///< new connections per source per `window`
  std::chrono::seconds window{600};
  bool loopback = true;  ///< false: 127.0.0.0/8 and ::1 are not limited at all
  /// Entries kept for sources with no open connection (their bucket refilling); when full,
  /// the one idle longest is forgotten. Sources with open connections are always kept.
  std::size_t max_idle_entries = 65536;
};

/// The table of sources. Memory: one entry (about 100 bytes) per source with an open
/// connection, plus at most `max_idle_entries` idle ones; an idle entry goes once its bucket
/// is full again (`window` after its last connection ended), checked on every admit().
///
/// @par Thread Safety
/// One thread (the I/O thread); tickets must be released there too.
class throttle {
 public:
  using clock = std::chrono::steady_clock;

  explicit throttle(throttle_limits limits) : limits_(limits) {}
  throttle(throttle const&) = delete;
  throttle& operator=(throttle const&) = delete;

  /// One admitted connection: counts toward its source's `max_open` until destroyed or
  /// released. Empty (counts nothing) for an exempt source. Must not outlive the throttle.
  class ticket {
   public:
    ticket() = default;
    ticket(ticket&& o) noexcept : owner_(std::exchange(o.owner_, nullptr)), key_(o.key_) {}
    ticket& operator=(ticket&& o) noexcept;
    ticket(ticket const&) = delete;
    ticket& operator=(ticket const&) = delete;
    ~ticket() { release(); }
    void release();

   private:
    friend class throttle;
    ticket(throttle* owner, source_key key) : owner_(owner), key_(key) {}
    throttle* owner_ = nullptr;
    source_key key_;
  };

  enum class verdict {
    admitted,
    too_many,  ///< `max_open` connections from this source are open: 503
    too_fast,  ///< `new_per_window` exceeded: 429 after `retry_after` seconds
  };
  struct decision {
    verdict outcome = verdict::admitted;
    double retry_after = 0;  ///< too_fast: seconds until one more connection is allowed
    ticket admitted;         ///< admitted: hold it for the life of the connection
  };

  /// Counts a new connection from `address` at `now`. A refused connection uses no allowance.
  decision admit(boost::asio::ip::address const& address, clock::time_point now = clock::now());

  /// Sources tracked now (open or refilling).
  std::size_t entries() const { return table_.size(); }
  throttle_limits const& limits() const { return limits_; }

 private:
  struct key_hash {
    std::size_t operator()(source_key const& k) const noexcept {
      return std::hash<std::uint64_t>{}(k.bits * 0x9E3779B97F4A7C15ull ^ (k.v6 ? 1 : 0));
    }
  };
  struct idle_mark {
    source_key key;
    clock::time_point since;
  };
  struct entry {
    std::size_t open = 0;
    double tokens = 0;
    clock::time_point stamp;                  ///< when `tokens` was last brought up to date
    std::list<idle_mark>::iterator idle_pos;  ///< valid while open == 0
  };

  void close_one(source_key const& key);
  /// Forgets idle entries whose bucket is full again, and the oldest idle ones over the cap.
  void expire(clock::time_point now);

  throttle_limits limits_;
  std::unordered_map<source_key, entry, key_hash> table_;
  std::list<idle_mark> idle_;  ///< entries with no open connection, oldest first
  clock::time_point last_eviction_warning_{};
};

}  // namespace jim::server::net
