// The irssi-like view of a terminal (chat_settings::activity): watching every room, the activity
// line, entering a room or a query with its unread messages under a divider, read markers.
#include "client_test_support.hpp"
#include "commands.hpp"

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <catch2/catch.hpp>

#include <cstdlib>
#include <ctime>

using namespace jim::client;
namespace json = boost::json;

namespace {

using namespace jim::client::test;

chat_settings terminal() {
  chat_settings c;
  c.show_own = true;
  c.activity = true;
  return c;
}

/// A message push (or history element) as the server writes it.
json::object msg(std::int64_t id, std::string_view from, std::string_view to,
                 std::string_view text) {
  return {{"action", "msg"}, {"id", id}, {"time", noon},
          {"from", from},    {"to", to}, {"message", text}};
}

json::object history_reply(std::string_view key, std::string_view value,
                           std::vector<json::object> const& messages) {
  json::array a;
  for (auto const& m : messages) {
    json::object e = m;
    e.erase("action");
    a.push_back(e);
  }
  json::object r{{"response", 200}, {"time", noon}, {"messages", a}};
  r[key] = value;
  return r;
}

/// alice signed in on a terminal, with #den 3 unread, bob 1 unread, #general 2 unread (of 3).
chat_state signed_in_with_activity() {
  chat_state s("alice", terminal());
  s.sent(obj(R"({"action":"authenticate","user":{"password":"pw"}})"));
  s.received(obj(R"({"response":200,"time":1,"room":"#general","missed":2})"), noon);
  // Pushed history of #general is not shown: the view's history comes with its divider.
  CHECK(
      s.received(
           obj(R"({"action":"msg","id":5,"time":1,"from":"bob","to":"#general","message":"x","history":true})"),
           noon)
          .lines.empty());
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"watch","rooms":"all"})",
                                             R"({"action":"rooms"})",
                                             R"({"action":"conversations"})"});
  s.received(obj(R"({"response":200,"time":1,"rooms":["#den","#general"],"all":true})"), noon);
  s.received(obj(R"({"response":200,"time":1,"rooms":[
      {"room":"#general","owner":null,"online":2,"member":true,"last_read":3,"unread":2},
      {"room":"#den","owner":"bob","online":1,"member":true,"last_read":0,"unread":3},
      {"room":"#attic","owner":"bob","online":1,"member":false,"last_read":0,"unread":0}]})"),
             noon);
  CHECK(s.prompt() == "[#den 3] #general> ");
  // The view's history: its two unread and context.
  CHECK(sends(s) ==
        std::vector<std::string>{R"({"action":"history","limit":7,"room":"#general"})"});
  auto r = s.received(obj(R"({"response":200,"time":1,"conversations":[
      {"with":"bob","last":{"action":"msg","id":9,"time":1,"from":"bob","to":"alice","message":"psst"},"unread":1}]})"),
                      noon);
  CHECK(texts(r.lines) == std::vector<std::string>{
                              "* new messages in [#den 3] [@bob 1] (/switch ROOM, /query NAME)"});
  r = s.received(
      history_reply("room", "#general",
                    {msg(2, "bob", "#general", "old"), msg(3, "alice", "#general", "mine"),
                     msg(5, "bob", "#general", "x"), msg(6, "carol", "#general", "y")}),
      noon);
  CHECK(texts(r.lines) ==
        std::vector<std::string>{"[history] bob (12:00): old", "[history] alice (12:00): mine",
                                 "--- new messages ---", "bob (12:00): x", "carol (12:00): y"});
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"read","id":6,"room":"#general"})"});
  s.received(obj(R"({"response":200,"time":1,"room":"#general","last_read":6})"), noon);
  CHECK(s.in_flight() == 0);
  return s;
}

}  // namespace

TEST_CASE("The activity line is one bracket per room or person, bounded", "[client][activity]") {
  CHECK(activity_line({}).empty());
  CHECK(activity_line({{"#den", 3}, {"@bob", 1}}) == "[#den 3] [@bob 1]");
  CHECK(activity_line({{"#den", 0}, {"@bob", 1}}) == "[@bob 1]");
  CHECK(activity_line({{"#a", 1}, {"#b", 2}, {"#c", 3}}, 2) == "[#a 1] [#b 2] [+1]");
}

