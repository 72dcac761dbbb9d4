#include "engine.hpp"

#include <openssl/ssl.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <netinet/tcp.h>
#include <random>
#include <stdexcept>
#include <string_view>
#include <sys/epoll.h>
#include <time.h>
#include <unistd.h>

namespace jim::bench {

namespace {

constexpr std::size_t read_buffer = 256 * 1024;
constexpr int reads_per_event = 4;  ///< then let other connections have their turn
constexpr std::size_t max_carry = 64 * 1024;

constexpr std::array<std::int8_t, 256> hex_table = [] {
  std::array<std::int8_t, 256> t{};
  for (auto& v : t) v = -1;
  for (int i = 0; i < 10; ++i) t[static_cast<std::size_t>('0' + i)] = static_cast<std::int8_t>(i);
  for (int i = 0; i < 6; ++i) {
    t[static_cast<std::size_t>('a' + i)] = static_cast<std::int8_t>(10 + i);
    t[static_cast<std::size_t>('A' + i)] = static_cast<std::int8_t>(10 + i);
  }
  return t;
}();

/// Parses `n` hex digits; sets `bad` on a non-hex character.
inline std::uint64_t hex(char const* p, int n, bool& bad) {
  std::uint64_t v = 0;
  int neg = 0;
  for (int i = 0; i < n; ++i) {
    const int d = hex_table[static_cast<unsigned char>(p[i])];
    neg |= d;
    v = (v << 4) | static_cast<std::uint64_t>(d & 15);
  }
  if (neg < 0) bad = true;
  return v;
}

inline void put_hex(char* out, std::uint64_t v, int n) {
  static constexpr char digits[] = "0123456789abcdef";
  for (int i = n - 1; i >= 0; --i) {
    out[i] = digits[v & 15];
    v >>= 4;
  }
}

inline bool starts_with(char const* b, char const* e, std::string_view prefix) {
  return static_cast<std::size_t>(e - b) >= prefix.size() &&
         std::memcmp(b, prefix.data(), prefix.size()) == 0;
}

/// Skips one RESP element in [p, e). Returns its end, nullptr if incomplete, or `e + 1` if
/// the bytes are not RESP.
char const* resp_skip(char const* p, char const* e, int depth = 0) {
  if (p >= e) return nullptr;
  auto const* nl = static_cast<char const*>(std::memchr(p, '\n', static_cast<std::size_t>(e - p)));
  if (!nl) return nullptr;
  char const* next = nl + 1;
  switch (*p) {
    case '+':
    case '-':
    case ':':
      return next;
    case '$': {
      const long len = std::strtol(p + 1, nullptr, 10);
      if (len < 0) return next;  // null bulk string
      if (e - next < len + 2) return nullptr;
      return next + len + 2;
    }
    case '*': {
      const long count = std::strtol(p + 1, nullptr, 10);
      if (depth > 4) return e + 1;
      for (long i = 0; i < count; ++i) {
        next = resp_skip(next, e, depth + 1);
        if (!next || next > e) return next;
      }
      return next;
    }
    default:
      return e + 1;
  }
}

std::string make_nonce() {
  std::random_device rd;
  char buf[9];
  put_hex(buf,
          (static_cast<std::uint64_t>(rd()) ^ static_cast<std::uint64_t>(now_ns())) & 0xffffffffu,
          8);
  return std::string(buf, 8);
}

std::string bulk(std::string_view s) {
  std::string out = "$";
  out += std::to_string(s.size());
  out += "\r\n";
  out += s;
  out += "\r\n";
  return out;
}

}  // namespace

double retry_after_of(std::string_view line) {
  static constexpr std::string_view key = R"("retry_after":)";
  const auto at = line.find(key);
  if (at == std::string_view::npos) return 0;
  // The line is not NUL-terminated: copy the number (at most 32 characters) before strtod.
  const auto rest = line.substr(at + key.size(), 32);
  const std::string number(rest.substr(0, rest.find_first_of(",}")));
  char* end = nullptr;
  const double v = std::strtod(number.c_str(), &end);
  return end != number.c_str() && v > 0 ? v : 0;
}

std::int64_t now_ns() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return static_cast<std::int64_t>(ts.tv_sec) * 1'000'000'000 + ts.tv_nsec;
}

