// jim-bench storm --cycles (issue 14's measurement): calm and storm phases alternate in one
// run against a real jimd, every cycle's storm users are fresh accounts, each cycle is reported
// with its own calm and storm latency, and the trace names every phase, answer and message.
// Runs the built jim-bench as a child process (cheap KDF: the scenario, not the hashing).

#include "harness.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <sstream>
#include <string>

namespace {

using namespace jim::test;

/// Runs `cmd` under `sh -c`, returns its stdout and sets `status` to its exit code.
std::string run_capture(std::string const& cmd, int& status) {
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  if (!p) throw std::runtime_error("popen failed");
  char buf[4096];
  while (std::size_t n = std::fread(buf, 1, sizeof buf, p)) out.append(buf, n);
  const int rc = ::pclose(p);
  status = WIFEXITED(rc) ? WEXITSTATUS(rc) : -1;
  return out;
}

}  // namespace

TEST_CASE("jim-bench storm --cycles reports every cycle apart and traces it",
          "[bench][storm]") {
  const auto bench = program("jim-bench");
  if (!std::filesystem::exists(bench)) {
    WARN("jim-bench is not built (" << bench << "): build the target jim-bench to run this test");
    return;
  }
  jimd_process server({"--rate-limit", "0", "--throttle-loopback", "no"});
  temp_dir dir;
  const auto trace = dir.path() / "storm.csv";
  // 3 cycles of 0.6 s calm + a storm of 4 sign-ups; `timeout` bounds the run.
  const std::string cmd = "timeout 60 " + bench.string() + " storm -p " +
                          std::to_string(server.port()) + " --server-pid " +
                          std::to_string(server.pid()) +
                          " -R 5 -S 1 --rate 200 -N 4 --before 0.6 --gap 0.2 --after 0.2"
                          " --cycles 3 --concurrency 4 --setup-timeout 30 --label t --trace " +
                          trace.string() + " 2>/dev/null";
  int status = -1;
  const std::string out = run_capture(cmd, status);
  INFO(out);
  REQUIRE(status == 0);
  const json::object r = json::parse(out).as_object();
  CHECK(r.at("cycles").as_int64() == 3);
  CHECK(r.at("cycles_finished").as_int64() == 3);
  CHECK(r.at("storm_close").as_string() == "end");  // the default with more than one cycle
  CHECK(r.at("storm_signed_in").as_int64() == 12);   // 3 x 4 fresh accounts
  CHECK(r.at("storm_failed").as_int64() == 0);
  CHECK(r.at("lost").as_int64() == 0);
  CHECK(r.at("cycle_p99_ratios").as_array().size() == 3);
  CHECK(r.contains("p99_pooled_ratio"));
  CHECK(r.at("p99_pooled_ratio") == r.at("p99_during_over_before"));
  auto const& cycles = r.at("cycle").as_array();
  REQUIRE(cycles.size() == 3);
  std::int64_t calm_samples = 0;
  for (auto const& c : cycles) {
    auto const& o = c.as_object();
    CHECK(o.at("signed_in").as_int64() == 4);
    CHECK(o.at("calm_ms").as_object().at("n").as_int64() > 0);
    calm_samples += o.at("calm_ms").as_object().at("n").as_int64();
    // The server's threads were sampled at the phase boundaries.
    CHECK(o.at("calm_cpu_pct").as_object().contains("io_wait"));
    CHECK(o.at("storm_cpu_pct").as_object().contains("hash"));
  }
  // The pooled calm histogram is the sum of the cycles' calm phases.
  CHECK(r.at("latency_before_ms").as_object().at("n").as_int64() == calm_samples);

  // The trace: 3 calm and 3 storm phases, 2 gaps, 1 after; 12 answers (201); the messages.
  std::ifstream in(trace);
  REQUIRE(in);
  int calm = 0, storm = 0, gap = 0, after = 0, answers = 0, ok = 0, msgs = 0;
  for (std::string line; std::getline(in, line);) {
    if (line.rfind("phase,", 0) == 0) {
      calm += line.find(",calm,") != std::string::npos;
      storm += line.find(",storm,") != std::string::npos;
      gap += line.find(",gap,") != std::string::npos;
      after += line.find(",after,") != std::string::npos;
    } else if (line.rfind("answer,", 0) == 0) {
      ++answers;
      ok += line.find(",201,") != std::string::npos;
    } else if (line.rfind("msg,", 0) == 0) {
      ++msgs;
    }
  }
  CHECK(calm == 3);
  CHECK(storm == 3);
  CHECK(gap == 2);
  CHECK(after == 1);
  CHECK(answers == 12);
  CHECK(ok == 12);
  CHECK(msgs == r.at("sent").as_int64());
}
