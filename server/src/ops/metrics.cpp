#include "ops/metrics.hpp"

#include "options.hpp"
#include "text.hpp"

#include <boost/system/error_code.hpp>

#include <algorithm>
#include <charconv>
#include <ctime>

namespace jim::server::ops {

namespace ip = boost::asio::ip;

constinit metrics stats;

transport transport_of(std::string_view peer_name) noexcept {
  const bool ws = peer_name.find("(websocket") != std::string_view::npos;
  const bool tls = peer_name.ends_with("TLS)");
  if (ws) return tls ? transport::websocket_tls : transport::websocket;
  return tls ? transport::tls : transport::tcp;
}

void metrics::connection_opened(std::string_view peer_name) noexcept {
  const auto t = static_cast<std::size_t>(transport_of(peer_name));
  connections[t].add(1);
  connections_accepted[t].add();
}

void metrics::connection_closed(std::string_view peer_name) noexcept {
  connections[static_cast<std::size_t>(transport_of(peer_name))].add(-1);
}

void metrics::count_reply(int code) noexcept {
  if (code < first_error_code) return;
  const auto i = static_cast<std::size_t>(code - first_error_code);
  refused[i < error_code_slots ? i : error_code_slots - 1].add();
}

namespace {
/// Event-loop rounds since start (I/O thread).
counter g_rounds;
/// One round in this many is timed: reading the thread's CPU clock is a system call (1.5 µs of
/// CPU on the 2-core development VM, against 30 ns for the vDSO's monotonic clock), too much
/// for every round of a busy loop.
constexpr std::uint64_t round_sample_every = 16;

std::int64_t thread_cpu_ns() noexcept {
  timespec ts{};
  if (::clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts) != 0) return -1;
  return std::int64_t{ts.tv_sec} * 1'000'000'000 + ts.tv_nsec;
}
}  // namespace

void metrics::round_done() noexcept {
  // last_round_cpu_ns_: the clock at the end of the round before a sampled one, else -1.
  if (last_round_cpu_ns_ >= 0) {
    const std::int64_t now = thread_cpu_ns();
    if (now >= last_round_cpu_ns_)
      round_cpu.observe(std::chrono::nanoseconds(now - last_round_cpu_ns_));
    last_round_cpu_ns_ = -1;
  }
  g_rounds.add();
  if (g_rounds.get() % round_sample_every == 0) last_round_cpu_ns_ = thread_cpu_ns();
}

void metrics::snapshot_saved(std::size_t bytes, double ms) noexcept {
  snapshots.add();
  snapshot_bytes.set(static_cast<std::int64_t>(bytes));
  snapshot_seconds.store(ms / 1000, std::memory_order_relaxed);
}

void metrics::snapshot_loaded(std::filesystem::path const& file) noexcept {
  std::error_code ec;
  const auto size = std::filesystem::file_size(file, ec);
  snapshot_bytes.set(ec ? 0 : static_cast<std::int64_t>(size));
}

namespace {

constexpr std::array<std::string_view, transport_count> transport_names{"tcp", "tls", "websocket",
                                                                        "websocket_tls"};
/// The label of transport `i` (enum transport): `transport="tls"`.
std::string transport_label(std::size_t i) {
  return "transport=\"" + std::string(transport_names[i]) + "\"";
}
/// The protocol's error codes (jim/protocol.hpp): always shown, 0 until they happen.
constexpr std::array<int, 10> known_errors{400, 401, 402, 403, 404, 409, 413, 429, 500, 503};

std::string number(double v) {
  char buf[32];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  return ec == std::errc{} ? std::string(buf, end) : std::string("NaN");
}

/// Writes the exposition, one metric family at a time.
class writer {
 public:
  explicit writer(std::string& out) : out_(out) {}

