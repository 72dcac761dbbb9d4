// Integration tests of message edit and delete (contract: "Edits, schedules, moderation,
// contacts") against the real jimd on 127.0.0.1: the replies and refusals, the `event` pushes
// to everyone who may read the message, `history` after an edit and a delete, and after a
// restart.

#include "chat_helpers.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <string>
#include <vector>

using namespace jim::test;

namespace {

json::object edit(client& c, std::uint64_t id, std::string const& text) {
  return ask(c, json::object{{"action", "edit"}, {"id", id}, {"message", text}});
}

json::object del(client& c, std::uint64_t id) {
  return ask(c, json::object{{"action", "delete"}, {"id", id}});
}

/// The message `id` in a `history` reply.
json::object in_history(json::object const& reply, std::uint64_t id) {
  for (auto const& m : reply.at("messages").as_array())
    if (id_of(m.as_object()) == id) return m.as_object();
  throw std::runtime_error("no message " + std::to_string(id) + " in " + json::serialize(reply));
}

}  // namespace

TEST_CASE("edit and delete of a room message are pushed to the room and shown by history",
          "[edits]") {
  jimd_process d(quiet_args());
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  auto id = id_of(say(alice, "helo"));
  auto pushed = bob.push();
  CHECK(id_of(pushed) == id);

  auto r = edit(alice, id, "hello");
  REQUIRE(code_of(r) == 200);
  auto ev = bob.push();
  CHECK(str(ev, "action") == "event");
  CHECK(str(ev, "event") == "edit");
  CHECK(id_of(ev) == id);
  CHECK(str(ev, "message") == "hello");
  CHECK(ev.at("edited").to_number<std::int64_t>() > 0);
  CHECK(no_push_pending(alice));  // the acting connection gets only the reply

  auto h = in_history(bob.request(R"({"action":"history"})"), id);
  CHECK(str(h, "message") == "hello");
  CHECK(h.contains("edited"));

  REQUIRE(code_of(del(alice, id)) == 200);
  ev = bob.push();
  CHECK(str(ev, "event") == "delete");
  CHECK(id_of(ev) == id);
  h = in_history(bob.request(R"({"action":"history"})"), id);
  CHECK(h.at("deleted") == true);
  CHECK_FALSE(h.contains("message"));
}

TEST_CASE("edit and delete refusals: not the author, unknown id, deleted, too long", "[edits]") {
  jimd_process d(quiet_args({"--max-message", "16"}));
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  auto id = id_of(say(alice, "mine"));
  CHECK(code_of(edit(bob, id, "yours")) == 403);
  CHECK(code_of(del(bob, id)) == 403);
  CHECK(code_of(edit(alice, 999, "x")) == 404);
  CHECK(code_of(del(alice, 999)) == 404);
  CHECK(code_of(edit(alice, id, std::string(17, 'x'))) == 413);
  CHECK(code_of(ask(alice, json::object{{"action", "edit"}, {"id", 0}, {"message", "x"}})) == 400);
  CHECK(code_of(ask(alice, json::object{{"action", "edit"}, {"id", id}, {"message", ""}})) == 400);
  CHECK(code_of(ask(alice, json::object{{"action", "delete"}})) == 400);
  REQUIRE(code_of(del(alice, id)) == 200);
  CHECK(code_of(edit(alice, id, "again")) == 404);
  CHECK(code_of(del(alice, id)) == 404);
}

TEST_CASE("a room owner deletes any message of the room, an admin any message", "[edits]") {
  jimd_process d(quiet_args({"--admin", "root"}));
  auto [alice, bob, root] = sign_up_all(d.port(), "alice", "bob", "root");
  create_room(alice, "den");
  REQUIRE(code_of(ask(
              alice, json::object{{"action", "invite"}, {"room", "den"}, {"user", "bob"}})) == 200);
  bob.push();  // the invitation
  REQUIRE(code_of(join(bob, "den")) == 200);
  alice.push();  // bob joined
  auto id = id_of(say(bob, "spam"));
  alice.push();
  CHECK(code_of(edit(alice, id, "not mine")) == 403);  // owners delete, they do not edit
  REQUIRE(code_of(del(alice, id)) == 200);
  auto ev = bob.push();
  CHECK(str(ev, "event") == "delete");

  // A private message: bob deletes neither alice's nor... root (admin) deletes it.
  auto pid = id_of(say(alice, "psst", "bob"));
  CHECK(id_of(bob.push()) == pid);
  CHECK(code_of(del(bob, pid)) == 403);
  REQUIRE(code_of(del(root, pid)) == 200);
  CHECK(str(alice.push(), "event") == "delete");  // both parties
  CHECK(str(bob.push(), "event") == "delete");
  auto h = in_history(ask(alice, json::object{{"action", "history"}, {"with", "bob"}}), pid);
  CHECK(h.at("deleted") == true);
}

