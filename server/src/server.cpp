#include "server.hpp"

#include "http.hpp"
#include "hub.hpp"
#include "logging.hpp"
#include "net/tls.hpp"
#include "net/tls_session.hpp"
#include "offload.hpp"
#include "session.hpp"
#include "snapshot.hpp"
#include "store/journal.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <chrono>
#include <cerrno>
#include <csignal>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <latch>
#include <list>
#include <memory>
#include <pthread.h>
#include <sched.h>
#include <sys/file.h>
#include <sys/resource.h>
#include <thread>
#include <unistd.h>

namespace jim::server {

namespace asio = boost::asio;
using asio::awaitable;
using tcp = asio::ip::tcp;

namespace {
JIM_LOG_MODULE("server")
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr auto shutdown_bound = std::chrono::seconds(10);
constexpr auto prune_period = std::chrono::seconds(30);

/// Password hashing runs below the I/O thread (SCHED_IDLE) and, by default, leaves one core
/// to it: a sign-in storm slows sign-ins, not chat. Measured on 2 cores (jim-bench storm):
/// two hashing threads sign in 62 users/s at the default cost but raise chat p99 4x; one
/// signs in 42/s with chat p99 1.5-3x.
std::size_t cpu_threads(int configured) {
  if (configured > 0) return static_cast<std::size_t>(configured);
  return std::max(2u, std::thread::hardware_concurrency()) - 1;
}

void lower_priority(asio::thread_pool& pool, std::size_t threads) {
  // Shared: a thread may still be inside arrive_and_wait() after wait() returned here.
  auto started = std::make_shared<std::latch>(static_cast<std::ptrdiff_t>(threads));
  for (std::size_t i = 0; i < threads; ++i)
    asio::post(pool, [started] {
      // SCHED_IDLE: hashing runs only on CPU time nothing else wants, so the I/O thread
      // (chat delivery) always wins it; fall back to a batch policy at a high nice value.
      sched_param param{};
      if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &param) != 0) {
        pthread_setschedparam(pthread_self(), SCHED_BATCH, &param);
        setpriority(PRIO_PROCESS, static_cast<id_t>(gettid()), 19);
      }
      started->arrive_and_wait();  // one task per thread: none returns before all have started
    });
  started->wait();
}

hub_limits hub_limits_of(config const& c) {
  return hub_limits{c.history_on_join, c.history_limit, c.message_ttl,
                    c.rate_limit,      c.rate_burst,    10000};
}

/// Logs an exception that ended a co-spawned coroutine instead of losing it.
auto log_exception(char const* what) {
  return [what](std::exception_ptr e) {
    if (!e) return;
    try {
      std::rethrow_exception(e);
    } catch (std::exception const& ex) {
      JIM_LOG(err, "{} ended by an exception: {}", what, ex.what());
    }
  };
}

/// Writes the port where readers never see a partial file: via rename for regular files,
/// directly for anything else (a FIFO or /dev/fd/N a test waits on).
void write_port_file(std::string const& path, unsigned short port) {
  namespace fs = std::filesystem;
  std::error_code ec;
  const bool special = fs::exists(path, ec) && !fs::is_regular_file(path, ec);
  const std::string target = special ? path : path + ".tmp";
  {
    std::ofstream out(target, std::ios::trunc);
    out << port << "\n";
    if (!out.flush()) throw std::runtime_error("cannot write port file " + path);
  }
  if (!special) fs::rename(target, path);
}
}  // namespace

