#include "http.hpp"

#include "logging.hpp"
#include "net/tls.hpp"
#include "net/tls_detect.hpp"
#include "net/tls_session.hpp"
#include "ops/ops_http.hpp"
#include "options.hpp"
#include "session.hpp"
#include "text.hpp"
#include "web_assets.hpp"

// In a Release (-O3) build GCC 12 inlines serve()'s coroutine frame release into
// serve_detected() and then takes Asio's recycling allocator (aligned_new/aligned_delete, which
// pair correctly) for a mismatched new/delete: a known false positive for coroutines with a
// class-level operator new (gcc.gnu.org PR middle-end/109224).
#if defined(__GNUC__) && !defined(__clang__)
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
#endif

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/beast/core.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/ssl/ssl_stream.hpp>
#include <boost/beast/websocket.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <array>
#include <optional>
#include <utility>

namespace jim::server {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace http = beast::http;
namespace websocket = beast::websocket;
using asio::awaitable;
using tcp = asio::ip::tcp;

namespace {
JIM_LOG_MODULE("http")
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr auto request_timeout = std::chrono::seconds(30);
constexpr auto refusal_timeout = std::chrono::seconds(5);
constexpr std::size_t ws_read_chunk = 4096;
/// Requests served on one keep-alive connection; the response to the last one says
/// `Connection: close` (nginx's keepalive_requests default, 1000).
constexpr int max_requests = 1000;
/// Bytes of a request's header (request line included): more gets 431, or 414 when the
/// request line is what does not fit. A target longer than max_target gets 414 too.
constexpr std::size_t max_header = 8192;
constexpr std::size_t max_target = 4096;
constexpr std::size_t max_body = 4096;  ///< more gets 413 (a GET has none)
/// After the last response the peer's unread bytes are read and dropped for at most this long
/// and this many bytes, so the close sends no reset (nginx's lingering close).
constexpr auto linger_timeout = std::chrono::seconds(2);
constexpr std::size_t linger_bytes = 64 * 1024;

using tls_stream = beast::ssl_stream<beast::tcp_stream>;

/// A session over WebSocket: each text message is one frame (the end of a message ends an
/// unfinished frame, as a newline does on TCP); each frame goes out as one text message
/// without its newline. `Stream`: beast::tcp_stream (ws://) or tls_stream (wss://).
template <class Stream>
class ws_session final : public session {
 public:
  ws_session(server_context& ctx, websocket::stream<Stream> ws, std::uint64_t id,
             std::string peer_name, std::shared_ptr<asio::ssl::context> tls_ctx = {})
      : session(ctx, ws.get_executor(), id, std::move(peer_name)),
        tls_ctx_(std::move(tls_ctx)),
        ws_(std::move(ws)) {
    ws_.text(true);
    // Beast pings an idle peer; a pong (browsers answer by themselves) counts as activity,
    // so an open browser tab stays connected while a dead peer is closed at idle-timeout.
    ws_.set_option(
        websocket::stream_base::timeout{request_timeout, ctx.cfg.idle_timeout / 2, true});
    // No Beast limit: a message over it would be failed with Close 1009 and no word why. The
    // framer counts the bytes of each message as they arrive (never more than max-frame held)
    // and answers 413 before closing, as on TCP.
    ws_.read_message_max(0);
    ws_.control_callback([this](websocket::frame_type kind, beast::string_view) {
      note_activity();
      // Beast completes the read only once the peer has also closed TCP: sign out now.
      if (kind == websocket::frame_type::close) goodbye();
    });
  }

 private:
  awaitable<void> read_loop() override {
    std::vector<char> buf(ws_read_chunk);
    while (co_await ready_to_read()) {
      auto [ec, n] = co_await ws_.async_read_some(
          asio::buffer(buf), asio::bind_cancellation_slot(read_cancel_.slot(), nothrow));
      if (ec) {
        if (ec != websocket::error::closed && ec != asio::error::operation_aborted &&
            ec != asio::ssl::error::stream_truncated)
          JIM_LOG(debug, "websocket read: {}", ec.message());
        co_return;
      }
      note_activity();
      if (!co_await consume({buf.data(), n})) co_return;
      if (ws_.is_message_done() && !co_await consume("\n")) co_return;
    }
  }

  void cancel_read() override { read_cancel_.emit(asio::cancellation_type::terminal); }

  std::size_t write_now(std::span<shared_frame const>, std::size_t,
                        boost::system::error_code& ec) override {
    ec = asio::error::would_block;  // Beast writes asynchronously only
    return 0;
  }

