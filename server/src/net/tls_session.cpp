#include "net/tls_session.hpp"

#include "logging.hpp"
#include "net/refuse.hpp"
#include "net/tls.hpp"
#include "net/tls_detect.hpp"
#include "options.hpp"
#include "session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/bind_cancellation_slot.hpp>
#include <boost/asio/cancellation_signal.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>
#include <boost/beast/core/flat_buffer.hpp>

#include <cstring>
#include <memory>
#include <optional>
#include <utility>

namespace jim::server::net {

namespace asio = boost::asio;
namespace beast = boost::beast;
namespace ssl = asio::ssl;
using asio::awaitable;
using tcp = asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;

namespace {
JIM_LOG_MODULE("tls")
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t read_chunk = 16 * 1024;  ///< one TLS record at most
constexpr std::size_t coalesce_limit = 64 * 1024;
constexpr auto refusal_timeout = std::chrono::seconds(5);

/// A session over TLS (Asio SSL stream on the socket): newline-delimited frames as on TCP.
/// Writes are asynchronous only (write_now says would_block): each write takes every frame
/// queued so far, copied into one buffer, so a fan-out round costs one TLS record series and
/// one syscall per recipient.
class tls_session final : public session {
 public:
  tls_session(server_context& ctx, std::shared_ptr<ssl::context> tls_ctx,
              ssl::stream<tcp::socket> stream, std::uint64_t id, std::string peer_name)
      : session(ctx, stream.get_executor(), id, std::move(peer_name)),
        tls_ctx_(std::move(tls_ctx)),
        stream_(std::move(stream)) {
    if (!ctx.nodelay_inherited) {  // else the listener's TCP_NODELAY is the socket's already
      boost::system::error_code ec;
      stream_.next_layer().set_option(tcp::no_delay(true), ec);
    }
  }

 private:
  awaitable<void> read_loop() override {
    auto buf = std::make_unique_for_overwrite<char[]>(read_chunk);
    while (co_await ready_to_read()) {
      auto [ec, n] = co_await stream_.async_read_some(
          asio::buffer(buf.get(), read_chunk),
          asio::bind_cancellation_slot(read_cancel_.slot(), nothrow));
      if (ec) {
        // eof: the peer's close_notify; stream_truncated: TCP closed without it (common).
        if (ec != asio::error::eof && ec != ssl::error::stream_truncated &&
            ec != asio::error::operation_aborted)
          JIM_LOG(debug, "TLS read: {}", ec.message());
        if (ec != asio::error::eof) peer_closed_ = true;  // no close_notify to exchange
        co_return;
      }
      note_activity();
      if (!co_await consume({buf.get(), n})) co_return;
    }
  }

  void cancel_read() override { read_cancel_.emit(asio::cancellation_type::terminal); }

  std::size_t write_now(std::span<shared_frame const>, std::size_t,
                        boost::system::error_code& ec) override {
    ec = asio::error::would_block;  // the SSL stream writes asynchronously only
    return 0;
  }

  void write_async(std::span<shared_frame const> frames, std::size_t offset,
                   std::function<void(boost::system::error_code, std::size_t)> done) override {
    std::size_t total = frames[0]->size() - offset;
    std::size_t n = 1;
    while (n < frames.size() && total + frames[n]->size() <= coalesce_limit)
      total += frames[n++]->size();
    out_.resize(total);  // kept between writes: no allocation per round once grown
    char* p = out_.data();
    std::memcpy(p, frames[0]->data() + offset, frames[0]->size() - offset);
    p += frames[0]->size() - offset;
    for (std::size_t i = 1; i < n; ++i) {
      std::memcpy(p, frames[i]->data(), frames[i]->size());
      p += frames[i]->size();
    }
    asio::async_write(stream_, asio::buffer(out_),
                      [this, total, done = std::move(done)](boost::system::error_code ec,
                                                            std::size_t) {
                        if (out_.capacity() > coalesce_limit) {  // a single huge frame
                          out_.clear();
                          out_.shrink_to_fit();
                        }
                        done(ec, ec ? 0 : total);  // `done` holds the session alive
                      });
  }

  // close_notify goes out in linger(), once the reader has ended: an SSL stream takes one
  // read-side operation at a time, and the reader may still be completing its cancellation.
  void finish() override {}

  awaitable<void> linger() override {
    if (!stream_.next_layer().is_open() || peer_closed_) co_return;
    // Sends close_notify and waits for the peer's, bounded (a peer that just closes TCP ends
    // it with stream_truncated or eof: a normal end).
    watchdog_.expires_after(shutdown_timeout);
    co_await (stream_.async_shutdown(nothrow) || watchdog_.async_wait(nothrow));
  }

  void abort(bool reset) override {
    boost::system::error_code ignored;
    auto& socket = stream_.next_layer();
    if (reset) socket.set_option(asio::socket_base::linger(true, 0), ignored);
    socket.close(ignored);
  }

