#pragma once
/// \file
/// The daemon's configuration: command line and `key = value` config file
/// (Boost.Program_options), with the defaults of the contract.

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <variant>
#include <vector>

namespace jim::server {

/// Which chat texts are written to the console and the log files (--log-messages).
enum class message_logging {
  none,   ///< no message text at all
  rooms,  ///< texts posted to rooms, not private ones (the default)
  all,    ///< room and private texts
};

struct config {
  std::string address;  ///< empty: all addresses (IPv6 and IPv4 where available)
  std::uint16_t port = 7777;
  std::string port_file;
  std::string data_dir = "./data";
  std::string log_dir = "./logs";
  std::string log_level = "info";
  bool syslog = false;
  message_logging log_messages = message_logging::rooms;
  std::size_t max_clients = 1000;
  std::size_t max_frame = 65536;
  std::size_t max_message = 4096;
  std::size_t max_outbound = 1 << 20;
  std::chrono::seconds idle_timeout{300};
  std::size_t history_on_join = 20;
  std::size_t history_limit = 1000;
  std::chrono::seconds message_ttl{0};  ///< 0: keep forever
  double rate_limit = 10;               ///< messages per second per account; 0: unlimited
  double rate_burst = 20;
  std::chrono::seconds autosave{60};  ///< 0: only at shutdown
  std::string fsync = "always";  ///< --fsync: always | everysec | no (when the journal syncs)
  /// Cluster mode (--nats): NATS server URLs (empty: the embedded single-node default), this
  /// node's name (empty: host name + ":" + chat port), the JetStream stream, and its replicas
  /// when this node creates it.
  std::vector<std::string> nats;
  std::string node_name;
  std::string nats_stream = "JIM";
  int nats_replicas = 1;
  /// PBKDF2 iterations for new password hashes; a stored hash with fewer is made again at its
  /// next sign-in. OWASP's 2023 figure for PBKDF2-HMAC-SHA256 (Password Storage Cheat Sheet).
  unsigned kdf_iterations = 600000;
  /// Lifetime of a resume token from its issue (--token-ttl; default 30 days).
  std::chrono::seconds token_ttl{30 * 24 * 3600};
  int hash_threads = 0;  ///< password-hashing threads; 0: one less than the cores (at least 1)
  std::uint16_t http_port = 7780;  ///< 0: no HTTP/WebSocket listener
  std::string http_address;        ///< empty: same as address
  std::string http_origins;        ///< comma-separated allowed Origins; empty: same host
  std::string tls_cert;  ///< PEM certificate chain; empty: no TLS (both ports plaintext only)
  std::string tls_key;   ///< PEM private key of tls_cert (given together)
  bool tls_required = false;  ///< refuse plaintext connections (needs tls_cert)
  /// --metrics-allow: comma-separated CIDR networks that may read /metrics and /healthz
  /// (checked by parse_options with ops::cidr_list::parse).
  std::string metrics_allow = "127.0.0.0/8,::1/128";
  bool log_json = false;      ///< --log-format json: one JSON object per log line
  bool check_config = false;  ///< --check-config: check, print OK or the error, exit
  /// Per source address (IPv6 per /64) on both ports: connections open at once, and new
  /// connections per 10 minutes; loopback is limited too unless throttle_loopback is false.
  bool throttle_loopback = true;
  std::size_t max_conns_per_ip = 16;
  std::size_t new_conns_per_ip = 32;
  /// --max-sessions: connections (devices) of one account at once; one more sign-in takes over
  /// the oldest (1: every sign-in takes over the live connection).
  std::size_t max_sessions = 8;
  /// A password check that has not started hashing after this long gets 503 + retry_after.
  std::chrono::milliseconds hash_queue_wait{10000};
  // Edits, schedules, moderation (contract: "Edits, schedules, moderation, contacts").
  std::chrono::seconds schedule_max{7 * 24 * 3600};  ///< --schedule-max: `at` at most this ahead
  std::vector<std::string> admins;  ///< --admin NAME[,NAME...]: server admins (as given)
  /// Reports from --report-threshold distinct accounts within --report-window mute an account
  /// for --mute-duration (Yandex messenger task's figures: 3, 24 h, 4 h).
  std::uint64_t report_threshold = 3;
  std::chrono::seconds report_window{24 * 3600};
  std::chrono::seconds mute_duration{4 * 3600};
};

/// What parsing the command line asks for.
struct run_daemon {
  config cfg;
};
struct print_and_exit {
  std::string text;
  int exit_code = 0;
};
using parse_outcome = std::variant<run_daemon, print_and_exit>;

/// Parses argv and the config file. A bad option or value yields print_and_exit with a
/// one-line error naming it and a non-zero exit code. Options that depend on each other
/// (max-message and max-frame, max-outbound and max-message, history-on-join and
/// history-limit, rate-burst and rate-limit, port and http-port): one left at its default
/// adapts to the one the user gave (command line or config file alike); only two given
/// values that contradict each other are an error naming both.
parse_outcome parse_options(int argc, char const* const* argv);

inline constexpr char const* version_string = "jimd 0.1.0";

}  // namespace jim::server
