// --max-sessions differing between cluster nodes (docs/CLUSTER.md, "Devices across nodes"):
// which `signin` events a node warns about, once per other node and value.

#include "cluster/session_limit.hpp"

#include <catch2/catch.hpp>

#include <string>

using jim::server::cluster::session_limit_check;

TEST_CASE("A differing --max-sessions of another node is reported once per node and value",
          "[cluster][max_sessions]") {
  session_limit_check c;
  // Our own node's events, and the same value from another node: nothing to say.
  CHECK_FALSE(c.differs_first_time("a", 2, "a", 8));
  CHECK_FALSE(c.differs_first_time("b", 8, "a", 8));
  // Node b with 2: reported the first time only.
  CHECK(c.differs_first_time("b", 2, "a", 8));
  CHECK_FALSE(c.differs_first_time("b", 2, "a", 8));
  // Another value of b (restarted with another option), and another node: once each.
  CHECK(c.differs_first_time("b", 3, "a", 8));
  CHECK(c.differs_first_time("c", 2, "a", 8));
  CHECK_FALSE(c.differs_first_time("c", 2, "a", 8));
  CHECK_FALSE(c.differs_first_time("b", 3, "a", 8));
  // An older jimd's event carries no value (0), and an event without a node name.
  CHECK_FALSE(c.differs_first_time("d", 0, "a", 8));
  CHECK_FALSE(c.differs_first_time("", 2, "a", 8));
}

TEST_CASE("What is remembered about other nodes' --max-sessions is bounded",
          "[cluster][max_sessions]") {
  session_limit_check c;
  for (std::size_t i = 0; i < session_limit_check::max_remembered; ++i)
    CHECK(c.differs_first_time("n" + std::to_string(i), 2, "a", 8));
  CHECK_FALSE(c.differs_first_time("one-too-many", 2, "a", 8));
  CHECK_FALSE(c.differs_first_time("n0", 2, "a", 8));
}
