#include "chat_helpers.hpp"
#include "files.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <ctime>
#include <filesystem>
#include <string>
#include <vector>

using namespace jim::test;

TEST_CASE("Guided registration asks for the password twice and signs in", "[integration][signin]") {
  jimd_process d;
  client c(d.port());
  auto r = c.request(R"({"action":"presence","user":{"account_name":"alice","status":"here"}})");
  CHECK(code_of(r) == 100);
  CHECK(r.at("auth") == "register");
  r = c.request(R"({"action":"authenticate","user":{"password":"one"}})");
  CHECK(code_of(r) == 100);
  CHECK(r.at("auth") == "confirm");
  r = c.request(R"({"action":"authenticate","user":{"password":"two"}})");
  CHECK(code_of(r) == 400);
  r = c.request(R"({"action":"authenticate","user":{"password":"one"}})");
  CHECK(code_of(r) == 100);
  r = c.request(R"({"action":"authenticate","user":{"password":"one"}})");
  CHECK(code_of(r) == 201);
  CHECK(r.at("room") == "#general");
  CHECK(r.at("missed") == 0);
}

TEST_CASE("A wrong password gets 402 and the connection is closed", "[integration][signin]") {
  jimd_process d;
  sign_up(d.port(), "bob", "right");
  client c(d.port());
  auto r = c.request(R"({"action":"presence","user":{"account_name":"BOB"}})");
  CHECK(r.at("auth") == "login");
  r = c.request(R"({"action":"authenticate","user":{"password":"wrong"}})");
  CHECK(code_of(r) == 402);
  CHECK(c.closed_within(5s));
}

// ---------------------------------------------------------------------------------------------
// Guided sign-in (as the CLI does it)
// ---------------------------------------------------------------------------------------------

TEST_CASE("Guided login of an existing account with the right password gets 200 in #general",
          "[integration][signin]") {
  jimd_process d;
  sign_up(d.port(), "alice", "secret");
  client c(d.port());
  auto r = c.request(R"({"action":"presence","user":{"account_name":"alice","status":"here"}})");
  CHECK(code_of(r) == 100);
  CHECK(r.at("auth") == "login");
  SECTION("authenticate without account_name") {
    r = c.request(R"({"action":"authenticate","user":{"password":"secret"}})");
  }
  SECTION("authenticate repeating the account_name") {
    r = c.request(
        R"({"action":"authenticate","user":{"account_name":"alice","password":"secret"}})");
  }
  SECTION("authenticate repeating the account_name in another case") {
    r = c.request(
        R"({"action":"authenticate","user":{"account_name":"ALICE","password":"secret"}})");
  }
  CHECK(code_of(r) == 200);
  CHECK(r.at("room") == "#general");
  CHECK(r.at("missed") == 0);
  CHECK(r.at("time").is_number());
  CHECK(no_push_pending(c));
}

TEST_CASE(
    "Guided registration goes back to the first password after a mismatch, any number of times",
    "[integration][signin]") {
  jimd_process d;
  client c(d.port());
  auto r = c.request(R"({"action":"presence","user":{"account_name":"carol"}})");
  REQUIRE(r.at("auth") == "register");
  for (int round = 0; round < 2; ++round) {
    r = c.request(R"({"action":"authenticate","user":{"password":"first"}})");
    CHECK(code_of(r) == 100);
    CHECK(r.at("auth") == "confirm");
    r = c.request(R"({"action":"authenticate","user":{"password":"other"}})");
    CHECK(code_of(r) == 400);
    CHECK(r.at("error").is_string());
  }
  // Back at "register, first password": the password that was rejected as a confirmation can
  // now be chosen as the first one.
  r = c.request(R"({"action":"authenticate","user":{"password":"other"}})");
  CHECK(code_of(r) == 100);
  CHECK(r.at("auth") == "confirm");
  r = c.request(R"({"action":"authenticate","user":{"account_name":"carol","password":"other"}})");
  CHECK(code_of(r) == 201);
  CHECK(r.at("room") == "#general");
  CHECK(r.at("missed") == 0);
  // The account exists with the confirmed password.
  client again(d.port());
  CHECK(code_of(ask(again, authenticate_req("carol", "first"))) == 402);
  sign_in(d.port(), "carol", "other");
}