engine::engine(engine_config cfg) : cfg_(std::move(cfg)), nonce_(make_nonce()), rbuf_(read_buffer) {
  if (cfg_.payload < payload_header) throw std::invalid_argument("payload too small");
  if (cfg_.tls) {
    tls_ctx_ = SSL_CTX_new(TLS_client_method());
    if (!tls_ctx_) throw std::runtime_error("SSL_CTX_new failed");
    SSL_CTX_set_min_proto_version(tls_ctx_, TLS1_2_VERSION);
    SSL_CTX_set_verify(tls_ctx_, SSL_VERIFY_NONE, nullptr);  // loopback measurement only
    SSL_CTX_set_mode(tls_ctx_, SSL_MODE_ENABLE_PARTIAL_WRITE | SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER);
  }
  ep_ = epoll_create1(EPOLL_CLOEXEC);
  if (ep_ < 0) throw std::runtime_error(std::string("epoll_create1: ") + std::strerror(errno));
  conns_.reserve(cfg_.max_connections);
  const std::size_t pairs = static_cast<std::size_t>(cfg_.receivers) * cfg_.senders;
  next_seq_.assign(pairs, 0);
  seen_.assign((pairs * cfg_.per_sender + 63) / 64, 0);
  const std::string psize = std::to_string(cfg_.payload);
  if (cfg_.protocol == proto::jim) {
    msg_head_ = R"({"action":"msg","message":")";
    msg_tail_ = "\"}\n";
  } else if (cfg_.protocol == proto::redis_stream) {
    stream_key_ = cfg_.channel + ":" + nonce_;  // a fresh stream per run: readers start at 0-0
    msg_head_ = "*5\r\n" + bulk("XADD") + bulk(stream_key_) + bulk("*") + bulk("m") + "$" + psize +
                "\r\n";
    msg_tail_ = "\r\n";
    stream_head_ = "*1\r\n*2\r\n" + bulk(stream_key_) + "*";
  } else {
    msg_head_ = "*3\r\n" + bulk("PUBLISH") + bulk(cfg_.channel) + "$" + psize + "\r\n";
    msg_tail_ = "\r\n";
    redis_prefix_ = "*3\r\n" + bulk("message") + bulk(cfg_.channel) + "$" + psize + "\r\n";
  }
}

engine::~engine() {
  close_all();
  if (ep_ >= 0) ::close(ep_);
  if (tls_ctx_) SSL_CTX_free(tls_ctx_);
}

void engine::want_write(connection& c, bool on) {
  if (c.want_out == on) return;
  epoll_event ev{};
  ev.events = on ? EPOLLIN | EPOLLOUT : EPOLLIN;
  ev.data.u64 = static_cast<std::uint64_t>(&c - conns_.data());
  epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
  c.want_out = on;
}

void engine::handshake(connection& c) {
  const int rc = SSL_do_handshake(c.ssl);
  if (rc == 1) {
    c.handshaking = false;
    want_write(c, false);
    on_connected(c);
    return;
  }
  const int err = SSL_get_error(c.ssl, rc);
  if (err == SSL_ERROR_WANT_READ)
    want_write(c, false);
  else if (err == SSL_ERROR_WANT_WRITE)
    want_write(c, true);
  else
    fail(c, -EPROTO);
}

std::size_t engine::open(role kind, std::uint32_t index) {
  if (conns_.size() == conns_.capacity())
    throw std::logic_error("engine: more connections than reserved");
  const std::size_t id = conns_.size();
  connection& c = conns_.emplace_back();
  c.kind = kind;
  c.index = index;
  start(c, id);
  return id;
}

void engine::retry(std::size_t id) {
  connection& c = conns_.at(id);
  if (c.st != state::failed)
    throw std::logic_error("engine: retry of a connection that did not fail");
  --failed;
  const role kind = c.kind;
  const std::uint32_t index = c.index;
  c = connection{};  // its socket and TLS state were freed when it failed
  c.kind = kind;
  c.index = index;
  start(c, id);
}

