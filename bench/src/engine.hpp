#pragma once
/// \file
/// The load generator's core: non-blocking loopback connections on one level-triggered epoll
/// loop, the two wire protocols (jimd's JSON lines, Redis' RESP), and per-delivery accounting.
///
/// A delivery is parsed without a JSON parser: the payload of every benchmark message has a
/// fixed layout (`payload_header`), and a jimd push ends with `"message":"<payload>"}` because
/// the daemon writes `message` last, so the common case is one memchr for the line end and a
/// few compares. Anything else (replies, history pushes, probes) takes a slower generic path.
///
/// @par Thread Safety
/// Single-threaded: everything runs on the thread that calls poll().

#include "histogram.hpp"

#include <cstdint>
#include <functional>
#include <netinet/in.h>
#include <string>
#include <string_view>
#include <sys/socket.h>
#include <vector>

struct ssl_st;
struct ssl_ctx_st;

namespace jim::bench {

/// jim: jimd's JSON lines. redis: SUBSCRIBE/PUBLISH (Redis stores nothing). redis_stream: the
/// durable Redis peer: senders XADD to a stream of this run, receivers read it with
/// `XREAD BLOCK 0` from the last id they saw (with `appendonly yes appendfsync always` on the
/// server, nothing is replied or handed to a reader before it is in the fsynced AOF).
enum class proto { jim, redis, redis_stream };
enum class role : std::uint8_t { receiver, sender, idle };
enum class state : std::uint8_t { connecting, signing_in, ready, failed, closed };

/// Monotonic clock in nanoseconds (the clock of the payload timestamps).
std::int64_t now_ns();

/// The `"retry_after"` of a reply line (seconds), or 0 when it has none.
double retry_after_of(std::string_view line);

/// Payload layout: "JB" nonce(8 hex) sender(4 hex) seq(8 hex) send-time(16 hex), then '.'
/// padding up to the payload size.
inline constexpr std::size_t payload_header = 2 + 8 + 4 + 8 + 16;

struct engine_config {
  proto protocol = proto::jim;
  sockaddr_storage target{};
  socklen_t target_len = 0;
  std::size_t payload = 64;  ///< bytes of each message text
  std::uint32_t senders = 1;
  std::uint32_t receivers = 0;
  std::uint32_t per_sender = 0;     ///< sequence numbers per sender (stride of the bitmap)
  std::string channel = "general";  ///< Redis channel (redis_stream: the key is channel:nonce)
  std::string password = "bench-pw";
  std::size_t max_connections = 0;  ///< reserved up front: hooks may open() while we iterate
  bool tls = false;  ///< over TLS (OpenSSL, non-blocking; the certificate is not verified)
};

struct connection {
  int fd = -1;
  role kind = role::idle;
  state st = state::closed;
  std::uint32_t index = 0;  ///< receiver, sender or idle index within its role
  int last_code = 0;        ///< last reply code (sign-in failures are reported by code)
  double retry_after = 0;   ///< the last reply's `"retry_after"` (seconds; 0: it had none)
  std::int64_t ready_ns = 0;
  std::string carry;  ///< an incomplete inbound frame
  std::string out;    ///< outbound bytes not yet accepted by the kernel
  std::size_t out_off = 0;
  bool want_out = false;  ///< EPOLLOUT armed
  ssl_st* ssl = nullptr;  ///< --tls: the connection's TLS state (freed by close_fd)
  bool handshaking = false;  ///< --tls: connected, TLS handshake not finished
  // redis_stream receivers: entries left in the XREAD reply being parsed, the last id read.
  std::uint32_t xr_left = 0;
  std::string last_id = "0-0";
  // Senders.
  std::uint32_t next_seq = 0;
  std::uint32_t inflight = 0;  ///< sent, no reply yet
};

/// Per-run delivery accounting for the fan-out receivers.
struct delivery_stats {
  std::uint64_t delivered = 0;  ///< distinct (receiver, message) pairs
  std::uint64_t duplicated = 0;
  std::uint64_t reordered = 0;      ///< a sequence number below one already seen from that sender
  std::uint64_t unexpected = 0;     ///< frames a receiver did not expect
  std::uint64_t sender_pushes = 0;  ///< jimd also pushes each message to the other senders
  std::uint64_t replies_ok = 0;
  std::uint64_t replies_error = 0;
  std::int64_t last_ns = 0;
  /// Latency histograms by the message's send time: [0] before `split_ns[0]`, [1] before
  /// `split_ns[1]`, [2] after. A plain fan-out uses only [0].
  histogram latency[3];
  std::int64_t split_ns[2] = {INT64_MAX, INT64_MAX};
  std::int64_t warmup_until_ns = 0;  ///< deliveries of messages sent earlier are not timed
  /// A finer split by send time (the storm's cycles), besides `latency`: a delivery of a
  /// message sent at or after `phase_start[i]` and before `phase_start[i + 1]` is also recorded
  /// in `phase_latency[i]` (nothing before `phase_start[0]`). Appended while running, in time
  /// order, by the thread that polls (add_phase()).
  std::vector<std::int64_t> phase_start;
  std::vector<histogram> phase_latency;
  /// Starts a phase at `at_ns` (not before the last one); returns its index.
  std::size_t add_phase(std::int64_t at_ns) {
    phase_start.push_back(at_ns);
    phase_latency.emplace_back();
    return phase_start.size() - 1;
  }
  /// Per message (`sender * per_sender + seq`), when engine::trace_messages() sized it: when it
  /// was sent and what its deliveries took (ns; count, sum and worst over the receivers).
  struct message_trace {
    std::int64_t sent_ns = 0;
    std::uint32_t n = 0;
    std::int64_t sum_ns = 0;
    std::int64_t max_ns = 0;
  };
  std::vector<message_trace> messages;
};

class engine {
 public:
  explicit engine(engine_config cfg);
  ~engine();
  engine(engine const&) = delete;
  engine& operator=(engine const&) = delete;

