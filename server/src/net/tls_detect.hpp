#pragma once
/// \file
/// Telling a TLS ClientHello from plaintext by a connection's first bytes, and the TLS
/// handshake that follows: the one sequence of the JIM port (net::serve_jim), the HTTP port
/// (serve_detected in http.cpp) and the refusals of both (refuser::refuse).

#include "net/tls.hpp"
#include "net/tls_session.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream_base.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/beast/core/detect_ssl.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/core/stream_traits.hpp>

#include <memory>
#include <optional>
#include <string>

namespace jim::server::net {

/// What detect_and_handshake() found.
struct detection {
  enum class kind {
    ended,      ///< closed (by the peer, the deadline or shutdown) or the handshake failed
    plaintext,  ///< not TLS: the socket is untouched, the bytes read are in the buffer
    tls,        ///< handshaken: the stream holds the connection
  };
  kind what = kind::ended;
  /// With `ended` after a failed handshake: why, for the caller's log line ("not finished in
  /// time" when the deadline closed it, else OpenSSL's reason); empty otherwise.
  std::string failure;
};

/// Reads the first bytes of `socket` into `buffer` (Beast's detect_ssl: a few bytes, those of
/// a ClientHello's record header) and, for TLS, sets `tls_ctx` to `tls.context()` (the context
/// in use at that moment: a connection keeps it across SIGHUP reloads), moves the socket into
/// `stream` (emplaced: an Asio ssl::stream<tcp::socket> or a Beast ssl_stream<tcp_stream>),
/// makes `pending` and `limit` follow it there, and handshakes as the server with what was
/// read; the handshake's bytes are then consumed from `buffer` (what follows them stays).
/// Bounded by `limit` only: the caller arms it (net::handshake_timeout) and disarms it.
/// `stream` must outlive the call at a fixed address (a local of the calling coroutine).
///
/// @par Thread Safety
/// I/O thread only, like the pending_connection and deadline it updates.
template <class Stream>
boost::asio::awaitable<detection> detect_and_handshake(
    boost::asio::ip::tcp::socket& socket, boost::beast::flat_buffer& buffer,
    tls_manager const& tls, std::shared_ptr<boost::asio::ssl::context>& tls_ctx,
    pending_connection& pending, deadline& limit, std::optional<Stream>& stream) {
  constexpr auto nothrow = boost::asio::as_tuple(boost::asio::use_awaitable);
  auto [dec, is_tls] = co_await boost::beast::async_detect_ssl(socket, buffer, nothrow);
  if (dec) co_return detection{};
  if (!is_tls) co_return detection{detection::kind::plaintext, {}};
  tls_ctx = tls.context();
  stream.emplace(std::move(socket), *tls_ctx);
  auto& lowest = boost::beast::get_lowest_layer(*stream);
  boost::asio::ip::tcp::socket* raw = nullptr;
  if constexpr (requires { lowest.socket(); })
    raw = &lowest.socket();  // a beast::tcp_stream
  else
    raw = &lowest;  // the socket itself
  pending.track(*raw);
  limit.retarget(*raw);
  auto [hec, used] = co_await stream->async_handshake(boost::asio::ssl::stream_base::server,
                                                      buffer.data(), nothrow);
  if (hec || limit.expired())
    co_return detection{detection::kind::ended,
                        limit.expired() ? "not finished in time" : hec.message()};
  buffer.consume(used);
  co_return detection{detection::kind::tls, {}};
}

}  // namespace jim::server::net
