#pragma once
/// \file
/// One connection: a reader coroutine (framer -> decoder -> hub), a byte-bounded outbox written
/// once per event-loop round (run_rounds) without blocking, and a watchdog for idle probes.

#include "hub.hpp"
#include "log_limiter.hpp"
#include "jim/framing.hpp"
#include "net/throttle.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_set>
#include <variant>
#include <vector>

namespace jim::server {

struct config;
class session;
class hash_queue;
namespace net {
class tls_manager;
}

/// What every session shares: the hub, the limits, the hashing pool and the live set.
/// Lives on the I/O thread, as do the sessions.
struct server_context {
  server_context(config const& c, hub& h, boost::asio::thread_pool& pool, proto::limits lim,
                 boost::asio::steady_timer* closed)
      : cfg(c), chat(h), cpu_pool(pool), limits(lim), all_closed(closed) {}

  config const& cfg;
  hub& chat;
  boost::asio::thread_pool& cpu_pool;  ///< password hashing: never on the I/O thread
  /// The bounded queue in front of cpu_pool for hashing (set by the server before serving).
  hash_queue* hashing = nullptr;
  /// Sign-ins refused because hashing could not start in time: one log line per second.
  log_limiter hashing_refusal_log{std::chrono::seconds(1)};
  proto::limits limits;
  std::unordered_set<session*> live;  ///< every session until destroyed (shutdown closes them)
  std::size_t active = 0;             ///< sessions still reading: what --max-clients counts
  /// Connections not yet sessions (telling TLS from plaintext, in a TLS handshake, HTTP
  /// connections not upgraded to a WebSocket): they count toward --max-clients too.
  std::size_t handshaking = 0;
  /// HTTP connections between requests and connections before their TLS handshake ends:
  /// shutdown closes them.
  std::unordered_set<boost::asio::ip::tcp::socket*> http_idle;
  /// TLS on both listeners (--tls-cert); nullptr: plaintext only.
  net::tls_manager* tls = nullptr;
  /// The JIM listener has TCP_NODELAY, which Linux copies to every socket it accepts
  /// (net::configure_listener): sessions need not set it (one setsockopt per connection).
  bool nodelay_inherited = false;

  /// Sessions with frames queued since the last flush. The event loop (run_rounds) flushes
  /// once per round, after every handler that is ready, so all the messages read in a round
  /// leave in one write per recipient.
  std::vector<session*> dirty;
  std::vector<session*> flushing;  ///< the round being written (kept: no allocation per round)
  void flush();

  /// Read buffers are lent for one read and its processing only: an idle connection holds
  /// none (it waits for readability, then reads into a borrowed buffer).
  class read_buffer {
   public:
    static constexpr std::size_t size = 16384;
    read_buffer(server_context& ctx);
    /// Takes back a buffer release() gave out (`data`: size bytes), to lend it on.
    read_buffer(server_context& ctx, std::unique_ptr<char[]> data)
        : ctx_(ctx), data_(std::move(data)) {}
    ~read_buffer();
    read_buffer(read_buffer const&) = delete;
    read_buffer& operator=(read_buffer const&) = delete;
    char* data() const { return data_.get(); }
    /// Keeps the buffer beyond this object (the bytes read into it wait for a reader).
    std::unique_ptr<char[]> release() { return std::move(data_); }

   private:
    server_context& ctx_;
    std::unique_ptr<char[]> data_;
  };
  std::vector<std::unique_ptr<char[]>> spare_buffers;  ///< at most max_spare_buffers