  void write_async(std::span<shared_frame const> frames, std::size_t,
                   std::function<void(boost::system::error_code, std::size_t)> done) override {
    shared_frame f = frames.front();  // one text message per frame, without its newline
    ws_.async_write(asio::buffer(f->data(), f->size() - 1),
                    [f, done = std::move(done)](boost::system::error_code ec, std::size_t) {
                      done(ec, ec ? 0 : f->size());
                    });
  }

  void finish() override {
    beast::get_lowest_layer(ws_).expires_after(std::chrono::seconds(2));
    ws_.async_close(too_large() ? websocket::close_code::too_big : websocket::close_code::normal,
                    [self = this->shared_from_this(), this](boost::system::error_code) {
                      close_done_ = true;
                      watchdog_.cancel();
                    });
  }

  awaitable<void> linger() override {
    if (close_done_) co_return;
    this->watchdog_.expires_after(std::chrono::seconds(2));  // the close handshake, bounded
    co_await this->watchdog_.async_wait(nothrow);
  }

  void abort(bool reset) override {
    boost::system::error_code ignored;
    auto& socket = beast::get_lowest_layer(ws_).socket();
    if (reset) socket.set_option(asio::socket_base::linger(true, 0), ignored);
    socket.close(ignored);
  }

  bool close_done_ = false;
  asio::cancellation_signal read_cancel_;
  std::shared_ptr<asio::ssl::context> tls_ctx_;  ///< wss: the context it was made with
  websocket::stream<Stream> ws_;
};

/// An HTTP connection counted toward --max-clients (server_context::handshaking) from its
/// accept until it ends or becomes a WebSocket session (which counts itself).
class counted_connection {
 public:
  explicit counted_connection(server_context& ctx) : ctx_(ctx) { ++ctx_.handshaking; }
  ~counted_connection() { release(); }
  counted_connection(counted_connection const&) = delete;
  counted_connection& operator=(counted_connection const&) = delete;
  void release() {
    if (std::exchange(counted_, false)) --ctx_.handshaking;
  }

 private:
  server_context& ctx_;
  bool counted_ = true;
};

template <class Body>
http::response<Body> make_response(http::status status, unsigned version, bool keep_alive) {
  http::response<Body> res{status, version};
  res.set(http::field::server, version_string);
  res.set("X-Content-Type-Options", "nosniff");
  res.keep_alive(keep_alive);
  return res;
}

http::response<http::string_body> text_response(http::status status, unsigned version,
                                                bool keep_alive, std::string text) {
  auto res = make_response<http::string_body>(status, version, keep_alive);
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.body() = std::move(text);
  res.prepare_payload();
  return res;
}

std::optional<asio::ip::address> remote_address(tcp::socket const& s) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) return std::nullopt;
  return ep.address();
}

/// The answer to a request Beast could not parse (`ec` from http::async_read), or nullopt when
/// there is nobody to answer (the peer closed or went silent). `target`: the request's target as
/// far as the parser got (empty: its request line was not complete; the parser consumes the
/// request line and each whole field as it reads them, so the buffer cannot tell).
std::optional<http::response<http::string_body>> parse_error_response(
    boost::system::error_code ec, std::string_view target) {
  if (ec.category() != http::make_error_code(http::error::bad_method).category() ||
      ec == http::error::end_of_stream || ec == http::error::partial_message)
    return std::nullopt;  // closed, timed out, cancelled: nothing to answer, or nobody
  if (ec == http::error::header_limit || ec == http::error::buffer_overflow) {
    return target.empty() || target.size() > max_target
               ? text_response(http::status::uri_too_long, 11, false,
                               "URI too long: at most " + std::to_string(max_target) +
                                   " bytes\n")
               : text_response(http::status::request_header_fields_too_large, 11, false,
                               "request header too large: at most " +
                                   std::to_string(max_header) + " bytes\n");
  }
  if (ec == http::error::body_limit)
    return text_response(http::status::payload_too_large, 11, false,
                         "request body too large: at most " + std::to_string(max_body) +
                             " bytes\n");
  return text_response(http::status::bad_request, 11, false,
                       "bad request: " + ec.message() + "\n");
}

/// Ends the connection after its last response without a reset: FIN first (TLS: close_notify
/// before it), then what the peer still sends is read and dropped until it closes, for at
/// most linger_timeout and linger_bytes. Closing with unread bytes would send an RST, and a
/// reset can destroy the response before the peer has read it (RFC 9112 §9.6; nginx's
/// lingering_close). Shutdown closes a connection lingering here.
template <class Stream>
awaitable<void> close_gracefully(server_context& ctx, Stream& stream) {
  auto& lowest = beast::get_lowest_layer(stream);
  if constexpr (!std::is_same_v<Stream, beast::tcp_stream>) {
    lowest.expires_after(net::shutdown_timeout);  // close_notify, bounded
    co_await stream.async_shutdown(nothrow);
  }
  boost::system::error_code ec;
  lowest.socket().shutdown(tcp::socket::shutdown_send, ec);
  if (ec) co_return;
  lowest.expires_after(linger_timeout);
  ctx.http_idle.insert(&lowest.socket());
  std::array<char, 4096> sink;
  for (std::size_t dropped = 0; dropped < linger_bytes;) {
    auto [rec, n] = co_await lowest.async_read_some(asio::buffer(sink), nothrow);
    if (rec) break;
    dropped += n;
  }
  ctx.http_idle.erase(&lowest.socket());
}

