#pragma once
/// \file
/// Test support: many connections to one daemon, driven together by one poll() loop, so that a
/// test can read hundreds of sockets concurrently and pipeline requests without ever blocking
/// on one of them. Header-only; complements harness.hpp (whose `client` is blocking and serves
/// one connection at a time).

#include "harness.hpp"

#include <boost/json.hpp>

#include <arpa/inet.h>
#include <cerrno>  // EWOULDBLOCK == EAGAIN on Linux
#include <chrono>
#include <cstdint>
#include <cstring>
#include <fcntl.h>
#include <future>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdexcept>
#include <string>
#include <string_view>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>
#include <utility>
#include <vector>

namespace jim::test {

/// Raises the soft limit on open files to at least `want` (at most the hard limit) and returns
/// the soft limit now in force. Children started afterwards (jimd) inherit it.
inline rlim_t raise_fd_limit(rlim_t want) {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return 0;
  if (rl.rlim_cur < want) {
    rl.rlim_cur = (rl.rlim_max == RLIM_INFINITY || rl.rlim_max >= want) ? want : rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    getrlimit(RLIMIT_NOFILE, &rl);
  }
  return rl.rlim_cur;
}

/// Many non-blocking connections to 127.0.0.1:port. Output is queued per connection and
/// written as the socket accepts it; input is split into newline-terminated frames and handed
/// to a callback. Nothing here ever blocks for longer than the bound given to pump().
///
/// @par Thread Safety
/// Unsafe: use one object from one thread.
class multi_client {
 public:
  explicit multi_client(std::uint16_t port, std::string host = "127.0.0.1")
      : port_(port), host_(std::move(host)) {}
  ~multi_client() {
    for (auto& c : conns_)
      if (c.fd >= 0) ::close(c.fd);
  }
  multi_client(multi_client const&) = delete;
  multi_client& operator=(multi_client const&) = delete;

