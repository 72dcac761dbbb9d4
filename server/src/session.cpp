#include "session.hpp"

#include "kdf.hpp"
#include "logging.hpp"
#include "net/listener.hpp"
#include "net/refuse.hpp"
#include "offload.hpp"
#include "ops/metrics.hpp"
#include "options.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <array>
#include <cstring>
#include <optional>
#include <utility>

namespace jim::server {

namespace asio = boost::asio;
namespace json = boost::json;
using asio::awaitable;
using proto::code;
using namespace asio::experimental::awaitable_operators;

namespace {
JIM_LOG_MODULE("session")
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr std::size_t max_spare_buffers = 64;
constexpr auto flush_deadline = std::chrono::seconds(5);
constexpr auto linger_deadline = std::chrono::seconds(2);

/// Logs the exception that ended connection `id`'s coroutine, if any; true if there was one.
bool failed(std::uint64_t id, std::exception_ptr e) {
  if (!e) return false;
  try {
    std::rethrow_exception(e);
  } catch (std::exception const& ex) {
    JIM_LOG(err, "connection {} ended by an exception: {}", id, ex.what());
  }
  return true;
}

}  // namespace

std::string describe(asio::ip::tcp::socket const& s) {
  boost::system::error_code ec;
  auto ep = s.remote_endpoint(ec);
  if (ec) return "?";
  return describe(ep);
}

std::string describe(asio::ip::tcp::endpoint const& ep) {
  return ep.address().to_string() + ":" + std::to_string(ep.port());
}

session::session(server_context& ctx, asio::any_io_executor ex, std::uint64_t id,
                 std::string peer_name)
    : ctx_(ctx),
      watchdog_(ex),
      id_(id),
      peer_name_(std::move(peer_name)),
      framer_(ctx.limits.max_frame),
      last_rx_(steady::now()) {
  ctx_.live.insert(this);
  ++ctx_.active;
  ops::stats.connection_opened(peer_name_);
}

session::~session() {
  if (flush_queued_) {
    std::replace(ctx_.dirty.begin(), ctx_.dirty.end(), this, static_cast<session*>(nullptr));
    std::replace(ctx_.flushing.begin(), ctx_.flushing.end(), this, static_cast<session*>(nullptr));
  }
  leave_active();
  ops::stats.connection_closed(peer_name_);
  ctx_.live.erase(this);
  if (ctx_.stopping && ctx_.live.empty() && ctx_.all_closed) ctx_.all_closed->cancel();
}

// Lifecycle: the reader is the only coroutine of a connection; the writer and the idle
// watchdog are callbacks (a parked coroutine frame costs memory on every idle connection).
// Started by start(), a TCP connection's reader does not even stay parked: see read_on().
awaitable<void> session::run() {
  auto self = shared_from_this();
  JIM_LOG(debug, "connection {} from {}", id_, peer_name_);
  arm_watchdog();
  co_await read_loop();
  co_await end_reading();
}

void session::start(net::throttle::ticket ticket) {
  ticket_ = std::move(ticket);
  parking_ = true;
  JIM_LOG(debug, "connection {} from {}", id_, peer_name_);
  arm_watchdog();
  read_on();
}

// An idle connection started here has no coroutine: the reader parks (a plain wait for input
// whose handler holds the session) and is co-spawned again when input comes. The reader of one
// burst and the next never overlap: the next is spawned by the parked wait's handler, which
// read_burst() armed as its last step.
void session::read_on() {
  asio::co_spawn(watchdog_.get_executor(), read_burst(),
                 [self = shared_from_this()](std::exception_ptr e, bool parked) {
                   if (failed(self->id_, e)) {
                     self->ticket_.release();
                     return;
                   }
                   if (!parked) self->end_spawned();
                 });
}

awaitable<bool> session::read_burst() {
  co_await read_loop();
  co_return std::exchange(parked_, false);
}

bool session::try_park() {
  if (!parking_ || !park()) return false;
  parked_ = true;
  return true;
}

void session::readable(boost::system::error_code ec) {
  if (ec || closing()) return end_spawned();  // cancel_read(), or the socket failed
  read_on();
}

void session::end_spawned() {
  if (!posts_in_flight_) {
    stop_and_flush();
    if (closed_ && (aborted_ || !must_linger())) {
      // The usual end of a reconnecting client: its end of file read, its replies written.
      abort(false);
      JIM_LOG(debug, "connection {} closed", id_);
      ticket_.release();
      return;
    }
  }
  asio::co_spawn(watchdog_.get_executor(), end_reading(),
                 [self = shared_from_this()](std::exception_ptr e) {
                   failed(self->id_, e);
                   self->ticket_.release();
                 });
}

awaitable<void> session::end_reading() {
  if (posts_in_flight_) co_await drain_posts();  // their replies and pushes need the account
  stop_and_flush();
  if (!closed_) {
    // Give the writer a bounded time to flush what is queued (the last reply, a notice).
    watchdog_.expires_after(flush_deadline);
    co_await watchdog_.async_wait(nothrow);
    if (!closed_) drop("did not read its last replies in time");
  }
  if (!aborted_ && must_linger()) co_await linger();
  abort(false);
  JIM_LOG(debug, "connection {} closed", id_);
}

void session::stop_and_flush() {
  device_ = nullptr;
  if (account_) ctx_.chat.sign_out(*this, *std::exchange(account_, nullptr));
  stop_reading();
  leave_active();  // a closing connection no longer counts toward --max-clients
  pump();          // flush what is queued, then end our direction
}

void session::leave_active() {
  if (std::exchange(active_, false)) --ctx_.active;
}

bool session::outbox_full() const { return queued_bytes_ > ctx_.cfg.max_outbound; }

awaitable<bool> session::ready_to_read() {
  while (queued_bytes_ > ctx_.cfg.max_outbound && !closing()) {
    // Our own replies filled the outbox: stop reading until the peer reads them.
    auto& drained = make_timer(drained_);
    drained.expires_at(steady::time_point::max());
    co_await drained.async_wait(nothrow);
  }
  co_return !closing();
}

void session::note_activity() {
  last_rx_ = steady::now();
  probed_ = false;
}

awaitable<bool> session::consume(std::string_view bytes) {
  ops::stats.bytes_received.add(bytes.size());
  framer_.feed(bytes);
  for (;;) {
    json::value v;
    std::string error;
    const auto st = framer_.next(v, error);
    if (st == proto::frame_status::need_more) co_return true;
    if (st != proto::frame_status::frame && posts_in_flight_) co_await drain_posts();  // in order
    if (st == proto::frame_status::too_large) {
      too_large_ = true;
      reply(code::too_large, nullptr,
            "frame exceeds " + std::to_string(ctx_.limits.max_frame) + " bytes; closing");
      JIM_LOG(info, "connection {}: frame over {} bytes, closed", id_, ctx_.limits.max_frame);
      co_return false;
    }
    if (st == proto::frame_status::malformed) {
      reply(code::bad_request, nullptr, error);
      continue;
    }
    if (!co_await handle(v.get_object()) || closing()) co_return false;
    // One chunk may hold many requests: respect the outbox bound between them too.
    if (queued_bytes_ > ctx_.cfg.max_outbound && !co_await ready_to_read()) co_return false;
  }
}

void session::arm_watchdog() {
  const auto idle = ctx_.cfg.idle_timeout;
  watchdog_.expires_at(last_rx_ + (probed_ ? idle : idle / 2));
  watchdog_.async_wait([self = shared_from_this()](boost::system::error_code ec) {
    if (!ec) self->on_watchdog();
  });
}

void session::on_watchdog() {
  if (closing()) return;
  const auto idle = ctx_.cfg.idle_timeout;
  const auto now = steady::now();
  // While reading is paused for our own backlog, the peer's requests wait unread: not idle.
  if (queued_bytes_ > ctx_.cfg.max_outbound) note_activity();
  if (now >= last_rx_ + idle) {
    JIM_LOG(info, "connection {} idle for {}s, closed", id_, idle.count());
    close_with(proto::share(proto::encode_notice("closing: idle for too long")));
    return;
  }
  if (queue_.empty()) queue_.shrink_to_fit();  // quiet for a while: no memory held
  if (!probed_ && now >= last_rx_ + idle / 2) {
    probed_ = true;
    enqueue(proto::share(proto::encode_probe()));
  }
  arm_watchdog();
}

void session::pump() {
  if (writing_ || aborted_) return;  // an asynchronous write is under way: it pumps again
  while (queue_head_ < queue_.size()) {
    boost::system::error_code ec;
    const std::size_t n = write_now(pending(), head_offset_, ec);
    if (n > 0) {
      pop_written(n);
      continue;
    }
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      writing_ = true;  // the peer is not reading fast enough: continue when it does
      write_async(pending(), head_offset_,
                  [self = shared_from_this()](boost::system::error_code wec, std::size_t bytes) {
                    self->writing_ = false;
                    if (wec && wec != asio::error::operation_aborted)
                      return self->write_failed(wec);
                    self->pop_written(bytes);
                    self->pump();
                  });
      return;
    }
    return write_failed(ec);
  }
  if (closing_ && !closed_) {
    // Everything is sent and nothing more will be read: end our direction.
    closed_ = true;
    finish();
    cancel(closed_signal_);
    watchdog_.cancel();  // run() may be waiting for the flush
  }
}

