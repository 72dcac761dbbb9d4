// net::configure_listener: TCP_NODELAY set once on the JIM listener reaches every accepted
// socket (Linux copies the listener's options to each socket accept() returns), which is why a
// session no longer sets it itself. Over 127.0.0.1 with an ephemeral port.

#include "net/listener.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ip/v6_only.hpp>
#include <boost/asio/write.hpp>

#include <fcntl.h>

namespace asio = boost::asio;
using tcp = asio::ip::tcp;

namespace {
/// Accepts one connection on `acceptor` and returns whether it has TCP_NODELAY.
bool accepted_has_nodelay(asio::io_context& ioc, tcp::acceptor& acceptor) {
  tcp::socket client(ioc);
  client.connect(acceptor.local_endpoint());  // completes from the backlog: no accept needed
  tcp::endpoint peer;
  tcp::socket accepted = acceptor.accept(peer);
  CHECK(peer == client.local_endpoint());  // accept()'s address is the peer's, as getpeername's
  tcp::no_delay option;
  accepted.get_option(option);
  return option.value();
}

tcp::acceptor loopback_listener(asio::io_context& ioc) {
  tcp::acceptor a(ioc, tcp::endpoint(asio::ip::address_v4::loopback(), 0));
  return a;
}
}  // namespace

TEST_CASE("Sockets accepted on a listener with TCP_NODELAY have it, those on a plain one not",
          "[listener]") {
  asio::io_context ioc;
  auto plain = loopback_listener(ioc);
  CHECK_FALSE(accepted_has_nodelay(ioc, plain));  // the default: Nagle on

  auto jim = loopback_listener(ioc);
  REQUIRE(jim::server::net::configure_listener(jim));
  for (int i = 0; i < 3; ++i) CHECK(accepted_has_nodelay(ioc, jim));
}

TEST_CASE("TCP_NODELAY set on a dual-stack IPv6 listener reaches IPv4 and IPv6 peers",
          "[listener]") {
  // jimd's default listener is one IPv6 socket for both families (v6_only off, on ::). Here
  // the same kind of socket on loopback only: IPv4 peers through ::ffff:127.0.0.1, IPv6 peers
  // through ::1.
  asio::io_context ioc;
  for (char const* at : {"::ffff:127.0.0.1", "::1"}) {
    tcp::acceptor a(ioc);
    boost::system::error_code ec;
    a.open(tcp::v6(), ec);
    if (!ec) a.set_option(asio::ip::v6_only(false), ec);
    if (!ec) a.bind(tcp::endpoint(asio::ip::make_address_v6(at), 0), ec);
    if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
    if (ec) {
      WARN("no IPv6 listener on " << at << ", nothing to check: " << ec.message());
      continue;
    }
    REQUIRE(jim::server::net::configure_listener(a));
    tcp::socket client(ioc);
    client.connect(a.local_endpoint(), ec);  // an IPv4 connection for the mapped address
    if (ec) {
      WARN("cannot connect to " << at << ": " << ec.message());
      continue;
    }
    tcp::socket accepted = a.accept();
    tcp::no_delay option;
    accepted.get_option(option);
    CHECK(option.value());
  }
}

TEST_CASE("accept_now hands out non-blocking sockets, and would_block when none is pending",
          "[listener]") {
  // Asio's own accept() gives a blocking descriptor: a session then paid an ioctl(FIONBIO).
  asio::io_context ioc;
  auto a = loopback_listener(ioc);
  tcp::endpoint peer;
  boost::system::error_code ec;
  tcp::socket none = jim::server::net::accept_now(a, peer, ec);
  CHECK(ec == asio::error::would_block);  // no connection pending: the caller waits
  CHECK_FALSE(none.is_open());

  tcp::socket client(ioc);
  client.connect(a.local_endpoint());
  tcp::socket accepted(ioc);
  for (int i = 0; i < 1000; ++i) {  // the connection is in the backlog once connect() returns
    accepted = jim::server::net::accept_now(a, peer, ec);
    if (ec != asio::error::would_block) break;
  }
  REQUIRE_FALSE(ec);
  REQUIRE(accepted.is_open());
  CHECK(peer == client.local_endpoint());
  const int flags = ::fcntl(accepted.native_handle(), F_GETFL);
  CHECK((flags & O_NONBLOCK) != 0);
  CHECK((::fcntl(accepted.native_handle(), F_GETFD) & FD_CLOEXEC) != 0);
  CHECK(accepted.non_blocking());  // Asio knows: read_some returns would_block, never waits
  char byte = 0;
  accepted.read_some(asio::buffer(&byte, 1), ec);
  CHECK(ec == asio::error::would_block);
  // And it works as a socket: bytes both ways, then an orderly end.
  asio::write(client, asio::buffer("x", 1));
  std::size_t n = 0;
  for (int i = 0; i < 1000 && n == 0; ++i) {
    n = accepted.read_some(asio::buffer(&byte, 1), ec);
    if (ec == asio::error::would_block) accepted.wait(tcp::socket::wait_read);
  }
  CHECK(n == 1);
  CHECK(byte == 'x');
  accepted.close();
  client.read_some(asio::buffer(&byte, 1), ec);
  CHECK(ec == asio::error::eof);
}

TEST_CASE("set_non_blocking makes a blocking socket non-blocking", "[listener]") {
  asio::io_context ioc;
  auto a = loopback_listener(ioc);
  tcp::socket client(ioc);
  client.connect(a.local_endpoint());
  tcp::socket accepted = a.accept();  // Asio's accept: blocking
  CHECK((::fcntl(accepted.native_handle(), F_GETFL) & O_NONBLOCK) == 0);
  boost::system::error_code ec;
  jim::server::net::set_non_blocking(accepted, ec);
  REQUIRE_FALSE(ec);
  CHECK((::fcntl(accepted.native_handle(), F_GETFL) & O_NONBLOCK) != 0);
  char byte = 0;
  accepted.read_some(asio::buffer(&byte, 1), ec);
  CHECK(ec == asio::error::would_block);
}
