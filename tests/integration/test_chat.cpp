// Integration tests of chat messages and of the frame rules they travel in: the real jimd on
// 127.0.0.1, driven with raw JSON lines (contract: "Frame kinds", "Codes", "Names", "Chat").

#include "chat_helpers.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace jim::test;

// ---------------------------------------------------------------------------------------------
// Room messages
// ---------------------------------------------------------------------------------------------

TEST_CASE("A message to #general reaches every other connection in it but not the sender",
          "[integration][chat]") {
  jimd_process d;
  auto [alice, bob, carol, dave] = sign_up_all(d.port(), "alice", "bob", "carol", "dave");
  create_room(dave, "elsewhere");  // dave is no longer in #general

  json::object r;
  SECTION("to written explicitly") {
    r = say(alice, "Hello, World!", "#general");
  }
  SECTION("to written in another case") {
    r = say(alice, "Hello, World!", "#GENERAL");
  }
  CHECK(code_of(r) == 200);
  CHECK(r.at("delivered") == 2);
  CHECK(r.at("id").is_number());
  CHECK(r.at("time").is_number());
  for (client* c : {&bob, &carol}) {
    auto m = c->push();
    INFO(json::serialize(m));
    CHECK(m.at("action") == "msg");
    CHECK(id_of(m) == id_of(r));
    CHECK(m.at("time").is_number());
    CHECK(m.at("from") == "alice");
    CHECK(m.at("to") == "#general");
    CHECK(m.at("message") == "Hello, World!");
    CHECK_FALSE(m.contains("response"));
    CHECK_FALSE(m.contains("history"));
  }
  CHECK(no_push_pending(alice));
  CHECK(no_push_pending(dave));
}

TEST_CASE("delivered counts the other connections in the room", "[integration][chat]") {
  jimd_process d;
  client alice = sign_up(d.port(), "alice");
  CHECK(say(alice, "alone").at("delivered") == 0);
  client bob = sign_up(d.port(), "bob");
  CHECK(say(alice, "two of us").at("delivered") == 1);
  quit(bob);
  CHECK(say(alice, "alone again").at("delivered") == 0);
}

TEST_CASE("Message ids are server-wide and strictly increasing", "[integration][chat]") {
  jimd_process d({"--rate-limit", "0"});
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  std::vector<std::uint64_t> ids;
  ids.push_back(id_of(say(alice, "1")));
  ids.push_back(id_of(say(bob, "2")));
  ids.push_back(id_of(say(alice, "3", "bob")));  // private, online
  create_room(bob, "side");
  ids.push_back(id_of(say(bob, "4")));  // another room
  quit(alice);
  ids.push_back(id_of(say(bob, "5", "alice")));  // private, queued
  for (auto id : post_many(bob, 10)) ids.push_back(id);
  for (std::size_t i = 1; i < ids.size(); ++i) {
    INFO("ids[" << i - 1 << "]=" << ids[i - 1] << " ids[" << i << "]=" << ids[i]);
    CHECK(ids[i] > ids[i - 1]);
  }
}

TEST_CASE("A message without to goes to the sender's current room", "[integration][chat]") {
  jimd_process d;
  auto [alice, bob, carol] = sign_up_all(d.port(), "alice", "bob", "carol");
  room_with_member(alice, bob, "den");

  auto r = say(alice, "in the den");
  CHECK(code_of(r) == 200);
  CHECK(r.at("delivered") == 1);
  auto m = bob.push();
  CHECK(m.at("to") == "#den");
  CHECK(m.at("from") == "alice");
  CHECK(m.at("message") == "in the den");
  CHECK(no_push_pending(carol));

  // In #general, no `to` means #general.
  r = say(carol, "in general");
  CHECK(r.at("delivered") == 0);
  CHECK(no_push_pending(alice));
  CHECK(no_push_pending(bob));
}

