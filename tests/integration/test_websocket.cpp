#include "harness.hpp"

#include <boost/asio/connect.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket.hpp>

#include <catch2/catch.hpp>

#include <signal.h>
#include <sys/socket.h>

using namespace jim::test;
namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using tcp = asio::ip::tcp;

namespace {

/// Every blocking read on the socket gives up after 5 s, so no test can hang.
void bound_reads(tcp::socket& s) {
  timeval tv{5, 0};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
}

/// A blocking WebSocket client: one text message per frame.
class ws_client {
 public:
  explicit ws_client(std::uint16_t port, std::string origin = {}) : ws_(io_) {
    tcp::resolver resolver(io_);
    auto& sock = beast::get_lowest_layer(ws_);
    asio::connect(sock, resolver.resolve("127.0.0.1", std::to_string(port)));
    bound_reads(sock);
    if (!origin.empty())
      ws_.set_option(websocket::stream_base::decorator(
          [origin](websocket::request_type& req) { req.set(http::field::origin, origin); }));
    ws_.handshake("127.0.0.1:" + std::to_string(port), "/chat");
    ws_.text(true);
  }
  void send(std::string_view text) { ws_.write(asio::buffer(text)); }
  json::object recv() {
    beast::flat_buffer buf;
    ws_.read(buf);
    return json::parse(beast::buffers_to_string(buf.data())).as_object();
  }
  json::object request(std::string_view text) {
    send(text);
    for (int i = 0; i < 1000; ++i) {
      auto o = recv();
      if (o.contains("response")) return o;
    }
    throw std::runtime_error("no reply");
  }
  /// True when the server closes the WebSocket (close frame or EOF) before 5 s.
  bool closed() {
    try {
      for (int i = 0; i < 1000; ++i) recv();
    } catch (boost::system::system_error const& e) {
      UNSCOPED_INFO("closed with: " << e.code().message());
      return e.code() == websocket::error::closed || e.code() == asio::error::eof ||
             e.code() == asio::error::connection_reset || e.code() == asio::error::not_connected ||
             e.code() == asio::error::broken_pipe;
    }
    return false;
  }
  /// The code of the server's Close frame (after closed() saw it).
  std::uint16_t close_code() const { return ws_.reason().code; }
  /// Sends a binary-free raw text message whose bytes may be invalid UTF-8.
  void send_bytes(std::string_view bytes) { ws_.write(asio::buffer(bytes)); }

 private:
  asio::io_context io_;
  websocket::stream<tcp::socket> ws_;
};

/// A raw TCP socket speaking just enough WebSocket by hand to stall at any step: the tests of
/// peers that stop reading or never close need a client that does not follow the protocol.
class raw_peer {
 public:
  explicit raw_peer(std::uint16_t port) : sock_(io_) {
    sock_.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
    bound_reads(sock_);
  }
  void send(std::string_view bytes) { asio::write(sock_, asio::buffer(bytes)); }
  /// Sends the upgrade request for /chat.
  void upgrade(std::uint16_t port) {
    send("GET /chat HTTP/1.1\r\nHost: 127.0.0.1:" + std::to_string(port) +
         "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
         "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n");
  }
  /// Reads until `marker` has arrived (bounded by the socket's 5 s read timeout); returns all
  /// bytes read so far.
  std::string read_until(std::string_view marker) {
    while (got_.find(marker) == std::string::npos) {
      char buf[4096];
      boost::system::error_code ec;
      const std::size_t n = sock_.read_some(asio::buffer(buf), ec);
      if (ec) throw std::runtime_error("raw_peer: " + ec.message() + " before the marker");
      got_.append(buf, n);
    }
    return got_;
  }
  /// A masked text message as a browser sends it (RFC 6455 §5.2; payload < 126 bytes).
  void send_text(std::string_view text) { send_frame(0x81, text); }
  /// A masked Close frame with no payload.
  void send_close() { send_frame(0x88, {}); }

