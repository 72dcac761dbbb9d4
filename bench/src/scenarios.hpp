#pragma once
/// \file
/// The benchmark scenarios. Each one is bounded in count and in time, and returns one result.

#include "engine.hpp"
#include "report.hpp"

#include <cstdint>
#include <string>

namespace jim::bench {

struct options {
  std::string scenario;  ///< fanout, connect, storm, resume, probe
  proto protocol = proto::jim;
  bool tls = false;  ///< --tls
  std::string address = "127.0.0.1";
  int port = 0;
  int server_pid = 0;
  std::string label;
  // fanout and storm
  std::uint32_t receivers = 1000;
  std::uint32_t senders = 10;
  std::uint32_t messages = 10000;  ///< M, total over all senders (storm: an upper bound)
  std::uint32_t payload = 64;      ///< P, bytes of message text
  double rate = 0;                 ///< total messages/s; 0 = window mode
  std::uint32_t window = 8;        ///< window mode: messages in flight per sender
  double max_time = 30;            ///< seconds of sending at most
  double drain = 2;                ///< seconds to wait for stragglers after the last reply
  double pause = 0;  ///< fanout: idle seconds between set-up and sending (attach a profiler)
  // set-up (all scenarios)
  std::uint32_t concurrency = 200;  ///< sign-ins in progress at once while setting up
  double setup_timeout = 120;       ///< seconds to connect and sign everyone in
  // connect
  std::uint32_t connections = 10000;
  double settle = 1;  ///< seconds idle before measuring RSS
  // storm
  std::uint32_t storm_users = 200;
  double before = 3;  ///< seconds of steady chat before the storm
  double after = 1;   ///< seconds of chat after the (last) storm ends
  std::uint32_t cycles = 1;  ///< --cycles K: K times (calm `before` s, storm until answered)
  double gap = 1;  ///< --gap: untimed seconds between a storm's last answer and the next calm
  /// --storm-close: when the storm's signed-in users hang up: never (they stay in #general and
  /// receive the chat), at the storm's end, or as soon as each is answered.
  enum class storm_close { never, end, answer } close_storm = storm_close::never;
  std::string trace;  ///< --trace FILE: per-message latencies and the storm's events (CSV)
  std::string channel = "general";
  // resume (-C clients, --concurrency at once)
  std::uint32_t accounts = 1000;  ///< accounts signed up (and their tokens kept) beforehand
  bool hold = false;              ///< keep each signed-in connection open until the end
  // probe
  double duration = 10;     ///< seconds of probing
  double interval_ms = 1;   ///< pause between a reply and the next request
};

result run_fanout(options const& o, engine_config base);
result run_connect(options const& o, engine_config base);
result run_storm(options const& o, engine_config base);
/// The reconnect storm: -C clients sign in by resume token (account i % --accounts, tokens from
/// password sign-ups made beforehand), --concurrency at a time; each closes after its 200 unless
/// --hold. With --proto redis: connect, PING, +PONG, the same way. Reports sign-ins/s and the
/// server's CPU per sign-in (from /proc/--server-pid).
result run_resume(options const& o, engine_config base);
/// One signed-in connection sends `{"action":"rooms"}`, waits for the reply, pauses
/// --interval-ms, again, for --duration s: the reply latency shows any stall of the I/O thread.
result run_probe(options const& o, engine_config base);

}  // namespace jim::bench
