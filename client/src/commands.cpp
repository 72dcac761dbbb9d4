#include "commands.hpp"

#include "text.hpp"

#include "jim/framing.hpp"
#include "jim/protocol.hpp"

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <charconv>
#include <cmath>
#include <cstdio>
#include <ctime>

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

input parse_input(std::string_view line) {
  while (!line.empty() && (line.back() == '\n' || line.back() == '\r')) line.remove_suffix(1);
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
  if (cmd == "exit" || cmd == "leave") {
    if (n != 0) return usage("/exit   (back to #general)");
    return request({{"action", "exit"}});
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
  if (cmd == "users") {
    if (n != 0) return usage("/users");
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
constexpr std::string_view command_names[] = {"/create", "/exit",  "/help",  "/history", "/invite", "/join",
                                              "/leave",  "/logout", "/msg",   "/private", "/quit",  "/rooms",  "/users"};
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
    else if (cmd == "join" && arg == 0) offer_rooms(word.starts_with('#'));
    else if (cmd == "history" && arg == 0) word.starts_with('#') ? offer_rooms(true) : offer_names();
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
  return "Type a line to send it to the current room. Commands:\n"
         "  /create NAME           create a room, become its owner and enter it\n"
         "  /join NAME [PASSWORD]  enter a room (its members need no password)\n"
         "  /exit                  go back to #general\n"
         "  /msg USER TEXT         send a private message (also /private)\n"
         "  /invite USER [ROOM]    make USER a member of your room\n"
         "  /history [#ROOM|NAME] [N]  the last N messages (50) of this room, of #ROOM,\n"
         "                         or of your private conversation with NAME\n"
         "  /users                 who is in this room\n"
         "  /rooms                 list the rooms\n"
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
  const auto len = std::strftime(buf, sizeof buf, same_day ? "%H:%M" : "%Y-%m-%d %H:%M", &tw);
  return std::string(buf, len);
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
    if (!first) out += "\n" + std::string(indent, ' ');
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
                        bool history, std::int64_t now) {
  const auto from = printable(str(msg, "from"));
  const auto to = printable(str(msg, "to"));
  const bool direct = !to.empty() && to.front() != '#';
  std::string text = history ? "[history] " : "";
  if (direct) {
    text += "[private] ";
    text += !me.empty() && same_name(from, me) ? from + " -> " + to : from;
  } else {
    if (!to.empty() && !same_name(to, current_room)) text += "[" + to + "] ";
    text += from;
  }
  text += " (" + clock_time(integer(msg, "time", now), now) + "): ";
  text += message_text(str(msg, "message"), display_width(text));
  return {history ? tone::history : direct ? tone::direct : tone::chat, std::move(text)};
}

void chat_state::sent(json::object const& frame, bool quiet) { pending_.push_back(outgoing{frame, quiet}); }

void chat_state::submit(json::object frame, bool quiet) {
  if (str(frame, "action") == "msg" && str(frame, "message").size() > settings_.max_message) {
    for (auto& piece : split_text(str(frame, "message"), settings_.max_message)) {
      json::object part = frame;
      part["message"] = piece;
      outbox_.push_back(outgoing{std::move(part), quiet});
    }
    return;
  }
  outbox_.push_back(outgoing{std::move(frame), quiet});
}

bool chat_state::msg_in_flight() const {
  return std::any_of(pending_.begin(), pending_.end(),
                     [](outgoing const& r) { return str(r.frame, "action") == "msg"; });
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
  if (frame.contains("response")) return on_reply(frame, now, mono);
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
    r.lines.push_back({tone::error, "! not sent" + (direct ? " to " + printable(whom) : std::string()) + ": " +
                                        quoted(f) + " (" + why + ")"});
    return r;
  }
  if (auto id = integer(frame, "id", -1); id >= 0) {
    json::object seen{{"from", me_}, {"to", to.empty() ? std::string_view(room_) : std::string_view(whom)}, {"id", id}};
    seen_before(seen);
  }
  if (req.quiet) return r;
  if (settings_.show_own) {
    json::object m{{"from", me_}, {"to", to.empty() ? std::string_view(room_) : std::string_view(whom)},
                   {"message", str(f, "message")}, {"time", integer(frame, "time", now)}};
    r.lines.push_back(render_message(m, me_, room_, false, now));
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
    std::string text = printable(str(frame, "error"));
    if (text.empty()) text = action.empty() ? "the server refused a request" : "/" + action + " failed";
    say(tone::error, "! " + text);
    return r;
  }
  if (status == 100) return r;  // sign-in prompts: the sign-in dialogue handles them

  if (action == "authenticate" || action == "register") {
    if (auto name = str(frame, "account_name"); !name.empty()) me_ = name;  // as registered
    learn_name(me_);
    if (!room.empty()) room_ = room;
    if (!req.quiet) r.lines.push_back(signed_in_line(frame, false));
  } else if (action == "presence") {
    if (auto name = str(frame, "account_name"); !name.empty()) me_ = name;
    learn_name(me_);
    if (!room.empty()) room_ = room;
  } else if (action == "create") {
    room_ = room;
    say(tone::info, "* created " + room + "; you own it and are in it. Its password: " +
                        printable(str(frame, "password")));
    say(tone::info, "  (others enter with /join " + std::string(proto::strip_hash(room)) + " " +
                        printable(str(frame, "password")) + ", or /invite them)");
  } else if (action == "join") {
    room_ = room;
    say(tone::info, "* you are in " + room);
  } else if (action == "exit" || action == "leave") {
    room_ = room;
    say(tone::info, "* back in " + room);
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
        if (!req.quiet) r.lines.push_back(render_message(m.get_object(), me_, room_, true, now));
      }
    }
  } else if (action == "users") {
    std::string text = "* in " + room + ":";
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
        text += ")";
        say(tone::info, std::move(text));
      }
    }
  } else if (action != "quit" && action != "logout") {
    if (auto alert = str(frame, "alert"); !alert.empty()) say(tone::info, "* " + printable(alert));
  }
  return r;
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
    if (seen_before(frame) && history && hide_seen_history_) return r;
    r.lines.push_back(render_message(frame, me_, room_, history, now));
  } else if (action == "event") {
    learn_name(str(frame, "user"));
    learn_room(str(frame, "room"));
    const auto event = str(frame, "event");
    const auto who = printable(str(frame, "user"));
    const auto where = printable(str(frame, "room"));
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
  }
  return r;
}

}  // namespace jim::client
