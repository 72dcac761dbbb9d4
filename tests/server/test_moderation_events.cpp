// The issue-16 events (edits, schedules, moderation): encode/decode round trip, apply()
// determinism and refusals, and the snapshot's format-4 fields (capture -> load -> capture).

#include "files.hpp"
#include "harness.hpp"
#include "hub.hpp"
#include "snapshot.hpp"
#include "store/events.hpp"

#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <initializer_list>
#include <vector>

using namespace jim::server;
namespace json = boost::json;
using jim::proto::code;

namespace {

std::vector<store::event> base_events() {
  using namespace store;
  return {account_registered{"Alice", "h1"},
          account_registered{"bob", "h2"},
          account_registered{"carol", "h3"},
          account_registered{"dave", "h4"},
          room_created{"#Den", "Alice", "room-hash"},
          member_added{"#Den", "bob"},
          message_posted{{0, 1700000000, "bob", "#Den", "helo"}, false},   // id 1
          message_posted{{0, 1700000001, "Alice", "bob", "psst"}, true},   // id 2
          message_posted{{0, 1700000002, "bob", "#Den", "spam"}, false}};  // id 3
}

std::vector<store::event> issue16_events() {
  using namespace store;
  auto evs = base_events();
  for (event e : std::initializer_list<event>{
           message_edited{1, "bob", "hello", 1700000100},
           message_deleted{3, "Alice", false},  // the room's owner
           message_edited{2, "Alice", "psst!", 1700000101},
           message_scheduled{"Alice", "#Den", "later", 1700001000, ""},      // S 1
           message_scheduled{"bob", "Alice", "reminder", 1700002000, "n1"},  // S 2
           schedule_cancelled{2, "bob"},
           user_reported{"bob", "Alice", "spam", 1700000200, 3, 86400, 14400},
           user_reported{"bob", "carol", "", 1700000300, 3, 86400, 14400},
           user_reported{"bob", "dave", "", 1700000400, 3, 86400, 14400},  // the third: muted
           room_moderated{"#Den", "bob", "Alice", "ban"},
           account_banned{"dave", "Alice", "spam", true}, schedule_due{1, 1700001000, false},
           notices_delivered{"Alice", 0}})
    evs.push_back(std::move(e));
  return evs;
}

}  // namespace