TEST_CASE("edit of a private message reaches both parties and the author's other connection",
          "[edits]") {
  jimd_process d(quiet_args());
  auto [alice, bob, carol] = sign_up_all(d.port(), "alice", "bob", "carol");
  auto id = id_of(say(alice, "hi bob", "bob"));
  bob.push();
  REQUIRE(code_of(edit(alice, id, "hi Bob")) == 200);
  auto ev = bob.push();
  CHECK(str(ev, "event") == "edit");
  CHECK(str(ev, "message") == "hi Bob");
  CHECK(no_push_pending(carol));  // not a party
  CHECK(no_push_pending(alice));
}

TEST_CASE("history keeps edits and deletions across a restart", "[edits]") {
  temp_dir dir;
  std::uint64_t kept = 0, gone = 0;
  {
    jimd_process d(quiet_args(), dir.path());
    auto alice = sign_up(d.port(), "alice");
    kept = id_of(say(alice, "frist"));
    gone = id_of(say(alice, "oops"));
    REQUIRE(code_of(edit(alice, kept, "first")) == 200);
    REQUIRE(code_of(del(alice, gone)) == 200);
    REQUIRE(d.stop() == 0);
  }
  for (int round = 0; round < 2; ++round) {  // from the snapshot, then again after a save
    jimd_process d(quiet_args(), dir.path());
    auto alice = sign_in(d.port(), "alice");
    auto h = alice.request(R"({"action":"history"})");
    auto m = in_history(h, kept);
    CHECK(str(m, "message") == "first");
    CHECK(m.contains("edited"));
    auto g = in_history(h, gone);
    CHECK(g.at("deleted") == true);
    CHECK_FALSE(g.contains("message"));
    REQUIRE(d.stop() == 0);
  }
}

TEST_CASE("edits replay from the journal after a crash", "[edits]") {
  temp_dir dir;
  std::uint64_t id = 0;
  {
    jimd_process d(quiet_args(), dir.path());
    auto alice = sign_up(d.port(), "alice");
    id = id_of(say(alice, "draft"));
    REQUIRE(code_of(edit(alice, id, "final")) == 200);
    d.stop(9);  // SIGKILL: only the journal has it
  }
  jimd_process d(quiet_args(), dir.path());
  auto alice = sign_in(d.port(), "alice");
  CHECK(str(in_history(alice.request(R"({"action":"history"})"), id), "message") == "final");
}

TEST_CASE("messages deleted while the reader was offline are not unread nor missed",
          "[edits]") {
  jimd_process d(quiet_args());
  auto alice = sign_up(d.port(), "alice");
  {
    auto gone = sign_up(d.port(), "bob");
    quit(gone);  // offline from here
  }
  REQUIRE(code_of(say(alice, "kept")) == 200);
  REQUIRE(code_of(del(alice, id_of(say(alice, "gone")))) == 200);
  REQUIRE(code_of(say(alice, "kept too", "bob")) == 202);
  REQUIRE(code_of(del(alice, id_of(say(alice, "gone too", "bob")))) == 200);
  client bob(d.port());
  auto r = ask(bob, authenticate_req("bob"));
  REQUIRE(code_of(r) == 200);
  CHECK(r.at("missed").to_number<int>() == 1);
  auto queued = bob.push();  // the private message kept (the deleted one never comes)
  CHECK(str(queued, "message") == "kept too");
  CHECK(no_push_pending(bob));
  CHECK(room_entry(bob.request(R"({"action":"rooms"})"), "#general").at("unread") == 1);
  auto conv = bob.request(R"({"action":"conversations"})").at("conversations").as_array();
  REQUIRE(conv.size() == 1);
  CHECK(conv[0].as_object().at("unread") == 1);
}

TEST_CASE("an id beyond int64 is a 400 naming the field, not another id's 404", "[edits]") {
  jimd_process d(quiet_args());
  auto alice = sign_up(d.port(), "alice");
  for (char const* id : {"9223372036854775808", "18446744073709551615", "1e300"}) {
    for (char const* action : {"edit", "delete"}) {
      auto r = alice.request(std::string(R"({"action":")") + action + R"(","id":)" + id +
                             R"(,"message":"x"})");
      CHECK(code_of(r) == 400);
      CHECK(str(r, "error").find("\"id\" is out of range") != std::string::npos);
    }
  }
  auto r = alice.request(R"({"action":"cancel","scheduled":1e300})");
  CHECK(code_of(r) == 400);
  // The largest int64 is an id like any other: not kept here, 404 naming it.
  r = alice.request(R"({"action":"edit","id":9223372036854775807,"message":"x"})");
  CHECK(code_of(r) == 404);
  CHECK(str(r, "error").find("9223372036854775807") != std::string::npos);
}