  /// Opens one more connection (the connect itself is blocking, which is immediate on
  /// loopback) and returns its index. Do not call it from a pump() callback.
  std::size_t connect() {
    const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) throw std::runtime_error(std::string("socket failed: ") + std::strerror(errno));
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_port = htons(port_);
    inet_pton(AF_INET, host_.c_str(), &addr.sin_addr);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&addr), sizeof addr) != 0) {
      const int err = errno;
      ::close(fd);
      throw std::runtime_error(std::string("connect failed: ") + std::strerror(err));
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    conns_.push_back(conn{fd, {}, {}, 0, false});
    return conns_.size() - 1;
  }

  /// True once the connection reached EOF or an error (reset), or was closed by close().
  bool closed(std::size_t i) const { return conns_.at(i).eof; }

  /// Queues `bytes` for connection `i` and writes what the socket takes now; pump() writes the
  /// rest. Safe to call from a pump() callback.
  void send_raw(std::size_t i, std::string_view bytes) {
    auto& c = conns_.at(i);
    if (c.eof) return;
    c.out.append(bytes);
    flush(c);
  }
  /// Queues one object as a line.
  void send(std::size_t i, boost::json::object const& frame) {
    send_raw(i, boost::json::serialize(frame) + "\n");
  }

  /// Closes connection `i` from this side.
  void close(std::size_t i) {
    auto& c = conns_.at(i);
    if (c.fd >= 0) ::close(c.fd);
    c.fd = -1;
    c.eof = true;
  }

  /// Runs the I/O of every open connection until `done()` is true or `bound` has elapsed, and
  /// returns `done()`. Each received frame is parsed and passed to
  /// `on_frame(std::size_t index, boost::json::object&& frame)`; `done` is checked before the
  /// first poll and after every round. A frame that is not a JSON object throws.
  template <class OnFrame, class Done>
  bool pump(std::chrono::milliseconds bound, OnFrame&& on_frame, Done&& done) {
    using clock = std::chrono::steady_clock;
    const auto deadline = clock::now() + bound;
    std::vector<pollfd> pfds;
    std::vector<std::size_t> index;
    std::vector<char> buf(1 << 16);
    while (!done()) {
      const auto left =
          std::chrono::duration_cast<std::chrono::milliseconds>(deadline - clock::now()).count();
      if (left <= 0) return false;
      pfds.clear();
      index.clear();
      for (std::size_t i = 0; i < conns_.size(); ++i) {
        auto const& c = conns_[i];
        if (c.eof) continue;
        const short events = static_cast<short>(POLLIN | (c.out_pos < c.out.size() ? POLLOUT : 0));
        pfds.push_back(pollfd{c.fd, events, 0});
        index.push_back(i);
      }
      if (pfds.empty()) return done();
      const int r = ::poll(pfds.data(), pfds.size(), static_cast<int>(left));
      if (r < 0) {
        if (errno == EINTR) continue;
        throw std::runtime_error(std::string("poll failed: ") + std::strerror(errno));
      }
      if (r == 0) continue;  // the deadline check above ends the loop
      for (std::size_t k = 0; k < pfds.size(); ++k) {
        if (pfds[k].revents == 0) continue;
        const std::size_t i = index[k];
        auto& c = conns_[i];
        if (pfds[k].revents & POLLOUT) flush(c);
        if (pfds[k].revents & (POLLIN | POLLHUP | POLLERR)) read_available(i, buf, on_frame);
      }
    }
    return true;
  }

 private:
  struct conn {
    int fd = -1;
    std::string in;
    std::string out;
    std::size_t out_pos = 0;
    bool eof = false;
  };

  static void flush(conn& c) {
    while (c.out_pos < c.out.size()) {
      const ssize_t n = ::send(c.fd, c.out.data() + c.out_pos, c.out.size() - c.out_pos,
                               MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;
        c.eof = true;  // reset or broken pipe: the server is gone
        return;
      }
      c.out_pos += static_cast<std::size_t>(n);
    }
    c.out.clear();
    c.out_pos = 0;
  }

  template <class OnFrame>
  void read_available(std::size_t i, std::vector<char>& buf, OnFrame& on_frame) {
    // Bounded per round so that one busy socket cannot starve the others.
    for (int round = 0; round < 16; ++round) {
      auto& c = conns_[i];
      if (c.eof) return;
      const ssize_t n = ::recv(c.fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (n < 0) {
        if (errno == EINTR) continue;
        if (errno == EAGAIN) return;
        c.eof = true;
        return;
      }
      if (n == 0) {
        c.eof = true;
        return;
      }
      c.in.append(buf.data(), static_cast<std::size_t>(n));
      std::size_t start = 0;
      for (;;) {
        const auto nl = c.in.find('\n', start);
        if (nl == std::string::npos) break;
        std::string_view line(c.in.data() + start, nl - start);
        start = nl + 1;
        if (!line.empty() && line.back() == '\r') line.remove_suffix(1);
        if (line.empty()) continue;
        auto v = boost::json::parse(line);
        if (!v.is_object())
          throw std::runtime_error("a frame that is not an object: " + std::string(line));
        on_frame(i, std::move(v.as_object()));
      }
      conns_[i].in.erase(0, start);
    }
  }

  std::uint16_t port_;
  std::string host_;
  std::vector<conn> conns_;
};

/// Sends `bytes` on `c` from another thread: the send may block once the daemon (rightly)
/// stops reading. If the test ends first, the socket is shut down so the thread can end (the
/// future's destructor waits for it).
class background_send {
 public:
  background_send(client& c, std::string bytes)
      : fd_(c.fd()),
        bytes_(std::move(bytes)),
        done_(std::async(std::launch::async, [&c, this] { c.send_raw(bytes_); })) {}
  ~background_send() {
    if (done_.valid() && done_.wait_for(std::chrono::seconds(0)) != std::future_status::ready)
      ::shutdown(fd_, SHUT_RDWR);
  }
  background_send(background_send const&) = delete;
  background_send& operator=(background_send const&) = delete;
  std::future<void>& future() { return done_; }

 private:
  int fd_;
  std::string bytes_;
  std::future<void> done_;
};

}  // namespace jim::test
