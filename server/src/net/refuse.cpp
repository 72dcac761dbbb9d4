#include "net/refuse.hpp"

#include "jim/codec.hpp"
#include "logging.hpp"
#include "net/tls.hpp"
#include "net/tls_detect.hpp"
#include "net/tls_session.hpp"
#include "options.hpp"
#include "session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <array>
#include <cmath>
#include <memory>
#include <optional>
#include <utility>

namespace jim::server::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::awaitable;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {
JIM_LOG_MODULE("refuse")
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

long retry_seconds(refusal const& r) {
  return static_cast<long>(std::ceil(r.retry_after));
}

std::string frame_of(refusal const& r) {
  boost::json::object fields;
  if (r.retry_after > 0) fields.emplace("retry_after", retry_seconds(r));
  return proto::encode_reply(r.code, nullptr, r.text, std::move(fields));
}

http::status status_of(refusal const& r) {
  return r.code == proto::code::rate_limited ? http::status::too_many_requests
                                             : http::status::service_unavailable;
}

/// The whole HTTP response, for writing without Beast (the path that reads nothing).
std::string raw_http_response(refusal const& r) {
  const std::string body = r.text + "\n";
  std::string out = "HTTP/1.1 " + std::to_string(static_cast<unsigned>(status_of(r))) + " " +
                    std::string(http::obsolete_reason(status_of(r))) +
                    "\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: " +
                    std::to_string(body.size()) + "\r\nConnection: close\r\n";
  if (r.retry_after > 0) out += "Retry-After: " + std::to_string(retry_seconds(r)) + "\r\n";
  out += "\r\n";
  out += body;
  return out;
}

/// Reads one request (bounded by the caller's deadline) and answers it with the refusal.
template <class Stream>
awaitable<void> answer_http(Stream& stream, beast::flat_buffer& buffer, refusal const& r,
                            std::string const& frame) {
  http::request_parser<http::string_body> parser;
  parser.header_limit(8192);
  parser.body_limit(4096);
  auto [ec, n] = co_await http::async_read(stream, buffer, parser, nothrow);
  if (ec) co_return;
  auto& req = parser.get();
  if (websocket::is_upgrade(req) && req.target() == "/chat") {
    websocket::stream<Stream&> ws(stream);
    ws.set_option(websocket::stream_base::decorator(
        [](websocket::response_type& res) { res.set(http::field::server, version_string); }));
    auto [aec] = co_await ws.async_accept(req, nothrow);
    if (aec) co_return;
    ws.text(true);
    co_await ws.async_write(asio::buffer(frame.data(), frame.size() - 1), nothrow);
    co_await ws.async_close(websocket::close_code::try_again_later, nothrow);
    co_return;
  }
  http::response<http::string_body> res{status_of(r), req.version()};
  res.set(http::field::server, version_string);
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  if (r.retry_after > 0) res.set(http::field::retry_after, std::to_string(retry_seconds(r)));
  res.keep_alive(false);
  res.body() = r.text + "\n";
  res.prepare_payload();
  co_await http::async_write(stream, res, nothrow);
}

/// Counts one refusal in flight for as long as it lives.
class in_flight_guard {
 public:
  explicit in_flight_guard(std::size_t& n) : n_(n) { ++n_; }
  ~in_flight_guard() { --n_; }
  in_flight_guard(in_flight_guard const&) = delete;
  in_flight_guard& operator=(in_flight_guard const&) = delete;

 private:
  std::size_t& n_;
};

}  // namespace

awaitable<void> drain(tcp::socket& socket) {
  boost::system::error_code ignored;
  socket.shutdown(tcp::socket::shutdown_send, ignored);
  std::array<char, 1024> sink;
  for (;;) {
    auto [ec, n] = co_await socket.async_read_some(asio::buffer(sink), nothrow);
    if (ec) break;
  }
}

awaitable<void> refuser::refuse(tcp::socket socket, refusal r, bool http) {
  const std::string frame = frame_of(r);
  boost::system::error_code ignored;
  if (in_flight_ >= max_ || ctx_.stopping) {
    // Too many refusals waiting already: what fits in the empty send buffer, then the close.
    const std::string text = http ? raw_http_response(r) : frame;
    socket.non_blocking(true, ignored);
    socket.write_some(asio::buffer(text), ignored);
    socket.shutdown(tcp::socket::shutdown_send, ignored);
    socket.close(ignored);
    co_return;
  }
  in_flight_guard counted(in_flight_);
  pending_connection pending(ctx_, socket);  // shutdown closes it; not counted as a client
  deadline limit(socket.get_executor());
  limit.arm(socket, refusal_bound);
  beast::flat_buffer buffer;
  if (ctx_.tls) {
    asio::steady_timer first(socket.get_executor(), first_bytes_wait);
    auto which =
        co_await (socket.async_wait(tcp::socket::wait_read, nothrow) || first.async_wait(nothrow));
    if (!socket.is_open()) co_return;
    if (which.index() == 0) {
      std::shared_ptr<asio::ssl::context> tls_ctx;
      std::optional<beast::ssl_stream<beast::tcp_stream>> stream;
      const auto found =
          co_await detect_and_handshake(socket, buffer, *ctx_.tls, tls_ctx, pending, limit, stream);
      if (found.what == detection::kind::ended) {
        if (!found.failure.empty())
          JIM_LOG(debug, "TLS handshake of a refused connection failed: {}", found.failure);
        co_return;
      }
      if (found.what == detection::kind::tls) {
        if (http) {
          co_await answer_http(*stream, buffer, r, frame);
        } else {
          auto [wec, wn] = co_await asio::async_write(*stream, asio::buffer(frame), nothrow);
          if (wec) co_return;
        }
        co_await stream->async_shutdown(nothrow);  // close_notify, bounded by `limit`
        co_return;
      }
    }
  }
  if (http) {
    beast::tcp_stream stream(std::move(socket));
    auto& lowest = stream.socket();
    pending.track(lowest);
    limit.retarget(lowest);
    co_await answer_http(stream, buffer, r, frame);
    if (lowest.is_open()) co_await drain(lowest);
  } else {
    auto [wec, wn] = co_await asio::async_write(socket, asio::buffer(frame), nothrow);
    if (!wec && socket.is_open()) co_await drain(socket);
  }
}

}  // namespace jim::server::net
