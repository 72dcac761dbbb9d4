#include "hub.hpp"

#include <boost/json/parse.hpp>

#include <catch2/catch.hpp>
#include <spdlog/spdlog.h>

using namespace jim::server;
using jim::proto::code;
namespace json = boost::json;

namespace {

// Keep the test output readable: the hub logs every sign-in at info level.
const int quiet_logs = (spdlog::set_level(spdlog::level::warn), 0);

/// A connection without a socket: records what the hub pushes to it.
struct fake_peer final : peer {
  std::vector<json::object> frames;
  std::vector<std::string> notices;
  bool accept = true;
  bool push(shared_frame const& f) override {
    if (!accept) return false;
    frames.push_back(json::parse(*f).as_object());
    return true;
  }
  void replaced(shared_frame const& notice) override { notices.push_back(*notice); }
};

struct fixture {
  hub h{hub_limits{3, 5, std::chrono::seconds(0), 0, 20, 2}};
  steady::time_point now = steady::now();

  account& user(std::string const& name) {
    account* a = h.register_account(name, "hash-of-" + name);
    REQUIRE(a);
    return *a;
  }
  outcome say(account& a, std::string text, std::optional<jim::proto::target> to = std::nullopt) {
    return h.post(a, jim::proto::msg_req{std::move(text), std::move(to)}, now);
  }
};

}  // namespace

TEST_CASE_METHOD(fixture, "A room message reaches everyone in the room but the sender", "[hub]") {
  auto& alice = user("alice");
  auto& bob = user("Bob");
  fake_peer pa, pb;
  h.sign_in(pa, alice, code::ok);
  h.sign_in(pb, bob, code::ok);
  auto o = say(alice, "hello");
  CHECK(o.status == code::ok);
  CHECK(o.fields.at("delivered") == 1);
  CHECK(o.fields.at("id") == 1);
  REQUIRE(pb.frames.size() == 1);
  CHECK(pb.frames[0].at("from") == "alice");
  CHECK(pb.frames[0].at("to") == "#general");
  CHECK(pa.frames.empty());
}

TEST_CASE_METHOD(fixture, "Names are unique and looked up case-insensitively", "[hub]") {
  user("Alice");
  CHECK(h.register_account("alice", "x") == nullptr);
  REQUIRE(h.find_account("ALICE"));
  CHECK(h.find_account("ALICE")->name == "Alice");
}

TEST_CASE_METHOD(fixture, "Private messages to offline users are queued and delivered at sign-in",
                 "[hub]") {
  auto& alice = user("alice");
  auto& bob = user("bob");
  fake_peer pa, pb;
  h.sign_in(pa, alice, code::ok);
  auto o = say(alice, "psst", jim::proto::target{"BOB", false});
  CHECK(o.status == code::accepted);
  CHECK(o.fields.at("delivered") == 0);
  auto res = h.sign_in(pb, bob, code::ok);
  REQUIRE(res.reply.then.size() == 1);
  auto pushed = json::parse(*res.reply.then[0]).as_object();
  CHECK(pushed.at("message") == "psst");
  CHECK(pushed.at("to") == "bob");
  CHECK(pushed.at("id") == o.fields.at("id"));
  CHECK(bob.queued.empty());
}

TEST_CASE_METHOD(fixture, "The offline queue is bounded", "[hub]") {
  auto& alice = user("alice");
  user("bob");
  fake_peer pa;
  h.sign_in(pa, alice, code::ok);
  CHECK(say(alice, "1", jim::proto::target{"bob", false}).status == code::accepted);
  CHECK(say(alice, "2", jim::proto::target{"bob", false}).status == code::accepted);
  CHECK(say(alice, "3", jim::proto::target{"bob", false}).status == code::unavailable);
}

TEST_CASE_METHOD(fixture,
                 "Missed counts #general messages posted while away, past the history limit",
                 "[hub]") {
  auto& alice = user("alice");
  auto& bob = user("bob");
  fake_peer pa, pb;
  h.sign_in(pb, bob, code::ok);
  h.sign_out(pb, bob);
  h.sign_in(pa, alice, code::ok);
  for (int i = 0; i < 7; ++i) say(alice, "m" + std::to_string(i));
  auto res = h.sign_in(pb, bob, code::ok);
  CHECK(res.reply.fields.at("missed") == 7);
  CHECK(res.reply.then.size() == 3);  // history-on-join
  auto first = json::parse(*res.reply.then[0]).as_object();
  CHECK(first.at("message") == "m4");
  CHECK(first.at("history") == true);
}