TEST_CASE(
    "An account_name in a guided authenticate that differs from presence gets 400 and sign-in "
    "starts over",
    "[integration][signin]") {
  jimd_process d;
  sign_up(d.port(), "alice", "apw");
  sign_up(d.port(), "bob", "bpw");
  client c(d.port());
  json::object r;
  SECTION("at the login password") {
    REQUIRE(ask(c, presence_req("alice")).at("auth") == "login");
    // Even bob's right password does not sign in as anyone: the name differs from presence.
    r = ask(c, authenticate_req("bob", "bpw"));
  }
  SECTION("at the first register password") {
    REQUIRE(ask(c, presence_req("newbie")).at("auth") == "register");
    r = ask(c, authenticate_req("other", "npw"));
  }
  SECTION("at the register confirmation") {
    REQUIRE(ask(c, presence_req("newbie")).at("auth") == "register");
    REQUIRE(c.request(R"({"action":"authenticate","user":{"password":"npw"}})").at("auth") ==
            "confirm");
    r = ask(c, authenticate_req("other", "npw"));
  }
  CHECK(code_of(r) == 400);
  // Started over: a guided authenticate (no account_name) has no presence to continue from.
  r = c.request(R"({"action":"authenticate","user":{"password":"apw"}})");
  CHECK(code_of(r) == 400);
  r = c.request(R"({"action":"users"})");
  CHECK(code_of(r) == 401);
  // Step 1 works again.
  r = ask(c, presence_req("alice"));
  CHECK(code_of(r) == 100);
  CHECK(r.at("auth") == "login");
  r = c.request(R"({"action":"authenticate","user":{"password":"apw"}})");
  CHECK(code_of(r) == 200);
  // Neither "newbie" nor "other" was registered.
  client probe(d.port());
  CHECK(ask(probe, presence_req("newbie")).at("auth") == "register");
  CHECK(ask(probe, presence_req("other")).at("auth") == "register");
}

TEST_CASE("A guided registration whose name was taken meanwhile gets 409 at the confirmation",
          "[integration][signin]") {
  jimd_process d;
  client c(d.port());
  REQUIRE(ask(c, presence_req("alice")).at("auth") == "register");
  REQUIRE(c.request(R"({"action":"authenticate","user":{"password":"mine"}})").at("auth") ==
          "confirm");
  client quick = sign_up(d.port(), "ALICE", "theirs");
  auto r = c.request(R"({"action":"authenticate","user":{"password":"mine"}})");
  CHECK(code_of(r) == 409);
  CHECK(code_of(c.request(R"({"action":"users"})")) == 401);
  // The connection stays usable: start over.
  r = ask(c, presence_req("alice"));
  CHECK(r.at("auth") == "login");
  CHECK(no_push_pending(quick));
}

// ---------------------------------------------------------------------------------------------
// Names
// ---------------------------------------------------------------------------------------------

TEST_CASE("Account names are unique and looked up case-insensitively, and shown as registered",
          "[integration][signin]") {
  jimd_process d({"--max-sessions", "1"});  // the sign-in below takes over (one device)
  client alice = sign_up(d.port(), "Alice", "pw");
  client bob = sign_up(d.port(), "bob", "pw");

  client other(d.port());
  CHECK(code_of(ask(other, register_req("alice"))) == 409);
  CHECK(code_of(ask(other, register_req("ALICE"))) == 409);
  auto r = ask(other, presence_req("aLiCe"));
  CHECK(code_of(r) == 100);
  CHECK(r.at("auth") == "login");

  // A one-shot sign-in with another case takes over the account "Alice".
  client alice2 = sign_in(d.port(), "ALICE", "pw");
  CHECK(alice.closed_within(5s));
  r = alice2.request(R"({"action":"presence"})");
  CHECK(r.at("account_name") == "Alice");

  r = say(alice2, "hi");
  REQUIRE(code_of(r) == 200);
  auto m = bob.push();
  CHECK(m.at("from") == "Alice");
  r = bob.request(R"({"action":"users"})");
  auto names = user_names(r);
  CHECK(std::count(names.begin(), names.end(), "Alice") == 1);
  CHECK(std::count(names.begin(), names.end(), "alice") == 0);
  CHECK(std::count(names.begin(), names.end(), "ALICE") == 0);
}

TEST_CASE("Account names outside 1-25 characters of A-Z a-z 0-9 _ . - get 400",
          "[integration][signin]") {
  jimd_process d;
  client c(d.port());
  for (std::string const& bad : {std::string(), std::string(26, 'a'), std::string("al ice"),
                                 std::string("al!ce"), std::string("al#ce"), std::string("#alice"),
                                 std::string("ali\xc3\xa9"), std::string("al/ce")}) {
    INFO("name: \"" << bad << "\"");
    CHECK(code_of(ask(c, register_req(bad))) == 400);
    CHECK(code_of(ask(c, presence_req(bad))) == 400);
    CHECK(code_of(ask(c, authenticate_req(bad))) == 400);
  }
  // Non-string names are ill-typed.
  CHECK(code_of(c.request(R"({"action":"register","user":{"account_name":7,"password":"pw"}})")) ==
        400);
  // The connection is still open and the longest and most varied valid names work.
  CHECK(code_of(ask(c, register_req(std::string(25, 'z')))) == 201);
  client c2(d.port());
  CHECK(code_of(ask(c2, register_req("A.b_C-9"))) == 201);
}

// ---------------------------------------------------------------------------------------------
// One-shot sign-in
// ---------------------------------------------------------------------------------------------

TEST_CASE("A one-shot authenticate with the right password gets 200 with room and missed",
          "[integration][signin]") {
  jimd_process d;
  sign_up(d.port(), "alice", "pw");
  client c(d.port());
  auto r = ask(c, authenticate_req("alice", "pw"));
  CHECK(code_of(r) == 200);
  CHECK(r.at("room") == "#general");
  CHECK(r.at("missed") == 0);
  CHECK(code_of(c.request(R"({"action":"users"})")) == 200);
}

