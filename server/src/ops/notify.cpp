#include "ops/notify.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <string>

#ifdef JIM_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#endif

namespace jim::server::ops {

namespace {
void send([[maybe_unused]] std::string const& state) noexcept {
#ifdef JIM_HAVE_SYSTEMD
  sd_notify(0, state.c_str());  // a no-op (returns 0) without NOTIFY_SOCKET
#endif
}
}  // namespace

bool systemd_support() noexcept {
#ifdef JIM_HAVE_SYSTEMD
  return true;
#else
  return false;
#endif
}

void notify_ready(std::string_view status) noexcept {
  send("READY=1\nSTATUS=" + std::string(status));
}

void notify_stopping(std::string_view status) noexcept {
  send("STOPPING=1\nSTATUS=" + std::string(status));
}

std::optional<std::chrono::microseconds> watchdog_interval() noexcept {
#ifdef JIM_HAVE_SYSTEMD
  std::uint64_t usec = 0;
  if (sd_watchdog_enabled(0, &usec) > 0 && usec > 0)
    return std::chrono::microseconds(static_cast<std::int64_t>(usec));
#endif
  return std::nullopt;
}

boost::asio::awaitable<void> watchdog_loop() {
  namespace asio = boost::asio;
  const auto interval = watchdog_interval();
  if (!interval) co_return;
  asio::steady_timer timer(co_await asio::this_coro::executor);
  for (;;) {
    send("WATCHDOG=1");
    timer.expires_after(*interval / 2);
    auto [ec] = co_await timer.async_wait(asio::as_tuple(asio::use_awaitable));
    if (ec) co_return;
  }
}

}  // namespace jim::server::ops
