// The decoder against each action's fields in the contract, and the encoders' exact output.

#include "jim/codec.hpp"
#include "jim/framing.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <catch2/catch.hpp>

#include <algorithm>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

using namespace jim::proto;
namespace json = boost::json;

namespace {

decode_result decode_text(std::string_view text, limits const& lim = {}) {
  const json::value v = json::parse(text);
  REQUIRE(v.is_object());
  return decode(v.as_object(), lim);
}

/// Decodes `text`, requires success with body type T and returns the request.
template <class T>
request decode_ok(std::string_view text, limits const& lim = {}) {
  INFO(text);
  auto r = decode_text(text, lim);
  if (auto const* e = std::get_if<decode_error>(&r))
    FAIL("unexpected error " << to_int(e->status) << ": " << e->message);
  auto& req = std::get<request>(r);
  REQUIRE(std::holds_alternative<T>(req.body));
  return req;
}

template <class T>
T body_of(std::string_view text, limits const& lim = {}) {
  return std::get<T>(decode_ok<T>(text, lim).body);
}

/// Decodes `text` and requires an error with the given status; returns it.
decode_error decode_fails(std::string_view text, code status = code::bad_request,
                          limits const& lim = {}) {
  INFO(text);
  auto r = decode_text(text, lim);
  REQUIRE(std::holds_alternative<decode_error>(r));
  auto e = std::get<decode_error>(std::move(r));
  CHECK(e.status == status);
  CHECK_FALSE(e.message.empty());
  return e;
}

json::object parse_line(std::string const& line) {
  REQUIRE_FALSE(line.empty());
  CHECK(line.back() == '\n');
  CHECK(std::count(line.begin(), line.end(), '\n') == 1);
  return json::parse(line).as_object();
}

std::vector<std::string> keys_of(json::object const& o) {
  std::vector<std::string> keys;
  for (auto const& kv : o) keys.emplace_back(kv.key());
  return keys;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Requests

TEST_CASE("presence decodes with and without a user", "[codec]") {
  auto full = body_of<presence_req>(
      R"({"action":"presence","time":1700000000,"user":{"account_name":"alice","status":"away"}})");
  CHECK(full.account_name == "alice");
  CHECK(full.status == "away");

  auto bare = body_of<presence_req>(R"({"action":"presence"})");
  CHECK_FALSE(bare.account_name);
  CHECK_FALSE(bare.status);

  auto name_only =
      body_of<presence_req>(R"({"action":"presence","user":{"account_name":"Bob.9"}})");
  CHECK(name_only.account_name == "Bob.9");
  CHECK_FALSE(name_only.status);

  // The limit counts characters: 64 four-byte emoji are fine.
  std::string emoji;
  for (int i = 0; i < 64; ++i) emoji += "\xF0\x9F\x98\x80";
  CHECK(body_of<presence_req>(R"({"action":"presence","user":{"status":")" + emoji + "\"}}")
            .status == emoji);
}

TEST_CASE("presence rejects ill-typed and invalid fields", "[codec]") {
  decode_fails(R"({"action":"presence","user":"alice"})");
  decode_fails(R"({"action":"presence","user":{"account_name":7}})");
  decode_fails(R"({"action":"presence","user":{"account_name":"al ice"}})");
  decode_fails(R"({"action":"presence","user":{"account_name":""}})");
  decode_fails(R"({"action":"presence","user":{"account_name":"alice","status":1}})");
  decode_fails(R"({"action":"presence","user":{"status":")" +
               std::string(max_status_chars + 1, 's') + "\"}}");
  decode_fails(R"({"action":"presence","user":{"status":""}})");
}

TEST_CASE("A scheduled msg's at must be in the future and at most schedule_max ahead",
          "[codec]") {
  limits lim;
  lim.schedule_max = 100;
  const std::int64_t now = 1767225600;
  auto at = [](std::int64_t t) {
    return R"({"action":"msg","message":"m","at":)" + std::to_string(t) + "}";
  };
  auto decode_at = [&](std::int64_t t) {
    return decode(json::parse(at(t)).as_object(), lim, now);
  };
  auto ok = decode_at(now + 100);
  REQUIRE(std::holds_alternative<request>(ok));
  CHECK(std::get<msg_req>(std::get<request>(ok).body).at == now + 100);
  CHECK(std::holds_alternative<request>(decode_at(now + 1)));
  for (std::int64_t bad : {now, now - 1, now + 101, std::int64_t{0}}) {
    INFO(bad);
    auto r = decode_at(bad);
    REQUIRE(std::holds_alternative<decode_error>(r));
    CHECK(std::get<decode_error>(r).status == code::bad_request);
  }
  CHECK(std::get<decode_error>(decode_at(now)).message == R"("at" must be in the future)");
  CHECK(std::get<decode_error>(decode_at(now + 101)).message ==
        R"("at" is more than 100 seconds ahead (--schedule-max))");
}