TEST_CASE("A one-shot authenticate with a wrong password gets 402 and the connection is closed",
          "[integration][signin]") {
  jimd_process d;
  sign_up(d.port(), "alice", "pw");
  client c(d.port());
  auto r = ask(c, authenticate_req("alice", "nope"));
  CHECK(code_of(r) == 402);
  CHECK(r.at("error").is_string());
  CHECK(c.closed_within(5s));
}

TEST_CASE(
    "A one-shot authenticate for an unknown account gets 404 and the connection stays open to "
    "register",
    "[integration][signin]") {
  jimd_process d;
  client c(d.port());
  auto r = ask(c, authenticate_req("ghost", "pw"));
  CHECK(code_of(r) == 404);
  CHECK(r.at("error").is_string());
  CHECK(code_of(c.request(R"({"action":"rooms"})")) == 401);
  r = ask(c, register_req("ghost", "pw"));
  CHECK(code_of(r) == 201);
  CHECK(r.at("room") == "#general");
  CHECK(code_of(c.request(R"({"action":"rooms"})")) == 200);
}

TEST_CASE("register creates the account and signs in with 201", "[integration][signin]") {
  jimd_process d;
  client c(d.port());
  auto r = ask(c, register_req("bob", "pw"));
  CHECK(code_of(r) == 201);
  CHECK(r.at("room") == "#general");
  CHECK(r.at("missed") == 0);
  CHECK(code_of(c.request(R"({"action":"users"})")) == 200);
  client other(d.port());
  CHECK(ask(other, presence_req("bob")).at("auth") == "login");
}

TEST_CASE("register of a taken name gets 409 and the connection stays open",
          "[integration][signin]") {
  jimd_process d;
  client bob = sign_up(d.port(), "bob", "pw");
  client c(d.port());
  auto r = ask(c, register_req("bob", "other"));
  CHECK(code_of(r) == 409);
  CHECK(r.at("error").is_string());
  // Not signed in, the first bob untouched, and the connection still usable.
  CHECK(code_of(c.request(R"({"action":"users"})")) == 401);
  CHECK(no_push_pending(bob));
  CHECK(code_of(ask(c, register_req("bob2", "pw"))) == 201);
}

TEST_CASE("Before sign-in every action except quit gets 401", "[integration][signin]") {
  jimd_process d;
  client owner = sign_up(d.port(), "owner", "pw");
  create_room(owner, "lobby");
  client c(d.port());
  for (auto const* req : {
           R"({"action":"msg","message":"hi"})",
           R"({"action":"msg","message":"hi","to":"#general"})",
           R"({"action":"msg","message":"hi","to":"owner"})",
           R"({"action":"create","room":"mine"})",
           R"({"action":"join","room":"lobby","password":"x"})",
           R"({"action":"join","room":"general"})",
           R"({"action":"exit"})",
           R"({"action":"leave"})",
           R"({"action":"invite","room":"lobby","user":"owner"})",
           R"({"action":"history"})",
           R"({"action":"history","room":"general","limit":5})",
           R"({"action":"history","with":"owner"})",
           R"({"action":"users"})",
           R"({"action":"users","room":"lobby"})",
           R"({"action":"rooms"})",
       }) {
    INFO(req);
    auto r = c.request(req);
    CHECK(code_of(r) == 401);
    CHECK(r.at("error").is_string());
  }
  SECTION("also in the middle of a guided login") {
    REQUIRE(code_of(ask(c, presence_req("owner"))) == 100);
    CHECK(code_of(c.request(R"({"action":"rooms"})")) == 401);
    CHECK(code_of(c.request(R"({"action":"authenticate","user":{"password":"pw"}})")) == 200);
  }
  SECTION("and nothing happened: no room was created, the connection still signs in") {
    CHECK(code_of(ask(c, authenticate_req("owner", "pw"))) == 200);
    auto rooms = c.request(R"({"action":"rooms"})");
    CHECK(rooms.at("rooms").as_array().size() == 2);
  }
}