TEST_CASE("After sign-in jim watches every room and shows where something is unread",
          "[client][activity]") {
  utc tz;
  auto s = signed_in_with_activity();
  CHECK(s.prompt() == "[#den 3] [@bob 1] #general> ");
  CHECK(s.failures() == 0);
}

TEST_CASE("Lines of other rooms and private messages are counted, not printed",
          "[client][activity]") {
  utc tz;
  auto s = signed_in_with_activity();
  CHECK(s.received(msg(10, "bob", "#den", "elsewhere"), noon).lines.empty());
  CHECK(s.received(msg(11, "bob", "alice", "again"), noon).lines.empty());
  CHECK(s.received(msg(12, "carol", "alice", "hi"), noon).lines.empty());
  // Written by alice on another device: nothing new.
  CHECK(s.received(msg(13, "alice", "#den", "me elsewhere"), noon).lines.empty());
  CHECK(s.prompt() == "[#den 4] [@bob 2] [@carol 1] #general> ");
  CHECK(texts(s.received(msg(14, "bob", "#general", "here"), noon).lines) ==
        std::vector<std::string>{"bob (12:00): here"});
  // Comings and goings of other rooms are not worth a line; a status change is.
  CHECK(s.received(obj(R"({"action":"event","event":"join","room":"#den","user":"carol"})"), noon)
            .lines.empty());
  CHECK(s.received(obj(R"({"action":"event","event":"online","room":"#general","online":4})"), noon)
            .lines.empty());
  CHECK(texts(s.received(obj(R"({"action":"event","event":"status","user":"bob","status":"away"})"),
                         noon)
                  .lines) == std::vector<std::string>{"* bob is away"});
  CHECK(
      texts(s.received(obj(R"({"action":"event","event":"status","user":"bob","status":"lunch"})"),
                       noon)
                .lines) == std::vector<std::string>{"* bob is away: lunch"});
  // Read on another device: cleared here too.
  s.received(obj(R"({"action":"read","room":"#den","id":13})"), noon);
  CHECK(s.prompt() == "[@bob 2] [@carol 1] #general> ");
}

TEST_CASE("/switch shows a room's unread messages under a divider and marks them read",
          "[client][activity]") {
  utc tz;
  auto s = signed_in_with_activity();
  CHECK(s.received(msg(7, "bob", "#general", "seen here"), noon).lines.size() == 1);
  CHECK(s.submit(request_of("/switch den")).empty());
  // What #general showed is read now that the user acts.
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"read","id":7,"room":"#general"})",
                                             R"({"action":"join","room":"den"})"});
  s.received(obj(R"({"response":200,"time":1,"room":"#general","last_read":7})"), noon);
  auto r = s.received(obj(R"({"response":200,"time":1,"room":"#den"})"), noon);
  CHECK(texts(r.lines) == std::vector<std::string>{"* you are in #den"});
  // Pushed history of the room is replaced by the view's.
  CHECK(s.received(msg(8, "bob", "#den", "d1"), noon).lines.empty() == false);  // a live one shows
  json::object pushed = msg(4, "bob", "#den", "d0");
  pushed["history"] = true;
  CHECK(s.received(pushed, noon).lines.empty());
  // The counts, then the history.
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"rooms"})"});
  s.received(obj(R"({"response":200,"time":1,"rooms":[
      {"room":"#general","owner":null,"online":2,"member":true,"last_read":7,"unread":0},
      {"room":"#den","owner":"bob","online":1,"member":true,"last_read":0,"unread":4}]})"),
             noon);
  CHECK(s.prompt() == "[@bob 1] #den> ");
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"history","limit":9,"room":"#den"})"});
  r = s.received(history_reply("room", "#den",
                               {msg(1, "bob", "#den", "a"), msg(4, "bob", "#den", "d0"),
                                msg(6, "alice", "#den", "mine"), msg(8, "bob", "#den", "d1"),
                                msg(9, "carol", "#den", "d2")}),
                 noon);
  // d1 was shown live while the history was on its way: not again.
  CHECK(texts(r.lines) == std::vector<std::string>{"--- new messages ---", "bob (12:00): a",
                                                   "bob (12:00): d0", "alice (12:00): mine",
                                                   "carol (12:00): d2"});
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"read","id":9,"room":"#den"})"});
}