  /// Whether a new connection must be refused (max-clients reached, or shutting down), and
  /// the 503 line it gets then (with `retry_after` net::busy_retry_after when full).
  bool refusing() const;
  std::string refusal() const;
  bool stopping = false;
  boost::asio::steady_timer* all_closed =
      nullptr;  ///< cancelled when `live` empties while stopping
};

/// Runs `ioc` like io_context::run(), in rounds: the handlers ready now, then those whose I/O
/// became ready meanwhile (at most `max_handlers` in all), then ctx.flush() writes what the
/// round queued. Like Redis's event loop (process every ready client, then write each client
/// once), this makes a fan-out cost one write per recipient per round, however many messages
/// the round read. Returns when `ioc` is stopped or runs out of work.
void run_rounds(boost::asio::io_context& ioc, server_context& ctx, std::size_t max_handlers = 64);

/// The protocol side of one connection, whatever carries it: the sign-in state machine, the
/// dispatch of typed requests to the hub, a byte-bounded outbox written by flush() (or, when
/// the peer is slow, after waiting for writability), and a watchdog for idle probes. Transports
/// (TCP, WebSocket) derive from it and supply the byte-level hooks below.
///
/// @par Thread Safety
/// Everything runs on the I/O thread (the executor given to the constructor).
class session : public peer, public std::enable_shared_from_this<session> {
 public:
  session(server_context& ctx, boost::asio::any_io_executor ex, std::uint64_t id,
          std::string peer_name);
  virtual ~session();

  /// Runs the connection to its end. Co-spawn it with a shared_ptr copy kept alive.
  boost::asio::awaitable<void> run();

  /// Runs the connection to its end like run(), co-spawned here (the session keeps itself
  /// alive), holding `ticket` (its address's connection slot) until then. Memory per idle
  /// connection: a transport that can wait for input without a coroutine (tcp_session: see
  /// park()) keeps no coroutine frame at all while idle; the reader is co-spawned again for
  /// each burst of input (each frame would take a block of Asio's frame cache, which may be a
  /// larger frame's freed by a sign-in). Exceptions are logged.
  void start(net::throttle::ticket ticket);

  bool push(shared_frame const& frame) override;
  void replaced(shared_frame const& notice) override;

  /// Queues `notice` (if any), stops reading, flushes and closes.
  void close_with(shared_frame const& notice);

  /// Completes when the connection has sent everything and shut down its side,
  /// or after `bound`.
  boost::asio::awaitable<void> wait_closed(std::chrono::milliseconds bound);

  std::uint64_t id() const { return id_; }

  /// Closes the connection at once, dropping what is queued (logged with `why`).
  void drop(char const* why);

  /// Writes what is queued: directly when the writer is idle and the transport can write
  /// without blocking, else by waking the writer. Called by server_context::flush().
  void flush();
  /// Whether one of the peer's own replies was queued since the last flush.
  bool replied() const { return replied_; }

 protected:
  // Transport hooks.
  /// Reads until the peer is done or `consume` says stop; calls ready_to_read() before each
  /// read; cancel_read() ends its pending wait.
  virtual boost::asio::awaitable<void> read_loop() = 0;
  /// Writes what it can of `frames` (the first `offset` bytes of the first frame are already
  /// sent) without blocking; returns the bytes written, or 0 with `ec` set (would_block when
  /// the transport must wait: then write_async() is called).
  virtual std::size_t write_now(std::span<shared_frame const> frames, std::size_t offset,
                                boost::system::error_code& ec) = 0;
  /// Waits until more can be written, or writes asynchronously; `done(ec, bytes written)`.
  /// The frames stay queued (unchanged) until `done` runs.
  virtual void write_async(std::span<shared_frame const> frames, std::size_t offset,
                           std::function<void(boost::system::error_code, std::size_t)> done) = 0;
  /// Makes the pending read (if any) complete with operation_aborted.
  virtual void cancel_read() = 0;
  /// Arms a wait for input that calls readable() (after cancel_read(): with
  /// operation_aborted); false if the transport cannot (the default: its read_loop() waits
  /// itself). Called by try_park() only.
  virtual bool park() { return false; }
  /// Everything is sent: end our direction cleanly (TCP FIN, WebSocket close).
  virtual void finish() = 0;
  /// After finish(): wait (bounded) for the peer to close, discarding what it still sends.
  virtual boost::asio::awaitable<void> linger() = 0;
  /// Whether linger() has anything to do (false: the connection closes without it, and
  /// without the coroutine frames of a lingering end). The default: true.
  virtual bool must_linger() const { return true; }
  /// Closes the transport at once; pending operations end with operation_aborted.
  /// `reset`: drop unsent data too (a slow consumer), instead of letting the kernel finish.
  virtual void abort(bool reset) = 0;

