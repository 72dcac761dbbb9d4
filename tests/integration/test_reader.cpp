// The reader of a TCP connection (issue 14): it reads until a read comes back shorter than its
// buffer (the socket is drained, nginx's rule), then waits for the socket to be readable again
// without a read that could only fail. Whatever way the bytes come (many tiny writes, many
// frames in one write, a frame larger than the 16 KiB read buffer, exactly one buffer's worth,
// input that arrives while a request is being handled, a half-close right behind the
// requests), every request is answered exactly once, in order.

#include "chat_helpers.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace jim::test;

namespace {

constexpr std::size_t read_buffer_size = 16384;  // server_context::read_buffer::size

std::string rooms_request(std::int64_t tag, std::size_t pad = 0) {
  // "pad" is not a field of `rooms`: ignored, it only makes the frame longer.
  std::string line = R"({"action":"rooms","tag":)" + std::to_string(tag);
  if (pad) line += R"(,"pad":")" + std::string(pad, 'p') + '"';
  return line + "}\n";
}

/// Reads `fd` until `until` replies came, the server ends the connection, or `bound` passes:
/// every frame received and whether the connection ended (an orderly end of file).
struct received {
  std::vector<json::object> frames;
  bool eof = false;
};
received read_frames(int fd, std::size_t until, std::chrono::milliseconds bound,
                     bool to_eof = false) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  received r;
  std::string data;
  std::size_t replies = 0;
  while (to_eof || replies < until) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(
        deadline - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd p{fd, POLLIN, 0};
    const int n = ::poll(&p, 1, static_cast<int>(left.count()));
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    char buf[65536];
    const ssize_t got = ::recv(fd, buf, sizeof buf, 0);
    if (got <= 0) {
      r.eof = got == 0;
      break;
    }
    data.append(buf, static_cast<std::size_t>(got));
    for (std::size_t nl; (nl = data.find('\n')) != std::string::npos; data.erase(0, nl + 1)) {
      r.frames.push_back(json::parse(data.substr(0, nl)).as_object());
      if (r.frames.back().contains("response")) ++replies;
    }
  }
  return r;
}

/// The tags of the replies among `frames`, in order (-1 for a reply without a tag).
std::vector<std::int64_t> reply_tags(std::vector<json::object> const& frames) {
  std::vector<std::int64_t> tags;
  for (auto const& o : frames)
    if (o.contains("response"))
      tags.push_back(o.contains("tag") ? o.at("tag").as_int64() : -1);
  return tags;
}

std::vector<std::int64_t> one_to(std::int64_t n) {
  std::vector<std::int64_t> v;
  for (std::int64_t i = 1; i <= n; ++i) v.push_back(i);
  return v;
}

/// A signed-in connection (pushes that follow are not replies: reply_tags() skips them).
client signed_in(std::uint16_t port, std::string const& name) { return sign_up(port, name); }

}  // namespace

TEST_CASE("Frames written a few bytes at a time, with pauses, are each answered once",
          "[integration][reader]") {
  jimd_process d;
  auto c = signed_in(d.port(), "alice");
  std::string bytes;
  for (int tag = 1; tag <= 6; ++tag) bytes += rooms_request(tag);
  // Each piece is its own segment (TCP_NODELAY on the client is not needed: the pauses let each
  // go out alone); the reader parks after each short read and must wake for the next piece.
  for (std::size_t at = 0; at < bytes.size(); at += 3) {
    c.send_raw(std::string_view(bytes).substr(at, 3));
    std::this_thread::sleep_for(std::chrono::milliseconds(1));  // pacing, not synchronisation
  }
  auto r = read_frames(c.fd(), 6, 5s);
  CHECK(reply_tags(r.frames) == one_to(6));
  CHECK(c.silent_for(std::chrono::milliseconds(100)));  // nothing answered twice
}

TEST_CASE("Many frames in one write are each answered once, in order", "[integration][reader]") {
  jimd_process d;
  auto c = signed_in(d.port(), "alice");
  std::string bytes;
  for (int tag = 1; tag <= 200; ++tag) bytes += rooms_request(tag);
  c.send_raw(bytes);
  auto r = read_frames(c.fd(), 200, 10s);
  CHECK(reply_tags(r.frames) == one_to(200));
  CHECK(code_of(c.request(R"({"action":"rooms","tag":201})")) == 200);
}

