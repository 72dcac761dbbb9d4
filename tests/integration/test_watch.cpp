// Integration tests of issue 15's protocol: watching rooms, read markers and unread counts,
// conversations, server-wide presence and invitations kept for offline users, against the real
// jimd on 127.0.0.1 (contract: "Watching, unread and presence").

#include "chat_helpers.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <csignal>
#include <stdexcept>
#include <string>
#include <vector>

using namespace jim::test;

namespace {

json::object watch(client& c, json::value rooms, char const* action = "watch") {
  return ask(c, json::object{{"action", action}, {"rooms", std::move(rooms)}});
}

json::object read_room(client& c, std::string const& room, json::value id) {
  return ask(c, json::object{{"action", "read"}, {"room", room}, {"id", std::move(id)}});
}

json::object read_with(client& c, std::string const& with, json::value id) {
  return ask(c, json::object{{"action", "read"}, {"with", with}, {"id", std::move(id)}});
}

json::object invite(client& c, std::string const& room, std::string const& user) {
  return ask(c, json::object{{"action", "invite"}, {"room", room}, {"user", user}});
}

json::object set_status(client& c, std::string const& status) {
  return ask(c, json::object{{"action", "presence"}, {"user", {{"status", status}}}});
}

std::vector<std::string> watched(json::object const& reply) {
  std::vector<std::string> out;
  for (auto const& r : reply.at("rooms").as_array()) out.emplace_back(r.as_string());
  return out;
}

std::uint64_t num(json::object const& o, char const* key) {
  return o.at(key).to_number<std::uint64_t>();
}

/// The `rooms` entry of `room` for `c`.
json::object entry(client& c, std::string const& room) {
  return room_entry(c.request(R"({"action":"rooms"})"), room);
}

bool is_count(json::object const& p) {
  return p.at("action") == "event" && p.at("event") == "online";
}

/// The next push that is not one of #general's online counts (for watchers of #general).
json::object next_push(client& c) {
  for (int i = 0; i < 20; ++i) {
    auto p = c.push();
    if (!is_count(p)) return p;
  }
  throw std::runtime_error("only online counts");
}

/// Like no_push_pending, for a watcher of #general: counts aside, nothing was pushed.
bool only_counts_pending(client& c) {
  barrier(c);
  while (!c.silent_for(0ms))
    if (!is_count(c.push())) return false;
  return true;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// watch / unwatch
// ---------------------------------------------------------------------------------------------

TEST_CASE("A watched room's messages and join/leave events reach a connection in another room",
          "[integration][watch]") {
  jimd_process d(quiet_args());
  auto [alice, bob, carol] = sign_up_all(d.port(), "alice", "bob", "carol");
  const std::string pw = create_room(alice, "den");
  REQUIRE(code_of(invite(alice, "den", "bob")) == 200);
  CHECK(bob.push().at("action") == "invite");

  auto r = watch(bob, json::array{"#DEN"});
  CHECK(code_of(r) == 200);
  CHECK(watched(r) == std::vector<std::string>{"#den"});

  // alice's message in #den reaches bob, who stays in #general.
  r = say(alice, "in the den");
  CHECK(code_of(r) == 200);
  CHECK(num(r, "delivered") == 1);
  auto p = bob.push();
  CHECK(p.at("action") == "msg");
  CHECK(p.at("to") == "#den");
  CHECK(p.at("message") == "in the den");
  CHECK(bob.request(R"({"action":"users"})").at("room") == "#general");
  // What bob types still goes to his current room; a room message elsewhere still needs it.
  CHECK(code_of(say(bob, "to general")) == 200);
  CHECK(carol.push().at("message") == "to general");
  CHECK(code_of(say(bob, "to den", "#den")) == 403);
  CHECK(no_push_pending(alice));

  // carol joins and leaves #den: alice (in it) and bob (watching) see both events.
  REQUIRE(code_of(join(carol, "den", pw)) == 200);
  for (client* c : {&alice, &bob}) {
    auto e = c->push();
    CHECK(e.at("event") == "join");
    CHECK(e.at("room") == "#den");
    CHECK(e.at("user") == "carol");
  }
  REQUIRE(code_of(carol.request(R"({"action":"exit"})")) == 200);
  for (client* c : {&alice, &bob}) CHECK(c->push().at("event") == "leave");

  // Unwatched: nothing more from #den.
  r = watch(bob, json::array{"den"}, "unwatch");
  CHECK(code_of(r) == 200);
  CHECK(watched(r).empty());
  CHECK(num(say(alice, "again"), "delivered") == 0);
  CHECK(no_push_pending(bob));
}

TEST_CASE("A connection that watches the room it is in gets each push once",
          "[integration][watch]") {
  jimd_process d(quiet_args());
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  room_with_member(alice, bob, "den");
  REQUIRE(code_of(watch(bob, "all")) == 200);
  CHECK(num(say(alice, "once"), "delivered") == 1);
  CHECK(next_push(bob).at("message") == "once");
  CHECK(only_counts_pending(bob));
  // The sender never gets its own message back, also while watching the room.
  REQUIRE(code_of(watch(alice, json::array{"den"})) == 200);
  CHECK(num(say(alice, "mine"), "delivered") == 1);
  CHECK(no_push_pending(alice));
}

TEST_CASE("watch refuses unknown rooms (404) and rooms of others (403) and then watches nothing",
          "[integration][watch]") {
  jimd_process d(quiet_args());
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  create_room(alice, "den");
  create_room(alice, "attic");
  REQUIRE(code_of(invite(alice, "attic", "bob")) == 200);

  CHECK(code_of(watch(bob, json::array{"attic", "nowhere"})) == 404);
  CHECK(code_of(watch(bob, json::array{"attic", "den"})) == 403);
  CHECK(code_of(watch(bob, json::array{"nowhere"}, "unwatch")) == 404);
  // Nothing was watched by the failed requests.
  auto r = watch(bob, json::array{});
  CHECK(code_of(r) == 200);
  CHECK(watched(r).empty());
  REQUIRE(code_of(join(alice, "attic")) == 200);
  say(alice, "unseen");
  bob.push();  // the invitation
  CHECK(no_push_pending(bob));

  // Malformed: 400, the connection stays usable.
  for (auto bad : {R"({"action":"watch"})", R"({"action":"watch","rooms":"some"})",
                   R"({"action":"watch","rooms":5})", R"({"action":"watch","rooms":[5]})",
                   R"({"action":"watch","rooms":["bad name"]})",
                   R"({"action":"unwatch","rooms":{}})"}) {
    INFO(bad);
    CHECK(code_of(bob.request(bad)) == 400);
  }
  // Before sign-in: 401.
  client anon(d.port());
  CHECK(code_of(anon.request(R"({"action":"watch","rooms":"all"})")) == 401);
}

TEST_CASE("watch all covers every member room, also rooms joined later, until unwatch all",
          "[integration][watch]") {
  jimd_process d(quiet_args());
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  const std::string den_pw = create_room(alice, "den");
  create_room(alice, "attic");
  REQUIRE(code_of(invite(alice, "den", "bob")) == 200);
  bob.push();

  auto r = watch(bob, "all");
  CHECK(code_of(r) == 200);
  CHECK(watched(r) == std::vector<std::string>{"#den", "#general"});

  // A room bob becomes a member of later (invited) is watched too.
  REQUIRE(code_of(invite(alice, "attic", "bob")) == 200);
  CHECK(next_push(bob).at("action") == "invite");
  REQUIRE(code_of(say(alice, "attic news")) == 200);  // alice is in #attic
  CHECK(next_push(bob).at("to") == "#attic");
  // And one he creates (he moves into it).
  create_room(bob, "lair");
  auto w = watch(bob, json::array{});
  CHECK(watched(w) == std::vector<std::string>{"#attic", "#den", "#general", "#lair"});
  CHECK(w.at("all") == true);

  // #general's messages reach him while he is in #lair.
  client carol = sign_up(d.port(), "carol");
  REQUIRE(code_of(say(carol, "hello general")) == 200);
  auto p = next_push(bob);
  CHECK(p.at("to") == "#general");

  r = watch(bob, "all", "unwatch");
  CHECK(code_of(r) == 200);
  CHECK(watched(r).empty());
  REQUIRE(code_of(say(carol, "unseen")) == 200);
  REQUIRE(code_of(join(alice, "den", den_pw)) == 200);
  REQUIRE(code_of(say(alice, "unseen too")) == 200);
  CHECK(only_counts_pending(bob));
}

TEST_CASE("Watchers of #general get its online count coalesced, at most once a second",
          "[integration][watch]") {
  jimd_process d(quiet_args());
  auto [watcher, classic] = sign_up_all(d.port(), "watcher", "classic");
  REQUIRE(code_of(watch(watcher, json::array{"general"})) == 200);

  std::vector<client> crowd;
  for (int i = 0; i < 6; ++i) crowd.push_back(sign_up(d.port(), "user" + std::to_string(i)));
  quit(crowd.back());
  crowd.pop_back();
  const std::uint64_t expected = 2 + crowd.size();  // watcher, classic and the crowd

  // Counts arrive until the last one is right; no join/leave event for #general.
  std::vector<std::uint64_t> counts;
  std::vector<std::chrono::steady_clock::time_point> at;
  for (int i = 0; i < 10 && (counts.empty() || counts.back() != expected); ++i) {
    auto p = watcher.push(5s);
    CHECK(p.at("action") == "event");
    CHECK(p.at("event") == "online");
    CHECK(p.at("room") == "#general");
    counts.push_back(num(p, "online"));
    at.push_back(std::chrono::steady_clock::now());
  }
  REQUIRE(!counts.empty());
  CHECK(counts.back() == expected);
  CHECK(counts.size() <= 3);  // 11 changes, coalesced
  for (std::size_t i = 1; i < at.size(); ++i) CHECK(at[i] - at[i - 1] >= 800ms);
  // A connection that does not watch sees none of it.
  CHECK(no_push_pending(classic));
}

// ---------------------------------------------------------------------------------------------
// read markers and unread counts
// ---------------------------------------------------------------------------------------------

TEST_CASE("rooms shows unread and last_read, and read moves the marker forward only",
          "[integration][watch][read]") {
  jimd_process d(quiet_args());
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  const std::string pw = create_room(alice, "den");
  REQUIRE(code_of(say(alice, "before bob")) == 200);  // before bob is a member: never unread
  REQUIRE(code_of(join(bob, "den", pw)) == 200);
  alice.push();  // join event
  auto ids = post_many(alice, 3, "den");
  REQUIRE(code_of(say(bob, "own")) == 200);  // own messages never count

  auto e = entry(bob, "#den");
  CHECK(num(e, "last_read") == 0);
  CHECK(num(e, "unread") == 3);
  CHECK(num(entry(alice, "#den"), "unread") == 1);  // bob's

  auto r = read_room(bob, "#DEN", ids[1]);
  CHECK(code_of(r) == 200);
  CHECK(r.at("room") == "#den");
  CHECK(num(r, "last_read") == ids[1]);
  e = entry(bob, "#den");
  CHECK(num(e, "last_read") == ids[1]);
  CHECK(num(e, "unread") == 1);

  // Backwards: 200, nothing changes.
  r = read_room(bob, "den", ids[0]);
  CHECK(code_of(r) == 200);
  CHECK(num(r, "last_read") == ids[1]);
  CHECK(num(entry(bob, "#den"), "last_read") == ids[1]);

  // #general: every account is a member from its registration.
  client carol = sign_up(d.port(), "carol");
  REQUIRE(code_of(say(carol, "g1")) == 200);
  auto g = entry(bob, "#general");
  CHECK(num(g, "unread") == 1);  // g1 (the others went to #den)
  CHECK(num(entry(carol, "#general"), "unread") == 0);
  // Rooms one is not a member of: zeros.
  create_room(carol, "attic");
  auto attic = entry(bob, "#attic");
  CHECK(attic.at("member") == false);
  CHECK(num(attic, "unread") == 0);
  CHECK(num(attic, "last_read") == 0);
}

TEST_CASE("read refuses what the contract refuses", "[integration][watch][read]") {
  jimd_process d(quiet_args());
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  create_room(alice, "den");
  CHECK(code_of(read_room(bob, "nowhere", 1)) == 404);
  CHECK(code_of(read_with(bob, "ghost", 1)) == 404);
  CHECK(code_of(read_room(bob, "den", 1)) == 403);
  for (auto bad :
       {R"({"action":"read","room":"den"})", R"({"action":"read","id":1})",
        R"({"action":"read","room":"general","id":0})",
        R"({"action":"read","room":"general","id":-3})",
        R"({"action":"read","room":"general","id":"7"})",
        R"({"action":"read","room":"general","id":1.5})",
        R"({"action":"read","room":"general","with":"alice","id":1})",
        R"({"action":"read","with":"not a name","id":1})"}) {
    INFO(bad);
    CHECK(code_of(bob.request(bad)) == 400);
  }
  CHECK(code_of(read_room(bob, "general", 1)) == 200);
  CHECK(code_of(read_with(bob, "ALICE", 1)) == 200);
  // The only connection of the account gets no read push of its own.
  CHECK(no_push_pending(bob));
}

TEST_CASE("A read marker past the newest message stops at it, so later messages count as unread",
          "[integration][watch][read]") {
  jimd_process d(quiet_args());
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  auto ids = post_many(alice, 2, "general");
  // A future id (typo, buggy client) and ids past int64 (saturated by the decoder).
  for (json::value far : {json::value(ids[1] + 1000), json::value(std::uint64_t{1} << 63),
                          json::parse("1e30")}) {
    INFO(json::serialize(far));
    auto r = read_room(bob, "general", far);
    CHECK(code_of(r) == 200);
    CHECK(num(r, "last_read") == ids[1]);
  }
  auto more = post_many(alice, 1, "general");
  auto g = entry(bob, "#general");
  CHECK(num(g, "last_read") == ids[1]);
  CHECK(num(g, "unread") == 1);
  CHECK(num(read_with(bob, "alice", std::uint64_t{1} << 62), "last_read") == more[0]);
}

// ---------------------------------------------------------------------------------------------
// conversations
// ---------------------------------------------------------------------------------------------

TEST_CASE("conversations lists private conversations newest first with unread counts",
          "[integration][watch][read]") {
  jimd_process d(quiet_args());
  auto [alice, bob, carol] = sign_up_all(d.port(), "alice", "Bob", "carol");
  REQUIRE(code_of(say(alice, "hi bob", "bob")) == 200);
  auto second = say(alice, "still there?", "bob");
  REQUIRE(code_of(say(bob, "yes", "alice")) == 200);
  auto last = say(carol, "hi alice", "alice");
  REQUIRE(code_of(last) == 200);

  auto r = alice.request(R"({"action":"conversations"})");
  REQUIRE(code_of(r) == 200);
  auto const& list = r.at("conversations").as_array();
  REQUIRE(list.size() == 2);
  auto const& first = list[0].as_object();
  CHECK(first.at("with") == "carol");
  CHECK(num(first.at("last").as_object(), "id") == id_of(last));
  CHECK(first.at("last").as_object().at("message") == "hi alice");
  CHECK(num(first, "unread") == 1);
  auto const& with_bob = list[1].as_object();
  CHECK(with_bob.at("with") == "Bob");
  CHECK(with_bob.at("last").as_object().at("from") == "Bob");
  CHECK(num(with_bob, "unread") == 1);  // "yes"; alice's own two never count

  // Bob has read up to the second message: nothing unread.
  auto b = bob.request(R"({"action":"conversations"})").at("conversations").as_array();
  REQUIRE(b.size() == 1);
  CHECK(num(b[0].as_object(), "unread") == 2);
  REQUIRE(code_of(read_with(bob, "alice", id_of(second))) == 200);
  b = bob.request(R"({"action":"conversations"})").at("conversations").as_array();
  CHECK(num(b[0].as_object(), "unread") == 0);
  CHECK(code_of(bob.request(R"({"action":"conversations"})")) == 200);
  // No conversations yet: an empty list.
  client dave = sign_up(d.port(), "dave");
  CHECK(dave.request(R"({"action":"conversations"})").at("conversations").as_array().empty());
}

// ---------------------------------------------------------------------------------------------
// presence
// ---------------------------------------------------------------------------------------------

TEST_CASE("users with room * lists every signed-in account once with its status",
          "[integration][watch][presence]") {
  jimd_process d(quiet_args());
  auto [alice, bob, gone] = sign_up_all(d.port(), "alice", "bob", "gone");
  quit(gone);
  create_room(alice, "den");  // alice is elsewhere now
  REQUIRE(code_of(set_status(bob, "away")) == 200);
  auto r = bob.request(R"({"action":"users","room":"*"})");
  REQUIRE(code_of(r) == 200);
  CHECK(user_names(r) == std::vector<std::string>{"alice", "bob"});
  auto const& users = r.at("users").as_array();
  CHECK(users[0].as_object().at("status") == "online");
  CHECK(users[1].as_object().at("status") == "away");
}

TEST_CASE("A status change reaches every connection in or watching the changer's room",
          "[integration][watch][presence]") {
  jimd_process d(quiet_args());
  auto [alice, bob, carol, dave] = sign_up_all(d.port(), "alice", "bob", "carol", "dave");
  room_with_member(alice, bob, "den");
  REQUIRE(code_of(invite(alice, "den", "carol")) == 200);
  carol.push();
  REQUIRE(code_of(watch(carol, json::array{"den"})) == 200);

  REQUIRE(code_of(set_status(alice, "away")) == 200);
  for (client* c : {&bob, &carol}) {
    auto p = c->push();
    CHECK(p.at("action") == "event");
    CHECK(p.at("event") == "status");
    CHECK(p.at("user") == "alice");
    CHECK(p.at("status") == "away");
  }
  CHECK(no_push_pending(alice));
  CHECK(no_push_pending(dave));  // in #general, not watching #den
  // The same status again changes nothing.
  REQUIRE(code_of(set_status(alice, "away")) == 200);
  CHECK(no_push_pending(bob));

  // At most 64 characters (not bytes).
  CHECK(code_of(set_status(alice, std::string(65, 'x'))) == 400);
  std::string cyrillic;
  for (int i = 0; i < 64; ++i) cyrillic += "ж";
  CHECK(code_of(set_status(alice, cyrillic)) == 200);
  CHECK(str(bob.push(), "status") == cyrillic);
  auto everyone = dave.request(R"({"action":"users","room":"*"})").at("users").as_array();
  CHECK(str(everyone[0].as_object(), "status") == cyrillic);
  // Characters, not bytes: 64 four-byte characters are fine, 65 are not; empty is malformed.
  std::string emoji;
  for (int i = 0; i < 64; ++i) emoji += "\xF0\x9F\x98\x80";
  CHECK(code_of(set_status(alice, emoji)) == 200);
  CHECK(str(bob.push(), "status") == emoji);
  CHECK(code_of(set_status(alice, emoji + "\xF0\x9F\x98\x80")) == 400);
  CHECK(code_of(set_status(alice, "")) == 400);
  CHECK(no_push_pending(bob));
}

// ---------------------------------------------------------------------------------------------
// invitations
// ---------------------------------------------------------------------------------------------

TEST_CASE("An invitation to an offline user is pushed once at sign-in, after history and queued "
          "messages",
          "[integration][watch][invite]") {
  jimd_process d({"--history-on-join", "2"});
  client bob = sign_up(d.port(), "bob");
  quit(bob);
  client alice = sign_up(d.port(), "alice");
  REQUIRE(code_of(say(alice, "general 1")) == 200);
  REQUIRE(code_of(say(alice, "for bob", "bob")) == 202);
  create_room(alice, "den");
  auto r = invite(alice, "den", "bob");
  CHECK(code_of(r) == 200);
  CHECK(r.at("online") == false);

  client back = sign_in(d.port(), "bob");
  auto p = pushes(back, 3);
  CHECK(p[0].at("message") == "general 1");
  CHECK(p[0].at("history") == true);
  CHECK(p[1].at("message") == "for bob");
  CHECK(p[2].at("action") == "invite");
  CHECK(p[2].at("from") == "alice");
  CHECK(p[2].at("room") == "#den");
  CHECK(no_push_pending(back));
  quit(back);

  // Once only.
  client again = sign_in(d.port(), "bob");
  CHECK(again.push().at("message") == "general 1");
  CHECK(no_push_pending(again));
  // Online now: pushed at once, and the reply says so.
  r = invite(alice, "den", "bob");
  CHECK(r.at("online") == true);
  CHECK(again.push().at("action") == "invite");
}

// ---------------------------------------------------------------------------------------------
// persistence
// ---------------------------------------------------------------------------------------------

namespace {

void markers_survive_restart(int sig) {
  temp_dir dir;
  std::uint64_t id_read = 0;
  {
    jimd_process d(quiet_args(), dir.path());
    auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
    room_with_member(alice, bob, "den");
    auto ids = post_many(alice, 3, "den");
    id_read = ids[0];
    REQUIRE(code_of(read_room(bob, "den", id_read)) == 200);
    REQUIRE(code_of(say(alice, "private 1", "bob")) == 200);
    REQUIRE(code_of(say(alice, "private 2", "bob")) == 200);
    REQUIRE(code_of(read_with(bob, "alice", id_read)) == 200);
    quit(bob);
    create_room(alice, "attic");
    REQUIRE(invite(alice, "attic", "bob").at("online") == false);
    CHECK(d.stop(sig, 10s) == (sig == SIGKILL ? 128 + SIGKILL : 0));
  }
  jimd_process d(quiet_args(), dir.path());
  client bob = sign_in(d.port(), "bob");
  auto inv = bob.push();
  CHECK(inv.at("action") == "invite");
  CHECK(inv.at("room") == "#attic");
  auto e = entry(bob, "#den");
  CHECK(num(e, "last_read") == id_read);
  CHECK(num(e, "unread") == 2);
  auto c = bob.request(R"({"action":"conversations"})").at("conversations").as_array();
  REQUIRE(c.size() == 1);
  CHECK(num(c[0].as_object(), "unread") == 2);
  // A member since the start of #attic (invited): its unread count starts there.
  CHECK(num(entry(bob, "#attic"), "unread") == 0);
  CHECK(no_push_pending(bob));
}

}  // namespace

TEST_CASE("Read markers, unread counts and pending invitations survive a clean restart",
          "[integration][watch][persist]") {
  markers_survive_restart(SIGINT);
}

TEST_CASE("Read markers, unread counts and pending invitations survive a crash (journal)",
          "[integration][watch][persist]") {
  markers_survive_restart(SIGKILL);
}