  // For transports.
  /// Waits while our own replies fill the outbox; false once the session is closing.
  boost::asio::awaitable<bool> ready_to_read();
  /// Whether ready_to_read() would wait (the outbox is over --max-outbound); when not, its
  /// answer is `!closing()`, had without a coroutine frame.
  bool outbox_full() const;
  /// Feeds received bytes to the framer and handles every complete frame; false ends reading.
  boost::asio::awaitable<bool> consume(std::string_view bytes);
  void note_activity();
  /// For read_loop() when there is nothing to read: true if the wait for input is now armed
  /// without a coroutine (the session was started by start() and the transport can park());
  /// read_loop() must then return at once, and readable() goes on when input comes.
  bool try_park();
  /// The wait armed by park() completed: reads on (a new reader coroutine), or ends the
  /// reading when it failed or was cancelled.
  void readable(boost::system::error_code ec);
  bool closing() const { return closing_ || closed_; }
  /// The peer said goodbye (a WebSocket Close): the account is signed out at once and no push
  /// is accepted any more, while the transport finishes its closing handshake.
  void goodbye();
  /// The connection ends because a frame was over max-frame (WebSocket: close code 1009).
  bool too_large() const { return too_large_; }

  server_context& ctx_;
  boost::asio::steady_timer
      watchdog_;  ///< idle probe / timeout; also the flush and linger deadline

 private:
  /// The rest of run() once the reader has ended: signs out, flushes, closes.
  boost::asio::awaitable<void> end_reading();
  /// end_reading()'s first step (pipelined posts done): signs out, stops reading, starts
  /// the last flush. Idempotent.
  void stop_and_flush();
  /// start()'s reader: co-spawns read_burst(), then end_reading() unless it parked.
  void read_on();
  /// read_loop(), then whether it parked (taken here, before any other handler can run: the
  /// wait park() armed may complete as soon as the event loop runs).
  boost::asio::awaitable<bool> read_burst();
  /// Ends the connection after the reader: at once when nothing is left to wait for (no
  /// pipelined post, everything written, no linger: a client that hung up), else co-spawns
  /// end_reading(); the ticket is released when it ends.
  void end_spawned();
  void arm_watchdog();
  void on_watchdog();
  /// Writes the queue: directly while the transport takes it, else asynchronously; once
  /// everything is sent and the session is closing, finishes the connection.
  void pump();
  void write_failed(boost::system::error_code ec);
  /// Nothing more will be written: forgets the queue, stops reading, wakes every waiter.
  void stop_writing();
  std::span<shared_frame const> pending() const {
    return {queue_.data() + queue_head_, queue_.size() - queue_head_};
  }
  /// Forgets the first `bytes` of the queue (written), frame by frame.
  void pop_written(std::size_t bytes);
  void clear_queue();
  boost::asio::steady_timer& make_timer(std::unique_ptr<boost::asio::steady_timer>& t);
  static void cancel(std::unique_ptr<boost::asio::steady_timer> const& t) {
    if (t) t->cancel();
  }

