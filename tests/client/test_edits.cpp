// What jim shows of issue 16's frames (contract: "Edits, schedules, moderation, contacts"):
// message ids, edit and delete pushes, edited and deleted messages in history, schedules,
// refusals with their sentences, kicks that move the view, contact lists.
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

/// Types `line` into `s` and returns the request written for it.
std::string typed_sends(chat_state& s, std::string_view line) {
  CHECK(s.submit(request_of(line, noon)).empty());
  auto out = sends(s);
  REQUIRE(out.size() == 1);
  return out[0];
}

/// The lines shown for `frame` (a reply or a push) at noon.
std::vector<std::string> shown(chat_state& s, std::string_view frame) {
  return texts(s.received(obj(frame), noon).lines);
}

/// A message push as the server writes it, at noon.
std::string msg(std::int64_t id, std::string_view from, std::string_view to,
                std::string_view text) {
  return json::serialize(json::object{{"action", "msg"},
                                      {"id", id},
                                      {"time", noon},
                                      {"from", from},
                                      {"to", to},
                                      {"message", text}});
}

/// alice, signed in (a script's settings unless `settings` says otherwise), in #general.
chat_state signed_in(chat_settings settings = {}) {
  chat_state s("alice", settings);
  s.sent(obj(R"({"action":"authenticate","user":{"password":"pw"}})"));
  s.received(obj(R"({"response":200,"time":1,"room":"#general","missed":0})"), noon);
  sends(s);
  return s;
}

}  // namespace

TEST_CASE("/ids on shows message ids before messages, in history too, /ids off hides them",
          "[client][edits]") {
  utc tz;
  chat_settings own;
  own.show_own = true;
  auto s = signed_in(own);
  CHECK(texts(s.submit(request_of("/ids on", noon))) ==
        std::vector<std::string>{
            "* message ids are shown: [#42] (/edit ID TEXT, /delete ID; /ids off hides them)"});
  CHECK(sends(s).empty());  // a local setting: nothing goes to the server
  CHECK(shown(s, msg(42, "bob", "#general", "hi")) ==
        std::vector<std::string>{"[#42] bob (12:00): hi"});
  CHECK(typed_sends(s, "mine") == R"({"action":"msg","message":"mine"})");
  CHECK(shown(s, R"({"response":200,"time":1699963200,"id":43,"delivered":1})") ==
        std::vector<std::string>{"[#43] alice (12:00): mine"});
  typed_sends(s, "/history 2");
  CHECK(shown(s, R"({"response":200,"time":1,"room":"#general","messages":[
      {"id":42,"time":1699963200,"from":"bob","to":"#general","message":"hi"}]})") ==
        std::vector<std::string>{"[#42] [history] bob (12:00): hi"});
  CHECK(texts(s.submit(request_of("/ids off", noon))) ==
        std::vector<std::string>{"* message ids are hidden (/ids on shows them)"});
  CHECK(shown(s, msg(44, "bob", "#general", "hey")) ==
        std::vector<std::string>{"bob (12:00): hey"});
}

TEST_CASE("History shows an edited message marked and a deleted one without its text",
          "[client][edits]") {
  utc tz;
  auto s = signed_in();
  typed_sends(s, "/history");
  CHECK(shown(s, R"({"response":200,"time":1,"room":"#general","messages":[
      {"id":42,"time":1699963200,"from":"bob","to":"#general","message":"hello, world","edited":5},
      {"id":43,"time":1699963200,"from":"bob","to":"#general","deleted":true},
      {"id":44,"time":1699963200,"from":"bob","to":"#general","message":"* bob waves","edited":6}]})") ==
        std::vector<std::string>{"[history] bob (12:00): hello, world (edited)",
                                 "[history] bob (12:00): (deleted)",
                                 "[history] * bob waves (12:00) (edited)"});
}

TEST_CASE("Edit and delete pushes say whose message changed and where", "[client][edits]") {
  utc tz;
  auto s = signed_in();
  shown(s, msg(42, "bob", "#general", "helo"));
  shown(s, msg(43, "carol", "#den", "in den"));
  shown(s, msg(44, "bob", "alice", "psst"));
  CHECK(shown(s, R"({"action":"event","event":"edit","id":42,"message":"hello","edited":5})") ==
        std::vector<std::string>{"* bob edited message #42: hello"});
  CHECK(shown(s, R"({"action":"event","event":"edit","id":43,"message":"two\nrows","edited":5})") ==
        std::vector<std::string>{
            "* carol edited message #43 in #den: two\n                                    rows"});
  CHECK(shown(s, R"({"action":"event","event":"delete","id":44})") ==
        std::vector<std::string>{"* message #44 by bob (private, with bob) was deleted"});
  CHECK(shown(s, R"({"action":"event","event":"delete","id":42})") ==
        std::vector<std::string>{"* message #42 by bob was deleted"});
  // A message jim has not seen: its id only.
  CHECK(shown(s, R"({"action":"event","event":"delete","id":7})") ==
        std::vector<std::string>{"* message #7 was deleted"});
  CHECK(shown(s, R"({"action":"event","event":"edit","id":8,"message":"x","edited":5})") ==
        std::vector<std::string>{"* message #8 was edited: x"});
  // One's own messages are known by their reply's id.
  typed_sends(s, "oops");
  shown(s, R"({"response":200,"time":1,"id":45,"delivered":1})");
  CHECK(shown(s, R"({"action":"event","event":"delete","id":45})") ==
        std::vector<std::string>{"* message #45 by alice was deleted"});
}