struct server::impl {
  config cfg;
  asio::io_context ioc{1};
  std::size_t hashers;
  asio::thread_pool cpu_pool;
  /// The replica: a second hub that applies every stored event on the snapshot thread, so a
  /// snapshot is captured there and never stalls the I/O thread. Declared before the pool so
  /// that the pool (joined) goes first.
  std::unique_ptr<hub> replica;
  asio::thread_pool snapshot_pool{1};
  hub chat;
  server_context ctx;
  std::list<tcp::acceptor> acceptors;  ///< stable addresses: accept loops hold references
  asio::steady_timer all_closed{ioc};
  asio::steady_timer autosave_timer{ioc};
  asio::steady_timer prune_timer{ioc};
  asio::steady_timer count_timer{ioc};  ///< #general's coalesced online count (hub::flush_counts)
  std::filesystem::path snapshot_file;
  std::optional<store::journal> journal;
  asio::steady_timer sync_timer{ioc};
  int lock_fd = -1;  ///< flock'ed for the life of the process: one jimd per data dir
  std::unique_ptr<net::tls_manager> tls;  ///< --tls-cert: both listeners also speak TLS
  asio::signal_set reload_signals{ioc};   ///< SIGHUP: reload the TLS certificate and key
  /// SIGINT/SIGTERM, caught from construction on: a signal that arrives as soon as the port file
  /// exists (before the loop runs wait_for_signal) still shuts down cleanly and saves.
  asio::signal_set stop_signals{ioc, SIGINT, SIGTERM};
  std::uint64_t next_id = 0;
  int exit_code = 0;

  explicit impl(config c)
      : cfg(std::move(c)),
        hashers(cpu_threads(cfg.hash_threads)),
        cpu_pool(hashers),
        chat(hub_limits_of(cfg)),
        ctx(cfg, chat, cpu_pool, proto::limits{cfg.max_frame, cfg.max_message}, &all_closed),
        snapshot_file(snapshot::file_in(cfg.data_dir)) {
    lower_priority(cpu_pool, hashers);
  }

  void listen();
  tcp::acceptor* http_acceptor = nullptr;
  awaitable<void> accept_loop(tcp::acceptor& acceptor, bool web);
  awaitable<void> reject(tcp::socket socket);
  awaitable<void> wait_for_signal();
  awaitable<void> reload_loop();
  awaitable<void> autosave_loop();
  awaitable<void> prune_loop();
  awaitable<void> save(char const* why);
  awaitable<void> sync_loop();
  bool lock_data_dir();
  bool open_store();
};

server::server(config cfg) : impl_(std::make_unique<impl>(std::move(cfg))) {}
server::~server() = default;

/// Opens the listeners; throws std::runtime_error with a plain text naming the listener, its
/// address and port, the option to change and the reason.
void server::impl::listen() {
  auto open = [this](tcp::endpoint const& ep, bool dual_stack) {
    boost::system::error_code ec;
    tcp::acceptor a(ioc);
    a.open(ep.protocol(), ec);
    if (!ec) a.set_option(asio::socket_base::reuse_address(true), ec);
    if (!ec && dual_stack) a.set_option(asio::ip::v6_only(false), ec);
    if (!ec) a.bind(ep, ec);
    if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
    if (!ec) acceptors.push_back(std::move(a));
    return ec;
  };
  auto open_at = [&](char const* what, char const* option, char const* address_option,
                     std::string const& address, std::uint16_t port) {
    boost::system::error_code ec;
    if (address.empty()) {  // IPv6 and IPv4 on one socket, else IPv4 alone
      ec = open(tcp::endpoint(asio::ip::address_v6::any(), port), true);
      if (ec) ec = open(tcp::endpoint(asio::ip::address_v4::any(), port), false);
    } else {
      const auto ip = asio::ip::make_address(address, ec);  // checked by parse_options
      if (!ec) ec = open(tcp::endpoint(ip, port), false);
    }
    if (!ec) return;
    std::string reason;
    if (ec == boost::system::errc::address_not_available) option = address_option;
    if (ec == asio::error::address_in_use)
      reason = "the port is already in use (by another program or another jimd)";
    else if (ec == asio::error::access_denied)
      reason = "permission denied (ports below 1024 need privileges)";
    else if (ec == boost::system::errc::address_not_available)
      reason = "this machine has no such address";
    else
      reason = ec.message();
    throw std::runtime_error("cannot listen for " + std::string(what) + " on " +
                             (address.empty() ? "all addresses" : address) + " port " +
                             std::to_string(port) + " (" + option + "): " + reason);
  };
  open_at("chat clients", "--port", "--address", cfg.address, cfg.port);
  if (cfg.http_port != 0) {
    open_at("the web client", "--http-port",
            cfg.http_address.empty() ? "--address" : "--http-address",
            cfg.http_address.empty() ? cfg.address : cfg.http_address, cfg.http_port);
    http_acceptor = &acceptors.back();
  }
}

