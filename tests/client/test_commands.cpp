// The client's sans-io core: typed lines -> requests, received frames -> lines for a person.
#include "client_test_support.hpp"
#include "commands.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <catch2/catch.hpp>

#include <cstdlib>
#include <ctime>
#include <limits>

using namespace jim::client;
namespace json = boost::json;

namespace {

using namespace jim::client::test;

bool is_usage(std::string_view line) { return std::holds_alternative<usage_hint>(parse_input(line)); }

/// A chat_state signed in as alice in #general.
chat_state signed_in() {
  chat_state s("alice");
  s.sent(obj(R"({"action":"authenticate","user":{"password":"pw"}})"));
  s.received(obj(R"({"response":200,"time":1,"room":"#general","missed":0})"), noon);
  return s;
}

}  // namespace

TEST_CASE("A plain line is a message to the current room", "[client][commands]") {
  CHECK(request_of("hello, world") == obj(R"({"action":"msg","message":"hello, world"})"));
  CHECK(request_of("  spaces kept  \r\n") == obj(R"({"action":"msg","message":"  spaces kept  "})"));
  CHECK(request_of("//etc/passwd") == obj(R"({"action":"msg","message":"/etc/passwd"})"));
}

TEST_CASE("An empty line sends nothing", "[client][commands]") {
  CHECK(std::holds_alternative<nothing>(parse_input("")));
  CHECK(std::holds_alternative<nothing>(parse_input("   \t")));
}

TEST_CASE("Commands become their requests", "[client][commands]") {
  CHECK(request_of("/create dev") == obj(R"({"action":"create","room":"dev"})"));
  CHECK(request_of("/join dev") == obj(R"({"action":"join","room":"dev"})"));
  CHECK(request_of("/join #dev s3cret") == obj(R"({"action":"join","room":"#dev","password":"s3cret"})"));
  CHECK(request_of("/exit") == obj(R"({"action":"exit"})"));
  CHECK(request_of("/leave") == obj(R"({"action":"exit"})"));
  CHECK(request_of("/msg bob hi  there ") == obj(R"({"action":"msg","to":"bob","message":"hi  there"})"));
  CHECK(request_of("/private bob hi") == obj(R"({"action":"msg","to":"bob","message":"hi"})"));
  CHECK(request_of("/invite bob") == obj(R"({"action":"invite","user":"bob"})"));
  CHECK(request_of("/invite bob dev") == obj(R"({"action":"invite","user":"bob","room":"dev"})"));
  CHECK(request_of("/history") == obj(R"({"action":"history"})"));
  CHECK(request_of("/history 5") == obj(R"({"action":"history","limit":5})"));
  CHECK(request_of("/history bob") == obj(R"({"action":"history","with":"bob"})"));
  CHECK(request_of("/history bob 20") == obj(R"({"action":"history","with":"bob","limit":20})"));
  CHECK(request_of("/history #dev 3") == obj(R"({"action":"history","room":"#dev","limit":3})"));
  CHECK(request_of("/history 42 50") == obj(R"({"action":"history","with":"42","limit":50})"));
  CHECK(request_of("/users") == obj(R"({"action":"users"})"));
  CHECK(request_of("/rooms") == obj(R"({"action":"rooms"})"));
  CHECK(request_of("/quit") == obj(R"({"action":"quit"})"));
  CHECK(request_of("/JOIN Dev") == obj(R"({"action":"join","room":"Dev"})"));
  CHECK(std::holds_alternative<show_help>(parse_input("/help")));
}

TEST_CASE("A wrong number of arguments gets a usage hint and sends nothing", "[client][commands]") {
  CHECK(is_usage("/create"));
  CHECK(is_usage("/create a b"));
  CHECK(is_usage("/join"));
  CHECK(is_usage("/join a b c"));
  CHECK(is_usage("/exit now"));
  CHECK(is_usage("/msg"));
  CHECK(is_usage("/msg bob"));
  CHECK(is_usage("/invite"));
  CHECK(is_usage("/history 0"));
  CHECK(is_usage("/history bob ten"));
  CHECK(is_usage("/history bob 0"));
  CHECK(is_usage("/history bob 5 6"));
  CHECK(is_usage("/users all"));
  CHECK(is_usage("/quit now"));
  auto in = parse_input("/join");
  CHECK(std::get<usage_hint>(in).text == "! usage: /join NAME [PASSWORD]");
}

TEST_CASE("An unknown command is named in its hint", "[client][commands]") {
  auto in = parse_input("/frobnicate x");
  REQUIRE(std::holds_alternative<usage_hint>(in));
  CHECK(std::get<usage_hint>(in).text == "! unknown command /frobnicate; /help lists the commands");
}

TEST_CASE("Raw lines are counted as the daemon frames them", "[client][commands]") {
  CHECK(count_frames(R"({"action":"rooms"})") == 1);
  CHECK(count_frames(R"({"action":"rooms"}{"action":"users"})") == 2);
  CHECK(count_frames(R"({"a":1} {"b":2} {"c")") == 3);  // the unfinished one is a 400 too
  CHECK(count_frames("not json") == 1);
  CHECK(count_frames("   ") == 0);
  CHECK(count_frames("") == 0);
}

TEST_CASE("Times show the clock, and the date when not today", "[client][format]") {
  utc tz;
  CHECK(clock_time(noon, noon) == "12:00");
  CHECK(clock_time(noon - 3600 - 60, noon) == "10:59");
  // Another day: weekday, day and month (issue 16: `/scheduled` showed "at 18:30" for tomorrow's).
  CHECK(clock_time(noon - 86400, noon) == "Mon 13 Nov 12:00");
  CHECK(clock_time(noon + 86400 + 6 * 3600 + 1800, noon) == "Wed 15 Nov 18:30");
  CHECK(clock_time(noon + 3600 * 11 + 60, noon) == "23:01");
  CHECK(clock_time(noon + 3600 * 12, noon) == "Wed 15 Nov 00:00");
  // Another year: the year too.
  CHECK(clock_time(noon - 365 * 86400, noon) == "Mon 14 Nov 2022 12:00");
}

TEST_CASE("Messages read as name, time and text, marked private or history", "[client][format]") {
  utc tz;
  auto room = obj(R"({"action":"msg","id":1,"from":"bob","to":"#general","message":"Hello, World!"})");
  room["time"] = noon;
  CHECK(render_message(room, "alice", "#general", false, noon) == out_line{tone::chat, "bob (12:00): Hello, World!"});
  CHECK(render_message(room, "alice", "#dev", false, noon).text == "[#general] bob (12:00): Hello, World!");
  CHECK(render_message(room, "alice", "#general", true, noon) ==
        out_line{tone::history, "[history] bob (12:00): Hello, World!"});

  auto direct = obj(R"({"action":"msg","id":2,"from":"bob","to":"alice","message":"psst"})");
  direct["time"] = noon;
  CHECK(render_message(direct, "alice", "#general", false, noon) == out_line{tone::direct, "[private] bob (12:00): psst"});
  auto mine = obj(R"({"action":"msg","id":3,"from":"Alice","to":"bob","message":"hi"})");
  mine["time"] = noon;
  CHECK(render_message(mine, "alice", "#general", true, noon).text == "[history] [private] Alice -> bob (12:00): hi");
}

TEST_CASE("Control characters from the network are shown, not obeyed", "[client][format]") {
  utc tz;
  auto m = obj(R"({"action":"msg","from":"eve","to":"#general","message":"a\u001b[2Jb\nc\u0085d\te"})");
  m["time"] = noon;
  CHECK(render_message(m, "alice", "#general", false, noon).text == "eve (12:00): a^[[2Jb\n             c?d e");
  m["message"] = "a\rb\u202ec";
  CHECK(render_message(m, "alice", "#general", false, noon).text == "eve (12:00): a^Mb?c");
}

TEST_CASE("The sign-in reply says who and where", "[client][state]") {
  chat_state s("alice");
  s.sent(obj(R"({"action":"presence","user":{"account_name":"alice"}})"));
  CHECK(s.received(obj(R"({"response":100,"time":1,"auth":"register"})"), noon).lines.empty());
  s.sent(obj(R"({"action":"authenticate","user":{"password":"pw"}})"));
  CHECK(s.received(obj(R"({"response":100,"time":1,"auth":"confirm"})"), noon).lines.empty());
  s.sent(obj(R"({"action":"authenticate","user":{"password":"pw"}})"));
  auto r = s.received(obj(R"({"response":201,"time":1,"room":"#general","missed":3})"), noon);
  CHECK(texts(r) == std::vector<std::string>{
                        "* signed in as alice (new account); you are in #general (3 new messages since your last visit)"});
  CHECK(s.room() == "#general");
  CHECK(s.in_flight() == 0);
  CHECK(s.failures() == 0);
}

TEST_CASE("The sign-in reply gives the name as registered, not as typed", "[client][state]") {
  chat_state s("ALICE");
  s.sent(obj(R"({"action":"authenticate","user":{"account_name":"ALICE","password":"pw"}})"));
  auto r = s.received(obj(R"({"response":200,"time":1,"room":"#general","missed":1,"account_name":"Alice"})"), noon);
  CHECK(texts(r) == std::vector<std::string>{
                        "* signed in as Alice; you are in #general (1 new message since your last visit)"});
  CHECK(s.me() == "Alice");
}

TEST_CASE("A presence reply corrects the account name's case", "[client][state]") {
  auto s = signed_in();
  s.sent(obj(R"({"action":"presence"})"));
  s.received(obj(R"({"response":200,"time":1,"account_name":"Alice","room":"#general"})"), noon);
  CHECK(s.me() == "Alice");
}

TEST_CASE("Room replies move the prompt's room and say so", "[client][state]") {
  auto s = signed_in();
  s.sent(request_of("/create dev"));
  auto r = s.received(obj(R"({"response":201,"time":1,"room":"#dev","password":"XyZ"})"), noon);
  CHECK(s.room() == "#dev");
  REQUIRE(r.lines.size() == 2);
  CHECK(r.lines[0].text == "* created #dev; you own it and are in it. Its password: XyZ");
  CHECK(r.lines[1].text == "  (others enter with /join dev XyZ, or /invite them)");

  s.sent(request_of("/exit"));
  CHECK(texts(s.received(obj(R"({"response":200,"time":1,"room":"#general"})"), noon)) ==
        std::vector<std::string>{"* back in #general"});
  CHECK(s.room() == "#general");

  s.sent(request_of("/join dev"));
  CHECK(texts(s.received(obj(R"({"response":200,"time":1,"room":"#dev"})"), noon)) ==
        std::vector<std::string>{"* you are in #dev"});
  CHECK(s.room() == "#dev");
}

TEST_CASE("A failed request is an error line with its reason, and counts", "[client][state]") {
  auto s = signed_in();
  s.sent(request_of("/join dev nope"));
  auto r = s.received(obj(R"({"response":403,"time":1,"error":"wrong password for #dev"})"), noon);
  CHECK(r.lines == std::vector<out_line>{{tone::error, "! wrong password for #dev"}});
  CHECK(s.room() == "#general");
  CHECK(s.failures() == 1);

  s.sent(request_of("/invite bob"));
  r = s.received(obj(R"({"response":403,"time":1})"), noon);
  CHECK(texts(r) == std::vector<std::string>{"! /invite failed"});
  CHECK(s.failures() == 2);
}

TEST_CASE("Replies are matched with their requests in order", "[client][state]") {
  auto s = signed_in();
  s.sent(request_of("hello"));
  s.sent(request_of("/msg Carol later"));
  s.sent(request_of("/invite bob"));
  CHECK(s.in_flight() == 3);
  CHECK(s.received(obj(R"({"response":200,"time":1,"id":7,"delivered":2})"), noon).lines.empty());
  CHECK(texts(s.received(obj(R"({"response":202,"time":1,"id":8,"delivered":0})"), noon)) ==
        std::vector<std::string>{"* Carol is offline: the message waits for their next sign-in"});
  CHECK(texts(s.received(obj(R"({"response":200,"time":1,"room":"#dev","user":"Bob"})"), noon)) ==
        std::vector<std::string>{"* invited Bob to #dev"});
  CHECK(s.in_flight() == 0);
}

TEST_CASE("History, users and rooms replies are listed", "[client][state]") {
  utc tz;
  auto s = signed_in();
  s.sent(request_of("/history 2"));
  auto h = obj(R"({"response":200,"time":1,"room":"#general","messages":[
      {"id":1,"from":"bob","to":"#general","message":"one"},
      {"id":2,"from":"alice","to":"#general","message":"two"}]})");
  h["messages"].as_array()[0].as_object()["time"] = noon;
  h["messages"].as_array()[1].as_object()["time"] = noon + 60;
  CHECK(texts(s.received(h, noon)) ==
        std::vector<std::string>{"[history] bob (12:00): one", "[history] alice (12:01): two"});

  s.sent(request_of("/history"));
  CHECK(texts(s.received(obj(R"({"response":200,"time":1,"room":"#general","messages":[]})"), noon)) ==
        std::vector<std::string>{"* no messages in #general"});

  s.sent(request_of("/users"));
  CHECK(texts(s.received(obj(R"({"response":200,"time":1,"room":"#general","users":[
      {"account_name":"alice","status":"online"},{"account_name":"bob","status":"away"}]})"),
                         noon)) == std::vector<std::string>{"* in #general: alice, bob (away)"});

  s.sent(request_of("/rooms"));
  CHECK(texts(s.received(obj(R"({"response":200,"time":1,"rooms":[
      {"room":"#general","owner":null,"online":2,"member":true},
      {"room":"#dev","owner":"bob","online":1,"member":true},
      {"room":"#ops","owner":"alice","online":0,"member":true},
      {"room":"#x","owner":"bob","online":0,"member":false}]})"),
                         noon)) == std::vector<std::string>{"* rooms:", "  #general (2 online)",
                                                            "  #dev (1 online, owner bob, member)",
                                                            "  #ops (0 online, owner alice)", "  #x (0 online, owner bob)"});
}

TEST_CASE("Pushes become lines: messages, events, invitations, notices", "[client][state]") {
  utc tz;
  auto s = signed_in();
  auto m = obj(R"({"action":"msg","id":4,"from":"bob","to":"#general","message":"yo","history":true})");
  m["time"] = noon;
  CHECK(texts(s.received(m, noon)) == std::vector<std::string>{"[history] bob (12:00): yo"});
  CHECK(texts(s.received(obj(R"({"action":"event","event":"join","room":"#dev","user":"bob"})"), noon)) ==
        std::vector<std::string>{"* bob joined #dev"});
  CHECK(texts(s.received(obj(R"({"action":"event","event":"leave","room":"#dev","user":"bob"})"), noon)) ==
        std::vector<std::string>{"* bob left #dev"});
  CHECK(texts(s.received(obj(R"({"action":"invite","from":"bob","room":"#dev"})"), noon)) ==
        std::vector<std::string>{"* bob invited you to #dev (/join dev)"});
  auto n = s.received(obj(R"({"action":"notice","text":"server shutting down"})"), noon);
  CHECK(n.lines == std::vector<out_line>{{tone::error, "! server: server shutting down"}});
  CHECK(s.last_notice() == "server shutting down");
  CHECK(s.in_flight() == 0);
}

TEST_CASE("A probe is answered with a silent presence", "[client][state]") {
  auto s = signed_in();
  auto r = s.received(obj(R"({"action":"probe"})"), noon);
  CHECK(r.lines.empty());
  REQUIRE(r.answer);
  CHECK(*r.answer == obj(R"({"action":"presence"})"));
  CHECK(s.in_flight() == 1);
  CHECK(s.received(obj(R"({"response":200,"time":1,"account_name":"alice","room":"#general"})"), noon).lines.empty());
  CHECK(s.failures() == 0);
}


TEST_CASE("/logout becomes logout, /logout all revokes every token", "[client][commands]") {
  CHECK(request_of("/logout") == obj(R"({"action":"logout"})"));
  CHECK(request_of("/LOGOUT all") == obj(R"({"action":"logout","all":true})"));
  CHECK(is_usage("/logout everything"));
  CHECK(is_usage("/logout all now"));
}

TEST_CASE("A quiet sign-in that fails shows nothing and is no failure", "[client][state]") {
  chat_state s("alice");
  s.sent(obj(R"({"action":"authenticate","user":{"account_name":"alice","token":"t"}})"), true);
  CHECK(s.received(obj(R"({"response":402,"time":1,"error":"wrong token"})"), noon).lines.empty());
  CHECK(s.failures() == 0);
  s.sent(obj(R"({"action":"authenticate","user":{"account_name":"alice","token":"t"}})"), true);
  const auto reply = obj(R"({"response":200,"time":1,"room":"#general","missed":2,"account_name":"Alice"})");
  CHECK(s.received(reply, noon).lines.empty());
  CHECK(s.me() == "Alice");
  CHECK(s.signed_in_line(reply, true).text == "* reconnected as Alice; you are in #general (2 new messages while disconnected)");
  CHECK(s.signed_in_line(reply, false).text ==
        "* signed in as Alice; you are in #general (2 new messages since your last visit)");
}

TEST_CASE("A lost connection keeps the queue and reports what was in flight", "[client][state]") {
  auto s = signed_in();
  s.submit(obj(R"({"action":"msg","message":"one"})"));
  s.submit(obj(R"({"action":"msg","message":"two"})"));
  CHECK(s.take_sendable(chat_state::clock::now()).size() == 1);  // "two" waits for one's reply
  auto lines = s.lose_in_flight("connection lost");
  REQUIRE(lines.size() == 1);
  CHECK(lines[0].text == "! perhaps not sent: one (connection lost before the server answered)");
  CHECK(s.in_flight() == 0);
  CHECK(!s.outbox_empty());
  auto next = s.take_sendable(chat_state::clock::now());
  REQUIRE(next.size() == 1);
  CHECK(next[0].at("message") == "two");
}

TEST_CASE("After a reconnect, history already seen is not shown again", "[client][state]") {
  utc tz;
  auto s = signed_in();
  auto push = [&](std::string_view text) { return texts(s.received(obj(text), noon)); };
  CHECK(push(R"({"action":"msg","id":5,"time":1,"from":"bob","to":"#general","message":"live"})").size() == 1);
  // Before a reconnect a history push shows as it always did.
  CHECK(push(R"({"action":"msg","id":5,"time":1,"from":"bob","to":"#general","message":"live","history":true})").size() == 1);
  s.hide_seen_history();
  CHECK(push(R"({"action":"msg","id":4,"time":1,"from":"bob","to":"#general","message":"old","history":true})").empty());
  CHECK(push(R"({"action":"msg","id":5,"time":1,"from":"bob","to":"#general","message":"live","history":true})").empty());
  CHECK(push(R"({"action":"msg","id":7,"time":1,"from":"bob","to":"#general","message":"missed","history":true})").size() == 1);
  // Another room has its own count: its history was never seen here.
  CHECK(push(R"({"action":"msg","id":3,"time":1,"from":"bob","to":"#den","message":"den","history":true})").size() == 1);
  // Live pushes always show.
  CHECK(push(R"({"action":"msg","id":6,"time":1,"from":"bob","to":"#general","message":"late"})").size() == 1);
}

// ---- issue 16: edits, schedules, moderation, contacts ----------------------------------------

TEST_CASE("Message ids are digits, optionally after #, at least 1", "[client][commands]") {
  CHECK(parse_id("42") == 42);
  CHECK(parse_id("#42") == 42);
  CHECK(parse_id("9223372036854775807") == std::numeric_limits<std::int64_t>::max());
  CHECK_FALSE(parse_id(""));
  CHECK_FALSE(parse_id("#"));
  CHECK_FALSE(parse_id("0"));
  CHECK_FALSE(parse_id("-1"));
  CHECK_FALSE(parse_id("+1"));
  CHECK_FALSE(parse_id("4x"));
  CHECK_FALSE(parse_id("##4"));
  CHECK_FALSE(parse_id("9223372036854775808"));  // overflows
}

TEST_CASE("/at TIME: HH:MM is the next such local time, +N counts from now", "[client][commands]") {
  utc tz;
  CHECK(parse_at("18:30", noon) == noon + 6 * 3600 + 30 * 60);
  CHECK(parse_at("9:05", noon) == noon + 86400 - 3 * 3600 + 5 * 60);  // passed today: tomorrow
  CHECK(parse_at("12:00", noon) == noon + 86400);                     // now is not ahead
  CHECK(parse_at("12:01", noon) == noon + 60);
  CHECK(parse_at("00:00", noon) == noon + 12 * 3600);
  CHECK(parse_at("23:59", noon) == noon + 11 * 3600 + 59 * 60);
  CHECK(parse_at("+90s", noon) == noon + 90);
  CHECK(parse_at("+10m", noon) == noon + 600);
  CHECK(parse_at("+2h", noon) == noon + 7200);
  CHECK(parse_at("+1d", noon) == noon + 86400);
  CHECK(parse_at("+1h30m", noon) == noon + 5400);
  CHECK(parse_at("+10M", noon) == noon + 600);
  // No upper bound of jim's own: the server's --schedule-max decides (its 400 says so).
  CHECK(parse_at("+4000d", noon) == noon + 4000 * 86400);
  for (auto bad : {"", "+", "+10", "+m", "+10x", "+0s", "+-5m", "+5m-", "+ 5m", "10m", "24:00", "12:60", "1230",
                   ":30", "123:00", "12:5", "12:345", "ab:cd", "12:3x", "+99999999999999999999s", "+99999999999999999999d", "+11y"}) {
    INFO("TIME " << bad);
    CHECK_FALSE(parse_at(bad, noon));
  }
}

TEST_CASE("/at TIME: a local time honours the time zone", "[client][commands]") {
  setenv("TZ", "XYZ-1", 1);  // POSIX form, no zone data needed: one hour east of UTC
  tzset();
  // noon UTC is 13:00 there: 18:30 there is 17:30 UTC; 12:30 there is tomorrow.
  CHECK(parse_at("18:30", noon) == noon + 5 * 3600 + 30 * 60);
  CHECK(parse_at("12:30", noon) == noon + 86400 - 30 * 60);
  utc back;
}

TEST_CASE("The new commands become their requests", "[client][commands]") {
  utc tz;
  auto at = [](std::string_view line) { return request_of(line, noon); };
  CHECK(request_of("/edit 42 hello,  world ") == obj(R"({"action":"edit","id":42,"message":"hello,  world"})"));
  CHECK(request_of("/edit #42 fixed") == obj(R"({"action":"edit","id":42,"message":"fixed"})"));
  CHECK(request_of("/delete 42") == obj(R"({"action":"delete","id":42})"));
  CHECK(request_of("/DELETE #7") == obj(R"({"action":"delete","id":7})"));
  CHECK(request_of("/ids on") == obj(R"({"action":"ids","on":true})"));
  CHECK(request_of("/ids OFF") == obj(R"({"action":"ids","on":false})"));
  CHECK(at("/at 18:30 stand-up in 5") == json::object{{"action", "msg"}, {"message", "stand-up in 5"}, {"at", noon + 6 * 3600 + 1800}});
  CHECK(at("/at +90s tea") == json::object{{"action", "msg"}, {"message", "tea"}, {"at", noon + 90}});
  CHECK(request_of("/scheduled") == obj(R"({"action":"scheduled"})"));
  CHECK(request_of("/cancel 3") == obj(R"({"action":"cancel","scheduled":3})"));
  CHECK(request_of("/report mallory") == obj(R"({"action":"report","user":"mallory"})"));
  CHECK(request_of("/report mallory spam links ") == obj(R"({"action":"report","user":"mallory","reason":"spam links"})"));
  CHECK(request_of("/kick bob") == obj(R"({"action":"kick","user":"bob"})"));
  CHECK(request_of("/kick bob den") == obj(R"({"action":"kick","user":"bob","room":"den"})"));
  CHECK(request_of("/ban bob #den") == obj(R"({"action":"ban","user":"bob","room":"#den"})"));
  CHECK(request_of("/ban bob * spamming everywhere") ==
        obj(R"({"action":"ban","user":"bob","room":"*","reason":"spamming everywhere"})"));
  CHECK(request_of("/unban bob") == obj(R"({"action":"unban","user":"bob"})"));
  CHECK(request_of("/unban bob *") == obj(R"({"action":"unban","user":"bob","room":"*"})"));
  CHECK(request_of("/contacts") == obj(R"({"action":"get_contacts"})"));
  CHECK(request_of("/add Bob") == obj(R"({"action":"add_contact","user_id":"Bob"})"));
  CHECK(request_of("/del bob") == obj(R"({"action":"del_contact","user_id":"bob"})"));
}

TEST_CASE("The new commands with wrong arguments get their usage line", "[client][commands]") {
  auto hint = [](std::string_view line) {
    auto in = parse_input(line, noon);
    INFO("line: " << line);
    REQUIRE(std::holds_alternative<usage_hint>(in));
    return std::get<usage_hint>(in).text;
  };
  CHECK(hint("/edit") == "! usage: /edit ID TEXT   (ID: the message's id, shown by /ids on)");
  CHECK(hint("/edit 42") == hint("/edit"));
  CHECK(hint("/edit x text") == hint("/edit"));
  CHECK(hint("/edit 0 text") == "! no such id: 0 (ids start at 1)");
  CHECK(hint("/delete") == "! usage: /delete ID   (ID: the message's id, shown by /ids on)");
  CHECK(hint("/delete 4 5") == hint("/delete"));
  CHECK(hint("/delete -4") == hint("/delete"));
  CHECK(hint("/ids") == "! usage: /ids on|off   (show message ids: [#42])");
  CHECK(hint("/ids yes") == hint("/ids"));
  CHECK(hint("/at") ==
        "! usage: /at TIME TEXT   (TIME: HH:MM, the next such local time, or +N with s, m, h or d: +10m, +2h)");
  CHECK(hint("/at +10m") == hint("/at"));
  CHECK(hint("/at 25:00 late") == "! 25:00: no such time of day (HH:MM runs from 00:00 to 23:59)");
  CHECK(hint("/at soon text") == hint("/at"));
  CHECK(hint("/scheduled all") == "! usage: /scheduled   (your messages waiting for their time)");
  CHECK(hint("/cancel") == "! usage: /cancel ID   (ID: a scheduled message's number, shown by /scheduled)");
  CHECK(hint("/cancel three") == hint("/cancel"));
  CHECK(hint("/report") == "! usage: /report USER [REASON]");
  CHECK(hint("/kick") == "! usage: /kick USER [ROOM]   (ROOM: this room if not given)");
  CHECK(hint("/kick bob den now") == hint("/kick"));
  CHECK(hint("/kick bob *") == hint("/kick"));  // no server-wide kick
  CHECK(hint("/ban") == "! usage: /ban USER [ROOM]   (ROOM: this room if not given; an admin: /ban USER * [REASON])");
  CHECK(hint("/ban bob den because") == hint("/ban"));  // a reason only for the server-wide ban
  CHECK(hint("/unban") == "! usage: /unban USER [ROOM]   (ROOM: this room if not given; an admin: /unban USER *)");
  CHECK(hint("/unban bob * sorry") == hint("/unban"));
  CHECK(hint("/contacts bob") == "! usage: /contacts");
  CHECK(hint("/add") == "! usage: /add USER   (to your contacts)");
  CHECK(hint("/add bob carol") == hint("/add"));
  CHECK(hint("/del") == "! usage: /del USER   (from your contacts)");
}

TEST_CASE("An id or a time out of range gets its reason, not only the usage line",
          "[client][commands]") {
  auto hint = [](std::string_view line) {
    auto in = parse_input(line, noon);
    INFO("line: " << line);
    REQUIRE(std::holds_alternative<usage_hint>(in));
    return std::get<usage_hint>(in).text;
  };
  CHECK(hint("/at +0s x") == "! +0s: the time must be in the future (+N after now, or HH:MM)");
  CHECK(hint("/at +0m0s x") == "! +0m0s: the time must be in the future (+N after now, or HH:MM)");
  CHECK(hint("/at -5s x") == "! -5s: the time must be in the future (+N after now, or HH:MM)");
  // Beyond an int64: jim says so, and claims no limit of the server's.
  CHECK(hint("/at +99999999999999999999s x") ==
        "! +99999999999999999999s: too far ahead (more than jim can count; the server takes what its "
        "--schedule-max allows)");
  CHECK(hint("/at +99999999999999999999d x").starts_with("! +99999999999999999999d: too far ahead (more than"));
  CHECK(hint("/at +9223372036854775807s x").starts_with("! +9223372036854775807s: too far ahead"));  // past int64 from now
  CHECK(hint("/at 24:00 x") == "! 24:00: no such time of day (HH:MM runs from 00:00 to 23:59)");
  CHECK(hint("/edit 99999999999999999999999 t") ==
        "! no such id: 99999999999999999999999 is too large");
  CHECK(hint("/edit #9223372036854775808 t") == "! no such id: #9223372036854775808 is too large");
  CHECK(hint("/delete 99999999999999999999") == "! no such id: 99999999999999999999 is too large");
  CHECK(hint("/cancel 99999999999999999999") == "! no such id: 99999999999999999999 is too large");
  CHECK(hint("/cancel 0") == "! no such id: 0 (ids start at 1)");
  // A malformed TIME: the precise reason.
  CHECK(hint("/at +5x x") == "! +5x: unknown unit x (s, m, h or d)");
  CHECK(hint("/at +11y x") == "! +11y: unknown unit y (s, m, h or d)");
  CHECK(hint("/at +1min x") == "! +1min: unknown unit min (s, m, h or d)");
  CHECK(hint("/at +s x") == "! +s: a number must come before s (+10m, +2h)");
  CHECK(hint("/at + x") == "! +: a number and a unit must follow + (+10m, +2h)");
  CHECK(hint("/at +5 x") == "! +5: a unit must follow 5 (s, m, h or d)");
  CHECK(hint("/at +1h30 x") == "! +1h30: a unit must follow 30 (s, m, h or d)");
  CHECK(hint("/at +-5m x") == "! +-5m: unexpected - (+N with a unit: s, m, h or d)");
  CHECK(hint("/at 7:5 x") == "! 7:5: minutes must be two digits (HH:MM, e.g. 18:05)");
  CHECK(hint("/at 12:345 x") == "! 12:345: minutes must be two digits (HH:MM, e.g. 18:05)");
  CHECK(hint("/at 123:45 x") == "! 123:45: hours must be one or two digits (HH:MM, e.g. 18:30)");
  CHECK(hint("/at 1830 x") == "! 1830: a time of day needs a colon (HH:MM, e.g. 18:30)");
  CHECK(hint("/at 6pm x") == "! 6pm: a time of day is HH:MM (e.g. 18:30), a delay +N with a unit (+10m)");
  // Not shaped like a TIME at all: the usage line says what is wanted.
  CHECK(hint("/at soon x").starts_with("! usage: /at TIME TEXT"));
  CHECK(hint("/at :30 x").starts_with("! usage: /at TIME TEXT"));
  CHECK(hint("/edit -1 t").starts_with("! usage: /edit ID TEXT"));
  CHECK(hint("/cancel 1 2").starts_with("! usage: /cancel ID"));
  CHECK(id_problem("42").empty());
  CHECK(at_problem("+10m", noon).empty());
  CHECK(at_problem("soon", noon).empty());
  // Far ahead but countable: sent, for the server to judge (no "10 years" of jim's own).
  auto in = parse_input("/at +3661d x", noon);
  REQUIRE(std::holds_alternative<send_request>(in));
  CHECK(std::get<send_request>(in).frame.at("at") == noon + 3661 * 86400);
}

TEST_CASE("A line with a control character other than tab is not sent, and is offered again",
          "[client][commands]") {
  auto refused = [](std::string_view line) {
    auto in = parse_input(line, noon);
    INFO("line: " << line);
    REQUIRE(std::holds_alternative<usage_hint>(in));
    CHECK(std::get<usage_hint>(in).edit_again);
    return std::get<usage_hint>(in).text;
  };
  CHECK(refused("red \x1b[31mtext") ==
        "! not sent: the line has a control character, ^[ (U+001B), at character 5; jim sends none but tab");
  CHECK(refused("ring\a") == "! not sent: the line has a control character, ^G (U+0007), at character 5; jim sends none but tab");
  CHECK(refused(std::string("nul\0byte", 8)).find("^@ (U+0000), at character 4") != std::string::npos);
  CHECK(refused("del\x7f").find("^? (U+007F), at character 4") != std::string::npos);
  CHECK(refused("caf\xc3\xa9 \xc2\x85next").find("U+0085, at character 6") != std::string::npos);  // C1 NEL
  CHECK(refused("a\rb").find("^M (U+000D)") != std::string::npos);  // only a trailing CR is a line end
  CHECK(refused("/msg bob \x1b]0;title\x07").find("^[ (U+001B), at character 10") != std::string::npos);
  CHECK(refused("/at +1m \x07").find("^G") != std::string::npos);
  // Tab is text; so are other characters of U+0080 and above.
  CHECK(request_of("a\tb") == obj(R"({"action":"msg","message":"a\tb"})"));
  CHECK(request_of("\xc2\xa0nbsp \xe2\x80\x8b") == json::object{{"action", "msg"}, {"message", "\xc2\xa0nbsp \xe2\x80\x8b"}});
  CHECK(control_problem("plain text, caf\xc3\xa9").empty());
  // Other refusals are not offered again.
  auto in = parse_input("/nosuch", noon);
  REQUIRE(std::holds_alternative<usage_hint>(in));
  CHECK_FALSE(std::get<usage_hint>(in).edit_again);
}

TEST_CASE("Tab completes the new commands and their names, rooms and on|off", "[client][commands]") {
  const std::vector<std::string> names{"bob", "carol"};
  const std::vector<std::string> rooms{"#den", "#general"};
  CHECK(completions("", "/de", names, rooms) == std::vector<std::string>{"/del", "/delete"});
  CHECK(completions("", "/sc", names, rooms) == std::vector<std::string>{"/scheduled"});
  CHECK(completions("", "/co", names, rooms) == std::vector<std::string>{"/contacts", "/conversations"});
  CHECK(completions("", "/u", names, rooms) == std::vector<std::string>{"/unban", "/users"});
  CHECK(completions("/kick ", "b", names, rooms) == std::vector<std::string>{"bob"});
  CHECK(completions("/ban bob ", "d", names, rooms) == std::vector<std::string>{"den"});
  CHECK(completions("/report ", "c", names, rooms) == std::vector<std::string>{"carol"});
  CHECK(completions("/add ", "", names, rooms) == names);
  CHECK(completions("/ids ", "o", names, rooms) == std::vector<std::string>{"off", "on"});
  for (auto c : {"/edit", "/delete", "/ids", "/at", "/scheduled", "/cancel", "/report", "/kick", "/ban", "/unban",
                 "/contacts", "/add", "/del"}) {
    INFO(c);
    CHECK(completions("", c, names, rooms).front() == c);
    CHECK(help_text().find(std::string(c) + " ") != std::string_view::npos);
  }
}
