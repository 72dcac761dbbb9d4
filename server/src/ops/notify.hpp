#pragma once
/// \file
/// The systemd service protocol (`Type=notify`, sd_notify(3)): READY=1 once connections are
/// accepted, STOPPING=1 when shutdown begins, WATCHDOG=1 from the I/O thread at half the
/// interval systemd asks for (`WatchdogSec=`, passed as WATCHDOG_USEC). Through libsystemd when
/// jimd is built with it (JIM_HAVE_SYSTEMD); otherwise every call does nothing. Without
/// NOTIFY_SOCKET (not started by systemd) every call does nothing either.

#include <boost/asio/awaitable.hpp>

#include <chrono>
#include <optional>
#include <string_view>

namespace jim::server::ops {

/// Whether this build can talk to systemd (linked with libsystemd).
bool systemd_support() noexcept;

/// READY=1 with a STATUS= line for `systemctl status`.
void notify_ready(std::string_view status) noexcept;
/// STOPPING=1 with a STATUS= line.
void notify_stopping(std::string_view status) noexcept;

/// The watchdog interval systemd expects pings within (WATCHDOG_USEC for this process), or
/// nullopt when the watchdog is off.
std::optional<std::chrono::microseconds> watchdog_interval() noexcept;

/// Sends WATCHDOG=1 every half `watchdog_interval()` until the coroutine is destroyed with its
/// io_context (never returns while the watchdog is on; returns at once when it is off). Runs
/// on the I/O thread: a stuck event loop stops the pings, and systemd restarts the daemon.
boost::asio::awaitable<void> watchdog_loop();

}  // namespace jim::server::ops