int server::run() {
  auto& s = *impl_;
  namespace fs = std::filesystem;
  std::error_code fec;
  fs::create_directories(s.cfg.data_dir, fec);
  if (fec) {
    JIM_LOG(critical, "cannot create data directory {}: {}", s.cfg.data_dir, fec.message());
    return 1;
  }
  if (!s.lock_data_dir() || !s.open_store()) return 1;
  try {
    if (!s.cfg.tls_cert.empty()) {
      s.tls = std::make_unique<net::tls_manager>(s.cfg.tls_cert, s.cfg.tls_key, s.cfg.tls_required);
      s.ctx.tls = s.tls.get();
      JIM_LOG(info, "TLS on both ports ({}): {}", s.cfg.tls_required ? "required" : "plaintext too",
              s.tls->describe());
    }
    s.listen();
  } catch (std::exception const& e) {
    JIM_LOG(critical, "{}", e.what());
    return 1;
  }
  const auto port = s.acceptors.front().local_endpoint().port();
  for (auto& a : s.acceptors) {
    const bool web = &a == s.http_acceptor;
    const auto ep = a.local_endpoint();
    const bool all = ep.address().is_unspecified();
    const auto where = all ? std::string("all addresses") : ep.address().to_string();
    // The web client as a link a terminal makes clickable (WebSocket clients use /chat on it).
    auto url_host = all                    ? std::string("localhost")
                    : ep.address().is_v6() ? "[" + where + "]"
                                           : where;
    if (web)
      JIM_LOG(info, "web client at {}://{}:{}/ (listening on {} port {}, WebSocket at /chat)",
              s.tls ? "https" : "http", url_host, ep.port(), where, ep.port());
    else
      JIM_LOG(info, "listening for chat clients on {} port {}", where, ep.port());
    asio::co_spawn(s.ioc, s.accept_loop(a, web),
                   log_exception(web ? "HTTP accept loop" : "accept loop"));
  }
  asio::co_spawn(s.ioc, s.wait_for_signal(), log_exception("signal handler"));
  asio::co_spawn(s.ioc, s.reload_loop(), log_exception("SIGHUP handler"));
  asio::co_spawn(s.ioc, s.autosave_loop(), log_exception("autosave"));
  asio::co_spawn(s.ioc, s.sync_loop(), log_exception("journal sync"));
  asio::co_spawn(s.ioc, s.prune_loop(), log_exception("pruning"));
  s.chat.set_count_timer([&s](steady::duration delay) {
    s.count_timer.expires_after(delay);
    s.count_timer.async_wait([&s](boost::system::error_code ec) {
      if (!ec) s.chat.flush_counts();
    });
  });
  if (!s.cfg.port_file.empty()) {
    try {
      write_port_file(s.cfg.port_file, port);
    } catch (std::exception const& e) {
      JIM_LOG(critical, "{}", e.what());
      return 1;
    }
  }
  JIM_LOG(info, "{} ready on port {} ({}, {})", version_string, port,
          count_of(s.chat.accounts().size(), "account"),
          count_of(s.chat.all_rooms().size(), "room"));
  run_rounds(s.ioc, s.ctx);
  s.cpu_pool.join();
  s.journal->stop();
  s.snapshot_pool.join();
  JIM_LOG(info, "stopped");
  spdlog::shutdown();
  return s.exit_code;
}

