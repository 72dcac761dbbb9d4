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

/// A port that was free a moment ago (the daemon's HTTP port cannot be ephemeral: 0 disables it).
std::uint16_t free_port() {
  asio::io_context io;
  tcp::acceptor a(io, tcp::endpoint(asio::ip::make_address("127.0.0.1"), 0));
  return a.local_endpoint().port();
}

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

 private:
  asio::io_context io_;
  websocket::stream<tcp::socket> ws_;
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