TEST_CASE("A message to a room that is not the sender's current room gets 403",
          "[integration][chat]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  auto pw = create_room(bob, "den");
  json::object r;
  SECTION("not a member") {
    r = say(alice, "let me in", "#den");
  }
  SECTION("a member, but currently elsewhere") {
    REQUIRE(code_of(join(alice, "den", pw)) == 200);
    REQUIRE(code_of(alice.request(R"({"action":"exit"})")) == 200);
    r = say(alice, "from outside", "#den");
  }
  SECTION("the owner, from #general to its own room") {
    REQUIRE(code_of(bob.request(R"({"action":"leave"})")) == 200);
    r = say(bob, "from outside", "#DEN");
  }
  CHECK(code_of(r) == 403);
  CHECK(r.at("error").is_string());
  CHECK_FALSE(r.contains("id"));
  // Nothing was delivered or stored.
  barrier(bob);
  while (!bob.silent_for(0ms)) CHECK(bob.push().at("action") == "event");
  auto h = bob.request(R"({"action":"history","room":"den"})");
  CHECK(h.at("messages").as_array().empty());
}

namespace {

/// A message from a new account to `to`, which names nobody: 404 with an error text.
void check_unknown_recipient(std::string const& message, std::string const& to) {
  jimd_process d;
  client alice = sign_up(d.port(), "alice");
  auto r = say(alice, message, to);
  CHECK(code_of(r) == 404);
  CHECK(r.at("error").is_string());
}

}  // namespace

TEST_CASE("A message to a room that does not exist gets 404", "[integration][chat]") {
  check_unknown_recipient("anyone?", "#nowhere");
}

// ---------------------------------------------------------------------------------------------
// Private messages
// ---------------------------------------------------------------------------------------------

TEST_CASE("A private message to an online user is pushed wherever they are, 200 with delivered 1",
          "[integration][chat]") {
  jimd_process d;
  auto [alice, bob, carol] = sign_up_all(d.port(), "alice", "bob", "carol");
  SECTION("bob in #general") {}
  SECTION("bob in a room alice is not in") {
    create_room(bob, "den");
  }
  auto r = say(alice, "psst", "bob");
  CHECK(code_of(r) == 200);
  CHECK(r.at("delivered") == 1);
  CHECK(r.at("id").is_number());
  auto m = bob.push();
  INFO(json::serialize(m));
  CHECK(m.at("action") == "msg");
  CHECK(id_of(m) == id_of(r));
  CHECK(m.at("from") == "alice");
  CHECK(m.at("to") == "bob");
  CHECK(m.at("message") == "psst");
  CHECK(m.at("time").is_number());
  CHECK(no_push_pending(alice));
  CHECK(no_push_pending(carol));
}

TEST_CASE(
    "A private message to an offline user gets 202 with id and delivered 0, and arrives at the "
    "next sign-in",
    "[integration][chat]") {
  jimd_process d;
  client bob = sign_up(d.port(), "bob");
  quit(bob);
  client alice = sign_up(d.port(), "alice");
  auto r = say(alice, "when you are back", "bob");
  CHECK(code_of(r) == 202);
  CHECK(r.at("delivered") == 0);
  REQUIRE(r.at("id").is_number());
  CHECK(no_push_pending(alice));

  client back = sign_in(d.port(), "bob");
  auto m = back.push();
  CHECK(m.at("action") == "msg");
  CHECK(id_of(m) == id_of(r));
  CHECK(m.at("from") == "alice");
  CHECK(m.at("to") == "bob");
  CHECK(m.at("message") == "when you are back");
}

TEST_CASE("A private message to an unknown account gets 404", "[integration][chat]") {
  check_unknown_recipient("hello?", "nobody");
}

TEST_CASE("A bare name in msg.to is an account, never a room", "[integration][chat]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  room_with_member(alice, bob, "den");
  auto r = say(alice, "to the room?", "den");
  CHECK(code_of(r) == 404);  // no account "den"
  CHECK(code_of(say(alice, "and general?", "general")) == 404);
  CHECK(no_push_pending(bob));
}

TEST_CASE("Private message recipients are looked up case-insensitively and shown as registered",
          "[integration][chat]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "Bob");
  auto r = say(alice, "hi Bob", "bOB");
  CHECK(code_of(r) == 200);
  CHECK(r.at("delivered") == 1);
  auto m = bob.push();
  CHECK(m.at("to") == "Bob");
  // The same while offline.
  quit(bob);
  r = say(alice, "later", "BOB");
  CHECK(code_of(r) == 202);
  client back = sign_in(d.port(), "bob");
  m = back.push();
  CHECK(m.at("to") == "Bob");
  CHECK(m.at("message") == "later");
}

// ---------------------------------------------------------------------------------------------
// Message text
// ---------------------------------------------------------------------------------------------