void session::pop_written(std::size_t bytes) {
  if (bytes == 0) return;
  written(bytes);
  bytes += head_offset_;
  while (queue_head_ < queue_.size() && bytes >= queue_[queue_head_]->size()) {
    bytes -= queue_[queue_head_]->size();
    queue_[queue_head_++].reset();
  }
  head_offset_ = bytes;
  if (queue_head_ == queue_.size()) clear_queue();
}

asio::steady_timer& session::make_timer(std::unique_ptr<asio::steady_timer>& t) {
  if (!t) t = std::make_unique<asio::steady_timer>(watchdog_.get_executor());
  return *t;
}

void session::clear_queue() {
  queue_.clear();
  // Keep room for a busy round's frames (regrowing it every round cost a third of the
  // user-space time at R=100); give a burst's memory back. Idle sessions free it all.
  if (queue_.capacity() > 256) queue_.shrink_to_fit();
  queue_head_ = 0;
  head_offset_ = 0;
}

void session::write_failed(boost::system::error_code ec) {
  if (ec != asio::error::operation_aborted)
    JIM_LOG(debug, "connection {}: write: {}", id_, ec.message());
  stop_writing();
}

void session::stop_writing() {
  closed_ = true;
  clear_queue();
  queued_bytes_ = 0;
  stop_reading();
  cancel(drained_);
  cancel(closed_signal_);
  watchdog_.cancel();  // run() may be waiting for the flush
}

void session::written(std::size_t bytes) {
  ops::stats.bytes_sent.add(bytes);
  queued_bytes_ -= std::min(bytes, queued_bytes_);
  if (queued_bytes_ <= ctx_.cfg.max_outbound) cancel(drained_);
}

server_context::read_buffer::read_buffer(server_context& ctx) : ctx_(ctx) {
  if (ctx_.spare_buffers.empty()) {
    data_ = std::make_unique_for_overwrite<char[]>(size);
  } else {
    data_ = std::move(ctx_.spare_buffers.back());
    ctx_.spare_buffers.pop_back();
  }
}

server_context::read_buffer::~read_buffer() {
  if (data_ && ctx_.spare_buffers.size() < max_spare_buffers)  // release() leaves it null
    ctx_.spare_buffers.push_back(std::move(data_));
}

bool server_context::refusing() const {
  return stopping || active + handshaking >= cfg.max_clients;
}

std::string server_context::refusal() const {
  if (stopping)
    return proto::encode_reply(proto::code::unavailable, nullptr, "server shutting down");
  return proto::encode_reply(proto::code::unavailable, nullptr, "server full (max-clients reached)",
                             {{"retry_after", static_cast<long>(net::busy_retry_after)}});
}

void server_context::flush() {
  flushing.swap(dirty);
  // Senders first (their acknowledgements): each can send its next message while the
  // round's fan-out is written, so the next round has more to batch (measured: +13 % at R=100).
  std::stable_partition(flushing.begin(), flushing.end(),
                        [](session* s) { return s && s->replied(); });
  for (session* s : flushing)
    if (s) s->flush();
  flushing.clear();
}

void run_rounds(asio::io_context& ioc, server_context& ctx, std::size_t max_handlers) {
  while (ioc.run_one() != 0) {
    for (std::size_t n = 1; n < max_handlers && ioc.poll_one() != 0; ++n) {
    }
    ctx.flush();
    ops::stats.round_done();
    // Nothing queues frames while a flush writes, but if something ever does, write it in a
    // next round at once rather than after the next event.
    if (!ctx.dirty.empty()) asio::post(ioc, [] {});
  }
}

void session::flush() {
  flush_queued_ = false;
  replied_ = false;
  pump();
}

void session::stop_reading() {
  if (std::exchange(closing_, true)) return;
  // Whatever ends a connection (quit, idle, a failed write, a slow consumer, shutdown), its
  // account is signed out now, not when the transport has finished closing.
  sign_out_soon();
  cancel_read();
  watchdog_.cancel();
  cancel(drained_);
}

