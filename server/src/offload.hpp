#pragma once
/// \file
/// Runs CPU- or disk-bound work on a thread pool and resumes the awaiting coroutine on its own
/// executor. Only a plain function runs on the pool: no coroutine frame is created or freed
/// there (Asio recycles frame memory per thread).

#include "ops/metrics.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/thread_pool.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstdint>
#include <exception>
#include <memory>
#include <optional>
#include <type_traits>

namespace jim::server {

/// The password-hashing queue in front of a thread pool: a job runs on the pool and its result
/// resumes the awaiting coroutine on its own executor, but a job that has
/// not started within `max_wait` (the pool busy with earlier sign-ins, or starved of CPU by
/// other processes) is given up and never runs, and a job is refused at once when the queue
/// holds `max_pending` jobs or the jobs ahead would surely take longer than `max_wait`. The
/// caller then answers 503 with retry_after() instead of leaving the client waiting.
///
/// @par Thread Safety
/// run() and retry_after() on the I/O thread; the jobs run on the pool. The counters shared
/// with the pool are atomics held by a shared_ptr, so a job left in the pool at destruction
/// touches no freed memory.
class hash_queue {
 public:
  using clock = std::chrono::steady_clock;

  /// `threads`: the pool's threads (for the estimate of how long the queue takes to drain).
  hash_queue(boost::asio::thread_pool& pool, std::size_t threads, clock::duration max_wait,
             std::size_t max_pending)
      : pool_(pool),
        threads_(std::max<std::size_t>(1, threads)),
        max_wait_(max_wait),
        max_pending_(max_pending),
        stats_(std::make_shared<stats>()) {}

  /// `co_await run(f)`: f()'s result (or its exception rethrown), or std::nullopt when the job
  /// was refused or waited longer than `max_wait` to start. A started job always finishes.
  /// Pass a named function object: GCC 12 mis-relocates non-trivial temporaries inside
  /// co_await expressions (`auto job = ...; co_await q.run(std::move(job));`).
  template <class F>
  boost::asio::awaitable<std::optional<std::invoke_result_t<F>>> run(F f) {
    namespace asio = boost::asio;
    using result = std::invoke_result_t<F>;
    const auto pending = stats_->pending.load();
    if (pending >= max_pending_ || estimate(pending) > max_wait_) co_return std::nullopt;
    struct job {
      std::atomic<int> phase{queued};
      ops::hashing_ticket ticket;           // the queue length and wait of /metrics
      std::optional<result> value;          // written by the pool before `done` is posted
      std::exception_ptr error;
      asio::steady_timer* waiter = nullptr;  // I/O thread only
      bool done = false;                     // I/O thread only
    };
    auto st = std::make_shared<job>();
    auto ex = co_await asio::this_coro::executor;
    asio::steady_timer timer(ex, clock::now() + max_wait_);
    st->waiter = &timer;
    ++stats_->pending;
    asio::post(pool_, [st, ex, stats = stats_, fn = std::move(f)]() mutable {
      int expected = queued;
      if (!st->phase.compare_exchange_strong(expected, running)) return;  // given up
      st->ticket.started();
      --stats->pending;
      const auto t0 = clock::now();
      try {
        st->value.emplace(fn());
      } catch (...) {
        st->error = std::current_exception();
      }
      stats->record(clock::now() - t0);
      asio::post(ex, [st] {
        st->done = true;
        if (st->waiter) st->waiter->cancel();
      });
    });
    for (;;) {
      co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
      if (st->done) break;
      int expected = queued;
      if (clock::now() >= timer.expiry() && st->phase.compare_exchange_strong(expected, abandoned)) {
        --stats_->pending;
        st->ticket.started();  // off the queue (it waited max_wait)
        st->waiter = nullptr;
        co_return std::nullopt;
      }
      timer.expires_at(clock::time_point::max());  // running: it finishes, and cancels this
    }
    st->waiter = nullptr;
    if (st->error) std::rethrow_exception(st->error);
    std::optional<result> out(std::move(st->value));
    co_return out;
  }

  /// Seconds a refused client should wait before trying again: the time the jobs queued now
  /// take to run (from the mean duration of recent jobs), at least 1, at most 60.
  double retry_after() const {
    const auto drain = estimate(stats_->pending.load() + 1);
    double s = std::ceil(std::chrono::duration<double>(drain).count());
    if (stats_->mean_ns.load() == 0)
      s = std::ceil(std::chrono::duration<double>(max_wait_).count());
    return std::clamp(s, 1.0, 60.0);
  }

  /// Jobs waiting to start.
  std::size_t pending() const { return stats_->pending.load(); }
  clock::duration max_wait() const { return max_wait_; }

 private:
  enum : int { queued, running, abandoned };
  struct stats {
    std::atomic<std::size_t> pending{0};
    std::atomic<std::int64_t> mean_ns{0};  ///< moving average of a job's duration (1/8 weight)
    void record(clock::duration d) {
      const auto ns = std::chrono::duration_cast<std::chrono::nanoseconds>(d).count();
      auto old = mean_ns.load();
      while (!mean_ns.compare_exchange_weak(old, old == 0 ? ns : old + (ns - old) / 8)) {
      }
    }
  };
  /// How long `jobs` queued jobs take to run on the pool.
  clock::duration estimate(std::size_t jobs) const {
    const auto mean = std::chrono::nanoseconds(stats_->mean_ns.load());
    return std::chrono::duration_cast<clock::duration>(mean * static_cast<std::int64_t>(jobs) /
                                                       static_cast<std::int64_t>(threads_));
  }

  boost::asio::thread_pool& pool_;
  std::size_t threads_;
  clock::duration max_wait_;
  std::size_t max_pending_;
  std::shared_ptr<stats> stats_;
};

}  // namespace jim::server