TEST_CASE("An empty message gets 400", "[integration][chat]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  CHECK(code_of(say(alice, "")) == 400);
  CHECK(code_of(say(alice, "", "bob")) == 400);
  CHECK(no_push_pending(bob));
  CHECK(code_of(say(alice, " ")) == 200);  // one space is not empty
}

TEST_CASE("A message longer than max-message bytes gets 413 and the connection stays open",
          "[integration][chat]") {
  SECTION("the default of 4096 bytes") {
    jimd_process d;
    auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
    CHECK(code_of(say(alice, std::string(4096, 'x'))) == 200);
    CHECK(bob.push().at("message").as_string().size() == 4096);
    auto r = say(alice, std::string(4097, 'x'));
    CHECK(code_of(r) == 413);
    CHECK(r.at("error").is_string());
    // Bytes, not characters: 2049 two-byte characters are 4098 bytes.
    std::string accents;
    for (int i = 0; i < 2049; ++i) accents += "\xc3\xa9";
    CHECK(code_of(say(alice, accents)) == 413);
    CHECK(code_of(say(alice, std::string(5000, 'y'), "bob")) == 413);
    CHECK(no_push_pending(bob));
    CHECK(code_of(say(alice, "still here")) == 200);
  }
  SECTION("--max-message 10") {
    jimd_process d({"--max-message", "10"});
    client alice = sign_up(d.port(), "alice");
    CHECK(code_of(say(alice, "0123456789")) == 200);
    CHECK(code_of(say(alice, "0123456789a")) == 413);
    CHECK(code_of(say(alice, "ok")) == 200);
  }
}

TEST_CASE("Message text travels unchanged, including Unicode, quotes and escapes",
          "[integration][chat]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  const std::string text =
      "caf\xc3\xa9 \xf0\x9f\x98\x80 \"quoted\" back\\slash\ttab {\"not\":\"json\"}";
  REQUIRE(code_of(say(alice, text)) == 200);
  CHECK(str(bob.push(), "message") == text);
}

// ---------------------------------------------------------------------------------------------
// Frames
// ---------------------------------------------------------------------------------------------

TEST_CASE("Back-to-back objects without newlines (classic JIM clients) are each answered",
          "[integration][chat]") {
  jimd_process d;
  client bob = sign_up(d.port(), "bob");
  client c(d.port());
  // A sign-in object needs no terminator to be answered.
  c.send_raw(R"({"action":"register","user":{"account_name":"alice","password":"pw"}})");
  CHECK(code_of(c.reply()) == 201);
  // Several objects in one write, no separator, the last one unterminated.
  c.send_raw(R"({"action":"msg","message":"one","tag":1}{"action":"msg","message":"two","tag":2})"
             R"({"action":"presence","tag":3})");
  for (int tag = 1; tag <= 3; ++tag) {
    auto r = c.reply();
    CHECK(code_of(r) == 200);
    CHECK(r.at("tag") == tag);
  }
  CHECK(bob.push().at("message") == "one");
  CHECK(bob.push().at("message") == "two");
  // Whitespace, newlines included, between objects is ignored.
  c.send_raw(
      " \t{\"action\":\"presence\",\"tag\":4}\n\n  {\"action\":\"presence\",\"tag\":5}  \r\n ");
  CHECK(c.reply().at("tag") == 4);
  CHECK(c.reply().at("tag") == 5);
  CHECK(c.silent_for(100ms));
}

TEST_CASE("An object split over several writes is answered once complete", "[integration][chat]") {
  jimd_process d;
  client c(d.port());
  const std::string frame =
      R"({"action":"register","user":{"account_name":"alice","password":"pw"}})";
  c.send_raw(frame.substr(0, 10));
  CHECK(c.silent_for(50ms));
  c.send_raw(frame.substr(10, 30));
  CHECK(c.silent_for(50ms));
  c.send_raw(frame.substr(40));
  CHECK(code_of(c.reply()) == 201);
}

TEST_CASE("CRLF line endings and empty lines are accepted", "[integration][chat]") {
  jimd_process d;
  client c(d.port());
  c.send_raw(
      "\r\n\n\r\n"
      R"({"action":"register","user":{"account_name":"alice","password":"pw"}})"
      "\r\n");
  CHECK(code_of(c.reply()) == 201);
  c.send_raw(
      "\r\n"
      R"({"action":"presence","tag":"crlf"})"
      "\r\n\r\n\n");
  auto r = c.reply();
  CHECK(code_of(r) == 200);
  CHECK(r.at("tag") == "crlf");
  CHECK(c.silent_for(100ms));
}