  /// Handles one frame; false ends the reading (quit, wrong password, ...).
  boost::asio::awaitable<bool> handle(boost::json::object const& frame);
  boost::asio::awaitable<bool> handle_sign_in(proto::request& req);
  /// Password sign-in: 429 while the account is throttled (no hashing), else the check off
  /// the I/O thread (and, when the stored hash has fewer than --kdf-iterations, its upgrade,
  /// committed as password_rehashed before the reply); 402 and false when wrong.
  boost::asio::awaitable<bool> verify_and_sign_in(account& a, std::string const& password,
                                                  boost::json::value const& tag);
  /// Resume-token sign-in: one SHA-256 on the I/O thread, never throttled; 402 and false when
  /// the token is wrong or expired (a failed sign-in for the throttle).
  boost::asio::awaitable<bool> token_sign_in(account& a, std::string const& token,
                                             boost::json::value const& tag);
  boost::asio::awaitable<void> register_and_sign_in(std::string const& name,
                                                    std::string const& password,
                                                    boost::json::value const& tag);
  /// `issue_token`: a password sign-in; a new resume token is committed (token_issued) and
  /// handed out in the reply's "token".
  boost::asio::awaitable<void> sign_in(account& a, proto::code status,
                                       boost::json::value const& tag, bool issue_token);
  /// `logout`: revokes this connection's token (or all of the account's); false once replied
  /// 200 (the connection then closes).
  boost::asio::awaitable<bool> logout(proto::logout_req const& req, boost::json::value const& tag);
  // journal
  /// Each change goes check -> event -> commit (durable) -> apply -> reply and pushes, the
  /// reply delivered in the commit's completion (log order, on the I/O thread). A session
  /// handles no other frame of its own meanwhile, so its replies stay in request order, with one
  /// exception: messages to its room are pipelined (up to max_posts_in_flight being stored at
  /// once; their completions, hence replies, come in log order), and any other frame waits for
  /// them first (drain_posts). Without it one sender's rate is bounded by the sync latency
  /// (--fsync always: one message per fdatasync).
  boost::asio::awaitable<void> create(proto::create_req const& req, boost::json::value const& tag);
  boost::asio::awaitable<void> join(proto::join_req const& req, boost::json::value const& tag);
  boost::asio::awaitable<void> post(proto::msg_req const& req, boost::json::value const& tag);
  boost::asio::awaitable<void> invite(proto::invite_req const& req, boost::json::value const& tag);
  /// `read`: check -> read_marked -> reply (with the marker) and the other connections' push.
  boost::asio::awaitable<void> mark_read(proto::read_req const& req, boost::json::value const& tag);
  /// `add_contact` / `del_contact`: check -> contact_added / contact_removed -> 200.
  boost::asio::awaitable<void> change_contact(proto::contact_req const& req,
                                              boost::json::value const& tag);
  /// After a sign-in: pushes the invitations kept while `a` was offline, once.
  boost::asio::awaitable<void> deliver_invitations(account& a);
  /// Edits, schedules, moderation (contract: "Edits, schedules, moderation, contacts"): a
  /// checked request's event is committed and `live(result, event)` (an outcome) answers it;
  /// a refusal is answered as it is. apply()'s refusal (the state changed meanwhile) is
  /// answered with its code.
  template <class Event, class Live>
  boost::asio::awaitable<void> change(std::variant<outcome, Event> checked,
                                      boost::json::value const& tag, Live live);
  /// Handles the requests of that section (and `msg` with `at`).
  boost::asio::awaitable<void> moderate(proto::request_body const& body,
                                        boost::json::value const& tag);
  /// Commits `e` through the hub and completes once `then(result)` has run (nullptr: the
  /// change could not be stored). `then` is a function object taking apply_result const*.
  template <class Then>
  boost::asio::awaitable<void> commit(store::event e, Then then);
  /// The 503 of a change the journal could not store.
  void storage_unavailable(boost::json::value const& tag);
  /// Commits a checked room message without waiting: the reply (or 503) comes in its
  /// completion; posts_in_flight_ counts it meanwhile.
  void post_pipelined(account& me, store::message_posted const& ev, boost::json::value const& tag);
  /// Waits until fewer than `below` pipelined room messages are being stored.
  boost::asio::awaitable<void> drain_posts(std::uint32_t below = 1);
  /// Room messages of this session being stored at most (each one's reply is pending).
  static constexpr std::uint32_t max_posts_in_flight = 64;
  /// The 503 (with "retry_after") of a password check or hash the hashing queue gave up on.
  void hashing_busy(boost::json::value const& tag);

  void send(std::string line);  ///< own reply or push: never drops the connection
  void reply(proto::code c, boost::json::value const& tag, std::string_view text = {},
             boost::json::object fields = {});
  void deliver(outcome&& o, boost::json::value const& tag);
  void enqueue(shared_frame frame);
  void written(std::size_t bytes);
  void stop_reading();
  void leave_active();
  /// Signs the account out in a handler of its own: called where the hub may be iterating over
  /// the connections of a room (a push that drops this one), which must not change under it.
  void sign_out_soon();

  std::uint64_t id_;
  std::string peer_name_;
  proto::framer framer_;