web_asset const* find_asset(std::string_view target) {
  target = target.substr(0, target.find_first_of("?#"));
  if (target == "/") target = "/index.html";
  for (auto const& a : web_assets())
    if (a.path == target) return &a;
  return nullptr;
}

/// Serves the HTTP requests of one connection on `stream` (beast::tcp_stream or tls_stream);
/// `buffer` may hold bytes already read. `tls_refused`: plaintext under --tls-required, every
/// request gets 403.
template <class Stream>
awaitable<void> serve(server_context& ctx, Stream& stream, beast::flat_buffer& buffer,
                      std::string const& peer, std::uint64_t& next_id,
                      std::shared_ptr<asio::ssl::context> tls_ctx, bool tls_refused,
                      counted_connection& counted) {
  constexpr bool tls = !std::is_same_v<Stream, beast::tcp_stream>;
  auto& lowest = beast::get_lowest_layer(stream);
  for (int requests = 0; requests < max_requests; ++requests) {
    http::request_parser<http::string_body> parser;
    parser.header_limit(max_header);
    parser.body_limit(max_body);
    if (ctx.stopping) break;
    lowest.expires_after(request_timeout);
    ctx.http_idle.insert(&lowest.socket());  // shutdown closes connections waiting here
    auto [ec, n] = co_await http::async_read(stream, buffer, parser, nothrow);
    ctx.http_idle.erase(&lowest.socket());
    if (ec) {
      auto res = parse_error_response(ec, parser.get().target());
      if (!res) co_return;  // closed or timed out: nobody to answer
      JIM_LOG(debug, "HTTP request from {} refused: {} ({})", peer, res->result_int(),
              ec.message());
      lowest.expires_after(refusal_timeout);
      co_await http::async_write(stream, *res, nothrow);
      break;
    }
    auto& req = parser.get();
    // The last request this connection may make, or shutdown begun: the answer says close.
    const bool keep = req.keep_alive() && requests + 1 < max_requests && !ctx.stopping;
    const unsigned version = req.version();
    if (req.target().size() > max_target) {
      auto res = text_response(http::status::uri_too_long, version, false,
                               "URI too long: at most " + std::to_string(max_target) + " bytes\n");
      co_await http::async_write(stream, res, nothrow);
      break;
    }

    if (tls_refused) {
      JIM_LOG(info, "plaintext HTTP request from {} refused (--tls-required)", peer);
      auto res = text_response(http::status::forbidden, version, false,
                               "TLS required: use https://" + std::string(req[http::field::host]) +
                                   "/\n");
      co_await http::async_write(stream, res, nothrow);
      break;
    }

    if (websocket::is_upgrade(req)) {
      if (req.target() != "/chat") {
        auto res =
            text_response(http::status::not_found, version, false, "WebSocket endpoint is /chat\n");
        co_await http::async_write(stream, res, nothrow);
        co_return;
      }
      if (!origin_allowed(req[http::field::origin], req[http::field::host], ctx.cfg.http_origins)) {
        JIM_LOG(warn, "WebSocket from {} refused: origin {} not allowed", peer,
                std::string(req[http::field::origin]));
        auto res = text_response(http::status::forbidden, version, false, "origin not allowed\n");
        co_await http::async_write(stream, res, nothrow);
        co_return;
      }
      // Every step before the session takes over has a deadline (the upgrade, a refusal's
      // frame and Close): a peer that stops reading cannot hold a coroutine, or shutdown.
      lowest.expires_after(refusal_timeout);
      websocket::stream<Stream> ws(std::move(stream));
      ws.set_option(websocket::stream_base::decorator(
          [](websocket::response_type& res) { res.set(http::field::server, version_string); }));
      auto [aec] = co_await ws.async_accept(req, nothrow);
      if (aec) co_return;
      counted.release();  // the session counts it from here on (or it is refused now)
      if (ctx.refusing()) {
        const std::string line = ctx.refusal();
        ws.text(true);
        co_await ws.async_write(asio::buffer(line.data(), line.size() - 1), nothrow);
        co_await ws.async_close(websocket::close_code::try_again_later, nothrow);
        co_return;
      }
      beast::get_lowest_layer(ws).expires_never();  // the session's own deadlines take over
      auto s = std::make_shared<ws_session<Stream>>(
          ctx, std::move(ws), ++next_id, peer + (tls ? " (websocket, TLS)" : " (websocket)"),
          std::move(tls_ctx));
      co_await s->run();
      co_return;
    }

    if (auto ops_res = ops::respond(ctx, remote_address(lowest.socket()), req)) {  // /metrics, /healthz
      ops_res->keep_alive(keep);
      co_await http::async_write(stream, *ops_res, nothrow);
    } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
      auto res =
          text_response(http::status::method_not_allowed, version, keep, "GET or HEAD only\n");
      res.set(http::field::allow, "GET, HEAD");
      co_await http::async_write(stream, res, nothrow);
    } else if (auto const* asset = find_asset(req.target())) {
      auto res = make_response<http::string_body>(http::status::ok, version, keep);
      res.set(http::field::content_type, asset->content_type);
      res.set(http::field::cache_control, "no-cache");
      res.set("Content-Security-Policy",
              "default-src 'self'; connect-src 'self' ws: wss:; img-src 'self' data:");
      if (req.method() == http::verb::get) res.body() = std::string(asset->body);
      res.prepare_payload();
      if (req.method() == http::verb::head) res.content_length(asset->body.size());
      co_await http::async_write(stream, res, nothrow);
    } else {
      auto res = text_response(http::status::not_found, version, keep, "not found\n");
      co_await http::async_write(stream, res, nothrow);
    }
    if (!keep) break;
  }
  co_await close_gracefully(ctx, stream);
}