TEST_CASE("Edit, schedule and moderation events survive encode and decode", "[journal]") {
  std::uint64_t seq = 1;
  for (auto const& e : issue16_events()) {
    const std::string payload = store::encode(e, seq);
    auto d = store::decode(payload);
    CHECK(d.e.index() == e.index());
    CHECK(store::encode(d.e, seq) == payload);
    ++seq;
  }
  CHECK_THROWS_WITH(
      store::decode(
          R"({"seq":1,"ev":"roomban","room":"#r","account":"a","by":"b","action":"dance"})"),
      Catch::Contains("unknown room moderation"));
  CHECK_THROWS_WITH(store::decode(R"({"seq":1,"ev":"edit","id":1,"by":"a"})"),
                    Catch::Contains("missing field"));
}

TEST_CASE("Applying edit, schedule and moderation events is deterministic", "[journal]") {
  hub a{hub_limits{}}, b{hub_limits{}};
  for (auto const& e : issue16_events()) {
    auto ra = a.apply(e), rb = b.apply(e);
    CHECK(ra.status == rb.status);
    CHECK(ra.ok());
  }
  auto const& den = *a.find_room("den");
  CHECK(den.history.front().message == "hello");
  CHECK(den.history.front().edited == 1700000100);
  CHECK(den.history[1].deleted);
  CHECK(den.history[1].message.empty());
  CHECK(den.banned.count("bob") == 1);
  CHECK(den.members.count("bob") == 0);
  CHECK(a.find_account("bob")->muted_until == 1700000400 + 14400);
  CHECK(a.find_account("bob")->reports.empty());  // counted again from zero
  CHECK(a.find_account("dave")->banned == std::optional<std::string>("spam"));
  CHECK(a.find_account("bob")->queued.front().message == "psst!");  // edited while queued
  CHECK(a.schedules().empty());
  CHECK(a.last_schedule() == 2);
  // The due one was posted with the next id, at the event's time.
  CHECK(den.history.back().message == "later");
  CHECK(den.history.back().id == 4);
  CHECK(den.history.back().time == 1700001000);

  // Refusals change nothing.
  CHECK(a.apply(store::message_edited{1, "Alice", "not mine", 1}).status == code::forbidden);
  CHECK(a.apply(store::message_deleted{2, "carol", false}).status == code::forbidden);
  CHECK(a.apply(store::message_deleted{2, "carol", true}).ok());  // an admin's
  CHECK(a.apply(store::message_edited{3, "bob", "undelete", 1}).status == code::not_found);
  CHECK(a.apply(store::schedule_due{1, 1700001000, false}).status ==
        code::conflict);  // a duplicate
  CHECK(a.apply(store::schedule_cancelled{9, "Alice"}).status == code::not_found);
  CHECK(a.apply(store::member_added{"#Den", "bob"}).status == code::forbidden);  // banned
  CHECK(a.apply(store::room_moderated{"#Den", "carol", "bob", "kick"}).status == code::forbidden);
}

TEST_CASE("A scheduled message the author may no longer post becomes a pending notice",
          "[journal]") {
  hub h{hub_limits{}};
  for (auto const& e : base_events()) REQUIRE(h.apply(e).ok());
  REQUIRE(h.apply(store::message_scheduled{"bob", "#Den", "x", 10, ""}).ok());
  REQUIRE(h.apply(store::room_moderated{"#Den", "bob", "Alice", "ban"}).ok());
  auto r = h.apply(store::schedule_due{1, 10, false});
  CHECK(r.ok());
  CHECK_FALSE(r.message);
  CHECK(h.find_account("bob")->notices.size() == 1);
  REQUIRE(h.apply(store::notices_delivered{"bob", 1}).ok());
  CHECK(h.find_account("bob")->notices.empty());
}

TEST_CASE("The snapshot keeps edits, deletions, schedules, mutes and bans (format 5)",
          "[snapshot]") {
  jim::test::temp_dir dir;
  hub h{hub_limits{}};
  for (auto const& e : issue16_events()) REQUIRE(h.apply(e).ok());
  REQUIRE(h.apply(store::message_scheduled{"carol", "bob", "pending", 1900000000, "n2"}).ok());
  REQUIRE(h.apply(store::message_scheduled{"bob", "#Den", "dropped", 1, ""}).ok());
  REQUIRE(h.apply(store::schedule_due{4, 2, false}).ok());  // bob is banned from #Den: a notice
  const auto file = snapshot::file_in(dir.path());
  json::value doc = snapshot::capture(h, 7);
  CHECK(doc.at("format") == 5);
  snapshot::write(file, doc);
  hub loaded{hub_limits{}};
  REQUIRE_FALSE(snapshot::load(file, loaded, 1700000500));
  json::value again = snapshot::capture(loaded, 7);
  doc.as_object().erase("saved_at");
  again.as_object().erase("saved_at");
  CHECK(again == doc);
  CHECK(loaded.schedules().size() == 1);
  CHECK(loaded.schedules().begin()->second.origin == "n2");
  CHECK(loaded.find_account("bob")->notices.size() == 1);
  CHECK(loaded.find_room("den")->history[1].deleted);
}

// Format 4 was never released: the branch of the contacts and that of the moderation each
// wrote one. Both load (told apart by last_scheduled), as does format 5 with both parts.
TEST_CASE("A format-4 snapshot of either issue-16 branch loads", "[snapshot]") {
  jim::test::temp_dir dir;
  hub h{hub_limits{}};
  for (auto const& e : issue16_events()) REQUIRE(h.apply(e).ok());
  REQUIRE(h.apply(store::contact_added{"bob", "carol"}).ok());
  REQUIRE(h.apply(store::message_scheduled{"carol", "bob", "pending", 1900000000, "n2"}).ok());
  const auto file = snapshot::file_in(dir.path());
  json::value doc = snapshot::capture(h, 7);
  doc.as_object()["format"] = 4;
  SECTION("the moderation branch's (no contacts)") {
    for (auto& a : doc.at("accounts").as_array()) a.as_object().erase("contacts");
    snapshot::write(file, doc);
    hub loaded{hub_limits{}};
    REQUIRE_FALSE(snapshot::load(file, loaded, 1700000500));
    CHECK(loaded.schedules().size() == 1);
    CHECK(loaded.find_account("bob")->contacts.empty());
    CHECK(loaded.find_room("den")->history[1].deleted);
  }
  SECTION("the contacts branch's (no moderation fields)") {
    doc.as_object().erase("last_scheduled");
    doc.as_object().erase("scheduled");
    for (auto& a : doc.at("accounts").as_array())
      for (auto k : {"muted_until", "reports", "banned", "notices"}) a.as_object().erase(k);
    auto plain = [](json::value& list) {  // no edits, no deletions
      for (auto& m : list.as_array()) {
        auto& mo = m.as_object();
        mo.erase("edited");
        if (mo.erase("deleted")) mo["message"] = "x";
      }
    };
    for (auto& a : doc.at("accounts").as_array()) plain(a.at("queued"));
    for (auto& c : doc.at("conversations").as_array()) plain(c.at("messages"));
    for (auto& r : doc.at("rooms").as_array()) {
      r.as_object().erase("banned");
      plain(r.at("history"));
    }
    snapshot::write(file, doc);
    hub loaded{hub_limits{}};
    auto err = snapshot::load(file, loaded, 1700000500);
    INFO(err.value_or(""));
    REQUIRE_FALSE(err);
    CHECK(loaded.schedules().empty());
    REQUIRE(loaded.find_account("bob")->contacts.size() == 1);
    CHECK(loaded.find_account("bob")->contacts[0] == "carol");
  }
  SECTION("a mixture is refused") {
    doc.as_object().erase("last_scheduled");
    doc.as_object().erase("scheduled");
    snapshot::write(file, doc);
    hub loaded{hub_limits{}};
    CHECK(snapshot::load(file, loaded, 1700000500));
  }
}