awaitable<void> server::impl::accept_loop(tcp::acceptor& acceptor, bool web) {
  for (;;) {
    auto [ec, socket] = co_await acceptor.async_accept(nothrow);
    if (ec) {
      if (ec == asio::error::operation_aborted || ctx.stopping) co_return;
      // EMFILE and friends: back off instead of spinning on the error.
      JIM_LOG(warn, "accept: {}", ec.message());
      asio::steady_timer backoff(ioc, std::chrono::milliseconds(100));
      co_await backoff.async_wait(nothrow);
      continue;
    }
    if (web) {  // max-clients is checked at the WebSocket upgrade
      asio::co_spawn(ioc, serve_http(ctx, std::move(socket), next_id),
                     log_exception("HTTP connection"));
    } else if (ctx.refusing()) {
      asio::co_spawn(ioc, reject(std::move(socket)), asio::detached);
    } else if (ctx.tls) {  // TLS or plaintext, by the first bytes
      asio::co_spawn(ioc, net::serve_jim(ctx, std::move(socket), next_id),
                     log_exception("connection"));
    } else {
      std::shared_ptr<session> s = std::make_shared<tcp_session>(ctx, std::move(socket), ++next_id);
      asio::co_spawn(ioc, s->run(), [s](std::exception_ptr e) { log_exception("session")(e); });
    }
  }
}

awaitable<void> server::impl::reject(tcp::socket socket) {
  const std::string line = ctx.refusal();
  JIM_LOG(warn, "connection refused: {}", ctx.stopping ? "shutting down" : "max-clients reached");
  co_await asio::async_write(socket, asio::buffer(line), nothrow);
  boost::system::error_code ec;
  socket.shutdown(tcp::socket::shutdown_send, ec);
  socket.close(ec);
}

awaitable<void> server::impl::wait_for_signal() {
  auto& signals = stop_signals;
  auto [ec, sig] = co_await signals.async_wait(nothrow);
  if (ec) co_return;
  JIM_LOG(info, "SIG{}: shutting down", sigabbrev_np(sig));
  ctx.stopping = true;
  reload_signals.cancel();
  for (auto& a : acceptors) {
    boost::system::error_code ignored;
    a.close(ignored);
  }
  // A second signal during shutdown changes nothing: keep listening so it is not fatal.
  signals.async_wait([](boost::system::error_code, int again) {
    if (again) JIM_LOG(warn, "SIG{} during shutdown: already shutting down", sigabbrev_np(again));
  });
  for (auto* idle : std::vector<tcp::socket*>(ctx.http_idle.begin(), ctx.http_idle.end())) {
    boost::system::error_code ignored;
    idle->close(ignored);
  }
  auto notice = proto::share(proto::encode_notice("server shutting down"));
  for (session* s : std::vector<session*>(ctx.live.begin(), ctx.live.end())) s->close_with(notice);
  if (!ctx.live.empty()) {
    all_closed.expires_after(shutdown_bound);
    co_await all_closed.async_wait(nothrow);
    if (!ctx.live.empty()) JIM_LOG(warn, "{} connections did not close in time", ctx.live.size());
  }
  autosave_timer.cancel();
  prune_timer.cancel();
  count_timer.cancel();
  sync_timer.cancel();
  co_await save("shutdown");
  signals.cancel();
  // The state is saved: whatever still runs (a connection that ignored every deadline, an
  // HTTP transfer to a peer that stopped reading) must not keep the process alive.
  ioc.stop();
}

awaitable<void> server::impl::reload_loop() {
  // Handled even without TLS: SIGHUP's default action would kill the daemon unsaved.
  boost::system::error_code ec;
  reload_signals.add(SIGHUP, ec);
  if (ec) {
    JIM_LOG(warn, "cannot handle SIGHUP: {}", ec.message());
    co_return;
  }
  for (;;) {
    auto [wec, sig] = co_await reload_signals.async_wait(nothrow);
    if (wec || ctx.stopping) co_return;
    if (!tls) {
      JIM_LOG(info, "SIGHUP: nothing to reload (no --tls-cert)");
      continue;
    }
    if (auto why = tls->reload())
      JIM_LOG(err, "SIGHUP: TLS certificate NOT reloaded, the previous one stays in use: {}", *why);
    else
      JIM_LOG(info, "SIGHUP: TLS certificate reloaded for new connections: {}", tls->describe());
  }
}

