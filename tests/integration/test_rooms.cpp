// Integration tests of rooms: create, join, exit, invite, events, history, users and rooms,
// against the real jimd on 127.0.0.1 with raw JSON lines (contract: "Names", "Chat").

#include "chat_helpers.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <chrono>
#include <regex>
#include <set>
#include <string>
#include <vector>

using namespace jim::test;

namespace {

json::object invite(client& c, std::string const& room, std::string const& user) {
  return ask(c, json::object{{"action", "invite"}, {"room", room}, {"user", user}});
}

json::object history(client& c, json::object req) {
  req["action"] = "history";
  return ask(c, req);
}

bool is_event(json::object const& p, char const* event, char const* room, char const* user) {
  return p.at("action") == "event" && p.at("event") == event && p.at("room") == room &&
         p.at("user") == user;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// create
// ---------------------------------------------------------------------------------------------

TEST_CASE("create gets 201 with #name and a random URL-safe password, and moves the creator in",
          "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  auto r = alice.request(R"({"action":"create","room":"den"})");
  CHECK(code_of(r) == 201);
  CHECK(r.at("room") == "#den");
  const std::string pw = str(r, "password");
  INFO("password: " << pw);
  CHECK(std::regex_match(pw, std::regex("[A-Za-z0-9_-]{16,}")));

  // Moved in: users and msg default to #den, and alice is gone from #general.
  auto users = alice.request(R"({"action":"users"})");
  CHECK(users.at("room") == "#den");
  CHECK(user_names(users) == std::vector<std::string>{"alice"});
  auto general = user_names(bob.request(R"({"action":"users"})"));
  CHECK(general == std::vector<std::string>{"bob"});
  CHECK(say(alice, "mine").at("delivered") == 0);
  CHECK(no_push_pending(bob));

  // Another room gets another password.
  auto r2 = bob.request(R"({"action":"create","room":"#lair"})");
  CHECK(code_of(r2) == 201);
  CHECK(r2.at("room") == "#lair");  // a leading # is optional, never doubled
  CHECK(str(r2, "password") != pw);
}

TEST_CASE("A room is shown as created and looked up case-insensitively", "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  auto pw = create_room(alice, "CamelRoom");
  auto r = join(bob, "#camelroom", pw);
  CHECK(code_of(r) == 200);
  CHECK(r.at("room") == "#CamelRoom");
  CHECK(alice.push().at("room") == "#CamelRoom");  // join event
  r = say(bob, "hi", "#CAMELROOM");
  CHECK(code_of(r) == 200);
  CHECK(alice.push().at("to") == "#CamelRoom");
  CHECK(bob.request(R"({"action":"users","room":"camelROOM"})").at("room") == "#CamelRoom");
  CHECK(history(bob, {{"room", "#camelroom"}}).at("room") == "#CamelRoom");
  room_entry(bob.request(R"({"action":"rooms"})"), "#CamelRoom");
}

TEST_CASE("create of an existing room gets 409, case-insensitively, and moves nobody",
          "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  create_room(alice, "Den");
  for (char const* name : {"Den", "den", "#DEN", "dEn"}) {
    INFO(name);
    auto r = ask(bob, json::object{{"action", "create"}, {"room", name}});
    CHECK(code_of(r) == 409);
    CHECK_FALSE(r.contains("password"));
  }
  CHECK(bob.request(R"({"action":"users"})").at("room") == "#general");
  auto rooms = bob.request(R"({"action":"rooms"})");
  CHECK(rooms.at("rooms").as_array().size() == 2);
  CHECK(room_entry(rooms, "#Den").at("owner") == "alice");
}

TEST_CASE("#general cannot be created: 409", "[integration][rooms]") {
  jimd_process d;
  client alice = sign_up(d.port(), "alice");
  for (char const* name : {"general", "#general", "GENERAL", "#General"}) {
    INFO(name);
    CHECK(code_of(ask(alice, json::object{{"action", "create"}, {"room", name}})) == 409);
  }
  auto rooms = alice.request(R"({"action":"rooms"})");
  REQUIRE(rooms.at("rooms").as_array().size() == 1);
  CHECK(room_entry(rooms, "#general").at("owner").is_null());
}

TEST_CASE("Room names outside 1-32 characters of A-Z a-z 0-9 _ - get 400", "[integration][rooms]") {
  jimd_process d;
  client alice = sign_up(d.port(), "alice");
  for (std::string const& bad :
       {std::string(), std::string("#"), std::string(33, 'r'), std::string("a.b"),
        std::string("a b"), std::string("##x"), std::string("caf\xc3\xa9"), std::string("a/b"),
        std::string("x#y")}) {
    INFO("room: \"" << bad << "\"");
    CHECK(code_of(ask(alice, json::object{{"action", "create"}, {"room", bad}})) == 400);
    CHECK(code_of(ask(alice, json::object{{"action", "join"}, {"room", bad}, {"password", "x"}})) ==
          400);
    CHECK(code_of(ask(alice, json::object{{"action", "users"}, {"room", bad}})) == 400);
    CHECK(code_of(ask(alice, json::object{{"action", "history"}, {"room", bad}})) == 400);
  }
  CHECK(code_of(alice.request(R"({"action":"create","room":7})")) == 400);
  // Still in #general, and the limits themselves are valid.
  CHECK(alice.request(R"({"action":"users"})").at("room") == "#general");
  CHECK(code_of(ask(alice, json::object{{"action", "create"}, {"room", std::string(32, 'r')}})) ==
        201);
  CHECK(code_of(ask(alice, json::object{{"action", "create"}, {"room", "A_b-9"}})) == 201);
  CHECK(code_of(ask(alice, json::object{{"action", "create"}, {"room", "#x"}})) == 201);
}

// ---------------------------------------------------------------------------------------------
// join, exit, invite
// ---------------------------------------------------------------------------------------------

TEST_CASE("join with the right password gets 200 and the room's recent history, oldest first",
          "[integration][rooms]") {
  jimd_process d({"--history-on-join", "3", "--rate-limit", "0"});
  client alice = sign_up(d.port(), "alice");
  auto pw = create_room(alice, "den");
  auto ids = post_many(alice, 5, "den");
  client bob = sign_up(d.port(), "bob");
  auto r = join(bob, "den", pw);
  CHECK(code_of(r) == 200);
  CHECK(r.at("room") == "#den");
  auto h = pushes(bob, 3);
  for (std::size_t i = 0; i < 3; ++i) {
    INFO(json::serialize(h[i]));
    CHECK(h[i].at("action") == "msg");
    CHECK(h[i].at("history") == true);
    CHECK(id_of(h[i]) == ids[2 + i]);
    CHECK(h[i].at("to") == "#den");
    CHECK(h[i].at("from") == "alice");
    CHECK(str(h[i], "message") == "den " + std::to_string(2 + i));
  }
  CHECK(no_push_pending(bob));
  CHECK(bob.request(R"({"action":"users"})").at("room") == "#den");
}

TEST_CASE("join of #general gets 200 and pushes #general's recent history",
          "[integration][rooms]") {
  jimd_process d({"--history-on-join", "2", "--rate-limit", "0"});
  client alice = sign_up(d.port(), "alice");
  auto ids = post_many(alice, 3, "general");
  client bob = sign_up(d.port(), "bob");
  drain_history(bob, 2);
  create_room(bob, "den");
  auto r = join(bob, "#General");
  CHECK(code_of(r) == 200);
  CHECK(r.at("room") == "#general");
  auto h = pushes(bob, 2);
  CHECK(h[0].at("history") == true);
  CHECK(id_of(h[0]) == ids[1]);
  CHECK(id_of(h[1]) == ids[2]);
  CHECK(no_push_pending(bob));
  CHECK(say(alice, "back together").at("delivered") == 1);
}

TEST_CASE("join with a wrong or missing password gets 403 and changes nothing",
          "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  auto pw = create_room(alice, "den");
  json::object r;
  SECTION("wrong") {
    r = join(bob, "den", pw + "x");
  }
  SECTION("missing") {
    r = join(bob, "den");
  }
  SECTION("empty") {
    r = ask(bob, json::object{{"action", "join"}, {"room", "den"}, {"password", ""}});
  }
  SECTION("the right one in another case") {
    std::string other = pw;
    for (char& ch : other)
      ch = static_cast<char>(std::isupper(static_cast<unsigned char>(ch)) ? std::tolower(ch)
                                                                          : std::toupper(ch));
    if (other == pw) other += "x";  // no letters at all: make it wrong anyway
    r = join(bob, "den", other);
  }
  CHECK(code_of(r) == 403);
  CHECK(r.at("error").is_string());
  CHECK(bob.request(R"({"action":"users"})").at("room") == "#general");
  CHECK(no_push_pending(alice));
  CHECK_FALSE(room_entry(bob.request(R"({"action":"rooms"})"), "#den").at("member").as_bool());
}

TEST_CASE("join of a room that does not exist gets 404", "[integration][rooms]") {
  jimd_process d;
  client alice = sign_up(d.port(), "alice");
  auto r = alice.request(R"({"action":"join","room":"nowhere","password":"x"})");
  CHECK(code_of(r) == 404);
  CHECK(r.at("error").is_string());
  CHECK(code_of(alice.request(R"({"action":"join","room":"#nowhere"})")) == 404);
}

TEST_CASE("Members rejoin without a password: the owner and anyone who once joined with it",
          "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  auto pw = create_room(alice, "den");
  REQUIRE(code_of(join(bob, "den", pw)) == 200);
  REQUIRE(code_of(bob.request(R"({"action":"exit"})")) == 200);
  REQUIRE(code_of(alice.request(R"({"action":"exit"})")) == 200);
  CHECK(code_of(join(bob, "den")) == 200);
  CHECK(code_of(join(alice, "DEN")) == 200);
  // Membership belongs to the account, not the connection.
  quit(bob);
  client bob2 = sign_in(d.port(), "bob");
  CHECK(code_of(join(bob2, "den")) == 200);
}

TEST_CASE("exit and its alias leave get 200 with room #general", "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  create_room(alice, "den");
  json::object r;
  SECTION("exit") {
    r = alice.request(R"({"action":"exit"})");
  }
  SECTION("leave") {
    r = alice.request(R"({"action":"leave"})");
  }
  CHECK(code_of(r) == 200);
  CHECK(r.at("room") == "#general");
  CHECK(alice.request(R"({"action":"users"})").at("room") == "#general");
  CHECK(say(alice, "back").at("delivered") == 1);
  CHECK(bob.push().at("message") == "back");
  // exit from #general stays in #general.
  r = alice.request(R"({"action":"exit"})");
  CHECK(code_of(r) == 200);
  CHECK(r.at("room") == "#general");
}

TEST_CASE("A connection is in exactly one room at a time: joining leaves the previous one",
          "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  auto den = create_room(alice, "den");
  auto lair = create_room(bob, "lair");  // bob is now in #lair
  REQUIRE(code_of(join(alice, "lair", lair)) == 200);
  CHECK(is_event(bob.push(), "join", "#lair", "alice"));
  REQUIRE(code_of(join(bob, "den", den)) == 200);  // leaves #lair for #den
  CHECK(is_event(alice.push(), "leave", "#lair", "bob"));
  auto rooms = alice.request(R"({"action":"rooms"})");
  CHECK(room_entry(rooms, "#general").at("online") == 0);
  CHECK(room_entry(rooms, "#den").at("online") == 1);
  CHECK(room_entry(rooms, "#lair").at("online") == 1);
  CHECK(user_names(alice.request(R"({"action":"users"})")) == std::vector<std::string>{"alice"});
  CHECK(code_of(say(bob, "where?", "#lair")) == 403);
}

TEST_CASE(
    "invite by the owner gets 200, pushes an invite to the online guest, who then joins without "
    "password",
    "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "Bob");
  create_room(alice, "den");
  auto r = invite(alice, "den", "bob");
  CHECK(code_of(r) == 200);
  auto p = bob.push();
  INFO(json::serialize(p));
  CHECK(p.at("action") == "invite");
  CHECK(p.at("from") == "alice");
  CHECK(p.at("room") == "#den");
  CHECK(no_push_pending(alice));
  r = join(bob, "#den");
  CHECK(code_of(r) == 200);
  CHECK(r.at("room") == "#den");
  CHECK(room_entry(bob.request(R"({"action":"rooms"})"), "#den").at("member") == true);
}

TEST_CASE("An invited offline user joins later without password", "[integration][rooms]") {
  jimd_process d;
  client bob = sign_up(d.port(), "bob");
  quit(bob);
  client alice = sign_up(d.port(), "alice");
  create_room(alice, "den");
  CHECK(code_of(invite(alice, "#DEN", "BOB")) == 200);
  client back = sign_in(d.port(), "bob");
  CHECK(code_of(join(back, "den")) == 200);
}

TEST_CASE("invite by anyone but the owner gets 403", "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob, carol] = sign_up_all(d.port(), "alice", "bob", "carol");
  auto pw = create_room(alice, "den");
  SECTION("a member who is not the owner") {
    REQUIRE(code_of(join(bob, "den", pw)) == 200);
    alice.push();  // bob's join event
    CHECK(code_of(invite(bob, "den", "carol")) == 403);
  }
  SECTION("someone who is not a member") {
    CHECK(code_of(invite(bob, "den", "carol")) == 403);
  }
  SECTION("anyone, to #general") {
    CHECK(code_of(invite(alice, "general", "carol")) == 403);
  }
  CHECK(no_push_pending(carol));
  CHECK(code_of(join(carol, "den")) == 403);
}

TEST_CASE("invite of an unknown account or to an unknown room gets 404", "[integration][rooms]") {
  jimd_process d;
  client alice = sign_up(d.port(), "alice");
  create_room(alice, "den");
  CHECK(code_of(invite(alice, "den", "ghost")) == 404);
  CHECK(code_of(invite(alice, "nowhere", "alice")) == 404);
}

// ---------------------------------------------------------------------------------------------
// join/leave events
// ---------------------------------------------------------------------------------------------

TEST_CASE(
    "Others in a room get join and leave events (join, exit, disconnect), the one entering gets "
    "none",
    "[integration][rooms]") {
  jimd_process d({"--max-sessions", "1"});  // the takeover section
  client alice = sign_up(d.port(), "alice");
  auto pw = create_room(alice, "den");
  auto [bob, carol] = sign_up_all(d.port(), "bob", "carol");

  REQUIRE(code_of(join(bob, "den", pw)) == 200);
  auto e = alice.push();
  INFO(json::serialize(e));
  CHECK(is_event(e, "join", "#den", "bob"));
  CHECK(no_push_pending(bob));  // not its own event

  REQUIRE(code_of(join(carol, "den", pw)) == 200);
  CHECK(is_event(alice.push(), "join", "#den", "carol"));
  CHECK(is_event(bob.push(), "join", "#den", "carol"));
  CHECK(no_push_pending(carol));

  SECTION("exit") {
    REQUIRE(code_of(carol.request(R"({"action":"exit"})")) == 200);
  }
  SECTION("leave") {
    REQUIRE(code_of(carol.request(R"({"action":"leave"})")) == 200);
  }
  SECTION("joining another room") {
    create_room(carol, "other");
  }
  SECTION("quit") {
    quit(carol);
  }
  SECTION("disconnect without a word") {
    carol.close();
  }
  SECTION("signing in elsewhere (takeover)") {
    sign_in(d.port(), "carol");
  }
  CHECK(is_event(alice.push(), "leave", "#den", "carol"));
  CHECK(is_event(bob.push(), "leave", "#den", "carol"));
  CHECK(no_push_pending(alice));
  CHECK(no_push_pending(bob));
}

TEST_CASE("#general has no join or leave events", "[integration][rooms]") {
  jimd_process d;
  client alice = sign_up(d.port(), "alice");
  client bob = sign_up(d.port(), "bob");                         // signs in to #general
  create_room(bob, "den");                                       // leaves #general
  REQUIRE(code_of(bob.request(R"({"action":"exit"})")) == 200);  // enters #general
  REQUIRE(code_of(join(bob, "den")) == 200);
  REQUIRE(code_of(join(bob, "general")) == 200);
  client carol = sign_up(d.port(), "carol");
  quit(carol);
  client dave = sign_up(d.port(), "dave");
  dave.close();
  // dave's disconnect is noticed asynchronously: ask until #general's count shows it (bounded).
  const auto deadline = std::chrono::steady_clock::now() + 5s;
  while (room_entry(bob.request(R"({"action":"rooms"})"), "#general").at("online") != 2)
    REQUIRE(std::chrono::steady_clock::now() < deadline);
  CHECK(no_push_pending(alice));
  CHECK(no_push_pending(bob));
}

// ---------------------------------------------------------------------------------------------
// history
// ---------------------------------------------------------------------------------------------

TEST_CASE("history defaults to the current room and the last 50 messages, oldest first",
          "[integration][rooms]") {
  jimd_process d(quiet_args());
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  auto general = post_many(bob, 3, "general");
  create_room(alice, "den");
  auto ids = post_many(alice, 60, "den");
  auto r = alice.request(R"({"action":"history"})");
  CHECK(code_of(r) == 200);
  CHECK(r.at("room") == "#den");
  CHECK(ids_of(r) == std::vector<std::uint64_t>(ids.end() - 50, ids.end()));
  auto const& first = r.at("messages").as_array().front().as_object();
  INFO(json::serialize(first));
  CHECK(first.at("action") == "msg");
  CHECK(first.at("from") == "alice");
  CHECK(first.at("to") == "#den");
  CHECK(first.at("message") == "den 10");
  CHECK(first.at("time").is_number());
  // bob (in #general) gets #general's.
  r = bob.request(R"({"action":"history"})");
  CHECK(r.at("room") == "#general");
  CHECK(ids_of(r) == general);
}

TEST_CASE("history limit is clamped to 500 and below 1 gets 400", "[integration][rooms]") {
  jimd_process d(quiet_args());
  client alice = sign_up(d.port(), "alice");
  auto ids = post_many(alice, 503);
  auto r = history(alice, {{"limit", 100000}});
  CHECK(code_of(r) == 200);
  CHECK(ids_of(r) == std::vector<std::uint64_t>(ids.end() - 500, ids.end()));
  r = history(alice, {{"limit", 2}});
  CHECK(ids_of(r) == std::vector<std::uint64_t>(ids.end() - 2, ids.end()));
  r = history(alice, {{"limit", 1}});
  CHECK(ids_of(r) == std::vector<std::uint64_t>{ids.back()});
  for (std::int64_t bad : {0, -1, -500}) {
    INFO(bad);
    auto e = history(alice, {{"limit", bad}});
    CHECK(code_of(e) == 400);
    CHECK_FALSE(e.contains("messages"));
  }
  CHECK(code_of(history(alice, {{"limit", "10"}})) == 400);
  CHECK(code_of(history(alice, {{"limit", 2.5}})) == 400);
}

TEST_CASE("history before is exclusive: only ids below it", "[integration][rooms]") {
  jimd_process d(quiet_args());
  client alice = sign_up(d.port(), "alice");
  auto ids = post_many(alice, 20);
  auto r = history(alice, {{"before", ids[10]}, {"limit", 3}});
  CHECK(code_of(r) == 200);
  CHECK(ids_of(r) == std::vector<std::uint64_t>{ids[7], ids[8], ids[9]});
  r = history(alice, {{"before", ids[10]}});
  CHECK(ids_of(r) == std::vector<std::uint64_t>(ids.begin(), ids.begin() + 10));
  r = history(alice, {{"before", ids[0]}});
  CHECK(code_of(r) == 200);
  CHECK(r.at("messages").as_array().empty());
  r = history(alice, {{"before", ids.back() + 1000}, {"limit", 2}});
  CHECK(ids_of(r) == std::vector<std::uint64_t>{ids[18], ids[19]});
  // Paging back with before = the oldest id seen walks the whole history once.
  std::vector<std::uint64_t> all;
  json::object req{{"limit", 6}};
  for (int page = 0; page < 10; ++page) {
    auto got = ids_of(history(alice, req));
    if (got.empty()) break;
    all.insert(all.begin(), got.begin(), got.end());
    req["before"] = got.front();
  }
  CHECK(all == ids);
}

TEST_CASE("history of a room that does not exist gets 404, of a room one is not a member of 403",
          "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  auto pw = create_room(alice, "den");
  CHECK(code_of(say(alice, "secret")) == 200);
  CHECK(code_of(history(bob, {{"room", "nowhere"}})) == 404);
  auto r = history(bob, {{"room", "den"}});
  CHECK(code_of(r) == 403);
  CHECK_FALSE(r.contains("messages"));
  // #general is everyone's; a member (owner) reads a room from elsewhere.
  CHECK(code_of(history(bob, {{"room", "#general"}})) == 200);
  REQUIRE(code_of(alice.request(R"({"action":"exit"})")) == 200);
  r = history(alice, {{"room", "#den"}});
  CHECK(code_of(r) == 200);
  CHECK(r.at("messages").as_array().size() == 1);
  // Joining with the password makes bob a member for good.
  REQUIRE(code_of(join(bob, "den", pw)) == 200);
  bob.push();  // den's history on join
  REQUIRE(code_of(bob.request(R"({"action":"exit"})")) == 200);
  CHECK(code_of(history(bob, {{"room", "den"}})) == 200);
}

TEST_CASE("history with an account returns the private conversation, oldest first",
          "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob, carol] = sign_up_all(d.port(), "alice", "Bob", "carol");
  auto a1 = id_of(say(alice, "hi bob", "bob"));
  auto b1 = id_of(say(bob, "hi alice", "alice"));
  say(carol, "not in it", "bob");
  say(alice, "public");  // #general, not private
  quit(bob);
  auto a2 = id_of(say(alice, "offline one", "BOB"));

  auto r = history(alice, {{"with", "bOb"}});
  CHECK(code_of(r) == 200);
  CHECK(ids_of(r) == std::vector<std::uint64_t>{a1, b1, a2});
  auto const& msgs = r.at("messages").as_array();
  CHECK(msgs[0].as_object().at("from") == "alice");
  CHECK(msgs[0].as_object().at("to") == "Bob");
  CHECK(msgs[1].as_object().at("from") == "Bob");
  CHECK(msgs[1].as_object().at("to") == "alice");
  CHECK(msgs[2].as_object().at("message") == "offline one");
  // The same conversation from bob's side.
  client back = sign_in(d.port(), "bob");
  auto rb = history(back, {{"with", "alice"}, {"limit", 2}});
  CHECK(ids_of(rb) == std::vector<std::uint64_t>{b1, a2});
  CHECK(ids_of(history(back, {{"with", "alice"}, {"before", a2}})) ==
        std::vector<std::uint64_t>{a1, b1});
  // Nobody else's.
  CHECK(ids_of(history(carol, {{"with", "alice"}})).empty());
  CHECK(code_of(history(alice, {{"with", "ghost"}})) == 404);
}

// ---------------------------------------------------------------------------------------------
// users and rooms
// ---------------------------------------------------------------------------------------------

TEST_CASE("users lists who is online in the current room with their status",
          "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob, carol] = sign_up_all(d.port(), "alice", "Bob", "carol");
  create_room(carol, "den");
  REQUIRE(code_of(bob.request(R"({"action":"presence","user":{"status":"away"}})")) == 200);
  auto r = alice.request(R"({"action":"users"})");
  CHECK(code_of(r) == 200);
  CHECK(r.at("room") == "#general");
  std::set<std::string> names;
  for (auto const& u : r.at("users").as_array()) {
    auto const& o = u.as_object();
    names.insert(std::string(o.at("account_name").as_string()));
    CHECK(o.at("status").is_string());
    if (o.at("account_name") == "Bob") CHECK(o.at("status") == "away");
  }
  CHECK(names == std::set<std::string>{"alice", "Bob"});
  quit(bob);
  CHECK(user_names(alice.request(R"({"action":"users"})")) == std::vector<std::string>{"alice"});
  CHECK(user_names(carol.request(R"({"action":"users"})")) == std::vector<std::string>{"carol"});
}

TEST_CASE("users of another room needs membership (403), and a room that exists (404)",
          "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  auto pw = create_room(alice, "den");
  CHECK(code_of(bob.request(R"({"action":"users","room":"den"})")) == 403);
  CHECK(code_of(bob.request(R"({"action":"users","room":"nowhere"})")) == 404);
  // From #den, #general is everyone's.
  auto r = alice.request(R"({"action":"users","room":"#general"})");
  CHECK(code_of(r) == 200);
  CHECK(user_names(r) == std::vector<std::string>{"bob"});
  // A member in another room sees who is in #den.
  REQUIRE(code_of(join(bob, "den", pw)) == 200);
  REQUIRE(code_of(bob.request(R"({"action":"exit"})")) == 200);
  r = bob.request(R"({"action":"users","room":"den"})");
  CHECK(code_of(r) == 200);
  CHECK(r.at("room") == "#den");
  CHECK(user_names(r) == std::vector<std::string>{"alice"});
}

TEST_CASE("rooms lists every room with owner, online count and membership",
          "[integration][rooms]") {
  jimd_process d;
  auto [alice, bob, carol, dave] = sign_up_all(d.port(), "Alice", "bob", "carol", "dave");
  auto den = create_room(alice, "den");
  create_room(bob, "Lair");
  REQUIRE(code_of(join(carol, "den", den)) == 200);
  REQUIRE(code_of(invite(bob, "lair", "dave")) == 200);

  auto r = dave.request(R"({"action":"rooms"})");
  CHECK(code_of(r) == 200);
  CHECK(r.at("rooms").as_array().size() == 3);
  auto g = room_entry(r, "#general");
  CHECK(g.at("owner").is_null());
  CHECK(g.at("online") == 1);  // dave
  CHECK(g.at("member") == true);
  auto e = room_entry(r, "#den");
  CHECK(e.at("owner") == "Alice");
  CHECK(e.at("online") == 2);
  CHECK(e.at("member") == false);
  auto l = room_entry(r, "#Lair");
  CHECK(l.at("owner") == "bob");
  CHECK(l.at("online") == 1);
  CHECK(l.at("member") == true);  // invited

  r = carol.request(R"({"action":"rooms"})");
  CHECK(room_entry(r, "#den").at("member") == true);  // joined with the password
  CHECK(room_entry(r, "#Lair").at("member") == false);
  CHECK(room_entry(r, "#general").at("member") == true);
  quit(carol);
  CHECK(room_entry(alice.request(R"({"action":"rooms"})"), "#den").at("online") == 1);
}