TEST_CASE("With max_sessions 1 a second sign-in replaces the first connection", "[hub]") {
  hub h{hub_limits{3, 5, std::chrono::seconds(0), 0, 20, 2, 1}};
  auto& alice = *h.register_account("alice", "hash");
  fake_peer first, second;
  h.sign_in(first, alice, code::ok);
  auto res = h.sign_in(second, alice, code::ok);
  CHECK(res.replaced == &first);
  CHECK(first.notices.size() == 1);
  REQUIRE(alice.devices.size() == 1);
  CHECK(alice.devices[0]->p == &second);
  CHECK(h.online_count() == 1);
  h.sign_out(first, alice);  // the old connection ending later changes nothing
  REQUIRE(alice.devices.size() == 1);
  CHECK(alice.devices[0]->p == &second);
}

TEST_CASE("Devices: up to max_sessions connections, the oldest taken over beyond", "[hub]") {
  hub h{hub_limits{3, 5, std::chrono::seconds(0), 0, 20, 2, 2}};
  auto& alice = *h.register_account("alice", "hash");
  fake_peer first, second, third;
  CHECK(h.sign_in(first, alice, code::ok).replaced == nullptr);
  CHECK(h.sign_in(second, alice, code::ok).replaced == nullptr);
  CHECK(h.online_count() == 1);  // accounts
  CHECK(h.general().present.size() == 2);  // connections
  CHECK(h.sign_in(third, alice, code::ok).replaced == &first);
  CHECK(first.notices.size() == 1);
  REQUIRE(alice.devices.size() == 2);
  CHECK(alice.devices[0]->p == &second);
  CHECK(alice.devices[1]->p == &third);
  h.sign_out(second, alice);
  h.sign_out(third, alice);
  CHECK(h.online_count() == 0);
  CHECK(h.general().present.empty());
}

TEST_CASE_METHOD(fixture, "Rooms: owner, members, passwords, events", "[hub]") {
  auto& alice = user("alice");
  auto& bob = user("bob");
  auto& carol = user("carol");
  fake_peer pa, pb, pc;
  h.sign_in(pa, alice, code::ok);
  h.sign_in(pb, bob, code::ok);
  h.sign_in(pc, carol, code::ok);
  CHECK(h.create_room(alice, "Dev", "hash", "pw").status == code::created);
  CHECK(h.create_room(bob, "dev", "hash", "pw").status == code::conflict);
  CHECK(alice.devices.back()->current->name == "#Dev");

  CHECK(h.join(bob, "dev", false).status == code::forbidden);
  CHECK(h.join(bob, "nope", true).status == code::not_found);
  CHECK(h.join(bob, "#DEV", true).status == code::ok);
  REQUIRE(pa.frames.size() == 1);
  CHECK(pa.frames[0].at("event") == "join");
  CHECK(pa.frames[0].at("user") == "bob");

  CHECK(h.invite(bob, jim::proto::invite_req{std::string("dev"), "carol"}).status ==
        code::forbidden);
  CHECK(h.invite(alice, jim::proto::invite_req{std::nullopt, "carol"}).status == code::ok);
  CHECK(pc.frames.back().at("action") == "invite");
  CHECK(h.join(carol, "dev", false).status == code::ok);  // invited: a member

  h.leave(*bob.devices.back());
  CHECK(pa.frames.back().at("event") == "leave");
  CHECK(bob.devices.back()->current == &h.general());
  CHECK(h.join(bob, "dev", false).status == code::ok);  // once joined: a member
}

TEST_CASE_METHOD(fixture, "Messages go only to the current room", "[hub]") {
  auto& alice = user("alice");
  fake_peer pa;
  h.sign_in(pa, alice, code::ok);
  h.create_room(alice, "dev", "hash", "pw");
  CHECK(say(alice, "x", jim::proto::target{"general", true}).status == code::forbidden);
  CHECK(say(alice, "x", jim::proto::target{"nope", true}).status == code::not_found);
  CHECK(say(alice, "x", jim::proto::target{"dev", true}).status == code::ok);
}

TEST_CASE_METHOD(fixture, "History pages back with before and limit", "[hub]") {
  auto& alice = user("alice");
  fake_peer pa;
  h.sign_in(pa, alice, code::ok);
  for (int i = 0; i < 5; ++i) say(alice, "m" + std::to_string(i));  // ids 1..5
  jim::proto::history_req req;
  req.limit = 2;
  req.before = 4;
  auto o = h.history(*alice.devices.back(), req);
  auto const& msgs = o.fields.at("messages").as_array();
  REQUIRE(msgs.size() == 2);
  CHECK(msgs[0].at("id") == 2);
  CHECK(msgs[1].at("id") == 3);
}