TEST_CASE("/switch to a room one is not a member of says so", "[client][activity]") {
  auto s = signed_in_with_activity();
  s.submit(request_of("/switch attic"));
  sends(s);
  auto r = s.received(obj(R"({"response":403,"time":1,"error":"wrong room password"})"), noon);
  CHECK(texts(r.lines) ==
        std::vector<std::string>{"! you are not a member of attic (/join ROOM PASSWORD)"});
  CHECK(s.room() == "#general");
}

TEST_CASE("/query opens a conversation view with its history, typed lines go there",
          "[client][activity]") {
  utc tz;
  auto s = signed_in_with_activity();
  s.submit(request_of("/query BOB"));
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"history","with":"BOB","limit":1})"});
  auto r = s.received(history_reply("with", "bob", {msg(9, "bob", "alice", "psst")}), noon);
  CHECK(texts(r.lines) ==
        std::vector<std::string>{
            "* talking privately with bob (/query alone or /switch ROOM leaves)"});
  CHECK(s.view() == "bob");
  CHECK(s.prompt() == "[#den 3] @bob> ");
  // Nothing new was shown in #general since it was marked read: no read, just the counts.
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"conversations"})"});
  s.received(obj(R"({"response":200,"time":1,"conversations":[
      {"with":"bob","last":{"action":"msg","id":9,"time":1,"from":"bob","to":"alice","message":"psst"},"unread":1}]})"),
             noon);
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"history","limit":6,"with":"bob"})"});
  r = s.received(history_reply("with", "bob",
                               {msg(8, "alice", "bob", "hello"), msg(9, "bob", "alice", "psst")}),
                 noon);
  CHECK(texts(r.lines) == std::vector<std::string>{"[history] alice (12:00): hello",
                                                   "--- new messages ---", "bob (12:00): psst"});
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"read","id":9,"with":"bob"})"});
  s.received(obj(R"({"response":200,"time":1,"with":"bob","last_read":9})"), noon);
  // What is typed now goes to bob, and his messages show in the view; #general's are counted.
  s.submit(request_of("how are you?"));
  CHECK(sends(s) ==
        std::vector<std::string>{R"({"action":"msg","message":"how are you?","to":"bob"})"});
  r = s.received(obj(R"({"response":200,"id":20,"delivered":1})"), noon);
  CHECK(texts(r.lines) == std::vector<std::string>{"alice (12:00): how are you?"});
  CHECK(texts(s.received(msg(21, "bob", "alice", "fine"), noon).lines) ==
        std::vector<std::string>{"bob (12:00): fine"});
  CHECK(s.received(msg(22, "carol", "#general", "meanwhile"), noon).lines.empty());
  CHECK(s.prompt() == "[#den 3] [#general 1] @bob> ");
  // /query alone leaves it: back in #general, with what was said there.
  CHECK(texts(s.submit(request_of("/query"))) ==
        std::vector<std::string>{"* closed the query with bob; back in #general"});
  CHECK(s.view() == "#general");
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"read","id":21,"with":"bob"})",
                                             R"({"action":"rooms"})"});
  CHECK(texts(s.submit(request_of("/query"))) ==
        std::vector<std::string>{"* no query is open (/query NAME opens one)"});
}

