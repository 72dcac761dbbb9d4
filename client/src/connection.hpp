#pragma once
/// \file
/// The client's connection to jimd, over TCP or TLS: frames in through the framer, lines out
/// through one writer coroutine, so that any part of the client may send at any time.

#include "jim/framing.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <array>
#include <deque>
#include <memory>
#include <optional>
#include <string>

namespace jim::client {

/// How `jim --tls` checks the server.
struct tls_options {
  std::string ca_file;    ///< trusted CAs (PEM); empty: the system's CAs
  bool insecure = false;  ///< no verification at all (--insecure)
};

/// A client TLS context: TLS 1.2 or later, the peer verified against `opt.ca_file` or the
/// system CAs unless `opt.insecure`. Throws std::runtime_error naming a CA file that does not
/// load.
std::shared_ptr<boost::asio::ssl::context> make_tls_context(tls_options const& opt);

/// One connection to the daemon (one per attempt: a reconnect makes a new one).
///
/// @par Thread Safety
/// Single-threaded: every member is called on the one io_context thread.
class connection : public std::enable_shared_from_this<connection> {
public:
  /// `tls`: the context of a TLS connection; null for plaintext.
  connection(boost::asio::any_io_executor ex, std::shared_ptr<boost::asio::ssl::context> tls);

  /// Resolves `host`, connects to the first address that answers and, for TLS, does the
  /// handshake (SNI set to `host` unless it is an address; the certificate must name `host`,
  /// checked with ssl::host_name_verification). On failure, the error; connect_error() then
  /// says what went wrong in words. On success the writer runs until close().
  boost::asio::awaitable<boost::system::error_code> connect(std::string host, std::string port);

  /// What the last connect() failure was, for a person (e.g. why a certificate was refused).
  std::string const& connect_error() const noexcept { return connect_error_; }

  /// The next frame from the server; `nullopt` once the connection has ended (see why_ended()).
  /// One caller at a time.
  boost::asio::awaitable<std::optional<boost::json::object>> receive();

  /// Queues `frame` as one line for the writer.
  void send(boost::json::object const& frame);
  /// Queues bytes as they are (a raw line with its '\n').
  void send_raw(std::string bytes);

  /// Closes the socket: receive() and the writer end. Idempotent.
  void close();

  /// Empty after a clean end of stream, otherwise what went wrong.
  std::string const& why_ended() const noexcept { return why_; }

private:
  boost::asio::awaitable<void> write_loop();

  boost::asio::ip::tcp::socket socket_;
  std::shared_ptr<boost::asio::ssl::context> tls_context_;
  std::optional<boost::asio::ssl::stream<boost::asio::ip::tcp::socket&>> tls_;
  boost::asio::steady_timer wake_;  ///< cancelled to wake write_loop() when a line is queued
  std::deque<std::string> queue_;
  proto::framer framer_;
  std::array<char, 16384> buffer_{};
  bool fed_ = false;  ///< the framer holds a chunk of buffer_ not fully consumed
  bool closed_ = false;
  std::string why_;
  std::string connect_error_;
  std::string verify_refused_;  ///< why the certificate was refused (set by the verify callback)
};

}  // namespace jim::client
