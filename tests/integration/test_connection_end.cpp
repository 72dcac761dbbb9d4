// How a connection ends when the client closes first (issue 14, reconnect storms): jimd then
// closes at once, without a shutdown or a lingering read of its own (nothing is left to read),
// and every reply still arrives before an orderly end of file, never a reset.

#include "chat_helpers.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <filesystem>
#include <string>
#include <utility>
#include <vector>

using namespace jim::test;

namespace {

/// Reads `fd` until the server ends the connection, within `bound`: the lines received and how
/// it ended (0: end of file, else the errno of the failed read, ETIMEDOUT: not within bound).
std::pair<std::vector<json::object>, int> read_to_end(int fd, std::chrono::milliseconds bound) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  std::string data;
  int end = ETIMEDOUT;
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    const int r = ::poll(&p, 1, static_cast<int>(left.count()));
    if (r < 0 && errno == EINTR) continue;
    if (r <= 0) break;
    char buf[65536];
    const ssize_t n = ::recv(fd, buf, sizeof buf, 0);
    if (n > 0) {
      data.append(buf, static_cast<std::size_t>(n));
      continue;
    }
    end = n == 0 ? 0 : errno;
    break;
  }
  std::vector<json::object> lines;
  for (std::size_t at = 0, nl; (nl = data.find('\n', at)) != std::string::npos; at = nl + 1)
    lines.push_back(json::parse(data.substr(at, nl - at)).as_object());
  return {std::move(lines), end};
}

/// Sockets the process `pid` has open (listeners and connections), from /proc/PID/fd.
std::size_t sockets_of(int pid) {
  std::size_t n = 0;
  const auto dir = std::filesystem::path("/proc") / std::to_string(pid) / "fd";
  std::error_code ec;
  for (auto const& e : std::filesystem::directory_iterator(dir, ec)) {
    std::error_code lec;
    if (std::filesystem::read_symlink(e.path(), lec).string().rfind("socket:", 0) == 0) ++n;
  }
  return n;
}

/// The requests of `lines` answered, in order: the "tag" of each reply that has one.
std::vector<std::int64_t> tags_of(std::vector<json::object> const& lines) {
  std::vector<std::int64_t> tags;
  for (auto const& o : lines)
    if (o.contains("response") && o.contains("tag")) tags.push_back(o.at("tag").as_int64());
  return tags;
}

}  // namespace

TEST_CASE("A client that half-closes after its requests gets every reply, then an orderly close",
          "[integration][connection]") {
  jimd_process d({"--rate-limit", "0"});
  auto alice = sign_up(d.port(), "alice");
  const std::string text(3000, 'x');  // 20 history pushes of ~3 KB follow the next sign-in
  for (int i = 0; i < 25; ++i) REQUIRE(code_of(say(alice, text)) == 200);

  client c(d.port());
  std::string batch =
      R"({"action":"authenticate","user":{"account_name":"alice","password":"pw"},"tag":0})"
      "\n";
  for (int i = 1; i <= 5; ++i) batch += R"({"action":"rooms","tag":)" + std::to_string(i) + "}\n";
  c.send_raw(batch);
  REQUIRE(::shutdown(c.fd(), SHUT_WR) == 0);  // our end of file right behind the requests

  auto [lines, end] = read_to_end(c.fd(), 10s);
  CHECK(end == 0);  // the server's FIN after everything, not a reset or silence
  REQUIRE_FALSE(lines.empty());
  CHECK(code_of(lines.front()) == 200);
  CHECK(tags_of(lines) == std::vector<std::int64_t>{0, 1, 2, 3, 4, 5});
  std::size_t history = 0;
  for (auto const& o : lines)
    if (o.contains("history") && str(o, "message") == text) ++history;
  CHECK(history == 20);

  CHECK(code_of(alice.request(R"({"action":"presence"})")) == 200);  // and serves on
}

TEST_CASE("Clients that sign in by token and hang up at once leave nothing behind",
          "[integration][connection]") {
  // The reconnect storm's pattern (jim-bench resume): connect, authenticate by token, read the
  // 200, close. Each connection is signed out and closed by the server.
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  // The listeners and bob's connection: taken before any connection the client closes, whose
  // end the server may not have seen yet.
  const std::size_t sockets_before = sockets_of(d.pid());
  client first(d.port());
  first.send(R"({"action":"register","user":{"account_name":"carol","password":"pw"}})");
  auto made = first.reply();
  REQUIRE(code_of(made) == 201);
  const std::string token = str(made, "token");
  REQUIRE_FALSE(token.empty());
  first.close();

  for (int round = 0; round < 50; ++round) {
    client c(d.port());
    c.send(json::object{{"action", "authenticate"},
                        {"user", {{"account_name", "carol"}, {"token", token}}}});
    auto r = c.reply();
    REQUIRE(code_of(r) == 200);
    c.close();
  }
  // Each end of file reaches the server on its own schedule: round trips on bob's connection
  // (bounded) until the server holds no more sockets than before.
  std::size_t sockets_after = sockets_of(d.pid());
  for (int i = 0; i < 500 && sockets_after > sockets_before; ++i) {
    barrier(bob);
    sockets_after = sockets_of(d.pid());
  }
  CHECK(sockets_after == sockets_before);
  // One more, kept open: its sign-in counts `missed` from the last one's end (0: none posted),
  // and the server answers it as the first.
  client last(d.port());
  last.send(json::object{{"action", "authenticate"},
                         {"user", {{"account_name", "carol"}, {"token", token}}}});
  auto r = last.reply();
  CHECK(code_of(r) == 200);
  CHECK(r.at("missed").as_int64() == 0);
  CHECK(code_of(bob.request(R"({"action":"presence"})")) == 200);
}
