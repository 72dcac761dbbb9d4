#include "scenarios.hpp"

#include "proc_stats.hpp"

#include <algorithm>
#include <cerrno>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <deque>
#include <netinet/tcp.h>
#include <poll.h>
#include <random>
#include <stdexcept>
#include <string_view>
#include <sys/socket.h>
#include <unistd.h>
#include <unordered_map>
#include <utility>
#include <vector>

namespace jim::bench {

namespace {

constexpr std::uint32_t rate_inflight_cap = 1000;  ///< rate mode: per sender, then it falls behind
constexpr double stuck_after_s = 10;               ///< replies never came: give up

double seconds(std::int64_t ns) {
  return static_cast<double>(ns) / 1e9;
}
std::int64_t nanos(double s) {
  return static_cast<std::int64_t>(s * 1e9);
}

char const* proto_name(proto p) {
  return p == proto::jim ? "jim" : p == proto::redis ? "redis" : "redis-stream";
}

std::string latency_json(histogram const& h) {
  record r;
  r.num("p50", static_cast<double>(h.quantile(0.50)) / 1e6)
      .num("p99", static_cast<double>(h.quantile(0.99)) / 1e6)
      .num("max", static_cast<double>(h.max()) / 1e6)
      .integer("n", static_cast<std::int64_t>(h.count()));
  return r.json();
}

std::string latency_text(histogram const& h) {
  char buf[128];
  std::snprintf(buf, sizeof buf, "p50 %.2f ms p99 %.2f ms max %.2f ms",
                static_cast<double>(h.quantile(0.5)) / 1e6,
                static_cast<double>(h.quantile(0.99)) / 1e6, static_cast<double>(h.max()) / 1e6);
  return buf;
}

result failure(options const& o, std::string const& why) {
  record r;
  r.str("scenario", o.scenario).str("proto", proto_name(o.protocol));
  if (!o.label.empty()) r.str("label", o.label);
  r.str("error", why);
  return {r.json(), o.scenario + " " + proto_name(o.protocol) + ": FAILED: " + why, 1};
}

/// Opens queued connections with at most `concurrency` of them connecting or signing in.
class opener {
 public:
  /// `retry_busy`: sign-ins refused for now are tried again (set-up; see on_state()).
  opener(engine& e, std::uint32_t concurrency, bool retry_busy)
      : eng_(e), concurrency_(std::max<std::uint32_t>(1, concurrency)), retry_busy_(retry_busy) {}
  void add(role r, std::uint32_t n) {
    for (std::uint32_t i = 0; i < n; ++i) todo_.emplace_back(r, i);
  }
  /// Feed every state change here (the engine's on_state hook). A sign-in refused for now
  /// (`429`/`503` with `retry_after`: the server's hashing queue is full, too many connections
  /// from this address) is opened again after that wait plus up to a quarter more (so the
  /// refused ones do not all come back at once, as `jim` does), at most `max_retries` times
  /// per connection; it keeps its place in the concurrency meanwhile. Only other failures
  /// count.
  void on_state(connection const& c) {
    if (c.st != state::ready && c.st != state::failed) return;
    if (retry_busy_ && c.st == state::failed && c.retry_after > 0 &&
        (c.last_code == 503 || c.last_code == 429)) {
      const auto id = static_cast<std::size_t>(&c - eng_.connections().data());
      if (tries_[id]++ < max_retries) {
        std::uniform_real_distribution<double> spread(1.0, 1.25);
        retries_.push_back({now_ns() + nanos(c.retry_after * spread(random_)), id});
        ++retried;
        return;
      }
    }
    if (pending_) --pending_;
    ++resolved_;
    if (c.st == state::ready)
      ready_ns.push_back(c.ready_ns);
    else
      last_failure = c.last_code;
  }
  /// Opens as many as the concurrency allows, and the refused ones whose wait is over (never
  /// from inside a hook: no recursion).
  void pump() {
    const std::int64_t now = now_ns();
    for (std::size_t i = 0; i < retries_.size();) {
      if (retries_[i].due > now) {
        ++i;
        continue;
      }
      const std::size_t id = retries_[i].id;
      retries_[i] = retries_.back();
      retries_.pop_back();
      eng_.retry(id);
    }
    while (pending_ < concurrency_ && next_ < todo_.size()) {
      ++pending_;
      auto [r, i] = todo_[next_++];
      eng_.open(r, i);
    }
  }
  bool done() const { return resolved_ == todo_.size(); }
  std::vector<std::int64_t> ready_ns;
  int last_failure = 0;
  std::size_t retried = 0;  ///< sign-ins opened again after a 429/503 with retry_after
  static constexpr int max_retries = 32;

