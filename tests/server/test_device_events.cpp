// Cluster-wide device lists (issue 13, --max-sessions across nodes): the device fields of
// `signin` and `seen` and the `gone` event in the journal's format (and events without them
// read as before), apply() keeping each account's list in order, bounded by the proposer's
// --max-sessions, the same on every replica, and the snapshot keeping the lists.

#include "files.hpp"
#include "harness.hpp"
#include "hub.hpp"
#include "snapshot.hpp"
#include "store/events.hpp"

#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace jim::server;
namespace json = boost::json;

namespace {

const std::string n1 = "00000000000000a1";  // a process instance of node n1
const std::string n2 = "00000000000000b2";  // of node n2
const std::string n1_again = "00000000000000a3";  // node n1 restarted

std::vector<std::string> ids(account const& a) {
  std::vector<std::string> out;
  for (auto const& d : a.cluster_devices) out.push_back(d.id);
  return out;
}

}  // namespace

TEST_CASE("Device fields of signin and seen, and gone, are written as documented", "[journal]") {
  // A single node writes no device fields: its journals are the same bytes as before.
  CHECK(store::encode(store::signed_in{"bob"}, 8) == R"({"seq":8,"ev":"signin","account":"bob"})");
  CHECK(store::encode(store::general_seen{"bob", 42}, 7) ==
        R"({"seq":7,"ev":"seen","account":"bob","general":42})");
  // A cluster node's, with the device, its node and the proposer's --max-sessions.
  CHECK(store::encode(store::signed_in{"bob", n1 + ".3", "n1", 2}, 8) ==
        R"({"seq":8,"ev":"signin","account":"bob","device":"00000000000000a1.3","node":"n1","max":2})");
  CHECK(store::encode(store::general_seen{"bob", 42, n1 + ".3"}, 7) ==
        R"({"seq":7,"ev":"seen","account":"bob","general":42,"device":"00000000000000a1.3"})");
  CHECK(store::encode(store::node_gone{"n1", n1}, 26) ==
        R"({"seq":26,"ev":"gone","node":"n1","instance":"00000000000000a1"})");

  // Each survives decode (with and without the device fields).
  for (store::event e : {store::event{store::signed_in{"bob"}},
                         store::event{store::signed_in{"bob", n1 + ".3", "n1", 2}},
                         store::event{store::general_seen{"bob", 4}},
                         store::event{store::general_seen{"bob", 4, n1 + ".3"}},
                         store::event{store::node_gone{"n1", n1}}}) {
    const auto payload = store::encode(e, 5);
    auto d = store::decode(payload);
    CHECK(d.e.index() == e.index());
    CHECK(store::encode(d.e, 5) == payload);
  }

  // The device fields come all together or not at all.
  CHECK_THROWS_WITH(
      store::decode(R"({"seq":1,"ev":"signin","account":"bob","device":"a.1","max":2})"),
      Catch::Contains("missing field \"node\""));
  CHECK_THROWS_WITH(store::decode(R"({"seq":1,"ev":"signin","account":"bob","node":"n1"})"),
                    Catch::Contains("unknown field \"node\""));
  CHECK_THROWS_WITH(
      store::decode(R"({"seq":1,"ev":"signin","account":"bob","device":"","node":"n1","max":2})"),
      Catch::Contains("empty \"device\""));
  CHECK_THROWS_WITH(
      store::decode(R"({"seq":1,"ev":"signin","account":"bob","device":"a.1","node":"n1","max":0})"),
      Catch::Contains("\"max\" of at least 1"));
  CHECK_THROWS_WITH(
      store::decode(R"({"seq":1,"ev":"signin","account":"bob","device":"a.1","node":"n1","max":-1})"),
      Catch::Contains("\"max\" is not a non-negative integer"));
  CHECK_THROWS_WITH(store::decode(R"({"seq":1,"ev":"seen","account":"bob","general":1,"device":""})"),
                    Catch::Contains("empty \"device\""));
  CHECK_THROWS_WITH(store::decode(R"({"seq":1,"ev":"gone","node":"n1"})"),
                    Catch::Contains("missing field \"instance\""));
  CHECK_THROWS_WITH(store::decode(R"({"seq":1,"ev":"gone","node":"","instance":"a"})"),
                    Catch::Contains("empty \"node\""));
}