void session::goodbye() {
  if (std::exchange(goodbye_, true)) return;
  sign_out_soon();
}

void session::sign_out_soon() {
  if (!account_) return;
  asio::post(watchdog_.get_executor(), [self = shared_from_this()] {
    self->device_ = nullptr;
    if (self->account_) self->ctx_.chat.sign_out(*self, *std::exchange(self->account_, nullptr));
  });
}

void session::drop(char const* why) {
  if (aborted_ || closed_) return;
  JIM_LOG(warn, "connection {} ({}) dropped: {}", id_, account_ ? account_->name : peer_name_, why);
  aborted_ = true;
  stop_writing();
  abort(true);  // pending operations end with operation_aborted
}

void session::enqueue(shared_frame frame) {
  if (closed_) return;
  queued_bytes_ += frame->size();
  queue_.push_back(std::move(frame));
  if (flush_queued_) return;
  flush_queued_ = true;
  ctx_.dirty.push_back(this);  // written at the end of this event-loop round
}

void session::send(std::string line) {
  replied_ = true;
  enqueue(proto::share(std::move(line)));
}

bool session::push(shared_frame const& frame) {
  if (closing() || goodbye_) return false;  // never acknowledge what will not be written
  if (queued_bytes_ + frame->size() > ctx_.cfg.max_outbound) {
    pump();  // a burst may just not have been written yet: only a peer that does not read is slow
    if (queued_bytes_ + frame->size() > ctx_.cfg.max_outbound) {
      ops::stats.slow_consumers.add();
      drop("outbound queue full (slow consumer)");
      return false;
    }
  }
  enqueue(frame);
  return true;
}

void session::replaced(shared_frame const& notice) {
  JIM_LOG(info, "connection {}: {} signed in elsewhere", id_, account_ ? account_->name : "?");
  account_ = nullptr;  // the hub has already signed this connection out
  device_ = nullptr;
  close_with(notice);
}

void session::close_with(shared_frame const& notice) {
  if (closed_) return;
  if (notice) enqueue(notice);
  pump();  // start writing before the read is cancelled (cancelling a WebSocket read tears it down)
  stop_reading();
}

awaitable<void> session::wait_closed(std::chrono::milliseconds bound) {
  if (closed_) co_return;
  asio::steady_timer limit(watchdog_.get_executor(), bound);
  auto& closed = make_timer(closed_signal_);
  closed.expires_at(steady::time_point::max());
  co_await (closed.async_wait(nothrow) || limit.async_wait(nothrow));
}

// --- TCP transport -------------------------------------------------------------------------

tcp_session::tcp_session(server_context& ctx, asio::ip::tcp::socket socket, std::uint64_t id,
                         std::string initial, std::string peer_name)
    : session(ctx, socket.get_executor(), id,
              peer_name.empty() ? describe(socket) : std::move(peer_name)),
      socket_(std::move(socket)),
      initial_(std::move(initial)) {
  boost::system::error_code ec;
  if (!ctx.nodelay_inherited) socket_.set_option(asio::ip::tcp::no_delay(true), ec);
  // write_now() and read_some() must never block the I/O thread (a socket from
  // net::accept_now() is non-blocking already: no ioctl).
  net::set_non_blocking(socket_, ec);
}

awaitable<void> tcp_session::read_loop() {
  if (!initial_.empty() && co_await ready_to_read()) {
    note_activity();
    const std::string first = std::exchange(initial_, {});
    if (!co_await consume(first)) co_return;
  }
  // A read shorter than the buffer emptied the socket's receive queue (nginx's rule,
  // ngx_unix_recv: n < size => ready = 0): the next read would only fail with EAGAIN, so the
  // reader waits at once. The wait re-arms the descriptor (Asio's async_wait: EPOLL_CTL_MOD,
  // which reports input already there), so bytes that came meanwhile are not missed, even if
  // handling the read suspended.
  bool drained = false;
  while (outbox_full() ? co_await ready_to_read() : !closing()) {
    // Read first, wait only when there is nothing: readiness is edge-triggered, so a wait
    // started after the bytes arrived would complete only thanks to the re-arm.
    std::size_t n = 0;
    boost::system::error_code ec = asio::error::would_block;
    if (!std::exchange(drained, false)) {
      // The first read may be what on_readable() read already (held_).
      const bool held = held_ != nullptr;
      server_context::read_buffer buf = held ? server_context::read_buffer(ctx_, std::move(held_))
                                             : server_context::read_buffer(ctx_);
      if (held) {
        n = std::exchange(held_size_, 0);
        ec = {};
      } else {
        n = socket_.read_some(asio::buffer(buf.data(), buf.size), ec);  // non-blocking
      }
      if (!ec) {
        note_activity();
        drained = n < buf.size;
        if (!co_await consume({buf.data(), n})) co_return;
        continue;
      }
    }
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      if (try_park()) co_return;  // idle without a coroutine frame: readable() goes on
      auto [wec] = co_await socket_.async_wait(asio::ip::tcp::socket::wait_read, nothrow);
      if (wec) co_return;
      continue;
    }
    read_failed(ec);
    co_return;
  }
}

void tcp_session::read_failed(boost::system::error_code ec) {
  if (ec != asio::error::operation_aborted) peer_closed_ = true;  // end of file, or broken
  if (ec != asio::error::eof && ec != asio::error::operation_aborted)
    JIM_LOG(debug, "read: {}", ec.message());
}

namespace {
/// The frames of one write are copied into one buffer: with one iovec segment per ~140-byte
/// frame, the kernel's copy (`_copy_from_iter`) took a quarter of jimd's CPU at R=100.
constexpr std::size_t coalesce_limit = 64 * 1024;
thread_local std::unique_ptr<char[]> coalesced;
}  // namespace

std::size_t tcp_session::write_now(std::span<shared_frame const> frames, std::size_t offset,
                                   boost::system::error_code& ec) {
  // What is queued goes out in one write of up to 64 KiB (a larger frame alone): one syscall
  // per recipient per flush.
  std::size_t total = frames[0]->size() - offset;
  std::size_t n = 1;
  while (n < frames.size() && total + frames[n]->size() <= coalesce_limit)
    total += frames[n++]->size();
  if (n == 1) return socket_.write_some(asio::buffer(*frames[0]) + offset, ec);  // non-blocking
  if (!coalesced) coalesced = std::make_unique_for_overwrite<char[]>(coalesce_limit);
  char* out = coalesced.get();
  std::memcpy(out, frames[0]->data() + offset, frames[0]->size() - offset);
  out += frames[0]->size() - offset;
  for (std::size_t i = 1; i < n; ++i) {
    std::memcpy(out, frames[i]->data(), frames[i]->size());
    out += frames[i]->size();
  }
  return socket_.write_some(asio::buffer(coalesced.get(), total), ec);
}

