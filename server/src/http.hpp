#pragma once
/// \file
/// The HTTP listener (Boost.Beast): serves the embedded web client and upgrades `/chat` to a
/// WebSocket session that carries the very same frames as TCP, one frame per text message.

#include <boost/asio/awaitable.hpp>
#include <boost/asio/ip/tcp.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace jim::server {

struct server_context;

/// Serves one HTTP connection: the web client's files, or an upgrade of `/chat` to a
/// WebSocket session (numbered from `next_id`, shared with the TCP listener).
boost::asio::awaitable<void> serve_http(server_context& ctx, boost::asio::ip::tcp::socket socket,
                                        std::uint64_t& next_id);

/// Whether a WebSocket upgrade from `origin` to `host` is allowed: no Origin header (not a
/// browser), an Origin in the comma-separated `allowed` list, or — when the list is empty —
/// an Origin naming the same host and port as the Host header.
bool origin_allowed(std::string_view origin, std::string_view host, std::string_view allowed);

}  // namespace jim::server
