#include "server.hpp"

#include "cluster/event_log.hpp"
#include "cluster/nats_stream.hpp"
#include "cluster/presence.hpp"
#include "http.hpp"
#include "hub.hpp"
#include "schedule.hpp"
#include "logging.hpp"
#include "net/fd_limit.hpp"
#include "net/listener.hpp"
#include "net/refuse.hpp"
#include "net/throttle.hpp"
#include "net/tls.hpp"
#include "net/tls_session.hpp"
#include "offload.hpp"
#include "ops/metrics.hpp"
#include "ops/notify.hpp"
#include "session.hpp"
#include "snapshot.hpp"
#include "store/journal.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <algorithm>
#include <atomic>
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

/// Password hashing runs below the I/O thread (see hashing_nice) and, by default, leaves one
/// core to it: a sign-in storm slows sign-ins, not chat. Measured on 2 cores (jim-bench storm):
/// two hashing threads sign in 62 users/s at the default cost but raise chat p99 4x; one
/// signs in 42/s with chat p99 1.5-3x. Two under SCHED_IDLE (which could use an idle core
/// without hurting chat, in theory) were no better for chat than one at nice 5 (issue 14,
/// bench/RESULTS.md), so cores - 1 stays.
std::size_t cpu_threads(int configured) {
  if (configured > 0) return static_cast<std::size_t>(configured);
  return std::max(2u, std::thread::hardware_concurrency()) - 1;
}

/// How far below the I/O thread the hashing threads run: SCHED_OTHER at the process's nice
/// value + 5 (at most 19). Not SCHED_IDLE: an idle-class thread gets CPU only when nothing else
/// wants it (sched(7): "intended for running jobs at extremely low priority"; weight 3 against
/// 1024 for nice 0), so on a machine kept busy by other processes sign-ins waited without
/// bound. Under CFS/EEVDF a nice-N thread weighs 1024 / 1.25^N against a nice-0 one; at +5
/// (weight 335) the I/O thread still wins a shared core 3:1 and preempts hashing when it wakes,
/// while hashing keeps about a quarter of a core against a busy nice-0 process. Measured on the
/// 2-core machine with two CPU burners on top of a load of about 13 (other builds), 20
/// concurrent sign-ins at 600,000 iterations, one hashing thread, each answered within 12.4 s:
/// SCHED_IDLE left one unanswered after 30 s (its hash had started and starved) and gave 19 a
/// 503; nice 10 signed in 1 (503 for 19); nice 5 signed in 2 (at 6.3 and 10.4 s; 503 for 18,
/// all at 10.1 s or at once); nice 0 signed in 3 (at most 6.3 s). SCHED_IDLE measured again
/// against nice 5 with jimd in a session (an autogroup) of its own, as under systemd
/// (bench/RESULTS.md "Reconnect and sign-in storms", 24 sign-ups at once during chat, load
/// 5-13): chat p99 storm/calm medians 1.95x (one SCHED_IDLE thread), 2.17x (two) and 2.37x
/// (one at nice 5), each setting spread over 0.5-20x, so no measurable gain; but one
/// SCHED_IDLE thread signed in 69 % of the users (the rest got 503) against 93 % at nice 5, and
/// in a group shared with two busy processes 0-2 of 20 against 5-6. A thread's policy and nice
/// value only order the threads inside jimd's scheduling group, and the group's weight on the
/// hashing thread's CPU shrinks with that thread's weight (jimd(8), CPU PRIORITY).
/// A SCHED_IDLE thread that switches itself back to SCHED_OTHER when starved is not possible
/// for the packaged service either: Linux treats SCHED_IDLE as nice 20, and leaving it needs
/// CAP_SYS_NICE or an RLIMIT_NICE that allows the target nice value (sched(7); nice +5 needs
/// 15, the unit's User=jimd has 0: EPERM, checked as an unprivileged user).
constexpr int hashing_nice_offset = 5;

/// The nice value of the hashing threads for a process at nice `base`.
int hashing_nice_for(int base) {
  return std::min(base + hashing_nice_offset, 19);
}