 private:
  void send_frame(unsigned char opcode, std::string_view payload) {
    const unsigned char mask[4] = {0x12, 0x34, 0x56, 0x78};
    std::string f;
    f.push_back(static_cast<char>(opcode));
    f.push_back(static_cast<char>(0x80 | payload.size()));
    for (unsigned char m : mask) f.push_back(static_cast<char>(m));
    for (std::size_t i = 0; i < payload.size(); ++i)
      f.push_back(static_cast<char>(payload[i] ^ mask[i % 4]));
    send(f);
  }
  asio::io_context io_;
  tcp::socket sock_;
  std::string got_;
};

http::response<http::string_body> get(std::uint16_t port, std::string const& target,
                                      std::string const& origin = {}) {
  asio::io_context io;
  tcp::socket sock(io);
  sock.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  bound_reads(sock);
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "127.0.0.1:" + std::to_string(port));
  if (!origin.empty()) {
    req.set(http::field::origin, origin);
    req.set(http::field::upgrade, "websocket");
    req.set(http::field::connection, "Upgrade");
    req.set(http::field::sec_websocket_key, "dGhlIHNhbXBsZSBub25jZQ==");
    req.set(http::field::sec_websocket_version, "13");
  }
  http::write(sock, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(sock, buf, res);
  return res;
}

struct web_fixture {
  std::uint16_t http_port = free_port();
  jimd_process d{{"--http-port", std::to_string(http_port), "--http-address", "127.0.0.1",
                  "--max-frame", "1024", "--max-message", "512"}};
};

}  // namespace

TEST_CASE_METHOD(web_fixture, "A WebSocket client and a TCP client chat in #general both ways",
                 "[integration][websocket]") {
  ws_client web(http_port);
  auto r = web.request(R"({"action":"register","user":{"account_name":"webby","password":"pw"}})");
  REQUIRE(code_of(r) == 201);
  auto tcp_user = sign_up(d.port(), "tcpy");

  r = web.request(R"({"action":"msg","message":"from the browser","tag":"t1"})");
  CHECK(code_of(r) == 200);
  CHECK(r.at("tag") == "t1");
  CHECK(r.at("delivered") == 1);
  auto pushed = tcp_user.push();
  CHECK(pushed.at("from") == "webby");
  CHECK(pushed.at("message") == "from the browser");

  r = tcp_user.request(R"({"action":"msg","message":"from the terminal"})");
  CHECK(r.at("delivered") == 1);
  auto got = web.recv();
  CHECK(got.at("action") == "msg");
  CHECK(got.at("from") == "tcpy");
}

TEST_CASE_METHOD(web_fixture, "WebSocket frames get the same codes as TCP",
                 "[integration][websocket]") {
  ws_client web(http_port);
  CHECK(code_of(web.request("not json")) == 400);
  CHECK(code_of(web.request(R"({"action":"msg","message":"x"})")) == 401);
  CHECK(code_of(web.request(R"({"action":"bogus"})")) == 400);
  CHECK(code_of(web.request(
            R"({"action":"register","user":{"account_name":"w","password":"p"}})")) == 201);
  CHECK(code_of(web.request(R"({"action":"msg","message":")" + std::string(600, 'x') + "\"}")) ==
        413);
  CHECK(code_of(web.request(R"({"action":"users"})")) == 200);  // still open after a 413 message
  web.send(R"({"action":"msg","message":")" + std::string(2000, 'x') + "\"}");
  auto r = web.recv();
  CHECK(code_of(r) == 413);  // an oversized frame: 413, then the connection is closed
  CHECK(web.closed());
}

TEST_CASE_METHOD(web_fixture, "A WebSocket from a foreign Origin is refused with 403",
                 "[integration][websocket]") {
  auto res = get(http_port, "/chat", "http://evil.example");
  CHECK(res.result_int() == 403);
  ws_client same_host(http_port, "http://127.0.0.1:" + std::to_string(http_port));
  CHECK(code_of(same_host.request(R"({"action":"rooms"})")) == 401);
}

TEST_CASE_METHOD(web_fixture, "The web client is served over HTTP", "[integration][websocket]") {
  auto res = get(http_port, "/");
  CHECK(res.result_int() == 200);
  CHECK(res[http::field::content_type].starts_with("text/html"));
  CHECK(res.body().find("<html") != std::string::npos);
  CHECK(get(http_port, "/no-such-file").result_int() == 404);
}

TEST_CASE_METHOD(web_fixture, "WebSocket sessions get the shutdown notice",
                 "[integration][websocket]") {
  ws_client web(http_port);
  REQUIRE(code_of(web.request(
              R"({"action":"register","user":{"account_name":"w","password":"p"}})")) == 201);
  kill(d.pid(), SIGTERM);
  auto n = web.recv();
  CHECK(n.at("action") == "notice");
  CHECK(web.closed());
  CHECK(d.stop(SIGTERM) == 0);
}

TEST_CASE_METHOD(web_fixture, "A WebSocket message just over, twice and 100 times max-frame gets 413 before Close 1009",
                 "[integration][websocket][limits]") {
  ws_client web(http_port);
  REQUIRE(code_of(web.request(
              R"({"action":"register","user":{"account_name":"w","password":"p"}})")) == 201);
  std::size_t size = GENERATE(1025u, 2048u, 102400u);
  INFO("message of " << size << " bytes, max-frame 1024");
  std::string text = R"({"action":"msg","message":")";
  text += std::string(size - text.size() - 2, 'x') + "\"}";
  REQUIRE(text.size() == size);
  web.send(text);
  auto r = web.recv();
  CHECK(code_of(r) == 413);
  CHECK(r.at("error").as_string().find("1024") != std::string::npos);
  CHECK(web.closed());
  CHECK(web.close_code() == 1009);
}

