// Several connections (devices) of one account (contract: "Devices"; --max-sessions).
#include "chat_helpers.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <signal.h>

#include <optional>
#include <vector>

using namespace jim::test;

namespace {

bool is_msg(json::object const& p, std::string const& from, std::string const& to,
            std::string const& text) {
  return str(p, "action") == "msg" && str(p, "from") == from && str(p, "to") == to &&
         str(p, "message") == text;
}

std::string room_of(client& c) {
  return str(c.request(R"({"action":"presence"})"), "room");
}

}  // namespace

TEST_CASE("Two devices of one account get the same pushes, the sending one not its own",
          "[integration][devices]") {
  jimd_process d;
  client phone = sign_up(d.port(), "alice");
  client laptop = sign_in(d.port(), "alice");  // a second device: the first stays open
  client bob = sign_up(d.port(), "bob");
  REQUIRE(no_push_pending(phone));

  SECTION("a room message of someone else") {
    auto r = say(bob, "hello both");
    CHECK(code_of(r) == 200);
    CHECK(r.at("delivered").to_number<int>() == 2);
    CHECK(is_msg(phone.push(), "bob", "#general", "hello both"));
    CHECK(is_msg(laptop.push(), "bob", "#general", "hello both"));
  }
  SECTION("a room message of one device reaches the other one in the room") {
    auto r = say(phone, "from the phone");
    CHECK(r.at("delivered").to_number<int>() == 2);  // bob and the laptop
    CHECK(is_msg(laptop.push(), "alice", "#general", "from the phone"));
    CHECK(is_msg(bob.push(), "alice", "#general", "from the phone"));
  }
  SECTION("a private message to the account") {
    auto r = say(bob, "psst", "alice");
    CHECK(code_of(r) == 200);
    CHECK(r.at("delivered").to_number<int>() == 2);
    CHECK(is_msg(phone.push(), "bob", "alice", "psst"));
    CHECK(is_msg(laptop.push(), "bob", "alice", "psst"));
  }
  SECTION("a private message of one device also reaches the sender's other device") {
    auto r = say(laptop, "to bob", "bob");
    CHECK(code_of(r) == 200);
    CHECK(r.at("delivered").to_number<int>() == 1);  // bob's connections
    CHECK(is_msg(bob.push(), "alice", "bob", "to bob"));
    CHECK(is_msg(phone.push(), "alice", "bob", "to bob"));
  }
  SECTION("an invitation") {
    create_room(bob, "den");
    auto r = ask(bob, json::object{{"action", "invite"}, {"room", "den"}, {"user", "alice"}});
    CHECK(code_of(r) == 200);
    CHECK(r.at("online") == true);
    for (client* c : {&phone, &laptop}) {
      auto p = c->push();
      CHECK(str(p, "action") == "invite");
      CHECK(str(p, "room") == "#den");
      CHECK(str(p, "from") == "bob");
    }
  }
  SECTION("a read marker set on one device is pushed to the other one") {
    auto id = id_of(say(bob, "read me"));
    phone.push();
    laptop.push();
    auto r = ask(phone, json::object{{"action", "read"}, {"room", "general"}, {"id", id}});
    CHECK(code_of(r) == 200);
    auto p = laptop.push();
    CHECK(str(p, "action") == "read");
    CHECK(str(p, "room") == "#general");
    CHECK(p.at("id").to_number<std::uint64_t>() == id);
  }
  CHECK(no_push_pending(phone));
  CHECK(no_push_pending(laptop));
  CHECK(no_push_pending(bob));
}

