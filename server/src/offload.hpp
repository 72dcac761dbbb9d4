#pragma once
/// \file
/// Runs CPU- or disk-bound work on a thread pool and resumes the awaiting coroutine on its own
/// executor. Only a plain function runs on the pool: no coroutine frame is created or freed
/// there (Asio recycles frame memory per thread).

#include "ops/metrics.hpp"

#include <boost/asio/async_result.hpp>
#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <exception>
#include <memory>
#include <optional>
#include <type_traits>

namespace jim::server {

/// `co_await offload(pool, f)` returns f()'s result or rethrows its exception.
/// GCC 12 mis-relocates non-trivial temporaries inside co_await expressions: pass a named
/// function object (`auto job = ...; co_await offload(pool, std::move(job));`).
template <class Pool, class F>
boost::asio::awaitable<std::invoke_result_t<F>> offload(Pool& pool, F f) {
  namespace asio = boost::asio;
  using result = std::invoke_result_t<F>;
  auto box = std::make_shared<std::optional<result>>();
  auto initiate = [&pool, box](auto handler, F fn) {
    auto work = asio::make_work_guard(handler);
    asio::post(pool, [handler = std::move(handler), work = std::move(work), box,
                      fn = std::move(fn), ticket = ops::hashing_ticket()]() mutable {
      ticket.started();  // the queue length and wait of /metrics (the pool hashes passwords)
      std::exception_ptr error;
      try {
        box->emplace(fn());
      } catch (...) {
        error = std::current_exception();
      }
      auto ex = work.get_executor();
      asio::post(ex,
                 [handler = std::move(handler), error]() mutable { std::move(handler)(error); });
    });
  };
  co_await asio::async_initiate<decltype(asio::use_awaitable), void(std::exception_ptr)>(
      initiate, asio::use_awaitable, std::move(f));
  result value = std::move(**box);
  co_return value;
}

}  // namespace jim::server