void engine::start(connection& c, std::size_t id) {
  c.st = state::connecting;
  c.fd = ::socket(cfg_.target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
  if (c.fd < 0) {
    fail(c, -errno);
    return;
  }
  epoll_event ev{};
  ev.events = EPOLLIN | EPOLLOUT;
  ev.data.u64 = id;
  epoll_ctl(ep_, EPOLL_CTL_ADD, c.fd, &ev);
  c.want_out = true;
  const int rc = ::connect(c.fd, reinterpret_cast<sockaddr const*>(&cfg_.target), cfg_.target_len);
  if (rc == 0)
    on_connected(c);
  else if (errno != EINPROGRESS)
    fail(c, -errno);
}

void engine::poll(int timeout_ms) {
  std::array<epoll_event, 512> events;
  const int n = epoll_wait(ep_, events.data(), static_cast<int>(events.size()), timeout_ms);
  for (int i = 0; i < n; ++i) {
    connection& c = conns_[events[static_cast<std::size_t>(i)].data.u64];
    if (c.fd < 0) continue;
    handle(c, events[static_cast<std::size_t>(i)].events);
  }
}

void engine::handle(connection& c, std::uint32_t events) {
  if (c.handshaking) {
    handshake(c);
    return;
  }
  if (c.st == state::connecting) {
    if (!(events & (EPOLLOUT | EPOLLERR | EPOLLHUP))) return;
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(c.fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      fail(c, -err);
      return;
    }
    if (!tls_ctx_) {
      on_connected(c);
      return;
    }
    c.ssl = SSL_new(tls_ctx_);
    if (!c.ssl || SSL_set_fd(c.ssl, c.fd) != 1) {
      fail(c, -ENOMEM);
      return;
    }
    SSL_set_connect_state(c.ssl);
    c.handshaking = true;
    handshake(c);
    return;
  }
  if (events & (EPOLLIN | EPOLLHUP | EPOLLERR)) on_readable(c);
  if (c.fd >= 0 && (events & EPOLLOUT) && c.want_out) flush(c);
}

void engine::on_connected(connection& c) {
  const int one = 1;
  setsockopt(c.fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  c.st = state::signing_in;
  if (cfg_.protocol == proto::jim) {
    static constexpr char kinds[] = {'r', 's', 'u'};
    const std::string name =
        "b" + nonce_ + kinds[static_cast<int>(c.kind)] + std::to_string(c.index);
    c.out += R"({"action":"register","user":{"account_name":")" + name + R"(","password":")" +
             cfg_.password + "\"}}\n";
  } else if (c.kind == role::receiver && cfg_.protocol == proto::redis) {
    c.out += "*2\r\n" + bulk("SUBSCRIBE") + bulk(cfg_.channel);
  } else if (c.kind == role::receiver) {
    // Reading from 0-0 of this run's stream can miss nothing: ready at once.
    set_state(c, state::ready);
    xread(c);
    return;
  } else {
    set_state(c, state::ready);  // a publisher needs no set-up
  }
  flush(c);
}

void engine::flush(connection& c) {
  while (c.out_off < c.out.size()) {
    if (c.ssl) {
      const int n = SSL_write(c.ssl, c.out.data() + c.out_off,
                              static_cast<int>(std::min<std::size_t>(c.out.size() - c.out_off,
                                                                     1 << 30)));
      if (n > 0) {
        c.out_off += static_cast<std::size_t>(n);
        continue;
      }
      const int err = SSL_get_error(c.ssl, n);
      if (err == SSL_ERROR_WANT_WRITE) {
        want_write(c, true);
        return;
      }
      if (err == SSL_ERROR_WANT_READ) return;  // a TLS control record first: retried on input
      lost(c);
      return;
    }
    const ssize_t n =
        ::send(c.fd, c.out.data() + c.out_off, c.out.size() - c.out_off, MSG_NOSIGNAL);
    if (n > 0) {
      c.out_off += static_cast<std::size_t>(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      if (!c.want_out) {
        epoll_event ev{};
        ev.events = EPOLLIN | EPOLLOUT;
        ev.data.u64 = static_cast<std::uint64_t>(&c - conns_.data());
        epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
        c.want_out = true;
      }
      return;
    }
    lost(c);
    return;
  }
  c.out.clear();
  c.out_off = 0;
  if (c.want_out) {
    epoll_event ev{};
    ev.events = EPOLLIN;
    ev.data.u64 = static_cast<std::uint64_t>(&c - conns_.data());
    epoll_ctl(ep_, EPOLL_CTL_MOD, c.fd, &ev);
    c.want_out = false;
  }
}

void engine::on_readable(connection& c) {
  for (int round = 0; c.fd >= 0 && (round < reads_per_event || (c.ssl && SSL_pending(c.ssl) > 0));
       ++round) {
    const std::size_t have = c.carry.size();
    if (have) std::memcpy(rbuf_.data(), c.carry.data(), have);
    c.carry.clear();
    const std::size_t room = rbuf_.size() - have;
    ssize_t n = 0;
    if (c.ssl) {
      const int r = SSL_read(c.ssl, rbuf_.data() + have, static_cast<int>(std::min<std::size_t>(room, 1 << 30)));
      if (r <= 0) {
        if (have) c.carry.assign(rbuf_.data(), have);
        if (SSL_get_error(c.ssl, r) == SSL_ERROR_WANT_READ) return;
        lost(c);  // close_notify, EOF or an error
        return;
      }
      n = r;
      if (c.out_off < c.out.size()) flush(c);  // a write that waited for input
      if (c.fd < 0) return;
    } else {
      n = ::recv(c.fd, rbuf_.data() + have, room, 0);
    }
    if (n <= 0) {
      if (have) c.carry.assign(rbuf_.data(), have);
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) return;
      lost(c);  // EOF or reset: the server closed us
      return;
    }
    const std::int64_t now = now_ns();  // one clock read per read(): every frame in it arrived now
    char const* b = rbuf_.data();
    char const* e = b + have + static_cast<std::size_t>(n);
    const std::size_t used = cfg_.protocol == proto::jim ? parse_jim(c, b, e, now)
                             : cfg_.protocol == proto::redis_stream && c.kind == role::receiver
                                 ? parse_stream(c, b, e, now)
                                 : parse_redis(c, b, e, now);
    if (c.fd < 0) return;
    const std::size_t left = static_cast<std::size_t>(e - b) - used;
    if (left > max_carry) {
      ++stats_.unexpected;
      lost(c);
      return;
    }
    if (left) c.carry.assign(b + used, left);
    // The socket is drained (TLS: a read returns one record at most, so read until WANT_READ).
    if (!c.ssl && static_cast<std::size_t>(n) < room) return;
  }
}

std::size_t engine::parse_jim(connection& c, char const* b, char const* e, std::int64_t now) {
  char const* p = b;
  while (p < e && c.fd >= 0) {
    auto const* nl =
        static_cast<char const*>(std::memchr(p, '\n', static_cast<std::size_t>(e - p)));
    if (!nl) break;
    jim_line(c, p, nl, now);
    p = nl + 1;
  }
  return static_cast<std::size_t>(p - b);
}

void engine::jim_line(connection& c, char const* b, char const* e, std::int64_t now) {
  if (e > b && e[-1] == '\r') --e;
  if (e == b) return;
  const std::size_t len = static_cast<std::size_t>(e - b);
  const std::size_t P = cfg_.payload;
  static constexpr std::string_view message_key = R"("message":")";
  const bool receiving = c.kind == role::receiver && c.st == state::ready;
  // Fast path: a live push ends with "message":"<payload>"} (the daemon writes `message` last).
  if (receiving && len > P + message_key.size() + 2 && e[-1] == '}' && e[-2] == '"') {
    char const* payload = e - 2 - P;
    if (payload[0] == 'J' && payload[1] == 'B' &&
        std::memcmp(payload - message_key.size(), message_key.data(), message_key.size()) == 0) {
      deliver(c, payload, now);
      return;
    }
  }
  static constexpr std::string_view response_key = R"({"response":)";
  if (starts_with(b, e, response_key)) {
    c.retry_after = retry_after_of(std::string_view(b, len));
    reply(c, std::atoi(b + response_key.size()));
    return;
  }
  if (c.kind == role::sender) {
    ++stats_.sender_pushes;
    return;
  }
  if (!receiving) return;
  // Slow path: a push of another shape (a history push, a payload of another size).
  static constexpr std::string_view bench_msg = R"("message":"JB)";
  auto const* m = static_cast<char const*>(memmem(b, len, bench_msg.data(), bench_msg.size()));
  if (m && !memmem(b, len, R"("history":true)", 14)) {
    char const* payload = m + message_key.size();
    if (static_cast<std::size_t>(e - payload) > P && payload[P] == '"') {
      deliver(c, payload, now);
      return;
    }
  }
  // A benchmark payload that is not this run's live message (a history push) is expected.
  if (!m && !starts_with(b, e, R"({"action":"probe")")) ++stats_.unexpected;
}

