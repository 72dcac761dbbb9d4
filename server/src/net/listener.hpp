#pragma once
/// \file
/// Options set once on a listening socket instead of once per accepted connection.

#include <boost/asio/ip/tcp.hpp>

namespace jim::server::net {

/// Sets TCP_NODELAY on the JIM listener `acceptor` (open). Linux makes each socket accept()
/// returns as a copy of the listening one (sk_clone_lock, net/core/sock.c), TCP_NODELAY
/// included, so a session need not set it with a setsockopt of its own (a reconnect storm pays
/// one system call less per connection; tests/server/test_listener.cpp checks the copy).
/// Returns whether accepted sockets have it; false (the option could not be set, or not
/// Linux): each session sets it itself. I/O thread, before accepting.
bool configure_listener(boost::asio::ip::tcp::acceptor& acceptor);

}  // namespace jim::server::net
