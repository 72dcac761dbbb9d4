// The cluster's log (cluster::nats_stream) against 3 real nats-server processes forming one
// JetStream cluster: ordered, acknowledged, de-duplicated publishing and consuming, and what a
// lost server costs. Each "node" runs its own io_context on its own thread, as jimd does, so
// ThreadSanitizer sees the NATS client's threads hand everything over by post.

#include "cluster/nats_stream.hpp"
#include "io_thread.hpp"
#include "nats_harness.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>

#include <functional>
#include <future>
#include <map>
#include <set>
#include <thread>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using jim::server::cluster::nats_settings;
using jim::server::cluster::nats_stream;
using jim::server::cluster::stream_entry;
using jim::test::have_nats;
using jim::test::nats_cluster;

/// One consumer/publisher with its own I/O thread. Everything it records is touched on that
/// thread only; tests read it through call().
class node {
 public:
  /// `tweak` changes the settings before the stream is made (shorter deadlines).
  node(std::string const& urls, std::string name, int replicas, std::string stream = "T",
       std::function<void(nats_settings&)> const& tweak = {})
      : stream_(io_.context(), settings(urls, std::move(name), replicas, std::move(stream), tweak)) {
    last_at_open_ = stream_.open();
    io_.start();
  }
  ~node() {
    call([this] { stream_.close(); });
    io_.stop();
  }

  /// Runs `f` on the node's I/O thread and returns its result (bounded wait).
  template <class F>
  auto call(F f) -> decltype(f()) {
    return io_.call(std::move(f));
  }

  void consume(std::uint64_t after = 0) {
    call([this, after] {
      stream_.consume(after, [this](stream_entry&& e) { seen_.push_back(std::move(e)); });
    });
  }
  /// Publishes `payload` under `id` (a fresh id if empty); the outcome lands in acks().
  std::string publish(std::string payload, std::string id = {}) {
    return call([this, payload = std::move(payload), id]() mutable {
      if (id.empty()) id = stream_.next_msg_id();
      stream_.publish(id, payload, [this, id](std::optional<std::uint64_t> seq, std::string const&) {
        acks_.emplace_back(id, seq);
      });
      return id;
    });
  }
  std::vector<stream_entry> seen() {
    return call([this] { return seen_; });
  }
  std::vector<std::pair<std::string, std::optional<std::uint64_t>>> acks() {
    return call([this] { return acks_; });
  }
  bool connected() {
    return call([this] { return stream_.connected(); });
  }
  std::uint64_t last_at_open() const { return last_at_open_; }

  std::size_t seen_count() {
    return call([this] { return seen_.size(); });
  }
  std::size_t ack_count() {
    return call([this] { return acks_.size(); });
  }

 private:
  static nats_settings settings(std::string const& urls, std::string name, int replicas,
                                std::string stream,
                                std::function<void(nats_settings&)> const& tweak) {
    nats_settings s;
    std::size_t at = 0;
    while (at <= urls.size()) {
      auto comma = urls.find(',', at);
      if (comma == std::string::npos) comma = urls.size();
      s.urls.push_back(urls.substr(at, comma - at));
      at = comma + 1;
    }
    s.node = std::move(name);
    s.stream = std::move(stream);
    s.replicas = replicas;
    if (tweak) tweak(s);
    return s;
  }

  jim::test::io_thread io_;  ///< first: stopped (in the destructor) before the rest goes
  nats_stream stream_;
  std::uint64_t last_at_open_ = 0;
  std::vector<stream_entry> seen_;
  std::vector<std::pair<std::string, std::optional<std::uint64_t>>> acks_;
};

using jim::test::eventually;

}  // namespace

TEST_CASE("nats_stream: two nodes on a 3-server cluster see one order, every ack in it",
          "[cluster][nats]") {
  if (!have_nats()) return;
  nats_cluster nats(3);
  node a(nats.url(0), "a", 3);
  node b(nats.url(1) + "," + nats.url(2), "b", 3);
  CHECK(a.last_at_open() == 0);
  a.consume();
  b.consume();
  constexpr int per_node = 200;
  for (int i = 0; i < per_node; ++i) {
    a.publish("a" + std::to_string(i));
    b.publish("b" + std::to_string(i));
  }
  const auto total = static_cast<std::size_t>(2 * per_node);
  auto done = [&](node& n) {
    return eventually([&] { return n.seen_count() >= total && n.ack_count() >= per_node; });
  };
  REQUIRE(done(a));
  REQUIRE(done(b));
  auto sa = a.seen();
  auto sb = b.seen();
  REQUIRE(sa.size() == total);
  REQUIRE(sb.size() == total);
  std::map<std::string, std::uint64_t> seq_of;
  for (std::size_t i = 0; i < total; ++i) {
    CHECK(sa[i].seq == i + 1);  // consecutive: nothing lost, nothing twice
    CHECK(sa[i].seq == sb[i].seq);
    CHECK(sa[i].msg_id == sb[i].msg_id);
    CHECK(sa[i].payload == sb[i].payload);
    seq_of[sa[i].msg_id] = sa[i].seq;
  }
  // Each node's own publishes are in the stream in the order it made them, and every ack
  // names the sequence the consumer delivered the entry at.
  for (node* n : {&a, &b}) {
    auto acks = n->acks();
    REQUIRE(acks.size() == per_node);
    std::uint64_t prev = 0;
    for (auto const& [id, seq] : acks) {
      REQUIRE(seq);
      CHECK(seq_of.at(id) == *seq);
      CHECK(*seq > prev);
      prev = *seq;
    }
  }
}

