// Integration tests of moderation (contract: "Edits, schedules, moderation, contacts") against
// the real jimd on 127.0.0.1: reports and the mute of the third, a room owner's kick, ban and
// unban, a server admin's ban (connections closed, sign-in refused with the reason), and that
// all of it survives a restart.

#include "chat_helpers.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <chrono>
#include <string>
#include <vector>

using namespace jim::test;

namespace {

json::object report(client& c, std::string const& user) {
  return ask(c, json::object{{"action", "report"}, {"user", user}, {"reason", "spam"}});
}

json::object moderate(client& c, char const* action, std::string const& room,
                      std::string const& user) {
  json::object req{{"action", action}, {"user", user}};
  if (!room.empty()) req["room"] = room;
  return ask(c, req);
}

/// The current room of `c` (from `presence`).
std::string room_of(client& c) {
  return str(c.request(R"({"action":"presence"})"), "room");
}

}  // namespace

TEST_CASE("reports from three distinct accounts mute, refusals", "[moderation]") {
  jimd_process d(quiet_args());
  auto [bob, alice, carol, dave] = sign_up_all(d.port(), "bob", "alice", "carol", "dave");
  CHECK(code_of(report(alice, "alice")) == 400);
  CHECK(code_of(report(alice, "nobody")) == 404);
  CHECK(code_of(ask(alice, json::object{{"action", "report"}})) == 400);
  REQUIRE(code_of(report(alice, "bob")) == 200);
  REQUIRE(code_of(report(alice, "bob")) == 200);  // twice counts once
  REQUIRE(code_of(report(carol, "bob")) == 200);
  CHECK(code_of(say(bob, "still here")) == 200);
  REQUIRE(code_of(report(dave, "bob")) == 200);  // the third distinct account
  auto r = say(bob, "muted?");
  CHECK(code_of(r) == 403);
  CHECK(r.at("until").to_number<std::int64_t>() > 0);
  auto p = say(bob, "private?", "alice");
  CHECK(code_of(p) == 403);
  CHECK(p.contains("until"));
  CHECK(code_of(say(alice, "others are not")) == 200);
}

TEST_CASE("a room owner kicks: moved to #general with a notice, still a member", "[moderation]") {
  jimd_process d(quiet_args());
  auto [carol, bob, mallory] = sign_up_all(d.port(), "carol", "bob", "mallory");
  room_with_member(carol, bob, "den");
  CHECK(code_of(moderate(mallory, "kick", "den", "bob")) == 403);  // not the owner
  CHECK(code_of(moderate(carol, "kick", "nowhere", "bob")) == 404);
  CHECK(code_of(moderate(carol, "kick", "den", "nobody")) == 404);
  CHECK(code_of(moderate(carol, "kick", "general", "bob")) == 403);
  CHECK(code_of(ask(carol, json::object{{"action", "kick"}, {"user", "bob"}})) == 400);
  REQUIRE(code_of(moderate(carol, "kick", "den", "bob")) == 200);
  auto n = bob.push();
  CHECK(str(n, "action") == "notice");
  CHECK(room_of(bob) == "#general");
  CHECK(str(carol.push(), "event") == "leave");
  CHECK(code_of(join(bob, "den")) == 200);  // still a member: no password needed
}

TEST_CASE("a room ban removes the membership and forbids join and invite until unban",
          "[moderation]") {
  jimd_process d(quiet_args());
  auto [carol, bob] = sign_up_all(d.port(), "carol", "bob");
  const std::string pw = room_with_member(carol, bob, "den");
  // #den only: a watcher of #general also gets its `online` counts, which bob's move changes.
  REQUIRE(code_of(ask(bob, json::object{{"action", "watch"}, {"rooms", json::array{"den"}}})) ==
          200);
  REQUIRE(code_of(moderate(carol, "ban", "den", "bob")) == 200);
  CHECK(str(bob.push(), "action") == "notice");
  CHECK(room_of(bob) == "#general");
  CHECK(code_of(join(bob, "den")) == 403);
  CHECK(code_of(join(bob, "den", pw)) == 403);  // not even with the password
  CHECK(code_of(ask(carol, json::object{{"action", "invite"}, {"room", "den"}, {"user", "bob"}})) ==
        403);
  CHECK(code_of(ask(bob, json::object{{"action", "history"}, {"room", "den"}})) == 403);
  // No longer watching: carol's messages in #den do not reach bob.
  REQUIRE(code_of(say(carol, "bob is gone")) == 200);
  CHECK(no_push_pending(bob));
  CHECK(code_of(moderate(bob, "unban", "den", "bob")) == 403);
  REQUIRE(code_of(moderate(carol, "unban", "den", "bob")) == 200);
  CHECK(code_of(join(bob, "den")) == 403);  // not a member any more: the password again
  CHECK(code_of(join(bob, "den", pw)) == 200);
}