 private:
  struct due_retry {
    std::int64_t due;
    std::size_t id;
  };
  engine& eng_;
  std::uint32_t concurrency_;
  bool retry_busy_;
  std::vector<std::pair<role, std::uint32_t>> todo_;
  std::size_t next_ = 0, pending_ = 0, resolved_ = 0;
  std::vector<due_retry> retries_;
  std::unordered_map<std::size_t, int> tries_;
  std::mt19937 random_{std::random_device{}()};
};

/// Polls until the opener is done; false (with `err`) on timeout or failed sign-ins.
bool wait_setup(engine& eng, opener& op, double timeout_s, std::string& err) {
  const std::int64_t deadline = now_ns() + nanos(timeout_s);
  while (!op.done()) {
    op.pump();
    if (now_ns() > deadline) {
      err = "set-up timed out after " + std::to_string(static_cast<int>(timeout_s)) + " s (" +
            std::to_string(eng.ready) + " signed in)";
      return false;
    }
    eng.poll(5);
  }
  if (eng.failed) {
    err = std::to_string(eng.failed) + " connections failed to sign in (last code " +
          std::to_string(op.last_failure) + (op.last_failure < 0 ? ", errno" : "") + ")";
    return false;
  }
  return true;
}

std::uint32_t quota(options const& o, std::uint32_t sender) {
  return o.messages / o.senders + (sender < o.messages % o.senders ? 1 : 0);
}

/// What happened while sending.
struct drive_outcome {
  std::int64_t t0 = 0;        ///< first send
  std::int64_t send_end = 0;  ///< sending stopped
  std::uint64_t sent = 0;
  bool by_time = false;    ///< --max-time stopped the senders before M
  bool cut_short = false;  ///< stopped waiting for deliveries (drain or stuck)
};

/// Sends the fan-out load and waits for the deliveries. `tick(now)` runs every loop and returns
/// false to stop sending (the storm uses it to open its users and end the run).
template <class Tick>
drive_outcome drive(engine& eng, options const& o, std::vector<std::size_t> const& senders,
                    std::uint32_t receivers, Tick tick) {
  auto& conns = eng.connections();
  auto& st = eng.stats();
  drive_outcome d;
  d.t0 = now_ns();
  bool sending = true;
  std::uint64_t last_delivered = 0;
  std::int64_t last_progress = d.t0;
  std::size_t rr = 0;
  std::vector<std::uint32_t> batch(senders.size());
  for (;;) {
    const std::int64_t now = now_ns();
    if (sending) {
      bool stop = !tick(now);
      if (now - d.t0 >= nanos(o.max_time)) {
        stop = true;
        d.by_time = true;
      }
      bool any_ready = false;
      if (!stop) {
        if (o.rate <= 0) {
          for (std::size_t i = 0; i < senders.size(); ++i) {
            connection& c = conns[senders[i]];
            if (c.st != state::ready) continue;
            any_ready = true;
            const std::uint32_t left = quota(o, static_cast<std::uint32_t>(i)) - c.next_seq;
            const std::uint32_t room = c.inflight < o.window ? o.window - c.inflight : 0;
            eng.send_messages(c, std::min(left, room));
          }
        } else {
          const auto due = std::min<std::uint64_t>(
              o.messages, static_cast<std::uint64_t>(seconds(now - d.t0) * o.rate) + 1);
          std::fill(batch.begin(), batch.end(), 0);
          std::uint64_t total = d.sent;
          std::size_t idle_turns = 0;
          while (total < due && idle_turns < senders.size()) {
            const std::size_t i = rr++ % senders.size();
            connection const& c = conns[senders[i]];
            if (c.st != state::ready ||
                c.next_seq + batch[i] >= quota(o, static_cast<std::uint32_t>(i)) ||
                c.inflight + batch[i] >= rate_inflight_cap) {
              ++idle_turns;
              continue;
            }
            idle_turns = 0;
            ++batch[i];
            ++total;
          }
          for (std::size_t i = 0; i < senders.size(); ++i) {
            connection& c = conns[senders[i]];
            if (c.st == state::ready) any_ready = true;
            eng.send_messages(c, batch[i]);
          }
        }
      }
      d.sent = 0;
      for (auto id : senders) d.sent += conns[id].next_seq;
      if (stop || d.sent >= o.messages || !any_ready) {
        sending = false;
        d.send_end = now;
      }
    } else {
      bool all_replied = true;
      for (auto id : senders)
        if (conns[id].st == state::ready && conns[id].inflight) all_replied = false;
      if (st.delivered >= d.sent * receivers) break;
      if (st.delivered != last_delivered) {
        last_delivered = st.delivered;
        last_progress = now;
      }
      const std::int64_t quiet_since = std::max(last_progress, d.send_end);
      if ((all_replied && now - quiet_since > nanos(o.drain)) ||
          now - d.send_end > nanos(o.drain + stuck_after_s)) {
        d.cut_short = true;
        break;
      }
    }
    eng.poll(sending && o.rate > 0 ? 1 : 10);
  }
  return d;
}

engine_config fanout_config(options const& o, engine_config cfg, std::size_t extra) {
  cfg.payload = o.payload;
  cfg.senders = o.senders;
  cfg.receivers = o.receivers;
  cfg.per_sender = o.messages / o.senders + 1;
  cfg.channel = o.channel;
  cfg.max_connections = o.receivers + o.senders + extra;
  return cfg;
}

/// Fields shared by the fan-out and the storm: deliveries, losses, server cost.
void delivery_fields(record& r, engine& eng, drive_outcome const& d, std::uint32_t receivers,
                     proc_sample const& s0, proc_sample const& s1, std::int64_t self0,
                     std::int64_t self1) {
  auto const& st = eng.stats();
  const std::uint64_t expected = d.sent * receivers;
  const double wall = st.last_ns > d.t0 ? seconds(st.last_ns - d.t0) : 0;
  r.integer("sent", static_cast<std::int64_t>(d.sent))
      .integer("expected", static_cast<std::int64_t>(expected))
      .integer("deliveries", static_cast<std::int64_t>(st.delivered))
      .num("wall_s", wall)
      .num("deliveries_per_s", wall > 0 ? static_cast<double>(st.delivered) / wall : 0, 0)
      .integer("lost", static_cast<std::int64_t>(expected - std::min(expected, st.delivered)))
      .integer("duplicated", static_cast<std::int64_t>(st.duplicated))
      .integer("reordered", static_cast<std::int64_t>(st.reordered))
      .integer("dropped_receivers", static_cast<std::int64_t>(eng.dropped_receivers))
      .integer("send_errors", static_cast<std::int64_t>(st.replies_error))
      .integer("unexpected", static_cast<std::int64_t>(st.unexpected))
      .integer("sender_pushes", static_cast<std::int64_t>(st.sender_pushes));
  if (s0.ok && s1.ok) {
    const double cpu = static_cast<double>(s1.cpu_ns - s0.cpu_ns);
    r.num("server_cpu_s", cpu / 1e9)
        .num("server_cpu_ns_per_delivery",
             st.delivered ? cpu / static_cast<double>(st.delivered) : 0, 1)
        .integer("server_rss_kib", s1.rss_kib)
        .integer("server_rss_peak_kib", s1.hwm_kib);
  }
  const double elapsed = seconds(now_ns() - d.t0);
  r.num("bench_cpu_pct", elapsed > 0 ? 100.0 * seconds(self1 - self0) / elapsed : 0, 1);
}

std::string delivery_text(engine& eng, drive_outcome const& d, std::uint32_t receivers,
                          proc_sample const& s0, proc_sample const& s1, std::int64_t self0,
                          std::int64_t self1) {
  auto const& st = eng.stats();
  const std::uint64_t expected = d.sent * receivers;
  const double wall = st.last_ns > d.t0 ? seconds(st.last_ns - d.t0) : 0;
  char buf[512];
  std::snprintf(buf, sizeof buf,
                "%s deliveries/s (%s in %.2f s), lost %llu dup %llu reordered %llu dropped %zu",
                si(wall > 0 ? static_cast<double>(st.delivered) / wall : 0).c_str(),
                si(static_cast<double>(st.delivered)).c_str(), wall,
                static_cast<unsigned long long>(expected - std::min(expected, st.delivered)),
                static_cast<unsigned long long>(st.duplicated),
                static_cast<unsigned long long>(st.reordered), eng.dropped_receivers);
  std::string out = buf;
  if (s0.ok && s1.ok && st.delivered) {
    std::snprintf(buf, sizeof buf, ", server %.0f ns/delivery RSS %.1f MiB",
                  static_cast<double>(s1.cpu_ns - s0.cpu_ns) / static_cast<double>(st.delivered),
                  static_cast<double>(s1.rss_kib) / 1024);
    out += buf;
  }
  const double elapsed = seconds(now_ns() - d.t0);
  std::snprintf(buf, sizeof buf, ", bench CPU %.0f%%",
                elapsed > 0 ? 100.0 * seconds(self1 - self0) / elapsed : 0);
  return out + buf;
}

std::vector<std::size_t> ids_of(engine& eng, role r) {
  std::vector<std::size_t> out;
  auto& conns = eng.connections();
  for (std::size_t i = 0; i < conns.size(); ++i)
    if (conns[i].kind == r) out.push_back(i);
  std::sort(out.begin(), out.end(),
            [&](std::size_t a, std::size_t b) { return conns[a].index < conns[b].index; });
  return out;
}

}  // namespace

result run_fanout(options const& o, engine_config base) {
  engine eng(fanout_config(o, std::move(base), 0));
  opener op(eng, o.concurrency, true);
  eng.on_state = [&](connection& c) { op.on_state(c); };
  op.add(role::receiver, o.receivers);
  op.add(role::sender, o.senders);
  const std::int64_t setup0 = now_ns();
  std::string err;
  if (!wait_setup(eng, op, o.setup_timeout, err)) return failure(o, err);
  const double setup_s = seconds(now_ns() - setup0);
  // Let the sign-in replies and history pushes settle before the clock starts.
  for (std::int64_t until = now_ns() + nanos(0.2); now_ns() < until;) eng.poll(10);
  eng.on_state = nullptr;
  if (o.pause > 0) {
    std::fprintf(stderr, "jim-bench: %zu connections ready; sending in %.1f s\n", eng.ready,
                 o.pause);
    for (std::int64_t until = now_ns() + nanos(o.pause); now_ns() < until;) eng.poll(10);
  }

  const auto senders = ids_of(eng, role::sender);
  const proc_sample s0 = sample_process(o.server_pid);
  const std::int64_t self0 = self_cpu_ns();
  auto d = drive(eng, o, senders, o.receivers, [](std::int64_t) { return true; });
  const proc_sample s1 = sample_process(o.server_pid);
  const std::int64_t self1 = self_cpu_ns();

  record r;
  r.str("scenario", "fanout").str("proto", proto_name(o.protocol));
  if (!o.label.empty()) r.str("label", o.label);
  r.integer("receivers", o.receivers)
      .integer("senders", o.senders)
      .integer("messages", o.messages)
      .integer("payload", o.payload)
      .str("mode", o.rate > 0 ? "rate" : "window");
  if (o.rate > 0)
    r.num("rate", o.rate, 1);
  else
    r.integer("window", o.window);
  r.num("setup_s", setup_s).integer("setup_retries", static_cast<std::int64_t>(op.retried));
  delivery_fields(r, eng, d, o.receivers, s0, s1, self0, self1);
  r.raw("latency_ms", latency_json(eng.stats().latency[0]));
  r.str("stopped_by", d.by_time ? "time" : "count").boolean("cut_short", d.cut_short);

  char head[256];
  std::snprintf(head, sizeof head, "fanout %s R=%u S=%u M=%u P=%u %s%s: ", proto_name(o.protocol),
                o.receivers, o.senders, o.messages, o.payload, o.rate > 0 ? "rate=" : "window=",
                o.rate > 0 ? si(o.rate).c_str() : std::to_string(o.window).c_str());
  std::string human = head + delivery_text(eng, d, o.receivers, s0, s1, self0, self1) +
                      "; latency " + latency_text(eng.stats().latency[0]);
  if (d.by_time) human += " [stopped by --max-time]";
  return {r.json(), human, 0};
}

result run_connect(options const& o, engine_config base) {
  if (o.protocol != proto::jim) return failure(o, "the connect scenario is for jimd only");
  base.max_connections = o.connections;
  engine eng(std::move(base));
  opener op(eng, o.concurrency, false);
  eng.on_state = [&](connection& c) { op.on_state(c); };
  op.add(role::idle, o.connections);

  const proc_sample s0 = sample_process(o.server_pid);
  const std::int64_t self0 = self_cpu_ns();
  const std::int64_t t0 = now_ns();
  std::string err;
  const bool ok = wait_setup(eng, op, o.setup_timeout, err);
  const std::int64_t t1 = now_ns();
  const proc_sample s_signed = sample_process(o.server_pid);
  const std::int64_t self1 = self_cpu_ns();
  // Idle for a moment (replies and pushes flushed) before measuring memory.
  for (std::int64_t until = now_ns() + nanos(o.settle); now_ns() < until;) eng.poll(10);
  const proc_sample s1 = sample_process(o.server_pid);
  const std::size_t still_open = eng.ready - eng.dropped;

  auto times = op.ready_ns;
  std::sort(times.begin(), times.end());
  const std::size_t n = times.size();
  const double wall = n ? seconds(times.back() - t0) : 0;
  double first = 0, last = 0;
  if (n >= 20) {
    const std::size_t tenth = n / 10;
    first = static_cast<double>(tenth) / seconds(times[tenth - 1] - t0);
    last = static_cast<double>(tenth) / seconds(times[n - 1] - times[n - 1 - tenth]);
  }
  record r;
  r.str("scenario", "connect").str("proto", "jim");
  if (!o.label.empty()) r.str("label", o.label);
  r.integer("connections", o.connections)
      .integer("signed_in", static_cast<std::int64_t>(n))
      .integer("failed", static_cast<std::int64_t>(eng.failed))
      .integer("still_open", static_cast<std::int64_t>(still_open))
      .integer("concurrency", o.concurrency)
      .num("wall_s", wall)
      .num("signins_per_s", wall > 0 ? static_cast<double>(n) / wall : 0, 0)
      .num("signins_per_s_first10", first, 0)
      .num("signins_per_s_last10", last, 0);
  if (s0.ok && s1.ok) {
    const double growth = static_cast<double>(s1.rss_kib - s0.rss_kib) * 1024;
    r.integer("server_rss_before_kib", s0.rss_kib)
        .integer("server_rss_after_kib", s1.rss_kib)
        .num("server_rss_per_conn_bytes", still_open ? growth / static_cast<double>(still_open) : 0,
             0)
        .num(
            "server_cpu_us_per_signin",
            n ? static_cast<double>(s_signed.cpu_ns - s0.cpu_ns) / 1e3 / static_cast<double>(n) : 0,
            1);
  }
  r.num("bench_cpu_pct", 100.0 * seconds(self1 - self0) / std::max(1e-9, seconds(t1 - t0)), 1);
  if (!ok) r.str("error", err);

  char buf[512];
  std::snprintf(buf, sizeof buf,
                "connect jim C=%u: %zu signed in (%zu failed) in %.2f s: %s sign-ins/s (first 10%% "
                "%s/s, last 10%% %s/s)",
                o.connections, n, eng.failed, wall,
                si(wall > 0 ? static_cast<double>(n) / wall : 0).c_str(), si(first).c_str(),
                si(last).c_str());
  std::string human = buf;
  if (s0.ok && s1.ok && still_open) {
    std::snprintf(
        buf, sizeof buf, ", server RSS +%.0f bytes/connection (%.1f -> %.1f MiB)",
        static_cast<double>(s1.rss_kib - s0.rss_kib) * 1024 / static_cast<double>(still_open),
        static_cast<double>(s0.rss_kib) / 1024, static_cast<double>(s1.rss_kib) / 1024);
    human += buf;
  }
  if (!ok) human += "; " + err;
  return {r.json(), human, ok ? 0 : 1};
}

namespace {

/// CPU use of the server's threads over an interval, in % of one core (from sample_threads).
std::string thread_cpu_json(thread_times const& a, thread_times const& b, std::int64_t ns) {
  record r;
  if (!a.ok || !b.ok || ns <= 0) return "{}";
  const double d = static_cast<double>(ns) / 100;  // ns -> % of a core
  auto pct = [&](std::int64_t x, std::int64_t y) { return static_cast<double>(y - x) / d; };
  r.num("io", pct(a.io_run_ns, b.io_run_ns), 1)
      .num("io_wait", pct(a.io_wait_ns, b.io_wait_ns), 1)
      .num("hash", pct(a.hash_run_ns, b.hash_run_ns), 1)
      .num("hash_wait", pct(a.hash_wait_ns, b.hash_wait_ns), 1)
      .num("other", pct(a.other_run_ns, b.other_run_ns), 1)
      .num("other_wait", pct(a.other_wait_ns, b.other_wait_ns), 1);
  return r.json();
}

double median_of(std::vector<double> v) {
  if (v.empty()) return 0;
  std::sort(v.begin(), v.end());
  const std::size_t n = v.size();
  return n % 2 ? v[n / 2] : (v[n / 2 - 1] + v[n / 2]) / 2;
}

double p99_ratio(histogram const& storm, histogram const& calm) {
  const double c = static_cast<double>(calm.quantile(0.99));
  return c > 0 ? static_cast<double>(storm.quantile(0.99)) / c : 0;
}

}  // namespace

result run_storm(options const& o, engine_config base) {
  if (o.protocol != proto::jim) return failure(o, "the storm scenario is for jimd only");
  if (o.rate <= 0) return failure(o, "the storm needs --rate");
  using close_when = options::storm_close;
  const std::uint32_t K = o.cycles, N = o.storm_users;
  options so = o;
  so.messages = static_cast<std::uint32_t>(std::min(4e9, std::ceil(o.rate * o.max_time)));
  engine eng(fanout_config(so, std::move(base), static_cast<std::size_t>(K) * N));
  opener op(eng, o.concurrency, true);
  op.add(role::receiver, o.receivers);
  op.add(role::sender, o.senders);

  // One calm phase and one storm per cycle; the storm's users are idle connections numbered
  // cycle * N + i (fresh accounts every cycle).
  struct cycle {
    std::int64_t calm_start = 0, storm_start = 0, storm_end = 0, last_ready = 0;
    std::size_t calm_phase = 0, storm_phase = 0;
    std::size_t resolved = 0, ready = 0;
    int last_failure = 0;
    thread_times at_calm, at_storm, at_end;  // server threads at the phase boundaries
    std::vector<std::size_t> ids;            // its storm users
  };
  std::vector<cycle> cyc(K);
  struct answer {
    std::int64_t at;
    int code;
    std::uint32_t cycle;
  };
  std::vector<answer> answers;
  std::vector<std::size_t> to_close;  // closed from tick(), never from inside a hook
  struct phase_info {
    std::int64_t start;
    char const* kind;
    std::uint32_t cycle;
  };
  std::vector<phase_info> phases;
  eng.on_state = [&](connection& c) {
    if (c.kind != role::idle) return op.on_state(c);
    if (c.st != state::ready && c.st != state::failed) return;
    cycle& k = cyc[c.index / N];
    ++k.resolved;
    answers.push_back({c.st == state::ready ? c.ready_ns : now_ns(), c.last_code, c.index / N});
    if (c.st == state::ready) {
      ++k.ready;
      k.last_ready = c.ready_ns;
      if (o.close_storm == close_when::answer)
        to_close.push_back(static_cast<std::size_t>(&c - eng.connections().data()));
    } else {
      k.last_failure = c.last_code;
    }
  };
  const std::int64_t setup0 = now_ns();
  std::string err;
  if (!wait_setup(eng, op, o.setup_timeout, err)) return failure(o, err);
  const double setup_s = seconds(now_ns() - setup0);
  for (std::int64_t until = now_ns() + nanos(0.2); now_ns() < until;) eng.poll(10);
  if (!o.trace.empty()) eng.trace_messages();

  const auto senders = ids_of(eng, role::sender);
  auto& st = eng.stats();
  const proc_sample s0 = sample_process(o.server_pid);
  const std::int64_t self0 = self_cpu_ns();
  const std::int64_t t0 = now_ns();
  st.warmup_until_ns = t0 + nanos(std::min(0.5, o.before / 4));
  auto new_phase = [&](std::int64_t at, char const* kind, std::uint32_t k) {
    phases.push_back({at, kind, k});
    return st.add_phase(at);
  };
  std::uint32_t cur = 0;
  std::int64_t after_start = 0;
  cyc[0].calm_start = t0;
  cyc[0].calm_phase = new_phase(st.warmup_until_ns, "calm", 0);
  cyc[0].at_calm = sample_threads(o.server_pid);
  auto tick = [&](std::int64_t now) {
    for (auto id : to_close) eng.close(id);
    to_close.clear();
    cycle& k = cyc[cur];
    if (!k.storm_start) {
      if (now - k.calm_start >= nanos(o.before)) {
        k.at_storm = sample_threads(o.server_pid);
        k.storm_start = now;
        k.storm_phase = new_phase(now, "storm", cur);
        if (cur == 0) st.split_ns[0] = now;
        for (std::uint32_t i = 0; i < N; ++i)  // all at once
          k.ids.push_back(eng.open(role::idle, cur * N + i));
      }
      return true;
    }
    if (!k.storm_end) {
      if (k.resolved == N) {
        k.storm_end = now;
        k.at_end = sample_threads(o.server_pid);
        if (o.close_storm == close_when::end)
          for (auto id : k.ids) eng.close(id);
        if (cur + 1 < K) {
          new_phase(now, "gap", cur);
          cyc[cur + 1].calm_start = now + nanos(o.gap);
        } else {
          st.split_ns[1] = now;
          after_start = now;
          new_phase(now, "after", cur);
        }
      }
      return true;
    }
    if (cur + 1 < K) {
      if (now >= cyc[cur + 1].calm_start) {
        cycle& next = cyc[++cur];
        next.calm_start = now;
        next.calm_phase = new_phase(now, "calm", cur);
        next.at_calm = sample_threads(o.server_pid);
      }
      return true;
    }
    return now - k.storm_end < nanos(o.after);
  };
  auto d = drive(eng, so, senders, o.receivers, tick);
  const proc_sample s1 = sample_process(o.server_pid);
  const std::int64_t self1 = self_cpu_ns();

  // Per cycle, and pooled over the cycles whose storm finished.
  histogram calm_all, storm_all;
  std::vector<double> ratios;
  std::size_t signed_in = 0, failed = 0, finished_cycles = 0;
  double storm_total_s = 0;
  int last_failure = 0;
  std::string per_cycle = "[";
  for (std::uint32_t i = 0; i < K; ++i) {
    cycle const& k = cyc[i];
    if (!k.storm_start) break;
    signed_in += k.ready;
    failed += k.resolved - k.ready;
    if (k.last_failure) last_failure = k.last_failure;
    const double storm_s = k.last_ready ? seconds(k.last_ready - k.storm_start) : 0;
    storm_total_s += storm_s;
    histogram const& calm = st.phase_latency[k.calm_phase];
    histogram const& storm = st.phase_latency[k.storm_phase];
    record c;
    c.raw("calm_ms", latency_json(calm)).raw("storm_ms", latency_json(storm));
    if (k.storm_end) {
      ++finished_cycles;
      calm_all.merge(calm);
      storm_all.merge(storm);
      ratios.push_back(p99_ratio(storm, calm));
      c.num("p99_ratio", ratios.back(), 2);
    }
    c.num("storm_s", storm_s)
        .integer("signed_in", static_cast<std::int64_t>(k.ready))
        .integer("failed", static_cast<std::int64_t>(k.resolved - k.ready))
        .num("signins_per_s", storm_s > 0 ? static_cast<double>(k.ready) / storm_s : 0, 1)
        .raw("calm_cpu_pct", thread_cpu_json(k.at_calm, k.at_storm, k.storm_start - k.calm_start));
    if (k.storm_end)
      c.raw("storm_cpu_pct", thread_cpu_json(k.at_storm, k.at_end, k.storm_end - k.storm_start));
    if (i) per_cycle += ',';
    per_cycle += c.json();
  }
  per_cycle += "]";
  const bool finished = finished_cycles == K;
  static const histogram none;
  histogram const& after = after_start ? st.phase_latency.back() : none;
  const double ratio = p99_ratio(storm_all, calm_all);
  const double median_ratio = median_of(ratios);
  const double signins_per_s = storm_total_s > 0 ? static_cast<double>(signed_in) / storm_total_s : 0;

  record r;
  r.str("scenario", "storm").str("proto", "jim");
  if (!o.label.empty()) r.str("label", o.label);
  r.integer("receivers", o.receivers)
      .integer("senders", o.senders)
      .num("rate", o.rate, 1)
      .integer("payload", o.payload)
      .integer("storm_users", N)
      .num("setup_s", setup_s)
      .integer("setup_retries", static_cast<std::int64_t>(op.retried))
      .num("before_s", o.before)
      .num("storm_s", storm_total_s)
      .integer("storm_signed_in", static_cast<std::int64_t>(signed_in))
      .integer("storm_failed", static_cast<std::int64_t>(failed))
      .num("storm_signins_per_s", signins_per_s, 1)
      .boolean("storm_finished", finished);
  if (last_failure) r.integer("storm_last_failure", last_failure);
  r.raw("latency_before_ms", latency_json(calm_all))
      .raw("latency_during_ms", latency_json(storm_all))
      .raw("latency_after_ms", latency_json(after))
      .num("p99_during_over_before", ratio, 2)
      .integer("cycles", K)
      .integer("cycles_finished", static_cast<std::int64_t>(finished_cycles))
      .num("gap_s", K > 1 ? o.gap : 0)
      .str("storm_close", o.close_storm == close_when::never ? "never"
                          : o.close_storm == close_when::end ? "end"
                                                             : "answer");
  std::string list = "[";
  for (std::size_t i = 0; i < ratios.size(); ++i) {
    char num[32];
    std::snprintf(num, sizeof num, "%s%.2f", i ? "," : "", ratios[i]);
    list += num;
  }
  r.raw("cycle_p99_ratios", list + "]")
      .num("cycle_p99_ratio_median", median_ratio, 2)
      .num("p99_pooled_ratio", ratio, 2)
      .num("p50_pooled_ratio",
           calm_all.quantile(0.5) ? static_cast<double>(storm_all.quantile(0.5)) /
                                        static_cast<double>(calm_all.quantile(0.5))
                                  : 0,
           2)
      .raw("cycle", per_cycle);
  delivery_fields(r, eng, d, o.receivers, s0, s1, self0, self1);

  if (!o.trace.empty()) {
    if (FILE* f = std::fopen(o.trace.c_str(), "w")) {
      auto ms = [&](std::int64_t ns) { return static_cast<double>(ns - t0) / 1e6; };
      std::fprintf(f, "# jim-bench storm trace; times in ms from the first send\n"
                      "# phase,start_ms,kind,cycle | answer,at_ms,code,cycle | "
                      "msg,sent_ms,deliveries,mean_ms,max_ms\n");
      for (auto const& p : phases) std::fprintf(f, "phase,%.3f,%s,%u\n", ms(p.start), p.kind, p.cycle);
      for (auto const& a : answers) std::fprintf(f, "answer,%.3f,%d,%u\n", ms(a.at), a.code, a.cycle);
      for (auto const& m : st.messages)
        if (m.n)
          std::fprintf(f, "msg,%.3f,%u,%.3f,%.3f\n", ms(m.sent_ns), m.n,
                       static_cast<double>(m.sum_ns) / m.n / 1e6, static_cast<double>(m.max_ns) / 1e6);
      std::fclose(f);
    } else {
      r.str("trace_error", std::string("cannot write ") + o.trace + ": " + std::strerror(errno));
    }
  }

  char buf[512];
  std::snprintf(buf, sizeof buf,
                "storm jim R=%u S=%u rate=%s N=%u cycles=%u: %zu signed in within %.2f s (%s/s); "
                "chat latency calm: %s; during: %s; p99 x%.2f",
                o.receivers, o.senders, si(o.rate).c_str(), N, K, signed_in, storm_total_s,
                si(signins_per_s).c_str(), latency_text(calm_all).c_str(),
                latency_text(storm_all).c_str(), ratio);
  std::string human = buf;
  if (K > 1) {
    std::snprintf(buf, sizeof buf, " (per cycle: median x%.2f of", median_ratio);
    human += buf;
    for (double x : ratios) {
      std::snprintf(buf, sizeof buf, " %.2f", x);
      human += buf;
    }
    human += ")";
  }
  human += "; " + delivery_text(eng, d, o.receivers, s0, s1, self0, self1);
  if (!finished) human += " [storm did not finish within --max-time]";
  return {r.json(), human, finished ? 0 : 1};
}

namespace {

/// A blocking line client for the probe (one connection; no epoll needed).
class line_client {
 public:
  explicit line_client(engine_config const& cfg) {
    fd_ = ::socket(cfg.target.ss_family, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd_ < 0 || ::connect(fd_, reinterpret_cast<sockaddr const*>(&cfg.target), cfg.target_len) != 0)
      throw std::runtime_error(std::string("probe: connect: ") + std::strerror(errno));
    const int one = 1;
    setsockopt(fd_, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  }
  ~line_client() {
    if (fd_ >= 0) ::close(fd_);
  }
  line_client(line_client const&) = delete;
  line_client& operator=(line_client const&) = delete;

  void send(std::string const& line) {
    std::size_t off = 0;
    while (off < line.size()) {
      const ssize_t n = ::send(fd_, line.data() + off, line.size() - off, MSG_NOSIGNAL);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error(std::string("probe: send: ") + std::strerror(errno));
      off += static_cast<std::size_t>(n);
    }
  }
  /// The code of the next `{"response":N...` line (pushes are skipped); throws after
  /// `timeout_s` or when the server closes.
  int response(double timeout_s) {
    const std::int64_t deadline = now_ns() + nanos(timeout_s);
    for (;;) {
      for (auto nl = buf_.find('\n'); nl != std::string::npos; nl = buf_.find('\n')) {
        std::string line = buf_.substr(0, nl);
        buf_.erase(0, nl + 1);
        static constexpr std::string_view key = R"({"response":)";
        if (line.compare(0, key.size(), key) == 0) return std::atoi(line.c_str() + key.size());
      }
      const std::int64_t left = deadline - now_ns();
      if (left <= 0) throw std::runtime_error("probe: no reply within the timeout");
      pollfd pfd{fd_, POLLIN, 0};
      const int r = ::poll(&pfd, 1, static_cast<int>(left / 1'000'000) + 1);
      if (r < 0 && errno != EINTR) throw std::runtime_error("probe: poll failed");
      if (r <= 0) continue;
      char tmp[65536];
      const ssize_t n = ::recv(fd_, tmp, sizeof tmp, 0);
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error("probe: the server closed the connection");
      buf_.append(tmp, static_cast<std::size_t>(n));
    }
  }

 private:
  int fd_ = -1;
  std::string buf_;
};

}  // namespace

result run_probe(options const& o, engine_config base) {
  if (o.protocol != proto::jim) return failure(o, "the probe scenario is for jimd only");
  if (o.tls) return failure(o, "the probe speaks plaintext only");
  histogram h;
  std::uint64_t over_10ms = 0, over_100ms = 0;
  double worst_at_s = 0;
  std::int64_t t0 = 0, t1 = 0;
  const proc_sample s0 = sample_process(o.server_pid);
  try {
    line_client cl(base);
    char name[32];
    std::snprintf(name, sizeof name, "bp%08llx",
                  static_cast<unsigned long long>(now_ns()) & 0xffffffffULL);
    cl.send(std::string(R"({"action":"register","user":{"account_name":")") + name +
            R"(","password":")" + base.password + "\"}}\n");
    const int code = cl.response(o.setup_timeout);
    if (code != 201) return failure(o, "probe sign-in answered " + std::to_string(code));
    t0 = now_ns();
    const std::string rooms = "{\"action\":\"rooms\"}\n";
    std::uint64_t worst = 0;
    while (now_ns() - t0 < nanos(o.duration)) {
      const std::int64_t a = now_ns();
      cl.send(rooms);
      if (cl.response(10) != 200) return failure(o, "probe: rooms did not answer 200");
      const std::int64_t lat = now_ns() - a;
      h.record(lat);
      if (lat > 10'000'000) ++over_10ms;
      if (lat > 100'000'000) ++over_100ms;
      if (static_cast<std::uint64_t>(lat) > worst) {
        worst = static_cast<std::uint64_t>(lat);
        worst_at_s = seconds(a - t0);
      }
      if (o.interval_ms > 0) {
        const auto us = static_cast<useconds_t>(o.interval_ms * 1000);
        ::usleep(us);
      }
    }
    t1 = now_ns();
  } catch (std::exception const& e) {
    return failure(o, e.what());
  }
  const proc_sample s1 = sample_process(o.server_pid);
  record r;
  r.str("scenario", "probe").str("proto", "jim");
  if (!o.label.empty()) r.str("label", o.label);
  r.num("duration_s", seconds(t1 - t0))
      .integer("requests", static_cast<std::int64_t>(h.count()))
      .num("interval_ms", o.interval_ms)
      .raw("latency_ms", R"({"p50":)" + std::to_string(static_cast<double>(h.quantile(0.5)) / 1e6) +
                             R"(,"p99":)" + std::to_string(static_cast<double>(h.quantile(0.99)) / 1e6) +
                             R"(,"p999":)" + std::to_string(static_cast<double>(h.quantile(0.999)) / 1e6) +
                             R"(,"max":)" + std::to_string(static_cast<double>(h.max()) / 1e6) + "}")
      .integer("over_10ms", static_cast<std::int64_t>(over_10ms))
      .integer("over_100ms", static_cast<std::int64_t>(over_100ms))
      .num("worst_at_s", worst_at_s);
  if (s0.ok && s1.ok)
    r.num("server_cpu_s", static_cast<double>(s1.cpu_ns - s0.cpu_ns) / 1e9)
        .integer("server_rss_kib", s1.rss_kib)
        .integer("server_rss_peak_kib", s1.hwm_kib);
  char buf[256];
  std::snprintf(buf, sizeof buf,
                "probe jim: %llu requests in %.1f s: p50 %.2f ms p99 %.2f ms p99.9 %.2f ms max %.2f "
                "ms (at %.1f s), %llu over 10 ms",
                static_cast<unsigned long long>(h.count()), seconds(t1 - t0),
                static_cast<double>(h.quantile(0.5)) / 1e6,
                static_cast<double>(h.quantile(0.99)) / 1e6,
                static_cast<double>(h.quantile(0.999)) / 1e6, static_cast<double>(h.max()) / 1e6,
                worst_at_s, static_cast<unsigned long long>(over_10ms));
  return {r.json(), buf, 0};
}

}  // namespace jim::bench
