#pragma once
/// \file
/// One TCP connection: a reader coroutine (framer -> decoder -> hub), a writer coroutine that
/// drains a byte-bounded outbox with gathered writes, and a watchdog for idle probes.

#include "hub.hpp"
#include "jim/framing.hpp"

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include <cstdint>
#include <deque>
#include <memory>
#include <string>
#include <unordered_set>
#include <vector>

namespace jim::server {

struct config;
class session;

/// What every session shares: the hub, the limits, the hashing pool and the live set.
/// Lives on the I/O thread, as do the sessions.
struct server_context {
  config const& cfg;
  hub& chat;
  boost::asio::thread_pool& cpu_pool;  ///< password hashing: never on the I/O thread
  proto::limits limits;
  std::unordered_set<session*> live;
  bool stopping = false;
  boost::asio::steady_timer* all_closed = nullptr;  ///< cancelled when `live` empties while stopping
};

class session final : public peer, public std::enable_shared_from_this<session> {
public:
  session(server_context& ctx, boost::asio::ip::tcp::socket socket, std::uint64_t id);
  ~session();

  /// Runs the connection to its end. Co-spawn it with a shared_ptr copy kept alive.
  boost::asio::awaitable<void> run();

  bool push(shared_frame const& frame) override;
  void replaced(shared_frame const& notice) override;

  /// Queues `notice` (if any), stops reading, flushes and closes.
  void close_with(shared_frame const& notice);

  /// Completes when the connection has sent everything and shut down its side,
  /// or after `bound`.
  boost::asio::awaitable<void> wait_closed(std::chrono::milliseconds bound);

  std::uint64_t id() const { return id_; }

private:
  boost::asio::awaitable<void> read_side();
  boost::asio::awaitable<void> reader();
  boost::asio::awaitable<void> writer();
  boost::asio::awaitable<void> watchdog();
  boost::asio::awaitable<void> linger();

  /// Handles one frame; false ends the reading (quit, wrong password, ...).
  boost::asio::awaitable<bool> handle(boost::json::object const& frame);
  boost::asio::awaitable<bool> handle_sign_in(proto::request& req);
  boost::asio::awaitable<bool> verify_and_sign_in(account& a, std::string const& password,
                                                  boost::json::value const& tag);
  boost::asio::awaitable<void> register_and_sign_in(std::string const& name, std::string const& password,
                                                    boost::json::value const& tag);
  boost::asio::awaitable<void> sign_in(account& a, proto::code status, boost::json::value const& tag);
  boost::asio::awaitable<outcome> create(proto::create_req const& req);
  boost::asio::awaitable<outcome> join(proto::join_req const& req);

  void send(std::string line);  ///< own reply or push: never drops the connection
  void reply(proto::code c, boost::json::value const& tag, std::string_view text = {},
             boost::json::object fields = {});
  void deliver(outcome&& o, boost::json::value const& tag);
  void enqueue(shared_frame frame);
  void drop(char const* why);
  void stop_reading();

  server_context& ctx_;
  boost::asio::ip::tcp::socket socket_;
  std::uint64_t id_;
  std::string peer_name_;
  proto::framer framer_;

  // Outbox: frames queued but not yet handed to the writer, and the bytes of all queued and
  // in-flight frames (what --max-outbound bounds).
  std::deque<shared_frame> queue_;
  std::size_t queued_bytes_ = 0;
  boost::asio::steady_timer wake_;      ///< the writer waits on it for work
  boost::asio::steady_timer drained_;   ///< the reader waits on it for the outbox to drain
  boost::asio::steady_timer watchdog_;  ///< idle probe / timeout; cancelled to stop reading
  boost::asio::steady_timer closed_signal_;  ///< cancelled once this side is shut down
  bool closing_ = false;  ///< no more reading; the writer flushes and ends
  bool closed_ = false;   ///< the writer has ended: nothing more is sent
  bool probed_ = false;
  steady::time_point last_rx_;

  // Sign-in state.
  enum class auth { none, login, register_first, register_confirm };
  auth auth_ = auth::none;
  std::string pending_name_;
  std::string first_password_;
  account* account_ = nullptr;
};

}  // namespace jim::server