  /// Starts a connection; it signs in (register / SUBSCRIBE) once connected.
  std::size_t open(role kind, std::uint32_t index);
  /// Starts the failed connection `id` again, in the same slot (same role and index): a
  /// sign-in the server refused for now (429/503 with `retry_after`). It no longer counts in
  /// `failed`.
  void retry(std::size_t id);
  /// Waits at most `timeout_ms` for events and handles them.
  void poll(int timeout_ms);
  void close_all();
  /// Closes connection `id` from this side (a storm user done with); not counted in `dropped`
  /// and on_state is not called. Does nothing if it is not open.
  void close(std::size_t id);
  /// Keeps a message_trace per message from now on (delivery_stats::messages).
  void trace_messages();
  std::uint32_t per_sender() const { return cfg_.per_sender; }

  /// Queues `n` messages on a ready sender and flushes it (one write for the batch).
  void send_messages(connection& c, std::uint32_t n);

  std::vector<connection>& connections() { return conns_; }
  delivery_stats& stats() { return stats_; }

  std::size_t ready = 0;    ///< connections that reached `ready`
  std::size_t failed = 0;   ///< connections that failed to connect or sign in
  std::size_t dropped = 0;  ///< ready connections the server closed
  std::size_t dropped_receivers = 0;
  /// Called when a connection becomes ready, fails, or is closed by the server.
  std::function<void(connection&)> on_state;

 private:
  void handle(connection& c, std::uint32_t events);
  /// Opens the socket of slot `id` and connects it.
  void start(connection& c, std::size_t id);
  void on_connected(connection& c);
  /// --tls: drives the handshake; calls on_connected() once it is done.
  void handshake(connection& c);
  /// Arms EPOLLOUT (or not) for `c`.
  void want_write(connection& c, bool on);
  void on_readable(connection& c);
  void flush(connection& c);
  void set_state(connection& c, state s);
  void fail(connection& c, int code);
  void lost(connection& c);
  /// Unregisters and closes the socket, if open.
  void close_fd(connection& c);
  std::size_t parse_jim(connection& c, char const* b, char const* e, std::int64_t now);
  std::size_t parse_redis(connection& c, char const* b, char const* e, std::int64_t now);
  /// redis_stream receivers: XREAD replies, one entry at a time (a reply may span reads).
  std::size_t parse_stream(connection& c, char const* b, char const* e, std::int64_t now);
  /// redis_stream: queues the next `XREAD BLOCK 0 STREAMS key last_id` and flushes it.
  void xread(connection& c);
  void jim_line(connection& c, char const* b, char const* e, std::int64_t now);
  void reply(connection& c, int code);
  void deliver(connection& c, char const* payload, std::int64_t now);
  void write_payload(char* out, std::uint32_t sender, std::uint32_t seq, std::int64_t ts) const;

  engine_config cfg_;
  int ep_ = -1;
  ssl_ctx_st* tls_ctx_ = nullptr;  ///< --tls
  std::string nonce_;  ///< 8 hex digits, unique per run
  std::vector<connection> conns_;
  std::vector<char> rbuf_;
  std::vector<std::uint64_t> seen_;      ///< receivers x senders x per_sender bits
  std::vector<std::uint32_t> next_seq_;  ///< receivers x senders: highest seq seen + 1
  delivery_stats stats_;
  std::string redis_prefix_;         ///< the fixed head of a RESP "message" push on our channel
  std::string stream_key_;           ///< redis_stream: this run's stream
  std::string stream_head_;          ///< redis_stream: the head of an XREAD reply, up to *N
  std::string msg_head_, msg_tail_;  ///< a sender's frame around the payload
};

}  // namespace jim::bench