TEST_CASE("A frame larger than the read buffer, and writes of exactly one buffer, are answered",
          "[integration][reader]") {
  jimd_process d;
  auto c = signed_in(d.port(), "alice");
  SECTION("one frame of three buffers and a bit, then a short one, in one write") {
    c.send_raw(rooms_request(1, 3 * read_buffer_size + 100) + rooms_request(2));
    auto r = read_frames(c.fd(), 2, 10s);
    CHECK(reply_tags(r.frames) == one_to(2));
  }
  SECTION("frames that fill exactly one read buffer, then, later, one more frame") {
    // A full read proves nothing about what is left: the reader must read again (and find
    // nothing) before it waits, and then wake for the frame that comes later.
    const std::string first = rooms_request(1);
    const std::size_t pad_overhead = rooms_request(2, 1).size() - 1;  // the frame without pad
    const std::string exact =
        first + rooms_request(2, read_buffer_size - first.size() - pad_overhead);
    REQUIRE(exact.size() == read_buffer_size);
    c.send_raw(exact);
    auto r = read_frames(c.fd(), 2, 10s);
    CHECK(reply_tags(r.frames) == one_to(2));
    c.send_raw(rooms_request(3));
    auto more = read_frames(c.fd(), 1, 5s);
    CHECK(reply_tags(more.frames) == std::vector<std::int64_t>{3});
  }
  CHECK(c.silent_for(std::chrono::milliseconds(100)));
}

TEST_CASE("Input that arrives while a request is being handled is read afterwards",
          "[integration][reader]") {
  // The password check runs off the I/O thread (slow here: many iterations), so the reader is
  // suspended in the middle of the bytes it read; the next request arrives meanwhile, when no
  // read is pending. After the reply the reader waits without reading first (its read was
  // short): the wait must still see the bytes already there.
  jimd_process d({"--kdf-iterations", "300000"});
  { auto first = sign_up(d.port(), "alice"); }
  client c(d.port());
  c.send(R"({"action":"authenticate","user":{"account_name":"alice","password":"pw"},"tag":1})");
  std::this_thread::sleep_for(std::chrono::milliseconds(20));  // while the check runs, likely
  c.send_raw(rooms_request(2));
  auto r = read_frames(c.fd(), 2, 20s);
  CHECK(reply_tags(r.frames) == one_to(2));
  CHECK(c.silent_for(std::chrono::milliseconds(100)));
}

TEST_CASE("A client that sends and half-closes gets each reply once, then an end of file",
          "[integration][reader]") {
  jimd_process d;
  auto c = signed_in(d.port(), "alice");
  SECTION("after the reader parked: the request and the half-close together") {
    REQUIRE(code_of(c.request(R"({"action":"rooms","tag":1})")) == 200);  // reader idle now
    c.send_raw(rooms_request(2) + rooms_request(3));
    REQUIRE(::shutdown(c.fd(), SHUT_WR) == 0);
    auto r = read_frames(c.fd(), 0, 10s, true);
    CHECK(reply_tags(r.frames) == std::vector<std::int64_t>{2, 3});
    CHECK(r.eof);
  }
  SECTION("a request in pieces, the last piece followed by the half-close") {
    const std::string req = rooms_request(1);
    c.send_raw(req.substr(0, 10));
    std::this_thread::sleep_for(std::chrono::milliseconds(5));  // pacing, not synchronisation
    c.send_raw(req.substr(10));
    REQUIRE(::shutdown(c.fd(), SHUT_WR) == 0);
    auto r = read_frames(c.fd(), 0, 10s, true);
    CHECK(reply_tags(r.frames) == std::vector<std::int64_t>{1});
    CHECK(r.eof);
  }
  SECTION("an incomplete frame, then the half-close: no reply, an end of file") {
    c.send_raw(R"({"action":"rooms","ta)");
    REQUIRE(::shutdown(c.fd(), SHUT_WR) == 0);
    auto r = read_frames(c.fd(), 0, 10s, true);
    CHECK(r.eof);
    for (auto const& o : r.frames) CHECK_FALSE(o.contains("tag"));
  }
}