TEST_CASE("Malformed JSON gets 400 at once and the next line is processed", "[integration][chat]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  SECTION("a broken line, then a good one") {
    alice.send_raw("{\"action\": oops}\n");
    CHECK(code_of(alice.reply()) == 400);
  }
  SECTION("the rest of a broken line is discarded, objects on it included") {
    alice.send_raw(
        "{\"action\":\"msg\",\"message\":x} {\"action\":\"msg\",\"message\":\"lost\"}\n");
    CHECK(code_of(alice.reply()) == 400);
  }
  SECTION("the 400 comes at once, before the line ends") {
    alice.send_raw("{\"action\":]");
    CHECK(code_of(alice.reply()) == 400);
    alice.send_raw(" still the same broken line {\"action\":\"msg\",\"message\":\"lost\"}\n");
  }
  SECTION("a newline inside an unfinished object ends it as malformed") {
    alice.send_raw(
        "{\"action\":\"msg\",\"message\":\"lost\"\n{\"action\":\"presence\",\"tag\":\"after\"}\n");
    CHECK(code_of(alice.reply()) == 400);
    auto after = alice.reply();
    CHECK(code_of(after) == 200);
    CHECK(after.at("tag") == "after");
  }
  auto r = say(alice, "next");
  CHECK(code_of(r) == 200);
  CHECK(r.at("delivered") == 1);
  CHECK(bob.push().at("message") == "next");
  CHECK(no_push_pending(bob));
  CHECK(alice.silent_for(0ms));
}

TEST_CASE("Invalid UTF-8 gets 400 and the connection stays open", "[integration][chat]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  for (std::string const& bad : {std::string("\xff"), std::string("\xc3"), std::string("\xc0\xaf"),
                                 std::string("\xed\xa0\x80"), std::string("ok\x80")}) {
    alice.send_raw("{\"action\":\"msg\",\"message\":\"" + bad + "\"}\n");
    CHECK(code_of(alice.reply()) == 400);
  }
  // Invalid UTF-8 before sign-in too.
  client c(d.port());
  c.send_raw(
      "{\"action\":\"presence\",\"user\":{\"account_name\":\"carol\",\"status\":\"\xff\"}}\n");
  CHECK(code_of(c.reply()) == 400);
  CHECK(no_push_pending(bob));
  CHECK(code_of(say(alice, "valid")) == 200);
  CHECK(code_of(ask(c, register_req("carol"))) == 201);
}

TEST_CASE("Every request gets exactly one reply, in request order", "[integration][chat]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  // A mix of cheap requests, ones that hash a password (create, join) and failures, in one write.
  std::string batch;
  const std::vector<std::pair<std::string, int>> reqs = {
      {R"({"action":"create","room":"den","tag":0})", 201},
      {R"({"action":"msg","message":"a","tag":1})", 200},
      {R"({"action":"nope","tag":2})", 400},
      {R"({"action":"join","room":"general","tag":3})", 200},
      {R"({"action":"join","room":"den","tag":4})", 200},
      {R"({"action":"users","tag":5})", 200},
      {R"({"action":"msg","message":"x","to":"ghost","tag":6})", 404},
      {R"({"action":"history","tag":7})", 200},
      {R"({"action":"rooms","tag":8})", 200},
      {R"({"action":"msg","message":"b","to":"bob","tag":9})", 200},
      {R"({"action":"exit","tag":10})", 200},
  };
  for (auto const& [req, code] : reqs) batch += req + "\n";
  alice.send_raw(batch);
  for (std::size_t i = 0; i < reqs.size(); ++i) {
    auto r = alice.reply();
    INFO(json::serialize(r));
    CHECK(r.at("tag") == static_cast<std::int64_t>(i));
    CHECK(code_of(r) == reqs[i].second);
  }
  // Joining #den again pushed its history ("a"); nothing else came.
  CHECK(alice.push().at("message") == "a");
  CHECK(alice.silent_for(100ms));
}

