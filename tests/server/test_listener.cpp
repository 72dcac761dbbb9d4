// net::configure_listener: TCP_NODELAY set once on the JIM listener reaches every accepted
// socket (Linux copies the listener's options to each socket accept() returns), which is why a
// session no longer sets it itself. Over 127.0.0.1 with an ephemeral port.

#include "net/listener.hpp"

#include <catch2/catch.hpp>

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>

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
  asio::io_context ioc;
  tcp::acceptor a(ioc);
  boost::system::error_code ec;
  a.open(tcp::v6(), ec);
  if (!ec) a.set_option(asio::ip::v6_only(false), ec);
  if (!ec) a.bind(tcp::endpoint(asio::ip::address_v6::any(), 0), ec);
  if (!ec) a.listen(asio::socket_base::max_listen_connections, ec);
  if (ec) {
    WARN("no IPv6 on this machine, nothing to check: " << ec.message());
    return;
  }
  REQUIRE(jim::server::net::configure_listener(a));
  const auto port = a.local_endpoint().port();
  for (auto const& to : {tcp::endpoint(asio::ip::address_v4::loopback(), port),
                         tcp::endpoint(asio::ip::address_v6::loopback(), port)}) {
    tcp::socket client(ioc);
    client.connect(to, ec);
    if (ec) continue;  // ::1 may be missing where IPv6 is half configured
    tcp::socket accepted = a.accept();
    tcp::no_delay option;
    accepted.get_option(option);
    CHECK(option.value());
  }
}
