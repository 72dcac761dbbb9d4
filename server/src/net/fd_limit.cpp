#include "net/fd_limit.hpp"

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstring>
#include <sys/resource.h>

namespace jim::server::net {

namespace {
std::size_t as_size(rlim_t v) {
  return v == RLIM_INFINITY ? SIZE_MAX : static_cast<std::size_t>(v);
}
}  // namespace

std::size_t fds_needed(std::size_t max_clients) {
  return max_clients + max_refusals_in_flight + fd_reserve;
}

fd_limit_report ensure_fd_limit(std::size_t max_clients) {
  fd_limit_report r;
  r.needed = fds_needed(max_clients);
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) {
    r.error = std::string("getrlimit: ") + std::strerror(errno);
    r.servable = max_clients;
    return r;
  }
  r.soft_before = r.soft_after = as_size(lim.rlim_cur);
  r.hard = as_size(lim.rlim_max);
  if (r.soft_before < r.needed) {
    const std::size_t target = std::min(r.needed, r.hard);
    rlimit raised = lim;
    raised.rlim_cur = static_cast<rlim_t>(target);
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0)
      r.soft_after = target;
    else
      r.error = std::string("setrlimit: ") + std::strerror(errno);
  }
  const std::size_t overhead = max_refusals_in_flight + fd_reserve;
  r.servable = r.soft_after > overhead ? r.soft_after - overhead : 1;
  if (r.soft_after >= r.needed) r.servable = std::max(r.servable, max_clients);
  return r;
}

}  // namespace jim::server::net
