// net::throttle, the per-address connection table, with a simulated clock: grouping of
// addresses (IPv6 by /64, IPv4-mapped as IPv4), both limits, refill, loopback exemption and
// bounded memory.

#include "net/throttle.hpp"

#include <catch2/catch.hpp>

#include <vector>

using jim::server::net::source_of;
using jim::server::net::throttle;
using jim::server::net::throttle_limits;
using verdict = throttle::verdict;
namespace ip = boost::asio::ip;
using namespace std::chrono_literals;

namespace {
ip::address addr(char const* text) {
  return ip::make_address(text);
}
}  // namespace

TEST_CASE("Addresses are grouped: IPv6 by /64, IPv4-mapped IPv6 as IPv4", "[throttle]") {
  CHECK(source_of(addr("2001:db8:1:2::1")) == source_of(addr("2001:db8:1:2:ffff::9")));
  CHECK(!(source_of(addr("2001:db8:1:2::1")) == source_of(addr("2001:db8:1:3::1"))));
  CHECK(source_of(addr("::ffff:203.0.113.7")) == source_of(addr("203.0.113.7")));
  CHECK(!(source_of(addr("203.0.113.7")) == source_of(addr("203.0.113.8"))));
  CHECK(to_string(source_of(addr("2001:db8:1:2::1"))) == "2001:db8:1:2::/64");
  CHECK(to_string(source_of(addr("::ffff:203.0.113.7"))) == "203.0.113.7");
}

TEST_CASE("At most max_open at once and new_per_window per window, per source", "[throttle]") {
  throttle t(throttle_limits{3, 5, 600s, true, 100});
  const auto t0 = throttle::clock::now();
  std::vector<throttle::ticket> open;
  for (int i = 0; i < 3; ++i) {
    auto d = t.admit(addr("2001:db8::1"), t0);
    REQUIRE(d.outcome == verdict::admitted);
    open.push_back(std::move(d.admitted));
  }
  // Same /64: too many; another /64 and an IPv4 address: fine.
  CHECK(t.admit(addr("2001:db8::2:3"), t0).outcome == verdict::too_many);
  CHECK(t.admit(addr("2001:db8:0:1::1"), t0).outcome == verdict::admitted);
  CHECK(t.admit(addr("192.0.2.1"), t0).outcome == verdict::admitted);
  open.pop_back();  // one closes
  open.push_back(t.admit(addr("2001:db8::1"), t0).admitted);  // 4th new connection
  open.pop_back();
  open.push_back(t.admit(addr("2001:db8::1"), t0).admitted);  // 5th
  open.pop_back();
  auto d = t.admit(addr("2001:db8::1"), t0);  // 6th within the window
  CHECK(d.outcome == verdict::too_fast);
  CHECK(d.retry_after == Approx(120).margin(0.5));  // 600 s / 5
  // A refusal uses nothing; after one refill interval one more is allowed.
  CHECK(t.admit(addr("2001:db8::1"), t0 + 119s).outcome == verdict::too_fast);
  CHECK(t.admit(addr("2001:db8::1"), t0 + 121s).outcome == verdict::admitted);
}

TEST_CASE("Loopback is exempt only when asked", "[throttle]") {
  throttle strict(throttle_limits{1, 100, 600s, true, 100});
  auto a = strict.admit(addr("127.0.0.1"));
  CHECK(a.outcome == verdict::admitted);
  CHECK(strict.admit(addr("127.0.0.1")).outcome == verdict::too_many);
  throttle lax(throttle_limits{1, 1, 600s, false, 100});
  std::vector<throttle::ticket> open;
  for (int i = 0; i < 5; ++i) {
    for (char const* a6 : {"127.0.0.1", "::1", "::ffff:127.0.0.2"}) {
      auto d = lax.admit(addr(a6));
      CHECK(d.outcome == verdict::admitted);
      open.push_back(std::move(d.admitted));
    }
  }
  CHECK(lax.entries() == 0);
  CHECK(lax.admit(addr("192.0.2.1")).outcome == verdict::admitted);
}

TEST_CASE("The table forgets idle sources after a window and stays bounded", "[throttle]") {
  throttle t(throttle_limits{16, 32, 600s, true, 1000});
  const auto t0 = throttle::clock::now();
  {
    auto kept = t.admit(addr("198.51.100.1"), t0).admitted;  // open: always kept
    for (std::uint32_t i = 0; i < 5000; ++i)
      t.admit(ip::address_v4(0x0A000000u + i), t0);  // tickets released at once
    CHECK(t.entries() <= 1000 + 1);
    // After the window every idle entry goes (their buckets are full again).
    t.admit(addr("203.0.113.1"), t0 + 1h);
    CHECK(t.entries() <= 3);
  }
}
