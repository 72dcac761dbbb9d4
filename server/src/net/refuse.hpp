#pragma once
/// \file
/// Refusing a connection before it is served (--max-clients reached, shutting down, or a
/// per-address limit of net::throttle): one answer in the form the client understands, then
/// the close, every step bounded.

#include "jim/protocol.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstddef>
#include <string>

namespace jim::server {

struct server_context;

namespace net {

/// Why a connection is refused.
struct refusal {
  proto::code code = proto::code::unavailable;  ///< 503 (full, too many at once) or 429
  std::string text;
  double retry_after = 0;  ///< > 0: sent as "retry_after" (and HTTP Retry-After, rounded up)
};

/// The `retry_after` (seconds) of a 503 refusal whose end jimd cannot foresee: max-clients
/// reached, or too many connections at once from one address (both end when some connection
/// closes). A hint, so that a client (`jim`) waits and tries again instead of giving up; a
/// refusal whose end is known (new-conns-per-ip, the hashing queue) says that instead.
inline constexpr double busy_retry_after = 5;
/// A refusal takes at most this long (reading the request or the ClientHello, the TLS
/// handshake, writing the answer, waiting for the peer to close).
inline constexpr std::chrono::seconds refusal_bound{5};
/// With TLS configured, how long a refused connection that has sent nothing may take to send
/// its first bytes (a TLS client sends its ClientHello at once; a plaintext chat client may
/// send nothing) before it gets the plaintext frame.
inline constexpr std::chrono::milliseconds first_bytes_wait{1000};

/// Ends our direction of `socket`, then reads and drops what the peer still sends until it
/// closes (or the socket is closed: the caller's deadline bounds it). Closing with unread input
/// would reset the connection, and the peer could lose a refusal before reading it.
boost::asio::awaitable<void> drain(boost::asio::ip::tcp::socket& socket);

/// Refuses connections, each with its refusal as the client expects it:
/// - JIM port: the reply frame `{"response":503|429,...}`; over TLS (after the handshake) when
///   the client starts one, in plaintext otherwise; then the close.
/// - HTTP port: after reading the request, HTTP 503/429 (`Retry-After` for 429), or for a
///   WebSocket upgrade of `/chat` the reply frame then Close 1013 (try again later); over TLS
///   when the client starts one.
/// At most `max_in_flight` refusals wait on their clients at once; beyond that a refusal is
/// written in plaintext without reading anything and the connection closed at once, so a
/// flood of refused connections holds a bounded number of descriptors.
///
/// @par Thread Safety
/// I/O thread only. Must outlive the refusals it started (shutdown closes them).
class refuser {
 public:
  refuser(server_context& ctx, std::size_t max_in_flight) : ctx_(ctx), max_(max_in_flight) {}
  refuser(refuser const&) = delete;
  refuser& operator=(refuser const&) = delete;

  /// Refuses `socket`, accepted on the HTTP port when `http`, else on the JIM port.
  boost::asio::awaitable<void> refuse(boost::asio::ip::tcp::socket socket, refusal r, bool http);

  std::size_t in_flight() const { return in_flight_; }

 private:
  server_context& ctx_;
  std::size_t max_;
  std::size_t in_flight_ = 0;
};

}  // namespace net
}  // namespace jim::server
