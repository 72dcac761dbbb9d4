#pragma once
/// \file
/// The daemon's counters for `/metrics` (Prometheus text exposition format 0.0.4, written by
/// hand: <https://prometheus.io/docs/instrumenting/exposition_formats/>; names follow
/// <https://prometheus.io/docs/practices/naming/>: `jimd_` prefix, `_total` counters, seconds
/// and bytes), and the `--metrics-allow` list of networks that may read `/metrics`/`/healthz`.
///
/// One process-wide instance, `ops::stats` (one daemon per process, like the default registry
/// of the Prometheus client libraries). Hooks elsewhere are single lines:
/// `ops::stats.sign_ins.add();`.
///
/// @par Thread Safety
/// Every value is a std::atomic read with relaxed loads (a scrape sees each value as it was at
/// some moment; values are not a consistent cut). `counter`/`gauge` have ONE writer thread (the
/// I/O thread, or the journal's disk thread for the journal's values): a relaxed load and store,
/// no locked instruction. `shared_gauge`/`shared_histogram` are written from several threads
/// (the hashing pool and the I/O thread): relaxed fetch_add.

#include <boost/asio/ip/address.hpp>
#include <boost/asio/ip/network_v4.hpp>
#include <boost/asio/ip/network_v6.hpp>

#include <array>
#include <atomic>
#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace jim::server::ops {

/// A monotonic count with one writer thread: `add` is a relaxed load + store.
class counter {
 public:
  void add(std::uint64_t n = 1) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::uint64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::uint64_t> v_{0};
};

