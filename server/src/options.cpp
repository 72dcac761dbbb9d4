#include "options.hpp"

#include "jim/protocol.hpp"
#include "ops/metrics.hpp"
#include "text.hpp"

#include <boost/program_options.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <cmath>
#include <cstring>
#include <fcntl.h>
#include <map>
#include <set>
#include <sstream>
#include <unistd.h>

namespace jim::server {

namespace po = boost::program_options;

namespace {

/// Reads a count option, refusing negative values and values outside [lo, hi].
template <class T>
T checked(po::variables_map const& vm, char const* name, long long lo, long long hi) {
  const long long v = vm[name].as<long long>();
  if (v < lo || v > hi)
    throw po::error("the argument ('" + std::to_string(v) + "') for option '--" + name +
                    "' is out of range [" + std::to_string(lo) + ", " + std::to_string(hi) + "]");
  return static_cast<T>(v);
}

double checked_double(po::variables_map const& vm, char const* name, double lo, double hi) {
  const double v = vm[name].as<double>();
  if (!(v >= lo && v <= hi))
    throw po::error("the argument for option '--" + std::string(name) + "' is out of range");
  return v;
}

/// True when the user set `name` (on the command line or in the config file), false when it
/// holds its default.
bool given(po::variables_map const& vm, char const* name) {
  auto it = vm.find(name);
  return it != vm.end() && !it->second.defaulted();
}

/// An empty address (all addresses) or an IPv4/IPv6 literal; anything else is refused here,
/// naming the option, rather than when the daemon tries to listen.
std::string checked_address(po::variables_map const& vm, char const* name) {
  auto v = vm[name].as<std::string>();
  unsigned char buf[16];
  if (!v.empty() && inet_pton(AF_INET, v.c_str(), buf) != 1 &&
      inet_pton(AF_INET6, v.c_str(), buf) != 1)
    throw po::error("the argument ('" + v + "') for option '--" + name +
                    "' is not an IPv4 or IPv6 address");
  return v;
}

/// Two options the user both gave that cannot hold together.
[[noreturn]] void conflict(char const* a, std::string const& va, char const* relation,
                           char const* b, std::string const& vb) {
  throw po::error("--" + std::string(a) + " (" + va + ") " + relation + " --" + b + " (" + vb +
                  ")");
}

/// The text of the config file `path`; nullopt and `why` (strerror) when it cannot be read.
std::optional<std::string> read_config_file(std::string const& path, std::string& why) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    why = std::strerror(errno);
    return std::nullopt;
  }
  std::string text;
  char buf[4096];
  for (;;) {
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) {
      why = std::strerror(errno);  // EISDIR for a directory
      ::close(fd);
      return std::nullopt;
    }
    if (n == 0) break;
    text.append(buf, static_cast<std::size_t>(n));
  }
  ::close(fd);
  return text;
}

/// Where each option of a config file is set (Boost.Program_options' parse_config_file
/// reports no line numbers), read the way its parser reads lines: `#` starts a comment,
/// blanks around names and values are dropped, `[section]` prefixes "section." to the names
/// below it. What that parser would refuse without saying where (a line that is not
/// `name = value`, an unknown option, an option set twice) is refused here with FILE:LINE.
class config_locations {
 public:
  config_locations(std::string file, std::string const& text, po::options_description const& known)
      : file_(std::move(file)) {
    std::istringstream in(text);
    std::string raw, prefix;
    for (int line = 1; std::getline(in, raw); ++line) {
      std::string_view s = raw;
      s = s.substr(0, s.find('#'));
      s = trim(s);
      if (s.empty()) continue;
      if (s.front() == '[' && s.back() == ']') {
        prefix = std::string(s.substr(1, s.size() - 2));
        if (!prefix.empty() && prefix.back() != '.') prefix += '.';
        continue;
      }
      const auto eq = s.find('=');
      if (eq == std::string_view::npos)
        throw po::error(at(line) + "'" + std::string(s) + "' is not 'name = value'");
      const std::string name = prefix + std::string(trim(s.substr(0, eq)));
      if (!known.find_nothrow(name, false))
        throw po::error(at(line) + "unknown option '" + name + "'");
      if (auto [it, fresh] = line_of_.emplace(name, line); !fresh)
        throw po::error(at(line) + "'" + name + "' is set a second time (first on line " +
                        std::to_string(it->second) + ")");
    }
  }