TEST_CASE("nats_stream: a publish retried with the same Nats-Msg-Id is stored once",
          "[cluster][nats]") {
  if (!have_nats()) return;
  nats_cluster nats(3);
  node a(nats.url(0), "a", 3);
  node b(nats.url(2), "b", 3);
  b.consume();
  const std::string id = a.publish("first");
  REQUIRE(eventually([&] { return a.ack_count() == 1; }));
  a.publish("first again", id);  // a retry after a lost ack: same id
  REQUIRE(eventually([&] { return a.ack_count() == 2; }));
  b.publish("retry elsewhere", id);  // even from another connection
  REQUIRE(eventually([&] { return b.ack_count() == 1; }));
  const std::string other = a.publish("second");
  REQUIRE(eventually([&] { return a.ack_count() == 3; }));
  REQUIRE(eventually([&] { return b.seen_count() >= 2; }));
  // Nothing more arrives (this asserts an absence: a bounded wait is the only way).
  CHECK_FALSE(eventually([&] { return b.seen_count() > 2; }, 500ms));
  auto seen = b.seen();
  REQUIRE(seen.size() == 2);
  CHECK(seen[0].msg_id == id);
  CHECK(seen[0].payload == "first");
  CHECK(seen[1].msg_id == other);
  // The duplicates were acknowledged with the first copy's sequence.
  auto acks = a.acks();
  REQUIRE(acks.size() == 3);
  for (auto const& [aid, seq] : acks) {
    REQUIRE(seq);
    CHECK(*seq == (aid == id ? 1u : 2u));
  }
  auto backs = b.acks();
  REQUIRE(backs.size() == 1);
  CHECK(backs[0].second == std::optional<std::uint64_t>(1));
}

TEST_CASE("nats_stream: a consumer starting after P gets P+1 on, and open() reports the end",
          "[cluster][nats]") {
  if (!have_nats()) return;
  nats_cluster nats(1);
  {
    node a(nats.url(0), "a", 1);
    for (int i = 0; i < 10; ++i) a.publish(std::to_string(i));
    REQUIRE(eventually([&] { return a.ack_count() == 10; }));
  }
  node b(nats.url(0), "b", 1);
  CHECK(b.last_at_open() == 10);
  b.consume(6);
  REQUIRE(eventually([&] { return b.seen_count() >= 4; }));
  auto seen = b.seen();
  REQUIRE(seen.size() == 4);
  CHECK(seen.front().seq == 7);
  CHECK(seen.front().payload == "6");
  CHECK(seen.back().seq == 10);
}

TEST_CASE("nats_stream: kill -9 one of 3 servers (replicas 3) while publishing: every ack "
          "is in the stream, and publishing goes on after the failover",
          "[cluster][nats]") {
  if (!have_nats()) return;
  nats_cluster nats(3);
  node a(nats.url(0) + "," + nats.url(1), "a", 3);
  node b(nats.url(2), "b", 3);
  b.consume();
  constexpr int total = 300;
  for (int i = 0; i < total; ++i) {
    a.publish(std::to_string(i));
    if (i == 100) nats.kill(0);  // a's server: it fails over to server 1
    std::this_thread::sleep_for(2ms);
  }
  REQUIRE(eventually([&] { return a.ack_count() >= total; }, 60s));
  // Publishes are retried across the failover and the stream leader's re-election for up to
  // publish_deadline; on a loaded machine an election can take longer, and then those fail
  // (503 to a client: nothing claimed stored). Afterwards publishing goes on.
  for (int i = 0; i < 50; ++i) a.publish("after " + std::to_string(i));
  REQUIRE(eventually([&] { return a.ack_count() >= total + 50; }, 60s));
  auto acks = a.acks();
  REQUIRE(acks.size() == static_cast<std::size_t>(total + 50));
  std::set<std::string> acked;
  std::size_t failed = 0;
  for (std::size_t i = 0; i < acks.size(); ++i) {
    auto const& [id, seq] = acks[i];
    if (seq)
      acked.insert(id);
    else
      ++failed;
    if (i >= static_cast<std::size_t>(total)) CHECK(seq);  // after the failover: all stored
  }
  if (failed) WARN(failed << " publishes failed during the failover (past the deadline)");
  // Every acknowledged publish reaches the consumer on another server.
  const auto last_acked = [&] {
    std::uint64_t m = 0;
    for (auto const& [id, seq] : acks)
      if (seq) m = std::max(m, *seq);
    return m;
  }();
  REQUIRE(eventually([&] {
    auto s = b.seen();
    return !s.empty() && s.back().seq >= last_acked;
  }));
  auto seen = b.seen();
  std::set<std::string> stored;
  for (std::size_t i = 0; i < seen.size(); ++i) {
    CHECK(seen[i].seq == i + 1);
    stored.insert(seen[i].msg_id);
  }
  for (auto const& id : acked) CHECK(stored.count(id) == 1);

}

