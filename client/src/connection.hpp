#pragma once
/// \file
/// The client's TCP connection to jimd: frames in through the framer, lines out through one
/// writer coroutine, so that any part of the client may send at any time.

#include "jim/framing.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/json/object.hpp>

#include <array>
#include <deque>
#include <optional>
#include <string>

namespace jim::client {

/// One connection to the daemon.
///
/// @par Thread Safety
/// Single-threaded: every member is called on the one io_context thread.
class connection {
public:
  explicit connection(boost::asio::any_io_executor ex);

  /// Resolves `host` (blocking: call it before anything else runs) and connects to the first
  /// address that answers.
  boost::asio::awaitable<boost::system::error_code> connect(std::string host, std::string port);

  /// The next frame from the server; `nullopt` once the connection has ended (see why_ended()).
  /// One caller at a time.
  boost::asio::awaitable<std::optional<boost::json::object>> receive();

  /// Queues `frame` as one line for write_loop().
  void send(boost::json::object const& frame);
  /// Queues bytes as they are (a raw line with its '\n').
  void send_raw(std::string bytes);

  /// Writes whatever is queued, in order, until the connection fails or the caller is
  /// cancelled. Run it alongside the rest of the client.
  boost::asio::awaitable<void> write_loop();

  /// Empty after a clean end of stream, otherwise what went wrong.
  std::string const& why_ended() const noexcept { return why_; }

private:
  boost::asio::ip::tcp::socket socket_;
  boost::asio::steady_timer wake_;  ///< cancelled to wake write_loop() when a line is queued
  std::deque<std::string> queue_;
  proto::framer framer_;
  std::array<char, 16384> buffer_{};
  bool fed_ = false;  ///< the framer holds a chunk of buffer_ not fully consumed
  std::string why_;
};

}  // namespace jim::client