  /// "FILE:LINE: " for the option named first in `message` (as '--name' or 'name') that the
  /// file sets, or "" if none (an option from the command line is not the file's).
  std::string locate(std::string_view message, std::set<std::string> const& from_command_line) const {
    std::size_t best = std::string_view::npos;
    int best_line = 0;
    for (auto const& [name, line] : line_of_) {
      if (from_command_line.count(name)) continue;
      for (std::string const& form : {"--" + name, "'" + name + "'"}) {
        for (auto at_ = message.find(form); at_ != std::string_view::npos;
             at_ = message.find(form, at_ + 1)) {
          const auto end = at_ + form.size();
          const bool whole = end == message.size() ||
                             !(std::isalnum(static_cast<unsigned char>(message[end])) ||
                               message[end] == '-' || message[end] == '_');
          if (whole && at_ < best) {
            best = at_;
            best_line = line;
          }
        }
      }
    }
    return best == std::string_view::npos ? std::string() : at(best_line);
  }

 private:
  static std::string_view trim(std::string_view s) {
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
    while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
    return s;
  }
  std::string at(int line) const { return file_ + ":" + std::to_string(line) + ": "; }

  std::string file_;
  std::map<std::string, int> line_of_;
};

/// Bytes a pushed message needs around its text (action, names, time, id).
constexpr std::size_t envelope_bytes = 512;
constexpr long long max_frame_cap = 64 << 20;

/// Settles the options that depend on each other (see parse_options).
void settle_dependencies(po::variables_map const& vm, config& c) {
  using std::to_string;
  // A message must fit in one frame.
  if (c.max_message > c.max_frame) {
    if (given(vm, "max-message") && given(vm, "max-frame"))
      conflict("max-message", to_string(c.max_message), "must not exceed", "max-frame",
               to_string(c.max_frame));
    if (given(vm, "max-frame"))
      c.max_message = c.max_frame;
    else
      c.max_frame = std::min<std::size_t>(max_frame_cap, 2 * c.max_message);
  }
  // A pushed message must fit in a connection's outbound queue.
  if (c.max_message + envelope_bytes > c.max_outbound) {
    if (given(vm, "max-message") && given(vm, "max-outbound"))
      conflict("max-outbound", to_string(c.max_outbound), "must exceed", "max-message",
               to_string(c.max_message) + " + " + to_string(envelope_bytes) + " bytes");
    if (given(vm, "max-outbound"))
      c.max_message = c.max_outbound - envelope_bytes;  // max-outbound is at least 1024
    else
      c.max_outbound = 4 * (c.max_message + envelope_bytes);
  }
  // History pushed on join comes from the history kept.
  if (c.history_on_join > c.history_limit) {
    if (given(vm, "history-on-join") && given(vm, "history-limit"))
      conflict("history-on-join", to_string(c.history_on_join), "must not exceed", "history-limit",
               to_string(c.history_limit));
    if (given(vm, "history-limit"))
      c.history_on_join = c.history_limit;
    else
      c.history_limit = c.history_on_join;
  }
  // The bucket holds two seconds' worth of messages by default (10/s: 20).
  if (!given(vm, "rate-burst") && given(vm, "rate-limit") && c.rate_limit > 0)
    c.rate_burst = std::max(1.0, 2 * c.rate_limit);
  // The TCP and HTTP listeners cannot share a port on the same address.
  const std::string& http_address = c.http_address.empty() ? c.address : c.http_address;
  if (c.port != 0 && c.port == c.http_port &&
      (c.address.empty() || http_address.empty() || c.address == http_address)) {
    if (given(vm, "port") && given(vm, "http-port"))
      conflict("http-port", to_string(c.http_port), "must differ from", "port", to_string(c.port));
    auto next_to = [](std::uint16_t p) {
      return static_cast<std::uint16_t>(p < 65535 ? p + 1 : p - 1);
    };
    if (given(vm, "port"))
      c.http_port = next_to(c.port);
    else
      c.port = next_to(c.http_port);
  }
}

}  // namespace

