#pragma once
/// \file
/// The descriptor budget: at start the daemon raises its soft RLIMIT_NOFILE to what
/// --max-clients needs, up to the hard limit, so that a full server answers 503 instead of
/// failing accept() with EMFILE (connections then wait unanswered in the listen backlog).

#include <cstddef>
#include <string>

namespace jim::server::net {

/// Descriptors kept for everything but client connections: standard streams, epoll, the
/// listeners, log files, the journal and snapshot files, eventfds and signal pipes (about 30
/// today), with room to spare.
inline constexpr std::size_t fd_reserve = 64;
/// Connections being refused at once (each answered with its 503/429 and closed within 5 s);
/// beyond these a refusal is written without waiting and closed at once.
inline constexpr std::size_t max_refusals_in_flight = 64;

/// What ensure_fd_limit() found and did.
struct fd_limit_report {
  std::size_t needed = 0;     ///< descriptors --max-clients needs
  std::size_t soft_before = 0;
  std::size_t soft_after = 0;
  std::size_t hard = 0;       ///< SIZE_MAX: unlimited
  std::size_t servable = 0;   ///< clients the soft limit now allows (>= max_clients: all)
  std::string error;          ///< getrlimit/setrlimit failure text, if any
};

/// Descriptors needed for `max_clients` connections.
std::size_t fds_needed(std::size_t max_clients);

/// Raises the soft RLIMIT_NOFILE to fds_needed(max_clients) (never lowers it), capped by the
/// hard limit. Call once at start, before any connection.
fd_limit_report ensure_fd_limit(std::size_t max_clients);

}  // namespace jim::server::net