std::size_t engine::parse_redis(connection& c, char const* b, char const* e, std::int64_t now) {
  char const* p = b;
  const std::size_t plen = redis_prefix_.size();
  const std::size_t frame = plen + cfg_.payload + 2;
  while (p < e && c.fd >= 0) {
    if (c.kind == role::receiver && c.st == state::ready &&
        static_cast<std::size_t>(e - p) >= frame &&
        std::memcmp(p, redis_prefix_.data(), plen) == 0 && p[frame - 2] == '\r') {
      deliver(c, p + plen, now);
      p += frame;
      continue;
    }
    char const* q = resp_skip(p, e);
    if (!q) break;
    if (q > e) {  // not RESP: give up on this connection
      ++stats_.unexpected;
      lost(c);
      return static_cast<std::size_t>(e - b);
    }
    switch (*p) {
      case ':':
        reply(c, 200);
        break;
      case '$':  // XADD's reply: the new entry's id
        if (c.kind == role::sender)
          reply(c, 200);
        else
          ++stats_.unexpected;
        break;
      case '-':
        reply(c, 500);
        break;
      case '*':
        if (c.st == state::signing_in && memmem(p, static_cast<std::size_t>(q - p), "subscribe", 9))
          reply(c, 201);
        else
          ++stats_.unexpected;
        break;
      default:
        break;
    }
    p = q;
  }
  return static_cast<std::size_t>(p - b);
}