TEST_CASE("an admin bans an account: closed with a notice, sign-ins refused until unban",
          "[moderation]") {
  jimd_process d(quiet_args({"--admin", "root,Ops"}));
  auto [root, bob, alice] = sign_up_all(d.port(), "root", "bob", "alice");
  CHECK(code_of(ask(alice, json::object{{"action", "ban"}, {"user", "bob"}, {"reason", "x"}})) ==
        403);
  CHECK(code_of(ask(root, json::object{{"action", "ban"}, {"user", "nobody"}})) == 404);
  CHECK(code_of(ask(root, json::object{{"action", "ban"}, {"user", "root"}})) == 400);
  auto r = ask(root, json::object{{"action", "ban"}, {"user", "bob"}, {"reason", "spamming"}});
  REQUIRE(code_of(r) == 200);
  auto n = bob.push();
  CHECK(str(n, "action") == "notice");
  CHECK(str(n, "text").find("spamming") != std::string::npos);
  CHECK(bob.closed_within(5s));

  client again(d.port());
  auto refused = ask(again, authenticate_req("bob"));
  CHECK(code_of(refused) == 403);
  CHECK(str(refused, "error").find("spamming") != std::string::npos);

  REQUIRE(code_of(ask(root, json::object{{"action", "unban"}, {"user", "bob"}})) == 200);
  auto back = sign_in(d.port(), "bob");
  CHECK(code_of(say(back, "I am back")) == 200);
}

TEST_CASE("mutes, room bans and account bans survive a restart", "[moderation]") {
  temp_dir dir;
  {
    jimd_process d(quiet_args({"--admin", "root"}), dir.path());
    auto [bob, eve, root, carol] = sign_up_all(d.port(), "bob", "eve", "root", "carol");
    create_room(carol, "den");
    for (auto* c : {&root, &carol, &eve}) REQUIRE(code_of(report(*c, "bob")) == 200);
    REQUIRE(code_of(moderate(carol, "ban", "den", "bob")) == 200);
    REQUIRE(code_of(ask(root, json::object{{"action", "ban"}, {"user", "eve"}})) == 200);
    REQUIRE(d.stop() == 0);
  }
  jimd_process d(quiet_args({"--admin", "root"}), dir.path());
  auto bob = sign_in(d.port(), "bob");
  CHECK(code_of(say(bob, "muted still")) == 403);
  CHECK(code_of(join(bob, "den")) == 403);
  client eve(d.port());
  CHECK(code_of(ask(eve, authenticate_req("eve"))) == 403);
}

TEST_CASE("a kick or ban moves only the devices in the room, an admin ban closes every device",
          "[moderation][devices]") {
  jimd_process d(quiet_args({"--admin", "root"}));
  auto [carol, laptop] = sign_up_all(d.port(), "carol", "bob");
  auto phone = sign_in(d.port(), "bob");  // a second device of bob, staying in #general
  room_with_member(carol, laptop, "den");
  const char* action = GENERATE("kick", "ban");
  REQUIRE(code_of(moderate(carol, action, "den", "bob")) == 200);
  CHECK(str(laptop.push(), "action") == "notice");
  CHECK(room_of(laptop) == "#general");
  CHECK(no_push_pending(phone));  // not in the room: nothing to move, no notice
  CHECK(room_of(phone) == "#general");
  CHECK(str(carol.push(), "event") == "leave");

  auto root = sign_up(d.port(), "root");
  REQUIRE(code_of(ask(root, json::object{{"action", "ban"}, {"user", "bob"}})) == 200);
  for (client* c : {&laptop, &phone}) {
    CHECK(str(c->push(), "action") == "notice");
    CHECK(c->closed_within(5s));
  }
}

TEST_CASE("a muted account cannot edit nor schedule: 403 with until at once", "[moderation]") {
  jimd_process d(quiet_args());
  auto [bob, alice, carol, dave] = sign_up_all(d.port(), "bob", "alice", "carol", "dave");
  const auto id = id_of(say(bob, "hello"));
  for (client* c : {&alice, &carol, &dave}) c->push();  // bob's message
  const std::int64_t later =
      std::chrono::duration_cast<std::chrono::seconds>(
          std::chrono::system_clock::now().time_since_epoch())
          .count() +
      60;
  for (client* c : {&alice, &carol, &dave}) REQUIRE(code_of(report(*c, "bob")) == 200);
  auto e = ask(bob, json::object{{"action", "edit"}, {"id", id}, {"message", "buy now"}});
  CHECK(code_of(e) == 403);
  CHECK(e.at("until").to_number<std::int64_t>() > 0);
  CHECK(no_push_pending(alice));  // no edit event
  auto h = ask(alice, json::object{{"action", "history"}});
  CHECK(str(h.at("messages").as_array().back().as_object(), "message") == "hello");
  for (std::string to : {"", "alice"}) {
    json::object req{{"action", "msg"}, {"message", "buy later"}, {"at", later}};
    if (!to.empty()) req["to"] = to;
    auto s = ask(bob, req);
    CHECK(code_of(s) == 403);
    CHECK(s.contains("until"));
  }
  CHECK(bob.request(R"({"action":"scheduled"})").at("scheduled").as_array().empty());
  // Deleting its own message stays allowed.
  CHECK(code_of(ask(bob, json::object{{"action", "delete"}, {"id", id}})) == 200);
}