TEST_CASE("Replies carry response and time, with alert text on success or error text on failure",
          "[integration][chat]") {
  jimd_process d;
  client c(d.port());
  auto check_shape = [](json::object const& r) {
    INFO(json::serialize(r));
    REQUIRE(r.at("response").is_int64());
    CHECK_FALSE(r.contains("action"));
    CHECK(r.at("time").is_number());
    const auto code = code_of(r);
    if (code < 400) {
      CHECK_FALSE(r.contains("error"));
      if (r.contains("alert")) CHECK(r.at("alert").is_string());
    } else {
      CHECK_FALSE(r.contains("alert"));
      REQUIRE(r.at("error").is_string());
      CHECK_FALSE(r.at("error").as_string().empty());
    }
  };
  check_shape(c.request(R"({"action":"nope"})"));
  check_shape(c.request(R"({"action":"rooms"})"));
  check_shape(ask(c, presence_req("alice")));
  check_shape(c.request(R"({"action":"authenticate","user":{"password":"pw"}})"));
  check_shape(c.request(R"({"action":"authenticate","user":{"password":"pw"}})"));
  check_shape(say(c, "hi"));
  check_shape(say(c, "hi", "ghost"));
  check_shape(c.request(R"({"action":"create","room":"general"})"));
  check_shape(c.request(R"({"action":"rooms"})"));
  check_shape(c.request(R"({"action":"quit"})"));
}

TEST_CASE("time in a request is optional and accepted as a number, unknown fields are ignored",
          "[integration][chat]") {
  jimd_process d;
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  CHECK(code_of(alice.request(R"({"action":"msg","message":"a","time":1700000000})")) == 200);
  CHECK(code_of(alice.request(R"({"action":"msg","message":"b","time":1700000000.25})")) == 200);
  CHECK(code_of(alice.request(
            R"({"action":"msg","message":"c","colour":"red","extra":{"x":[1]}})")) == 200);
  CHECK(code_of(alice.request(R"({"action":"msg","message":"d","time":"yesterday"})")) == 400);
  for (char const* text : {"a", "b", "c"}) CHECK(bob.push().at("message") == text);
  CHECK(no_push_pending(bob));
}

TEST_CASE("Pushes carry action and no response", "[integration][chat]") {
  jimd_process d({"--max-sessions", "1"});  // the takeover below
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  create_room(alice, "den");
  REQUIRE(code_of(ask(
              alice, json::object{{"action", "invite"}, {"room", "den"}, {"user", "bob"}})) == 200);
  REQUIRE(code_of(join(bob, "den")) == 200);
  REQUIRE(code_of(say(bob, "hi")) == 200);
  client fresh = sign_in(d.port(), "bob");  // takeover: notice to the old connection
  std::vector<json::object> got{alice.push(), alice.push(), bob.push()};
  REQUIRE(bob.closed_within(5s));
  for (auto const& p : got) {
    INFO(json::serialize(p));
    CHECK(p.at("action").is_string());
    CHECK_FALSE(p.contains("response"));
  }
  CHECK(got[0].at("action") == "event");
  CHECK(got[1].at("action") == "msg");
  CHECK(got[2].at("action") == "invite");
  auto notice = bob.push();
  CHECK(notice.at("action") == "notice");
  CHECK_FALSE(notice.contains("response"));
}

TEST_CASE("Many large pushes queued in one round arrive whole and in order",
          "[integration][chat]") {
  // A round's frames for one connection leave in writes of at most 64 KiB, copied into one
  // buffer: 40 pushes of ~4 KB cross that bound several times. (Writes that end inside a frame
  // are covered by the slow-consumer tests in test_limits.cpp.)
  jimd_process d({"--rate-limit", "0", "--history-on-join", "40"});
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  std::vector<std::string> texts;
  std::string batch;
  for (int i = 0; i < 40; ++i) {
    texts.push_back(std::to_string(i) + ":" + std::string(4000, static_cast<char>('a' + i % 26)));
    batch += json::serialize(json::object{{"action", "msg"}, {"message", texts.back()}}) + "\n";
  }
  alice.send_raw(batch);  // one write: the server reads them together
  for (int i = 0; i < 40; ++i) REQUIRE(code_of(alice.reply()) == 200);
  auto live = pushes(bob, 40);
  client carol = sign_up(d.port(), "carol");  // the same 40 as history, queued at once
  auto history = pushes(carol, 40);
  for (int i = 0; i < 40; ++i) {
    CHECK(str(live[i], "message") == texts[i]);
    CHECK(str(history[i], "message") == texts[i]);
    CHECK(history[i].at("history") == true);
  }
  CHECK(no_push_pending(bob));
  CHECK(no_push_pending(carol));
}
