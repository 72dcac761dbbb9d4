#pragma once
/// \file
/// An io_context with a thread of its own, for tests that drive components living on it (the
/// cluster tests' nodes), and eventually() to wait (bounded) for what they do.

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>

#include <chrono>
#include <future>
#include <stdexcept>
#include <thread>
#include <utility>

namespace jim::test {

/// An io_context (concurrency hint 1) run by a thread of its own from start() until stop() or
/// destruction. Components that live on it are made with context() before start(); closed
/// with call() and the thread stopped before they are destroyed (declare it before them).
///
/// @par Thread Safety
/// call() from any thread but the I/O thread itself; start() and stop() from the owner's.
class io_thread {
 public:
  io_thread() = default;
  ~io_thread() { stop(); }
  io_thread(io_thread const&) = delete;
  io_thread& operator=(io_thread const&) = delete;

  boost::asio::io_context& context() { return ioc_; }
  void start() { thread_ = std::thread([this] { ioc_.run(); }); }
  /// Lets the thread end and joins it (once; later calls do nothing).
  void stop() {
    work_.reset();
    ioc_.stop();
    if (thread_.joinable()) thread_.join();
  }
  /// Runs `f` on the I/O thread and returns its result; throws std::runtime_error when it has
  /// not run within 20 s.
  template <class F>
  auto call(F f) -> decltype(f()) {
    std::packaged_task<decltype(f())()> task(std::move(f));
    auto fut = task.get_future();
    boost::asio::post(ioc_, [&task] { task(); });
    if (fut.wait_for(std::chrono::seconds(20)) != std::future_status::ready)
      throw std::runtime_error("call timed out");
    return fut.get();
  }

 private:
  boost::asio::io_context ioc_{1};
  boost::asio::executor_work_guard<boost::asio::io_context::executor_type> work_ =
      boost::asio::make_work_guard(ioc_);
  std::thread thread_;
};

/// Polls `pred` on the calling thread every 10 ms until it holds (true) or `bound` has passed
/// (false).
template <class P>
bool eventually(P pred, std::chrono::milliseconds bound = std::chrono::seconds(30)) {
  const auto deadline = std::chrono::steady_clock::now() + bound;
  for (;;) {
    if (pred()) return true;
    if (std::chrono::steady_clock::now() > deadline) return false;
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
}

}  // namespace jim::test
