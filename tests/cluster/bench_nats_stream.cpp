// Measurements of the cluster's log (hidden tests: run them by tag, they print figures):
//   build-*/bin/jim_cluster_tests '[.bench]'
// - the stream's event rate when saturated: N events of ~200 bytes published asynchronously
//   by one node, acknowledged and consumed back, on 1 server (R=1) and on 3 servers (R=3);
// - cross-node latency: node A publishes 500 events/s, node B (on another server) consumes;
//   p50/p99 of publish -> delivery on B (both on this machine: one clock).

#include "cluster/nats_stream.hpp"
#include "nats_harness.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <future>
#include <iostream>
#include <thread>

namespace {

namespace asio = boost::asio;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;
using jim::server::cluster::nats_settings;
using jim::server::cluster::nats_stream;
using jim::server::cluster::stream_entry;
using jim::test::nats_cluster;

struct bench_node {
  asio::io_context ioc{1};
  asio::executor_work_guard<asio::io_context::executor_type> work = asio::make_work_guard(ioc);
  nats_stream stream;
  std::thread thread;
  bench_node(std::string const& url, std::string const& name, int replicas)
      : stream(ioc, [&] {
          nats_settings s;
          s.urls = {url};
          s.node = name;
          s.stream = "B";
          s.replicas = replicas;
          return s;
        }()) {
    stream.open();
    thread = std::thread([this] { ioc.run(); });
  }
  ~bench_node() {
    std::promise<void> closed;
    asio::post(ioc, [&] {
      stream.close();
      closed.set_value();
    });
    closed.get_future().wait_for(20s);
    work.reset();
    ioc.stop();
    thread.join();
  }
};

std::int64_t now_ns() {
  return std::chrono::duration_cast<std::chrono::nanoseconds>(
             clock_type::now().time_since_epoch())
      .count();
}

double saturated_rate(nats_cluster& nats, int replicas, int n) {
  bench_node a(nats.url(0), "a", replicas);
  std::atomic<int> acked{0}, consumed{0};
  std::promise<void> all;
  asio::post(a.ioc, [&] {
    a.stream.consume(0, [&](stream_entry&&) {
      if (++consumed == n) all.set_value();
    });
  });
  const std::string payload(200, 'x');
  const auto t0 = clock_type::now();
  asio::post(a.ioc, [&] {
    for (int i = 0; i < n; ++i)
      a.stream.publish(a.stream.next_msg_id(), payload,
                       [&](std::optional<std::uint64_t>, std::string const&) { ++acked; });
  });
  REQUIRE(all.get_future().wait_for(120s) == std::future_status::ready);
  const double secs = std::chrono::duration<double>(clock_type::now() - t0).count();
  return n / secs;
}

}  // namespace

TEST_CASE("bench: the stream's event rate when saturated, R=1 and R=3", "[.bench][cluster]") {
  if (jim::test::nats_server_program().empty()) return;
  constexpr int n = 50000;
  double r1 = 0, r3 = 0;
  {
    nats_cluster one(1);
    r1 = saturated_rate(one, 1, n);
  }
  {
    nats_cluster three(3);
    r3 = saturated_rate(three, 3, n);
  }
  std::cout << "stream event rate, " << n << " events of 200 B, published asynchronously, "
            << "acknowledged and consumed back: R=1 " << static_cast<long>(r1)
            << "/s, R=3 " << static_cast<long>(r3) << "/s\n";
}

TEST_CASE("bench: cross-node latency at 500 events/s (3 servers, R=3)", "[.bench][cluster]") {
  if (jim::test::nats_server_program().empty()) return;
  nats_cluster nats(3);
  bench_node a(nats.url(0), "a", 3);
  bench_node b(nats.url(1), "b", 3);
  constexpr int n = 2500;  // 5 s
  std::vector<std::int64_t> lat;  // B's I/O thread only, until `all`
  lat.reserve(n);
  std::promise<void> all;
  asio::post(b.ioc, [&] {
    b.stream.consume(0, [&](stream_entry&& e) {
      lat.push_back(now_ns() - std::stoll(e.payload));
      if (static_cast<int>(lat.size()) == n) all.set_value();
    });
  });
  std::this_thread::sleep_for(500ms);  // the consumer is created (an absence of traffic: no event to await)
  const auto start = clock_type::now();
  for (int i = 0; i < n; ++i) {
    std::this_thread::sleep_until(start + i * 2ms);
    asio::post(a.ioc, [&] {
      a.stream.publish(a.stream.next_msg_id(), std::to_string(now_ns()),
                       [](std::optional<std::uint64_t>, std::string const&) {});
    });
  }
  REQUIRE(all.get_future().wait_for(60s) == std::future_status::ready);
  std::sort(lat.begin(), lat.end());
  auto pct = [&](double p) { return lat[static_cast<std::size_t>(p * (lat.size() - 1))] / 1e6; };
  std::cout << "cross-node latency (publish on A -> delivered on B), 500/s, R=3: p50 "
            << pct(0.5) << " ms, p99 " << pct(0.99) << " ms, max " << pct(1.0) << " ms\n";
}