/// Names every pool thread "jimd-hash" (`top -H`, `ps -L`) and moves it below the I/O thread
/// (hashing_nice_offset), then checks that this took effect (sched_getscheduler, getpriority:
/// the values /proc/PID/task/TID/stat shows); a thread left at the I/O thread's priority is
/// logged as a warning, once.
void lower_priority(asio::thread_pool& pool, std::size_t threads) {
  errno = 0;
  const int base = getpriority(PRIO_PROCESS, 0);  // this (the I/O) thread's nice value
  const int nice = hashing_nice_for(errno == 0 ? base : 0);
  // Shared: a thread may still be inside arrive_and_wait() after wait() returned here.
  auto started = std::make_shared<std::latch>(static_cast<std::ptrdiff_t>(threads));
  auto refused = std::make_shared<std::atomic<int>>(0);
  for (std::size_t i = 0; i < threads; ++i)
    asio::post(pool, [started, refused, nice] {
      pthread_setname_np(pthread_self(), "jimd-hash");
      sched_param param{};
      pthread_setschedparam(pthread_self(), SCHED_OTHER, &param);
      // Linux: PRIO_PROCESS with a thread id sets that thread's nice value only.
      const auto tid = static_cast<id_t>(gettid());
      const int set = setpriority(PRIO_PROCESS, tid, nice);
      const int err = errno;
      errno = 0;
      const int now = getpriority(PRIO_PROCESS, tid);
      if (set != 0 || sched_getscheduler(0) != SCHED_OTHER || now != nice) {
        if (refused->fetch_add(1) == 0)
          JIM_LOG(warn,
                  "cannot lower the priority of a hashing thread to nice {} (it runs at {}): {}",
                  nice, now, set != 0 ? std::strerror(err) : "not applied");
      }
      started->arrive_and_wait();  // one task per thread: none returns before all have started
    });
  started->wait();
}

/// Holds a connection's per-address ticket for as long as the connection is served.
awaitable<void> held(net::throttle::ticket ticket, awaitable<void> work) {
  co_await std::move(work);
  ticket.release();
}

/// Throttle limits of the options.
net::throttle_limits throttle_limits_of(config const& c) {
  net::throttle_limits l;
  l.max_open = c.max_conns_per_ip;
  l.new_per_window = c.new_conns_per_ip;
  l.loopback = c.throttle_loopback;
  return l;
}

/// Password checks waiting for a hashing thread, at most: far more than max-wait lets through
/// at any hashing speed seen (a few dozen per second per thread), so it binds only in a flood.
constexpr std::size_t max_hash_jobs_queued = 1024;

