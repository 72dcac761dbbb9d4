#include "ops/ops_http.hpp"

#include "hub.hpp"
#include "ops/metrics.hpp"
#include "options.hpp"
#include "session.hpp"

#include <boost/beast/http/field.hpp>
#include <boost/beast/http/status.hpp>
#include <boost/beast/http/verb.hpp>

namespace jim::server::ops {

namespace http = boost::beast::http;

std::optional<http::response<http::string_body>> respond(
    server_context const& ctx, std::optional<boost::asio::ip::address> const& peer,
    http::request<http::string_body> const& req) {
  std::string_view target = req.target();
  target = target.substr(0, target.find_first_of("?#"));
  if (target != "/metrics" && target != "/healthz") return std::nullopt;

  http::response<http::string_body> res{http::status::ok, req.version()};
  res.set(http::field::server, version_string);
  res.set(http::field::cache_control, "no-store");
  res.set("X-Content-Type-Options", "nosniff");
  res.set(http::field::content_type, "text/plain; charset=utf-8");
  res.keep_alive(req.keep_alive());
  std::string error;
  // Checked by parse_options; parsed per request (a scrape every few seconds: a microsecond).
  const auto allowed = cidr_list::parse(ctx.cfg.metrics_allow, error);
  if (!peer || !allowed || !allowed->contains(*peer)) {
    res.result(http::status::forbidden);
    res.body() = "forbidden: this address is not in --metrics-allow\n";
  } else if (req.method() != http::verb::get && req.method() != http::verb::head) {
    res.result(http::status::method_not_allowed);
    res.set(http::field::allow, "GET, HEAD");
    res.body() = "GET or HEAD only\n";
  } else if (target == "/healthz") {
    if (ctx.stopping) {
      res.result(http::status::service_unavailable);
      res.body() = "shutting down\n";
    } else if (stats.storage_failing.get() != 0) {
      res.result(http::status::service_unavailable);
      res.body() = "storage unavailable\n";
    } else {
      res.body() = "ok\n";
    }
  } else {
    res.set(http::field::content_type, content_type);
    res.body() = stats.render({.signed_in = ctx.chat.online_count(),
                              .accepting = !ctx.stopping,
                              .pending = ctx.handshaking});
  }
  res.prepare_payload();
  if (req.method() == http::verb::head) {
    const auto size = res.body().size();
    res.body().clear();
    res.content_length(size);
  }
  return res;
}

}  // namespace jim::server::ops