  void family(std::string_view name, std::string_view type, std::string_view help) {
    out_.append("# HELP ").append(name).append(" ").append(help).append("\n");
    out_.append("# TYPE ").append(name).append(" ").append(type).append("\n");
  }
  /// One sample; `labels` is empty or `key="value",...` (values need no escaping here).
  void sample(std::string_view name, std::string_view labels, std::string_view value) {
    out_.append(name);
    if (!labels.empty()) out_.append("{").append(labels).append("}");
    out_.append(" ").append(value).append("\n");
  }
  void sample(std::string_view name, std::string_view labels, std::uint64_t v) {
    sample(name, labels, std::to_string(v));
  }
  void sample_signed(std::string_view name, std::string_view labels, std::int64_t v) {
    sample(name, labels, std::to_string(v));
  }
  void scalar(std::string_view name, std::string_view type, std::string_view help,
              std::uint64_t v) {
    family(name, type, help);
    sample(name, {}, v);
  }
  /// A gauge family of one sample that may be negative.
  void gauge(std::string_view name, std::string_view help, std::int64_t v) {
    family(name, "gauge", help);
    sample_signed(name, {}, v);
  }
  template <bool Shared>
  void hist(std::string_view name, std::string_view help, basic_histogram<Shared> const& h) {
    family(name, "histogram", help);
    const auto b = h.buckets();
    const std::string bucket = std::string(name) + "_bucket";
    std::uint64_t cumulative = 0;
    for (std::size_t i = 0; i < bucket_bounds.size(); ++i) {
      cumulative += b[i];
      sample(bucket, "le=\"" + number(bucket_bounds[i]) + "\"", cumulative);
    }
    cumulative += b.back();
    sample(bucket, "le=\"+Inf\"", cumulative);
    sample(std::string(name) + "_sum", {}, number(h.sum_seconds()));
    sample(std::string(name) + "_count", {}, cumulative);
  }

 private:
  std::string& out_;
};

}  // namespace

std::string metrics::render(scrape_state const& st) const {
  std::string out;
  out.reserve(8192);
  writer w(out);
  w.family("jimd_build_info", "gauge", "Always 1; the version of this jimd in a label.");
  const std::string_view version = std::string_view(version_string).substr(5);  // "jimd X.Y.Z"
  w.sample("jimd_build_info", "version=\"" + std::string(version) + "\"", std::uint64_t{1});
  w.scalar("jimd_accepting", "gauge", "1 while new connections are accepted, 0 once shutting down.",
           st.accepting ? 1 : 0);

  w.family("jimd_connections", "gauge",
           "Open client connections by transport (tcp, tls: JIM lines; websocket, websocket_tls).");
  for (std::size_t i = 0; i < transport_count; ++i)
    w.sample_signed("jimd_connections", transport_label(i), connections[i].get());
  w.family("jimd_connections_accepted_total", "counter",
           "Client connections opened since start, by transport.");
  for (std::size_t i = 0; i < transport_count; ++i)
    w.sample("jimd_connections_accepted_total", transport_label(i), connections_accepted[i].get());

  w.scalar("jimd_connections_pending", "gauge",
           "Connections counted toward --max-clients that are not sessions yet: HTTP requests "
           "not upgraded to a WebSocket, TLS handshakes.",
           st.pending);
  w.scalar("jimd_signed_in_accounts", "gauge", "Accounts signed in now.", st.signed_in);
  w.scalar("jimd_messages_posted_total", "counter", "Chat messages accepted and stored.",
           messages_posted.get());
  w.scalar("jimd_messages_delivered_total", "counter",
           "Chat message pushes queued to recipients' connections when posted.",
           messages_delivered.get());
  w.scalar("jimd_received_bytes_total", "counter",
           "Frame bytes read from client connections (after TLS and WebSocket framing).",
           bytes_received.get());
  w.scalar("jimd_sent_bytes_total", "counter",
           "Frame bytes written to client connections (before TLS and WebSocket framing).",
           bytes_sent.get());

  w.family("jimd_frames_refused_total", "counter",
           "Error replies sent to clients, by response code (4xx, 5xx).");
  for (std::size_t i = 0; i < error_code_slots; ++i) {
    const int code = first_error_code + static_cast<int>(i);
    const bool known = std::find(known_errors.begin(), known_errors.end(), code) != known_errors.end();
    if (known || refused[i].get() != 0)
      w.sample("jimd_frames_refused_total", "code=\"" + std::to_string(code) + "\"", refused[i].get());
  }
  w.scalar("jimd_slow_consumers_dropped_total", "counter",
           "Connections dropped because their outbound queue was full (--max-outbound).",
           slow_consumers.get());
  w.scalar("jimd_sign_ins_total", "counter", "Successful sign-ins, registrations included.",
           sign_ins.get());
  w.scalar("jimd_sign_ins_failed_total", "counter", "Sign-ins refused for a wrong password.",
           sign_ins_failed.get());

  w.gauge("jimd_hashing_queue_length",
          "Password hashes (sign-ins, registrations, room passwords) waiting for a hashing thread.",
          hashing_queued.get());
  w.hist("jimd_hashing_wait_seconds", "Time a password hash waited for a hashing thread.",
         hashing_wait);

  w.gauge("jimd_journal_segment_bytes",
          "Bytes of the journal segment being appended to (a new one starts at each snapshot).",
          journal_bytes.get());
  w.scalar("jimd_journal_records_total", "counter", "Journal records stored.",
           journal_records.get());
  w.hist("jimd_journal_write_seconds",
         "Time to write one batch of journal records (with fdatasync under --fsync always).",
         journal_write);
  w.gauge("jimd_storage_failing",
          "1 while the journal cannot store changes (they are refused with 503), else 0.",
          storage_failing.get());
  w.scalar("jimd_journal_write_failures_total", "counter",
           "Journal batches that could not be stored.", storage_failures.get());

  w.scalar("jimd_snapshots_total", "counter", "Snapshots saved.", snapshots.get());
  w.scalar("jimd_snapshot_failures_total", "counter", "Snapshots that could not be saved.",
           snapshot_failures.get());
  w.gauge("jimd_snapshot_bytes",
          "Size of the last snapshot saved (since start: of the snapshot loaded, 0 if none).",
          snapshot_bytes.get());
  w.family("jimd_snapshot_duration_seconds", "gauge",
           "Capture and write time of the last snapshot saved (snapshot thread); no sample "
           "until this process has saved one.");
  if (const double s = snapshot_seconds.load(std::memory_order_relaxed); s >= 0)
    w.sample("jimd_snapshot_duration_seconds", {}, number(s));

  w.scalar("jimd_event_loop_rounds_total", "counter",
           "Event-loop rounds: each runs the handlers that are ready, then writes what they queued.",
           g_rounds.get());
  w.hist("jimd_event_loop_round_cpu_seconds",
         "CPU time of the I/O thread per event-loop round, one round in 16 sampled (the ready "
         "handlers, the write of what they queued, the wait's system call).",
         round_cpu);
  return out;
}

