#pragma once
/// \file
/// `/metrics` and `/healthz` on the HTTP port, for clients in --metrics-allow.

#include <boost/asio/ip/address.hpp>
#include <boost/beast/http/message.hpp>
#include <boost/beast/http/string_body.hpp>

#include <optional>

namespace jim::server {
struct server_context;
}

namespace jim::server::ops {

/// The answer to GET/HEAD `/metrics` or `/healthz` (a query string is ignored), or nullopt for
/// any other target (the caller serves it). A peer outside `--metrics-allow` (or whose address
/// is unknown: `peer` nullopt) gets 403; another method than GET/HEAD gets 405.
/// - `/metrics`: 200, the Prometheus text format 0.0.4 (metrics::render).
/// - `/healthz`: 200 "ok" while connections are accepted and the journal stores changes;
///   503 "shutting down" or "storage unavailable" otherwise.
/// HEAD: the same headers, no body. I/O thread only (reads `ctx`).
std::optional<boost::beast::http::response<boost::beast::http::string_body>> respond(
    server_context const& ctx, std::optional<boost::asio::ip::address> const& peer,
    boost::beast::http::request<boost::beast::http::string_body> const& req);

}  // namespace jim::server::ops