/// A value that goes up and down, one writer thread.
class gauge {
 public:
  void set(std::int64_t v) noexcept { v_.store(v, std::memory_order_relaxed); }
  void add(std::int64_t n) noexcept {
    v_.store(v_.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::int64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

/// A gauge written from several threads (relaxed fetch_add).
class shared_gauge {
 public:
  void add(std::int64_t n) noexcept { v_.fetch_add(n, std::memory_order_relaxed); }
  std::int64_t get() const noexcept { return v_.load(std::memory_order_relaxed); }

 private:
  std::atomic<std::int64_t> v_{0};
};

/// Upper bounds (seconds) of the histograms' buckets, +Inf implied: 10 µs to 10 s.
inline constexpr std::array<double, 14> bucket_bounds{1e-5,   5e-5, 1e-4, 2.5e-4, 5e-4,
                                                      1e-3,   2.5e-3, 5e-3, 1e-2, 2.5e-2,
                                                      0.1,    0.5,  1.0,  10.0};

/// A latency histogram over bucket_bounds. `Shared`: written from several threads (fetch_add);
/// otherwise by one thread (load + store). Buckets are stored per bucket (not cumulative) and
/// summed when rendered, so `_count` always equals the `+Inf` bucket.
template <bool Shared>
class basic_histogram {
 public:
  /// Records one observation of `d`.
  void observe(std::chrono::nanoseconds d) noexcept {
    const double s = std::chrono::duration<double>(d).count();
    std::size_t i = 0;
    while (i < bucket_bounds.size() && s > bucket_bounds[i]) ++i;
    bump(buckets_[i], 1);
    bump(sum_ns_, static_cast<std::uint64_t>(d.count() < 0 ? 0 : d.count()));
  }
  /// Observations per bucket (the last: above every bound), not cumulative.
  std::array<std::uint64_t, bucket_bounds.size() + 1> buckets() const noexcept {
    std::array<std::uint64_t, bucket_bounds.size() + 1> out{};
    for (std::size_t i = 0; i < out.size(); ++i) out[i] = buckets_[i].load(std::memory_order_relaxed);
    return out;
  }
  double sum_seconds() const noexcept {
    return static_cast<double>(sum_ns_.load(std::memory_order_relaxed)) / 1e9;
  }

 private:
  static void bump(std::atomic<std::uint64_t>& a, std::uint64_t n) noexcept {
    if constexpr (Shared)
      a.fetch_add(n, std::memory_order_relaxed);
    else
      a.store(a.load(std::memory_order_relaxed) + n, std::memory_order_relaxed);
  }
  std::array<std::atomic<std::uint64_t>, bucket_bounds.size() + 1> buckets_{};
  std::atomic<std::uint64_t> sum_ns_{0};
};
using histogram = basic_histogram<false>;
using shared_histogram = basic_histogram<true>;

/// How a connection reached the daemon: the `transport` label of jimd_connections.
/// tcp: JIM lines over plain TCP; tls: JIM lines over TLS; websocket: ws://; websocket_tls: wss://.
enum class transport : std::uint8_t { tcp, tls, websocket, websocket_tls };
inline constexpr std::size_t transport_count = 4;

/// The transport of a session from its peer description as the listeners build it
/// ("1.2.3.4:5", "... (TLS)", "... (websocket)", "... (websocket, TLS)").
transport transport_of(std::string_view peer_name) noexcept;

/// Values read at scrape time from the daemon's state (I/O thread).
struct scrape_state {
  std::size_t signed_in = 0;  ///< accounts signed in now (hub::online_count)
  bool accepting = true;      ///< false once shutdown began
  /// Connections counted toward --max-clients that are not sessions yet: HTTP requests not
  /// (yet) upgraded to a WebSocket and TLS handshakes (server_context::handshaking).
  std::size_t pending = 0;
};

/// Error codes counted one by one (400..599); others go to the last slot.
inline constexpr int first_error_code = 400;
inline constexpr std::size_t error_code_slots = 200;

/// Every value /metrics shows. See metrics.cpp (render) for names and help texts.
struct metrics {
  // I/O thread.
  std::array<gauge, transport_count> connections;             ///< open sessions
  std::array<counter, transport_count> connections_accepted;  ///< sessions ever opened
  counter messages_posted;     ///< chat messages accepted and stored
  counter messages_delivered;  ///< pushes of those messages into recipients' queues
  counter bytes_received;      ///< frame bytes read from sessions
  counter bytes_sent;          ///< frame bytes written to sessions
  std::array<counter, error_code_slots> refused;  ///< error replies by code (index code-400)
  counter slow_consumers;      ///< sessions dropped: outbound queue full
  counter sign_ins;            ///< successful sign-ins and registrations
  counter sign_ins_failed;     ///< wrong account passwords
  histogram round_cpu;         ///< I/O thread CPU time per event-loop round (1 in 16 sampled)
  counter snapshots;           ///< snapshots saved
  counter snapshot_failures;   ///< snapshots that could not be saved
  gauge snapshot_bytes;        ///< size of the last snapshot saved (or loaded at start)
  /// Capture + write time of the last snapshot this process saved; negative: none yet.
  std::atomic<double> snapshot_seconds{-1};
  gauge storage_failing;       ///< 1 while the journal refuses changes (503)
  counter storage_failures;    ///< journal batches that could not be stored
  // Hashing pool and I/O thread.
  shared_gauge hashing_queued;  ///< password hashes waiting for a hashing thread
  shared_histogram hashing_wait;  ///< time a hash waited for a thread
  // Journal disk thread.
  gauge journal_bytes;      ///< bytes of the journal segment being appended to
  counter journal_records;  ///< records stored
  histogram journal_write;  ///< write (+ fdatasync with --fsync always) time per batch

  /// A session opened / closed (its peer description gives the transport).
  void connection_opened(std::string_view peer_name) noexcept;
  void connection_closed(std::string_view peer_name) noexcept;
  /// Counts a reply with this code if it is an error (>= 400).
  void count_reply(int code) noexcept;
  /// A message was stored and pushed to `delivered` recipients.
  void posted(std::uint64_t delivered) noexcept {
    messages_posted.add();
    messages_delivered.add(delivered);
  }
  /// Ends an event-loop round (counted); one round in 16 is timed with the I/O thread's CPU
  /// clock (read at the end of the round before it and at its own end) into round_cpu.
  /// I/O thread only.
  void round_done() noexcept;
  /// A snapshot of `bytes` was saved in `ms` milliseconds (capture + write).
  void snapshot_saved(std::size_t bytes, double ms) noexcept;
  /// At start, once `file` (the snapshot just loaded; missing: none yet) is loaded: its size
  /// is the last snapshot's size until this process saves one (a restart must not read 0).
  /// The duration of the last save is not known then: its sample is left out until a save.
  void snapshot_loaded(std::filesystem::path const& file) noexcept;

  /// The exposition: `# HELP`/`# TYPE` lines, then the samples of each metric, '\n' after
  /// each line. I/O thread (for `st`); reads every other value with relaxed loads.
  std::string render(scrape_state const& st) const;

 private:
  std::int64_t last_round_cpu_ns_ = -1;
};

/// The daemon's metrics.
extern metrics stats;

/// `co_await`-free timing of a hashing job: construct when the job is queued (counts it as
/// waiting), call started() on the pool thread when it begins (records the wait).
class hashing_ticket {
 public:
  hashing_ticket() noexcept : queued_(std::chrono::steady_clock::now()) { stats.hashing_queued.add(1); }
  void started() const noexcept {
    stats.hashing_queued.add(-1);
    stats.hashing_wait.observe(std::chrono::steady_clock::now() - queued_);
  }

 private:
  std::chrono::steady_clock::time_point queued_;
};

/// Times a scope into a histogram (one writer thread).
class scoped_timer {
 public:
  explicit scoped_timer(histogram& h) noexcept : h_(h), t0_(std::chrono::steady_clock::now()) {}
  ~scoped_timer() { h_.observe(std::chrono::steady_clock::now() - t0_); }
  scoped_timer(scoped_timer const&) = delete;
  scoped_timer& operator=(scoped_timer const&) = delete;

 private:
  histogram& h_;
  std::chrono::steady_clock::time_point t0_;
};

/// Content-Type of render()'s text.
inline constexpr std::string_view content_type = "text/plain; version=0.0.4; charset=utf-8";

/// A list of IPv4/IPv6 networks (Boost.Asio network_v4/network_v6). A plain address is that
/// one host (/32, /128).
class cidr_list {
 public:
  /// Parses "127.0.0.0/8,::1/128" (comma-separated, spaces around items allowed). Returns
  /// nullopt and sets `error` (quoting the bad item) for an empty list or a malformed item.
  static std::optional<cidr_list> parse(std::string_view text, std::string& error);

  /// True when `a` is in one of the networks; an IPv4-mapped IPv6 address (::ffff:a.b.c.d,
  /// what a dual-stack listener reports) is matched as its IPv4 address.
  bool contains(boost::asio::ip::address const& a) const;

  /// The list, normalised ("127.0.0.0/8,::1/128").
  std::string to_string() const;

 private:
  std::vector<boost::asio::ip::network_v4> v4_;
  std::vector<boost::asio::ip::network_v6> v6_;
};

/// The default of --metrics-allow: loopback only.
inline constexpr char const* default_metrics_allow = "127.0.0.0/8,::1/128";

}  // namespace jim::server::ops
