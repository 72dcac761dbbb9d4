// The reconnect storm (issue 14): C clients sign in again by resume token, `--concurrency` at a
// time, against A accounts whose tokens were obtained beforehand; for comparison the same
// connect-request-reply cycle against Redis with PING. A client of its own small epoll loop:
// the fan-out engine's per-connection state (delivery bitmaps, TLS) is not needed here.
#include "proc_stats.hpp"
#include "scenarios.hpp"

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <netinet/tcp.h>
#include <random>
#include <string_view>
#include <sys/epoll.h>
#include <thread>
#include <unistd.h>
#include <vector>

namespace jim::bench {

namespace {

struct client {
  int fd = -1;
  std::uint32_t index = 0;  ///< client number (account = index % accounts)
  std::string out;
  std::size_t out_off = 0;
  std::string in;
  std::int64_t t0 = 0;  ///< connect() called
};

/// A bounded pool of one-request clients: connect, write `request(i)`, wait for one reply line
/// (jim: up to '\n'; Redis: "+PONG\r\n"), hand it to `done`, then close or keep the socket.
/// Few syscalls per client, since on 2 cores the client's CPU is taken from the server's: the
/// socket is registered once, edge-triggered, for both directions (no EPOLL_CTL_MOD), a connect
/// error shows as the send's error (no SO_ERROR query), no TCP_NODELAY (one write per
/// connection: Nagle delays only data sent while earlier data is unacknowledged), and a closed
/// socket leaves the epoll set by itself (EPOLL_CTL_DEL only for a socket kept open).
class pool {
 public:
  pool(sockaddr_storage const& target, socklen_t len, std::uint32_t concurrency)
      : target_(target), len_(len), concurrency_(std::max<std::uint32_t>(1, concurrency)) {
    ep_ = epoll_create1(EPOLL_CLOEXEC);
  }
  ~pool() {
    for (int fd : kept_) ::close(fd);
    for (auto& c : live_)
      if (c.fd >= 0) ::close(c.fd);
    if (ep_ >= 0) ::close(ep_);
  }
  pool(pool const&) = delete;
  pool& operator=(pool const&) = delete;

  /// Runs clients 0..n-1. `request(i)` is the bytes to send; `done(i, reply, latency_ns)`
  /// returns true for a success. Returns false on timeout.
  template <class Req, class Done>
  bool run(std::uint32_t n, bool keep, double timeout_s, Req&& request, Done&& done) {
    live_.assign(concurrency_, client{});
    std::vector<std::uint32_t> free_slots;
    for (std::uint32_t s = 0; s < concurrency_; ++s) free_slots.push_back(concurrency_ - 1 - s);
    std::uint32_t next = 0, finished = 0;
    const std::int64_t deadline = now_ns() + static_cast<std::int64_t>(timeout_s * 1e9);
    auto finish = [&](std::uint32_t slot, bool ok, std::string_view reply) {
      client& c = live_[slot];
      const bool good = ok && done(c.index, reply, now_ns() - c.t0);
      if (keep && good) {
        epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);  // its slot is reused
        kept_.push_back(c.fd);
      } else {
        ::close(c.fd);
      }
      c = client{};
      free_slots.push_back(slot);
      ++finished;
    };
    std::vector<epoll_event> events(512);
    while (finished < n) {
      while (next < n && !free_slots.empty()) {
        const std::uint32_t slot = free_slots.back();
        free_slots.pop_back();
        client& c = live_[slot];
        c.index = next++;
        c.out = request(c.index);
        c.t0 = now_ns();
        c.fd = ::socket(target_.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        if (c.fd < 0) {
          ++errors;
          finish(slot, false, {});
          continue;
        }
        if (::connect(c.fd, reinterpret_cast<sockaddr const*>(&target_), len_) != 0 &&
            errno != EINPROGRESS) {
          ++errors;
          finish(slot, false, {});
          continue;
        }
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT | EPOLLET;
        ev.data.u32 = slot;
        epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
      }
      if (now_ns() > deadline) return false;
      const int k = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), 50);
      for (int e = 0; e < k; ++e) {
        const std::uint32_t slot = events[static_cast<std::size_t>(e)].data.u32;
        const std::uint32_t what = events[static_cast<std::size_t>(e)].events;
        client& c = live_[slot];
        if (c.fd < 0) continue;
        if (c.out_off < c.out.size() && (what & (EPOLLOUT | EPOLLERR | EPOLLHUP))) {
          // Writable: connected (or failed: then the send says why).
          const ssize_t w =
              ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
          if (w > 0) c.out_off += static_cast<std::size_t>(w);
          if (w < 0 && errno != EAGAIN && errno != EINTR) {
            ++errors;
            finish(slot, false, {});
            continue;
          }
        }
        if (what & (EPOLLIN | EPOLLHUP | EPOLLERR)) {
          // Edge-triggered: read until the line is complete or nothing is left.
          for (;;) {
            char buf[4096];
            const ssize_t r = ::recv(c.fd, buf, sizeof buf, 0);
            if (r < 0 && errno == EINTR) continue;
            if (r < 0 && errno == EAGAIN) break;
            if (r <= 0) {
              finish(slot, false, c.in);
              break;
            }
            c.in.append(buf, static_cast<std::size_t>(r));
            const auto nl = c.in.find('\n');
            if (nl != std::string::npos) {
              finish(slot, true, std::string_view(c.in).substr(0, nl));
              break;
            }
          }
        }
      }
    }
    return true;
  }