TEST_CASE("A malformed request is 400 in every state and a well-formed one 401 before sign-in",
          "[integration][signin][logout]") {
  // Contract: "a malformed or unknown request is 400 in every state; 401 is only for
  // well-formed known actions that need a signed-in user". Each row: a request with one
  // invalid field value, and the same request valid. The value checks that need no state
  // (a status, a scheduled message's "at") were made after the sign-in check: 401 (or a sign-in
  // prompt) before sign-in, 400 after.
  jimd_process d;
  const auto now = static_cast<long long>(std::time(nullptr));
  const std::string soon = std::to_string(now + 3600);
  const std::string past = std::to_string(now - 60);
  const std::string far = std::to_string(now + 8 * 86400);  // --schedule-max: 7 days
  const std::string long_status(65, 's');
  struct row {
    std::string malformed;
    std::string well_formed;  // empty: no 401 counterpart (a sign-in step)
  };
  const std::vector<row> rows{
      {R"({"action":"logout","all":"yes"})", R"({"action":"logout"})"},
      {R"({"action":"logout","all":1})", R"({"action":"logout","all":true})"},
      {R"({"action":"msg","message":""})", R"({"action":"msg","message":"hi"})"},
      {R"({"action":"msg","message":"hi","to":"a b"})",
       R"({"action":"msg","message":"hi","to":"bob"})"},
      {R"({"action":"msg","message":"hi","at":)" + past + "}",
       R"({"action":"msg","message":"hi","at":)" + soon + "}"},
      {R"({"action":"msg","message":"hi","at":)" + far + "}",
       R"({"action":"msg","message":"hi","at":)" + soon + "}"},
      {R"({"action":"create","room":"a b"})", R"({"action":"create","room":"mine"})"},
      {R"({"action":"join","room":""})", R"({"action":"join","room":"general"})"},
      {R"({"action":"invite","user":7})", R"({"action":"invite","user":"bob"})"},
      {R"({"action":"history","limit":0})", R"({"action":"history","limit":5})"},
      {R"({"action":"users","room":"a b"})", R"({"action":"users","room":"general"})"},
      {R"({"action":"watch","rooms":5})", R"({"action":"watch","rooms":"all"})"},
      {R"({"action":"read","room":"general","id":0})",
       R"({"action":"read","room":"general","id":1})"},
      {R"({"action":"add_contact","user_id":"a b"})",
       R"({"action":"add_contact","user_id":"bob"})"},
      {R"({"action":"edit","id":0,"message":"x"})", R"({"action":"edit","id":1,"message":"x"})"},
      {R"({"action":"delete","id":"x"})", R"({"action":"delete","id":1})"},
      {R"({"action":"cancel","scheduled":0})", R"({"action":"cancel","scheduled":1})"},
      {R"({"action":"report","user":"a b"})", R"({"action":"report","user":"bob"})"},
      {R"({"action":"kick","user":"bob"})", R"({"action":"kick","user":"bob","room":"r"})"},
      {R"({"action":"ban","user":""})", R"({"action":"ban","user":"bob"})"},
      {R"({"action":"presence","user":{"account_name":"alice","status":""}})", ""},
      {R"({"action":"presence","user":{"account_name":"alice","status":")" + long_status + "\"}}",
       ""},
  };
  client c(d.port());
  std::vector<std::string> before;
  for (auto const& [bad, good] : rows) {
    INFO(bad);
    auto r = c.request(bad);
    CHECK(code_of(r) == 400);
    before.push_back(str(r, "error"));
    if (good.empty()) continue;
    INFO(good);
    CHECK(code_of(c.request(good)) == 401);
  }
  // After sign-in the same malformed requests get the same 400 with the same text.
  REQUIRE(code_of(ask(c, register_req("alice"))) == 201);
  for (std::size_t i = 0; i < rows.size(); ++i) {
    INFO(rows[i].malformed);
    auto r = c.request(rows[i].malformed);
    CHECK(code_of(r) == 400);
    CHECK(str(r, "error") == before[i]);
  }
  auto who = c.request(R"({"action":"users","room":"*"})");
  REQUIRE(code_of(who) == 200);
  CHECK(str(who.at("users").as_array().at(0).as_object(), "status") == "online");
}

TEST_CASE("quit gets 200 and then the connection is closed, in any state",
          "[integration][signin]") {
  jimd_process d;
  sign_up(d.port(), "alice", "pw");
  client c(d.port());
  SECTION("first frame") {}
  SECTION("after presence of an existing account") {
    REQUIRE(code_of(ask(c, presence_req("alice"))) == 100);
  }
  SECTION("after presence of a new account") {
    REQUIRE(ask(c, presence_req("newbie")).at("auth") == "register");
  }
  SECTION("waiting for the password confirmation") {
    REQUIRE(ask(c, presence_req("newbie")).at("auth") == "register");
    REQUIRE(c.request(R"({"action":"authenticate","user":{"password":"x"}})").at("auth") ==
            "confirm");
  }
  SECTION("after a 404 one-shot authenticate") {
    REQUIRE(code_of(ask(c, authenticate_req("ghost"))) == 404);
  }
  SECTION("signed in") {
    REQUIRE(code_of(ask(c, authenticate_req("alice"))) == 200);
  }
  SECTION("signed in, in a room of one's own") {
    REQUIRE(code_of(ask(c, authenticate_req("alice"))) == 200);
    create_room(c, "den");
  }
  auto r = c.request(R"({"action":"quit","tag":"bye"})");
  CHECK(code_of(r) == 200);
  CHECK(r.at("tag") == "bye");
  CHECK(c.closed_within(5s));
}