void tcp_session::cancel_read() {
  // Cancels a pending wait to write too: the writer treats that as "try again".
  boost::system::error_code ignored;
  socket_.cancel(ignored);
}

bool tcp_session::park() {
  // Armed before read_loop() returns. Readiness is edge-triggered, and an edge that came while
  // no read was pending (after the last read, while its frames were handled) was dropped by
  // Asio; async_wait re-arms the descriptor (EPOLL_CTL_MOD), which reports input already there.
  socket_.async_wait(asio::ip::tcp::socket::wait_read,
                     [this, self = shared_from_this()](boost::system::error_code ec) {
                       on_readable(ec);
                     });
  return true;
}

void tcp_session::on_readable(boost::system::error_code ec) {
  if (!ec && !closing()) {
    server_context::read_buffer buf(ctx_);
    const std::size_t n = socket_.read_some(asio::buffer(buf.data(), buf.size), ec);
    if (!ec) {
      held_ = buf.release();
      held_size_ = static_cast<std::uint32_t>(n);
    } else if (ec == asio::error::would_block || ec == asio::error::try_again) {
      park();  // nothing after all: wait again (re-armed)
      return;
    } else {
      read_failed(ec);
    }
  }
  readable(ec);
}

void tcp_session::write_async(std::span<shared_frame const>, std::size_t,
                              std::function<void(boost::system::error_code, std::size_t)> done) {
  socket_.async_wait(asio::ip::tcp::socket::wait_write,
                     [done = std::move(done)](boost::system::error_code ec) { done(ec, 0); });
}

void tcp_session::finish() {
  // The close that follows (run(): linger, then abort) sends our FIN after what is queued in
  // the kernel; a shutdown first only matters while the peer may still send (linger).
  if (peer_closed_) return;
  boost::system::error_code ignored;
  socket_.shutdown(asio::ip::tcp::socket::shutdown_send, ignored);
}

awaitable<void> tcp_session::linger() {
  // The peer may still be sending (the rest of an oversized frame, requests after quit):
  // closing with unread input would reset the connection and could destroy our last reply
  // in flight. Read and discard until the peer closes, for a bounded time. A peer that has
  // closed already (the usual end: the client hangs up) has nothing left to send.
  if (!must_linger()) co_return;
  watchdog_.expires_after(linger_deadline);
  auto discard = [this]() -> awaitable<void> {
    std::array<char, 1024> sink;
    for (;;) {
      auto [ec, n] = co_await socket_.async_read_some(asio::buffer(sink), nothrow);
      if (ec) co_return;
    }
  };
  co_await (discard() || watchdog_.async_wait(nothrow));
}

bool tcp_session::must_linger() const { return socket_.is_open() && !peer_closed_; }

void tcp_session::abort(bool reset) {
  boost::system::error_code ignored;
  // A reset frees the kernel's copy of what the peer never read at once.
  if (reset) socket_.set_option(asio::socket_base::linger(true, 0), ignored);
  socket_.close(ignored);
}

void session::reply(code c, json::value const& tag, std::string_view text, json::object fields) {
  ops::stats.count_reply(proto::to_int(c));
  send(proto::encode_reply(c, tag, text, std::move(fields)));
}

void session::deliver(outcome&& o, json::value const& tag) {
  reply(o.status, tag, o.text, std::move(o.fields));
  for (auto& f : o.then) enqueue(std::move(f));
}

awaitable<bool> session::handle(json::object const& frame) {
  auto decoded = proto::decode(frame, ctx_.limits);
  if (posts_in_flight_) {  // only another message may overtake the pipelined ones' replies
    auto const* r = std::get_if<proto::request>(&decoded);
    if (!r || !std::holds_alternative<proto::msg_req>(r->body)) co_await drain_posts();
  }
  if (auto* err = std::get_if<proto::decode_error>(&decoded)) {
    reply(err->status, err->tag, err->message);
    co_return true;
  }
  auto& req = std::get<proto::request>(decoded);
  auto const& tag = req.tag;
  if (std::holds_alternative<proto::quit_req>(req.body)) {
    reply(code::ok, tag, "bye");
    co_return false;
  }
  if (!account_) co_return co_await handle_sign_in(req);
  if (auto* l = std::get_if<proto::logout_req>(&req.body)) co_return co_await logout(*l, tag);

  account& me = *account_;
  if (auto* p = std::get_if<proto::presence_req>(&req.body)) {
    if (p->status) {
      auto changed = ctx_.chat.set_status(*this, me, *p->status);
      if (changed.status != code::ok) {
        deliver(std::move(changed), tag);
        co_return true;
      }
    }
    reply(code::ok, tag, {}, json::object{{"account_name", me.name}, {"room", device_->current->name}});
  } else if (std::holds_alternative<proto::authenticate_req>(req.body) ||
             std::holds_alternative<proto::register_req>(req.body)) {
    reply(code::bad_request, tag, "already signed in as " + me.name);
  } else if (auto* m = std::get_if<proto::msg_req>(&req.body); m && !m->at) {
    co_await post(*m, tag);
  } else if (auto* c = std::get_if<proto::create_req>(&req.body)) {
    co_await create(*c, tag);
  } else if (auto* j = std::get_if<proto::join_req>(&req.body)) {
    co_await join(*j, tag);
  } else if (std::holds_alternative<proto::exit_req>(req.body)) {
    deliver(ctx_.chat.leave(*device_), tag);
  } else if (auto* i = std::get_if<proto::invite_req>(&req.body)) {
    co_await invite(*i, tag);
  } else if (auto* h = std::get_if<proto::history_req>(&req.body)) {
    deliver(ctx_.chat.history(*device_, *h), tag);
  } else if (auto* u = std::get_if<proto::users_req>(&req.body)) {
    deliver(ctx_.chat.users(*device_, *u), tag);
  } else if (std::holds_alternative<proto::rooms_req>(req.body)) {
    deliver(ctx_.chat.rooms(me), tag);
  } else if (auto* w = std::get_if<proto::watch_req>(&req.body)) {
    deliver(ctx_.chat.watch(*this, me, *w), tag);
  } else if (auto* rd = std::get_if<proto::read_req>(&req.body)) {
    co_await mark_read(*rd, tag);
  } else if (std::holds_alternative<proto::conversations_req>(req.body)) {
    deliver(ctx_.chat.conversations(me), tag);
  } else if (std::holds_alternative<proto::get_contacts_req>(req.body)) {
    deliver(ctx_.chat.contacts(me), tag);
  } else if (auto* ct = std::get_if<proto::contact_req>(&req.body)) {
    co_await change_contact(*ct, tag);
  } else {
    co_await moderate(req.body, tag);
  }
  co_return true;
}