TEST_CASE("/switch closes an open query", "[client][activity]") {
  auto s = signed_in_with_activity();
  s.submit(request_of("/query bob"));
  sends(s);
  s.received(history_reply("with", "bob", {}), noon);
  CHECK(s.query() == "bob");
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"conversations"})"});
  s.submit(request_of("/switch #den"));
  s.received(obj(R"({"response":200,"time":1,"conversations":[]})"), noon);  // the query's counts
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"join","room":"#den"})",
                                             R"({"action":"history","limit":5,"with":"bob"})"});
  s.received(obj(R"({"response":200,"time":1,"room":"#den"})"), noon);
  // The query's history, come too late: not shown.
  CHECK(s.received(history_reply("with", "bob", {msg(9, "bob", "alice", "psst")}), noon)
            .lines.empty());
  CHECK(s.query().empty());
  CHECK(s.view() == "#den");
}

TEST_CASE("/me sends an action and shows it as one", "[client][activity]") {
  utc tz;
  auto s = signed_in_with_activity();
  CHECK(request_of("/me waves at everyone") == obj(R"({"action":"me","message":"waves at everyone"})"));
  s.submit(request_of("/me waves at everyone"));
  CHECK(sends(s) ==
        std::vector<std::string>{R"({"action":"msg","message":"* alice waves at everyone"})"});
  auto r = s.received(obj(R"({"response":200,"id":30,"delivered":1})"), noon);
  CHECK(texts(r.lines) == std::vector<std::string>{"* alice waves at everyone (12:00)"});
  CHECK(
      render_message(msg(31, "bob", "#den", "* bob nods"), "alice", "#general", false, noon).text ==
      "[#den] * bob nods (12:00)");
  // Not an action: someone else's name after the star.
  CHECK(render_message(msg(32, "bob", "#general", "* carol nods"), "alice", "#general", false, noon)
            .text == "bob (12:00): * carol nods");
}

TEST_CASE("/who, /names, /away, /back, /conversations, /part become their requests",
          "[client][activity]") {
  CHECK(request_of("/who") == obj(R"({"action":"users","room":"*"})"));
  CHECK(request_of("/names") == obj(R"({"action":"users"})"));
  CHECK(request_of("/away") == obj(R"({"action":"presence","user":{"status":"away"}})"));
  CHECK(request_of("/away  at lunch ") == obj(R"({"action":"presence","user":{"status":"at lunch"}})"));
  CHECK(std::holds_alternative<usage_hint>(parse_input("/away " + std::string(65, 'x'))));
  CHECK(std::holds_alternative<send_request>(parse_input("/away " + std::string(64, 'x'))));
  CHECK(request_of("/back") == obj(R"({"action":"presence","user":{"status":"online"}})"));
  CHECK(request_of("/conversations") == obj(R"({"action":"conversations"})"));
  CHECK(request_of("/part") == obj(R"({"action":"exit"})"));
  CHECK(request_of("/leave") == obj(R"({"action":"exit"})"));
  CHECK(request_of("/switch #den") == obj(R"({"action":"switch","room":"#den"})"));
  CHECK(request_of("/query bob") == obj(R"({"action":"query","with":"bob"})"));
  CHECK(std::holds_alternative<usage_hint>(parse_input("/me")));
  CHECK(std::holds_alternative<usage_hint>(parse_input("/query a b")));
}

TEST_CASE("Replies of /who, /away and /conversations read well", "[client][activity]") {
  utc tz;
  auto s = signed_in_with_activity();
  s.submit(request_of("/who"));
  s.submit(request_of("/away lunch"));
  s.submit(request_of("/back"));
  s.submit(request_of("/conversations"));
  CHECK(sends(s).size() == 4);
  CHECK(texts(s.received(obj(R"({"response":200,"time":1,"room":"*","users":[
      {"account_name":"alice","status":"online"},{"account_name":"bob","status":"away"}]})"),
                         noon)
                  .lines) == std::vector<std::string>{"* signed in: alice, bob (away)"});
  CHECK(texts(s.received(obj(R"({"response":200,"time":1})"), noon).lines) ==
        std::vector<std::string>{"* you are marked away: lunch (/back when you are back)"});
  CHECK(texts(s.received(obj(R"({"response":200,"time":1})"), noon).lines) ==
        std::vector<std::string>{"* you are back (online)"});
  CHECK(texts(s.received(obj(R"({"response":200,"time":1,"conversations":[
      {"with":"bob","last":{"action":"msg","id":9,"time":1,"from":"bob","to":"alice","message":"psst"},"unread":1}]})"),
                         noon)
                  .lines) ==
        std::vector<std::string>{"* private conversations (/query NAME opens one):",
                                 "  bob (1 unread): bob (Thu 1 Jan 1970 00:00): psst"});
}

