#include "connection.hpp"

#include "jim/codec.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/detached.hpp>
#include <boost/asio/ip/address.hpp>
#include <boost/asio/ssl/error.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <openssl/ssl.h>
#include <openssl/x509.h>
#include <openssl/x509_vfy.h>

#include <stdexcept>

namespace jim::client {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace json = boost::json;
using asio::awaitable;

namespace {
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
// What the server sends is trusted more than what it receives, but still bounded: a history
// reply of 500 messages of 4 KiB escapes to a few MiB.
constexpr std::size_t max_incoming_frame = 64u << 20;
}  // namespace

std::shared_ptr<ssl::context> make_tls_context(tls_options const& opt) {
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_client);
  SSL_CTX_set_min_proto_version(ctx->native_handle(), TLS1_2_VERSION);
  if (opt.insecure) {
    ctx->set_verify_mode(ssl::verify_none);
    return ctx;
  }
  boost::system::error_code ec;
  if (!opt.ca_file.empty()) {
    ctx->load_verify_file(opt.ca_file, ec);
    if (ec)
      throw std::runtime_error("cannot load the CA file " + opt.ca_file + ": " + ec.message());
  } else {
    ctx->set_default_verify_paths(ec);
    if (ec) throw std::runtime_error("cannot load the system's CA certificates: " + ec.message());
  }
  ctx->set_verify_mode(ssl::verify_peer);
  return ctx;
}

connection::connection(asio::any_io_executor ex, std::shared_ptr<ssl::context> tls)
    : socket_(ex), tls_context_(std::move(tls)), wake_(ex), framer_(max_incoming_frame, 64) {}

awaitable<boost::system::error_code> connection::connect(std::string host, std::string port) {
  connect_error_.clear();
  asio::ip::tcp::resolver resolver(socket_.get_executor());
  auto [rec, endpoints] = co_await resolver.async_resolve(host, port, nothrow);
  if (rec) {
    connect_error_ = rec.message();
    co_return rec;
  }
  auto [cec, ep] = co_await asio::async_connect(socket_, endpoints, nothrow);
  if (cec) {
    connect_error_ = cec.message();
    co_return cec;
  }
  boost::system::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
  if (tls_context_) {
    tls_.emplace(socket_, *tls_context_);
    // SNI names a host, never an address (RFC 6066, section 3).
    boost::system::error_code not_ip;
    asio::ip::make_address(host, not_ip);
    if (not_ip) SSL_set_tlsext_host_name(tls_->native_handle(), host.c_str());
    // The check of the name, with the reason of a refusal kept for the person.
    verify_refused_.clear();
    tls_->set_verify_callback([check = ssl::host_name_verification(host), &refused = verify_refused_, host](
                                  bool preverified, ssl::verify_context& vctx) mutable {
      X509_STORE_CTX* store = vctx.native_handle();
      if (!preverified) {
        if (refused.empty()) {
          refused = X509_verify_cert_error_string(X509_STORE_CTX_get_error(store));
          if (X509* cert = X509_STORE_CTX_get_current_cert(store)) {
            char subject[256] = "";
            X509_NAME_oneline(X509_get_subject_name(cert), subject, sizeof subject);
            refused += std::string(" (") + subject + ")";
          }
        }
        return false;
      }
      const bool ok = check(preverified, vctx);
      if (!ok && refused.empty()) refused = "the certificate is not for " + host;
      return ok;
    });
    auto [hec] = co_await tls_->async_handshake(ssl::stream_base::client, nothrow);
    if (hec) {
      connect_error_ = verify_refused_.empty() ? "TLS handshake failed: " + hec.message()
                                               : "the server's certificate was refused: " + verify_refused_;
      tls_.reset();
      socket_.close(ignored);
      co_return hec;
    }
  }
  asio::co_spawn(socket_.get_executor(), [self = shared_from_this()]() { return self->write_loop(); },
                 asio::detached);
  co_return boost::system::error_code{};
}

awaitable<std::optional<json::object>> connection::receive() {
  for (;;) {
    while (fed_) {
      json::value v;
      std::string error;
      switch (framer_.next(v, error)) {
        case proto::frame_status::frame: co_return std::move(v.get_object());
        case proto::frame_status::malformed: break;  // jimd never sends one: skip it
        case proto::frame_status::too_large:
          why_ = "the server sent a message over " + std::to_string(max_incoming_frame >> 20) + " MiB";
          co_return std::nullopt;
        case proto::frame_status::need_more: fed_ = false; break;
      }
    }
    if (closed_) co_return std::nullopt;
    auto [ec, n] = tls_ ? co_await tls_->async_read_some(asio::buffer(buffer_), nothrow)
                        : co_await socket_.async_read_some(asio::buffer(buffer_), nothrow);
    if (ec) {
      // A TLS peer that closes without close_notify (killed) ends the stream as truncated.
      if (ec != asio::error::eof && ec != ssl::error::stream_truncated && why_.empty())
        why_ = closed_ ? std::string() : ec.message();
      co_return std::nullopt;
    }
    framer_.feed({buffer_.data(), n});
    fed_ = true;
  }
}

void connection::send(json::object const& frame) { send_raw(proto::to_line(frame)); }

void connection::send_raw(std::string bytes) {
  if (closed_) return;
  queue_.push_back(std::move(bytes));
  wake_.cancel();
}

void connection::close() {
  if (closed_) return;
  closed_ = true;
  boost::system::error_code ignored;
  socket_.close(ignored);
  wake_.cancel();
}

awaitable<void> connection::write_loop() {
  while (!closed_) {
    if (queue_.empty()) {
      wake_.expires_at(asio::steady_timer::time_point::max());
      co_await wake_.async_wait(nothrow);  // send_raw() and close() cancel it
      continue;
    }
    // The lines are small and few: one write each keeps this simple.
    auto [ec, n] = tls_ ? co_await asio::async_write(*tls_, asio::buffer(queue_.front()), nothrow)
                        : co_await asio::async_write(socket_, asio::buffer(queue_.front()), nothrow);
    if (ec) {
      if (why_.empty() && !closed_) why_ = ec.message();
      boost::system::error_code ignored;
      socket_.shutdown(asio::ip::tcp::socket::shutdown_receive, ignored);  // receive() ends too
      co_return;
    }
    queue_.pop_front();
  }
}

}  // namespace jim::client
