#pragma once
/// \file
/// The daemon: listeners, the session set, signals, autosave and TTL timers, orderly shutdown.

#include "options.hpp"

#include <memory>

namespace jim::server {

class server {
 public:
  explicit server(config cfg);
  ~server();
  server(server const&) = delete;
  server& operator=(server const&) = delete;

  /// Loads the snapshot, listens, serves until SIGINT/SIGTERM, saves. Returns the exit code.
  int run();

 private:
  struct impl;
  std::unique_ptr<impl> impl_;
};

}  // namespace jim::server