TEST_CASE("Each device has its own current room and its own watches", "[integration][devices]") {
  jimd_process d;
  client phone = sign_up(d.port(), "alice");
  client laptop = sign_in(d.port(), "alice");
  client bob = sign_up(d.port(), "bob");
  create_room(phone, "den");  // only the phone moves
  CHECK(room_of(phone) == "#den");
  CHECK(room_of(laptop) == "#general");

  say(bob, "general chat");
  CHECK(is_msg(laptop.push(), "bob", "#general", "general chat"));
  CHECK(no_push_pending(phone));  // not in #general

  // A room message needs the sending connection to be in the room.
  CHECK(code_of(say(laptop, "x", "#den")) == 403);
  CHECK(code_of(say(phone, "in the den", "#den")) == 200);
  CHECK(no_push_pending(laptop));  // neither in nor watching #den

  // Watching is per connection: the laptop watches #den, a third device does not.
  client tablet = sign_in(d.port(), "alice");
  drain_history(tablet, 1);
  REQUIRE(code_of(ask(laptop, json::object{{"action", "watch"}, {"rooms", json::array{"den"}}})) ==
          200);
  CHECK(code_of(say(phone, "watched", "#den")) == 200);
  CHECK(is_msg(laptop.push(), "alice", "#den", "watched"));
  CHECK(no_push_pending(tablet));
  CHECK(no_push_pending(phone));

  // Both in #den: the other device gets the message (and only it).
  REQUIRE(code_of(join(laptop, "den")) == 200);
  drain_history(laptop, 2);
  // alice was in the room already (on the phone): no `join` (events are per account).
  CHECK(no_push_pending(phone));
  CHECK(code_of(say(phone, "both here")) == 200);
  CHECK(is_msg(laptop.push(), "alice", "#den", "both here"));
  CHECK(no_push_pending(phone));
  CHECK(code_of(ask(laptop, json::object{{"action", "exit"}})) == 200);
  CHECK(room_of(laptop) == "#general");
  CHECK(room_of(phone) == "#den");
}

TEST_CASE("Signing in beyond --max-sessions closes the oldest device with a notice",
          "[integration][devices]") {
  jimd_process d;  // the default: 8
  std::vector<client> devices;
  devices.push_back(sign_up(d.port(), "alice"));
  for (int i = 1; i < 8; ++i) devices.push_back(sign_in(d.port(), "alice"));
  for (auto& c : devices) CHECK(no_push_pending(c));  // eight live at once
  client ninth = sign_in(d.port(), "alice");           // its 200 came after the close
  auto notice = devices[0].push();
  CHECK(str(notice, "action") == "notice");
  CHECK(str(notice, "text") == "signed in from another connection");
  CHECK(devices[0].closed_within(5s));
  for (std::size_t i = 1; i < devices.size(); ++i) CHECK(no_push_pending(devices[i]));
  // The next one closes the next oldest.
  client tenth = sign_in(d.port(), "alice");
  CHECK(str(devices[1].push(), "action") == "notice");
  CHECK(devices[1].closed_within(5s));
  CHECK(no_push_pending(devices[2]));
  CHECK(no_push_pending(ninth));
  CHECK(no_push_pending(tenth));
}

TEST_CASE("With --max-sessions 1 every sign-in takes over the live connection",
          "[integration][devices]") {
  jimd_process d({"--max-sessions", "1"});
  client first = sign_up(d.port(), "alice");
  client second = sign_in(d.port(), "alice");
  auto notice = first.push();
  CHECK(str(notice, "action") == "notice");
  CHECK(first.closed_within(5s));
  client third = sign_in(d.port(), "alice");
  CHECK(str(second.push(), "action") == "notice");
  CHECK(second.closed_within(5s));
  CHECK(no_push_pending(third));
}

TEST_CASE("missed counts from when the account's last device disconnected",
          "[integration][devices]") {
  jimd_process d({"--history-on-join", "0"});
  auto [bob, phone] = sign_up_all(d.port(), "bob", "alice");
  client laptop = sign_in(d.port(), "alice");
  quit(phone);
  say(bob, "one");
  say(bob, "two");
  // Another device is online: it has seen everything.
  client tablet(d.port());
  auto r = ask(tablet, authenticate_req("alice"));
  CHECK(code_of(r) == 200);
  CHECK(r.at("missed").to_number<int>() == 0);
  quit(tablet);
  quit(laptop);
  say(bob, "three");
  say(bob, "four");
  say(bob, "five");
  client back(d.port());
  r = ask(back, authenticate_req("alice"));
  CHECK(code_of(r) == 200);
  CHECK(r.at("missed").to_number<int>() == 3);
}

