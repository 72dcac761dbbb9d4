// Hidden benchmarks of jimd nodes in cluster mode (run: jim_cluster_tests '[.bench]'):
// - fan-out R=1000 through one cluster node against an embedded jimd, in the same run, with
//   jim-bench (build the target jim-bench first: it is run as a child process);
// - cross-node chat latency: a sender on node A, a receiver on node B, 500 messages/s.
// One NATS server on 127.0.0.1 (the 2-core machine cannot show scaling: these measure cost).

#include "chat_helpers.hpp"
#include "nats_harness.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <sys/resource.h>
#include <thread>

namespace {

using namespace jim::test;
using namespace std::chrono_literals;
using clock_type = std::chrono::steady_clock;

void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
  }
}

const std::vector<std::string> bench_args{"--rate-limit",      "0", "--max-clients", "20000",
                                          "--history-on-join", "0", "--autosave",    "0"};

void fanout(char const* label, jimd_process const& server) {
  const auto bench = program("jim-bench");
  if (!std::filesystem::exists(bench)) FAIL("build jim-bench first (" << bench << ")");
  const std::string cmd = bench.string() + " fanout -p " + std::to_string(server.port()) +
                          " --server-pid " + std::to_string(server.pid()) +
                          " -R 1000 -S 10 -M 5000 -P 64 --window 8";
  std::printf("== fan-out, %s: %s\n", label, cmd.c_str());
  std::fflush(stdout);
  CHECK(std::system(cmd.c_str()) == 0);
}

}  // namespace

TEST_CASE("Benchmark: fan-out R=1000, embedded jimd and a cluster node", "[.bench][cluster]") {
  if (!have_nats()) return;
  raise_fd_limit();
  {
    jimd_process embedded(bench_args);
    fanout("embedded", embedded);
  }
  nats_cluster nats(1);
  auto args = bench_args;
  args.insert(args.end(), {"--nats", nats.urls(), "--node-name", "a", "--nats-stream", "B"});
  jimd_process node(args);
  fanout("cluster node (1 NATS server, R=1 stream)", node);
}

TEST_CASE("Benchmark: cross-node chat latency at 500 messages/s", "[.bench][cluster]") {
  if (!have_nats()) return;
  nats_cluster nats(1);
  auto args = [&](std::string const& name) {
    auto a = bench_args;
    a.insert(a.end(), {"--nats", nats.urls(), "--node-name", name, "--nats-stream", "L"});
    return a;
  };
  jimd_process a(args("a")), b(args("b"));
  auto sender = sign_up(a.port(), "sender");
  auto receiver = sign_up(b.port(), "receiver");
  constexpr int n = 2500;  // 5 s at 500/s
  // Send times in ns since t0 (atomics: written by this thread, read by the reader's).
  std::vector<std::atomic<long long>> sent(n);
  const auto t0 = clock_type::now();
  auto since_t0 = [&t0] {
    return std::chrono::duration_cast<std::chrono::nanoseconds>(clock_type::now() - t0).count();
  };
  std::vector<double> latency_ms;
  latency_ms.reserve(n);
  std::thread reader([&] {
    for (int got = 0; got < n;) {
      auto p = receiver.push(10s);
      if (str(p, "action") != "msg") continue;
      const int i = std::stoi(str(p, "message"));
      latency_ms.push_back(static_cast<double>(since_t0() - sent[i].load()) / 1e6);
      ++got;
    }
  });
  // Replies are read by a second thread so that sending keeps its pace.
  std::thread replies([&] {
    for (int i = 0; i < n; ++i) sender.reply(10s);
  });
  for (int i = 0; i < n; ++i) {
    std::this_thread::sleep_until(t0 + std::chrono::microseconds(2000) * i);
    sent[i].store(since_t0());
    sender.send_raw(
        json::serialize(json::object{{"action", "msg"}, {"message", std::to_string(i)}}) + "\n");
  }
  replies.join();
  reader.join();
  std::sort(latency_ms.begin(), latency_ms.end());
  auto at = [&](double q) { return latency_ms[static_cast<std::size_t>(q * (n - 1))]; };
  std::printf(
      "cross-node latency (A -> stream -> B), %d messages at 500/s: p50 %.2f ms, p99 "
      "%.2f ms, max %.2f ms\n",
      n, at(0.5), at(0.99), latency_ms.back());
  CHECK(latency_ms.size() == static_cast<std::size_t>(n));
}
