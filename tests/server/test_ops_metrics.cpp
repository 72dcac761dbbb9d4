// The --metrics-allow list (ops::cidr_list), its option, and the histogram's buckets.
#include "ops/metrics.hpp"
#include "options.hpp"

#include <catch2/catch.hpp>

using namespace jim::server;
namespace ip = boost::asio::ip;

TEST_CASE("A CIDR list matches the addresses of its networks only", "[metrics]") {
  std::string error;
  auto l = ops::cidr_list::parse("10.0.0.0/8, 192.168.1.7 ,fd00::/8", error);
  REQUIRE(l);
  CHECK(l->to_string() == "10.0.0.0/8,192.168.1.7/32,fd00::/8");
  CHECK(l->contains(ip::make_address("10.200.3.4")));
  CHECK(l->contains(ip::make_address("192.168.1.7")));
  CHECK_FALSE(l->contains(ip::make_address("192.168.1.8")));
  CHECK(l->contains(ip::make_address("fd12::1")));
  CHECK(l->contains(ip::make_address("::ffff:10.1.1.1")));  // a dual-stack listener's view
  CHECK_FALSE(l->contains(ip::make_address("127.0.0.1")));  // loopback is not added silently
  CHECK_FALSE(l->contains(ip::make_address("::1")));
  CHECK_FALSE(l->contains(ip::make_address("::ffff:127.0.0.1")));
}

TEST_CASE("A malformed CIDR list is refused quoting the item", "[metrics]") {
  for (char const* bad : {"", "10.0.0.0/33", "10.0.0.0/8,", "nope", "::1/129", "10.0.0.0/8,,::1",
                          "10.0.0.0/x"}) {
    CAPTURE(bad);
    std::string error;
    CHECK_FALSE(ops::cidr_list::parse(bad, error));
    CHECK_FALSE(error.empty());
  }
  std::string error;
  ops::cidr_list::parse("10.0.0.0/33", error);
  CHECK(error.find("10.0.0.0/33") != std::string::npos);
}

TEST_CASE("metrics-allow option: loopback by default, a list, a bad list exits 2", "[metrics][options]") {
  auto parse = [](std::vector<char const*> args) {
    args.insert(args.begin(), "jimd");
    return parse_options(static_cast<int>(args.size()), args.data());
  };
  auto allowed = [](config const& c, char const* a) {
    std::string error;
    return ops::cidr_list::parse(c.metrics_allow, error)->contains(ip::make_address(a));
  };
  auto d = parse({});
  REQUIRE(std::holds_alternative<run_daemon>(d));
  auto const& def = std::get<run_daemon>(d).cfg;
  CHECK(allowed(def, "127.0.0.1"));
  CHECK(allowed(def, "127.9.9.9"));
  CHECK(allowed(def, "::1"));
  CHECK_FALSE(allowed(def, "10.0.0.1"));
  CHECK_FALSE(def.check_config);
  CHECK_FALSE(def.log_json);

  auto g = parse({"--metrics-allow", "10.0.0.0/8", "--log-format", "json", "--check-config"});
  REQUIRE(std::holds_alternative<run_daemon>(g));
  CHECK_FALSE(allowed(std::get<run_daemon>(g).cfg, "127.0.0.1"));
  CHECK(std::get<run_daemon>(g).cfg.log_json);
  CHECK(std::get<run_daemon>(g).cfg.check_config);

  auto b = parse({"--metrics-allow", "10.0.0.0/40"});
  REQUIRE(std::holds_alternative<print_and_exit>(b));
  CHECK(std::get<print_and_exit>(b).exit_code == 2);
  CHECK(std::get<print_and_exit>(b).text.find("--metrics-allow") != std::string::npos);
  auto f = parse({"--log-format", "xml"});
  REQUIRE(std::holds_alternative<print_and_exit>(f));
  CHECK(std::get<print_and_exit>(f).text.find("--log-format") != std::string::npos);
}

TEST_CASE("A histogram puts each observation in the first bucket at or above it", "[metrics]") {
  ops::histogram h;
  using namespace std::chrono;
  h.observe(microseconds(10));   // exactly the first bound: le="1e-05"
  h.observe(microseconds(11));   // the second
  h.observe(seconds(100));       // above every bound: +Inf only
  const auto b = h.buckets();
  CHECK(b[0] == 1);
  CHECK(b[1] == 1);
  CHECK(b.back() == 1);
  CHECK(h.sum_seconds() == Approx(100.000021));
}
