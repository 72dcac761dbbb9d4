#pragma once
/// \file
/// Options set once on a listening socket instead of once per accepted connection, and an
/// accept that hands out sockets already non-blocking (no ioctl per connection).

#include <boost/asio/ip/tcp.hpp>

namespace jim::server::net {

/// Sets TCP_NODELAY on the JIM listener `acceptor` (open). Linux makes each socket accept()
/// returns as a copy of the listening one (sk_clone_lock, net/core/sock.c), TCP_NODELAY
/// included, so a session need not set it with a setsockopt of its own (a reconnect storm pays
/// one system call less per connection; tests/server/test_listener.cpp checks the copy).
/// Returns whether accepted sockets have it; false (the option could not be set, or not
/// Linux): each session sets it itself. I/O thread, before accepting.
bool configure_listener(boost::asio::ip::tcp::acceptor& acceptor);

/// Accepts one pending connection without waiting: accept4(SOCK_NONBLOCK | SOCK_CLOEXEC) on
/// `acceptor` (open; made non-blocking by the first call, one ioctl per listener), `peer` set
/// to the peer's address. Returns the connection, registered with `acceptor`'s executor and
/// already known to Asio as non-blocking: Boost 1.81 accepts with plain accept(), after which
/// the socket costs an ioctl(FIONBIO) (non_blocking(true), or the first asynchronous operation)
/// and, as Asio marks an adopted descriptor "possibly dup()ed", an epoll_ctl(DEL) before its
/// close — two system calls per connection saved (nginx accepts with accept4 for the first).
/// On failure returns a closed socket with `ec` set: would_block when no connection is
/// pending (wait for the acceptor to be readable), else accept's error (connection_aborted,
/// no_descriptors, ...). Not Linux: Asio's accept, then non_blocking(true).
/// I/O thread.
boost::asio::ip::tcp::socket accept_now(boost::asio::ip::tcp::acceptor& acceptor,
                                        boost::asio::ip::tcp::endpoint& peer,
                                        boost::system::error_code& ec);

/// Makes `socket` (open) non-blocking for its synchronous operations (read_some, write_some
/// return would_block instead of waiting): like socket.non_blocking(true), without the ioctl
/// when the descriptor is already non-blocking (accept_now(), or after an asynchronous
/// operation). I/O thread.
void set_non_blocking(boost::asio::ip::tcp::socket& socket, boost::system::error_code& ec);

}  // namespace jim::server::net
