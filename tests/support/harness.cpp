#include "harness.hpp"

#include "nats_harness.hpp"

// The listener base classes (CATCH_CONFIG_EXTERNAL_INTERFACES: this is not the main file).
#define CATCH_CONFIG_EXTERNAL_INTERFACES
#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cctype>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fcntl.h>
#include <fstream>
#include <map>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <random>
#include <signal.h>
#include <sstream>
#include <stdexcept>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

#include <algorithm>

namespace jim::test {

namespace fs = std::filesystem;
using clock = std::chrono::steady_clock;

namespace {
int remaining_ms(clock::time_point deadline) {
  auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

/// Failed assertions of the whole run so far (CHECK as well as REQUIRE), counted by the
/// listener below: a daemon whose test failed while it ran shows its output.
std::size_t failed_assertions = 0;

struct failure_counter : Catch::TestEventListenerBase {
  using TestEventListenerBase::TestEventListenerBase;
  bool assertionEnded(Catch::AssertionStats const& stats) override {
    if (!stats.assertionResult.isOk()) ++failed_assertions;
    return true;
  }
};

/// "exit 3", "killed by SIGSEGV" ... for a waitpid status.
std::string describe_status(int status) {
  if (WIFEXITED(status)) return "exit " + std::to_string(WEXITSTATUS(status));
  if (WIFSIGNALED(status)) {
    char const* abbrev = sigabbrev_np(WTERMSIG(status));
    return std::string("killed by SIG") + (abbrev ? abbrev : std::to_string(WTERMSIG(status)).c_str());
  }
  return "status " + std::to_string(status);
}

/// The last `max_bytes` of `text` (a log may be long; its end says why it ended).
std::string tail_of(std::string text, std::size_t max_bytes = 64 * 1024) {
  if (text.size() <= max_bytes) return text;
  return "[... " + std::to_string(text.size() - max_bytes) + " bytes left out ...]\n" +
         text.substr(text.size() - max_bytes);
}
}  // namespace

CATCH_REGISTER_LISTENER(failure_counter)

temp_dir::temp_dir() {
  std::string tmpl = (fs::temp_directory_path() / "jimd-test-XXXXXX").string();
  if (!mkdtemp(tmpl.data())) throw std::runtime_error("mkdtemp failed");
  path_ = tmpl;
}
temp_dir::~temp_dir() {
  std::error_code ec;
  fs::remove_all(path_, ec);
}

std::uint16_t free_port() {
  int fd = ::socket(AF_INET, SOCK_STREAM, 0);
  if (fd < 0) throw std::runtime_error("socket failed");
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = 0;
  socklen_t len = sizeof a;
  if (::bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
      ::getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len) != 0) {
    ::close(fd);
    throw std::runtime_error("cannot find a free port");
  }
  ::close(fd);
  return ntohs(a.sin_port);
}

fs::path program(std::string const& name) {
  return fs::path(JIM_BIN_DIR) / name;
}

exit_result run_jimd_to_exit(fs::path const& data_dir) {
  return run_jimd_with("-a 127.0.0.1 -p 0 --http-port 0 --data-dir '" + data_dir.string() +
                       "' --log-dir '" + (data_dir / "logs").string() + "'");
}

exit_result run_jimd_with(std::string const& args) {
  const std::string cmd = "timeout 20 '" + program("jimd").string() + "' " + args + " 2>&1";
  exit_result r;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed");
  char buf[4096];
  std::size_t n;
  while ((n = std::fread(buf, 1, sizeof buf, p)) > 0) r.output.append(buf, n);
  const int status = ::pclose(p);
  r.exit_code = WIFEXITED(status) ? WEXITSTATUS(status) : -1;
  return r;
}

jimd_process::jimd_process(std::vector<std::string> args, fs::path data_dir, environment env) {
  if (data_dir.empty()) {
    own_dir_.emplace();
    data_dir = own_dir_->path();
  }
  data_dir_ = data_dir;
  fs::create_directories(data_dir_);
  log_file_ = data_dir_ / "daemon-output.txt";

  int pipefd[2];
  if (pipe(pipefd) != 0) throw std::runtime_error("pipe failed");

  std::map<std::string, std::string> opts{{"--address", "127.0.0.1"},
                                          {"--port", "0"},
                                          {"--data-dir", data_dir_.string()},
                                          {"--log-dir", (data_dir_ / "logs").string()},
                                          {"--http-port", "0"},
                                          {"--kdf-iterations", "1000"},
                                          {"--log-level", "warn"},
                                          // Every test connects from 127.0.0.1: the per-address
                                          // limits are off unless a test passes "yes".
                                          {"--throttle-loopback", "no"},
                                          {"--port-file", "/dev/fd/" + std::to_string(pipefd[1])}};
  std::vector<std::string> flags;
  for (std::size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    if (a.rfind("--", 0) == 0 && i + 1 < args.size() && args[i + 1].rfind("--", 0) != 0) {
      opts[a] = args[++i];
    } else {
      flags.push_back(a);
    }
  }
  // JIM_TEST_NATS=1: every daemon of the run is a cluster node (the conformance suite against
  // cluster mode, docs/CLUSTER.md): its own stream, named after its data dir (so a restart on
  // the same dir finds its stream again), on one JetStream server shared by this process.
  if (char const* v = std::getenv("JIM_TEST_NATS");
      v && *v && std::string_view(v) != "0" && !opts.count("--nats")) {
    std::string stream = "T";
    for (char ch : data_dir_.filename().string())
      stream += std::isalnum(static_cast<unsigned char>(ch)) ? ch : '_';
    opts["--nats"] = shared_nats_server().url(0);
    opts["--nats-stream"] = stream;
  }
  std::vector<std::string> argv_s{program("jimd").string()};
  for (auto& [k, v] : opts) {
    argv_s.push_back(k);
    argv_s.push_back(v);
  }
  for (auto& f : flags) argv_s.push_back(f);
  // The child's environment, built before fork (only async-signal-safe calls after it).
  std::vector<std::string> env_s;
  for (char** e = environ; *e; ++e) {
    const std::string_view entry(*e);
    const auto name = entry.substr(0, entry.find('='));
    if (std::none_of(env.begin(), env.end(), [&](auto const& kv) { return kv.first == name; }))
      env_s.emplace_back(entry);
  }
  for (auto const& [name, value] : env) env_s.push_back(name + "=" + value);
  std::vector<char*> envp;
  for (auto& s : env_s) envp.push_back(s.data());
  envp.push_back(nullptr);

  pid_ = fork();
  if (pid_ < 0) throw std::runtime_error("fork failed");
  if (pid_ == 0) {
    close(pipefd[0]);
    int out = open(log_file_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    if (out >= 0) {
      dup2(out, 1);
      dup2(out, 2);
    }
    std::vector<char*> argv;
    for (auto& s : argv_s) argv.push_back(s.data());
    argv.push_back(nullptr);
    execve(argv[0], argv.data(), envp.data());
    _exit(127);
  }
  close(pipefd[1]);
  // Wait for the port: the daemon writes it once it accepts connections.
  std::string text;
  const auto deadline = clock::now() + 20s;
  for (;;) {
    pollfd p{pipefd[0], POLLIN, 0};
    int r = poll(&p, 1, remaining_ms(deadline));
    if (r <= 0) break;
    char buf[64];
    ssize_t n = read(pipefd[0], buf, sizeof buf);
    if (n <= 0) break;
    text.append(buf, static_cast<std::size_t>(n));
    if (text.find('\n') != std::string::npos) break;
  }
  close(pipefd[0]);
  if (text.find('\n') == std::string::npos) {
    int code = stop(SIGKILL, 5s);
    throw std::runtime_error("jimd did not start (exit " + std::to_string(code) + "): " + output());
  }
  port_ = static_cast<std::uint16_t>(std::stoi(text));
  failures_at_start_ = failed_assertions;
  exceptions_at_start_ = std::uncaught_exceptions();
}

jimd_process::~jimd_process() {
  if (pid_ > 0) stop(SIGTERM, 10s);
  // A test that failed (an assertion, or an exception unwinding through here) while this
  // daemon ran: its output (log lines, a sanitizer's report) may say why.
  if (!reported_ && (failed_assertions > failures_at_start_ ||
                     std::uncaught_exceptions() > exceptions_at_start_))
    report("the test failed while it ran");
}

void jimd_process::report(std::string const& why) {
  reported_ = true;
  std::fprintf(stderr,
               "==== jimd (pid %d, port %u, data dir %s): %s; its output (%s):\n%s\n==== end of "
               "jimd pid %d's output\n",
               pid_ > 0 ? pid_ : last_pid_, static_cast<unsigned>(port_), data_dir_.c_str(),
               why.c_str(), log_file_.c_str(), tail_of(output()).c_str(),
               pid_ > 0 ? pid_ : last_pid_);
  std::fflush(stderr);
}

std::string jimd_process::output() const {
  std::ifstream in(log_file_);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

int jimd_process::stop(int sig, std::chrono::milliseconds bound) {
  if (pid_ <= 0) return -1;
  last_pid_ = pid_;
  int early = 0;
  if (waitpid(pid_, &early, WNOHANG) == pid_) {
    // It ended by itself before the test stopped it (a crash, a sanitizer's halt_on_error, a
    // fatal error): say so, with what it printed, so that the failure explains itself.
    report("ended by itself (" + describe_status(early) + ") before the test stopped it");
    pid_ = -1;
    if (WIFEXITED(early)) return WEXITSTATUS(early);
    if (WIFSIGNALED(early)) return 128 + WTERMSIG(early);
    return -1;
  }
  kill(pid_, sig);
  const auto deadline = clock::now() + bound;
  int status = 0;
  for (;;) {
    pid_t r = waitpid(pid_, &status, WNOHANG);
    if (r == pid_) break;
    if (clock::now() >= deadline) {
      kill(pid_, SIGKILL);
      waitpid(pid_, &status, 0);
      pid_ = -1;
      return -1;
    }
    // waitpid has no timeout: poll the child's state every few milliseconds, bounded above.
    std::this_thread::sleep_for(5ms);
  }
  pid_ = -1;
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}

long jimd_process::rss_kib() const {
  std::ifstream in("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(in, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::stol(line.substr(6));
  return -1;
}

client::client(std::uint16_t port, std::string const& host) {
  fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd_ < 0) throw std::runtime_error("socket failed");
  sockaddr_in addr{};
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  inet_pton(AF_INET, host.c_str(), &addr.sin_addr);
  if (connect(fd_, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
    ::close(fd_);
    throw std::runtime_error(std::string("connect failed: ") + std::strerror(errno));
  }
  int one = 1;
  setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

client::client(client&& o) noexcept
    : fd_(std::exchange(o.fd_, -1)),
      buffer_(std::move(o.buffer_)),
      kept_(std::move(o.kept_)),
      eof_(o.eof_) {}

client::~client() {
  close();
}

void client::close() {
  if (fd_ >= 0) ::close(fd_);
  fd_ = -1;
}

void client::send_raw(std::string_view bytes) {
  while (!bytes.empty()) {
    ssize_t n = ::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error(std::string("send failed: ") + std::strerror(errno));
    }
    bytes.remove_prefix(static_cast<std::size_t>(n));
  }
}

void client::send(json::object const& frame) {
  send_raw(json::serialize(frame) + "\n");
}

void client::send(std::string_view json_text) {
  send(json::parse(json_text).as_object());
}

std::optional<std::string> client::next_line(std::chrono::milliseconds bound) {
  const auto deadline = clock::now() + bound;
  for (;;) {
    auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      std::string line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      return line;
    }
    if (eof_) return std::nullopt;
    pollfd p{fd_, POLLIN, 0};
    int r = poll(&p, 1, remaining_ms(deadline));
    if (r == 0) throw std::runtime_error("timed out waiting for a frame");
    if (r < 0) {
      if (errno == EINTR) continue;
      throw std::runtime_error("poll failed");
    }
    char buf[65536];
    ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
    if (n <= 0) {
      eof_ = true;
      continue;
    }
    buffer_.append(buf, static_cast<std::size_t>(n));
  }
}

json::object client::recv(std::chrono::milliseconds bound) {
  auto line = next_line(bound);
  if (!line) throw std::runtime_error("connection closed by the server");
  return json::parse(*line).as_object();
}

json::object client::reply(std::chrono::milliseconds bound) {
  const auto deadline = clock::now() + bound;
  for (int i = 0; i < 100000; ++i) {
    auto o = recv(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()));
    if (o.contains("response")) return o;
    kept_.push_back(std::move(o));
  }
  throw std::runtime_error("no reply among 100000 frames");
}

json::object client::push(std::chrono::milliseconds bound) {
  if (!kept_.empty()) {
    auto o = std::move(kept_.front());
    kept_.erase(kept_.begin());
    return o;
  }
  auto o = recv(bound);
  if (!o.contains("action")) throw std::runtime_error("expected a push, got " + json::serialize(o));
  return o;
}

json::object client::request(std::string_view json_text, std::chrono::milliseconds bound) {
  send(json_text);
  return reply(bound);
}

bool client::closed_within(std::chrono::milliseconds bound) {
  const auto deadline = clock::now() + bound;
  try {
    for (int i = 0; i < 1000000; ++i) {
      auto line =
          next_line(std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()));
      if (!line) return true;
      if (!line->empty()) kept_.push_back(json::parse(*line).as_object());
    }
  } catch (std::runtime_error const&) {
    return eof_;
  }
  return false;
}

bool client::silent_for(std::chrono::milliseconds bound) {
  if (!kept_.empty() || buffer_.find('\n') != std::string::npos) return false;
  pollfd p{fd_, POLLIN, 0};
  return poll(&p, 1, static_cast<int>(bound.count())) == 0;
}

namespace {

/// A new connection on which `action` (register or authenticate) for `name` got `expected`;
/// throws std::runtime_error naming `what` otherwise.
client signed_in_by(std::uint16_t port, char const* action, std::string const& name,
                    std::string const& password, std::int64_t expected, char const* what) {
  client c(port);
  json::object req{{"action", action}, {"user", {{"account_name", name}, {"password", password}}}};
  c.send(req);
  auto r = c.reply();
  if (code_of(r) != expected)
    throw std::runtime_error(std::string(what) + " " + name + ": " + json::serialize(r));
  return c;
}

}  // namespace

client sign_up(std::uint16_t port, std::string const& name, std::string const& password) {
  return signed_in_by(port, "register", name, password, 201, "sign_up");
}

client sign_in(std::uint16_t port, std::string const& name, std::string const& password) {
  return signed_in_by(port, "authenticate", name, password, 200, "sign_in");
}

void drain_history(client& c, std::size_t n) {
  for (std::size_t i = 0; i < n; ++i) c.push();
}

}  // namespace jim::test