template <class Event, class Live>
awaitable<void> session::change(std::variant<outcome, Event> checked, json::value const& tag,
                                Live live) {
  if (auto* refused = std::get_if<outcome>(&checked)) {
    deliver(std::move(*refused), tag);
    co_return;
  }
  const Event ev = std::get<Event>(std::move(checked));
  auto applied = [&](apply_result const* r) {
    if (!r) return storage_unavailable(tag);
    if (!r->ok()) return reply(r->status, tag, r->error);
    deliver(live(*r, ev), tag);
  };
  store::event e = ev;
  co_await commit(std::move(e), std::move(applied));
}

awaitable<void> session::moderate(proto::request_body const& body, json::value const& tag) {
  auto& chat = ctx_.chat;
  account& me = *account_;
  if (auto* m = std::get_if<proto::msg_req>(&body)) {  // with "at": scheduled
    co_await drain_posts();  // replies in request order (handle() let it overtake them)
    co_await change(chat.check_schedule(*device_, *m, proto::unix_now()), tag,
                    [](apply_result const& r, store::message_scheduled const& ev) {
                      JIM_LOG(info, "{} scheduled message {} to {} at {}", ev.account,
                              r.scheduled, ev.to, ev.at);
                      return outcome{code::accepted,
                                     {},
                                     json::object{{"scheduled", r.scheduled}, {"at", ev.at},
                                                  {"to", ev.to}},
                                     {}};
                    });
  } else if (std::holds_alternative<proto::scheduled_req>(body)) {
    deliver(chat.scheduled_list(me), tag);
  } else if (auto* c = std::get_if<proto::cancel_req>(&body)) {
    co_await change(chat.check_cancel(me, *c), tag,
                    [](apply_result const& r, store::schedule_cancelled const& ev) {
                      JIM_LOG(info, "{} cancelled scheduled message {}", ev.account, ev.scheduled);
                      return outcome{code::ok, {}, json::object{{"scheduled", r.scheduled}}, {}};
                    });
  } else if (auto* e = std::get_if<proto::edit_req>(&body)) {
    co_await change(chat.check_edit(me, *e), tag,
                    [this](apply_result const& r, store::message_edited const&) {
                      return ctx_.chat.changed(this, account_, r, false);
                    });
  } else if (auto* d = std::get_if<proto::delete_req>(&body)) {
    co_await change(chat.check_delete(me, *d), tag,
                    [this](apply_result const& r, store::message_deleted const& ev) {
                      if (ev.admin) JIM_LOG(warn, "admin {} deleted message {}", ev.by, ev.id);
                      return ctx_.chat.changed(this, account_, r, true);
                    });
  } else if (auto* rp = std::get_if<proto::report_req>(&body)) {
    co_await change(chat.check_report(me, *rp), tag,
                    [](apply_result const& r, store::user_reported const& ev) {
                      JIM_LOG(info, "{} reported {}: {}", ev.by, ev.account, ev.reason);
                      if (r.muted_until)
                        JIM_LOG(warn, "{} muted until {} ({} reports within {} s)", ev.account,
                                r.muted_until, ev.threshold, ev.window);
                      return outcome{code::ok, {}, json::object{{"user", ev.account}}, {}};
                    });
  } else if (auto* mod = std::get_if<proto::moderate_req>(&body)) {
    if (mod->room)
      co_await change(chat.check_room_moderation(me, *mod), tag,
                      [this](apply_result const&, store::room_moderated const& ev) {
                        return ctx_.chat.room_moderated(ev);
                      });
    else
      co_await change(chat.check_account_ban(me, *mod), tag,
                      [this](apply_result const&, store::account_banned const& ev) {
                        return ctx_.chat.account_banned(ev);
                      });
  }
}

awaitable<bool> session::handle_sign_in(proto::request& req) {
  auto const& tag = req.tag;
  auto& chat = ctx_.chat;
  if (auto* p = std::get_if<proto::presence_req>(&req.body)) {
    if (!p->account_name) {
      reply(code::bad_request, tag, "presence before sign-in needs \"user.account_name\"");
      co_return true;
    }
    pending_name_ = *p->account_name;
    pending_status_ = p->status;
    first_password_.clear();
    const bool exists = chat.find_account(pending_name_) != nullptr;
    auth_ = exists ? auth::login : auth::register_first;
    reply(code::prompt, tag, exists ? "password" : "new account: choose a password",
          {{"auth", exists ? "login" : "register"}});
    co_return true;
  }
  if (auto* a = std::get_if<proto::authenticate_req>(&req.body)) {
    if (auth_ == auth::none) {  // one-shot sign-in
      if (!a->account_name) {
        reply(code::bad_request, tag,
              "missing field \"user.account_name\" (or send presence first)");
        co_return true;
      }
      account* acc = chat.find_account(*a->account_name);
      if (!acc) {
        reply(code::not_found, tag, "no such account " + *a->account_name + " (register it)");
        co_return true;
      }
      if (a->token) co_return co_await token_sign_in(*acc, *a->token, tag);
      co_return co_await verify_and_sign_in(*acc, a->password, tag);
    }
    if (a->account_name && proto::fold(*a->account_name) != proto::fold(pending_name_)) {
      auth_ = auth::none;
      first_password_.clear();
      reply(code::bad_request, tag,
            "account_name does not match presence; start again with presence");
      co_return true;
    }
    if (a->token) {  // after presence: a token signs in to the account named there
      account* acc = chat.find_account(pending_name_);
      if (!acc) {
        auth_ = auth::none;
        first_password_.clear();
        reply(code::not_found, tag, "no such account " + pending_name_ + " (register it)");
        co_return true;
      }
      co_return co_await token_sign_in(*acc, *a->token, tag);
    }
    switch (auth_) {
      case auth::login: {
        account* acc = chat.find_account(pending_name_);
        if (!acc) break;  // cannot happen: accounts are never deleted
        co_return co_await verify_and_sign_in(*acc, a->password, tag);
      }
      case auth::register_first:
        first_password_ = a->password;
        auth_ = auth::register_confirm;
        reply(code::prompt, tag, "repeat the password", {{"auth", "confirm"}});
        co_return true;
      case auth::register_confirm:
        if (a->password != first_password_) {
          first_password_.clear();
          auth_ = auth::register_first;
          reply(code::bad_request, tag, "passwords differ; choose a password again",
                {{"auth", "register"}});
          co_return true;
        }
        co_await register_and_sign_in(pending_name_, a->password, tag);
        co_return true;
      case auth::none:
        break;
    }
    reply(code::internal_error, tag, "sign-in state lost; start again with presence");
    auth_ = auth::none;
    co_return true;
  }
  if (auto* r = std::get_if<proto::register_req>(&req.body)) {
    co_await register_and_sign_in(r->account_name, r->password, tag);
    co_return true;
  }
  reply(code::unauthorized, tag, "sign in first (presence, then authenticate; or register)");
  co_return true;
}