TEST_CASE_METHOD(web_fixture, "A WebSocket text message that is not UTF-8 fails with Close 1007",
                 "[integration][websocket]") {
  ws_client web(http_port);
  REQUIRE(code_of(web.request(R"({"action":"rooms"})")) == 401);
  web.send_bytes("{\"action\":\"msg\",\"message\":\"\xc3\x28\"}");
  CHECK(web.closed());
  CHECK(web.close_code() == 1007);
}

TEST_CASE_METHOD(web_fixture, "A WebSocket user who sent Close is signed out at once",
                 "[integration][websocket]") {
  auto alice = sign_up(d.port(), "alice");
  REQUIRE(code_of(alice.request(R"({"action":"create","room":"den"})")) == 201);

  raw_peer web(http_port);
  web.upgrade(http_port);
  web.read_until("\r\n\r\n");
  REQUIRE(code_of(sign_up(d.port(), "webby").request(R"({"action":"quit"})")) == 200);
  web.send_text(R"({"action":"authenticate","user":{"account_name":"webby","password":"pw"}})");
  web.read_until("\"response\":200");
  REQUIRE(code_of(alice.request(R"({"action":"invite","room":"den","user":"webby"})")) == 200);
  web.send_text(R"({"action":"join","room":"den","tag":"j"})");
  web.read_until("\"tag\":\"j\"");
  auto joined = alice.push();
  REQUIRE(joined.at("event") == "join");

  // The peer says goodbye but keeps its TCP connection open, reading nothing more.
  web.send_close();
  auto left = alice.push();
  CHECK(left.at("event") == "leave");
  CHECK(left.at("user") == "webby");
  auto users = alice.request(R"({"action":"users"})");
  CHECK(users.at("users").as_array().size() == 1);

  // A private message now is queued (202), not acknowledged as delivered to a dead connection.
  auto r = alice.request(R"({"action":"msg","to":"webby","message":"are you there?"})");
  CHECK(code_of(r) == 202);
  CHECK(r.at("delivered") == 0);
  auto back = sign_in(d.port(), "webby");
  bool found = false;
  for (int i = 0; i < 30 && !found; ++i) {
    auto p = back.push();
    found = p.at("message") == "are you there?";
  }
  CHECK(found);
}

TEST_CASE("Shutdown ends in bounded time whatever stalled peers do", "[integration][websocket]") {
  const std::uint16_t http_port = free_port();
  jimd_process d{{"--http-port", std::to_string(http_port), "--http-address", "127.0.0.1",
                  "--max-clients", "2"}};
  // Slot 1: a signed-in TCP client that never reads again.
  auto reader = sign_up(d.port(), "still");
  // Slot 2: a WebSocket session that sent Close and then neither reads nor closes.
  raw_peer closer(http_port);
  closer.upgrade(http_port);
  closer.read_until("\r\n\r\n");
  closer.send_text(R"({"action":"users","tag":"u"})");
  closer.read_until("\"tag\":\"u\"");
  closer.send_close();
  // Refused WebSocket (max-clients): it reads the upgrade, then never reads the 503 and Close.
  raw_peer refused_ws(http_port);
  refused_ws.upgrade(http_port);
  refused_ws.read_until("\r\n\r\n");
  // Refused TCP connection that never reads its 503.
  raw_peer refused_tcp(d.port());
  // Half an HTTP request; an HTTP connection that sends nothing; half an upgrade request.
  raw_peer half_request(http_port);
  half_request.send("GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n");
  raw_peer silent_http(http_port);
  raw_peer half_upgrade(http_port);
  half_upgrade.send("GET /chat HTTP/1.1\r\nUpgrade: websocket\r\n");
  CHECK(d.stop(SIGINT, 25s) == 0);
}

TEST_CASE("A WebSocket over max-clients gets the 503 frame, then Close 1013",
          "[integration][websocket][limits]") {
  const std::uint16_t http_port = free_port();
  jimd_process d{{"--http-port", std::to_string(http_port), "--http-address", "127.0.0.1",
                  "--max-clients", "1"}};
  auto holder = sign_up(d.port(), "holder");
  ws_client web(http_port);
  auto r = web.recv();
  CHECK(code_of(r) == 503);
  CHECK(r.at("error").as_string().find("max-clients") != std::string::npos);
  CHECK(web.closed());
  CHECK(web.close_code() == 1013);
}