TEST_CASE("apply keeps each account's devices in stream order, at most the proposer's max",
          "[journal]") {
  hub a{hub_limits{}}, b{hub_limits{}};
  std::vector<store::event> events{
      store::account_registered{"alice", "h"},
      store::account_registered{"bob", "h"},
      store::signed_in{"alice", n1 + ".1", "n1", 2},
      store::signed_in{"bob", n2 + ".1", "n2", 2},
      store::signed_in{"alice", n2 + ".2", "n2", 2},
      store::signed_in{"alice", n2 + ".2", "n2", 2},  // announced again: changes nothing
  };
  for (auto const& e : events) {
    auto ra = a.apply(e), rb = b.apply(e);
    REQUIRE(ra.ok());
    REQUIRE(rb.ok());
    CHECK(ra.evicted.empty());
  }
  CHECK(ids(*a.find_account("alice")) == std::vector<std::string>{n1 + ".1", n2 + ".2"});

  // A third device beyond max 2: the oldest goes (on every replica alike).
  store::event third = store::signed_in{"alice", n1 + ".3", "n1", 2};
  auto ra = a.apply(third), rb = b.apply(third);
  CHECK(ra.evicted == std::vector<std::string>{n1 + ".1"});
  CHECK(rb.evicted == ra.evicted);
  CHECK(ids(*a.find_account("alice")) == std::vector<std::string>{n2 + ".2", n1 + ".3"});
  // A proposer with --max-sessions 1: everything older goes.
  CHECK(a.apply(store::signed_in{"bob", n1 + ".4", "n1", 1}).evicted ==
        std::vector<std::string>{n2 + ".1"});
  CHECK(ids(*a.find_account("bob")) == std::vector<std::string>{n1 + ".4"});

  // A sign-out takes its device off; an unknown one (evicted already) changes nothing.
  REQUIRE(a.apply(store::general_seen{"alice", 0, n2 + ".2"}).ok());
  REQUIRE(a.apply(store::general_seen{"alice", 0, n1 + ".1"}).ok());
  CHECK(ids(*a.find_account("alice")) == std::vector<std::string>{n1 + ".3"});
  // A sign-out without a device (a single node's) leaves the list alone.
  REQUIRE(a.apply(store::general_seen{"alice", 0}).ok());
  CHECK(ids(*a.find_account("alice")) == std::vector<std::string>{n1 + ".3"});
  CHECK(a.device_instances().at({"n1", n1}) == 2);

  // A node's instance gone: its devices go from every account; others stay; twice is harmless.
  REQUIRE(a.apply(store::signed_in{"alice", n1_again + ".1", "n1", 8}).ok());
  REQUIRE(a.apply(store::node_gone{"n1", n1}).ok());
  CHECK(ids(*a.find_account("alice")) == std::vector<std::string>{n1_again + ".1"});
  CHECK(a.find_account("bob")->cluster_devices.empty());
  CHECK(a.apply(store::node_gone{"n1", n1}).ok());
  CHECK(a.device_instances().size() == 1);
  CHECK(a.device_instances().at({"n1", n1_again}) == 1);

  // Signing in to an unknown account is refused and lists nothing.
  CHECK(a.apply(store::signed_in{"nobody", n2 + ".9", "n2", 2}).status ==
        jim::proto::code::not_found);
}

TEST_CASE("The snapshot keeps the device lists (and writes none on a single node)",
          "[snapshot]") {
  jim::test::temp_dir dir;
  hub h{hub_limits{}};
  REQUIRE(h.apply(store::account_registered{"alice", "h"}).ok());
  REQUIRE(h.apply(store::account_registered{"bob", "h"}).ok());
  REQUIRE(h.apply(store::signed_in{"bob"}).ok());
  const auto file = snapshot::file_in(dir.path());
  {
    json::value doc = snapshot::capture(h, 3);
    for (auto const& acc : doc.at("accounts").as_array())
      CHECK_FALSE(acc.as_object().contains("devices"));
  }
  REQUIRE(h.apply(store::signed_in{"alice", n1 + ".1", "n1", 2}).ok());
  REQUIRE(h.apply(store::signed_in{"alice", n2 + ".7", "n2", 2}).ok());
  json::value doc = snapshot::capture(h, 5);
  snapshot::write(file, doc);
  json::value damaged = doc;  // (for the refusals below)
  hub loaded{hub_limits{}};
  REQUIRE_FALSE(snapshot::load(file, loaded, 1700000500));
  CHECK(ids(*loaded.find_account("alice")) == std::vector<std::string>{n1 + ".1", n2 + ".7"});
  CHECK(loaded.find_account("alice")->cluster_devices[1].node == "n2");
  CHECK(loaded.device_instances() == h.device_instances());
  json::value again = snapshot::capture(loaded, 5);
  doc.as_object().erase("saved_at");
  again.as_object().erase("saved_at");
  CHECK(again == doc);
  // The loaded lists go on as the original's: the next device evicts the same one.
  store::event next = store::signed_in{"alice", n1 + ".2", "n1", 2};
  CHECK(loaded.apply(next).evicted == h.apply(next).evicted);

  // A damaged list is refused with where and why.
  auto& alice = damaged.at("accounts").as_array()[0].as_object();
  REQUIRE(alice.at("name") == "alice");
  SECTION("an id without its instance") {
    alice.at("devices").as_array()[0].as_object()["id"] = "17";
    snapshot::write(file, damaged);
    hub bad{hub_limits{}};
    auto err = snapshot::load(file, bad, 1700000500);
    REQUIRE(err);
    CHECK_THAT(*err, Catch::Contains("not a device id"));
  }
  SECTION("a device twice") {
    alice.at("devices").as_array()[1] = alice.at("devices").as_array()[0];
    snapshot::write(file, damaged);
    hub bad{hub_limits{}};
    auto err = snapshot::load(file, bad, 1700000500);
    REQUIRE(err);
    CHECK_THAT(*err, Catch::Contains("duplicate device"));
  }
}