  // Outbox: frames queued but not yet handed to the writer, and the bytes of all queued and
  // in-flight frames (what --max-outbound bounds).
  std::vector<shared_frame> queue_;  ///< frames [queue_head_, end) wait; no memory while empty
  std::size_t queue_head_ = 0;
  std::size_t head_offset_ = 0;  ///< bytes of the first waiting frame already written
  std::size_t queued_bytes_ = 0;
  bool writing_ = false;       ///< an asynchronous write (or wait to write) is under way
  bool flush_queued_ = false;  ///< this session is in ctx_.dirty
  bool replied_ = false;       ///< an own reply is queued since the last flush
  std::uint32_t posts_in_flight_ = 0;  ///< pipelined room messages being stored
  // Made only when needed, on the heap (memory per idle connection: a timer is ~100 bytes,
  // an empty std::optional of one as large).
  /// The reader waits for the outbox to drain, or for a pipelined room message to complete
  /// (both wake it; it checks which).
  std::unique_ptr<boost::asio::steady_timer> drained_;
  std::unique_ptr<boost::asio::steady_timer>
      closed_signal_;     ///< cancelled once this side is shut down
  bool closing_ = false;  ///< no more reading; the writer flushes and ends
  bool closed_ = false;   ///< the writer has ended: nothing more is sent
  bool aborted_ = false;
  bool probed_ = false;
  bool active_ = true;
  bool goodbye_ = false;    ///< the peer said goodbye: no more pushes
  bool too_large_ = false;  ///< closing after a 413 for max-frame
  bool parking_ = false;    ///< started by start(): read_loop() may park()
  bool parked_ = false;     ///< read_loop() returned after park(): read_burst() takes it
  steady::time_point last_rx_;

  // Sign-in state.
  enum class auth { none, login, register_first, register_confirm };
  auth auth_ = auth::none;
  std::string pending_name_;
  std::optional<std::string> pending_status_;
  std::string first_password_;
  account* account_ = nullptr;
  /// This connection as one of the account's devices (its current room); set and cleared with
  /// account_.
  device* device_ = nullptr;
  /// Digest of the resume token this connection signed in with or was given (what `logout`
  /// revokes); empty when it has none.
  std::string token_digest_;
  net::throttle::ticket ticket_;  ///< start(): released when the connection has ended
};

/// A session over a plain TCP socket: newline-delimited frames, gathered writes.
class tcp_session final : public session {
 public:
  /// `initial`: bytes already read from the socket (by TLS detection), handled first.
  /// `peer_name`: describe() of the peer's address as accept() gave it (no getpeername);
  /// empty: asked from the socket.
  tcp_session(server_context& ctx, boost::asio::ip::tcp::socket socket, std::uint64_t id,
              std::string initial = {}, std::string peer_name = {});

 private:
  boost::asio::awaitable<void> read_loop() override;
  std::size_t write_now(std::span<shared_frame const> frames, std::size_t offset,
                        boost::system::error_code& ec) override;
  void write_async(std::span<shared_frame const> frames, std::size_t offset,
                   std::function<void(boost::system::error_code, std::size_t)> done) override;
  void cancel_read() override;
  bool park() override;
  void finish() override;
  boost::asio::awaitable<void> linger() override;
  bool must_linger() const override;
  void abort(bool reset) override;

  /// park()'s wait completed: reads what came, without a coroutine. Input is kept (held_) for
  /// the reader readable() starts; an end of file or error ends the connection right away
  /// (the usual wake of an idle connection: its client hung up, read_loop() is not started);
  /// nothing (a spurious wake) parks again.
  void on_readable(boost::system::error_code ec);
  /// A read that failed other than with would_block: end of file or a broken connection marks
  /// the peer closed (no linger), logged at debug unless it is eof or a cancel.
  void read_failed(boost::system::error_code ec);

  boost::asio::ip::tcp::socket socket_;
  std::string initial_;
  /// Bytes on_readable() read (held_size_ of them), for read_loop() first; null otherwise.
  std::unique_ptr<char[]> held_;
  std::uint32_t held_size_ = 0;
  /// The peer has closed its direction (a read gave end of file) or the connection failed:
  /// nothing is left to read, so finish() and linger() have nothing to do before the close.
  bool peer_closed_ = false;
};

/// Remote address of a socket as "host:port" ("?" when unknown; one getpeername call).
std::string describe(boost::asio::ip::tcp::socket const& s);
/// The same text for an address accept() gave (no system call).
std::string describe(boost::asio::ip::tcp::endpoint const& ep);

}  // namespace jim::server
