#pragma once
/// \file
/// The one thing the chat needs from storage: "append this event, tell me when it is durable".
/// The journal (store/journal.hpp) implements it; a replicated log could too.

#include "store/events.hpp"

#include <functional>

namespace jim::server::store {

class event_log {
 public:
  /// Called on the I/O thread, in the order of append(): with the event as stored once it is
  /// durable (per the log's fsync mode), or with nullptr when it could not be stored (then
  /// nothing of it was kept, and neither was anything appended after it that is still pending).
  using done_fn = std::function<void(event const* stored)>;

  /// Appends `e`. Call on the I/O thread; never blocks it.
  virtual void append(event e, done_fn done) = 0;

 protected:
  ~event_log() = default;
};

}  // namespace jim::server::store