hub_limits hub_limits_of(config const& c) {
  hub_limits l;
  l.history_on_join = c.history_on_join;
  l.history_limit = c.history_limit;
  l.message_ttl = c.message_ttl;
  l.rate_limit = c.rate_limit;
  l.rate_burst = c.rate_burst;
  l.max_queued = 10000;
  l.max_sessions = c.max_sessions;
  l.report_threshold = c.report_threshold;
  l.report_window = c.report_window;
  l.mute_duration = c.mute_duration;
  for (auto const& a : c.admins) l.admins.push_back(proto::fold(a));
  return l;
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

/// Cluster mode: the node's name (--node-name, default: host name and chat port).
std::string node_name_of(config const& c, unsigned short port) {
  if (!c.node_name.empty()) return c.node_name;
  char host[256] = {};
  if (::gethostname(host, sizeof host - 1) != 0) std::strcpy(host, "jimd");
  return std::string(host) + ":" + std::to_string(port);
}

/// The snapshot file: a cluster node's is named after its stream (it covers a position in
/// that stream, not in the local journal).
std::filesystem::path snapshot_file_of(config const& c) {
  if (c.nats.empty()) return snapshot::file_in(c.data_dir);
  return std::filesystem::path(c.data_dir) / ("jimd-cluster-" + c.nats_stream + ".json");
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
  /// Per-address limits and refusals: declared before the io_context, whose destruction
  /// destroys the coroutines still holding tickets and refusals in flight.
  net::throttle conn_limits;
  net::refuser refusals;
  asio::io_context ioc{1};
  std::size_t hashers;
  asio::thread_pool cpu_pool;
  hash_queue hashing;
  /// The replica: a second hub that applies every stored event on the snapshot thread, so a
  /// snapshot is captured there and never stalls the I/O thread. Declared before the pool so
  /// that the pool (joined) goes first.
  std::unique_ptr<hub> replica;
  asio::thread_pool snapshot_pool{1};
  hub chat;
  // Cluster mode (--nats): the stream, the chat's events on it, and who is online elsewhere
  // (declared after `chat`, which points to them: they go first).
  const bool cluster_mode;
  std::unique_ptr<cluster::nats_stream> nats;
  std::unique_ptr<cluster::event_log> stream_log;
  std::unique_ptr<cluster::presence> presence;
  std::uint64_t stream_start = 0;  ///< the stream position the snapshot covers
  std::uint64_t caught_up_at = 0;  ///< the stream's last sequence when the node started
  std::uint64_t replica_seq = 0;   ///< snapshot thread only: the last entry the replica applied
  bool interrupted = false;        ///< SIGINT/SIGTERM while catching up: exit 0, nothing to save
  server_context ctx;
  scheduler schedules{ioc, chat};  ///< posts scheduled messages when due
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
  /// Refusals are logged at most once per refusal_log_period, with the count since the last
  /// line (a flood must not flood the log).
  log_limiter refusal_log{std::chrono::seconds(10)};

  explicit impl(config c)
      : cfg(std::move(c)),
        conn_limits(throttle_limits_of(cfg)),
        refusals(ctx, net::max_refusals_in_flight),
        hashers(cpu_threads(cfg.hash_threads)),
        cpu_pool(hashers),
        hashing(cpu_pool, hashers, cfg.hash_queue_wait, max_hash_jobs_queued),
        chat(hub_limits_of(cfg)),
        cluster_mode(!cfg.nats.empty()),
        ctx(cfg, chat, cpu_pool,
            proto::limits{cfg.max_frame, cfg.max_message, cfg.schedule_max.count()},
            &all_closed),
        snapshot_file(snapshot_file_of(cfg)) {
    lower_priority(cpu_pool, hashers);
    ctx.hashing = &hashing;
  }

  void listen();
  tcp::acceptor* http_acceptor = nullptr;
  awaitable<void> accept_loop(tcp::acceptor& acceptor, bool web);
  /// Refuses `socket` with `r` and logs it (rate-limited); `why` names the limit for the log.
  void refuse(tcp::socket socket, net::refusal r, bool web, std::string const& why);
  awaitable<void> wait_for_signal();
  awaitable<void> reload_loop();
  awaitable<void> autosave_loop();
  awaitable<void> prune_loop();
  awaitable<void> save(char const* why);
  awaitable<void> sync_loop();
  bool lock_data_dir();
  bool open_store();
  bool open_cluster(unsigned short port);
  bool catch_up();
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
  ctx.nodelay_inherited = net::configure_listener(acceptors.back());
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
  if (!s.lock_data_dir()) return 1;
  if (!s.cluster_mode && !s.open_store()) return 1;
  {
    const auto fds = net::ensure_fd_limit(s.cfg.max_clients);
    auto shown = [](std::size_t v) {
      return v == SIZE_MAX ? std::string("unlimited") : std::to_string(v);
    };
    if (fds.soft_after != fds.soft_before)
      JIM_LOG(info, "raised the descriptor limit (RLIMIT_NOFILE) from {} to {} for --max-clients {}",
              fds.soft_before, fds.soft_after, s.cfg.max_clients);
    if (fds.servable < s.cfg.max_clients) {
      JIM_LOG(err,
              "--max-clients {} needs {} file descriptors, but the limit is {} (hard limit {}{}{}): "
              "serving at most {} clients, more get 503; raise the hard limit (ulimit -Hn, "
              "systemd LimitNOFILE=) or lower --max-clients",
              s.cfg.max_clients, fds.needed, fds.soft_after, shown(fds.hard),
              fds.error.empty() ? "" : "; ", fds.error, fds.servable);
      s.cfg.max_clients = fds.servable;
    }
  }
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
  // A cluster node listens (its default name has the port) but accepts nobody before it has
  // caught up with the stream.
  if (s.cluster_mode) {
    if (!s.open_cluster(port)) return 1;
    if (!s.catch_up()) return s.interrupted ? 0 : 1;
  }
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
  s.schedules.start();  // one that fell due while the daemon was down is posted now
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
  ops::notify_ready("accepting connections on port " + std::to_string(port));
  asio::co_spawn(s.ioc, ops::watchdog_loop(), log_exception("systemd watchdog"));
  run_rounds(s.ioc, s.ctx);
  s.cpu_pool.join();
  if (s.nats) s.nats->close();  // no-op after a clean shutdown; else answers what still waits
  if (s.journal) s.journal->stop();
  s.snapshot_pool.join();
  JIM_LOG(info, "stopped");
  spdlog::shutdown();
  return s.exit_code;
}

awaitable<void> server::impl::accept_loop(tcp::acceptor& acceptor, bool web) {
  // Accepts what is pending (at most accept_batch at a time, then lets other handlers run), then
  // waits for the listener to be readable: accept4 without waiting gives non-blocking sockets
  // (net::accept_now: no ioctl, no epoll_ctl(DEL) per connection).
  constexpr int accept_batch = 16;
  int batch = 0;
  for (;;) {
    if (++batch > accept_batch) {
      batch = 0;
      co_await asio::post(ioc, asio::use_awaitable);
      if (ctx.stopping) co_return;
    }
    // accept() gives the peer's address: no getpeername per connection.
    tcp::endpoint remote;
    boost::system::error_code ec;
    tcp::socket socket = net::accept_now(acceptor, remote, ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again) {
      batch = 0;
      auto [wec] = co_await acceptor.async_wait(tcp::acceptor::wait_read, nothrow);
      if (wec == asio::error::operation_aborted || ctx.stopping) co_return;
      continue;
    }
    if (ec == asio::error::connection_aborted) continue;  // gone before accepted
    if (ec) {
      if (ec == asio::error::operation_aborted || ec == asio::error::bad_descriptor ||
          ctx.stopping)
        co_return;
      // EMFILE and friends: back off instead of spinning on the error.
      JIM_LOG(warn, "accept: {}", ec.message());
      asio::steady_timer backoff(ioc, std::chrono::milliseconds(100));
      co_await backoff.async_wait(nothrow);
      continue;
    }
    // Both ports, every connection: max-clients first (a refused connection uses none of its
    // address's allowance), then the per-address limits.
    if (ctx.refusing()) {
      refuse(std::move(socket),
             {proto::code::unavailable,
              ctx.stopping ? "server shutting down" : "server full (max-clients reached)",
              ctx.stopping ? 0 : net::busy_retry_after},
             web, ctx.stopping ? "shutting down" : "max-clients reached");
      continue;
    }
    auto d = conn_limits.admit(remote.address());
    if (d.outcome == net::throttle::verdict::too_many) {
      refuse(std::move(socket),
             {proto::code::unavailable,
              "too many connections from your address (max-conns-per-ip " +
                  std::to_string(cfg.max_conns_per_ip) + ")",
              net::busy_retry_after},
             web, "max-conns-per-ip reached by " + net::to_string(net::source_of(remote.address())));
      continue;
    }
    if (d.outcome == net::throttle::verdict::too_fast) {
      refuse(std::move(socket),
             {proto::code::rate_limited,
              "too many new connections from your address (new-conns-per-ip " +
                  std::to_string(cfg.new_conns_per_ip) + " per 10 minutes)",
              d.retry_after},
             web, "new-conns-per-ip reached by " + net::to_string(net::source_of(remote.address())));
      continue;
    }
    if (web) {
      asio::co_spawn(ioc, held(std::move(d.admitted), serve_http(ctx, std::move(socket), next_id)),
                     log_exception("HTTP connection"));
    } else if (ctx.tls) {  // TLS or plaintext, by the first bytes; the session takes the ticket
      asio::co_spawn(ioc,
                     net::serve_jim(ctx, std::move(socket), next_id, describe(remote),
                                    std::move(d.admitted)),
                     log_exception("connection"));
    } else {
      // The peer's address as accept() gave it: no getpeername per connection.
      std::make_shared<tcp_session>(ctx, std::move(socket), ++next_id, std::string(),
                                    describe(remote))
          ->start(std::move(d.admitted));
    }
  }
}

void server::impl::refuse(tcp::socket socket, net::refusal r, bool web, std::string const& why) {
  ops::stats.count_reply(proto::to_int(r.code));
  if (const auto held = refusal_log.admit(log_limiter::clock::now()))
    JIM_LOG(warn, "connection from {} to the {} port refused ({}): {}{}", describe(socket),
            web ? "HTTP" : "chat", proto::to_int(r.code), why,
            *held > 0 ? fmt::format(" ({} refusals since the last such line)", *held + 1)
                      : std::string());
  asio::co_spawn(ioc, refusals.refuse(std::move(socket), std::move(r), web),
                 log_exception("refusal"));
}

awaitable<void> server::impl::wait_for_signal() {
  auto& signals = stop_signals;
  auto [ec, sig] = co_await signals.async_wait(nothrow);
  if (ec) co_return;
  JIM_LOG(info, "SIG{}: shutting down", sigabbrev_np(sig));
  ctx.stopping = true;
  ops::notify_stopping("shutting down: closing connections, then saving a snapshot");
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
  schedules.stop();
  count_timer.cancel();
  sync_timer.cancel();
  co_await save("shutdown");
  if (presence) presence->stop();  // this node's users go offline everywhere now
  if (nats) nats->close();         // bounded wait for the sign-outs still being published
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
  replica = std::make_unique<hub>(chat.limits());
  if (auto err = snapshot::load(snapshot_file, chat, now, &covered, replica.get())) {
    JIM_LOG(critical, "{}", *err);
    return false;
  }
  ops::stats.snapshot_loaded(snapshot_file);
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
  // On the I/O thread, after each batch's completions: the replica applies the same events, in
  // log order, on the snapshot thread.
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

bool server::impl::open_cluster(unsigned short port) {
  const auto now = proto::unix_now();
  replica = std::make_unique<hub>(chat.limits());
  if (auto err = snapshot::load(snapshot_file, chat, now, &stream_start, replica.get())) {
    JIM_LOG(critical, "{}", *err);
    return false;
  }
  replica_seq = stream_start;
  ops::stats.snapshot_loaded(snapshot_file);
  cluster::nats_settings ns;
  ns.urls = cfg.nats;
  ns.node = node_name_of(cfg, port);
  chat.set_node(ns.node);  // scheduled messages accepted here are posted here
  ns.stream = cfg.nats_stream;
  ns.replicas = cfg.nats_replicas;
  nats = std::make_unique<cluster::nats_stream>(ioc, std::move(ns));
  try {
    caught_up_at = nats->open();  // blocking (bounded): nothing runs on the I/O thread yet
  } catch (std::exception const& e) {
    JIM_LOG(critical, "cluster mode: {}", e.what());
    return false;
  }
  if (stream_start > caught_up_at) {
    JIM_LOG(critical,
            "{} covers the stream {} up to sequence {}, but the stream ends at {}: it is not "
            "this stream's snapshot (the stream was deleted or recreated?); move the file away to "
            "rebuild this node from the stream",
            snapshot_file.string(), cfg.nats_stream, stream_start, caught_up_at);
    return false;
  }
  // Every entry in stream order: this node's own go to the waiting change (hub::commit), the
  // others' to hub::remote; all of them to the replica, on the snapshot thread.
  auto foreign = [this](store::event const& e, std::uint64_t) { chat.remote(e); };
  auto applied = [this](store::event const& e, std::uint64_t seq) {
    asio::post(snapshot_pool, [this, e, seq] {
      replica->apply(e);  // deterministic: the same result as the live hub's
      replica_seq = seq;
    });
  };
  stream_log = std::make_unique<cluster::event_log>(*nats, std::move(foreign), std::move(applied));
  chat.set_log(stream_log.get());
  presence = std::make_unique<cluster::presence>(ioc, *nats, [this] {
    std::vector<cluster::remote_user> users;
    for (auto const& [key, r] : chat.all_rooms())
      for (device const* d : r->present) {
        // An account once per room, however many of its connections are there.
        account const* a = d->acc;
        if (a->devices.size() > 1 &&
            std::any_of(r->present.begin(), r->present.begin() + static_cast<std::ptrdiff_t>(d->slot),
                        [a](device const* o) { return o->acc == a; }))
          continue;
        users.push_back({a->name, a->status, r->name});
      }
    return users;
  });
  presence->on_moved([this](std::string const& user, std::string const& from,
                            std::string const& to) { chat.remote_moved(user, from, to); });
  // The cluster-wide device lists (--max-sessions): this process names its connections with
  // its instance; every heartbeat sweeps the lists (dead nodes, announcements to retry).
  presence->on_beat([this] { chat.sweep_devices(); });
  chat.set_presence(presence.get());
  chat.set_instance(nats->instance());
  std::string urls;
  for (auto const& u : cfg.nats) urls += (urls.empty() ? "" : ",") + u;
  JIM_LOG(info, "cluster node {} on stream {} ({}): snapshot up to sequence {}, stream at {}",
          nats->node(), cfg.nats_stream, urls, stream_start, caught_up_at);
  return true;
}

bool server::impl::catch_up() {
  using clock = std::chrono::steady_clock;
  using ms = std::chrono::duration<double, std::milli>;
  const auto t0 = clock::now();
  bool ready = false;
  // Nothing else runs yet: keep the loop alive while the NATS threads post entries, and stop
  // on SIGINT/SIGTERM (the handler owns its flag: it may run after this function returned).
  auto guard = asio::make_work_guard(ioc);
  auto stop = std::make_shared<bool>(false);
  stop_signals.async_wait([stop](boost::system::error_code ec, int) {
    if (!ec) *stop = true;
  });
  try {
    stream_log->start(stream_start, caught_up_at, [&ready] { ready = true; });
  } catch (std::exception const& e) {
    JIM_LOG(critical, "cluster mode: {}", e.what());
    return false;
  }
  auto report = clock::now() + std::chrono::seconds(10);
  while (!ready && !*stop) {
    ioc.run_one_for(std::chrono::milliseconds(200));
    if (clock::now() > report) {
      JIM_LOG(info, "catching up with the stream: at {} of {}{}", stream_log->position(),
              caught_up_at, nats->connected() ? "" : " (NATS unreachable, retrying)");
      report = clock::now() + std::chrono::seconds(10);
    }
  }
  guard.reset();
  if (*stop) {
    JIM_LOG(info, "stopped while catching up with the stream");
    interrupted = true;
    return false;
  }
  stop_signals.cancel();  // wait_for_signal takes over
  const auto now = proto::unix_now();
  chat.prune(now);
  asio::post(snapshot_pool, [this, now] { replica->prune(now); });
  presence->start();
  JIM_LOG(info, "caught up with the stream ({} entries after sequence {}) in {:.1f} ms",
          caught_up_at - stream_start, stream_start, ms(clock::now() - t0).count());
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
  auto on_snapshot_thread = [this, res, signal, file, dir](std::optional<std::uint64_t> covered) {
    asio::post(snapshot_pool, [this, res, signal, file, dir, covered]() mutable {
      // Cluster: the replica has applied the stream up to replica_seq (set on this thread).
      if (cluster_mode) covered = replica_seq;
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
          // The snapshot is durable: the segments it covers go (cluster: the stream keeps all).
          if (!cluster_mode) res->removed = store::remove_segments_before(dir, *covered + 1);
        } catch (std::exception const& e) {
          res->error = e.what();
        }
      }
      asio::post(ioc, [res, signal] {
        res->done = true;
        signal->cancel();
      });
    });
  };
  if (journal)
    journal->rotate(std::move(on_snapshot_thread));
  else
    on_snapshot_thread(0);
  const auto t1 = clock::now();
  while (!res->done) co_await signal->async_wait(nothrow);
  if (res->error.empty()) {
    ops::stats.snapshot_saved(res->bytes, res->capture_ms + res->write_ms);
    JIM_LOG(info,
            "snapshot ({}) saved to {}: {} bytes up to {} seq {}, {} journal segments "
            "removed; I/O thread {:.3f} ms, capture {:.1f} ms, write {:.1f} ms (snapshot thread)",
            why, file.string(), res->bytes, cluster_mode ? "stream" : "journal", res->covered,
            res->removed, ms(t1 - t0).count(), res->capture_ms, res->write_ms);
  } else {
    // Nothing is lost: the journal still holds every change since the last snapshot.
    ops::stats.snapshot_failures.add();
    JIM_LOG(err, "snapshot ({}) NOT saved to {}: {} (the journal keeps every change)", why,
            file.string(), res->error);
  }
}

awaitable<void> server::impl::sync_loop() {
  if (!journal || journal->mode() != store::fsync_mode::everysec) co_return;
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