void engine::xread(connection& c) {
  c.out += "*6\r\n" + bulk("XREAD") + bulk("BLOCK") + bulk("0") + bulk("STREAMS") +
           bulk(stream_key_) + bulk(c.last_id);
  flush(c);
}

std::size_t engine::parse_stream(connection& c, char const* b, char const* e, std::int64_t now) {
  // A reply: *1 *2 $key *N, then N entries *2 $id *2 $1 m $P payload.
  char const* p = b;
  const std::size_t P = cfg_.payload;
  while (p < e && c.fd >= 0) {
    if (c.xr_left == 0) {
      if (starts_with(p, e, stream_head_)) {
        char const* n = p + stream_head_.size();
        auto const* nl =
            static_cast<char const*>(std::memchr(n, '\n', static_cast<std::size_t>(e - n)));
        if (!nl) break;
        const long count = std::strtol(n, nullptr, 10);
        p = nl + 1;
        if (count > 0)
          c.xr_left = static_cast<std::uint32_t>(count);
        else
          xread(c);
        continue;
      }
      char const* q = resp_skip(p, e);
      if (!q) break;
      if (q > e || *p != '*') {  // not RESP, or an error reply
        ++stats_.unexpected;
        lost(c);
        return static_cast<std::size_t>(e - b);
      }
      p = q;  // a null reply (no entries): ask again
      xread(c);
      continue;
    }
    char const* q = resp_skip(p, e);
    if (!q) break;
    // *2\r\n$L\r\n<id>\r\n*2\r\n$1\r\nm\r\n$P\r\n<payload>\r\n
    if (q > e || !starts_with(p, q, "*2\r\n$")) {
      ++stats_.unexpected;
      lost(c);
      return static_cast<std::size_t>(e - b);
    }
    const long id_len = std::strtol(p + 5, nullptr, 10);
    auto const* id = static_cast<char const*>(std::memchr(p + 5, '\n', static_cast<std::size_t>(q - p - 5)));
    if (id && id_len > 0 && id + 1 + id_len + 2 <= q && static_cast<std::size_t>(q - p) > P + 2) {
      c.last_id.assign(id + 1, static_cast<std::size_t>(id_len));
      char const* payload = q - 2 - P;
      if (payload[0] == 'J' && payload[1] == 'B')
        deliver(c, payload, now);
      else
        ++stats_.unexpected;
    } else {
      ++stats_.unexpected;
    }
    p = q;
    if (--c.xr_left == 0) xread(c);
  }
  return static_cast<std::size_t>(p - b);
}

void engine::reply(connection& c, int code) {
  c.last_code = code;
  if (c.st == state::signing_in) {
    if (code == 200 || code == 201)
      set_state(c, state::ready);
    else
      fail(c, code);
    return;
  }
  if (c.kind != role::sender || c.st != state::ready) return;
  if (c.inflight) --c.inflight;
  if (code == 200)
    ++stats_.replies_ok;
  else
    ++stats_.replies_error;
}

