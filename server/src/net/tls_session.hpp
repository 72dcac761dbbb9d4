#pragma once
/// \file
/// The JIM port with TLS configured: the first bytes of a connection tell a TLS ClientHello
/// from a plaintext frame; TLS connections are handshaken (bounded) and served by a
/// tls_session, plaintext ones by a tcp_session (or refused with 403 under --tls-required).

#include "net/throttle.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <chrono>
#include <cstdint>
#include <memory>
#include <string>

namespace jim::server {

struct server_context;

namespace net {

/// A connection that is not yet a session (telling TLS from plaintext, in its handshake):
/// counted toward --max-clients (server_context::handshaking) and closed by shutdown (it is in
/// server_context::http_idle) while this object lives or until release().
///
/// @par Thread Safety
/// I/O thread only. `socket` must stay at its address while registered.
class pending_connection {
 public:
  /// Tracks `socket` for shutdown; counting starts with count().
  pending_connection(server_context& ctx, boost::asio::ip::tcp::socket& socket);
  ~pending_connection();
  pending_connection(pending_connection const&) = delete;
  pending_connection& operator=(pending_connection const&) = delete;
  /// Counts the connection toward --max-clients from now on.
  void count();
  /// Registers the socket at a new address (after the stream holding it moved).
  void track(boost::asio::ip::tcp::socket& socket);
  /// Stops counting and tracking (the connection became a session, or ended).
  void release();

 private:
  server_context& ctx_;
  boost::asio::ip::tcp::socket* socket_;
  bool counted_ = false;
};

/// A timer that closes a socket when it expires (unless disarmed first), which ends whatever
/// operation is pending on it: a bound for steps that have no deadline of their own (waiting
/// for the first byte, TLS detection, the handshake).
///
/// @par Thread Safety
/// I/O thread only. Safe to destroy while armed (the expiry then does nothing).
class deadline {
 public:
  explicit deadline(boost::asio::any_io_executor ex);
  ~deadline();
  deadline(deadline const&) = delete;
  deadline& operator=(deadline const&) = delete;

  /// Closes `socket` after `bound` (re-arming replaces the previous bound).
  void arm(boost::asio::ip::tcp::socket& socket, std::chrono::steady_clock::duration bound);
  /// The socket moved into another object: close that one instead.
  void retarget(boost::asio::ip::tcp::socket& socket);
  void disarm();
  /// Whether it fired (and closed the socket).
  bool expired() const;

 private:
  struct state;
  std::shared_ptr<state> state_;
};

/// Serves one connection to the JIM port when TLS is configured (ctx.tls set): TLS or
/// plaintext by its first bytes, the session numbered from `next_id`. A TLS handshake that
/// has not finished net::handshake_timeout after its first byte is closed; a peer that sends
/// nothing at all is closed after --idle-timeout (after handshake_timeout under
/// --tls-required). `peer`: describe() of the address accept() gave. Completes once the
/// connection is a session (session::start(), which then holds `ticket` until the connection
/// ends: no frame of this coroutine stays alive with it) or has ended.
boost::asio::awaitable<void> serve_jim(server_context& ctx, boost::asio::ip::tcp::socket socket,
                                       std::uint64_t& next_id, std::string peer,
                                       throttle::ticket ticket);

}  // namespace net
}  // namespace jim::server