TEST_CASE("authenticate needs a non-empty password and accepts an optional name", "[codec]") {
  auto with_name = body_of<authenticate_req>(
      R"({"action":"authenticate","user":{"account_name":"alice","password":"pw"}})");
  CHECK(with_name.account_name == "alice");
  CHECK(with_name.password == "pw");

  auto guided =
      body_of<authenticate_req>(R"({"action":"authenticate","user":{"password":"p w é"}})");
  CHECK_FALSE(guided.account_name);
  CHECK(guided.password == "p w \xc3\xa9");

  body_of<authenticate_req>(R"({"action":"authenticate","user":{"password":")" +
                            std::string(1024, 'p') + "\"}}");

  decode_fails(R"({"action":"authenticate"})");
  decode_fails(R"({"action":"authenticate","user":["alice","pw"]})");
  decode_fails(R"({"action":"authenticate","user":{"account_name":"alice"}})");
  decode_fails(R"({"action":"authenticate","user":{"account_name":"alice","password":""}})");
  decode_fails(R"({"action":"authenticate","user":{"account_name":"alice","password":1234}})");
  decode_fails(R"({"action":"authenticate","user":{"account_name":"ali/ce","password":"pw"}})");
  decode_fails(R"({"action":"authenticate","user":{"password":")" + std::string(1025, 'p') +
               "\"}}");
}

TEST_CASE("register needs a valid account name and a non-empty password", "[codec]") {
  auto r = body_of<register_req>(
      R"({"action":"register","user":{"account_name":"bob","password":"pw"}})");
  CHECK(r.account_name == "bob");
  CHECK(r.password == "pw");
  body_of<register_req>(R"({"action":"register","user":{"account_name":")" + std::string(25, 'b') +
                        R"(","password":"pw"}})");

  decode_fails(R"({"action":"register"})");
  decode_fails(R"({"action":"register","user":{"password":"pw"}})");
  decode_fails(R"({"action":"register","user":{"account_name":"bob"}})");
  decode_fails(R"({"action":"register","user":{"account_name":"bob","password":""}})");
  decode_fails(R"({"action":"register","user":{"account_name":"bob","password":false}})");
  decode_fails(R"({"action":"register","user":{"account_name":")" + std::string(26, 'b') +
               R"(","password":"pw"}})");
  decode_fails(R"({"action":"register","user":{"account_name":"#bob","password":"pw"}})");
  decode_fails(R"({"action":"register","user":{"account_name":"b\u00f6b","password":"pw"}})");
  decode_fails(R"({"action":"register","user":{"account_name":["bob"],"password":"pw"}})");
}