TEST_CASE(
    "Signing in elsewhere takes over: the old connection gets a notice and is closed before the "
    "new one's 200",
    "[integration][signin]") {
  jimd_process d({"--max-sessions", "1"});
  client old = sign_up(d.port(), "alice", "pw");
  client bob = sign_up(d.port(), "bob", "pw");
  create_room(old, "den");  // the old connection is not in #general: the takeover still works
  client fresh(d.port());
  json::object r;
  SECTION("one-shot") {
    r = ask(fresh, authenticate_req("alice", "pw"));
  }
  SECTION("guided") {
    REQUIRE(code_of(ask(fresh, presence_req("alice"))) == 100);
    r = fresh.request(R"({"action":"authenticate","user":{"password":"pw"}})");
  }
  CHECK(code_of(r) == 200);
  CHECK(r.at("room") == "#general");
  // The old connection was closed before that reply was sent: its EOF is already here.
  CHECK(old.closed_within(0ms));
  auto notice = old.push();
  CHECK(notice.at("action") == "notice");
  CHECK(notice.at("text").is_string());

  // The new connection is the account's only one: private messages reach it, users lists it once.
  r = say(bob, "still there?", "alice");
  CHECK(code_of(r) == 200);
  CHECK(r.at("delivered") == 1);
  auto m = fresh.push();
  CHECK(m.at("message") == "still there?");
  auto names = user_names(bob.request(R"({"action":"users"})"));
  CHECK(std::count(names.begin(), names.end(), "alice") == 1);
  // #den is empty now.
  CHECK(room_entry(bob.request(R"({"action":"rooms"})"), "#den").at("online") == 0);
}

TEST_CASE("A wrong password does not take over the live connection", "[integration][signin]") {
  jimd_process d;
  client alice = sign_up(d.port(), "alice", "pw");
  client intruder(d.port());
  CHECK(code_of(ask(intruder, authenticate_req("alice", "bad"))) == 402);
  CHECK(intruder.closed_within(5s));
  CHECK(no_push_pending(alice));
}

// ---------------------------------------------------------------------------------------------
// missed, history and queued private messages after sign-in
// ---------------------------------------------------------------------------------------------

TEST_CASE(
    "missed counts the #general messages posted since the account's previous connection ended",
    "[integration][signin]") {
  jimd_process d({"--rate-limit", "0"});
  client alice = sign_up(d.port(), "alice", "pw");
  client bob = sign_up(d.port(), "bob", "pw");
  post_many(bob, 2, "seen by alice");
  quit(alice);
  post_many(bob, 3, "missed by alice");
  // Messages in other rooms and private messages do not count.
  create_room(bob, "side");
  post_many(bob, 4, "side");
  CHECK(code_of(say(bob, "private", "alice")) == 202);

  client again(d.port());
  auto r = ask(again, authenticate_req("alice", "pw"));
  CHECK(code_of(r) == 200);
  CHECK(r.at("missed") == 3);
  drain_history(again, 5 + 1);  // all five #general messages, then the queued private one
  quit(again);

  // Nothing posted since: 0.
  client third = sign_in(d.port(), "alice", "pw");
  (void)third;
  client fourth(d.port());
  r = ask(fourth, authenticate_req("alice", "pw"));  // takes over "third" (its end counts as now)
  CHECK(r.at("missed") == 0);
}

TEST_CASE("missed counts #general messages even past history-limit", "[integration][signin]") {
  jimd_process d({"--rate-limit", "0", "--history-limit", "2"});
  client alice = sign_up(d.port(), "alice", "pw");
  client bob = sign_up(d.port(), "bob", "pw");
  quit(alice);
  auto ids = post_many(bob, 7);
  client again(d.port());
  auto r = ask(again, authenticate_req("alice", "pw"));
  CHECK(r.at("missed") == 7);
  // Only history-limit messages are kept, so only those are pushed.
  auto h = pushes(again, 2);
  CHECK(id_of(h[0]) == ids[5]);
  CHECK(id_of(h[1]) == ids[6]);
  CHECK(no_push_pending(again));
}

TEST_CASE("missed is 0 for a new account even when #general has messages",
          "[integration][signin]") {
  jimd_process d({"--history-on-join", "0"});
  client bob = sign_up(d.port(), "bob", "pw");
  post_many(bob, 3);
  client c(d.port());
  auto r = ask(c, register_req("newbie"));
  CHECK(code_of(r) == 201);
  CHECK(r.at("missed") == 0);
  client g(d.port());
  REQUIRE(ask(g, presence_req("guided")).at("auth") == "register");
  g.request(R"({"action":"authenticate","user":{"password":"pw"}})");
  r = g.request(R"({"action":"authenticate","user":{"password":"pw"}})");
  CHECK(code_of(r) == 201);
  CHECK(r.at("missed") == 0);
}

TEST_CASE(
    "After sign-in the last history-on-join #general messages are pushed oldest first with history "
    "true",
    "[integration][signin]") {
  jimd_process d({"--history-on-join", "3", "--rate-limit", "0"});
  client bob = sign_up(d.port(), "bob", "pw");
  auto ids = post_many(bob, 5, "general");
  create_room(bob, "side");
  post_many(bob, 2, "side");  // not #general: never pushed on sign-in

  client alice(d.port());
  json::object r;
  SECTION("new account (register)") {
    r = ask(alice, register_req("alice"));
  }
  SECTION("guided login") {
    {
      client first = sign_up(d.port(), "alice", "pw");
      quit(first);
    }
    REQUIRE(code_of(ask(alice, presence_req("alice"))) == 100);
    r = alice.request(R"({"action":"authenticate","user":{"password":"pw"}})");
  }
  REQUIRE(code_of(r) / 100 == 2);
  auto h = pushes(alice, 3);
  for (std::size_t i = 0; i < 3; ++i) {
    INFO(json::serialize(h[i]));
    CHECK(h[i].at("action") == "msg");
    CHECK(h[i].at("history") == true);
    CHECK(id_of(h[i]) == ids[2 + i]);
    CHECK(h[i].at("from") == "bob");
    CHECK(h[i].at("to") == "#general");
    CHECK(str(h[i], "message") == "general " + std::to_string(2 + i));
    CHECK(h[i].at("time").is_number());
  }
  CHECK(no_push_pending(alice));
}

