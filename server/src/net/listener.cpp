#include "net/listener.hpp"

namespace jim::server::net {

bool configure_listener(boost::asio::ip::tcp::acceptor& acceptor) {
#ifdef __linux__
  boost::system::error_code ec;
  acceptor.set_option(boost::asio::ip::tcp::no_delay(true), ec);
  return !ec;
#else
  (void)acceptor;
  return false;
#endif
}

}  // namespace jim::server::net