awaitable<bool> session::verify_and_sign_in(account& a, std::string const& password,
                                            json::value const& tag) {
  auto& chat = ctx_.chat;
  if (auto wait = chat.sign_in_throttled(a, steady::now())) {
    // No hashing at all: a guessing bot costs one reply per try.
    JIM_LOG(info, "connection {}: password sign-in to {} throttled (too many failed sign-ins)",
            id_, a.name);
    reply(code::rate_limited, tag,
          "too many failed sign-ins to " + a.name + "; try again later or sign in with a token",
          {{"retry_after", *wait}});
    co_return true;
  }
  // The hashing counter tests read (--log-level debug): one line per PBKDF2 check.
  JIM_LOG(debug, "connection {}: checking the password of {} (PBKDF2)", id_, a.name);
  std::string stored = a.password_hash;
  const unsigned iterations = ctx_.cfg.kdf_iterations;
  // The upgrade of a weaker stored hash is made in the same trip to the hashing pool, so that
  // it is durable before the reply (OWASP: re-hash at the next sign-in).
  auto check = [password, stored, iterations] {
    std::pair<bool, std::string> out{verify_password(password, stored), {}};
    if (out.first && needs_rehash(stored, iterations))
      out.second = hash_password(password, iterations);
    return out;
  };
  struct check_guard {  // the check ends however the coroutine goes on
    hub& h;
    account& acc;
    ~check_guard() { h.password_check_ended(acc); }
  };
  chat.password_check_started(a);
  std::optional<std::pair<bool, std::string>> result;
  {
    check_guard guard{chat, a};
    result = co_await ctx_.hashing->run(std::move(check));
  }
  if (!result) {  // not a failed sign-in: the password was not checked
    hashing_busy(tag);
    co_return true;
  }
  auto& [ok, rehashed] = *result;
  if (!ok) {
    chat.sign_in_failed(a, steady::now());
    ops::stats.sign_ins_failed.add();
    JIM_LOG(info, "connection {}: wrong password for {}", id_, a.name);
    reply(code::wrong_password, tag, "wrong password; closing");
    co_return false;
  }
  if (!rehashed.empty()) {
    auto upgraded = [this, &a](apply_result const* r) {
      if (r && r->ok())
        JIM_LOG(info, "connection {}: password hash of {} upgraded to {} iterations", id_, a.name,
                ctx_.cfg.kdf_iterations);
      else  // the sign-in goes on with the old hash; the next one tries again
        JIM_LOG(warn, "connection {}: password hash of {} not upgraded: {}", id_, a.name,
                r ? r->error : std::string("storage unavailable"));
    };
    store::event ev = store::password_rehashed{a.name, std::move(stored), std::move(rehashed)};
    co_await commit(std::move(ev), std::move(upgraded));
  }
  co_await sign_in(a, code::ok, tag, true);
  co_return true;
}

awaitable<bool> session::token_sign_in(account& a, std::string const& token,
                                       json::value const& tag) {
  auto& chat = ctx_.chat;
  std::string digest = token_digest(token);
  if (!chat.find_token(a, digest, proto::unix_now())) {
    chat.sign_in_failed(a, steady::now());
    ops::stats.sign_ins_failed.add();
    JIM_LOG(info, "connection {}: wrong or expired token for {}", id_, a.name);
    reply(code::wrong_password, tag, "wrong or expired token; closing");
    co_return false;
  }
  token_digest_ = std::move(digest);
  co_await sign_in(a, code::ok, tag, false);
  co_return true;
}

awaitable<bool> session::logout(proto::logout_req const& req, json::value const& tag) {
  account& me = *account_;
  if (!req.all && token_digest_.empty()) {
    reply(code::ok, tag, "signed out (this connection had no token)");
    co_return false;
  }
  bool stored = false;
  auto revoked = [&stored](apply_result const* r) { stored = r != nullptr; };
  store::event ev = store::tokens_revoked{me.name, req.all ? std::string() : token_digest_, req.all};
  co_await commit(std::move(ev), std::move(revoked));
  if (!stored) {
    storage_unavailable(tag);
    co_return true;
  }
  token_digest_.clear();
  JIM_LOG(info, "connection {}: {} logged out ({})", id_, me.name,
          req.all ? "every token revoked" : "its token revoked");
  reply(code::ok, tag, req.all ? "signed out; every token revoked" : "signed out; token revoked");
  co_return false;
}

awaitable<void> session::register_and_sign_in(std::string const& name, std::string const& password,
                                              json::value const& tag) {
  auth_ = auth::none;
  first_password_.clear();
  if (ctx_.chat.find_account(name)) {
    reply(code::conflict, tag, "account name " + name + " is taken");
    co_return;
  }
  const unsigned iterations = ctx_.cfg.kdf_iterations;
  auto job = [password, iterations] { return hash_password(password, iterations); };
  std::optional<std::string> hashed = co_await ctx_.hashing->run(std::move(job));
  if (!hashed) {
    hashing_busy(tag);
    co_return;
  }
  std::string hash = std::move(*hashed);
  // Validated again when applied: a name registered meanwhile (an earlier event) is 409.
  account* a = nullptr;
  bool stored = true;
  auto registered = [&](apply_result const* r) {
    if (!r) {
      stored = false;
    } else if (r->ok()) {
      a = r->acc;
      JIM_LOG(info, "account {} registered", a->name);
    }
  };
  store::event ev = store::account_registered{name, std::move(hash)};
  co_await commit(std::move(ev), std::move(registered));
  if (!stored) {
    storage_unavailable(tag);
    co_return;
  }
  if (!a) {
    reply(code::conflict, tag, "account name " + name + " is taken");
    co_return;
  }
  co_await sign_in(*a, code::created, tag, true);
}

