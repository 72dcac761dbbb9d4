#include "commands.hpp"

#include "text.hpp"

#include "jim/codec.hpp"
#include "jim/framing.hpp"
#include "jim/protocol.hpp"

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>
#include <limits>

namespace jim::client {

namespace json = boost::json;

namespace {

std::string_view str(json::object const& o, std::string_view key) {
  auto const* v = o.if_contains(key);
  if (!v || !v->is_string()) return {};
  return v->get_string();
}

std::int64_t integer(json::object const& o, std::string_view key, std::int64_t fallback = 0) {
  auto const* v = o.if_contains(key);
  if (!v) return fallback;
  if (v->is_int64()) return v->get_int64();
  if (v->is_uint64()) return static_cast<std::int64_t>(v->get_uint64());
  if (v->is_double()) return static_cast<std::int64_t>(v->get_double());
  return fallback;
}

bool same_name(std::string_view a, std::string_view b) { return proto::fold(a) == proto::fold(b); }

std::string_view trim(std::string_view s) {
  while (!s.empty() && (s.front() == ' ' || s.front() == '\t')) s.remove_prefix(1);
  while (!s.empty() && (s.back() == ' ' || s.back() == '\t' || s.back() == '\r' || s.back() == '\n'))
    s.remove_suffix(1);
  return s;
}

/// Splits off the first whitespace-separated word; returns it and leaves the rest in `s`.
std::string_view next_word(std::string_view& s) {
  s = trim(s);
  std::size_t end = 0;
  while (end < s.size() && s[end] != ' ' && s[end] != '\t') ++end;
  std::string_view word = s.substr(0, end);
  s.remove_prefix(end);
  s = trim(s);
  return word;
}

std::vector<std::string> words(std::string_view s) {
  std::vector<std::string> out;
  for (auto w = next_word(s); !w.empty(); w = next_word(s)) out.emplace_back(w);
  return out;
}

send_request request(json::object frame) { return send_request{std::move(frame)}; }

}  // namespace

std::optional<std::int64_t> parse_id(std::string_view word) {
  if (word.starts_with('#')) word.remove_prefix(1);
  if (word.empty() || word.find_first_not_of("0123456789") != std::string_view::npos) return std::nullopt;
  std::int64_t id = 0;
  auto [end, ec] = std::from_chars(word.data(), word.data() + word.size(), id);
  if (ec != std::errc{} || end != word.data() + word.size() || id < 1) return std::nullopt;
  return id;
}

namespace {

/// TIME of `/at` read: the time, or why it is none (empty `why` and no time: not a TIME at all).
struct at_reading {
  std::optional<std::int64_t> when;
  std::string why;
};

at_reading read_at(std::string_view spec, std::int64_t now) {
  const std::string s(spec);
  auto is_digit = [](char c) { return c >= '0' && c <= '9'; };
  auto fail = [&s](std::string const& why) { return at_reading{std::nullopt, s + ": " + why}; };
  if (spec.empty() || !(spec.front() == '+' || spec.front() == '-' || is_digit(spec.front()))) return {};
  if (spec.front() == '+' || spec.front() == '-') {
    const bool past = spec.front() == '-';
    std::string_view rest = spec.substr(1);
    if (rest.empty()) return fail("a number and a unit must follow " + s + " (+10m, +2h)");
    // A sum of numbers each followed by its unit, in seconds; overflow is beyond any schedule.
    std::int64_t total = 0;
    bool overflow = false;
    while (!rest.empty()) {
      std::size_t n = 0;
      while (n < rest.size() && is_digit(rest[n])) ++n;
      if (n == 0) {
        const char c = rest.front();
        if (std::string_view("smhdSMHD").find(c) != std::string_view::npos)
          return fail(std::string("a number must come before ") + c + " (+10m, +2h)");
        return fail("unexpected " + printable(std::string(1, c)) + " (+N with a unit: s, m, h or d)");
      }
      const auto number = rest.substr(0, n);
      rest.remove_prefix(n);
      if (rest.empty()) return fail("a unit must follow " + std::string(number) + " (s, m, h or d)");
      // The unit: the letters up to the next digit, as typed ("m", or "min": not a unit).
      std::size_t u = 0;
      while (u < rest.size() && !is_digit(rest[u])) ++u;
      const auto unit_word = rest.substr(0, u);
      std::int64_t unit = 0;
      if (unit_word.size() == 1) {
        switch (unit_word.front()) {
          case 's': case 'S': unit = 1; break;
          case 'm': case 'M': unit = 60; break;
          case 'h': case 'H': unit = 3600; break;
          case 'd': case 'D': unit = 86400; break;
          default: break;
        }
      }
      if (unit == 0) return fail("unknown unit " + printable(std::string(unit_word)) + " (s, m, h or d)");
      rest.remove_prefix(u);
      std::int64_t value = 0;
      const auto [end, ec] = std::from_chars(number.data(), number.data() + number.size(), value);
      if (ec != std::errc{} || end != number.data() + number.size() ||
          value > (std::numeric_limits<std::int64_t>::max() - total) / unit)
        overflow = true;
      else
        total += value * unit;
    }
    if (past || (!overflow && total == 0)) return fail("the time must be in the future (+N after now, or HH:MM)");
    if (overflow || total > std::numeric_limits<std::int64_t>::max() - now)
      return fail("too far ahead (more than jim can count; the server takes what its --schedule-max allows)");
    return {now + total, {}};
  }
  // HH:MM: the next such local time (mktime() normalises a day past the month's end and
  // finds the daylight-saving offset of the day it lands on).
  const auto colon = spec.find(':');
  if (colon == std::string_view::npos) {
    if (spec.find_first_not_of("0123456789") == std::string_view::npos)
      return fail("a time of day needs a colon (HH:MM, e.g. 18:30)");
    return fail("a time of day is HH:MM (e.g. 18:30), a delay +N with a unit (+10m)");
  }
  const std::string_view h = spec.substr(0, colon), m = spec.substr(colon + 1);
  auto digits = [](std::string_view d) { return d.find_first_not_of("0123456789") == std::string_view::npos; };
  if (h.empty() || h.size() > 2 || !digits(h)) return fail("hours must be one or two digits (HH:MM, e.g. 18:30)");
  if (m.size() != 2 || !digits(m)) return fail("minutes must be two digits (HH:MM, e.g. 18:05)");
  const int hour = (h.size() == 2 ? (h[0] - '0') * 10 : 0) + (h.back() - '0');
  const int minute = (m[0] - '0') * 10 + (m[1] - '0');
  if (hour > 23 || minute > 59) return fail("no such time of day (HH:MM runs from 00:00 to 23:59)");
  const auto base = static_cast<std::time_t>(now);
  for (int day = 0; day <= 2; ++day) {
    std::tm t{};
    localtime_r(&base, &t);
    t.tm_mday += day;
    t.tm_hour = hour;
    t.tm_min = minute;
    t.tm_sec = 0;
    t.tm_isdst = -1;
    const auto when = std::mktime(&t);
    if (when != static_cast<std::time_t>(-1) && when > base) return {static_cast<std::int64_t>(when), {}};
  }
  return fail("no such local time");
}

}  // namespace

std::optional<std::int64_t> parse_at(std::string_view spec, std::int64_t now) { return read_at(spec, now).when; }

std::string id_problem(std::string_view word) {
  std::string_view digits = word;
  if (digits.starts_with('#')) digits.remove_prefix(1);
  if (digits.empty() || digits.find_first_not_of("0123456789") != std::string_view::npos) return {};
  if (parse_id(word)) return {};
  if (digits.find_first_not_of('0') == std::string_view::npos)
    return "no such id: " + std::string(word) + " (ids start at 1)";
  return "no such id: " + std::string(word) + " is too large";
}

std::string at_problem(std::string_view spec, std::int64_t now) { return read_at(spec, now).why; }

std::string control_problem(std::string_view line) {
  std::size_t chars = 0;
  for (std::size_t i = 0; i < line.size(); ++i) {
    const auto b = static_cast<unsigned char>(line[i]);
    if ((b & 0xC0) != 0x80) ++chars;
    unsigned code = 0;
    if ((b < 0x20 && b != '\t') || b == 0x7F) {
      code = b;
    } else if (b == 0xC2 && i + 1 < line.size() && static_cast<unsigned char>(line[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(line[i + 1]) <= 0x9F) {
      code = static_cast<unsigned char>(line[i + 1]);  // C1: U+0080..U+009F
    } else {
      continue;
    }
    char hex[8];
    std::snprintf(hex, sizeof hex, "U+%04X", code);
    std::string shown;
    if (code < 0x20) shown = std::string("^") + static_cast<char>(code + 0x40) + " (" + hex + ")";
    else if (code == 0x7F) shown = std::string("^? (") + hex + ")";
    else shown = hex;
    return "the line has a control character, " + shown + ", at character " + std::to_string(chars) +
           "; jim sends none but tab";
  }
  return {};
}

input parse_input(std::string_view line) { return parse_input(line, proto::unix_now()); }

input parse_input(std::string_view line, std::int64_t now) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
  if (auto why = control_problem(line); !why.empty()) return usage_hint{"! not sent: " + why, true};
  if (trim(line).empty()) return nothing{};
  if (line.front() != '/' || line.starts_with("//")) {
    if (line.starts_with("//")) line.remove_prefix(1);
    return request({{"action", "msg"}, {"message", line}});
  }
  std::string_view rest = line.substr(1);
  const std::string cmd = proto::fold(next_word(rest));
  const auto args = words(rest);
  const auto n = args.size();
  auto usage = [](std::string_view u) { return usage_hint{"! usage: " + std::string(u)}; };

  if (cmd == "create") {
    if (n != 1) return usage("/create NAME");
    return request({{"action", "create"}, {"room", args[0]}});
  }
  if (cmd == "join") {
    if (n < 1 || n > 2) return usage("/join NAME [PASSWORD]");
    json::object f{{"action", "join"}, {"room", args[0]}};
    if (n == 2) f["password"] = args[1];
    return request(std::move(f));
  }
  if (cmd == "exit" || cmd == "leave" || cmd == "part") {
    if (n != 0) return usage("/exit   (back to #general; also /leave and /part)");
    return request({{"action", "exit"}});
  }
  if (cmd == "switch") {
    if (n != 1) return usage("/switch ROOM   (a room you are a member of)");
    return request({{"action", "switch"}, {"room", args[0]}});
  }
  if (cmd == "query") {
    if (n > 1) return usage("/query [NAME]   (without NAME: close the open query)");
    json::object f{{"action", "query"}};
    if (n == 1) f["with"] = args[0];
    return request(std::move(f));
  }
  if (cmd == "conversations") {
    if (n != 0) return usage("/conversations");
    return request({{"action", "conversations"}});
  }
  if (cmd == "who") {
    if (n != 0) return usage("/who   (everyone signed in; /names: who is in this room)");
    return request({{"action", "users"}, {"room", "*"}});
  }
  if (cmd == "away" || cmd == "back") {
    const std::string_view text = trim(rest);
    if (cmd == "back" && !text.empty()) return usage("/back");
    // The server takes a status of at most 64 characters (code points).
    const auto chars = std::count_if(text.begin(), text.end(), [](char c) { return (c & 0xC0) != 0x80; });
    if (chars > 64) return usage("/away [TEXT]   (TEXT: at most 64 characters)");
    const std::string status = cmd == "back" ? "online" : text.empty() ? "away" : std::string(text);
    return request({{"action", "presence"}, {"user", {{"status", status}}}});
  }
  if (cmd == "me") {
    const std::string_view text = trim(rest);
    if (text.empty()) return usage("/me ACTION");
    return request({{"action", "me"}, {"message", text}});
  }
  if (cmd == "msg" || cmd == "private") {
    std::string_view text = rest;
    const std::string_view user = next_word(text);
    if (user.empty() || text.empty()) return usage("/msg USER TEXT");
    return request({{"action", "msg"}, {"to", user}, {"message", text}});
  }
  if (cmd == "invite") {
    if (n < 1 || n > 2) return usage("/invite USER [ROOM]");
    json::object f{{"action", "invite"}, {"user", args[0]}};
    if (n == 2) f["room"] = args[1];
    return request(std::move(f));
  }
  if (cmd == "history") {
    // `/history [#ROOM|NAME] [N]`: as in msg.to, `#name` is a room and a bare name a person;
    // a lone number is N (`/history 42 50` pages a conversation with someone called 42).
    const auto hint = "/history [#ROOM|NAME] [N]   (N: how many messages, at least 1)";
    if (n > 2) return usage(hint);
    auto number = [](std::string const& a) -> std::optional<int> {
      int limit = 0;
      auto [end, ec] = std::from_chars(a.data(), a.data() + a.size(), limit);
      if (ec != std::errc{} || end != a.data() + a.size()) return std::nullopt;
      return limit;
    };
    json::object f{{"action", "history"}};
    std::optional<std::string> target;
    std::optional<std::string> count;
    if (n == 2) {
      target = args[0];
      count = args[1];
    } else if (n == 1) {
      (args[0].find_first_not_of("0123456789") == std::string::npos ? count : target) = args[0];
    }
    if (target) {
      if (target->starts_with('#'))
        f["room"] = *target;
      else
        f["with"] = *target;
    }
    if (count) {
      auto limit = number(*count);
      if (!limit || *limit < 1) return usage(hint);
      f["limit"] = *limit;
    }
    return request(std::move(f));
  }
  if (cmd == "users" || cmd == "names") {
    if (n != 0) return usage("/names   (also /users)");
    return request({{"action", "users"}});
  }
  if (cmd == "rooms") {
    if (n != 0) return usage("/rooms");
    return request({{"action", "rooms"}});
  }
  if (cmd == "logout") {
    if (n > 1 || (n == 1 && proto::fold(args[0]) != "all")) return usage("/logout [all]");
    json::object f{{"action", "logout"}};
    if (n == 1) f["all"] = true;
    return request(std::move(f));
  }
  if (cmd == "quit") {
    if (n != 0) return usage("/quit");
    return request({{"action", "quit"}});
  }
  if (cmd == "edit") {
    std::string_view text = rest;
    const auto word = next_word(text);
    if (auto why = id_problem(word); !why.empty()) return usage_hint{"! " + why};
    const auto id = parse_id(word);
    if (!id || text.empty()) return usage("/edit ID TEXT   (ID: the message's id, shown by /ids on)");
    return request({{"action", "edit"}, {"id", *id}, {"message", text}});
  }
  if (cmd == "delete") {
    if (n == 1)
      if (auto why = id_problem(args[0]); !why.empty()) return usage_hint{"! " + why};
    const auto id = n == 1 ? parse_id(args[0]) : std::nullopt;
    if (!id) return usage("/delete ID   (ID: the message's id, shown by /ids on)");
    return request({{"action", "delete"}, {"id", *id}});
  }
  if (cmd == "ids") {
    const auto state = n == 1 ? proto::fold(args[0]) : std::string();
    if (state != "on" && state != "off") return usage("/ids on|off   (show message ids: [#42])");
    return request({{"action", "ids"}, {"on", state == "on"}});
  }
  if (cmd == "at") {
    std::string_view text = rest;
    const auto spec = next_word(text);
    if (auto why = at_problem(spec, now); !why.empty()) return usage_hint{"! " + why};
    const auto when = parse_at(spec, now);
    if (!when || text.empty())
      return usage("/at TIME TEXT   (TIME: HH:MM, the next such local time, or +N with s, m, h or d: +10m, +2h)");
    return request({{"action", "msg"}, {"message", text}, {"at", *when}});
  }
  if (cmd == "scheduled") {
    if (n != 0) return usage("/scheduled   (your messages waiting for their time)");
    return request({{"action", "scheduled"}});
  }
  if (cmd == "cancel") {
    if (n == 1)
      if (auto why = id_problem(args[0]); !why.empty()) return usage_hint{"! " + why};
    const auto id = n == 1 ? parse_id(args[0]) : std::nullopt;
    if (!id) return usage("/cancel ID   (ID: a scheduled message's number, shown by /scheduled)");
    return request({{"action", "cancel"}, {"scheduled", *id}});
  }
  if (cmd == "report") {
    std::string_view reason = rest;
    const auto user = next_word(reason);
    if (user.empty()) return usage("/report USER [REASON]");
    json::object f{{"action", "report"}, {"user", user}};
    if (!reason.empty()) f["reason"] = reason;
    return request(std::move(f));
  }
  if (cmd == "kick" || cmd == "ban" || cmd == "unban") {
    // `/ban USER *` is the server-wide ban of an admin (the `*` of `users` for the whole
    // server); only it takes a reason.
    std::string_view reason = rest;
    const auto user = next_word(reason);
    const auto room = next_word(reason);
    const bool server = room == "*" && cmd != "kick";
    if (user.empty() || (cmd == "kick" && room == "*") || (!reason.empty() && !(server && cmd == "ban"))) {
      if (cmd == "kick") return usage("/kick USER [ROOM]   (ROOM: this room if not given)");
      if (cmd == "ban") return usage("/ban USER [ROOM]   (ROOM: this room if not given; an admin: /ban USER * [REASON])");
      return usage("/unban USER [ROOM]   (ROOM: this room if not given; an admin: /unban USER *)");
    }
    json::object f{{"action", cmd}, {"user", user}};
    if (!room.empty()) f["room"] = room;
    if (!reason.empty()) f["reason"] = reason;
    return request(std::move(f));
  }
  if (cmd == "contacts") {
    if (n != 0) return usage("/contacts");
    return request({{"action", "get_contacts"}});
  }
  if (cmd == "add" || cmd == "del") {
    if (n != 1) return usage(cmd == "add" ? "/add USER   (to your contacts)" : "/del USER   (from your contacts)");
    return request({{"action", cmd == "add" ? "add_contact" : "del_contact"}, {"user_id", args[0]}});
  }
  if (cmd == "help" || cmd == "?") return show_help{};
  return usage_hint{"! unknown command /" + cmd + "; /help lists the commands"};
}

std::string for_history(std::string_view line) {
  std::string_view rest = line;
  if (!rest.starts_with('/')) return std::string(line);
  rest.remove_prefix(1);
  const auto cmd = proto::fold(next_word(rest));
  if (cmd != "join") return std::string(line);
  const auto room = next_word(rest);
  if (rest.empty()) return std::string(line);
  return "/join " + std::string(room);
}

namespace {
constexpr std::string_view command_names[] = {
    "/add",    "/at",     "/away",   "/back",     "/ban",    "/cancel", "/contacts", "/conversations",
    "/create", "/del",    "/delete", "/edit",     "/exit",   "/help",   "/history",  "/ids",
    "/invite", "/join",   "/kick",   "/leave",    "/logout", "/me",     "/msg",      "/names",
    "/part",   "/private", "/query", "/quit",     "/report", "/rooms",  "/scheduled", "/switch",
    "/unban",  "/users",  "/who"};
}  // namespace

std::vector<std::string> completions(std::string_view before, std::string_view word,
                                     std::vector<std::string> const& names,
                                     std::vector<std::string> const& rooms) {
  std::vector<std::string> out;
  const std::string folded_word = proto::fold(word);
  auto offer = [&](std::string candidate) {
    if (proto::fold(candidate).starts_with(folded_word)) out.push_back(std::move(candidate));
  };
  auto offer_names = [&] {
    for (auto const& n : names) offer(n);
  };
  auto offer_rooms = [&](bool hash) {
    for (auto const& r : rooms) offer(hash ? r : std::string(proto::strip_hash(r)));
  };
  std::string_view rest = before;
  const auto first = next_word(rest);
  if (first.empty()) {
    if (word.starts_with('/')) {
      for (auto c : command_names) offer(std::string(c));
    } else {
      word.starts_with('#') ? offer_rooms(true) : offer_names();
    }
  } else if (!first.starts_with('/') || first.starts_with("//")) {
    word.starts_with('#') ? offer_rooms(true) : offer_names();
  } else {
    const auto cmd = proto::fold(first.substr(1));
    const auto arg = words(rest).size();  // the index of the argument being completed
    if ((cmd == "msg" || cmd == "private") && arg == 0) offer_names();
    else if (cmd == "msg" || cmd == "private") word.starts_with('#') ? offer_rooms(true) : offer_names();
    else if (cmd == "invite" && arg == 0) offer_names();
    else if (cmd == "invite" && arg == 1) offer_rooms(word.starts_with('#'));
    else if ((cmd == "join" || cmd == "switch") && arg == 0) offer_rooms(word.starts_with('#'));
    else if (cmd == "query" && arg == 0) offer_names();
    else if (cmd == "history" && arg == 0) word.starts_with('#') ? offer_rooms(true) : offer_names();
    else if ((cmd == "report" || cmd == "add" || cmd == "del") && arg == 0) offer_names();
    else if ((cmd == "kick" || cmd == "ban" || cmd == "unban") && arg == 0) offer_names();
    else if ((cmd == "kick" || cmd == "ban" || cmd == "unban") && arg == 1) offer_rooms(word.starts_with('#'));
    else if (cmd == "ids" && arg == 0) {
      offer("off");
      offer("on");
    }
  }
  std::sort(out.begin(), out.end());
  out.erase(std::unique(out.begin(), out.end()), out.end());
  return out;
}

std::size_t count_frames(std::string_view line) {
  proto::framer framer(std::size_t{1} << 30);
  std::string bytes(line);
  bytes += '\n';
  framer.feed(bytes);
  std::size_t n = 0;
  json::value v;
  std::string error;
  for (;;) {
    switch (framer.next(v, error)) {
      case proto::frame_status::frame:
      case proto::frame_status::malformed: ++n; break;
      case proto::frame_status::need_more:
      case proto::frame_status::too_large: return n;
    }
  }
}

std::string_view help_text() {
  return "Type a line to send it to the current room (or, in a /query, to that person).\n"
         "The prompt shows where else something was said: [#den 3] [@bob 1]. Commands:\n"
         "  /create NAME           create a room, become its owner and enter it\n"
         "  /join NAME [PASSWORD]  enter a room (its members need no password) and see\n"
         "                         its new messages under a \"new messages\" divider\n"
         "  /switch ROOM           the same, for a room you are a member of\n"
         "  /exit                  go back to #general (also /leave and /part)\n"
         "  /query NAME            talk privately with NAME: its history, then what you\n"
         "                         type goes to NAME; /query alone closes it\n"
         "  /msg USER TEXT         send a private message (also /private)\n"
         "  /me ACTION             send \"* yourname ACTION\"\n"
         "  /conversations         your private conversations, with unread counts\n"
         "  /invite USER [ROOM]    make USER a member of your room\n"
         "  /history [#ROOM|NAME] [N]  the last N messages (50) of this room, of #ROOM,\n"
         "                         or of your private conversation with NAME\n"
         "  /names                 who is in this room (also /users)\n"
         "  /who                   everyone signed in on the server, with their status\n"
         "  /away [TEXT]           set your status to away (or to TEXT); /back: online\n"
         "  /rooms                 list the rooms, with your unread counts\n"
         "  /ids on|off            show message ids ([#42]) before messages, for:\n"
         "  /edit ID TEXT          replace the text of your message ID\n"
         "  /delete ID             delete message ID (yours, or any in a room you own)\n"
         "  /at TIME TEXT          send TEXT here later: TIME is HH:MM (the next such\n"
         "                         time) or +N with s, m, h or d (+10m, +2h, +1d)\n"
         "  /scheduled             your messages waiting for their time\n"
         "  /cancel ID             take back scheduled message ID\n"
         "  /contacts              your contact list; /add USER, /del USER change it\n"
         "  /report USER [REASON]  report a spammer (enough reports mute them)\n"
         "  /kick USER [ROOM]      send USER out of your room (ROOM: this one) to #general\n"
         "  /ban USER [ROOM]       the same, and USER may not come back; /unban USER [ROOM]\n"
         "  /ban USER * [REASON]   an admin: ban the account from the server (/unban USER *)\n"
         "  /help                  this list\n"
         "  /quit                  leave (Ctrl-D and Ctrl-C too)\n"
         "  /logout [all]          sign out: revoke and delete the saved token (all: every\n"
         "                         device's), then leave\n"
         "Start a message with // to send a line that begins with /.";
}

std::string clock_time(std::int64_t when, std::int64_t now) {
  const auto w = static_cast<std::time_t>(when);
  const auto n = static_cast<std::time_t>(now);
  std::tm tw{}, tn{};
  localtime_r(&w, &tw);
  localtime_r(&n, &tn);
  const bool same_day = tw.tm_year == tn.tm_year && tw.tm_yday == tn.tm_yday;
  char buf[32];
  // Not today: the day too, with the weekday (within the week /at allows, the day a person
  // thinks in), and the year when it is not this year's.
  if (same_day) return std::string(buf, std::strftime(buf, sizeof buf, "%H:%M", &tw));
  std::string day(buf, std::strftime(buf, sizeof buf, "%a ", &tw));
  day += std::to_string(tw.tm_mday);  // not padded
  const auto len = tw.tm_year == tn.tm_year ? std::strftime(buf, sizeof buf, " %b %H:%M", &tw)
                                            : std::strftime(buf, sizeof buf, " %b %Y %H:%M", &tw);
  return day + std::string(buf, len);
}

namespace {

/// A message's text for the screen: one row per line of the text, continuation rows indented
/// by `indent` columns; trailing line breaks dropped.
std::string message_text(std::string_view text, std::size_t indent) {
  while (!text.empty() && (text.back() == '\n' || text.back() == '\r')) text.remove_suffix(1);
  std::string out;
  for (bool first = true;; first = false) {
    const auto nl = text.find('\n');
    auto row = text.substr(0, nl);
    if (row.ends_with('\r')) row.remove_suffix(1);  // CRLF from a browser
    if (!first) {  // appended, not "\n" + std::string(...): GCC 12 -O3 warns falsely (-Wrestrict)
      out += '\n';
      out.append(indent, ' ');
    }
    out += printable(row);
    if (nl == std::string_view::npos) break;
    text.remove_prefix(nl + 1);
  }
  return out;
}

/// What a message text looks like in a "not sent" line: on one row.
std::string quoted(json::object const& frame) { return printable(str(frame, "message")); }

}  // namespace

out_line render_message(json::object const& msg, std::string_view me, std::string_view current_room,
                        bool history, std::int64_t now, bool show_id) {
  const auto from = printable(str(msg, "from"));
  const auto to = printable(str(msg, "to"));
  const bool direct = !to.empty() && to.front() != '#';
  std::string text = show_id && integer(msg, "id") > 0 ? "[#" + std::to_string(integer(msg, "id")) + "] " : "";
  if (history) text += "[history] ";
  const bool mine = !me.empty() && same_name(from, me);
  std::string who = from;
  if (direct) {
    // In the query with the other party (current_room is then a name) it goes without saying.
    const auto other = mine ? to : from;
    const bool in_query = !current_room.empty() && !current_room.starts_with('#') && same_name(other, current_room);
    if (!in_query) {
      text += "[private] ";
      if (mine) who += " -> " + to;
    }
  } else if (!to.empty() && !same_name(to, current_room)) {
    text += "[" + to + "] ";
  }
  const auto when = clock_time(integer(msg, "time", now), now);
  const auto kind = history ? tone::history : direct ? tone::direct : tone::chat;
  if (auto const* d = msg.if_contains("deleted"); d && d->is_bool() && d->get_bool())
    return {kind, text + who + " (" + when + "): (deleted)"};
  const std::string edited = msg.contains("edited") ? " (edited)" : "";
  // `/me waves` is sent as "* alice waves" and shown as such: `* alice waves (12:00)`.
  const std::string_view body = str(msg, "message");
  const std::string action_prefix = "* " + std::string(str(msg, "from")) + " ";
  if (body.size() > action_prefix.size() && body.starts_with(action_prefix) &&
      body.find('\n') == std::string_view::npos) {
    text += "* " + who + " " + printable(body.substr(action_prefix.size())) + " (" + when + ")" + edited;
    return {kind, std::move(text)};
  }
  text += who + " (" + when + "): ";
  text += message_text(body, display_width(text)) + edited;
  return {kind, std::move(text)};
}

void chat_state::sent(json::object const& frame, bool quiet) { pending_.push_back(outgoing{frame, quiet}); }

out_line chat_state::render(json::object const& msg, bool history, std::int64_t now) const {
  return render_message(msg, me_, view(), history, now, settings_.show_ids);
}

void chat_state::remember(std::int64_t id, std::string_view from, std::string_view to) {
  if (id < 1 || from.empty() || to.empty()) return;
  messages_.insert_or_assign(id, message_ref{std::string(from), std::string(to)});
  while (messages_.size() > 4096) messages_.erase(messages_.begin());
}

std::vector<out_line> chat_state::submit(json::object frame, bool quiet) {
  const std::string action(str(frame, "action"));
  // The user acts, so has read what the view shows: one `read` per action at most, not one
  // per message shown (each moves a persistent marker on the server).
  if (settings_.activity && !quiet && entering_phase_ == entering::none)
    if (auto it = seen_.find(proto::fold(view())); it != seen_.end()) mark_read(view(), it->second);
  if (action == "me") {
    frame = json::object{{"action", "msg"}, {"message", "* " + me_ + " " + std::string(str(frame, "message"))}};
  } else if (action == "switch") {
    outbox_.push_back(
        outgoing{{{"action", "join"}, {"room", frame.at("room")}}, quiet, 0, {}, purpose::switch_room, {}, true});
    return {};
  } else if (action == "ids") {
    auto const* on = frame.if_contains("on");
    settings_.show_ids = on && on->is_bool() && on->get_bool();
    return {{tone::info, settings_.show_ids ? "* message ids are shown: [#42] (/edit ID TEXT, /delete ID; /ids off hides them)"
                                            : "* message ids are hidden (/ids on shows them)"}};
  } else if (action == "kick" || action == "ban" || action == "unban") {
    // This room unless one is named (named when sent); `*`: the server-wide form (no room).
    if (!frame.contains("room")) {
      outgoing req{std::move(frame), quiet, 0, {}, purpose::none, {}, true};
      req.here = true;
      outbox_.push_back(std::move(req));
      return {};
    }
    if (str(frame, "room") == "*") frame.erase("room");
  } else if (action == "query") {
    const auto with = str(frame, "with");
    if (with.empty()) {
      if (query_.empty()) return {{tone::info, "* no query is open (/query NAME opens one)"}};
      const std::string left = query_;
      query_.clear();
      std::vector<out_line> lines{{tone::info, "* closed the query with " + printable(left) + "; back in " + room_}};
      if (settings_.activity) enter_view(room_, left);
      return lines;
    }
    // Opened when the conversation's history is there (an unknown name is refused: 404).
    // (The activity view then asks for the unread ones; a script is shown the last 50.)
    const int limit = settings_.activity ? 1 : 50;
    outbox_.push_back(outgoing{{{"action", "history"}, {"with", with}, {"limit", limit}}, quiet, 0, {}, purpose::query_open,
                               std::string(with), true});
    return {};
  }
  if (str(frame, "action") == "msg" && !frame.contains("to") && !query_.empty()) frame["to"] = query_;
  if (str(frame, "action") == "msg" && str(frame, "message").size() > settings_.max_message) {
    for (auto& piece : split_text(str(frame, "message"), settings_.max_message)) {
      json::object part = frame;
      part["message"] = piece;
      outbox_.push_back(outgoing{std::move(part), quiet, 0, {}, purpose::none, {}, true});
    }
    return {};
  }
  outbox_.push_back(outgoing{std::move(frame), quiet, 0, {}, purpose::none, {}, true});
  return {};
}

std::string activity_line(std::vector<activity_entry> const& entries, std::size_t max_entries) {
  std::string out;
  std::size_t shown = 0;
  for (auto const& e : entries) {
    if (e.count <= 0) continue;
    if (shown == max_entries) {
      const auto rest = std::count_if(entries.begin(), entries.end(), [](auto const& x) { return x.count > 0; }) -
                        static_cast<std::ptrdiff_t>(shown);
      out += " [+" + std::to_string(rest) + "]";
      break;
    }
    if (!out.empty()) out += ' ';
    out += "[" + e.label + " " + std::to_string(e.count) + "]";
    ++shown;
  }
  return out;
}

std::string chat_state::prompt() const {
  auto act = activity_line(activity_);
  if (!act.empty()) act += ' ';
  return act + (query_.empty() ? room_ : "@" + query_) + "> ";
}

std::string chat_state::label_of(std::string const& view) {
  return view.starts_with('#') ? view : "@" + view;
}

void chat_state::count_activity(std::string const& label, std::int64_t add) {
  auto it = std::find_if(activity_.begin(), activity_.end(), [&](auto const& e) { return same_name(e.label, label); });
  if (it == activity_.end()) {
    if (activity_.size() >= 1000) return;
    activity_.push_back({label, 0});
    it = std::prev(activity_.end());
  }
  it->count += add;
}

void chat_state::set_activity(std::string const& label, std::int64_t count) {
  auto it = std::find_if(activity_.begin(), activity_.end(), [&](auto const& e) { return same_name(e.label, label); });
  if (count <= 0) {
    if (it != activity_.end()) activity_.erase(it);
    return;
  }
  if (it == activity_.end())
    count_activity(label, count);
  else
    it->count = count;
}

void chat_state::queue_internal(json::object frame, purpose why, std::string target) {
  outbox_.push_back(outgoing{std::move(frame), true, 0, {}, why, std::move(target)});
}

void chat_state::mark_read(std::string const& view, std::int64_t id) {
  if (view.empty() || id <= 0) return;
  auto& known = marked_[proto::fold(view)];
  if (id <= known) return;
  known = id;
  json::object f{{"action", "read"}, {"id", id}};
  if (view.starts_with('#'))
    f["room"] = view;
  else
    f["with"] = view;
  queue_internal(std::move(f), purpose::none);
}

void chat_state::enter_view(std::string target, std::string const& left) {
  // The view left: read up to the last message shown there.
  if (!left.empty() && !same_name(left, target))
    if (auto it = seen_.find(proto::fold(left)); it != seen_.end()) mark_read(left, it->second);
  set_activity(label_of(target), 0);
  entering_ = std::move(target);
  entering_phase_ = entering::want_counts;
  shown_entering_.clear();
  queue_internal({{"action", entering_.starts_with('#') ? "rooms" : "conversations"}}, purpose::counts);
}

bool chat_state::msg_in_flight() const {
  return std::any_of(pending_.begin(), pending_.end(),
                     [](outgoing const& r) { return str(r.frame, "action") == "msg"; });
}

bool chat_state::room_change_in_flight() const {
  return std::any_of(pending_.begin(), pending_.end(), [](outgoing const& r) {
    const auto a = str(r.frame, "action");
    return a == "create" || a == "join" || a == "exit";
  });
}

std::vector<json::object> chat_state::take_sendable(clock::time_point now) {
  std::vector<json::object> out;
  while (!outbox_.empty() && !msg_in_flight() && outbox_.front().not_before <= now) {
    // A piece cut before a 413 lowered the bound: cut it again before it goes.
    if (auto& f = outbox_.front().frame; str(f, "action") == "msg" && str(f, "message").size() > settings_.max_message) {
      auto front = std::move(outbox_.front());
      outbox_.pop_front();
      auto pieces = split_text(str(front.frame, "message"), settings_.max_message);
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        json::object part = front.frame;
        part["message"] = *it;
        outbox_.push_front(outgoing{std::move(part), front.quiet});
      }
      continue;
    }
    if (outbox_.front().here) {
      if (room_change_in_flight()) break;
      outbox_.front().frame["room"] = room_;
      outbox_.front().here = false;
    }
    out.push_back(outbox_.front().frame);
    pending_.push_back(std::move(outbox_.front()));
    outbox_.pop_front();
  }
  return out;
}

std::optional<chat_state::clock::time_point> chat_state::wake_at() const {
  if (outbox_.empty() || msg_in_flight() || outbox_.front().not_before == clock::time_point{})
    return std::nullopt;
  return outbox_.front().not_before;
}

namespace {
std::string to_whom(json::object const& f) {
  auto to = str(f, "to");
  return to.empty() ? std::string() : " to " + printable(to);
}
}  // namespace

std::vector<out_line> chat_state::give_up(std::string_view why) {
  auto lines = lose_in_flight(why);
  auto rest = drop_queued(why);
  lines.insert(lines.end(), rest.begin(), rest.end());
  return lines;
}

std::vector<out_line> chat_state::lose_in_flight(std::string_view why) {
  std::vector<out_line> lines;
  for (auto const& r : pending_)
    if (str(r.frame, "action") == "msg")
      lines.push_back({tone::error, "! perhaps not sent" + to_whom(r.frame) + ": " + quoted(r.frame) + " (" +
                                        std::string(why) + " before the server answered)"});
  failures_ += static_cast<int>(lines.size());
  pending_.clear();
  return lines;
}

std::vector<out_line> chat_state::drop_queued(std::string_view why) {
  std::vector<out_line> lines;
  for (auto const& r : outbox_)
    if (str(r.frame, "action") == "msg")
      lines.push_back({tone::error, "! not sent" + to_whom(r.frame) + ": " + quoted(r.frame) + " (" + std::string(why) + ")"});
  failures_ += static_cast<int>(lines.size());
  outbox_.clear();
  return lines;
}

void chat_state::learn_name(std::string_view name) {
  if (name.empty() || !proto::valid_account_name(name) || names_.size() >= 10000) return;
  names_.insert_or_assign(proto::fold(name), std::string(name));
}

void chat_state::learn_room(std::string_view room) {
  if (!room.starts_with('#') || !proto::valid_room_name(proto::strip_hash(room)) || rooms_.size() >= 10000) return;
  rooms_.insert_or_assign(proto::fold(room), std::string(room));
}

void chat_state::learn_message(json::object const& msg) {
  learn_name(str(msg, "from"));
  const auto to = str(msg, "to");
  to.starts_with('#') ? learn_room(to) : learn_name(to);
  remember(integer(msg, "id"), str(msg, "from"), to);
}

std::string chat_state::registered_room(std::string_view room) const {
  auto it = rooms_.find(proto::fold(room));
  return it == rooms_.end() ? std::string(room) : it->second;
}

std::string chat_state::registered(std::string_view name) const {
  auto it = names_.find(proto::fold(name));
  return it == names_.end() ? std::string(name) : it->second;
}

std::vector<std::string> chat_state::known_names() const {
  std::vector<std::string> out;
  for (auto const& [folded, name] : names_) out.push_back(name);
  std::sort(out.begin(), out.end());
  return out;
}

std::vector<std::string> chat_state::known_rooms() const {
  std::vector<std::string> out;
  for (auto const& [folded, room] : rooms_) out.push_back(room);
  std::sort(out.begin(), out.end());
  return out;
}

out_line chat_state::signed_in_line(json::object const& reply, bool again) const {
  const auto status = integer(reply, "response");
  std::string text = (again ? "* reconnected as " : "* signed in as ") + me_ +
                     (status == 201 ? " (new account)" : "") + "; you are in " + room_;
  if (const auto missed = integer(reply, "missed"); missed > 0)
    text += " (" + std::to_string(missed) + " new message" + (missed == 1 ? "" : "s") +
            (again ? " while disconnected)" : " since your last visit)");
  return {tone::info, std::move(text)};
}

std::string chat_state::conversation_of(json::object const& msg) const {
  const auto to = str(msg, "to");
  if (to.starts_with('#')) return proto::fold(to);
  const auto from = str(msg, "from");
  return proto::fold(same_name(from, me_) ? to : from);
}

bool chat_state::seen_before(json::object const& msg) {
  const auto id = integer(msg, "id", -1);
  if (id < 0) return false;
  auto [it, added] = seen_.try_emplace(conversation_of(msg), id);
  if (added) return false;
  if (id <= it->second) return true;
  it->second = id;
  return false;
}

chat_state::reaction chat_state::received(json::object const& frame, std::int64_t now, clock::time_point mono) {
  // A notice followed by a reply was no goodbye (a kick, a dropped schedule): a connection
  // lost later is not "closed by the server".
  if (frame.contains("response")) {
    notice_.clear();
    return on_reply(frame, now, mono);
  }
  if (frame.contains("action")) return on_push(frame, now);
  return {};
}

chat_state::reaction chat_state::on_msg_reply(outgoing req, json::object const& frame, std::int64_t now,
                                              clock::time_point mono) {
  reaction r;
  const auto status = integer(frame, "response");
  auto const& f = req.frame;
  const auto to = str(f, "to");
  const bool direct = !to.empty() && !to.starts_with('#');
  const std::string whom = direct ? registered(to) : std::string(to);

  if (status == 429 && req.refusals < settings_.max_retries) {
    // Flood control: the same message again once the server allows it, before anything
    // typed after it (nothing else was sent while it waited for this reply).
    double after = 1.0;
    if (auto const* a = frame.if_contains("retry_after"); a && a->is_number()) after = a->to_number<double>();
    after = std::clamp(after, 0.001, 3600.0);
    ++req.refusals;
    req.not_before = mono + std::chrono::duration_cast<clock::duration>(std::chrono::duration<double>(after));
    if (after >= 1.0 && !req.quiet) {
      char buf[32];
      std::snprintf(buf, sizeof buf, "%.1f", std::ceil(after * 10) / 10);
      r.lines.push_back({tone::info, std::string("* the server asks to slow down: sending again in ") + buf + " s"});
    }
    outbox_.push_front(std::move(req));
    return r;
  }
  if (status == 413) {
    // The server takes less than we thought: smaller pieces, in place of this one.
    const auto text = str(f, "message");
    const std::size_t half = (text.size() + 1) / 2;
    auto pieces = split_text(text, half);
    if (pieces.size() > 1 && half >= 16) {
      settings_.max_message = std::min(settings_.max_message, half);
      for (auto it = pieces.rbegin(); it != pieces.rend(); ++it) {
        json::object part = f;
        part["message"] = *it;
        outbox_.push_front(outgoing{std::move(part), req.quiet});
      }
      return r;
    }
  }
  if (status >= 400) {
    ++failures_;
    std::string why = printable(str(frame, "error"));
    if (why.empty()) why = "refused by the server";
    if (status == 429)
      why += "; gave up after " + std::to_string(req.refusals + 1) + (req.refusals == 0 ? " try" : " tries");
    if (const auto until = integer(frame, "until"); until > 0) why += " until " + clock_time(until, now);
    r.lines.push_back({tone::error, std::string(f.contains("at") ? "! not scheduled" : "! not sent") +
                                        (direct ? " to " + printable(whom) : std::string()) + ": " + quoted(f) + " (" +
                                        why + ")"});
    return r;
  }
  if (f.contains("at")) {
    // Scheduled (202): it is posted, and pushed to us like to anyone, at its time.
    if (req.quiet) return r;
    const auto sched = std::to_string(integer(frame, "scheduled"));
    const std::string where = printable(!str(frame, "to").empty() ? str(frame, "to") : to.empty() ? std::string_view(room_) : whom);
    r.lines.push_back({tone::info, "* scheduled message " + sched + " goes to " + where + " at " +
                                       clock_time(integer(frame, "at", integer(f, "at")), now) + ": " + quoted(f) +
                                       " (/cancel " + sched + " takes it back)"});
    return r;
  }
  if (auto id = integer(frame, "id", -1); id >= 0) {
    remember(id, me_, to.empty() ? std::string_view(room_) : std::string_view(whom));
    json::object seen{{"from", me_}, {"to", to.empty() ? std::string_view(room_) : std::string_view(whom)}, {"id", id}};
    seen_before(seen);
  }
  if (req.quiet) return r;
  if (settings_.show_own) {
    json::object m{{"from", me_}, {"to", to.empty() ? std::string_view(room_) : std::string_view(whom)},
                   {"message", str(f, "message")}, {"time", integer(frame, "time", now)}, {"id", integer(frame, "id")}};
    r.lines.push_back(render(m, false, now));
    if (settings_.activity && entering_phase_ != entering::none && shown_entering_.size() < 10000)
      shown_entering_.insert(integer(frame, "id", -1));
    // A private message to oneself also comes back as a push: it is on the screen already.
    if (direct && same_name(to, me_)) {
      own_ids_.push_back(integer(frame, "id", -1));
      if (own_ids_.size() > 64) own_ids_.pop_front();
    }
  }
  if (status == 202)
    r.lines.push_back({tone::info, "* " + printable(whom) + " is offline: the message waits for their next sign-in"});
  return r;
}

void chat_state::take_counts(json::object const& frame, std::string_view action) {
  const bool rooms = action == "rooms";
  auto const* list = frame.if_contains(rooms ? "rooms" : "conversations");
  if (!list || !list->is_array()) return;
  if (settings_.activity && (!rooms || std::any_of(list->get_array().begin(), list->get_array().end(), [](auto const& v) {
                               return v.is_object() && v.get_object().contains("unread");
                             }))) {
    // The reply is the whole truth for its kind: what it does not list has nothing unread.
    std::erase_if(activity_, [rooms](activity_entry const& e) { return e.label.starts_with('#') == rooms; });
    for (auto& [key, count] : unread_)
      if (key.starts_with('#') == rooms) count = 0;
  }
  for (auto const& v : list->get_array()) {
    if (!v.is_object()) continue;
    auto const& o = v.get_object();
    auto const* u = o.if_contains("unread");
    if (!u || !u->is_number()) continue;  // a server without unread counts
    if (rooms)
      if (auto const* m = o.if_contains("member"); m && m->is_bool() && !m->get_bool()) continue;
    const std::string name(str(o, rooms ? "room" : "with"));
    if (name.empty() || (!rooms && same_name(name, me_))) continue;
    const auto key = proto::fold(name);
    const auto unread = integer(o, "unread");
    unread_[key] = unread;
    if (rooms) marked_[key] = std::max(marked_[key], integer(o, "last_read"));
    if (!settings_.activity) continue;
    // What is viewed, or about to be, is not activity.
    const bool viewed = same_name(name, view()) || (entering_phase_ != entering::none && same_name(name, entering_));
    set_activity(rooms ? name : "@" + name, viewed ? 0 : unread);
  }
  if (settings_.activity && entering_phase_ == entering::want_counts && rooms == entering_.starts_with('#')) {
    const auto unread = unread_[proto::fold(entering_)];
    const auto limit = std::min<std::int64_t>(unread, settings_.max_unread_shown) + settings_.context_shown;
    json::object f{{"action", "history"}, {"limit", std::max<std::int64_t>(limit, 1)}};
    f[rooms ? "room" : "with"] = entering_;
    queue_internal(std::move(f), purpose::view_history, entering_);
    entering_phase_ = entering::want_history;
  }
}

void chat_state::show_view(json::array const& messages, std::string const& target, std::int64_t now,
                           std::vector<out_line>& lines) {
  const auto key = proto::fold(target);
  const auto unread = unread_[key];
  // The divider goes before the unread-th last message from someone else (the server counts
  // only theirs), or nowhere when nothing is unread.
  std::size_t divider = messages.size();
  if (unread > 0) {
    std::int64_t counted = 0;
    for (std::size_t i = messages.size(); i-- > 0;) {
      if (!messages[i].is_object()) continue;
      if (same_name(str(messages[i].get_object(), "from"), me_)) continue;
      divider = i;
      if (++counted == std::min<std::int64_t>(unread, settings_.max_unread_shown)) break;
    }
  }
  const std::size_t context_from =
      divider > static_cast<std::size_t>(settings_.context_shown) ? divider - static_cast<std::size_t>(settings_.context_shown) : 0;
  std::int64_t newest = 0;
  std::vector<out_line> fresh;
  for (std::size_t i = 0; i < messages.size(); ++i) {
    if (!messages[i].is_object()) continue;
    auto const& m = messages[i].get_object();
    learn_message(m);
    newest = std::max(newest, integer(m, "id"));
    // After a reconnect, what was on the screen before is not shown again; nor what was
    // shown live while the history was on its way.
    if (seen_before(m) && hide_seen_history_) continue;
    if (shown_entering_.contains(integer(m, "id", -1))) continue;
    if (i < context_from) continue;
    if (i < divider)
      lines.push_back(render(m, true, now));
    else
      fresh.push_back(render(m, false, now));
  }
  if (!fresh.empty()) {
    std::string text = "--- new messages";
    if (unread > settings_.max_unread_shown)
      text += ": " + std::to_string(unread) + ", the last " + std::to_string(settings_.max_unread_shown) +
              " below (/history " + (target.starts_with('#') ? target : printable(target)) + " N for more)";
    lines.push_back({tone::event, text + " ---"});
    lines.insert(lines.end(), fresh.begin(), fresh.end());
  } else if (messages.empty() && !target.starts_with('#')) {
    lines.push_back({tone::info, "* no messages with " + printable(target) + " yet"});
  }
  unread_[key] = 0;
  shown_entering_.clear();
  set_activity(label_of(target), 0);
  mark_read(target, newest);
}

chat_state::reaction chat_state::on_reply(json::object const& frame, std::int64_t now, clock::time_point mono) {
  outgoing req;
  if (!pending_.empty()) {
    req = std::move(pending_.front());
    pending_.pop_front();
  }
  const std::string action(str(req.frame, "action"));
  if (action == "msg") return on_msg_reply(std::move(req), frame, now, mono);

  const auto status = integer(frame, "response");
  reaction r;
  auto say = [&r, quiet = req.quiet](tone t, std::string text) {
    if (!quiet) r.lines.push_back({t, std::move(text)});
  };
  const auto room = printable(str(frame, "room"));
  if (status < 400) learn_room(str(frame, "room"));

  if (status >= 400) {
    if (!req.quiet) ++failures_;
    if (req.why == purpose::counts || req.why == purpose::view_history) {
      // A server without unread counts: the view is entered without them.
      if (entering_phase_ != entering::none && (req.why == purpose::view_history || same_name(action, entering_.starts_with('#') ? "rooms" : "conversations")))
        entering_phase_ = entering::none;
      return r;
    }
    if (req.why == purpose::where) return r;
    std::string text = refusal(req.frame, frame, now);
    if (req.why == purpose::switch_room && status == 403)
      text = "you are not a member of " + printable(str(req.frame, "room")) + " (/join ROOM PASSWORD)";
    say(tone::error, "! " + text);
    return r;
  }
  if (status == 100) return r;  // sign-in prompts: the sign-in dialogue handles them

  if (action == "rooms" || action == "conversations") take_counts(frame, action);
  if (req.why == purpose::counts) {
    if (tell_activity_ > 0 && --tell_activity_ == 0 && !activity_line(activity_).empty())
      r.lines.push_back({tone::info, "* new messages in " + activity_line(activity_, 1000) +
                                         " (/switch ROOM, /query NAME)"});
    return r;
  }
  if (req.why == purpose::view_history) {
    if (entering_phase_ == entering::want_history && same_name(entering_, req.target)) {
      entering_phase_ = entering::none;
      if (auto const* messages = frame.if_contains("messages"); messages && messages->is_array())
        show_view(messages->get_array(), req.target, now, r.lines);
    }
    return r;
  }
  if (req.why == purpose::query_open) {
    const std::string left = view();
    const auto with = str(frame, "with");
    query_ = registered(with.empty() ? std::string_view(req.target) : with);
    learn_name(query_);
    say(tone::info, "* talking privately with " + printable(query_) + " (/query alone or /switch ROOM leaves)");
    if (settings_.activity) enter_view(query_, left);
    else if (auto const* messages = frame.if_contains("messages"); messages && messages->is_array())
      for (auto const& m : messages->get_array())
        if (m.is_object()) r.lines.push_back(render(m.get_object(), true, now));
    return r;
  }

  if (action == "authenticate" || action == "register") {
    if (auto name = str(frame, "account_name"); !name.empty()) me_ = name;  // as registered
    learn_name(me_);
    if (!room.empty()) room_ = room;
    if (!req.quiet) r.lines.push_back(signed_in_line(frame, false));
    if (settings_.activity) {
      // Every room one is a member of, now and later; then what is unread where.
      queue_internal({{"action", "watch"}, {"rooms", "all"}}, purpose::none);
      enter_view(view(), {});
      queue_internal({{"action", query_.empty() ? "conversations" : "rooms"}}, purpose::counts);
      tell_activity_ = 2;
    }
  } else if (action == "presence" && req.why == purpose::where) {
    // After a notice: a kick or ban moved this connection (contract: "Edits, schedules,
    // moderation, contacts"); the notice said so, and the view follows.
    if (!room.empty() && !same_name(room, room_)) {
      const std::string left = view();
      room_ = room;
      if (settings_.activity && query_.empty()) enter_view(room_, left);
    }
  } else if (action == "presence") {
    if (auto name = str(frame, "account_name"); !name.empty()) me_ = name;
    learn_name(me_);
    if (!room.empty()) room_ = room;
    if (auto const* u = req.frame.if_contains("user"); u && u->is_object())
      if (auto status_text = str(u->get_object(), "status"); !status_text.empty()) {
        if (status_text == "online")
          say(tone::info, "* you are back (online)");
        else
          say(tone::info, "* you are marked " + (status_text == "away" ? std::string("away") : "away: " + printable(status_text)) +
                              " (/back when you are back)");
      }
  } else if (action == "create" || action == "join" || action == "exit" || action == "leave") {
    const std::string left = view();
    room_ = room;
    if (action == "create") {
      say(tone::info, "* created " + room + "; you own it and are in it. Its password: " +
                          printable(str(frame, "password")));
      say(tone::info, "  (others enter with /join " + std::string(proto::strip_hash(room)) + " " +
                          printable(str(frame, "password")) + ", or /invite them)");
    } else {
      say(tone::info, action == "join" ? "* you are in " + room : "* back in " + room);
    }
    // A room the user goes to closes the query; a reconnect's re-join keeps it.
    if (req.typed) query_.clear();
    if (settings_.activity && query_.empty()) enter_view(room_, left);
  } else if (action == "read") {
    const auto whose = !str(frame, "with").empty() ? std::string(str(frame, "with")) : std::string(str(frame, "room"));
    if (!whose.empty()) {
      auto& known = marked_[proto::fold(whose)];
      known = std::max(known, integer(frame, "last_read"));
    }
  } else if (action == "conversations") {
    auto const* list = frame.if_contains("conversations");
    if (!list || !list->is_array() || list->get_array().empty()) {
      say(tone::info, "* no private conversations yet (/query NAME starts one)");
    } else {
      say(tone::info, "* private conversations (/query NAME opens one):");
      for (auto const& v : list->get_array()) {
        if (!v.is_object()) continue;
        auto const& o = v.get_object();
        const auto with = printable(str(o, "with"));
        std::string text = "  " + with;
        if (const auto unread = integer(o, "unread"); unread > 0) text += " (" + std::to_string(unread) + " unread)";
        if (auto const* last = o.if_contains("last"); last && last->is_object()) {
          auto shown = render_message(last->get_object(), me_, with, false, now).text;
          if (const auto nl = shown.find('\n'); nl != std::string::npos) shown = shown.substr(0, nl) + " ...";
          text += ": " + shown;
        }
        say(tone::info, std::move(text));
      }
    }
  } else if (action == "invite") {
    learn_name(str(frame, "user"));
    say(tone::info, "* invited " + printable(str(frame, "user")) + " to " + room);
  } else if (action == "history") {
    learn_name(str(frame, "with"));
    auto const* messages = frame.if_contains("messages");
    const std::string where = room.empty() ? "your conversation with " + printable(str(frame, "with")) : room;
    if (!messages || !messages->is_array() || messages->get_array().empty()) {
      say(tone::info, "* no messages in " + where);
    } else {
      for (auto const& m : messages->get_array()) {
        if (!m.is_object()) continue;
        learn_message(m.get_object());
        seen_before(m.get_object());
        if (!req.quiet) r.lines.push_back(render(m.get_object(), true, now));
      }
    }
  } else if (action == "users") {
    const bool everyone = str(req.frame, "room") == "*";
    std::string text = everyone ? std::string("* signed in:") : "* in " + room + ":";
    if (auto const* users = frame.if_contains("users"); users && users->is_array()) {
      bool first = true;
      for (auto const& u : users->get_array()) {
        if (!u.is_object()) continue;
        learn_name(str(u.get_object(), "account_name"));
        text += first ? " " : ", ";
        first = false;
        text += printable(str(u.get_object(), "account_name"));
        // "online" is what everyone listed is: only a status someone chose is worth showing.
        if (auto status_text = printable(str(u.get_object(), "status"));
            !status_text.empty() && status_text != "online")
          text += " (" + status_text + ")";
      }
      if (first) text += " nobody";
    }
    say(tone::info, std::move(text));
  } else if (action == "rooms") {
    say(tone::info, "* rooms:");
    if (auto const* rooms = frame.if_contains("rooms"); rooms && rooms->is_array()) {
      for (auto const& v : rooms->get_array()) {
        if (!v.is_object()) continue;
        auto const& o = v.get_object();
        learn_room(str(o, "room"));
        std::string text = "  " + printable(str(o, "room")) + " (" + std::to_string(integer(o, "online")) + " online";
        // #general has no owner and everyone is a member of it: nothing to say there.
        if (auto owner = str(o, "owner"); !owner.empty()) {
          learn_name(owner);
          text += ", owner " + printable(owner);
          auto const* m = o.if_contains("member");
          if (m && m->is_bool() && m->get_bool() && !same_name(owner, me_)) text += ", member";
        }
        if (const auto unread = integer(o, "unread"); unread > 0) text += ", " + std::to_string(unread) + " unread";
        text += ")";
        say(tone::info, std::move(text));
      }
    }
  } else if (action == "edit") {
    say(tone::info, "* edited message #" + std::to_string(integer(req.frame, "id")) + ": " + quoted(req.frame));
  } else if (action == "delete") {
    say(tone::info, "* deleted message #" + std::to_string(integer(req.frame, "id")));
  } else if (action == "scheduled") {
    auto const* list = frame.if_contains("scheduled");
    if (!list || !list->is_array() || list->get_array().empty()) {
      say(tone::info, "* no scheduled messages (/at TIME TEXT schedules one)");
    } else {
      say(tone::info, "* scheduled messages (/cancel ID takes one back):");
      for (auto const& v : list->get_array()) {
        if (!v.is_object()) continue;
        auto const& o = v.get_object();
        std::string text(str(o, "message"));
        if (const auto nl = text.find('\n'); nl != std::string::npos) text = text.substr(0, nl) + " ...";
        say(tone::info, "  " + std::to_string(integer(o, "scheduled")) + "  at " + clock_time(integer(o, "at"), now) +
                            " to " + printable(str(o, "to")) + ": " + printable(text));
      }
    }
  } else if (action == "cancel") {
    say(tone::info, "* cancelled scheduled message " + std::to_string(integer(req.frame, "scheduled")));
  } else if (action == "report") {
    learn_name(str(frame, "user"));
    say(tone::info, "* reported " + printable(str(frame, "user")) +
                        " (when enough people report someone, the server mutes them for a while)");
  } else if (action == "kick" || action == "ban" || action == "unban") {
    const auto user = printable(str(frame, "user"));
    learn_name(str(frame, "user"));
    if (!req.frame.contains("room")) {
      say(tone::info, action == "ban" ? "* banned the account " + user + " from the server (/unban " + user + " * lifts it)"
                                      : "* the account " + user + " is no longer banned");
    } else if (action == "kick") {
      say(tone::info, "* kicked " + user + " out of " + room + " (still a member: may come back)");
    } else if (action == "ban") {
      say(tone::info, "* banned " + user + " from " + room + " (/unban " + user + " " + room + " lifts it)");
    } else {
      say(tone::info, "* " + user + " is no longer banned from " + room + " (joins with the password or an invitation)");
    }
  } else if (action == "get_contacts") {
    const auto n = integer(frame, "quantity");
    say(tone::info, n == 0 ? std::string("* no contacts yet (/add USER adds one)")
                           : "* your contacts (" + std::to_string(n) + "):");
  } else if (action == "add_contact") {
    learn_name(str(frame, "user_id"));
    say(tone::info, "* " + printable(str(frame, "user_id")) + " is in your contacts");
  } else if (action == "del_contact") {
    say(tone::info, "* " + printable(str(frame, "user_id")) + " is no longer in your contacts");
  } else if (action != "quit" && action != "logout") {
    if (auto alert = str(frame, "alert"); !alert.empty()) say(tone::info, "* " + printable(alert));
  }
  return r;
}

std::string chat_state::refusal(json::object const& request, json::object const& reply, std::int64_t now) const {
  const auto action = str(request, "action");
  const auto status = integer(reply, "response");
  std::string text = printable(str(reply, "error"));
  const auto id = std::to_string(integer(request, action == "cancel" ? "scheduled" : "id"));
  // The server's words are clear for most; these say which message and what may be done.
  if ((action == "edit" || action == "delete") && status == 404)
    text = "no message #" + id + " to " + std::string(action) + " (it never was, is deleted, or is no longer kept)";
  else if (action == "edit" && status == 403)
    text = "message #" + id + " is not yours: only its author can edit it";
  else if (action == "delete" && status == 403)
    text = "message #" + id + " is not yours: only its author, the owner of its room or an admin can delete it";
  else if (action == "cancel" && status == 404)
    text = "you have no scheduled message " + id + " waiting (/scheduled lists them)";
  else if ((action == "ban" || action == "unban") && !request.contains("room") && status == 403)
    text = "only a server admin can " + std::string(action) + " an account (a room's owner: /" +
           std::string(action) + " USER ROOM)";
  if (text.empty()) text = action.empty() ? "the server refused a request" : "/" + std::string(action) + " failed";
  if (const auto until = integer(reply, "until"); until > 0) text += " until " + clock_time(until, now);
  return text;
}

chat_state::reaction chat_state::on_push(json::object const& frame, std::int64_t now) {
  reaction r;
  const auto action = str(frame, "action");
  if (action == "msg") {
    learn_message(frame);
    if (auto const* id = frame.if_contains("id"); id && !own_ids_.empty()) {
      auto it = std::find(own_ids_.begin(), own_ids_.end(), integer(frame, "id", -2));
      if (it != own_ids_.end()) {
        own_ids_.erase(it);
        return r;
      }
    }
    auto const* h = frame.if_contains("history");
    const bool history = h && h->is_bool() && h->get_bool();
    if (settings_.activity) {
      // A view's past comes from its history request (with the divider): pushed history
      // (at sign-in, on join) is not shown.
      if (history) return r;
      const auto to = str(frame, "to");
      const bool direct = !to.empty() && !to.starts_with('#');
      const bool mine = same_name(str(frame, "from"), me_);
      const std::string other(direct ? (mine ? to : str(frame, "from")) : to);
      const bool viewed = direct ? !query_.empty() && same_name(other, query_) : query_.empty() && same_name(to, room_);
      if (!viewed) {
        // Written by oneself on another device: nothing new for anyone.
        if (!mine) count_activity(direct ? "@" + registered(other) : registered_room(to), 1);
        return r;
      }
    }
    if (seen_before(frame) && history && hide_seen_history_) return r;
    if (settings_.activity && entering_phase_ != entering::none && shown_entering_.size() < 10000)
      shown_entering_.insert(integer(frame, "id", -1));
    r.lines.push_back(render(frame, history, now));
  } else if (action == "read") {
    const auto with = str(frame, "with");
    const std::string whose(with.empty() ? str(frame, "room") : with);
    if (!whose.empty()) {
      // Read on another device: its activity is cleared here too.
      auto& known = marked_[proto::fold(whose)];
      known = std::max(known, integer(frame, "id"));
      set_activity(with.empty() ? whose : "@" + whose, 0);
    }
  } else if (action == "event" && (str(frame, "event") == "edit" || str(frame, "event") == "delete")) {
    if (auto line = on_change(frame)) r.lines.push_back(std::move(*line));
  } else if (action == "contact_list") {
    learn_name(str(frame, "user_id"));
    r.lines.push_back({tone::info, "  " + printable(str(frame, "user_id"))});
  } else if (action == "event") {
    learn_name(str(frame, "user"));
    learn_room(str(frame, "room"));
    const auto event = str(frame, "event");
    const auto who = printable(str(frame, "user"));
    const auto where = printable(str(frame, "room"));
    if (event == "status") {
      const auto status_text = printable(str(frame, "status"));
      r.lines.push_back({tone::event, "* " + who + (status_text == "online" ? std::string(" is back")
                                                    : status_text == "away" ? std::string(" is away")
                                                                            : " is away: " + status_text)});
      return r;
    }
    if (event == "online") return r;  // #general's count for watchers: nothing to print
    // The comings and goings of watched rooms other than the one viewed are not worth a line.
    if (settings_.activity && !where.empty() && (!query_.empty() || !same_name(where, room_))) return r;
    if (event == "join") r.lines.push_back({tone::event, "* " + who + " joined " + where});
    else if (event == "leave") r.lines.push_back({tone::event, "* " + who + " left " + where});
    else r.lines.push_back({tone::event, "* " + who + ": " + printable(event) + " " + where});
  } else if (action == "invite") {
    learn_name(str(frame, "from"));
    learn_room(str(frame, "room"));
    const auto where = printable(str(frame, "room"));
    r.lines.push_back({tone::event, "* " + printable(str(frame, "from")) + " invited you to " + where +
                                        " (/join " + std::string(proto::strip_hash(where)) + ")"});
  } else if (action == "probe") {
    // The server checks we are alive: any request answers it, and presence changes nothing.
    json::object answer{{"action", "presence"}};
    pending_.push_back(outgoing{answer, true});
    r.answer = std::move(answer);
  } else if (action == "notice") {
    notice_ = printable(str(frame, "text"));
    r.lines.push_back({tone::error, "! server: " + notice_});
    // A kick or ban out of a room comes as a notice, and moves the connection to #general
    // (which no one is sent out of): where are we now?
    if (!room_.empty() && !same_name(room_, "#general"))
      queue_internal({{"action", "presence"}}, purpose::where);
  }
  return r;
}

std::optional<out_line> chat_state::on_change(json::object const& frame) const {
  const auto id = integer(frame, "id");
  const bool edit = str(frame, "event") == "edit";
  std::string text = "* ";
  auto const it = messages_.find(id);
  if (it == messages_.end()) {
    text += "message #" + std::to_string(id) + (edit ? " was edited" : " was deleted");
  } else {
    auto const& [from, to] = it->second;
    const bool direct = !to.starts_with('#');
    const bool mine = same_name(from, me_);
    const std::string other = direct ? (mine ? to : from) : to;
    const bool viewed = direct ? !query_.empty() && same_name(other, query_) : query_.empty() && same_name(to, room_);
    // Another view's message: entering that view shows it as it is now.
    if (settings_.activity && !viewed) return std::nullopt;
    const std::string where = viewed ? "" : direct ? " (private, with " + printable(other) + ")" : " in " + printable(to);
    if (edit)
      text += printable(from) + " edited message #" + std::to_string(id) + where;
    else
      text += "message #" + std::to_string(id) + " by " + printable(from) + where + " was deleted";
  }
  if (edit) {
    text += ": ";
    text += message_text(str(frame, "message"), display_width(text));
  }
  return out_line{tone::event, std::move(text)};
}

}  // namespace jim::client
