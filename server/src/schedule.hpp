#pragma once
/// \file
/// Scheduled messages (contract: "Edits, schedules, moderation, contacts"): the timer that
/// posts them. The pending schedules are hub state (message_scheduled, schedule_cancelled and
/// schedule_due events, snapshotted); this is only the clock: one system_timer on the I/O
/// thread, armed for the earliest pending time (not one per schedule), re-armed whenever the
/// hub says the schedules changed. When it fires, hub::post_due proposes a schedule_due per
/// due message through the normal journaled path (durable like any message before anyone
/// sees it).
///
/// @par Thread Safety
/// Everything runs on the I/O thread.

#include <boost/asio/io_context.hpp>
#include <boost/asio/system_timer.hpp>

namespace jim::server {

class hub;

class scheduler {
 public:
  /// Hooks itself into `h` (hub::set_schedule_hook); call start() once serving.
  scheduler(boost::asio::io_context& ioc, hub& h);
  scheduler(scheduler const&) = delete;
  scheduler& operator=(scheduler const&) = delete;
  ~scheduler();

  /// Arms the timer for the earliest pending schedule: one that fell due while the daemon was
  /// down is posted at once (its time is the start-up time).
  void start();
  /// Stops posting (shutdown); the pending schedules stay in the state.
  void stop();

 private:
  void arm();
  void fire();

  boost::asio::system_timer timer_;
  hub& hub_;
  bool running_ = false;
};

}  // namespace jim::server