awaitable<void> session::sign_in(account& a, code status, json::value const& tag,
                                 bool issue_token) {
  auth_ = auth::none;
  pending_name_.clear();
  if (a.banned) {
    JIM_LOG(info, "connection {}: sign-in to banned account {} refused", id_, a.name);
    reply(code::forbidden, tag, "this account is banned: " + *a.banned);
    co_return;
  }
  if (!a.online()) a.status = "online";  // per account: kept while another device is live
  while (ctx_.chat.at_session_limit(a)) {
    // Takeover of the oldest device (--max-sessions): it gets its notice and is closed before
    // we answer.
    auto old = static_cast<session*>(ctx_.chat.take_over(a))->shared_from_this();
    co_await old->wait_closed(std::chrono::seconds(2));
    old->drop("replaced by a new sign-in and not closed in time");  // no-op once closed
    if (closing()) co_return;
  }
  if (closing() || goodbye_) co_return;  // ended while the password was checked: stay out
  std::string token;
  if (issue_token) {
    // 256 bits from the CSPRNG (RAND_bytes), base64url; only its digest is stored and logged
    // nowhere. If it cannot be stored the sign-in goes on without a token.
    token = random_token(32);
    const auto now = proto::unix_now();
    std::string digest = token_digest(token);
    bool stored = false;
    auto issued = [&stored](apply_result const* r) { stored = r && r->ok(); };
    store::event ev = store::token_issued{a.name, digest, now, now + ctx_.cfg.token_ttl.count()};
    co_await commit(std::move(ev), std::move(issued));
    if (stored) {
      token_digest_ = std::move(digest);
    } else {
      JIM_LOG(warn, "connection {}: no resume token for {} (it could not be stored)", id_, a.name);
      token.clear();
    }
    if (closing() || goodbye_) co_return;
  }
  if (pending_status_) a.status = *std::exchange(pending_status_, std::nullopt);
  auto attach = [this, &a, status, &tag, &token](std::vector<proto::chat_message> const& delivered) {
    auto res = ctx_.chat.attach(*this, a, status, delivered);
    account_ = &a;
    device_ = res.dev;
    if (!token.empty()) res.reply.fields.emplace("token", token);
    ops::stats.sign_ins.add();
    deliver(std::move(res.reply), tag);
  };
  if (a.queued.empty()) {
    attach({});
    co_await deliver_invitations(a);
    co_return;
  }
  // Queued private messages leave the queue by an event; they follow the reply. If that
  // cannot be stored the sign-in still works and they stay queued.
  auto handed = [&](apply_result const* r) {
    if (closing() || goodbye_) return;
    attach(r ? r->delivered : std::vector<proto::chat_message>{});
  };
  store::event ev = store::queue_delivered{a.name, a.queued.back().id};
  co_await commit(std::move(ev), std::move(handed));
  co_await deliver_invitations(a);
}

awaitable<void> session::deliver_invitations(account& a) {
  // After the sign-in reply, its history and queued messages: each invitation made while the
  // account was offline, once (taken off by an event; if that cannot be stored they stay).
  if (account_ == &a && !a.notices.empty())  // dropped scheduled messages, told once
    for (auto& f : ctx_.chat.take_notices(a)) enqueue(std::move(f));
  if (account_ != &a || a.invitations.empty()) co_return;
  const auto pending = a.invitations;
  auto handed = [&](apply_result const* r) {
    if (!r || !r->ok() || account_ != &a || closing() || goodbye_) return;
    for (auto const& i : pending) enqueue(proto::share(proto::encode_invite(i.from, i.room)));
  };
  store::event ev = store::invitations_delivered{a.name, pending.size()};
  co_await commit(std::move(ev), std::move(handed));
}

awaitable<void> session::mark_read(proto::read_req const& req, json::value const& tag) {
  auto& chat = ctx_.chat;
  auto checked = chat.check_read(*account_, req);
  if (auto* refused = std::get_if<outcome>(&checked)) {
    deliver(std::move(*refused), tag);
    co_return;
  }
  const auto ev = std::get<store::read_marked>(std::move(checked));
  const std::uint64_t before = chat.last_read(*account_, ev);
  auto applied = [&](apply_result const* r) {
    if (!r) return storage_unavailable(tag);
    if (!r->ok()) return reply(r->status, tag, r->error);
    if (!account_) return reply(code::unauthorized, tag, "signed out");
    deliver(chat.marked(this, *account_, ev, before), tag);
  };
  store::event marked = ev;
  co_await commit(std::move(marked), std::move(applied));
}

awaitable<void> session::change_contact(proto::contact_req const& req, json::value const& tag) {
  auto& chat = ctx_.chat;
  auto checked = chat.check_contact(*account_, req);
  if (auto* answered = std::get_if<outcome>(&checked)) co_return deliver(std::move(*answered), tag);
  store::event ev = std::get<store::event>(std::move(checked));
  auto applied = [&](apply_result const* r) {
    if (!r) return storage_unavailable(tag);
    if (!r->ok()) return reply(r->status, tag, r->error);  // changed meanwhile (another device)
    deliver(chat.contact_changed(ev), tag);
  };
  store::event copy = ev;
  co_await commit(std::move(copy), std::move(applied));
}

template <class Then>
awaitable<void> session::commit(store::event e, Then then) {
  bool finished = false;
  asio::steady_timer done(watchdog_.get_executor(), steady::time_point::max());
  ctx_.chat.commit(std::move(e), [&finished, &done, &then](apply_result const* r) {
    then(r);
    finished = true;
    done.cancel();  // resumes this coroutine in a handler of its own
  });
  while (!finished) co_await done.async_wait(nothrow);
}

void session::hashing_busy(json::value const& tag) {
  const double wait = ctx_.hashing->retry_after();
  // At most one line per second (ctx_.hashing_refusal_log): a storm refuses hundreds at once,
  // and a line each flooded the log (its writer thread competed with chat for the CPU).
  if (const auto held = ctx_.hashing_refusal_log.admit(log_limiter::clock::now()))
    JIM_LOG(warn,
            "connection {}: password check not started within {} ms (hashing queue: {} "
            "waiting); answered 503, retry after {} s ({} more such refusals since the last "
            "such line)",
            id_,
            std::chrono::duration_cast<std::chrono::milliseconds>(ctx_.hashing->max_wait())
                .count(),
            ctx_.hashing->pending(), wait, *held);
  reply(code::unavailable, tag,
        "server busy: the password could not be checked in time; try again later",
        {{"retry_after", static_cast<std::int64_t>(wait)}});  // whole seconds, >= 1
}

void session::storage_unavailable(json::value const& tag) {
  reply(code::unavailable, tag,
        "storage unavailable (the server cannot store changes now; nothing was changed, try "
        "again later)");
}

awaitable<void> session::drain_posts(std::uint32_t below) {
  while (posts_in_flight_ >= below) {
    auto& done = make_timer(drained_);
    done.expires_at(steady::time_point::max());
    co_await done.async_wait(nothrow);
  }
}

