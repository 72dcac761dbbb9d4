#pragma once
/// \file
/// Test support: runs the real `jimd` as a child process on 127.0.0.1 with an ephemeral port,
/// and talks to it over real sockets with a small blocking line client. Every wait is bounded.

#include <boost/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace jim::test {

using namespace std::chrono_literals;
namespace json = boost::json;

/// A fresh directory under the system temp dir, removed by the destructor.
class temp_dir {
 public:
  temp_dir();
  ~temp_dir();
  temp_dir(temp_dir const&) = delete;
  temp_dir& operator=(temp_dir const&) = delete;
  std::filesystem::path const& path() const { return path_; }

 private:
  std::filesystem::path path_;
};

/// A port on 127.0.0.1 nobody listens on right now (bound to 0, then released), for a
/// listener that cannot be ephemeral (jimd's HTTP port: 0 disables it; nats-server). Another
/// process could take it before the server binds it: unlikely on a test machine, and the
/// start then fails loudly.
std::uint16_t free_port();

/// Path of a built program (jimd, jim, ...), from the JIM_BIN_DIR compile definition.
std::filesystem::path program(std::string const& name);

/// How a daemon that was expected not to start ended: its exit status (-1: killed or no exit)
/// and everything it printed.
struct exit_result {
  int exit_code = -1;
  std::string output;
};
/// Runs jimd on `data_dir` (logs in DATA_DIR/logs, ephemeral ports) to its end, which must
/// come within 20 s (`timeout` ends it otherwise), capturing stdout and stderr.
exit_result run_jimd_to_exit(std::filesystem::path const& data_dir);
/// Runs jimd with `args` (shell words, already quoted: they go to `sh -c` as they are) to its
/// end, which must come within 20 s (`timeout` ends it otherwise), capturing stdout and stderr.
/// Throws std::runtime_error when the shell cannot be started.
exit_result run_jimd_with(std::string const& args);

/// The daemon as a child process. The constructor returns once it accepts connections
/// (it waits for `--port-file`, given a pipe, for at most 20 s).
class jimd_process {
 public:
  /// `args` are added to: -a 127.0.0.1 -p 0 --port-file ... --data-dir DIR --log-dir DIR/logs
  /// --http-port 0 --kdf-iterations 1000 --log-level warn (a later option in `args` wins only
  /// where Boost.Program_options allows: pass the ones you need to change through `args`
  /// and they replace the defaults of the same name).
  ///
  /// `env`: environment variables (name, value) set for the daemon only, on top of this
  /// process's own (test hooks such as JIMD_TEST_JOURNAL_FAIL_IF, NOTIFY_SOCKET).
  using environment = std::vector<std::pair<std::string, std::string>>;
  explicit jimd_process(std::vector<std::string> args = {}, std::filesystem::path data_dir = {},
                        environment env = {});
  ~jimd_process();
  jimd_process(jimd_process const&) = delete;
  jimd_process& operator=(jimd_process const&) = delete;

  std::uint16_t port() const { return port_; }
  int pid() const { return pid_; }
  std::filesystem::path const& data_dir() const { return data_dir_; }
  /// Everything the daemon printed (stdout and stderr) so far.
  std::string output() const;

  /// Sends `sig` and waits (bounded) for the exit; returns the exit status
  /// (or 128+signal if it died by a signal, -1 on timeout, after which it is killed).
  /// A daemon that had already ended by itself is not signalled: its status and output
  /// (log, sanitizer report) are printed to stderr, and its status is returned. The
  /// destructor also prints the output when a test assertion failed (or an exception went
  /// through it) while the daemon ran.
  int stop(int sig = 2 /*SIGINT*/, std::chrono::milliseconds bound = 15s);
  /// Resident set size of the daemon in KiB (from /proc).
  long rss_kib() const;

 private:
  std::optional<temp_dir> own_dir_;
  std::filesystem::path data_dir_;
  std::filesystem::path log_file_;
  int pid_ = -1;
  int last_pid_ = -1;  ///< pid_ before stop() cleared it (for report())
  std::uint16_t port_ = 0;
  std::size_t failures_at_start_ = 0;  ///< the run's failed assertions when it started
  int exceptions_at_start_ = 0;        ///< std::uncaught_exceptions() when it started
  bool reported_ = false;
  /// Prints the daemon's output (its last 64 KiB) to stderr with `why`.
  void report(std::string const& why);
};

/// A blocking client for one connection, reading newline-terminated frames.
class client {
 public:
  explicit client(std::uint16_t port, std::string const& host = "127.0.0.1");
  ~client();
  client(client&& o) noexcept;
  client& operator=(client&&) = delete;
  client(client const&) = delete;

  /// Sends raw bytes as they are.
  void send_raw(std::string_view bytes);
  /// Sends one object as a line.
  void send(json::object const& frame);
  /// Parses `json_text` and sends it as a line (a convenient literal syntax for tests).
  void send(std::string_view json_text);

  /// The next frame (reply or push); throws std::runtime_error on timeout or EOF.
  json::object recv(std::chrono::milliseconds bound = 5s);
  /// The next frame that is a reply (carries "response"); pushes met on the way are kept and
  /// returned by later pushes()/recv_push() calls.
  json::object reply(std::chrono::milliseconds bound = 5s);
  /// The next push (carries "action"), taking kept pushes first.
  json::object push(std::chrono::milliseconds bound = 5s);
  /// Sends a request and returns its reply.
  json::object request(std::string_view json_text, std::chrono::milliseconds bound = 5s);

  /// True when the server closed the connection within `bound` (frames before the EOF are
  /// discarded, except that they are kept for push()/reply()).
  bool closed_within(std::chrono::milliseconds bound = 5s);
  /// True when no frame arrives within `bound` (use only to assert silence).
  bool silent_for(std::chrono::milliseconds bound);

  /// Stops reading from now on (for slow-consumer tests): nothing is consumed by the client.
  int fd() const { return fd_; }
  void close();

 private:
  std::optional<std::string> next_line(std::chrono::milliseconds bound);
  int fd_ = -1;
  std::string buffer_;
  std::vector<json::object> kept_;
  bool eof_ = false;
};

/// Registers `name` (one-shot) and returns the signed-in client, its 201 reply checked.
client sign_up(std::uint16_t port, std::string const& name, std::string const& password = "pw");
/// Signs in (one-shot authenticate) and returns the client, its 200 reply checked.
client sign_in(std::uint16_t port, std::string const& name, std::string const& password = "pw");
/// Reads and drops the pushes that follow a sign-in or join (history), bounded by `n`.
void drain_history(client& c, std::size_t n);

/// `code` of a reply.
inline std::int64_t code_of(json::object const& o) {
  return o.at("response").as_int64();
}

}  // namespace jim::test