void engine::deliver(connection& c, char const* payload, std::int64_t now) {
  if (std::memcmp(payload + 2, nonce_.data(), 8) != 0) return;  // another run's (history)
  bool bad = false;
  const auto sender = static_cast<std::uint32_t>(hex(payload + 10, 4, bad));
  const auto seq = static_cast<std::uint32_t>(hex(payload + 14, 8, bad));
  const auto ts = static_cast<std::int64_t>(hex(payload + 22, 16, bad));
  if (bad || sender >= cfg_.senders || seq >= cfg_.per_sender || c.index >= cfg_.receivers) {
    ++stats_.unexpected;
    return;
  }
  const std::size_t pair = static_cast<std::size_t>(c.index) * cfg_.senders + sender;
  const std::size_t bit = pair * cfg_.per_sender + seq;
  std::uint64_t& word = seen_[bit >> 6];
  const std::uint64_t mask = std::uint64_t{1} << (bit & 63);
  if (word & mask) {
    ++stats_.duplicated;
    return;
  }
  word |= mask;
  ++stats_.delivered;
  std::uint32_t& next = next_seq_[pair];
  if (seq + 1 < next)
    ++stats_.reordered;
  else
    next = seq + 1;
  if (ts >= stats_.warmup_until_ns) {
    const int h = ts < stats_.split_ns[0] ? 0 : ts < stats_.split_ns[1] ? 1 : 2;
    stats_.latency[h].record(now - ts);
    auto const& starts = stats_.phase_start;
    if (!starts.empty() && ts >= starts.front()) {
      std::size_t i = starts.size() - 1;  // most deliveries are of the newest phase's messages
      while (ts < starts[i]) --i;
      stats_.phase_latency[i].record(now - ts);
    }
  }
  if (!stats_.messages.empty()) {
    auto& m = stats_.messages[static_cast<std::size_t>(sender) * cfg_.per_sender + seq];
    m.sent_ns = ts;
    ++m.n;
    m.sum_ns += now - ts;
    m.max_ns = std::max(m.max_ns, now - ts);
  }
  stats_.last_ns = now;
}

void engine::write_payload(char* out, std::uint32_t sender, std::uint32_t seq,
                           std::int64_t ts) const {
  out[0] = 'J';
  out[1] = 'B';
  std::memcpy(out + 2, nonce_.data(), 8);
  put_hex(out + 10, sender, 4);
  put_hex(out + 14, seq, 8);
  put_hex(out + 22, static_cast<std::uint64_t>(ts), 16);
  std::memset(out + payload_header, '.', cfg_.payload - payload_header);
}

void engine::send_messages(connection& c, std::uint32_t n) {
  if (c.st != state::ready || c.kind != role::sender || n == 0) return;
  const std::int64_t ts = now_ns();
  const std::size_t frame = msg_head_.size() + cfg_.payload + msg_tail_.size();
  std::size_t at = c.out.size();
  c.out.resize(at + frame * n);
  for (std::uint32_t i = 0; i < n; ++i) {
    char* f = c.out.data() + at;
    std::memcpy(f, msg_head_.data(), msg_head_.size());
    write_payload(f + msg_head_.size(), c.index, c.next_seq++, ts);
    std::memcpy(f + msg_head_.size() + cfg_.payload, msg_tail_.data(), msg_tail_.size());
    at += frame;
  }
  c.inflight += n;
  flush(c);
}

void engine::set_state(connection& c, state s) {
  c.st = s;
  if (s == state::ready) {
    c.ready_ns = now_ns();
    ++ready;
  }
  if (on_state) on_state(c);
}

void engine::fail(connection& c, int code) {
  c.last_code = code;
  ++failed;
  close_fd(c);
  c.st = state::failed;
  if (on_state) on_state(c);
}

void engine::lost(connection& c) {
  if (c.st != state::ready) {
    fail(c, c.last_code ? c.last_code : -ECONNRESET);
    return;
  }
  ++dropped;
  if (c.kind == role::receiver) ++dropped_receivers;
  close_fd(c);
  c.st = state::closed;
  if (on_state) on_state(c);
}

void engine::close_all() {
  for (auto& c : conns_) {
    if (c.fd < 0) continue;
    close_fd(c);
    if (c.st == state::ready) c.st = state::closed;
  }
}

void engine::close(std::size_t id) {
  connection& c = conns_.at(id);
  if (c.fd < 0) return;
  close_fd(c);
  c.st = state::closed;
}

void engine::trace_messages() {
  stats_.messages.assign(static_cast<std::size_t>(cfg_.senders) * cfg_.per_sender, {});
}

void engine::close_fd(connection& c) {
  if (c.ssl) {
    SSL_free(c.ssl);
    c.ssl = nullptr;
    c.handshaking = false;
  }
  if (c.fd < 0) return;
  epoll_ctl(ep_, EPOLL_CTL_DEL, c.fd, nullptr);
  ::close(c.fd);
  c.fd = -1;
}

}  // namespace jim::bench