TEST_CASE("msg decodes its text and an optional room or account target", "[codec]") {
  auto plain = body_of<msg_req>(R"({"action":"msg","message":"hello"})");
  CHECK(plain.message == "hello");
  CHECK_FALSE(plain.to);

  auto to_room = body_of<msg_req>(R"({"action":"msg","message":"hi","to":"#Dev-1"})");
  REQUIRE(to_room.to);
  CHECK(to_room.to->is_room);
  CHECK(to_room.to->name == "Dev-1");

  // In msg.to a bare name is always an account, even one that looks like a room.
  auto to_user = body_of<msg_req>(R"({"action":"msg","message":"hi","to":"general"})");
  REQUIRE(to_user.to);
  CHECK_FALSE(to_user.to->is_room);
  CHECK(to_user.to->name == "general");

  auto dotted = body_of<msg_req>(R"({"action":"msg","message":"hi","to":"b.o.b"})");
  CHECK(dotted.to->name == "b.o.b");
  CHECK_FALSE(dotted.to->is_room);
}

TEST_CASE("msg rejects a bad target", "[codec]") {
  decode_fails(R"({"action":"msg","message":"hi","to":""})");
  decode_fails(R"({"action":"msg","message":"hi","to":"#"})");
  decode_fails(R"({"action":"msg","message":"hi","to":"##dev"})");
  decode_fails(R"({"action":"msg","message":"hi","to":"#a.b"})");  // '.' is for accounts only
  decode_fails(R"({"action":"msg","message":"hi","to":"#)" + std::string(33, 'r') + "\"}");
  decode_fails(R"({"action":"msg","message":"hi","to":"bad name"})");
  decode_fails(R"({"action":"msg","message":"hi","to":42})");
  decode_fails(R"({"action":"msg","message":"hi","to":["#dev"]})");
  body_of<msg_req>(R"({"action":"msg","message":"hi","to":"#)" + std::string(32, 'r') + "\"}");
}

TEST_CASE("msg needs a non-empty text of at most max-message bytes", "[codec]") {
  decode_fails(R"({"action":"msg"})");
  decode_fails(R"({"action":"msg","message":""})");
  decode_fails(R"({"action":"msg","message":5})");
  decode_fails(R"({"action":"msg","message":{"text":"hi"}})");

  limits const lim;  // contract default 4096
  CHECK(
      body_of<msg_req>(R"({"action":"msg","message":")" + std::string(lim.max_message, 'm') + "\"}")
          .message.size() == lim.max_message);
  decode_fails(R"({"action":"msg","message":")" + std::string(lim.max_message + 1, 'm') + "\"}",
               code::too_large);

  // The bound is in bytes, as configured.
  limits small;
  small.max_message = 4;
  body_of<msg_req>(R"({"action":"msg","message":"\u00e9\u00e9"})", small);  // 4 bytes
  decode_fails(R"({"action":"msg","message":"\u00e9\u00e9\u00e9"})", code::too_large, small);
  decode_fails(R"({"action":"msg","message":"abcde"})", code::too_large, small);
}

TEST_CASE("create takes a room name with or without '#'", "[codec]") {
  CHECK(body_of<create_req>(R"({"action":"create","room":"dev"})").room == "dev");
  CHECK(body_of<create_req>(R"({"action":"create","room":"#Dev_2"})").room == "Dev_2");
  CHECK(body_of<create_req>(R"({"action":"create","room":")" + std::string(32, 'r') + "\"}")
            .room.size() == 32);

  decode_fails(R"({"action":"create"})");
  decode_fails(R"({"action":"create","room":7})");
  decode_fails(R"({"action":"create","room":""})");
  decode_fails(R"({"action":"create","room":"#"})");
  decode_fails(R"({"action":"create","room":"##dev"})");
  decode_fails(R"({"action":"create","room":"a.b"})");
  decode_fails(R"({"action":"create","room":"with space"})");
  decode_fails(R"({"action":"create","room":")" + std::string(33, 'r') + "\"}");
}

TEST_CASE("join takes a room and an optional password", "[codec]") {
  auto with_pw = body_of<join_req>(R"({"action":"join","room":"#dev","password":"s3cret"})");
  CHECK(with_pw.room == "dev");
  CHECK(with_pw.password == "s3cret");
  auto without = body_of<join_req>(R"({"action":"join","room":"dev"})");
  CHECK(without.room == "dev");
  CHECK_FALSE(without.password);

  decode_fails(R"({"action":"join"})");
  decode_fails(R"({"action":"join","password":"pw"})");
  decode_fails(R"({"action":"join","room":"d e v"})");
  decode_fails(R"({"action":"join","room":"dev","password":123})");
  decode_fails(R"({"action":"join","room":"dev","password":")" + std::string(1025, 'p') + "\"}");
}

TEST_CASE("exit and its alias leave take no fields", "[codec]") {
  body_of<exit_req>(R"({"action":"exit"})");
  body_of<exit_req>(R"({"action":"leave"})");
}

TEST_CASE("invite needs an account and takes an optional room", "[codec]") {
  auto both = body_of<invite_req>(R"({"action":"invite","room":"#dev","user":"bob"})");
  CHECK(both.room == "dev");
  CHECK(both.user == "bob");
  auto bare_room = body_of<invite_req>(R"({"action":"invite","room":"dev","user":"Bob"})");
  CHECK(bare_room.room == "dev");
  CHECK(bare_room.user == "Bob");
  auto no_room = body_of<invite_req>(R"({"action":"invite","user":"bob"})");
  CHECK_FALSE(no_room.room);

  decode_fails(R"({"action":"invite","room":"dev"})");
  decode_fails(R"({"action":"invite","room":"dev","user":""})");
  decode_fails(R"({"action":"invite","room":"dev","user":"#bob"})");
  decode_fails(R"({"action":"invite","room":"dev","user":{"account_name":"bob"}})");
  decode_fails(R"({"action":"invite","room":"d.v","user":"bob"})");
  decode_fails(R"({"action":"invite","room":5,"user":"bob"})");
}

TEST_CASE("history has defaults and takes a room or an account", "[codec]") {
  auto plain = body_of<history_req>(R"({"action":"history"})");
  CHECK_FALSE(plain.room);
  CHECK_FALSE(plain.with);
  CHECK(plain.limit == 50);
  CHECK_FALSE(plain.before);

  auto room = body_of<history_req>(R"({"action":"history","room":"#dev","limit":10,"before":123})");
  CHECK(room.room == "dev");
  CHECK(room.limit == 10);
  CHECK(room.before == 123u);
  CHECK(body_of<history_req>(R"({"action":"history","room":"dev"})").room == "dev");

  auto with = body_of<history_req>(R"({"action":"history","with":"bob"})");
  CHECK(with.with == "bob");
  CHECK_FALSE(with.room);

  CHECK(body_of<history_req>(R"({"action":"history","before":0})").before == 0u);
  CHECK(body_of<history_req>(R"({"action":"history","limit":10.0})").limit == 10);
}

TEST_CASE("history clamps a large limit to 500 and rejects one below 1", "[codec]") {
  CHECK(body_of<history_req>(R"({"action":"history","limit":1})").limit == 1);
  CHECK(body_of<history_req>(R"({"action":"history","limit":500})").limit == 500);
  CHECK(body_of<history_req>(R"({"action":"history","limit":501})").limit == 500);
  CHECK(body_of<history_req>(R"({"action":"history","limit":4294967297})").limit == 500);
  CHECK(body_of<history_req>(R"({"action":"history","limit":18446744073709551615})").limit == 500);
  CHECK(body_of<history_req>(R"({"action":"history","limit":1e9})").limit == 500);
  // Integral doubles beyond the range of int64 (casting them would be undefined behaviour).
  CHECK(body_of<history_req>(R"({"action":"history","limit":1e300})").limit == 500);
  CHECK(body_of<history_req>(R"({"action":"history","limit":9.3e18})").limit == 500);
  CHECK(body_of<history_req>(R"({"action":"history","limit":1e400})").limit ==
        500);  // parsed as infinity

  decode_fails(R"({"action":"history","limit":0})");
  decode_fails(R"({"action":"history","limit":-5})");
  decode_fails(R"({"action":"history","limit":-1e300})");
  decode_fails(R"({"action":"history","limit":-1e400})");
  decode_fails(R"({"action":"history","limit":2.5})");
  decode_fails(R"({"action":"history","limit":"10"})");
  decode_fails(R"({"action":"history","limit":true})");
}

TEST_CASE("history rejects both room and with, and bad values", "[codec]") {
  decode_fails(R"({"action":"history","room":"dev","with":"bob"})");
  decode_fails(R"({"action":"history","room":"#dev","with":"bob","limit":10})");
  decode_fails(R"({"action":"history","with":"#bob"})");
  decode_fails(R"({"action":"history","with":3})");
  decode_fails(R"({"action":"history","room":"a b"})");
  decode_fails(R"({"action":"history","before":-1})");
  decode_fails(R"({"action":"history","before":"12"})");
  decode_fails(R"({"action":"history","before":1.5})");
  CHECK(body_of<history_req>(R"({"action":"history","before":18446744073709551615})").before > 0u);
  CHECK(body_of<history_req>(R"({"action":"history","before":1e300})").before > 0u);
}

TEST_CASE("users takes an optional room, rooms and quit take nothing", "[codec]") {
  CHECK_FALSE(body_of<users_req>(R"({"action":"users"})").room);
  CHECK(body_of<users_req>(R"({"action":"users","room":"#dev"})").room == "dev");
  CHECK(body_of<users_req>(R"({"action":"users","room":"dev"})").room == "dev");
  decode_fails(R"({"action":"users","room":"d#v"})");
  decode_fails(R"({"action":"users","room":[]})");

  body_of<rooms_req>(R"({"action":"rooms"})");
  body_of<quit_req>(R"({"action":"quit"})");
}

TEST_CASE("A missing, ill-typed or unknown action is a bad request", "[codec]") {
  decode_fails(R"({})");
  decode_fails(R"({"message":"hi"})");
  decode_fails(R"({"action":null})");
  decode_fails(R"({"action":1})");
  decode_fails(R"({"action":["msg"]})");
  decode_fails(R"({"action":""})");
  decode_fails(R"({"action":"dance"})");
  decode_fails(R"({"action":"msg "})");
  auto e = decode_fails(R"({"action":")" + std::string(10000, 'x') + "\"}");
  CHECK(e.message.size() < 200);  // the unknown name is not echoed in full
}

TEST_CASE("time is optional but must be a number", "[codec]") {
  body_of<quit_req>(R"({"action":"quit","time":1700000000})");
  body_of<quit_req>(R"({"action":"quit","time":1700000000.25})");
  body_of<quit_req>(R"({"action":"quit","time":-1})");
  decode_fails(R"({"action":"quit","time":"1700000000"})");
  decode_fails(R"({"action":"quit","time":true})");
  decode_fails(R"({"action":"quit","time":{}})");
  decode_fails(R"({"action":"quit","time":[1]})");
}

TEST_CASE("A tag may be an integer or a string of at most 64 characters", "[codec]") {
  CHECK(decode_ok<quit_req>(R"({"action":"quit"})").tag.is_null());
  CHECK(decode_ok<quit_req>(R"({"action":"quit","tag":7})").tag == json::value(7));
  CHECK(decode_ok<quit_req>(R"({"action":"quit","tag":-7})").tag == json::value(-7));
  CHECK(decode_ok<quit_req>(R"({"action":"quit","tag":18446744073709551615})").tag ==
        json::value(std::uint64_t(18446744073709551615u)));
  CHECK(decode_ok<quit_req>(R"({"action":"quit","tag":""})").tag == json::value(""));
  const std::string t64(64, 't');
  CHECK(decode_ok<quit_req>(R"({"action":"quit","tag":")" + t64 + "\"}").tag == json::value(t64));
  // 64 characters, 128 bytes of UTF-8.
  std::string e64;
  for (int i = 0; i < 64; ++i) e64 += "\xc3\xa9";
  CHECK(decode_ok<quit_req>(R"({"action":"quit","tag":")" + e64 + "\"}").tag == json::value(e64));
}

TEST_CASE("A tag of the wrong type or too long is a bad request without the tag", "[codec]") {
  std::string e65;
  for (int i = 0; i < 65; ++i) e65 += "\xc3\xa9";
  for (std::string const& tag :
       {std::string("1.5"), std::string("1.0"), std::string("true"), std::string("{}"),
        std::string("[1]"), "\"" + std::string(65, 't') + "\"", "\"" + e65 + "\""}) {
    auto e = decode_fails(R"({"action":"quit","tag":)" + tag + "}");
    CHECK(e.tag.is_null());
  }
}

TEST_CASE("A valid tag is echoed on every decode error", "[codec]") {
  CHECK(decode_fails(R"({"tag":"a"})").tag == json::value("a"));
  CHECK(decode_fails(R"({"action":"dance","tag":"b"})").tag == json::value("b"));
  CHECK(decode_fails(R"({"action":"quit","time":"now","tag":3})").tag == json::value(3));
  CHECK(decode_fails(R"({"action":"msg","tag":4})").tag == json::value(4));
  CHECK(decode_fails(R"({"action":"create","room":"a.b","tag":5})").tag == json::value(5));
  CHECK(decode_fails(R"({"action":"history","limit":0,"tag":6})").tag == json::value(6));
  CHECK(
      decode_fails(R"({"action":"msg","message":")" + std::string(4097, 'm') + R"(","tag":"big"})",
                   code::too_large)
          .tag == json::value("big"));
}

TEST_CASE("A field whose value is null is treated as absent", "[codec]") {
  CHECK(decode_ok<quit_req>(R"({"action":"quit","tag":null,"time":null})").tag.is_null());
  auto h = body_of<history_req>(
      R"({"action":"history","room":null,"with":"bob","limit":null,"before":null})");
  CHECK_FALSE(h.room);
  CHECK(h.limit == 50);
  CHECK_FALSE(h.before);
  CHECK_FALSE(body_of<msg_req>(R"({"action":"msg","message":"hi","to":null})").to);
  decode_fails(R"({"action":"msg","message":null})");
  decode_fails(R"({"action":null})");
}

TEST_CASE("Error texts name the offending field", "[codec]") {
  using Catch::Matchers::Contains;
  CHECK(decode_fails(R"({})").message == R"(missing field "action")");
  CHECK(decode_fails(R"({"action":1})").message == R"("action" must be a string)");
  CHECK(decode_fails(R"({"action":"dance"})").message == R"(unknown action "dance")");
  CHECK(decode_fails(R"({"action":"quit","time":"x"})").message == R"("time" must be a number)");
  CHECK(decode_fails(R"({"action":"create"})").message == R"(missing field "room")");
  CHECK(decode_fails(R"({"action":"history","limit":"x"})").message ==
        R"("limit" must be an integer)");
  CHECK(decode_fails(R"({"action":"history","limit":0})").message ==
        R"("limit" must be at least 1)");
  CHECK(decode_fails(R"({"action":"msg","message":""})").message ==
        R"("message" must not be empty)");
  CHECK(decode_fails(R"({"action":"msg","message":")" + std::string(4097, 'm') + "\"}",
                     code::too_large)
            .message == R"("message" is longer than 4096 bytes)");
  CHECK_THAT(decode_fails(R"({"action":"msg","message":"m","to":"a b"})").message,
             Contains(R"("to" is not a valid account name)"));
  CHECK_THAT(decode_fails(R"({"action":"authenticate","user":{}})").message, Contains("password"));
  CHECK_THAT(decode_fails(R"({"action":"authenticate","user":{}})").message, Contains("user"));
}

TEST_CASE("Unknown extra fields are ignored", "[codec]") {
  auto req = decode_ok<msg_req>(
      R"({"action":"msg","message":"hi","to":"#dev","foo":{"bar":[1,2]},"x":null,"tag":1,"extra":"yes"})");
  CHECK(std::get<msg_req>(req.body).message == "hi");
  auto auth = body_of<authenticate_req>(
      R"({"user":{"password":"pw","account_name":"al","avatar":"x.png"},"action":"authenticate","v":2})");
  CHECK(auth.account_name == "al");
  body_of<rooms_req>(R"({"action":"rooms","room":"not validated here","limit":"x"})");
}

TEST_CASE("Frames from the framer decode end to end", "[codec][framing]") {
  framer f(65536);
  f.feed(
      "{\"action\":\"msg\",\"message\":\"hi\",\"to\":\"#dev\"}{\"action\":\"quit\",\"tag\":9}\r\n");
  std::vector<request> got;
  json::value v;
  std::string error;
  while (f.next(v, error) == frame_status::frame) {
    auto r = decode(v.as_object(), limits{});
    REQUIRE(std::holds_alternative<request>(r));
    got.push_back(std::get<request>(std::move(r)));
  }
  REQUIRE(got.size() == 2);
  CHECK(std::holds_alternative<msg_req>(got[0].body));
  CHECK(std::holds_alternative<quit_req>(got[1].body));
  CHECK(got[1].tag == json::value(9));
}

// ---------------------------------------------------------------------------------------------
// Encoding

TEST_CASE("encode_reply writes response, time, tag, text and fields in that order",
          "[codec][encode]") {
  CHECK(encode_reply(code::ok, nullptr, {}, {}, 1700000000) ==
        "{\"response\":200,\"time\":1700000000}\n");
  CHECK(encode_reply(code::ok, json::value("t1"), "welcome", {}, 5) ==
        "{\"response\":200,\"time\":5,\"tag\":\"t1\",\"alert\":\"welcome\"}\n");
  CHECK(encode_reply(code::created, json::value(42), {},
                     json::object{{"room", "#dev"}, {"password", "p"}}, 5) ==
        "{\"response\":201,\"time\":5,\"tag\":42,\"room\":\"#dev\",\"password\":\"p\"}\n");
  CHECK(encode_reply(code::prompt, nullptr, {}, json::object{{"auth", "login"}}, 5) ==
        "{\"response\":100,\"time\":5,\"auth\":\"login\"}\n");

  auto o = parse_line(
      encode_reply(code::ok, json::value("x"), "hi",
                   json::object{{"id", 3}, {"delivered", 2}, {"room", "#general"}, {"missed", 0}}));
  CHECK(keys_of(o) == std::vector<std::string>{"response", "time", "tag", "alert", "id",
                                               "delivered", "room", "missed"});
}

TEST_CASE("Errors carry error and successes carry alert", "[codec][encode]") {
  for (code c : {code::bad_request, code::unauthorized, code::wrong_password, code::forbidden,
                 code::not_found, code::conflict, code::too_large, code::rate_limited,
                 code::internal_error, code::unavailable}) {
    INFO(to_int(c));
    auto plain = parse_line(encode_reply(c, nullptr));
    CHECK(plain.at("response") == json::value(to_int(c)));
    REQUIRE(plain.contains("error"));
    CHECK(plain.at("error") == json::value(reason(c)));  // never an empty error
    CHECK_FALSE(plain.contains("alert"));
    auto texted = parse_line(encode_reply(c, nullptr, "because"));
    CHECK(texted.at("error") == json::value("because"));
    CHECK_FALSE(texted.contains("alert"));
  }
  for (code c : {code::prompt, code::ok, code::created, code::accepted}) {
    INFO(to_int(c));
    auto plain = parse_line(encode_reply(c, nullptr));
    CHECK_FALSE(plain.contains("alert"));
    CHECK_FALSE(plain.contains("error"));
    auto texted = parse_line(encode_reply(c, nullptr, "fine"));
    CHECK(texted.at("alert") == json::value("fine"));
    CHECK_FALSE(texted.contains("error"));
  }
  CHECK(encode_reply(code::rate_limited, json::value(1), "slow down",
                     json::object{{"retry_after", 0.5}}, 9) ==
        "{\"response\":429,\"time\":9,\"tag\":1,\"error\":\"slow down\",\"retry_after\":5E-1}\n");
}

TEST_CASE("encode_reply stamps the current time by default", "[codec][encode]") {
  const auto before = unix_now();
  auto o = parse_line(encode_reply(code::ok, nullptr));
  const auto after = unix_now();
  REQUIRE(o.at("time").is_int64());
  CHECK(o.at("time").as_int64() >= before);
  CHECK(o.at("time").as_int64() <= after);
  CHECK(before > 1600000000);
}

TEST_CASE("encode_msg writes a msg push on one line", "[codec][encode]") {
  chat_message m{17, 1700000000, "alice", "#general", "hi"};
  CHECK(encode_msg(m) ==
        "{\"action\":\"msg\",\"id\":17,\"time\":1700000000,\"from\":\"alice\",\"to\":\"#general\","
        "\"message\":\"hi\"}\n");
  CHECK(encode_msg(m, true) ==
        "{\"action\":\"msg\",\"id\":17,\"time\":1700000000,\"from\":\"alice\",\"to\":\"#general\","
        "\"message\":\"hi\","
        "\"history\":true}\n");
  CHECK(json::value(msg_object(m)) == json::parse(encode_msg(m)));
}

TEST_CASE("Pushes with newlines, quotes and UTF-8 stay on one line and parse back",
          "[codec][encode]") {
  const std::string nasty =
      "line1\nline2\r\n\t\"quoted\" \\ \x01 caf\xc3\xa9 \xe2\x80\xa8 \xf0\x9f\x98\x80";
  chat_message m{18446744073709551615u, -1, "bob", "alice", nasty};

  // The direct encoder writes exactly what serialising the object would.
  json::object with_history = msg_object(m);
  with_history.emplace("history", true);
  CHECK(encode_msg(m) == json::serialize(msg_object(m)) + "\n");
  CHECK(encode_msg(m, true) == json::serialize(with_history) + "\n");

  auto msg = parse_line(encode_msg(m));
  CHECK(msg == json::object{{"action", "msg"},
                            {"id", 18446744073709551615u},
                            {"time", -1},
                            {"from", "bob"},
                            {"to", "alice"},
                            {"message", nasty}});

  auto event = parse_line(encode_event("join", "#dev", "bob"));
  CHECK(event ==
        json::object{{"action", "event"}, {"event", "join"}, {"room", "#dev"}, {"user", "bob"}});
  CHECK(keys_of(event) == std::vector<std::string>{"action", "event", "room", "user"});

  auto invite = parse_line(encode_invite("alice", "#dev"));
  CHECK(invite == json::object{{"action", "invite"}, {"from", "alice"}, {"room", "#dev"}});

  auto probe = parse_line(encode_probe());
  CHECK(probe.at("action") == json::value("probe"));
  CHECK(probe.at("time").is_int64());

  auto notice = parse_line(encode_notice(nasty));
  CHECK(notice.at("action") == json::value("notice"));
  CHECK(notice.at("text") == json::value(nasty));

  auto reply = parse_line(encode_reply(code::bad_request, json::value(nasty.substr(0, 10)), nasty));
  CHECK(reply.at("error") == json::value(nasty));
}

TEST_CASE("Encoded frames go through the framer unchanged", "[codec][encode][framing]") {
  chat_message m{1, 2, "a", "#b", "multi\nline"};
  const std::string stream = encode_msg(m) + encode_event("leave", "#b", "c") +
                             encode_invite("a", "#b") + encode_probe() + encode_notice("bye") +
                             encode_reply(code::ok, json::value(1));
  framer f(65536);
  f.feed(stream);
  int frames = 0;
  json::value v;
  std::string error;
  for (frame_status st; (st = f.next(v, error)) != frame_status::need_more;) {
    REQUIRE(st == frame_status::frame);
    ++frames;
  }
  CHECK(frames == 6);
}

TEST_CASE("A msg push shared once is the same bytes for every recipient", "[codec][encode]") {
  chat_message m{5, 1700000000, "alice", "#dev", "to all of you \xf0\x9f\x91\x8b"};
  const shared_frame frame = share(encode_msg(m));
  std::vector<shared_frame> outboxes(50, frame);  // what the hub hands each recipient

  for (auto const& f : outboxes) {
    CHECK(f.get() == frame.get());
    CHECK(f->data() == frame->data());
    CHECK(*f == encode_msg(m));
  }
  CHECK(frame.use_count() == 51);
  CHECK(to_line(json::value(msg_object(m))) == *frame);
}

TEST_CASE("An unknown action is quoted in the error without cutting a UTF-8 character", "[codec]") {
  // 63 ASCII bytes then a 2-byte character: a cut at 64 bytes would split it.
  const std::string action = std::string(63, 'a') + "\xc3\xa9" + "zzz";
  boost::json::object frame{{"action", action}};
  auto r = jim::proto::decode(frame, jim::proto::limits{});
  auto const* e = std::get_if<jim::proto::decode_error>(&r);
  REQUIRE(e);
  const std::string line = jim::proto::encode_reply(e->status, e->tag, e->message);
  boost::system::error_code ec;
  auto v = boost::json::parse(line, ec);
  CHECK_FALSE(ec);
  CHECK(e->message.find(std::string(63, 'a') + "\"") != std::string::npos);
}

TEST_CASE("A password containing U+0000 is malformed, for accounts and rooms", "[codec]") {
  decode_fails(R"({"action":"authenticate","user":{"account_name":"alice","password":"pw\u0000"}})");
  decode_fails(R"({"action":"authenticate","user":{"password":"\u0000pw"}})");
  decode_fails(R"({"action":"register","user":{"account_name":"bob","password":"p\u0000w"}})");
  decode_fails(R"({"action":"join","room":"den","password":"pw\u0000\u0000"})");
  CHECK(body_of<join_req>(R"({"action":"join","room":"den","password":"pw"})").password == "pw");
}

// --- issue 15: watching, read markers, conversations, presence ------------------------------

TEST_CASE("users with room * asks for everyone signed in", "[codec][watch]") {
  auto u = body_of<users_req>(R"({"action":"users","room":"*"})");
  CHECK(u.everyone);
  CHECK_FALSE(u.room);
  CHECK_FALSE(body_of<users_req>(R"({"action":"users","room":"dev"})").everyone);
  decode_fails(R"({"action":"users","room":"**"})");
}

TEST_CASE("watch and unwatch take a list of rooms or all", "[codec][watch]") {
  auto w = body_of<watch_req>(R"({"action":"watch","rooms":["#dev","Lair"]})");
  CHECK_FALSE(w.all);
  CHECK_FALSE(w.unwatch);
  CHECK(w.rooms == std::vector<std::string>{"dev", "Lair"});
  w = body_of<watch_req>(R"({"action":"unwatch","rooms":"all"})");
  CHECK(w.all);
  CHECK(w.unwatch);
  CHECK(w.rooms.empty());
  CHECK(body_of<watch_req>(R"({"action":"watch","rooms":[]})").rooms.empty());
  decode_fails(R"({"action":"watch"})");
  decode_fails(R"({"action":"watch","rooms":"every"})");
  decode_fails(R"({"action":"watch","rooms":{"a":1}})");
  decode_fails(R"({"action":"watch","rooms":[1]})");
  auto e = decode_fails(R"({"action":"unwatch","rooms":["ok","d#v"]})");
  CHECK(e.message.find("rooms[1]") != std::string::npos);
}

TEST_CASE("read takes a room or an account and an id of at least 1", "[codec][watch]") {
  auto r = body_of<read_req>(R"({"action":"read","room":"#dev","id":7})");
  CHECK(r.room == "dev");
  CHECK_FALSE(r.with);
  CHECK(r.id == 7);
  r = body_of<read_req>(R"({"action":"read","with":"Bob","id":1})");
  CHECK(r.with == "Bob");
  CHECK(r.id == 1);
  decode_fails(R"({"action":"read","room":"dev"})");
  decode_fails(R"({"action":"read","id":3})");
  decode_fails(R"({"action":"read","room":"dev","with":"bob","id":3})");
  decode_fails(R"({"action":"read","room":"dev","id":0})");
  decode_fails(R"({"action":"read","room":"dev","id":-1})");
  decode_fails(R"({"action":"read","room":"dev","id":2.5})");
  decode_fails(R"({"action":"read","room":"dev","id":"2"})");
  decode_fails(R"({"action":"read","with":"no body","id":2})");
  body_of<conversations_req>(R"({"action":"conversations"})");
}

TEST_CASE("The status, online and read pushes have their documented shapes", "[codec][encode]") {
  CHECK(encode_status("alice", "away") ==
        "{\"action\":\"event\",\"event\":\"status\",\"user\":\"alice\",\"status\":\"away\"}\n");
  CHECK(encode_online("#general", 12) ==
        "{\"action\":\"event\",\"event\":\"online\",\"room\":\"#general\",\"online\":12}\n");
  CHECK(encode_read(true, "#Den", 5) == "{\"action\":\"read\",\"room\":\"#Den\",\"id\":5}\n");
  CHECK(encode_read(false, "bob", 9) == "{\"action\":\"read\",\"with\":\"bob\",\"id\":9}\n");
}

TEST_CASE("Contact requests decode, contact_list has its documented shape", "[codec][contacts]") {
  body_of<get_contacts_req>(R"({"action":"get_contacts"})");
  auto add = body_of<contact_req>(R"({"action":"add_contact","user_id":"Bob"})");
  CHECK(add.user_id == "Bob");
  CHECK_FALSE(add.remove);
  auto del = body_of<contact_req>(R"({"action":"del_contact","user_id":"bob"})");
  CHECK(del.user_id == "bob");
  CHECK(del.remove);
  decode_fails(R"({"action":"add_contact"})");
  decode_fails(R"({"action":"add_contact","user_id":3})");
  decode_fails(R"({"action":"add_contact","user_id":"no body"})");
  decode_fails(R"({"action":"del_contact","user_id":""})");
  CHECK(encode_contact("Bob") == "{\"action\":\"contact_list\",\"user_id\":\"Bob\"}\n");
}