TEST_CASE("nats_stream: with its only NATS server gone a publish fails (after the deadline), "
          "when the server is back the node reconnects, publishes and consumes again",
          "[cluster][nats]") {
  if (!have_nats()) return;
  nats_cluster nats(1);
  node b(nats.url(0), "b", 1);
  b.consume();
  b.publish("before");
  REQUIRE(eventually([&] { return b.seen_count() == 1; }));
  nats.kill(0);
  REQUIRE(eventually([&] { return !b.connected(); }, 10s));
  const std::size_t before = b.ack_count();
  b.publish("while down");
  REQUIRE(eventually([&] { return b.ack_count() > before; }, 15s));
  auto backs = b.acks();
  REQUIRE(backs.size() == before + 1);
  CHECK_FALSE(backs.back().second);
  nats.restart(0);
  REQUIRE(eventually([&] { return b.connected(); }, 20s));
  const std::string id = b.publish("after recovery");
  REQUIRE(eventually([&] { return b.acks().back().first == id; }, 20s));
  const auto got = b.acks().back().second;
  REQUIRE(got);
  // ... and its consumer delivers it (the ordered consumer survived the reconnect).
  REQUIRE(eventually([&] {
    auto s = b.seen();
    return !s.empty() && s.back().msg_id == id;
  }, 20s));
  auto after = b.seen();
  REQUIRE_FALSE(after.empty());
  CHECK(after.back().msg_id == id);
  CHECK(after.back().seq == *got);
}

TEST_CASE("nats_stream: a copy stored after its attempt's deadline, when the publish was "
          "already answered failed, is delivered as expired",
          "[cluster][nats]") {
  if (!have_nats()) return;
  nats_cluster nats(1);
  // Short deadlines: each attempt counts only if stored within 300 ms of its sending; the
  // publish fails after 800 ms, answered no earlier than 200 ms after its last attempt's expiry.
  node b(nats.url(0), "b", 1, "T", [](nats_settings& s) {
    s.ack_wait = 300ms;
    s.publish_deadline = 800ms;
    s.retry_pause = 100ms;
    s.expiry_margin = 200ms;
  });
  b.consume();
  b.publish("before");
  REQUIRE(eventually([&] { return b.seen_count() == 1; }));
  CHECK_FALSE(b.seen().front().expired);

  // The server stops reading (SIGSTOP: slow, not gone; the connection stays up, well inside
  // the client's 2 x 2 s of unanswered pings). The publish and its retries wait in the socket.
  nats.pause(0);
  const auto t0 = std::chrono::steady_clock::now();
  const std::string late = b.publish("late");
  REQUIRE(eventually([&] { return b.ack_count() == 2; }, 5s));
  const auto failed_after = std::chrono::steady_clock::now() - t0;
  CHECK_FALSE(b.acks().back().second);  // answered failed ...
  CHECK(failed_after >= 800ms);         // ... after the deadline, the last expiry + margin
  // The server reads it now and stores the first copy (the retries are its duplicates): too
  // late to count, so it is delivered as expired (every node skips it alike).
  nats.resume(0);
  REQUIRE(eventually([&] {
    for (auto const& e : b.seen())
      if (e.msg_id == late) return true;
    return false;
  }, 10s));
  for (auto const& e : b.seen())
    if (e.msg_id == late) CHECK(e.expired);
  // The stream goes on: a new publish is stored in time.
  const std::string after = b.publish("after");
  REQUIRE(eventually([&] {
    auto s = b.seen();
    return !s.empty() && s.back().msg_id == after;
  }, 10s));
  CHECK_FALSE(b.seen().back().expired);
  CHECK(b.acks().back().second);
}
