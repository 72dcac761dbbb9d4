// Integration tests of scheduled messages (contract: "Edits, schedules, moderation, contacts")
// against the real jimd on 127.0.0.1: `msg` with `at`, `scheduled`, `cancel`, the posting at
// its time (awaited by its push, bounded), across a restart, one that fell due while the
// daemon was down, and a dropped one told to its author as a notice.

#include "chat_helpers.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <thread>
#include <vector>

using namespace jim::test;

namespace {

std::int64_t now_s() {
  return std::chrono::duration_cast<std::chrono::seconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

json::object schedule(client& c, std::string const& text, std::int64_t at,
                      std::string const& to = {}) {
  json::object req{{"action", "msg"}, {"message", text}, {"at", at}};
  if (!to.empty()) req["to"] = to;
  return ask(c, req);
}

std::uint64_t sched_of(json::object const& r) {
  return r.at("scheduled").to_number<std::uint64_t>();
}

/// The next `msg` push (skipping anything else), bounded.
json::object next_msg(client& c, std::chrono::milliseconds bound = 8s) {
  for (int i = 0; i < 20; ++i) {
    auto p = c.push(bound);
    if (str(p, "action") == "msg") return p;
  }
  throw std::runtime_error("no msg push");
}

}  // namespace

TEST_CASE("a scheduled message is posted at its time as an ordinary message", "[schedule]") {
  jimd_process d(quiet_args());
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  const auto at = now_s() + 2;
  auto r = schedule(alice, "reminder", at);
  REQUIRE(code_of(r) == 202);
  CHECK(sched_of(r) >= 1);
  CHECK(no_push_pending(bob));
  auto before = id_of(say(alice, "before"));
  bob.push();
  auto m = next_msg(bob);
  CHECK(str(m, "message") == "reminder");
  CHECK(str(m, "from") == "alice");
  CHECK(str(m, "to") == "#general");
  CHECK(id_of(m) > before);  // its id is given when posted
  CHECK(m.at("time").to_number<std::int64_t>() >= at);
  // The author's connection in the room sees it too (no connection sent it).
  CHECK(str(next_msg(alice), "message") == "reminder");
  CHECK(alice.request(R"({"action":"scheduled"})").at("scheduled").as_array().empty());
}

TEST_CASE("scheduled lists, cancel removes, refusals", "[schedule]") {
  jimd_process d(quiet_args({"--schedule-max", "60"}));
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  const auto at = now_s() + 50;
  auto s1 = sched_of(schedule(alice, "one", at));
  auto s2 = sched_of(schedule(alice, "two", at - 10, "bob"));
  auto list = alice.request(R"({"action":"scheduled"})");
  REQUIRE(code_of(list) == 200);
  auto const& items = list.at("scheduled").as_array();
  REQUIRE(items.size() == 2);
  CHECK(items[0].as_object().at("scheduled").to_number<std::uint64_t>() == s2);  // by time
  CHECK(str(items[0].as_object(), "to") == "bob");
  CHECK(str(items[1].as_object(), "to") == "#general");
  CHECK(str(items[1].as_object(), "message") == "one");
  CHECK(bob.request(R"({"action":"scheduled"})").at("scheduled").as_array().empty());

  auto cancel = [](client& c, std::uint64_t s) {
    return ask(c, json::object{{"action", "cancel"}, {"scheduled", s}});
  };
  CHECK(code_of(cancel(bob, s1)) == 404);  // not yours
  CHECK(code_of(cancel(alice, s1)) == 200);
  CHECK(code_of(cancel(alice, s1)) == 404);
  CHECK(code_of(cancel(alice, 9999)) == 404);
  CHECK(alice.request(R"({"action":"scheduled"})").at("scheduled").as_array().size() == 1);

  CHECK(code_of(schedule(alice, "past", now_s() - 5)) == 400);
  CHECK(code_of(schedule(alice, "too far", now_s() + 120)) == 400);  // --schedule-max 60
  CHECK(code_of(schedule(alice, "x", now_s() + 30, "#nowhere")) == 404);
  CHECK(code_of(schedule(alice, "x", now_s() + 30, "nobody")) == 404);
  create_room(bob, "den");
  CHECK(code_of(schedule(alice, "x", now_s() + 30, "#den")) == 403);  // not a member
}

TEST_CASE("pending schedules survive a restart and post afterwards", "[schedule]") {
  temp_dir dir;
  std::int64_t at = 0;
  std::uint64_t s = 0;
  {
    jimd_process d(quiet_args(), dir.path());
    auto alice = sign_up(d.port(), "alice");
    sign_up(d.port(), "bob");
    at = now_s() + 4;
    s = sched_of(schedule(alice, "after restart", at));
    REQUIRE(d.stop() == 0);
  }
  jimd_process d(quiet_args(), dir.path());
  auto bob = sign_in(d.port(), "bob");
  auto alice = sign_in(d.port(), "alice");
  auto list = alice.request(R"({"action":"scheduled"})");
  if (!list.at("scheduled").as_array().empty())  // still pending (the usual case)
    CHECK(
        list.at("scheduled").as_array()[0].as_object().at("scheduled").to_number<std::uint64_t>() ==
        s);
  auto h = bob.request(R"({"action":"history"})");
  bool seen = false;
  for (auto const& m : h.at("messages").as_array())
    seen = seen || str(m.as_object(), "message") == "after restart";
  if (!seen) CHECK(str(next_msg(bob), "message") == "after restart");
}

TEST_CASE("a schedule that fell due while the daemon was down is posted at start", "[schedule]") {
  temp_dir dir;
  std::int64_t at = 0;
  {
    jimd_process d(quiet_args(), dir.path());
    auto alice = sign_up(d.port(), "alice");
    sign_up(d.port(), "bob");
    at = now_s() + 2;
    REQUIRE(code_of(schedule(alice, "while down", at)) == 202);
    d.stop(9);  // crashed: the schedule is in the journal only
  }
  // The daemon is down while the time passes (waiting for the clock, not for an event).
  std::this_thread::sleep_until(
      std::chrono::system_clock::time_point(std::chrono::seconds(at + 1)));
  jimd_process d(quiet_args(), dir.path());
  auto bob = sign_in(d.port(), "bob");
  auto h = bob.request(R"({"action":"history"})");
  json::object found;
  for (auto const& m : h.at("messages").as_array())
    if (str(m.as_object(), "message") == "while down") found = m.as_object();
  if (found.empty()) found = next_msg(bob);  // posted just after the sign-in
  CHECK(str(found, "message") == "while down");
  CHECK(found.at("time").to_number<std::int64_t>() > at);  // the start-up time
}

TEST_CASE("a schedule the author may no longer post is dropped with a notice at sign-in",
          "[schedule]") {
  jimd_process d(quiet_args());
  auto [carol, alice] = sign_up_all(d.port(), "carol", "alice");
  room_with_member(carol, alice, "den");
  const auto at = now_s() + 2;
  REQUIRE(code_of(schedule(alice, "to den", at, "#den")) == 202);
  REQUIRE(code_of(schedule(alice, "to general", at, "#general")) == 202);
  REQUIRE(code_of(ask(carol,
                      json::object{{"action", "ban"}, {"room", "den"}, {"user", "alice"}})) == 200);
  quit(alice);
  REQUIRE(code_of(ask(carol, json::object{{"action", "exit"}})) == 200);
  // Both fall due at once, #den's first: once #general's is seen the other was dropped.
  CHECK(str(next_msg(carol), "message") == "to general");
  auto back = sign_in(d.port(), "alice");
  auto n = back.push();
  CHECK(str(n, "action") == "notice");
  CHECK(str(n, "text").find("not posted") != std::string::npos);
  back.close();
  auto again = sign_in(d.port(), "alice");  // told once
  CHECK(no_push_pending(again));
}

TEST_CASE("two schedules dropped at once while the author is online: each notice pushed once",
          "[schedule]") {
  jimd_process d(quiet_args());
  auto [carol, gina] = sign_up_all(d.port(), "carol", "gina");
  room_with_member(carol, gina, "dup1");
  // The same `at`: both fall due in one batch, the second before the first's notice is taken.
  const auto at = now_s() + 2;
  const auto s1 = sched_of(schedule(gina, "first", at, "#dup1"));
  const auto s2 = sched_of(schedule(gina, "second", at, "#dup1"));
  REQUIRE(code_of(ask(carol,
                      json::object{{"action", "ban"}, {"room", "dup1"}, {"user", "gina"}})) == 200);
  // Collect the notices (the ban's own first) until the second schedule's, bounded.
  std::vector<std::string> dropped;
  const std::string second = "scheduled message " + std::to_string(s2) + " ";
  for (int i = 0; i < 10; ++i) {
    auto p = gina.push(8s);
    if (str(p, "action") != "notice") continue;
    auto text = str(p, "text");
    if (text.find("not posted") == std::string::npos) continue;  // the ban's notice
    dropped.push_back(text);
    if (text.find(second) != std::string::npos) break;
  }
  REQUIRE(dropped.size() == 2);
  CHECK(dropped[0].find("scheduled message " + std::to_string(s1) + " ") != std::string::npos);
  CHECK(dropped[1].find(second) != std::string::npos);
  CHECK(no_push_pending(gina));
  gina.close();
  auto again = sign_in(d.port(), "gina");  // both delivered: nothing at the next sign-in
  CHECK(no_push_pending(again));
}
