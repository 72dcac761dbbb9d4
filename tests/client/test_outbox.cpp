// The client shows only what the server confirmed: one's own messages appear on their 200/202,
// refusals name the text, a 429 is sent again in order after retry_after, long texts go as
// several messages.
#include "client_test_support.hpp"
#include "commands.hpp"

#include <boost/json/parse.hpp>
#include <catch2/catch.hpp>

#include <clocale>
#include <cstdlib>
#include <ctime>

using namespace jim::client;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

using jim::client::test::noon;
using jim::client::test::obj;
using jim::client::test::texts;

const chat_state::clock::time_point t0{std::chrono::hours(1000)};

struct utc {
  utc() {
    setenv("TZ", "UTC", 1);
    tzset();
    std::setlocale(LC_CTYPE, "C.UTF-8");
  }
};

/// A chat_state for a terminal, signed in as alice in #general.
chat_state terminal(std::size_t max_message = 4096) {
  chat_settings cfg;
  cfg.show_own = true;
  cfg.max_message = max_message;
  chat_state s("alice", cfg);
  s.sent(obj(R"({"action":"authenticate","user":{"password":"pw"}})"));
  s.received(obj(R"({"response":200,"time":1,"room":"#general","missed":0,"account_name":"alice"})"), noon, t0);
  return s;
}

json::object msg(std::string_view text) { return json::object{{"action", "msg"}, {"message", text}}; }

json::object ok(std::int64_t id) {
  json::object r{{"response", 200}, {"id", id}, {"delivered", 1}};
  r["time"] = noon;
  return r;
}

}  // namespace

TEST_CASE("One's own message is shown when the server accepts it, not before", "[client][outbox]") {
  utc tz;
  auto s = terminal();
  s.submit(msg("hi all"));
  auto out = s.take_sendable(t0);
  REQUIRE(out.size() == 1);
  CHECK(out[0] == msg("hi all"));
  CHECK(texts(s.received(ok(7), noon, t0)) == std::vector<std::string>{"alice (12:00): hi all"});
}

TEST_CASE("A refused message is not shown as sent: the error names it", "[client][outbox]") {
  utc tz;
  auto s = terminal();
  s.submit(json::object{{"action", "msg"}, {"to", "nobody"}, {"message", "hi"}});
  REQUIRE(s.take_sendable(t0).size() == 1);
  auto r = s.received(obj(R"({"response":404,"time":1,"error":"no such account nobody"})"), noon, t0);
  CHECK(r.lines == std::vector<out_line>{{tone::error, "! not sent to nobody: hi (no such account nobody)"}});
  CHECK(s.failures() == 1);

  s.submit(msg("too long"));
  REQUIRE(s.take_sendable(t0).size() == 1);
  r = s.received(obj(R"({"response":400,"time":1,"error":"the message is empty"})"), noon, t0);
  CHECK(texts(r) == std::vector<std::string>{"! not sent: too long (the message is empty)"});
}

TEST_CASE("A private message to oneself is shown once", "[client][outbox]") {
  utc tz;
  auto s = terminal();
  s.submit(json::object{{"action", "msg"}, {"to", "ALICE"}, {"message", "note"}});
  REQUIRE(s.take_sendable(t0).size() == 1);
  CHECK(texts(s.received(ok(9), noon, t0)) == std::vector<std::string>{"[private] alice -> alice (12:00): note"});
  auto push = obj(R"({"action":"msg","id":9,"from":"alice","to":"alice","message":"note"})");
  push["time"] = noon;
  CHECK(s.received(push, noon, t0).lines.empty());
  // Another message with the same text is another message.
  push["id"] = 10;
  CHECK(s.received(push, noon, t0).lines.size() == 1);
}

TEST_CASE("Names are shown as registered once they are known", "[client][outbox]") {
  utc tz;
  auto s = terminal();
  auto push = obj(R"({"action":"msg","id":3,"from":"Bob","to":"#general","message":"hey"})");
  push["time"] = noon;
  s.received(push, noon, t0);
  s.submit(json::object{{"action", "msg"}, {"to", "BOB"}, {"message", "hi"}});
  REQUIRE(s.take_sendable(t0).size() == 1);
  CHECK(texts(s.received(ok(4), noon, t0)) == std::vector<std::string>{"[private] alice -> Bob (12:00): hi"});
  CHECK(s.known_names() == std::vector<std::string>{"Bob", "alice"});
}

TEST_CASE("Nothing is sent while a message waits for its reply", "[client][outbox]") {
  utc tz;
  auto s = terminal();
  s.submit(msg("one"));
  s.submit(json::object{{"action", "join"}, {"room", "dev"}});
  s.submit(msg("two"));
  CHECK(s.take_sendable(t0).size() == 1);
  CHECK(s.take_sendable(t0).empty());
  s.received(ok(1), noon, t0);
  auto out = s.take_sendable(t0);  // the join and the next message go together
  REQUIRE(out.size() == 2);
  CHECK(out[0].at("action") == "join");
  CHECK(out[1] == msg("two"));
}

TEST_CASE("A message refused by the rate limit is sent again after retry_after, in order", "[client][outbox]") {
  utc tz;
  auto s = terminal();
  s.submit(msg("line 1"));
  s.submit(msg("line 2"));
  REQUIRE(s.take_sendable(t0).size() == 1);
  auto r = s.received(obj(R"({"response":429,"time":1,"error":"too many messages, slow down","retry_after":0.25})"),
                      noon, t0);
  CHECK(r.lines.empty());
  CHECK(s.failures() == 0);
  CHECK(s.take_sendable(t0 + 100ms).empty());  // not yet, and line 2 waits behind it
  REQUIRE(s.wake_at());
  CHECK(*s.wake_at() == t0 + 250ms);
  auto again = s.take_sendable(t0 + 250ms);
  REQUIRE(again.size() == 1);
  CHECK(again[0] == msg("line 1"));
  CHECK(texts(s.received(ok(5), noon, t0)) == std::vector<std::string>{"alice (12:00): line 1"});
  auto next = s.take_sendable(t0 + 250ms);
  REQUIRE(next.size() == 1);
  CHECK(next[0] == msg("line 2"));
}

TEST_CASE("A message refused too often is reported as not sent", "[client][outbox]") {
  utc tz;
  chat_settings cfg;
  cfg.show_own = true;
  cfg.max_retries = 2;
  chat_state s("alice", cfg);
  s.submit(msg("spam"));
  auto now = t0;
  for (int i = 0; i < 2; ++i) {
    REQUIRE(s.take_sendable(now).size() == 1);
    CHECK(s.received(obj(R"({"response":429,"time":1,"error":"slow down","retry_after":1})"), noon, now).lines.size() == 1);
    now += 1s;
  }
  REQUIRE(s.take_sendable(now).size() == 1);
  CHECK(texts(s.received(obj(R"({"response":429,"time":1,"error":"slow down","retry_after":1})"), noon, now)) ==
        std::vector<std::string>{"! not sent: spam (slow down; gave up after 3 tries)"});
  CHECK(s.failures() == 1);
}

TEST_CASE("A text longer than max-message goes as several messages", "[client][outbox]") {
  utc tz;
  auto s = terminal(8);
  s.submit(msg("Привет, мир"));  // 20 bytes
  std::string sent;
  int parts = 0;
  for (int id = 1; id < 10; ++id) {
    auto out = s.take_sendable(t0);
    if (out.empty()) break;
    REQUIRE(out.size() == 1);
    const auto part = std::string(out[0].at("message").as_string());
    CHECK(part.size() <= 8);
    sent += part;
    ++parts;
    CHECK(s.received(ok(id), noon, t0).lines.size() == 1);
  }
  CHECK(parts == 3);
  CHECK(sent == "Привет, мир");
}

TEST_CASE("A 413 makes the message go again in smaller pieces", "[client][outbox]") {
  utc tz;
  auto s = terminal();
  const std::string text(100, 'x');
  s.submit(msg(text));
  REQUIRE(s.take_sendable(t0).size() == 1);
  auto r = s.received(obj(R"({"response":413,"time":1,"error":"message over 64 bytes"})"), noon, t0);
  CHECK(r.lines.empty());
  CHECK(s.failures() == 0);
  CHECK(s.max_message() == 50);
  auto a = s.take_sendable(t0);
  REQUIRE(a.size() == 1);
  CHECK(a[0].at("message").as_string().size() == 50);
  s.received(ok(1), noon, t0);
  auto b = s.take_sendable(t0);
  REQUIRE(b.size() == 1);
  CHECK(b[0].at("message").as_string().size() == 50);
}

TEST_CASE("After a 413, the pieces already cut are cut again to the lower bound", "[client][outbox]") {
  utc tz;
  auto s = terminal(100);
  s.submit(msg(std::string(250, 'y')));  // 100 + 100 + 50
  REQUIRE(s.take_sendable(t0).size() == 1);
  s.received(obj(R"({"response":413,"time":1,"error":"too long"})"), noon, t0);
  std::vector<std::size_t> sizes;
  for (int id = 1; id < 20; ++id) {
    auto out = s.take_sendable(t0);
    if (out.empty()) break;
    sizes.push_back(out[0].at("message").as_string().size());
    s.received(ok(id), noon, t0);
  }
  CHECK(sizes == std::vector<std::size_t>{50, 50, 50, 50, 50});
}

TEST_CASE("A lost connection names the messages that did not go", "[client][outbox]") {
  utc tz;
  auto s = terminal();
  s.submit(msg("first"));
  s.submit(json::object{{"action", "msg"}, {"to", "bob"}, {"message", "second"}});
  REQUIRE(s.take_sendable(t0).size() == 1);
  CHECK(texts(s.give_up("connection lost")) ==
        std::vector<std::string>{"! perhaps not sent: first (connection lost before the server answered)",
                                 "! not sent to bob: second (connection lost)"});
  CHECK(s.outbox_empty());
  CHECK(s.in_flight() == 0);
}

TEST_CASE("A script does not show its own messages", "[client][outbox]") {
  utc tz;
  chat_state s("alice");
  s.submit(msg("hello"));
  REQUIRE(s.take_sendable(t0).size() == 1);
  CHECK(s.received(ok(1), noon, t0).lines.empty());
}

TEST_CASE("Quiet requests teach names and rooms without showing anything", "[client][outbox]") {
  auto s = terminal();
  s.submit(json::object{{"action", "users"}}, true);
  s.submit(json::object{{"action", "rooms"}}, true);
  CHECK(s.take_sendable(t0).size() == 2);
  CHECK(s.received(obj(R"({"response":200,"time":1,"room":"#general","users":[
      {"account_name":"alice","status":"online"},{"account_name":"Bob","status":"online"}]})"),
                   noon, t0)
            .lines.empty());
  CHECK(s.received(obj(R"({"response":200,"time":1,"rooms":[
      {"room":"#general","owner":null,"online":2,"member":true},
      {"room":"#Dev","owner":"carol","online":1,"member":false}]})"),
                   noon, t0)
            .lines.empty());
  CHECK(s.known_names() == std::vector<std::string>{"Bob", "alice", "carol"});
  CHECK(s.known_rooms() == std::vector<std::string>{"#Dev", "#general"});
}