TEST_CASE(
    "Private messages queued while offline are pushed after the history with their original id and "
    "time",
    "[integration][signin]") {
  jimd_process d({"--history-on-join", "2", "--rate-limit", "0"});
  client alice = sign_up(d.port(), "alice", "pw");
  quit(alice);
  client bob = sign_up(d.port(), "bob", "pw");
  client carol = sign_up(d.port(), "carol", "pw");
  auto general = post_many(carol, 3, "general");
  auto p1 = say(bob, "first", "alice");
  auto p2 = say(carol, "second", "ALICE");
  auto p3 = say(bob, "third", "alice");
  for (auto const* p : {&p1, &p2, &p3}) {
    CHECK(code_of(*p) == 202);
    CHECK(p->at("delivered") == 0);
  }
  // The stored times, as the private history shows them.
  auto hist_bob = bob.request(R"({"action":"history","with":"alice"})").at("messages").as_array();
  auto hist_carol =
      carol.request(R"({"action":"history","with":"alice"})").at("messages").as_array();
  REQUIRE(hist_bob.size() == 2);
  REQUIRE(hist_carol.size() == 1);

  client back(d.port());
  auto r = ask(back, authenticate_req("alice", "pw"));
  REQUIRE(code_of(r) == 200);
  auto h = pushes(back, 2 + 3);
  CHECK(h[0].at("history") == true);
  CHECK(id_of(h[0]) == general[1]);
  CHECK(id_of(h[1]) == general[2]);
  struct expected {
    std::uint64_t id;
    char const* from;
    char const* text;
    json::value time;
  };
  const expected want[] = {{id_of(p1), "bob", "first", hist_bob[0].as_object().at("time")},
                           {id_of(p2), "carol", "second", hist_carol[0].as_object().at("time")},
                           {id_of(p3), "bob", "third", hist_bob[1].as_object().at("time")}};
  for (std::size_t i = 0; i < 3; ++i) {
    auto const& m = h[2 + i];
    INFO(json::serialize(m));
    CHECK(m.at("action") == "msg");
    CHECK(id_of(m) == want[i].id);
    CHECK(m.at("from") == want[i].from);
    CHECK(m.at("to") == "alice");
    CHECK(m.at("message") == want[i].text);
    CHECK(m.at("time") == want[i].time);
    CHECK_FALSE((m.contains("history") && m.at("history") == true));
  }
  CHECK(no_push_pending(back));

  // Delivered once: the next sign-in has only the history.
  quit(back);
  client later(d.port());
  REQUIRE(code_of(ask(later, authenticate_req("alice", "pw"))) == 200);
  drain_history(later, 2);
  CHECK(no_push_pending(later));
}

// ---------------------------------------------------------------------------------------------
// Frames before sign-in: tags and malformed requests
// ---------------------------------------------------------------------------------------------

TEST_CASE("A string or integer tag is echoed unchanged in the reply, whatever the code",
          "[integration][signin]") {
  jimd_process d;
  sign_up(d.port(), "alice", "pw");
  client c(d.port());
  const std::string long_tag(64, 't');
  struct probe {
    std::string req;
    int code;
  };
  const probe steps[] = {
      {R"({"action":"users","tag":"u-1"})", 401},
      {R"({"action":"nope","tag":12})", 400},
      {R"({"action":"authenticate","user":{"account_name":"ghost","password":"pw"},"tag":"x y"})",
       404},
      {R"({"action":"presence","user":{"account_name":"alice"},"tag":-5})", 100},
      {R"({"action":"authenticate","user":{"password":"pw"},"tag":")" + long_tag + R"("})", 200},
      {R"({"action":"msg","message":"hi","tag":9007199254740993})", 200},
      {R"({"action":"msg","message":"","tag":"empty"})", 400},
      {R"({"action":"join","room":"nope","tag":0})", 404},
      {R"({"action":"create","room":"den","tag":"c"})", 201},
      {R"({"action":"quit","tag":"\u00e9\"q"})", 200},
  };
  for (auto const& s : steps) {
    INFO(s.req);
    auto sent = json::parse(s.req).as_object();
    auto r = c.request(s.req);
    CHECK(code_of(r) == s.code);
    REQUIRE(r.contains("tag"));
    CHECK(r.at("tag") == sent.at("tag"));
    CHECK(r.at("tag").kind() == sent.at("tag").kind());
  }
}

TEST_CASE("A reply to a request without tag has no tag", "[integration][signin]") {
  jimd_process d;
  client c(d.port());
  CHECK_FALSE(c.request(R"({"action":"users"})").contains("tag"));
  CHECK_FALSE(c.request(R"({"action":"nope"})").contains("tag"));
  CHECK_FALSE(ask(c, register_req("alice")).contains("tag"));
}