  std::shared_ptr<ssl::context> tls_ctx_;  ///< the context it was made with (SIGHUP replaces the server's)
  ssl::stream<tcp::socket> stream_;
  asio::cancellation_signal read_cancel_;
  std::vector<char> out_;
  bool peer_closed_ = false;
};

}  // namespace

// --- pending_connection ----------------------------------------------------------------------

pending_connection::pending_connection(server_context& ctx, tcp::socket& socket)
    : ctx_(ctx), socket_(&socket) {
  ctx_.http_idle.insert(socket_);
}

void pending_connection::count() {
  if (!socket_ || std::exchange(counted_, true)) return;
  ++ctx_.handshaking;
}

pending_connection::~pending_connection() { release(); }

void pending_connection::track(tcp::socket& socket) {
  if (!socket_) return;
  ctx_.http_idle.erase(socket_);
  socket_ = &socket;
  ctx_.http_idle.insert(socket_);
}

void pending_connection::release() {
  if (!socket_) return;
  ctx_.http_idle.erase(socket_);
  socket_ = nullptr;
  if (std::exchange(counted_, false)) --ctx_.handshaking;
}

// --- deadline --------------------------------------------------------------------------------

struct deadline::state {
  explicit state(asio::any_io_executor ex) : timer(std::move(ex)) {}
  asio::steady_timer timer;
  tcp::socket* socket = nullptr;
  bool expired = false;
};

deadline::deadline(asio::any_io_executor ex) : state_(std::make_shared<state>(std::move(ex))) {}

deadline::~deadline() { disarm(); }

void deadline::arm(tcp::socket& socket, std::chrono::steady_clock::duration bound) {
  state_->socket = &socket;
  state_->timer.expires_after(bound);
  state_->timer.async_wait([st = state_](boost::system::error_code ec) {
    if (ec || !st->socket) return;
    st->expired = true;
    boost::system::error_code ignored;
    st->socket->close(ignored);
  });
}

void deadline::retarget(tcp::socket& socket) {
  state_->socket = &socket;
}

void deadline::disarm() {
  state_->socket = nullptr;
  state_->timer.cancel();
}

bool deadline::expired() const {
  return state_->expired;
}

// --- serve_jim -------------------------------------------------------------------------------

namespace {

/// Writes the 403 frame of --tls-required, ends our direction and reads (bounded) until the
/// peer closes, so that unread input does not reset the connection before it reads the frame.
awaitable<void> refuse_plaintext(tcp::socket& socket, deadline& limit) {
  const std::string line = tls_required_frame();
  limit.arm(socket, refusal_timeout);
  auto [ec, n] = co_await asio::async_write(socket, asio::buffer(line), nothrow);
  if (!ec) co_await drain(socket);
  limit.disarm();
  boost::system::error_code ignored;
  socket.close(ignored);
}

awaitable<void> serve(server_context& ctx, tcp::socket socket, std::uint64_t& next_id,
                      std::string peer, throttle::ticket ticket) {
  pending_connection pending(ctx, socket);
  pending.count();  // as a plaintext connection always did: from its accept
  deadline limit(socket.get_executor());
  // A silent peer may be a plaintext client whose user has not typed yet: it gets the idle
  // timeout a plaintext connection always had, unless plaintext is refused anyway.
  limit.arm(socket, ctx.tls->required() ? handshake_timeout : ctx.cfg.idle_timeout);
  auto [wec] = co_await socket.async_wait(tcp::socket::wait_read, nothrow);
  if (wec || !socket.is_open()) co_return;
  limit.arm(socket, handshake_timeout);  // from the first byte on, the handshake's bound
  beast::flat_buffer buffer;
  std::shared_ptr<ssl::context> tls_ctx;
  std::optional<ssl::stream<tcp::socket>> stream;
  const auto found =
      co_await detect_and_handshake(socket, buffer, *ctx.tls, tls_ctx, pending, limit, stream);
  if (found.what == detection::kind::plaintext) {
    if (ctx.tls->required()) {
      JIM_LOG(info, "plaintext connection from {} refused (--tls-required)", peer);
      pending.release();
      co_await refuse_plaintext(socket, limit);
      co_return;
    }
    limit.disarm();
    pending.release();
    const auto bytes = buffer.data();
    std::string initial(static_cast<char const*>(bytes.data()), bytes.size());
    std::make_shared<tcp_session>(ctx, std::move(socket), ++next_id, std::move(initial),
                                  std::move(peer))
        ->start(std::move(ticket));
    co_return;
  }
  limit.disarm();
  if (found.what != detection::kind::tls) {  // closed, or the deadline closed it
    if (!found.failure.empty())
      JIM_LOG(debug, "TLS handshake with {} failed: {}", peer, found.failure);
    co_return;
  }
  pending.release();
  std::make_shared<tls_session>(ctx, std::move(tls_ctx), std::move(*stream), ++next_id,
                                peer + " (TLS)")
      ->start(std::move(ticket));
}

}  // namespace

awaitable<void> serve_jim(server_context& ctx, tcp::socket socket, std::uint64_t& next_id,
                          std::string peer, throttle::ticket ticket) {
  // A coroutine, not a plain forwarding function (see serve_http: GCC 12's false
  // -Wmismatched-new-delete through an inlined ramp).
  co_await serve(ctx, std::move(socket), next_id, std::move(peer), std::move(ticket));
}

}  // namespace jim::server::net