TEST_CASE("On a terminal, edits of another view's messages are not shown", "[client][edits]") {
  utc tz;
  chat_settings terminal;
  terminal.show_own = terminal.activity = true;
  auto s = signed_in(terminal);
  s.received(obj(R"({"response":200,"time":1,"room":"#general"})"),
             noon);                              // counts, history: whatever
  shown(s, msg(43, "carol", "#den", "in den"));  // counted, not shown
  CHECK(shown(s, R"({"action":"event","event":"edit","id":43,"message":"x","edited":5})").empty());
  shown(s, msg(46, "carol", "#general", "here"));
  CHECK(shown(s, R"({"action":"event","event":"delete","id":46})") ==
        std::vector<std::string>{"* message #46 by carol was deleted"});
}

TEST_CASE("/edit and /delete replies and refusals", "[client][edits]") {
  auto s = signed_in();
  CHECK(typed_sends(s, "/edit 42 hello") == R"({"action":"edit","id":42,"message":"hello"})");
  CHECK(shown(s, R"({"response":200,"time":1,"id":42})") ==
        std::vector<std::string>{"* edited message #42: hello"});
  typed_sends(s, "/edit 42 again");
  CHECK(shown(s, R"({"response":403,"time":1,"error":"only its author can edit a message"})") ==
        std::vector<std::string>{"! message #42 is not yours: only its author can edit it"});
  typed_sends(s, "/edit 9 x");
  CHECK(shown(s, R"({"response":404,"time":1,"error":"no message 9"})") ==
        std::vector<std::string>{
            "! no message #9 to edit (it never was, is deleted, or is no longer kept)"});
  typed_sends(s, "/edit 9 xxxxxxxx");
  CHECK(shown(s, R"j({"response":413,"time":1,"error":"message too long (at most 4 bytes)"})j") ==
        std::vector<std::string>{"! message too long (at most 4 bytes)"});
  CHECK(typed_sends(s, "/delete 42") == R"({"action":"delete","id":42})");
  CHECK(shown(s, R"({"response":200,"time":1,"id":42})") ==
        std::vector<std::string>{"* deleted message #42"});
  typed_sends(s, "/delete 42");
  CHECK(shown(s, R"({"response":404,"time":1,"error":"no message 42"})") ==
        std::vector<std::string>{
            "! no message #42 to delete (it never was, is deleted, or is no longer kept)"});
  typed_sends(s, "/delete 41");
  CHECK(shown(s, R"({"response":403,"time":1,"error":"x"})") ==
        std::vector<std::string>{"! message #41 is not yours: only its author, the owner of its "
                                 "room or an admin can delete it"});
  CHECK(s.failures() == 5);
}

TEST_CASE("/at schedules in the current room or the open query, /scheduled lists, /cancel",
          "[client][edits]") {
  utc tz;
  chat_settings own;
  own.show_own = true;
  auto s = signed_in(own);
  CHECK(typed_sends(s, "/at 18:30 stand-up") == R"({"action":"msg","message":"stand-up","at":)" +
                                                    std::to_string(noon + 6 * 3600 + 1800) + "}");
  CHECK(shown(s, R"({"response":202,"time":1,"scheduled":3,"at":)" +
                     std::to_string(noon + 6 * 3600 + 1800) + R"(,"to":"#general"})") ==
        std::vector<std::string>{
            "* scheduled message 3 goes to #general at 18:30: stand-up (/cancel 3 takes it back)"});
  // Refused: too far, or muted (with until).
  typed_sends(s, "/at +9d later");
  CHECK(
      shown(s, R"({"response":400,"time":1,"error":"\"at\" is more than 604800 seconds ahead"})") ==
      std::vector<std::string>{
          "! not scheduled: later (\"at\" is more than 604800 seconds ahead)"});
  CHECK(s.failures() == 1);
  // In a query it goes to the other party, like a typed line.
  s.submit(request_of("/query bob", noon));
  sends(s);
  s.received(obj(R"({"response":200,"time":1,"with":"bob","messages":[]})"), noon);
  CHECK(typed_sends(s, "/at +90s tea?") == R"({"action":"msg","message":"tea?","at":)" +
                                               std::to_string(noon + 90) + R"(,"to":"bob"})");
  CHECK(shown(s, R"({"response":202,"time":1,"scheduled":4,"at":)" + std::to_string(noon + 90) +
                     R"(,"to":"bob"})") ==
        std::vector<std::string>{
            "* scheduled message 4 goes to bob at 12:01: tea? (/cancel 4 takes it back)"});

  CHECK(typed_sends(s, "/scheduled") == R"({"action":"scheduled"})");
  CHECK(shown(s, R"({"response":200,"time":1,"scheduled":[
      {"scheduled":3,"at":)" +
                     std::to_string(noon + 6 * 3600 + 1800) +
                     R"(,"to":"#general","message":"stand-up"},
      {"scheduled":4,"at":)" +
                     std::to_string(noon + 86400 + 90) +
                     R"(,"to":"bob","message":"tea?\nor coffee"}]})") ==
        std::vector<std::string>{"* scheduled messages (/cancel ID takes one back):",
                                 "  3  at 18:30 to #general: stand-up",
                                 "  4  at Wed 15 Nov 12:01 to bob: tea? ..."});
  CHECK(typed_sends(s, "/cancel 3") == R"({"action":"cancel","scheduled":3})");
  CHECK(shown(s, R"({"response":200,"time":1,"scheduled":3})") ==
        std::vector<std::string>{"* cancelled scheduled message 3"});
  typed_sends(s, "/cancel 3");
  CHECK(shown(s, R"({"response":404,"time":1,"error":"no scheduled message 3"})") ==
        std::vector<std::string>{
            "! you have no scheduled message 3 waiting (/scheduled lists them)"});
  typed_sends(s, "/scheduled");
  CHECK(shown(s, R"({"response":200,"time":1,"scheduled":[]})") ==
        std::vector<std::string>{"* no scheduled messages (/at TIME TEXT schedules one)"});
  // Posted at its time: the push of one's own message, shown like any.
  s.submit(request_of("/query", noon));
  CHECK(shown(s, msg(50, "alice", "#general", "stand-up")) ==
        std::vector<std::string>{"alice (12:00): stand-up"});
}

TEST_CASE("A muted account is told until when", "[client][edits]") {
  utc tz;
  auto s = signed_in();
  typed_sends(s, "buy now");
  CHECK(
      shown(
          s,
          R"j({"response":403,"time":1,"error":"you are muted (reported by other users)","until":)j" +
              std::to_string(noon + 4 * 3600) + "}") ==
      std::vector<std::string>{
          "! not sent: buy now (you are muted (reported by other users) until 16:00)"});
}

TEST_CASE("/report, /kick, /ban, /unban: the room is the current one unless named, * the server",
          "[client][edits]") {
  auto s = signed_in();
  CHECK(typed_sends(s, "/report mallory spam") ==
        R"({"action":"report","user":"mallory","reason":"spam"})");
  CHECK(shown(s, R"({"response":200,"time":1,"user":"mallory"})") ==
        std::vector<std::string>{"* reported mallory (when enough people report someone, the "
                                 "server mutes them for a while)"});
  typed_sends(s, "/report alice");
  CHECK(shown(s, R"({"response":400,"time":1,"error":"you cannot report yourself"})") ==
        std::vector<std::string>{"! you cannot report yourself"});

  s.submit(request_of("/join den", noon));
  sends(s);
  s.received(obj(R"({"response":200,"time":1,"room":"#den"})"), noon);
  CHECK(typed_sends(s, "/kick bob") == R"({"action":"kick","user":"bob","room":"#den"})");
  CHECK(shown(s, R"({"response":200,"time":1,"room":"#den","user":"bob"})") ==
        std::vector<std::string>{"* kicked bob out of #den (still a member: may come back)"});
  CHECK(typed_sends(s, "/ban bob attic") == R"({"action":"ban","user":"bob","room":"attic"})");
  CHECK(shown(s, R"({"response":200,"time":1,"room":"#attic","user":"bob"})") ==
        std::vector<std::string>{"* banned bob from #attic (/unban bob #attic lifts it)"});
  CHECK(typed_sends(s, "/unban bob") == R"({"action":"unban","user":"bob","room":"#den"})");
  CHECK(shown(s, R"({"response":200,"time":1,"room":"#den","user":"bob"})") ==
        std::vector<std::string>{
            "* bob is no longer banned from #den (joins with the password or an invitation)"});
  typed_sends(s, "/kick carol");
  CHECK(shown(s, R"({"response":403,"time":1,"error":"only the owner of #den can do that"})") ==
        std::vector<std::string>{"! only the owner of #den can do that"});

  CHECK(typed_sends(s, "/ban mallory * spamming") ==
        R"({"action":"ban","user":"mallory","reason":"spamming"})");
  CHECK(shown(s, R"({"response":200,"time":1,"user":"mallory","banned":true})") ==
        std::vector<std::string>{
            "* banned the account mallory from the server (/unban mallory * lifts it)"});
  CHECK(typed_sends(s, "/unban mallory *") == R"({"action":"unban","user":"mallory"})");
  CHECK(shown(s, R"({"response":200,"time":1,"user":"mallory","banned":false})") ==
        std::vector<std::string>{"* the account mallory is no longer banned"});
  typed_sends(s, "/ban mallory *");
  CHECK(shown(s, R"({"response":403,"time":1,"error":"only a server admin can ban an account"})") ==
        std::vector<std::string>{
            "! only a server admin can ban an account (a room's owner: /ban USER ROOM)"});
}

TEST_CASE("A kick's notice moves the view to where the server put us", "[client][edits]") {
  utc tz;
  auto s = signed_in();
  s.submit(request_of("/join den", noon));
  sends(s);
  s.received(obj(R"({"response":200,"time":1,"room":"#den"})"), noon);
  CHECK(
      shown(
          s,
          R"({"action":"notice","text":"you were kicked from #den by carol; you are in #general"})") ==
      std::vector<std::string>{
          "! server: you were kicked from #den by carol; you are in #general"});
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"presence"})"});
  CHECK(shown(s, R"({"response":200,"time":1,"account_name":"alice","room":"#general"})").empty());
  CHECK(s.room() == "#general");
  CHECK(s.prompt() == "#general> ");
  CHECK(s.failures() == 0);
  // The reply shows the server goes on: the notice was no goodbye.
  CHECK(s.last_notice().empty());
  // In #general no notice moves us: nothing asked.
  CHECK(shown(s, R"({"action":"notice","text":"server shutting down"})").size() == 1);
  CHECK(sends(s).empty());
  CHECK(s.last_notice() == "server shutting down");
}

TEST_CASE("/contacts lists the contact_list pushes, /add and /del say what changed",
          "[client][edits]") {
  auto s = signed_in();
  CHECK(typed_sends(s, "/contacts") == R"({"action":"get_contacts"})");
  CHECK(shown(s, R"({"response":202,"time":1,"quantity":2})") ==
        std::vector<std::string>{"* your contacts (2):"});
  CHECK(shown(s, R"({"action":"contact_list","user_id":"bob"})") ==
        std::vector<std::string>{"  bob"});
  CHECK(shown(s, R"({"action":"contact_list","user_id":"carol"})") ==
        std::vector<std::string>{"  carol"});
  typed_sends(s, "/contacts");
  CHECK(shown(s, R"({"response":202,"time":1,"quantity":0})") ==
        std::vector<std::string>{"* no contacts yet (/add USER adds one)"});
  CHECK(typed_sends(s, "/add Bob") == R"({"action":"add_contact","user_id":"Bob"})");
  CHECK(shown(s, R"({"response":200,"time":1,"user_id":"bob"})") ==
        std::vector<std::string>{"* bob is in your contacts"});
  typed_sends(s, "/add nobody");
  CHECK(shown(s, R"({"response":404,"time":1,"error":"no such account nobody"})") ==
        std::vector<std::string>{"! no such account nobody"});
  CHECK(typed_sends(s, "/del bob") == R"({"action":"del_contact","user_id":"bob"})");
  CHECK(shown(s, R"({"response":200,"time":1,"user_id":"bob"})") ==
        std::vector<std::string>{"* bob is no longer in your contacts"});
  typed_sends(s, "/del dave");
  CHECK(shown(s, R"({"response":404,"time":1,"error":"dave is not a contact"})") ==
        std::vector<std::string>{"! dave is not a contact"});
  CHECK(s.known_names() == std::vector<std::string>{"alice", "bob", "carol"});
}

TEST_CASE(
    "/kick without ROOM names the room jim is in once the room changes typed before it are done",
    "[client][edits]") {
  auto s = signed_in();
  CHECK(s.submit(request_of("/join den pw", noon)).empty());
  CHECK(s.submit(request_of("/kick bob", noon)).empty());
  CHECK(s.submit(request_of("/ban carol *", noon)).empty());
  // The kick waits: until the join's reply, "this room" is not known.
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"join","room":"den","password":"pw"})"});
  s.received(obj(R"({"response":200,"time":1,"room":"#den"})"), noon);
  CHECK(sends(s) == std::vector<std::string>{R"({"action":"kick","user":"bob","room":"#den"})",
                                             R"({"action":"ban","user":"carol"})"});
}