// --- --metrics-allow ------------------------------------------------------------------------

std::optional<cidr_list> cidr_list::parse(std::string_view text, std::string& error) {
  cidr_list list;
  for (auto const trimmed : comma_items(text)) {
    const std::string item(trimmed);
    if (item.empty()) {
      error = "an empty network in the list";
      return std::nullopt;
    }
    boost::system::error_code ec;
    const bool has_len = item.find('/') != std::string::npos;
    if (item.find(':') == std::string::npos) {
      auto n = has_len ? ip::make_network_v4(item, ec)
                       : ip::network_v4(ip::make_address_v4(item, ec), 32);
      if (ec) {
        error = "'" + item + "' is not an IPv4 network (a.b.c.d/len)";
        return std::nullopt;
      }
      list.v4_.push_back(n.canonical());
    } else {
      auto n = has_len ? ip::make_network_v6(item, ec)
                       : ip::network_v6(ip::make_address_v6(item, ec), 128);
      if (ec) {
        error = "'" + item + "' is not an IPv6 network (x::y/len)";
        return std::nullopt;
      }
      list.v6_.push_back(n.canonical());
    }
  }
  return list;
}

bool cidr_list::contains(ip::address const& a) const {
  ip::address addr = a;
  if (addr.is_v6() && addr.to_v6().is_v4_mapped())
    addr = ip::make_address_v4(ip::v4_mapped, addr.to_v6());
  if (addr.is_v4()) {
    for (auto const& n : v4_)
      if (ip::network_v4(addr.to_v4(), n.prefix_length()).canonical() == n) return true;
    return false;
  }
  for (auto const& n : v6_)
    if (ip::network_v6(addr.to_v6(), n.prefix_length()).canonical() == n) return true;
  return false;
}

std::string cidr_list::to_string() const {
  std::string out;
  for (auto const& n : v4_) out.append(out.empty() ? "" : ",").append(n.to_string());
  for (auto const& n : v6_) out.append(out.empty() ? "" : ",").append(n.to_string());
  return out;
}

}  // namespace jim::server::ops