  std::size_t errors = 0;  ///< connect/send failures (before any reply)

 private:
  sockaddr_storage target_;
  socklen_t len_;
  std::uint32_t concurrency_;
  int ep_ = -1;
  std::vector<client> live_;
  std::vector<int> kept_;
};

std::string field(std::string_view line, std::string_view key) {
  std::string k = "\"";  // appended, not "\"" + ... (GCC 12 -O3 -Wrestrict false positive)
  k.append(key).append("\":\"");
  const auto p = line.find(k);
  if (p == std::string_view::npos) return {};
  const auto b = p + k.size();
  const auto e = line.find('"', b);
  return e == std::string_view::npos ? std::string{} : std::string(line.substr(b, e - b));
}

int code_of(std::string_view line) {
  static constexpr std::string_view key = R"({"response":)";
  if (line.substr(0, key.size()) != key) return 0;
  return std::atoi(std::string(line.substr(key.size(), 4)).c_str());
}

}  // namespace

result run_resume(options const& o, engine_config base) {
  const std::uint32_t accounts = o.protocol == proto::jim ? o.accounts : 0;
  if (o.protocol == proto::jim && o.hold && accounts < o.connections)
    return {"{\"scenario\":\"resume\",\"error\":\"--hold needs --accounts >= -C\"}",
            "resume: FAILED: --hold needs --accounts >= -C (one connection per account)", 1};
  char nonce[9];
  std::snprintf(nonce, sizeof nonce, "%08x",
                static_cast<unsigned>(std::random_device{}() ^ static_cast<unsigned>(now_ns())));
  auto name = [&](std::uint32_t a) { return std::string("b") + nonce + "t" + std::to_string(a); };

  // Set-up: one password sign-up per account, its token kept; those connections close.
  std::vector<std::string> tokens(accounts);
  const std::int64_t setup0 = now_ns();
  std::size_t setup_failed = 0, setup_retries = 0;
  int setup_code = 0;
  if (accounts) {
    // Password sign-ups hash: few at a time, or the server's hashing queue answers 503. Those
    // refused for now (429/503 with retry_after) sign up again in the next pass, after the
    // longest wait they were told plus up to a quarter more, at most max_passes passes (and
    // within --setup-timeout).
    constexpr int max_passes = 32;
    std::vector<std::uint32_t> todo(accounts);
    for (std::uint32_t a = 0; a < accounts; ++a) todo[a] = a;
    const std::int64_t deadline = setup0 + static_cast<std::int64_t>(o.setup_timeout * 1e9);
    std::mt19937 random(std::random_device{}());
    bool in_time = true;
    std::size_t errors = 0;
    for (int pass = 1; !todo.empty() && in_time; ++pass) {
      std::vector<std::uint32_t> busy;
      double wait_s = 0;
      pool setup(base.target, base.target_len, std::min<std::uint32_t>(o.concurrency, 32));
      in_time = setup.run(
          static_cast<std::uint32_t>(todo.size()), false,
          static_cast<double>(deadline - now_ns()) / 1e9,
          [&](std::uint32_t j) {
            return R"({"action":"register","user":{"account_name":")" + name(todo[j]) +
                   R"(","password":"bench-pw"}})" + "\n";
          },
          [&](std::uint32_t j, std::string_view reply, std::int64_t) {
            const std::uint32_t i = todo[j];
            tokens[i] = field(reply, "token");
            if (!tokens[i].empty()) return true;
            const int code = code_of(reply);
            const double after = retry_after_of(reply);
            if ((code == 503 || code == 429) && after > 0 && pass < max_passes) {
              busy.push_back(i);
              wait_s = std::max(wait_s, after);
              ++setup_retries;
            } else {
              ++setup_failed;
              setup_code = code;
            }
            return false;
          });
      errors += setup.errors;
      todo = std::move(busy);
      if (!todo.empty() && in_time) {
        std::uniform_real_distribution<double> spread(1.0, 1.25);
        const auto until =
            std::min(deadline, now_ns() + static_cast<std::int64_t>(wait_s * spread(random) * 1e9));
        in_time = until < deadline;
        std::this_thread::sleep_for(
            std::chrono::nanoseconds(std::max<std::int64_t>(0, until - now_ns())));
      }
    }
    if (!in_time || setup_failed || errors) {
      char why[200];
      std::snprintf(why, sizeof why, "set-up: %zu of %u accounts got no token (last code %d%s)",
                    setup_failed + errors + (in_time ? 0 : todo.size()), accounts, setup_code,
                    in_time ? "" : ", timed out");
      return {std::string("{\"scenario\":\"resume\",\"error\":") + quote(why) + "}",
              std::string("resume: FAILED: ") + why, 1};
    }
  }
  const double setup_s = static_cast<double>(now_ns() - setup0) / 1e9;

  // The storm: every client resumes (jim) or PINGs (Redis).
  histogram lat;
  std::size_t ok = 0, refused = 0;
  int last_code = 0;
  pool storm(base.target, base.target_len, o.concurrency);
  const proc_sample before = sample_process(o.server_pid);
  const std::int64_t self0 = self_cpu_ns();
  const std::int64_t t0 = now_ns();
  const bool in_time = storm.run(
      o.connections, o.hold, o.max_time,
      [&](std::uint32_t i) -> std::string {
        if (o.protocol != proto::jim) return "PING\r\n";
        const std::uint32_t a = i % accounts;
        return R"({"action":"authenticate","user":{"account_name":")" + name(a) +
               R"(","token":")" + tokens[a] + "\"}}\n";
      },
      [&](std::uint32_t, std::string_view reply, std::int64_t ns) {
        const bool good = o.protocol == proto::jim ? code_of(reply) == 200 : reply == "+PONG\r";
        if (good) {
          ++ok;
          lat.record(ns);
        } else {
          ++refused;
          last_code = code_of(reply);
        }
        return good;
      });
  const std::int64_t t1 = now_ns();
  const proc_sample after = sample_process(o.server_pid);
  const std::int64_t self1 = self_cpu_ns();
  const double wall = static_cast<double>(t1 - t0) / 1e9;
  const double rate = wall > 0 ? static_cast<double>(ok) / wall : 0;
  const bool cpu = before.ok && after.ok;
  const double cpu_us = cpu && ok ? static_cast<double>(after.cpu_ns - before.cpu_ns) / 1e3 /
                                        static_cast<double>(ok)
                                  : 0;
  const char* pname = o.protocol == proto::jim ? "jim" : "redis";
  record r;
  r.str("scenario", "resume").str("proto", pname);
  if (!o.label.empty()) r.str("label", o.label);
  r.integer("clients", o.connections)
      .integer("accounts", accounts)
      .integer("concurrency", o.concurrency)
      .boolean("hold", o.hold)
      .num("setup_s", setup_s)
      .integer("setup_retries", static_cast<std::int64_t>(setup_retries))
      .integer("signed_in", static_cast<std::int64_t>(ok))
      .integer("failed", static_cast<std::int64_t>(refused + storm.errors))
      .num("wall_s", wall)
      .num("signins_per_s", rate, 0)
      .raw("latency_ms", record{}
                             .num("p50", static_cast<double>(lat.quantile(0.5)) / 1e6)
                             .num("p99", static_cast<double>(lat.quantile(0.99)) / 1e6)
                             .num("max", static_cast<double>(lat.max()) / 1e6)
                             .json())
      .num("bench_cpu_pct", wall > 0 ? 100.0 * static_cast<double>(self1 - self0) / 1e9 / wall : 0,
           1);
  if (cpu)
    r.num("server_cpu_s", static_cast<double>(after.cpu_ns - before.cpu_ns) / 1e9)
        .num("server_cpu_us_per_signin", cpu_us, 1);
  if (last_code) r.integer("last_failure", last_code);
  r.boolean("finished", in_time);
  char human[320];
  std::snprintf(human, sizeof human,
                "resume %s C=%u accounts=%u concurrency=%u%s: %zu signed in in %.2f s (%s/s), "
                "server CPU %.1f us/sign-in, p99 %.2f ms, %zu failed%s",
                pname, o.connections, accounts, o.concurrency, o.hold ? " hold" : "", ok, wall,
                si(rate).c_str(), cpu_us, static_cast<double>(lat.quantile(0.99)) / 1e6,
                refused + storm.errors, in_time ? "" : " [timed out]");
  const bool good = in_time && ok == o.connections;
  return {r.json(), human, good ? 0 : 1};
}

}  // namespace jim::bench