/// An HTTP connection when TLS is configured: TLS or plaintext by its first bytes.
awaitable<void> serve_detected(server_context& ctx, tcp::socket socket, std::string const& peer,
                               std::uint64_t& next_id, counted_connection& counted) {
  beast::flat_buffer buffer(8192);
  net::pending_connection pending(ctx, socket);  // shutdown closes it while it waits
  net::deadline limit(socket.get_executor());
  limit.arm(socket, ctx.tls->required() ? net::handshake_timeout : request_timeout);
  auto [wec] = co_await socket.async_wait(tcp::socket::wait_read, nothrow);
  if (wec || !socket.is_open()) co_return;
  limit.arm(socket, net::handshake_timeout);  // from the first byte on, the handshake's bound
  // Counted toward --max-clients since its accept (a full server refused it there).
  std::shared_ptr<asio::ssl::context> tls_ctx;
  std::optional<tls_stream> stream;
  const auto found = co_await net::detect_and_handshake(socket, buffer, *ctx.tls, tls_ctx,
                                                        pending, limit, stream);
  if (found.what == net::detection::kind::plaintext) {
    limit.disarm();
    pending.release();
    beast::tcp_stream plain(std::move(socket));
    co_await serve(ctx, plain, buffer, peer, next_id, {}, ctx.tls->required(), counted);
    co_return;
  }
  limit.disarm();
  if (found.what != net::detection::kind::tls) {
    if (!found.failure.empty())
      JIM_LOG(debug, "TLS handshake with {} failed: {}", peer, found.failure);
    co_return;
  }
  pending.release();
  co_await serve(ctx, *stream, buffer, peer, next_id, std::move(tls_ctx), false, counted);
}


}  // namespace

bool origin_allowed(std::string_view origin, std::string_view host, std::string_view allowed) {
  origin = trim_blanks(origin);
  if (origin.empty()) return true;  // not a browser: nothing to protect against
  if (!trim_blanks(allowed).empty()) {
    for (auto item : comma_items(allowed))
      if (beast::iequals(item, origin)) return true;
    return false;
  }
  const auto scheme = origin.find("://");
  if (scheme == std::string_view::npos) return false;
  std::string_view origin_host = origin.substr(scheme + 3);
  if (!origin_host.empty() && origin_host.back() == '/') origin_host.remove_suffix(1);
  return !origin_host.empty() && beast::iequals(origin_host, trim_blanks(host));
}

awaitable<void> serve_http(server_context& ctx, tcp::socket socket, std::uint64_t& next_id) {
  // A coroutine, not a plain forwarding function: GCC 12 at -O2 sees Asio's frame allocator
  // through an inlined ramp and reports a false -Wmismatched-new-delete.
  const std::string peer = describe(socket);
  counted_connection counted(ctx);  // toward --max-clients until it ends or upgrades
  if (ctx.tls) {
    co_await serve_detected(ctx, std::move(socket), peer, next_id, counted);
    co_return;
  }
  beast::tcp_stream stream(std::move(socket));
  beast::flat_buffer buffer(8192);
  co_await serve(ctx, stream, buffer, peer, next_id, {}, false, counted);
}

}  // namespace jim::server