TEST_CASE("users lists an account once however many devices it has, status is per account",
          "[integration][devices]") {
  jimd_process d;
  client phone = sign_up(d.port(), "alice");
  client laptop = sign_in(d.port(), "alice");
  client bob = sign_up(d.port(), "bob");
  CHECK(user_names(bob.request(R"({"action":"users"})")) == std::vector<std::string>{"alice", "bob"});
  CHECK(user_names(bob.request(R"({"action":"users","room":"*"})")) ==
        std::vector<std::string>{"alice", "bob"});
  // `online` in rooms counts connections.
  CHECK(room_entry(bob.request(R"({"action":"rooms"})"), "#general").at("online") == 3);
  // A status set on one device is the account's: the other device and bob are told.
  CHECK(code_of(phone.request(R"({"action":"presence","user":{"status":"away"}})")) == 200);
  for (client* c : {&laptop, &bob}) {
    auto p = c->push();
    CHECK(str(p, "event") == "status");
    CHECK(str(p, "status") == "away");
  }
  CHECK(no_push_pending(phone));
  auto users = bob.request(R"({"action":"users"})").at("users").as_array();
  REQUIRE(users.size() == 2);
  CHECK(users[0].as_object().at("status") == "away");
  // Online while any device is.
  quit(phone);
  CHECK(user_names(bob.request(R"({"action":"users","room":"*"})")) ==
        std::vector<std::string>{"alice", "bob"});
  quit(laptop);
  CHECK(user_names(bob.request(R"({"action":"users","room":"*"})")) ==
        std::vector<std::string>{"bob"});
}

TEST_CASE("Devices and contacts survive a restart", "[integration][devices][contacts]") {
  temp_dir dir;
  {
    jimd_process d({"--autosave", "0"}, dir.path());
    client phone = sign_up(d.port(), "alice");
    client laptop = sign_in(d.port(), "alice");
    sign_up(d.port(), "Bob");
    CHECK(code_of(ask(phone, json::object{{"action", "add_contact"}, {"user_id", "bob"}})) == 200);
    REQUIRE(d.stop(SIGINT) == 0);
  }
  jimd_process d({"--autosave", "0"}, dir.path());
  client phone = sign_in(d.port(), "alice");
  client laptop = sign_in(d.port(), "alice");
  CHECK(no_push_pending(phone));  // both live after the restart
  auto r = ask(laptop, json::object{{"action", "get_contacts"}});
  CHECK(code_of(r) == 202);
  CHECK(r.at("quantity") == 1);
  CHECK(str(laptop.push(), "user_id") == "Bob");
}

TEST_CASE("join and leave events are per account: the first device in, the last device out",
          "[integration][devices]") {
  jimd_process d({"--history-on-join", "0"});
  auto [alice, laptop] = sign_up_all(d.port(), "alice", "gina0");
  client phone = sign_in(d.port(), "gina0");
  client tablet = sign_in(d.port(), "gina0");
  auto pw = create_room(alice, "multi");
  REQUIRE(code_of(join(laptop, "multi", pw)) == 200);
  auto j = alice.push();
  CHECK(str(j, "event") == "join");
  CHECK(str(j, "user") == "gina0");
  REQUIRE(code_of(join(phone, "multi")) == 200);
  REQUIRE(code_of(join(tablet, "multi")) == 200);
  CHECK(no_push_pending(alice));  // gina0 was in the room already
  CHECK(no_push_pending(laptop));
  REQUIRE(code_of(ask(laptop, json::object{{"action", "exit"}})) == 200);
  CHECK(no_push_pending(alice));  // still there on the phone and the tablet
  CHECK(user_names(ask(alice, json::object{{"action", "users"}, {"room", "multi"}})) ==
        std::vector<std::string>{"alice", "gina0"});
  quit(tablet);  // a disconnect is no leave either while the phone stays
  CHECK(no_push_pending(alice));
  REQUIRE(code_of(ask(phone, json::object{{"action", "exit"}})) == 200);
  auto l = alice.push();
  CHECK(str(l, "event") == "leave");
  CHECK(str(l, "user") == "gina0");
  CHECK(no_push_pending(alice));
}

TEST_CASE("a kick of an account with two devices in the room is one leave",
          "[integration][devices][moderation]") {
  jimd_process d({"--history-on-join", "0"});
  auto [carol, laptop] = sign_up_all(d.port(), "carol", "dave");
  client phone = sign_in(d.port(), "dave");
  auto pw = create_room(carol, "den");
  REQUIRE(code_of(join(laptop, "den", pw)) == 200);
  REQUIRE(code_of(join(phone, "den")) == 200);
  CHECK(str(carol.push(), "event") == "join");
  CHECK(no_push_pending(carol));
  REQUIRE(code_of(ask(carol, json::object{{"action", "kick"}, {"room", "den"}, {"user", "dave"}})) ==
          200);
  auto l = carol.push();
  CHECK(str(l, "event") == "leave");
  CHECK(str(l, "user") == "dave");
  CHECK(no_push_pending(carol));
}