TEST_CASE("A script (no activity view) prints every push as before", "[client][activity]") {
  utc tz;
  chat_state s("alice");
  s.sent(obj(R"({"action":"authenticate","user":{"password":"pw"}})"));
  s.received(obj(R"({"response":200,"time":1,"room":"#general","missed":0})"), noon);
  CHECK(sends(s).empty());  // no watch, no counts
  CHECK(texts(s.received(msg(10, "bob", "alice", "hi"), noon).lines) ==
        std::vector<std::string>{"[private] bob (12:00): hi"});
}

TEST_CASE("After a reconnect only what was missed shows, and the activity is counted again",
          "[client][activity]") {
  utc tz;
  auto s = signed_in_with_activity();
  CHECK(s.received(msg(7, "bob", "#general", "seen live"), noon).lines.size() == 1);
  s.lose_in_flight("connection lost");
  s.hide_seen_history();
  s.sent(obj(R"({"action":"authenticate","user":{"account_name":"alice","token":"t"}})"), true);
  s.received(obj(R"({"response":200,"time":1,"room":"#general","missed":1})"), noon);
  CHECK(sends(s).size() == 3);
  s.received(obj(R"({"response":200,"time":1,"rooms":["#den","#general"],"all":true})"), noon);
  s.received(obj(R"({"response":200,"time":1,"rooms":[
      {"room":"#general","owner":null,"online":2,"member":true,"last_read":6,"unread":2},
      {"room":"#den","owner":"bob","online":1,"member":true,"last_read":0,"unread":5}]})"),
             noon);
  auto r = s.received(obj(R"({"response":200,"time":1,"conversations":[]})"), noon);
  CHECK(texts(r.lines) ==
        std::vector<std::string>{"* new messages in [#den 5] (/switch ROOM, /query NAME)"});
  CHECK(sends(s) ==
        std::vector<std::string>{R"({"action":"history","limit":7,"room":"#general"})"});
  r = s.received(
      history_reply("room", "#general",
                    {msg(6, "carol", "#general", "y"), msg(7, "bob", "#general", "seen live"),
                     msg(8, "bob", "#general", "missed")}),
      noon);
  CHECK(texts(r.lines) == std::vector<std::string>{"--- new messages ---", "bob (12:00): missed"});
  CHECK(s.prompt() == "[#den 5] #general> ");
}

TEST_CASE("Lines typed while a view's history is on its way are shown once", "[client][activity]") {
  utc tz;
  chat_state s("alice", terminal());
  s.sent(obj(R"({"action":"authenticate","user":{"password":"pw"}})"));
  s.received(obj(R"({"response":200,"time":1,"room":"#general","missed":0})"), noon);
  // A paste right after sign-in: it goes out before the view's history is asked for.
  s.submit(request_of("first"));
  CHECK(sends(s) == std::vector<std::string>{
                        R"({"action":"watch","rooms":"all"})", R"({"action":"rooms"})",
                        R"({"action":"conversations"})", R"({"action":"msg","message":"first"})"});
  s.received(obj(R"({"response":200,"time":1,"rooms":"all"})"), noon);
  s.received(obj(R"({"response":200,"time":1,"rooms":[
      {"room":"#general","owner":null,"online":1,"member":true,"last_read":0,"unread":0}]})"),
             noon);
  s.received(obj(R"({"response":200,"time":1,"conversations":[]})"), noon);
  CHECK(texts(s.received(obj(R"({"response":200,"id":3,"delivered":0})"), noon).lines) ==
        std::vector<std::string>{"alice (12:00): first"});
  CHECK(sends(s) ==
        std::vector<std::string>{R"({"action":"history","limit":5,"room":"#general"})"});
  auto r = s.received(
      history_reply("room", "#general",
                    {msg(2, "bob", "#general", "before"), msg(3, "alice", "#general", "first")}),
      noon);
  CHECK(texts(r.lines) == std::vector<std::string>{"[history] bob (12:00): before"});
}