parse_outcome parse_options(int argc, char const* const* argv) {
  config c;
  // clang-format off
  po::options_description generic("Generic options");
  generic.add_options()
    ("help,h", "print this help and exit")
    ("version,V", "print the version and exit")
    ("config,c", po::value<std::string>(), "read options from this file (key = value lines)")
    ("check-config", "check the options and the config file (and load --tls-cert), print OK "
     "or the error, exit 0 or 2; nothing is started");

  po::options_description daemon("Daemon options (also valid in the config file)");
  daemon.add_options()
    ("address,a", po::value<std::string>()->default_value(""), "address to listen on (default: all)")
    ("port,p", po::value<long long>()->default_value(7777), "TCP port (0: ephemeral)")
    ("port-file", po::value<std::string>()->default_value(""), "write the bound port to this file")
    ("data-dir", po::value<std::string>()->default_value(c.data_dir), "snapshot directory")
    ("log-dir", po::value<std::string>()->default_value(c.log_dir), "directory of the daily log files")
    ("log-level", po::value<std::string>()->default_value(c.log_level),
     "trace, debug, info, warn, error, critical or off")
    ("syslog", po::bool_switch(), "also send logs to syslog")
    ("log-format", po::value<std::string>()->default_value("text"),
     "text, or json: one JSON object per line (console and files) for log shippers")
    ("log-messages", po::value<std::string>()->default_value("rooms"),
     "chat texts written to the console and log: none, rooms or all (private ones too)")
    ("max-clients", po::value<long long>()->default_value(1000), "simultaneous connections")
    ("max-frame", po::value<long long>()->default_value(65536), "bytes of one frame")
    ("max-message", po::value<long long>()->default_value(4096),
     "bytes of one chat message (at most --max-frame)")
    ("max-outbound", po::value<long long>()->default_value(1 << 20), "bytes queued per connection")
    ("idle-timeout", po::value<long long>()->default_value(300), "seconds of silence before closing")
    ("history-on-join", po::value<long long>()->default_value(20),
     "messages pushed on sign-in/join (at most --history-limit)")
    ("history-limit", po::value<long long>()->default_value(1000), "messages kept per room/conversation")
    ("message-ttl", po::value<long long>()->default_value(0), "seconds a message is kept (0: forever)")
    ("rate-limit", po::value<double>()->default_value(10), "messages per second per account (0: off)")
    ("rate-burst", po::value<double>()->default_value(20),
     "token bucket size (default: two seconds of --rate-limit)")
    ("autosave", po::value<long long>()->default_value(60), "seconds between snapshots (0: at exit only)")
    ("fsync", po::value<std::string>()->default_value("always"),
     "journal sync before replies: always, everysec or no")
    ("nats", po::value<std::string>()->default_value(""),
     "cluster mode: NATS URLs, comma-separated (nats://127.0.0.1:4222,...)")
    ("node-name", po::value<std::string>()->default_value(""),
     "this node's name in the cluster (default: host name:port)")
    ("nats-stream", po::value<std::string>()->default_value("JIM"), "JetStream stream of the cluster")
    ("nats-replicas", po::value<long long>()->default_value(1),
     "stream replicas when this node creates it (3 for a 3-server NATS cluster)")
    ("kdf-iterations", po::value<long long>()->default_value(c.kdf_iterations),
     "PBKDF2 iterations (fewer stored are upgraded at the next sign-in)")
    ("token-ttl", po::value<long long>()->default_value(c.token_ttl.count()),
     "seconds a resume token (given at password sign-in) stays valid")
    ("hash-threads", po::value<long long>()->default_value(0),
     "password-hashing threads (0: one less than the cores, at least 1)")
    ("http-port", po::value<long long>()->default_value(7780), "HTTP/WebSocket port (0: none)")
    ("http-address", po::value<std::string>()->default_value(""), "HTTP address (default: --address)")
    ("http-origins", po::value<std::string>()->default_value(""),
     "comma-separated allowed WebSocket Origins (default: same host)")
    ("tls-cert", po::value<std::string>()->default_value(""),
     "PEM certificate (then its chain): both ports also accept TLS; SIGHUP reloads it")
    ("tls-key", po::value<std::string>()->default_value(""), "PEM private key of --tls-cert")
    ("tls-required", po::bool_switch(), "refuse plaintext connections (403) on both ports")
    ("metrics-allow", po::value<std::string>()->default_value(c.metrics_allow),
     "networks (CIDR, comma-separated) that may read /metrics and /healthz on the HTTP port")
    ("throttle-loopback", po::value<std::string>()->default_value("yes"),
     "apply the per-address limits to 127.0.0.1 and ::1 too: yes or no")
    ("max-conns-per-ip", po::value<long long>()->default_value(16),
     "connections open at once from one address (IPv6: one /64), both ports")
    ("new-conns-per-ip", po::value<long long>()->default_value(32),
     "new connections per 10 minutes from one address (IPv6: one /64), both ports")
    ("max-sessions", po::value<long long>()->default_value(8),
     "connections (devices) of one account at once; one more sign-in closes the oldest "
     "(1: a sign-in takes over the live connection)")
    ("hash-queue-wait", po::value<double>()->default_value(10),
     "seconds a sign-in may wait for a hashing thread before it gets 503 and retry_after")
    ("schedule-max", po::value<long long>()->default_value(c.schedule_max.count()),
     "seconds ahead a message may be scheduled (msg with \"at\")")
    ("admin", po::value<std::string>()->default_value(""),
     "server admins: account names, comma-separated (ban/unban accounts, delete any message)")
    ("report-threshold", po::value<long long>()->default_value(3),
     "reports from this many distinct accounts within --report-window mute an account")
    ("report-window", po::value<long long>()->default_value(c.report_window.count()),
     "seconds within which reports count toward a mute")
    ("mute-duration", po::value<long long>()->default_value(c.mute_duration.count()),
     "seconds a reported account stays muted");
  // clang-format on

  po::options_description all;
  all.add(generic).add(daemon);

  std::optional<config_locations> file_lines;  // for errors about options the file sets
  std::set<std::string> from_command_line;
  try {
    po::variables_map vm;
    const auto command_line = po::command_line_parser(argc, argv).options(all).run();
    for (auto const& o : command_line.options) from_command_line.insert(o.string_key);
    po::store(command_line, vm);
    if (vm.count("help")) {
      std::ostringstream os;
      os << "Usage: jimd [-a ADDR] [-p PORT] [-c CONFIG] [options]\n\n" << all;
      return print_and_exit{os.str(), 0};
    }
    if (vm.count("version")) return print_and_exit{std::string(version_string) + "\n", 0};
    if (vm.count("config")) {
      const auto path = vm["config"].as<std::string>();
      std::string why;
      const auto text = read_config_file(path, why);
      if (!text)
        return print_and_exit{"jimd: cannot read the config file " + path + ": " + why + "\n", 2};
      file_lines.emplace(path, *text, daemon);
      std::istringstream in(*text);
      po::store(po::parse_config_file(in, daemon),
                vm);  // the command line was stored first: it wins
    }
    po::notify(vm);

    c.address = checked_address(vm, "address");
    c.port = checked<std::uint16_t>(vm, "port", 0, 65535);
    c.port_file = vm["port-file"].as<std::string>();
    c.data_dir = vm["data-dir"].as<std::string>();
    c.log_dir = vm["log-dir"].as<std::string>();
    c.log_level = vm["log-level"].as<std::string>();
    if (c.log_level != "trace" && c.log_level != "debug" && c.log_level != "info" &&
        c.log_level != "warn" && c.log_level != "error" && c.log_level != "critical" &&
        c.log_level != "off")
      throw po::error("the argument ('" + c.log_level + "') for option '--log-level' is invalid");
    c.syslog = vm["syslog"].as<bool>();
    const auto log_format = vm["log-format"].as<std::string>();
    if (log_format != "text" && log_format != "json")
      throw po::error("the argument ('" + log_format +
                      "') for option '--log-format' is invalid (text or json)");
    c.log_json = log_format == "json";
    const auto log_messages = vm["log-messages"].as<std::string>();
    if (log_messages == "none")
      c.log_messages = message_logging::none;
    else if (log_messages == "rooms")
      c.log_messages = message_logging::rooms;
    else if (log_messages == "all")
      c.log_messages = message_logging::all;
    else
      throw po::error("the argument ('" + log_messages +
                      "') for option '--log-messages' is invalid (none, rooms or all)");
    c.max_clients = checked<std::size_t>(vm, "max-clients", 1, 1'000'000);
    c.max_frame = checked<std::size_t>(vm, "max-frame", 256, max_frame_cap);
    c.max_message = checked<std::size_t>(vm, "max-message", 1, max_frame_cap);
    c.max_outbound = checked<std::size_t>(vm, "max-outbound", 1024, 1LL << 34);
    c.idle_timeout = std::chrono::seconds(checked<long long>(vm, "idle-timeout", 2, 86400 * 365));
    c.history_on_join = checked<std::size_t>(vm, "history-on-join", 0, 100000);
    c.history_limit = checked<std::size_t>(vm, "history-limit", 1, 10'000'000);
    c.message_ttl = std::chrono::seconds(checked<long long>(vm, "message-ttl", 0, 1LL << 40));
    c.rate_limit = checked_double(vm, "rate-limit", 0, 1e9);
    c.rate_burst = checked_double(vm, "rate-burst", 1, 1e9);
    c.autosave = std::chrono::seconds(checked<long long>(vm, "autosave", 0, 1LL << 30));
    c.fsync = vm["fsync"].as<std::string>();
    if (c.fsync != "always" && c.fsync != "everysec" && c.fsync != "no")
      throw po::error("the argument ('" + c.fsync +
                      "') for option '--fsync' is invalid (always, everysec or no)");
    if (const auto urls = vm["nats"].as<std::string>(); !urls.empty()) {
      for (auto url : comma_items(urls)) {
        if (url.empty() || url.find_first_of(" \t") != std::string_view::npos)
          throw po::error("the argument ('" + urls +
                          "') for option '--nats' is invalid (URLs such as nats://host:4222, "
                          "comma-separated)");
        c.nats.emplace_back(url);
      }
    }
    c.node_name = vm["node-name"].as<std::string>();
    c.nats_stream = vm["nats-stream"].as<std::string>();
    if (c.nats_stream.empty() || c.nats_stream.size() > 64 ||
        c.nats_stream.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                        "0123456789_-") != std::string::npos)
      throw po::error("the argument ('" + c.nats_stream +
                      "') for option '--nats-stream' is invalid (1-64 of A-Z a-z 0-9 _ -)");
    c.nats_replicas = checked<int>(vm, "nats-replicas", 1, 5);
    c.kdf_iterations = checked<unsigned>(vm, "kdf-iterations", 1, 100'000'000);
    c.token_ttl = std::chrono::seconds(checked<long long>(vm, "token-ttl", 1, 10LL * 365 * 86400));
    c.hash_threads = checked<int>(vm, "hash-threads", 0, 256);
    c.http_port = checked<std::uint16_t>(vm, "http-port", 0, 65535);
    c.http_address = checked_address(vm, "http-address");
    c.http_origins = vm["http-origins"].as<std::string>();
    c.tls_cert = vm["tls-cert"].as<std::string>();
    c.tls_key = vm["tls-key"].as<std::string>();
    c.tls_required = vm["tls-required"].as<bool>();
    {
      const auto v = vm["throttle-loopback"].as<std::string>();
      if (v == "yes" || v == "true" || v == "on" || v == "1")
        c.throttle_loopback = true;
      else if (v == "no" || v == "false" || v == "off" || v == "0")
        c.throttle_loopback = false;
      else
        throw po::error("the argument ('" + v +
                        "') for option '--throttle-loopback' is invalid (yes or no)");
    }
    c.max_conns_per_ip = checked<std::size_t>(vm, "max-conns-per-ip", 1, 1'000'000);
    c.new_conns_per_ip = checked<std::size_t>(vm, "new-conns-per-ip", 1, 1'000'000'000);
    c.max_sessions = checked<std::size_t>(vm, "max-sessions", 1, 1000);
    c.hash_queue_wait = std::chrono::milliseconds(
        std::llround(1000 * checked_double(vm, "hash-queue-wait", 0.001, 3600)));
    c.schedule_max =
        std::chrono::seconds(checked<long long>(vm, "schedule-max", 1, 10LL * 365 * 86400));
    if (const auto names = vm["admin"].as<std::string>(); !names.empty()) {
      for (auto name : comma_items(names)) {
        if (!proto::valid_account_name(name))
          throw po::error("the argument ('" + names +
                          "') for option '--admin' is invalid (account names, comma-separated)");
        c.admins.emplace_back(name);
      }
    }
    c.report_threshold = checked<std::uint64_t>(vm, "report-threshold", 1, 1'000'000);
    c.report_window =
        std::chrono::seconds(checked<long long>(vm, "report-window", 1, 10LL * 365 * 86400));
    c.mute_duration =
        std::chrono::seconds(checked<long long>(vm, "mute-duration", 1, 10LL * 365 * 86400));
    if (c.tls_cert.empty() != c.tls_key.empty())
      throw po::error(c.tls_cert.empty() ? "--tls-key needs --tls-cert"
                                         : "--tls-cert needs --tls-key");
    if (c.tls_required && c.tls_cert.empty())
      throw po::error("--tls-required needs --tls-cert and --tls-key");
    c.metrics_allow = vm["metrics-allow"].as<std::string>();
    if (std::string why; !ops::cidr_list::parse(c.metrics_allow, why))
      throw po::error("the argument ('" + c.metrics_allow +
                      "') for option '--metrics-allow' is invalid: " + why);
    c.check_config = vm.count("check-config") != 0;
    settle_dependencies(vm, c);
  } catch (std::exception const& e) {
    const std::string where = file_lines ? file_lines->locate(e.what(), from_command_line) : "";
    return print_and_exit{"jimd: " + where + e.what() + " (see jimd --help)\n", 2};
  }
  return run_daemon{c};
}

}  // namespace jim::server