TEST_CASE("A tag that is neither an integer nor a string of at most 64 characters gets 400",
          "[integration][signin]") {
  jimd_process d;
  client c(d.port());
  for (std::string const& tag :
       {"\"" + std::string(65, 't') + "\"", std::string("1.5"), std::string("true"),
        std::string("[1]"), std::string("{\"a\":1}")}) {
    INFO(tag);
    auto r =
        c.request(R"({"action":"register","user":{"account_name":"alice","password":"pw"},"tag":)" +
                  tag + "}");
    CHECK(code_of(r) == 400);
  }
  // None of them registered anything.
  CHECK(ask(c, presence_req("alice")).at("auth") == "register");
}

TEST_CASE(
    "Malformed frames and unknown actions get 400 before sign-in, and the connection stays open",
    "[integration][signin]") {
  jimd_process d;
  client c(d.port());
  for (std::string const& line : {
           std::string(R"({"action":"presence",)"),           // invalid JSON
           std::string("[1,2,3]"),                            // not an object
           std::string("\"presence\""),                       // not an object
           std::string("42"),                                 // not an object
           std::string(R"({"user":{"account_name":"a"}})"),   // no action
           std::string(R"({"action":7})"),                    // ill-typed action
           std::string(R"({"action":"fly"})"),                // unknown action
           std::string(R"({"action":"MSG","message":"x"})"),  // actions are case-sensitive
           std::string(R"({"action":"msg"})"),  // known action needing sign-in, but malformed
           std::string(R"({"action":"msg","message":7})"),   // ill-typed
           std::string(R"({"action":"msg","message":""})"),  // invalid value
           std::string(R"({"action":"join","room":"no spaces"})"),
           std::string(R"({"action":"create","room":""})"),
           std::string(R"({"action":"invite","room":"r"})"),
           std::string(R"({"action":"history","limit":0})"),
           std::string(R"({"action":"history","limit":"5"})"),
           std::string(R"({"action":"users","room":5})"),
           std::string(R"({"action":"authenticate"})"),
           std::string(R"({"action":"authenticate","user":"alice"})"),
           std::string(R"({"action":"authenticate","user":{"account_name":"alice"}})"),
           std::string(R"({"action":"register","user":{"password":"pw"}})"),
           std::string(R"({"action":"presence","user":{"account_name":"alice","status":5}})"),
           std::string(R"({"action":"presence","time":"now","user":{"account_name":"alice"}})"),
       }) {
    INFO(line);
    c.send_raw(line + "\n");
    auto r = c.reply();
    CHECK(code_of(r) == 400);
    CHECK(r.at("error").is_string());
    CHECK_FALSE(r.at("error").as_string().empty());
  }
  CHECK(code_of(ask(c, register_req("alice"))) == 201);
}

TEST_CASE("Frames sent after a wrong password or after quit get no reply: the connection is closed",
          "[integration][signin]") {
  jimd_process d;
  sign_up(d.port(), "alice", "pw");
  client c(d.port());
  std::string batch;
  SECTION("wrong password, one-shot") {
    batch = json::serialize(authenticate_req("alice", "bad")) + "\n";
  }
  SECTION("quit before sign-in") {
    batch = "{\"action\":\"quit\"}\n";
  }
  SECTION("quit after sign-in") {
    REQUIRE(code_of(ask(c, authenticate_req("alice", "pw"))) == 200);
    batch = "{\"action\":\"quit\"}\n";
  }
  batch += R"({"action":"register","user":{"account_name":"after","password":"pw"},"tag":"late"})"
           "\n";
  batch += R"({"action":"users","tag":"late"})"
           "\n";
  c.send_raw(batch);
  auto r = c.reply();
  CHECK((code_of(r) == 402 || code_of(r) == 200));
  CHECK_FALSE(r.contains("tag"));
  CHECK(c.closed_within(5s));
  // Nothing after it was answered: closed_within kept whatever came before the EOF, and
  // push() hands back anything kept before it reports the closed connection.
  CHECK_THROWS(c.push(0ms));
  client probe(d.port());
  CHECK(ask(probe, presence_req("after")).at("auth") == "register");
}

TEST_CASE("Passwords appear in clear text nowhere in the data directory or the logs",
          "[integration][signin]") {
  const std::string user_pw = "Zebra-Pass-8361-user";
  const std::string guided_pw = "Okapi-Pass-5527-guided";
  const std::string wrong_pw = "Gecko-Pass-9104-wrong";
  std::string room_pw;
  jimd_process d({"--log-level", "trace"});
  {
    client alice = sign_up(d.port(), "alice", user_pw);
    room_pw = create_room(alice, "den");
    client g(d.port());
    REQUIRE(ask(g, presence_req("guided")).at("auth") == "register");
    REQUIRE(code_of(ask(g, json::object{{"action", "authenticate"},
                                        {"user", {{"password", guided_pw}}}})) == 100);
    REQUIRE(code_of(ask(g, json::object{{"action", "authenticate"},
                                        {"user", {{"password", guided_pw}}}})) == 201);
    REQUIRE(code_of(join(g, "den", room_pw)) == 200);
    client w(d.port());
    REQUIRE(code_of(ask(w, authenticate_req("guided", wrong_pw))) == 402);
    client again = sign_in(d.port(), "alice", user_pw);
  }
  REQUIRE(d.stop(15 /*SIGTERM*/) == 0);  // saves everything and flushes the logs
  namespace fs = std::filesystem;
  std::size_t files = 0;
  for (auto const& e : fs::recursive_directory_iterator(d.data_dir())) {
    if (!e.is_regular_file()) continue;
    ++files;
    const std::string content = read_bytes(e.path());
    INFO(e.path().string());
    for (auto const* pw : {&user_pw, &guided_pw, &wrong_pw})
      CHECK(content.find(*pw) == std::string::npos);
    // The room password is handed to its creator and only its hash is stored (logs aside).
    const auto rel = fs::relative(e.path(), d.data_dir()).string();
    if (rel.rfind("logs", 0) != 0 && rel != "daemon-output.txt")
      CHECK(content.find(room_pw) == std::string::npos);
  }
  CHECK(files > 0);
}