bool server::impl::lock_data_dir() {
  const auto path = std::filesystem::path(cfg.data_dir) / "jimd.lock";
  lock_fd = ::open(path.c_str(), O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (lock_fd < 0) {
    JIM_LOG(critical, "cannot open {}: {}", path.string(), std::strerror(errno));
    return false;
  }
  if (::flock(lock_fd, LOCK_EX | LOCK_NB) != 0) {
    const int err = errno;
    char buf[32] = {};
    const ssize_t n = ::pread(lock_fd, buf, sizeof buf - 1, 0);
    std::string holder = n > 0 ? std::string(buf, static_cast<std::size_t>(n)) : "";
    while (!holder.empty() && (holder.back() == '\n' || holder.back() == ' ')) holder.pop_back();
    if (err == EWOULDBLOCK)
      JIM_LOG(critical,
              "data directory {} is in use by another jimd (pid {}); two daemons on one data "
              "directory would overwrite each other's changes",
              cfg.data_dir, holder.empty() ? "unknown" : holder);
    else
      JIM_LOG(critical, "cannot lock {}: {}", path.string(), std::strerror(err));
    return false;
  }
  // Ours for the life of the process (the kernel releases it at exit, even on SIGKILL).
  const std::string pid = std::to_string(::getpid()) + "\n";
  if (::ftruncate(lock_fd, 0) != 0 ||
      ::pwrite(lock_fd, pid.data(), pid.size(), 0) != static_cast<ssize_t>(pid.size()))
    JIM_LOG(warn, "cannot write the pid into {}: {}", path.string(), std::strerror(errno));
  return true;
}

bool server::impl::open_store() {
  using clock = std::chrono::steady_clock;
  using ms = std::chrono::duration<double, std::milli>;
  const auto t0 = clock::now();
  const auto now = proto::unix_now();
  std::uint64_t covered = 0;
  if (auto err = snapshot::load(snapshot_file, chat, now, &covered)) {
    JIM_LOG(critical, "{}", *err);
    return false;
  }
  replica = std::make_unique<hub>(chat.limits());
  if (auto err = snapshot::load(snapshot_file, *replica, now)) {
    JIM_LOG(critical, "{}", *err);
    return false;
  }
  const auto t1 = clock::now();
  auto apply = [this](std::uint64_t, store::event const& e) -> std::optional<std::string> {
    auto r = chat.apply(e);
    if (r.status == proto::code::internal_error) return r.error;
    replica->apply(e);  // deterministic: the same result
    return std::nullopt;
  };
  auto report = store::replay(cfg.data_dir, covered, apply);
  if (report.error) {
    JIM_LOG(critical, "{}", *report.error);
    return false;
  }
  if (report.torn) JIM_LOG(warn, "{}", *report.torn);
  chat.recover_connections();
  replica->recover_connections();
  chat.prune(now);
  replica->prune(now);
  const auto t2 = clock::now();
  JIM_LOG(info, "loaded the snapshot (up to journal seq {}) in {:.1f} ms, replayed {} journal "
          "records in {:.1f} ms", covered, ms(t1 - t0).count(), report.applied,
          ms(t2 - t1).count());
  const auto mode = store::parse_fsync_mode(cfg.fsync).value_or(store::fsync_mode::always);
  auto to_replica = [this](std::vector<store::event>&& stored) {
    asio::post(snapshot_pool, [this, events = std::move(stored)] {
      for (auto const& e : events) replica->apply(e);
    });
  };
  try {
    journal.emplace(ioc, cfg.data_dir, mode, report, report.last_seq + 1, std::move(to_replica));
  } catch (std::exception const& e) {
    JIM_LOG(critical, "cannot open the journal in {}: {}", cfg.data_dir, e.what());
    return false;
  }
  chat.set_log(&*journal);
  return true;
}

awaitable<void> server::impl::save(char const* why) {
  using clock = std::chrono::steady_clock;
  using ms = std::chrono::duration<double, std::milli>;
  // The I/O thread only asks: the journal's disk thread starts a new segment, then the snapshot
  // thread captures the replica (which has applied exactly the records before it) and writes it.
  struct result {
    bool done = false;
    std::string error;
    std::uint64_t covered = 0;
    std::size_t bytes = 0, removed = 0;
    double capture_ms = 0, write_ms = 0;
  };
  auto res = std::make_shared<result>();
  auto signal = std::make_shared<asio::steady_timer>(ioc, clock::time_point::max());
  const auto t0 = clock::now();
  auto file = snapshot_file;
  auto dir = std::filesystem::path(cfg.data_dir);
  journal->rotate([this, res, signal, file, dir](std::optional<std::uint64_t> covered) {
    asio::post(snapshot_pool, [this, res, signal, file, dir, covered] {
      if (!covered) {
        res->error = "the journal could not start a new segment";
      } else {
        try {
          const auto c0 = clock::now();
          replica->prune(proto::unix_now());
          auto doc = snapshot::capture(*replica, *covered);
          const auto c1 = clock::now();
          res->bytes = snapshot::write(file, doc);
          res->covered = *covered;
          res->capture_ms = ms(c1 - c0).count();
          res->write_ms = ms(clock::now() - c1).count();
          // The snapshot is durable: the segments it covers go.
          res->removed = store::remove_segments_before(dir, *covered + 1);
        } catch (std::exception const& e) {
          res->error = e.what();
        }
      }
      asio::post(ioc, [res, signal] {
        res->done = true;
        signal->cancel();
      });
    });
  });
  const auto t1 = clock::now();
  while (!res->done) co_await signal->async_wait(nothrow);
  if (res->error.empty()) {
    JIM_LOG(info,
            "snapshot ({}) saved to {}: {} bytes up to journal seq {}, {} journal segments "
            "removed; I/O thread {:.3f} ms, capture {:.1f} ms, write {:.1f} ms (snapshot thread)",
            why, file.string(), res->bytes, res->covered, res->removed, ms(t1 - t0).count(),
            res->capture_ms, res->write_ms);
  } else {
    // Nothing is lost: the journal still holds every change since the last snapshot.
    JIM_LOG(err, "snapshot ({}) NOT saved to {}: {} (the journal keeps every change)", why,
            file.string(), res->error);
  }
}

awaitable<void> server::impl::sync_loop() {
  if (journal->mode() != store::fsync_mode::everysec) co_return;
  for (;;) {
    sync_timer.expires_after(std::chrono::seconds(1));
    auto [ec] = co_await sync_timer.async_wait(nothrow);
    if (ec) co_return;
    journal->sync_tick();
    if (ctx.stopping && ctx.live.empty()) co_return;
  }
}

awaitable<void> server::impl::autosave_loop() {
  if (cfg.autosave.count() == 0) co_return;
  for (;;) {
    autosave_timer.expires_after(cfg.autosave);
    auto [ec] = co_await autosave_timer.async_wait(nothrow);
    if (ec || ctx.stopping) co_return;
    co_await save("autosave");
  }
}

awaitable<void> server::impl::prune_loop() {
  if (cfg.message_ttl.count() == 0) co_return;
  for (;;) {
    prune_timer.expires_after(prune_period);
    auto [ec] = co_await prune_timer.async_wait(nothrow);
    if (ec || ctx.stopping) co_return;
    if (auto n = chat.prune(proto::unix_now())) JIM_LOG(info, "dropped {} expired messages", n);
  }
}

}  // namespace jim::server
