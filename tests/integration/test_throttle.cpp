// Connection limits of issue 14 ("TLS and sign-in security" in the contract): per source
// address (both ports, --throttle-loopback yes opts the tests in: they all connect from
// 127.0.0.1), the descriptor limit raised at start (or max-clients lowered to what it allows,
// with a clear log line), the hashing queue's 503, and TLS clients refused with 503 over TLS.

#include "harness.hpp"
#include "multi_client.hpp"
#include "tls_support.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <future>
#include <memory>
#include <netinet/in.h>
#include <poll.h>
#include <sstream>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <thread>
#include <unistd.h>

using namespace jim::test;
namespace asio = boost::asio;
using tcp = asio::ip::tcp;
using steady = std::chrono::steady_clock;

namespace {

/// A blocking TCP connection for raw HTTP: 5 s timeouts on every read and write.
class raw_conn {
 public:
  explicit raw_conn(std::uint16_t port) {
    fd_ = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    REQUIRE(fd_ >= 0);
    timeval tv{5, 0};
    setsockopt(fd_, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
    setsockopt(fd_, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(::connect(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  }
  ~raw_conn() {
    if (fd_ >= 0) ::close(fd_);
  }
  raw_conn(raw_conn const&) = delete;
  raw_conn& operator=(raw_conn const&) = delete;

  void send(std::string_view bytes) {
    REQUIRE(::send(fd_, bytes.data(), bytes.size(), MSG_NOSIGNAL) ==
            static_cast<ssize_t>(bytes.size()));
  }
  /// Reads until `marker` has arrived (or EOF, or 5 s without data); returns all read so far.
  std::string read_until(std::string_view marker) {
    while (got_.find(marker) == std::string::npos) {
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n <= 0) break;
      got_.append(buf, static_cast<std::size_t>(n));
    }
    return got_;
  }
  /// Reads until EOF (or 5 s without data); true when the peer closed.
  bool read_to_eof() {
    for (;;) {
      char buf[4096];
      const ssize_t n = ::recv(fd_, buf, sizeof buf, 0);
      if (n == 0) return true;
      if (n < 0) return errno == ECONNRESET;
      got_.append(buf, static_cast<std::size_t>(n));
    }
  }
  std::string const& received() const { return got_; }

 private:
  int fd_ = -1;
  std::string got_;
};

/// A client's WebSocket text frame (payload under 126 bytes, masked with the zero key).
std::string masked_text(std::string_view payload) {
  std::string f;
  f += static_cast<char>(0x81);
  f += static_cast<char>(0x80 | payload.size());
  f.append(4, '\0');
  f += payload;
  return f;
}

/// One keep-alive GET answered (the connection stays open and counted).
void http_get_keep_alive(raw_conn& c) {
  c.send("GET /index.html HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
  const auto text = c.read_until("</html>");
  REQUIRE(text.rfind("HTTP/1.1 200", 0) == 0);
}

/// A connection to the JIM port that the server serves: `rooms` before sign-in is 401.
void expect_served(client& c) {
  CHECK(code_of(c.request(R"({"action":"rooms"})")) == 401);
}

/// The daemon's output contains `text` within `bound`.
template <class Daemon>  // jimd_process or limited_jimd
bool output_shows(Daemon const& d, std::string const& text,
                  std::chrono::milliseconds bound = 5s) {
  const auto until = steady::now() + bound;
  while (steady::now() < until) {
    if (d.output().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

/// jimd started with its own RLIMIT_NOFILE (soft and hard) set in the child before exec, for
/// the limit a test process cannot lower for itself and get back. Like jimd_process otherwise.
class limited_jimd {
 public:
  limited_jimd(rlim_t fd_limit, std::vector<std::string> extra) {
    int pipefd[2];
    REQUIRE(pipe(pipefd) == 0);
    std::vector<std::string> args{program("jimd").string(),
                                  "--address", "127.0.0.1", "--port", "0", "--http-port", "0",
                                  "--data-dir", dir_.path().string(), "--log-dir",
                                  (dir_.path() / "logs").string(), "--kdf-iterations", "1000",
                                  "--log-level", "info", "--throttle-loopback", "no",
                                  "--port-file", "/dev/fd/" + std::to_string(pipefd[1])};
    args.insert(args.end(), extra.begin(), extra.end());
    output_ = dir_.path() / "output.txt";
    pid_ = fork();
    REQUIRE(pid_ >= 0);
    if (pid_ == 0) {
      close(pipefd[0]);
      const int out = open(output_.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
      if (out >= 0) {
        dup2(out, 1);
        dup2(out, 2);
      }
      rlimit rl{fd_limit, fd_limit};
      if (setrlimit(RLIMIT_NOFILE, &rl) != 0) _exit(126);
      std::vector<char*> argv;
      for (auto& a : args) argv.push_back(a.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    }
    close(pipefd[1]);
    std::string text;
    const auto until = steady::now() + 20s;
    while (text.find('\n') == std::string::npos && steady::now() < until) {
      pollfd p{pipefd[0], POLLIN, 0};
      if (poll(&p, 1, 1000) < 0) break;
      if (!(p.revents & (POLLIN | POLLHUP))) continue;
      char buf[64];
      const ssize_t n = read(pipefd[0], buf, sizeof buf);
      if (n <= 0) break;
      text.append(buf, static_cast<std::size_t>(n));
    }
    close(pipefd[0]);
    INFO(output());
    REQUIRE(text.find('\n') != std::string::npos);
    port_ = static_cast<std::uint16_t>(std::stoi(text));
  }
  ~limited_jimd() {
    if (pid_ <= 0) return;
    kill(pid_, SIGTERM);
    for (int i = 0; i < 1000; ++i) {
      if (waitpid(pid_, nullptr, WNOHANG) == pid_) return;
      std::this_thread::sleep_for(10ms);
    }
    kill(pid_, SIGKILL);
    waitpid(pid_, nullptr, 0);
  }
  limited_jimd(limited_jimd const&) = delete;
  limited_jimd& operator=(limited_jimd const&) = delete;
  std::uint16_t port() const { return port_; }
  std::string output() const {
    std::ifstream in(output_);
    std::stringstream ss;
    ss << in.rdbuf();
    return ss.str();
  }

 private:
  temp_dir dir_;
  std::filesystem::path output_;
  int pid_ = -1;
  std::uint16_t port_ = 0;
};

/// The soft limit on open files of process `pid`, from /proc/PID/limits.
long soft_fd_limit_of(int pid) {
  std::ifstream in("/proc/" + std::to_string(pid) + "/limits");
  std::string line;
  while (std::getline(in, line)) {
    if (line.rfind("Max open files", 0) != 0) continue;
    std::istringstream fields(line.substr(std::strlen("Max open files")));
    std::string soft;
    fields >> soft;
    return soft == "unlimited" ? -1 : std::stol(soft);
  }
  return 0;
}

}  // namespace

TEST_CASE(
    "The 17th simultaneous connection from one address gets 503 with retry_after and is closed",
    "[integration][throttle]") {
  jimd_process d({"--throttle-loopback", "yes"});
  std::vector<client> open;
  for (int i = 0; i < 16; ++i) {
    open.emplace_back(d.port());
    expect_served(open.back());
  }
  client refused(d.port());
  auto r = refused.recv();  // sent at once, without a request
  CHECK(code_of(r) == 503);
  CHECK(r.at("error").as_string().find("max-conns-per-ip 16") != std::string::npos);
  // When a slot frees is unknown: a fixed hint, so that a client waits and tries again (jim
  // does so only when told a retry_after).
  REQUIRE(r.contains("retry_after"));
  CHECK(r.at("retry_after").to_number<double>() == 5);
  CHECK(refused.closed_within());

  // A closed connection frees its slot (once the server has seen the close: bounded retries,
  // refusals use none of the new-connection allowance).
  open.back().close();
  open.pop_back();
  bool served = false;
  for (int attempt = 0; attempt < 50 && !served; ++attempt) {
    client again(d.port());
    auto first = again.request(R"({"action":"rooms"})");
    served = code_of(first) == 401;
    if (!served) {
      CHECK(code_of(first) == 503);
      std::this_thread::sleep_for(20ms);
    }
  }
  CHECK(served);
}

TEST_CASE("The 33rd new connection within 10 minutes gets 429 with retry_after",
          "[integration][throttle]") {
  jimd_process d({"--throttle-loopback", "yes"});
  for (int i = 0; i < 32; ++i) {
    client c(d.port());
    expect_served(c);
  }
  client late(d.port());
  auto r = late.recv();
  CHECK(code_of(r) == 429);
  REQUIRE(r.contains("retry_after"));
  // The allowance refills evenly: one connection per 600/32 = 18.75 s.
  const auto wait = r.at("retry_after").to_number<double>();
  CHECK(wait >= 1);
  CHECK(wait <= 19);
  CHECK(late.closed_within());
  // Other limits of the option: a smaller allowance is honoured too.
  jimd_process small({"--throttle-loopback", "yes", "--new-conns-per-ip", "2"});
  client a(small.port()), b(small.port());
  expect_served(a);
  expect_served(b);
  client c(small.port());
  CHECK(code_of(c.recv()) == 429);
}

TEST_CASE("Connections to the HTTP port count toward the same per-address limits",
          "[integration][throttle][websocket]") {
  const auto http_port = free_port();
  jimd_process d({"--throttle-loopback", "yes", "--http-port", std::to_string(http_port),
                  "--http-address", "127.0.0.1"});
  // 15 idle keep-alive HTTP connections (each answered once, so surely accepted and counted).
  std::vector<std::unique_ptr<raw_conn>> web;
  for (int i = 0; i < 15; ++i) {
    web.push_back(std::make_unique<raw_conn>(http_port));
    http_get_keep_alive(*web.back());
  }
  client chat(d.port());  // the 16th
  expect_served(chat);
  // The 17th, on either port, is refused.
  client more(d.port());
  CHECK(code_of(more.recv()) == 503);
  {
    raw_conn page(http_port);
    page.send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n");
    CHECK(page.read_to_eof());
    CHECK(page.received().rfind("HTTP/1.1 503", 0) == 0);
    CHECK(page.received().find("max-conns-per-ip") != std::string::npos);
    CHECK(page.received().find("Retry-After: 5\r\n") != std::string::npos);
  }
  {
    // A WebSocket upgrade gets its 503 as a frame, then Close 1013 (try again later).
    raw_conn ws(http_port);
    ws.send(
        "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    const auto text = ws.read_until("max-conns-per-ip");
    CHECK(text.rfind("HTTP/1.1 101", 0) == 0);
    CHECK(text.find(R"("response":503)") != std::string::npos);
  }
  // WebSocket sessions count too: free one slot, fill it with a WebSocket, then full again.
  web.pop_back();
  bool upgraded = false;
  std::unique_ptr<raw_conn> ws;
  for (int attempt = 0; attempt < 50 && !upgraded; ++attempt) {
    ws = std::make_unique<raw_conn>(http_port);
    ws->send(
        "GET /chat HTTP/1.1\r\nHost: 127.0.0.1\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
        "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
    ws->read_until("\r\n\r\n");
    // A refused upgrade is answered with 101 too, then the 503 frame: ask something.
    ws->send(masked_text(R"({"action":"rooms"})"));
    const auto text = ws->read_until("\"error\"");
    upgraded = text.rfind("HTTP/1.1 101", 0) == 0 && text.find(R"("response":401)") != std::string::npos;
    if (!upgraded) std::this_thread::sleep_for(20ms);
  }
  REQUIRE(upgraded);
  client last(d.port());
  CHECK(code_of(last.recv()) == 503);
}

TEST_CASE("With --throttle-loopback no, connections from loopback are not limited",
          "[integration][throttle]") {
  jimd_process d({"--throttle-loopback", "no", "--max-conns-per-ip", "2", "--new-conns-per-ip",
                  "3"});
  std::vector<client> open;
  for (int i = 0; i < 10; ++i) {
    open.emplace_back(d.port());
    expect_served(open.back());
  }
  open.clear();
  for (int i = 0; i < 10; ++i) {
    client c(d.port());
    expect_served(c);
  }
}

TEST_CASE("jimd raises a low soft descriptor limit to what max-clients needs",
          "[integration][throttle][fds]") {
  rlimit mine{};
  REQUIRE(getrlimit(RLIMIT_NOFILE, &mine) == 0);
  const rlim_t needed = 1000 + 128;
  if (mine.rlim_max != RLIM_INFINITY && mine.rlim_max < needed) {
    WARN("hard descriptor limit " << mine.rlim_max << " below " << needed << ": not tested");
    return;
  }
  // The child inherits a soft limit of 256; the test process gets its own back at once.
  rlimit low = mine;
  low.rlim_cur = 256;
  REQUIRE(setrlimit(RLIMIT_NOFILE, &low) == 0);
  std::unique_ptr<jimd_process> d;
  try {
    d = std::make_unique<jimd_process>(
        std::vector<std::string>{"--max-clients", "1000", "--log-level", "info"});
  } catch (...) {
    setrlimit(RLIMIT_NOFILE, &mine);
    throw;
  }
  REQUIRE(setrlimit(RLIMIT_NOFILE, &mine) == 0);
  CHECK(output_shows(*d, "raised the descriptor limit (RLIMIT_NOFILE) from 256 to 1128"));
  CHECK(soft_fd_limit_of(d->pid()) == 1128);
}

TEST_CASE("Under a hard descriptor limit too low for max-clients, jimd says so and answers 503",
          "[integration][throttle][fds]") {
  REQUIRE(raise_fd_limit(1024) >= 400);
  // 200 descriptors: 128 are kept for the daemon itself and refusals, so 72 clients.
  limited_jimd d(200, {"--max-clients", "1000"});
  // The log lines may reach the output file after the port file (bounded wait, not a read).
  CHECK(output_shows(d, "--max-clients 1000 needs 1128 file descriptors, but the limit is 200"));
  CHECK(output_shows(d, "serving at most 72 clients"));
  // More connections than the descriptors: every one is answered (the old daemon stopped
  // answering at about 195, leaving the rest in the listen backlog).
  std::vector<client> served;
  std::size_t refused = 0;
  for (int i = 0; i < 250; ++i) {
    client c(d.port());
    auto r = c.request(R"({"action":"rooms"})");
    if (code_of(r) == 401) {
      served.push_back(std::move(c));
    } else {
      CHECK(code_of(r) == 503);
      ++refused;
    }
  }
  CHECK(served.size() == 72);
  CHECK(refused == 250 - 72);
}

TEST_CASE("A sign-in that waits too long for a hashing thread gets 503 with retry_after",
          "[integration][throttle][hashing]") {
  // One hashing thread, a hash of about a quarter of a second (idle machine), and a 0.1 s bound
  // on the wait: of four registrations sent at once, the first is hashed, those behind it are
  // given up on (and answered at once when the queue would surely take longer).
  jimd_process d({"--hash-threads", "1", "--kdf-iterations", "1000000", "--hash-queue-wait",
                  "0.1"});
  std::vector<client> cs;
  for (int i = 0; i < 4; ++i) cs.emplace_back(d.port());
  const auto t0 = steady::now();
  for (int i = 0; i < 4; ++i)
    cs[static_cast<std::size_t>(i)].send(
        R"({"action":"register","user":{"account_name":"u)" + std::to_string(i) +
        R"(","password":"pw"}})");
  int created = 0, busy = 0;
  for (auto& c : cs) {
    auto r = c.reply(60s);  // a loaded machine: the one hash may take seconds
    const auto code = code_of(r);
    if (code == 201) ++created;
    if (code == 503) {
      ++busy;
      CHECK(r.at("error").as_string().find("try again later") != std::string::npos);
      REQUIRE(r.contains("retry_after"));
      CHECK(r.at("retry_after").to_number<double>() >= 1);
    }
    CHECK((code == 201 || code == 503));
  }
  const auto took = steady::now() - t0;
  CHECK(busy >= 1);
  WARN("hashing queue: " << created << " registered, " << busy << " got 503, in "
                         << std::chrono::duration_cast<std::chrono::milliseconds>(took).count()
                         << " ms");
  // The connection stays open: the same request later succeeds.
  for (std::size_t i = 0; i < cs.size(); ++i) {
    auto r = cs[i].request(R"({"action":"users"})");
    CHECK((code_of(r) == 200 || code_of(r) == 401));
  }
}

TEST_CASE("A storm of hashing refusals logs at most one line per second, with a count",
          "[integration][throttle][hashing]") {
  jimd_process d({"--hash-threads", "1", "--kdf-iterations", "1000000", "--hash-queue-wait",
                  "0.1"});
  constexpr int n = 30;
  std::vector<client> cs;
  for (int i = 0; i < n; ++i) cs.emplace_back(d.port());
  const auto t0 = steady::now();
  for (int i = 0; i < n; ++i)
    cs[static_cast<std::size_t>(i)].send(R"({"action":"register","user":{"account_name":"s)" +
                                         std::to_string(i) + R"(","password":"pw"}})");
  int busy = 0;
  for (auto& c : cs)
    if (code_of(c.reply(60s)) == 503) ++busy;
  const auto took = std::chrono::duration_cast<std::chrono::seconds>(steady::now() - t0).count();
  REQUIRE(busy >= 10);
  auto lines = [&] {
    const std::string out = d.output();
    std::size_t k = 0;
    for (auto at = out.find("password check not started"); at != std::string::npos;
         at = out.find("password check not started", at + 1))
      ++k;
    return k;
  };
  // The log is written by its own thread: wait for the first line.
  for (int i = 0; i < 100 && lines() == 0; ++i) std::this_thread::sleep_for(50ms);
  INFO(d.output());
  CHECK(lines() >= 1);
  CHECK(lines() <= static_cast<std::size_t>(took) + 2);  // one line each, 20+, before
  CHECK(d.output().find("more such refusals since the last such line") != std::string::npos);
}

TEST_CASE("When max-clients is reached a TLS client gets the 503 over TLS, on both ports",
          "[integration][throttle][tls]") {
  test_ca ca;
  const auto cert = ca.server_cert("server", 77);
  const auto http_port = free_port();
  jimd_process d({"--tls-cert", cert.cert.string(), "--tls-key", cert.key.string(),
                  "--http-port", std::to_string(http_port), "--max-clients", "1"});
  client holder(d.port());
  expect_served(holder);
  const tls_verify verify{ca.ca_file(), "localhost"};
  {
    tls_client c(d.port(), verify);
    const auto ec = c.handshake();
    INFO(ec.message());
    REQUIRE(!ec);
    auto r = c.recv();
    CHECK(code_of(r) == 503);
    CHECK(r.at("error").as_string().find("max-clients") != std::string::npos);
    CHECK(c.closed());
  }
  {
    client plain(d.port());  // plaintext on the same port: the 503 line, as without TLS
    CHECK(code_of(plain.recv()) == 503);
  }
  {
    auto page = https_get(http_port, "/", verify);
    CHECK(page.status == 503);
    CHECK(http_get(http_port, "/").status == 503);
  }
  {
    wss_client web(http_port, verify);
    auto r = web.request(R"({"action":"rooms"})");
    CHECK(code_of(r) == 503);
  }
}
