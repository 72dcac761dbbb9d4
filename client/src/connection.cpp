#include "connection.hpp"

#include "jim/codec.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

namespace jim::client {

namespace asio = boost::asio;
namespace json = boost::json;
using asio::awaitable;

namespace {
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
// What the server sends is trusted more than what it receives, but still bounded: a history
// reply of 500 messages of 4 KiB escapes to a few MiB.
constexpr std::size_t max_incoming_frame = 64u << 20;
}  // namespace

connection::connection(asio::any_io_executor ex)
    : socket_(ex), wake_(ex), framer_(max_incoming_frame, 64) {}

awaitable<boost::system::error_code> connection::connect(std::string host, std::string port) {
  // Resolving is the first thing the client does, with nothing else to serve yet: doing it
  // synchronously spares the thread Asio's async_resolve would start for getaddrinfo.
  asio::ip::tcp::resolver resolver(socket_.get_executor());
  boost::system::error_code rec;
  auto endpoints = resolver.resolve(host, port, rec);
  if (rec) co_return rec;
  auto [cec, ep] = co_await asio::async_connect(socket_, endpoints, nothrow);
  if (cec) co_return cec;
  boost::system::error_code ignored;
  socket_.set_option(asio::ip::tcp::no_delay(true), ignored);
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
    auto [ec, n] = co_await socket_.async_read_some(asio::buffer(buffer_), nothrow);
    if (ec) {
      if (ec != asio::error::eof) why_ = ec.message();
      co_return std::nullopt;
    }
    framer_.feed({buffer_.data(), n});
    fed_ = true;
  }
}

void connection::send(json::object const& frame) { send_raw(proto::to_line(frame)); }

void connection::send_raw(std::string bytes) {
  queue_.push_back(std::move(bytes));
  wake_.cancel();
}

awaitable<void> connection::write_loop() {
  for (;;) {
    if (queue_.empty()) {
      wake_.expires_at(asio::steady_timer::time_point::max());
      co_await wake_.async_wait(nothrow);  // send_raw() cancels it; cancelling us throws next
      continue;
    }
    // The lines are small and few: one write each keeps this simple.
    auto [ec, n] = co_await asio::async_write(socket_, asio::buffer(queue_.front()), nothrow);
    if (ec) {
      if (why_.empty()) why_ = ec.message();
      boost::system::error_code ignored;
      socket_.shutdown(asio::ip::tcp::socket::shutdown_receive, ignored);  // receive() ends too
      co_return;
    }
    queue_.pop_front();
  }
}

}  // namespace jim::client