void session::post_pipelined(account& me, store::message_posted const& ev,
                             json::value const& tag) {
  ++posts_in_flight_;
  store::event posted = ev;
  ctx_.chat.commit(std::move(posted),
                   [self = shared_from_this(), me = &me, tag](apply_result const* r) {
                     session& s = *self;
                     --s.posts_in_flight_;
                     cancel(s.drained_);
                     if (!r) {
                       s.ctx_.chat.abandon_post(*me);
                       s.storage_unavailable(tag);
                       return;
                     }
                     if (!r->message) return s.reply(r->status, tag, r->error);
                     std::optional<store::message_queued> unused;
                     // with the id apply() assigned (the proposer writes 0)
                     // the sending connection as it is now (nullptr once signed out)
                     s.deliver(s.ctx_.chat.posted(s.device_, *r->message, unused), tag);
                   });
}

// GCC 12 at -O2 sees Asio's frame allocator through an inlined ramp here and reports a false
// -Wmismatched-new-delete (as in http.cpp's serve_http).
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wmismatched-new-delete"
awaitable<void> session::post(proto::msg_req const& req, json::value const& tag) {
  auto& chat = ctx_.chat;
  // Bounded pipeline; nothing may suspend between check_post (the next id) and commit. On a
  // cluster node one at a time: a publish retried after a NATS failover can be stored after a
  // later one, which would reorder this connection's messages and replies (docs/CLUSTER.md).
  co_await drain_posts(chat.clustered() ? 1 : max_posts_in_flight);
  if (!account_) co_return;
  account& me = *account_;
  auto checked = chat.check_post(*device_, req, steady::now());
  if (auto* refused = std::get_if<outcome>(&checked)) {
    co_await drain_posts();  // after the replies of the messages before it
    deliver(std::move(*refused), tag);
    co_return;
  }
  const auto ev = std::get<store::message_posted>(std::move(checked));
  if (!ev.m.to.empty() && ev.m.to.front() == '#') {
    post_pipelined(me, ev, tag);  // a room message is never queued: read on meanwhile
    co_return;
  }
  std::optional<store::message_queued> queue;
  std::optional<outcome> held;
  auto applied = [&](apply_result const* r) {
    if (!r) {
      chat.abandon_post(me);
      storage_unavailable(tag);
      return;
    }
    if (!r->message) return reply(r->status, tag, r->error);
    outcome o = chat.posted(device_, *r->message, queue);  // with the id apply() assigned
    if (queue)
      held = std::move(o);  // replied once the message is queued too
    else
      deliver(std::move(o), tag);
  };
  store::event posted = ev;
  co_await commit(std::move(posted), std::move(applied));
  if (!queue) co_return;
  auto queued = [&](apply_result const* r) {
    if (!r) return storage_unavailable(tag);
    deliver(std::move(*held), tag);
  };
  store::event follow = *queue;
  co_await commit(std::move(follow), std::move(queued));
}
#pragma GCC diagnostic pop

awaitable<void> session::invite(proto::invite_req const& req, json::value const& tag) {
  auto& chat = ctx_.chat;
  account& me = *account_;
  auto checked = chat.check_invite(*device_, req);
  if (auto* refused = std::get_if<outcome>(&checked)) {
    deliver(std::move(*refused), tag);
    co_return;
  }
  const auto ev = std::get<store::member_added>(std::move(checked));
  std::optional<store::invitation_queued> queue;
  std::optional<outcome> held;
  auto applied = [&](apply_result const* r) {
    if (!r) return storage_unavailable(tag);
    if (!r->ok()) return reply(r->status, tag, r->error);
    outcome o = chat.invited(me, ev, queue);
    if (queue)
      held = std::move(o);  // replied once the invitation is kept for the next sign-in
    else
      deliver(std::move(o), tag);
  };
  store::event added = ev;
  co_await commit(std::move(added), std::move(applied));
  if (!queue) co_return;
  auto kept = [&](apply_result const* r) {
    if (!r) return storage_unavailable(tag);
    deliver(std::move(*held), tag);
  };
  store::event follow = *queue;
  co_await commit(std::move(follow), std::move(kept));
}

awaitable<void> session::create(proto::create_req const& req, json::value const& tag) {
  auto& chat = ctx_.chat;
  if (auto refused = chat.check_create(req.room)) {
    deliver(std::move(*refused), tag);
    co_return;
  }
  const unsigned iterations = ctx_.cfg.kdf_iterations;
  auto job = [iterations] {
    std::string pw = random_token(18);  // 144 bits, 24 URL-safe characters
    std::string h = hash_password(pw, iterations);
    return std::pair{std::move(pw), std::move(h)};
  };
  std::optional<std::pair<std::string, std::string>> made =
      co_await ctx_.hashing->run(std::move(job));
  if (!made) {
    hashing_busy(tag);
    co_return;
  }
  auto& [password, hash] = *made;
  if (!account_) {
    reply(code::unauthorized, tag, "signed out");
    co_return;
  }
  std::string name = "#";
  name += req.room;
  auto applied = [&](apply_result const* r) {
    if (!r) return storage_unavailable(tag);
    if (!r->ok()) return reply(r->status, tag, r->error);  // created meanwhile: 409
    deliver(chat.created(device_, *r->rm, password), tag);
  };
  store::event ev = store::room_created{std::move(name), account_->name, std::move(hash)};
  co_await commit(std::move(ev), std::move(applied));
}

awaitable<void> session::join(proto::join_req const& req, json::value const& tag) {
  auto& chat = ctx_.chat;
  room* r = chat.find_room(req.room);
  if (!r) co_return reply(code::not_found, tag, "no such room #" + req.room);
  if (r->banned.count(proto::fold(account_->name)))
    co_return reply(code::forbidden, tag, "you are banned from " + r->name);
  if (chat.is_member(*account_, *r)) co_return deliver(chat.enter_room(*device_, *r), tag);
  if (!req.password) co_return reply(code::forbidden, tag, r->name + " needs a password");
  std::string stored = r->password_hash;
  auto check = [pw = *req.password, stored] { return verify_password(pw, stored); };
  const std::optional<bool> checked = co_await ctx_.hashing->run(std::move(check));
  if (!checked) co_return hashing_busy(tag);
  if (!account_) co_return reply(code::unauthorized, tag, "signed out");
  if (!*checked) co_return reply(code::forbidden, tag, "wrong password for " + r->name);
  auto applied = [&](apply_result const* res) {
    if (!res) return storage_unavailable(tag);
    if (!res->ok()) return reply(res->status, tag, res->error);
    if (!device_) return reply(code::unauthorized, tag, "signed out");
    deliver(chat.enter_room(*device_, *res->rm), tag);
  };
  store::event ev = store::member_added{r->name, account_->name};
  co_await commit(std::move(ev), std::move(applied));
}

}  // namespace jim::server
