#include "net/listener.hpp"

#include <boost/version.hpp>

#ifdef __linux__
#include <cerrno>
#include <sys/socket.h>
#include <unistd.h>
#endif

namespace jim::server::net {

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
// Asio keeps a socket's flags in its implementation (detail::socket_ops::state_type), reached
// through basic_socket's protected `impl_`: a pointer to that member taken in a derived class
// applies to any socket. Checked for Boost 1.81's layout (Debian 12); another version must be
// checked again (the flags' meaning: boost/asio/detail/socket_ops.hpp).
static_assert(BOOST_VERSION / 100 == 1081, "check Asio's socket state flags for this Boost");
struct state_access : tcp::socket {
  static asio::detail::socket_ops::state_type& state(tcp::socket& s) {
    return (s.*&state_access::impl_).get_implementation().state_;
  }
};
}  // namespace

bool configure_listener(tcp::acceptor& acceptor) {
#ifdef __linux__
  boost::system::error_code ec;
  acceptor.set_option(tcp::no_delay(true), ec);
  return !ec;
#else
  (void)acceptor;
  return false;
#endif
}

tcp::socket accept_now(tcp::acceptor& acceptor, tcp::endpoint& peer,
                       boost::system::error_code& ec) {
  tcp::socket socket(acceptor.get_executor());
  ec = {};
  if (!acceptor.non_blocking()) {
    acceptor.non_blocking(true, ec);
    if (ec) return socket;
  }
#ifdef __linux__
  for (;;) {
    socklen_t len = static_cast<socklen_t>(peer.capacity());
    const int fd = ::accept4(acceptor.native_handle(), peer.data(), &len,
                             SOCK_NONBLOCK | SOCK_CLOEXEC);
    if (fd < 0) {
      if (errno == EINTR) continue;
      ec = boost::system::error_code(errno, asio::error::get_system_category());
      return socket;
    }
    peer.resize(len);
    socket.assign(peer.protocol(), fd, ec);
    if (ec) {
      ::close(fd);
      return socket;
    }
    // A fresh descriptor of ours alone, non-blocking since accept4.
    auto& state = state_access::state(socket);
    state |= asio::detail::socket_ops::user_set_non_blocking |
             asio::detail::socket_ops::internal_non_blocking;
    state &= static_cast<asio::detail::socket_ops::state_type>(
        ~asio::detail::socket_ops::possible_dup);
    return socket;
  }
#else
  acceptor.accept(socket, peer, ec);
  if (!ec) socket.non_blocking(true, ec);
  return socket;
#endif
}

void set_non_blocking(tcp::socket& socket, boost::system::error_code& ec) {
  ec = {};
  auto& state = state_access::state(socket);
  if (state & asio::detail::socket_ops::internal_non_blocking)
    state |= asio::detail::socket_ops::user_set_non_blocking;
  else
    socket.non_blocking(true, ec);
}

}  // namespace jim::server::net