TEST_CASE("The rate limit refuses without spending tokens on refused messages", "[hub]") {
  hub h{hub_limits{3, 5, std::chrono::seconds(0), 1, 2, 10}};
  account* a = h.register_account("alice", "x");
  fake_peer p;
  h.sign_in(p, *a, code::ok);
  const auto t = steady::now();
  a->refilled = t;
  a->tokens = 2;
  auto say = [&](std::optional<jim::proto::target> to) {
    return h.post(*a, jim::proto::msg_req{"x", std::move(to)}, t);
  };
  CHECK(say(jim::proto::target{"nobody", false}).status == code::not_found);
  CHECK(say(std::nullopt).status == code::ok);
  CHECK(say(std::nullopt).status == code::ok);
  auto limited = say(std::nullopt);
  CHECK(limited.status == code::rate_limited);
  CHECK(limited.fields.at("retry_after").as_double() > 0);
  CHECK(h.post(*a, jim::proto::msg_req{"x", std::nullopt}, t + std::chrono::seconds(1)).status ==
        code::ok);
}

TEST_CASE("Expired messages are pruned", "[hub]") {
  hub h{hub_limits{3, 100, std::chrono::seconds(60), 0, 20, 10}};
  account* a = h.register_account("alice", "x");
  fake_peer p;
  h.sign_in(p, *a, code::ok);
  h.post(*a, jim::proto::msg_req{"old", std::nullopt}, steady::now());
  const auto now = jim::proto::unix_now();
  CHECK(h.prune(now) == 0);
  CHECK(h.prune(now + 61) == 1);
  CHECK(h.general().history.empty());
  CHECK(h.general().posted == 1);
}

TEST_CASE_METHOD(fixture, "The sign-in reply names the account as registered", "[hub]") {
  auto& alice = user("Alice");
  fake_peer p;
  auto res = h.sign_in(p, alice, code::ok);
  CHECK(res.reply.fields.at("account_name") == "Alice");
  CHECK(res.reply.fields.at("room") == "#general");
}

namespace {
/// The texts of the `"history":true` pushes that follow a sign-in reply.
std::vector<std::string> history_texts(hub::sign_in_result const& res) {
  std::vector<std::string> out;
  for (auto const& f : res.reply.then) {
    auto o = json::parse(*f).as_object();
    CHECK(o.at("history") == true);
    out.emplace_back(o.at("message").as_string());
  }
  return out;
}
}  // namespace

TEST_CASE("Sign-in history follows every post, between sign-ins, past history-limit and pruning",
          "[hub]") {
  using texts = std::vector<std::string>;
  SECTION("history-on-join 3, history-limit 5") {
    hub h{hub_limits{3, 5, std::chrono::seconds(0), 0, 20, 2}};
    account* a = h.register_account("alice", "x");
    fake_peer pa;
    h.sign_in(pa, *a, code::ok);
    auto post = [&](char const* text) {
      h.post(*a, jim::proto::msg_req{text, std::nullopt}, steady::now());
    };
    auto fresh = [&](std::string const& name) {
      fake_peer p;
      auto res = h.sign_in(p, *h.register_account(name, "x"), code::ok);
      h.sign_out(p, *h.find_account(name));
      return history_texts(res);
    };
    CHECK(fresh("empty").empty());
    post("1");
    post("2");
    CHECK(fresh("b") == texts{"1", "2"});
    post("3");
    post("4");
    post("5");
    CHECK(fresh("c") == texts{"3", "4", "5"});
    post("6");
    CHECK(fresh("d") == texts{"4", "5", "6"});
    CHECK(fresh("e") == texts{"4", "5", "6"});
  }
  SECTION("history-limit below history-on-join") {
    hub h{hub_limits{3, 2, std::chrono::seconds(0), 0, 20, 2}};
    account* a = h.register_account("alice", "x");
    fake_peer pa;
    h.sign_in(pa, *a, code::ok);
    for (char const* t : {"1", "2", "3", "4"})
      h.post(*a, jim::proto::msg_req{t, std::nullopt}, steady::now());
    fake_peer pb, pc;
    CHECK(history_texts(h.sign_in(pb, *h.register_account("b", "x"), code::ok)) == texts{"3", "4"});
    h.post(*a, jim::proto::msg_req{"5", std::nullopt}, steady::now());
    CHECK(history_texts(h.sign_in(pc, *h.register_account("c", "x"), code::ok)) == texts{"4", "5"});
  }
  SECTION("after pruning") {
    hub h{hub_limits{3, 100, std::chrono::seconds(60), 0, 20, 10}};
    account* a = h.register_account("alice", "x");
    fake_peer pa, pb, pc;
    h.sign_in(pa, *a, code::ok);
    h.post(*a, jim::proto::msg_req{"old", std::nullopt}, steady::now());
    CHECK(history_texts(h.sign_in(pb, *h.register_account("b", "x"), code::ok)) == texts{"old"});
    REQUIRE(h.prune(jim::proto::unix_now() + 61) == 1);
    h.post(*a, jim::proto::msg_req{"new", std::nullopt}, steady::now());
    CHECK(history_texts(h.sign_in(pc, *h.register_account("c", "x"), code::ok)) == texts{"new"});
  }
}