TEST_CASE("Password hashing does not block the I/O thread: others are answered meanwhile",
          "[integration][signin]") {
  // About half a second of PBKDF2 per hash here: ample for a few loopback round trips.
  jimd_process d({"--kdf-iterations", "1000000"});
  client slow(d.port());
  client other(d.port());
  REQUIRE(code_of(other.request(R"({"action":"rooms"})")) == 401);  // connected and served
  slow.send(register_req("alice", "pw"));
  for (int i = 0; i < 2; ++i) {
    CHECK(code_of(other.request(R"({"action":"rooms"})")) == 401);
    CHECK(code_of(ask(other, presence_req("bob"))) == 100);
  }
  // Had the hashing blocked the I/O thread, those replies would have come after the 201.
  CHECK(slow.silent_for(0ms));
  CHECK(code_of(slow.reply(30s)) == 201);
}

TEST_CASE("A tag of 64 non-ASCII characters is echoed unchanged (the limit counts characters)",
          "[integration][signin]") {
  jimd_process d;
  client c(d.port());
  std::string tag;
  for (int i = 0; i < 64; ++i) tag += "\xc3\xa9";  // 64 characters, 128 bytes of UTF-8
  auto r = ask(c, json::object{{"action", "users"}, {"tag", tag}});
  CHECK(code_of(r) == 401);
  CHECK(str(r, "tag") == tag);
  // 65 characters are too many.
  CHECK(code_of(ask(c, json::object{{"action", "users"}, {"tag", tag + "\xc3\xa9"}})) == 400);
}

TEST_CASE("By default the last 20 #general messages are pushed after sign-in",
          "[integration][signin]") {
  jimd_process d({"--rate-limit", "0"});
  client bob = sign_up(d.port(), "bob");
  auto ids = post_many(bob, 25);
  client alice = sign_up(d.port(), "alice");
  auto h = pushes(alice, 20);
  CHECK(id_of(h.front()) == ids[5]);
  CHECK(id_of(h.back()) == ids[24]);
  CHECK(no_push_pending(alice));
}

TEST_CASE("Unknown fields in a request, also inside user, are ignored", "[integration][signin]") {
  jimd_process d;
  client c(d.port());
  auto r = c.request(
      R"({"action":"register","colour":"blue","user":{"account_name":"alice","password":"pw","age":3,"x":{}}})");
  CHECK(code_of(r) == 201);
  client g(d.port());
  r = g.request(
      R"({"action":"presence","v":2,"user":{"account_name":"alice","status":"here","mood":"ok"}})");
  CHECK(r.at("auth") == "login");
  r = g.request(
      R"({"action":"authenticate","user":{"password":"pw","remember":true},"extra":[1,2]})");
  CHECK(code_of(r) == 200);
}

TEST_CASE("A takeover closes an old connection that does not read before the new one gets its 200",
          "[integration][signin]") {
  // The old connection reads nothing while megabytes of pushes pile up for it: the server cannot
  // deliver the notice (the contract cannot ask that of a peer that never reads), and must still
  // close it, within a bounded wait, before answering the new sign-in.
  jimd_process d({"--rate-limit", "0", "--max-outbound", "268435456", "--history-on-join", "0",
                 "--max-sessions", "1"});
  auto [old, bob] = sign_up_all(d.port(), "alice", "bob");
  const std::string text(4000, 'x');
  const std::string line =
      json::serialize(json::object{{"action", "msg"}, {"message", text}}) + "\n";
  for (int batch = 0; batch < 8; ++batch) {  // 16 MB, far beyond the kernel's socket buffers
    std::string frames;
    for (int i = 0; i < 500; ++i) frames += line;
    bob.send_raw(frames);
    int ok = 0;
    for (int i = 0; i < 500; ++i) ok += code_of(bob.reply()) == 200 ? 1 : 0;
    REQUIRE(ok == 500);
  }
  client fresh(d.port());
  fresh.send(authenticate_req("alice"));
  auto r = fresh.reply(20s);
  CHECK(code_of(r) == 200);
  // Reading drains what the kernel still holds for it (on loopback each read pulls the rest in
  // at once); the end of the connection must follow, without waiting for the server.
  CHECK(old.closed_within(0ms));
}
