#include "commands.hpp"

#include "jim/framing.hpp"
#include "jim/protocol.hpp"

#include <boost/json/array.hpp>
#include <boost/json/value.hpp>

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

/// Text from the network is shown as it is, except control characters: a message must not
/// move the cursor, clear the screen or retitle the terminal. They are shown as `^X`.
std::string printable(std::string_view s) {
  std::string out;
  out.reserve(s.size());
  for (std::size_t i = 0; i < s.size(); ++i) {
    const auto c = static_cast<unsigned char>(s[i]);
    if (c == '\t') {
      out += ' ';
    } else if (c < 0x20 || c == 0x7f) {
      out += '^';
      out += static_cast<char>(c ^ 0x40);
    } else if (c == 0xc2 && i + 1 < s.size() && static_cast<unsigned char>(s[i + 1]) >= 0x80 &&
               static_cast<unsigned char>(s[i + 1]) <= 0x9f) {
      out += '?';  // a C1 control (U+0080..U+009F): some terminals obey them too
      ++i;
    } else {
      out += static_cast<char>(c);
    }
  }
  return out;
}

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
  auto usage = [](std::string_view u) { return usage_hint{"usage: " + std::string(u)}; };

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
    json::object f{{"action", "history"}};
    if (n > 1) return usage("/history [N]");
    if (n == 1) {
      int limit = 0;
      auto const& a = args[0];
      auto [end, ec] = std::from_chars(a.data(), a.data() + a.size(), limit);
      if (ec != std::errc{} || end != a.data() + a.size() || limit < 1)
        return usage("/history [N]   (N: how many messages, at least 1)");
      f["limit"] = limit;
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
  if (cmd == "quit") {
    if (n != 0) return usage("/quit");
    return request({{"action", "quit"}});
  }
  if (cmd == "help" || cmd == "?") return show_help{};
  return usage_hint{"unknown command /" + cmd + "; /help lists the commands"};
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
         "  /history [N]           show the last N messages of this room (50)\n"
         "  /users                 who is in this room\n"
         "  /rooms                 list the rooms\n"
         "  /help                  this list\n"
         "  /quit                  leave (Ctrl-D and Ctrl-C too)\n"
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
  text += " (" + clock_time(integer(msg, "time", now), now) + "): " + printable(str(msg, "message"));
  return {history ? tone::history : direct ? tone::direct : tone::chat, std::move(text)};
}

void chat_state::sent(json::object const& frame) { pending_.push_back(std::string(str(frame, "action"))); }

chat_state::reaction chat_state::received(json::object const& frame, std::int64_t now) {
  if (frame.contains("response")) return on_reply(frame, now);
  if (frame.contains("action")) return on_push(frame, now);
  return {};
}

std::optional<out_line> chat_state::echo(json::object const& frame, std::int64_t now) const {
  if (str(frame, "action") != "msg") return std::nullopt;
  json::object m{{"from", me_}, {"to", frame.contains("to") ? str(frame, "to") : std::string_view(room_)},
                 {"message", str(frame, "message")}, {"time", now}};
  return render_message(m, me_, room_, false, now);
}

chat_state::reaction chat_state::on_reply(json::object const& frame, std::int64_t now) {
  std::string action;
  if (!pending_.empty()) {
    action = std::move(pending_.front());
    pending_.pop_front();
  }
  const auto status = integer(frame, "response");
  reaction r;
  auto say = [&r](tone t, std::string text) { r.lines.push_back({t, std::move(text)}); };
  const auto room = printable(str(frame, "room"));

  if (status >= 400) {
    ++failures_;
    std::string text = printable(str(frame, "error"));
    if (text.empty()) text = "request failed";
    if (status == 429) {
      const auto* after = frame.if_contains("retry_after");
      if (after && after->is_number()) {
        char buf[32];
        // Rounded up: waiting the time shown is always enough.
        std::snprintf(buf, sizeof buf, "%.1f", std::ceil(after->to_number<double>() * 10) / 10);
        text += std::string(" (try again in ") + buf + " s)";
      }
    }
    say(tone::error, "! " + text);
    return r;
  }
  if (status == 100) return r;  // sign-in prompts: the sign-in dialogue handles them

  if (action == "msg") {
    if (status == 202) say(tone::info, "* they are offline: the message waits for their next sign-in");
  } else if (action == "authenticate" || action == "register") {
    if (!room.empty()) room_ = room;
    std::string text = "* signed in as " + me_ + (status == 201 ? " (new account)" : "") + "; you are in " + room_;
    if (const auto missed = integer(frame, "missed"); missed > 0)
      text += " (" + std::to_string(missed) + " new message" + (missed == 1 ? "" : "s") + " since your last visit)";
    say(tone::info, std::move(text));
  } else if (action == "presence") {
    if (auto name = str(frame, "account_name"); !name.empty()) me_ = name;
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
    say(tone::info, "* invited " + printable(str(frame, "user")) + " to " + room);
  } else if (action == "history") {
    auto const* messages = frame.if_contains("messages");
    const std::string where = room.empty() ? "your conversation with " + printable(str(frame, "with")) : room;
    if (!messages || !messages->is_array() || messages->get_array().empty()) {
      say(tone::info, "* no messages in " + where);
    } else {
      for (auto const& m : messages->get_array())
        if (m.is_object()) r.lines.push_back(render_message(m.get_object(), me_, room_, true, now));
    }
  } else if (action == "users") {
    std::string text = "* in " + room + ":";
    if (auto const* users = frame.if_contains("users"); users && users->is_array()) {
      bool first = true;
      for (auto const& u : users->get_array()) {
        if (!u.is_object()) continue;
        text += first ? " " : ", ";
        first = false;
        text += printable(str(u.get_object(), "account_name"));
        // "online" is what everyone listed is: only a status someone chose is worth showing.
        if (auto status_text = printable(str(u.get_object(), "status"));
            !status_text.empty() && status_text != "online")
          text += " (" + status_text + ")";
      }
    }
    say(tone::info, std::move(text));
  } else if (action == "rooms") {
    say(tone::info, "* rooms:");
    if (auto const* rooms = frame.if_contains("rooms"); rooms && rooms->is_array()) {
      for (auto const& v : rooms->get_array()) {
        if (!v.is_object()) continue;
        auto const& o = v.get_object();
        std::string text = "  " + printable(str(o, "room")) + " (" + std::to_string(integer(o, "online")) + " online";
        // #general has no owner and everyone is a member of it: nothing to say there.
        if (auto owner = str(o, "owner"); !owner.empty()) {
          text += ", owner " + printable(owner);
          auto const* m = o.if_contains("member");
          if (m && m->is_bool() && m->get_bool() && !same_name(owner, me_)) text += ", member";
        }
        text += ")";
        say(tone::info, std::move(text));
      }
    }
  } else if (action != "quit") {
    if (auto alert = str(frame, "alert"); !alert.empty()) say(tone::info, "* " + printable(alert));
  }
  return r;
}

chat_state::reaction chat_state::on_push(json::object const& frame, std::int64_t now) {
  reaction r;
  const auto action = str(frame, "action");
  if (action == "msg") {
    auto const* h = frame.if_contains("history");
    r.lines.push_back(render_message(frame, me_, room_, h && h->is_bool() && h->get_bool(), now));
  } else if (action == "event") {
    const auto event = str(frame, "event");
    const auto who = printable(str(frame, "user"));
    const auto where = printable(str(frame, "room"));
    if (event == "join") r.lines.push_back({tone::event, "* " + who + " joined " + where});
    else if (event == "leave") r.lines.push_back({tone::event, "* " + who + " left " + where});
    else r.lines.push_back({tone::event, "* " + who + ": " + printable(event) + " " + where});
  } else if (action == "invite") {
    const auto where = printable(str(frame, "room"));
    r.lines.push_back({tone::event, "* " + printable(str(frame, "from")) + " invited you to " + where +
                                        " (/join " + std::string(proto::strip_hash(where)) + ")"});
  } else if (action == "probe") {
    // The server checks we are alive: any request answers it, and presence changes nothing.
    json::object answer{{"action", "presence"}};
    sent(answer);
    r.answer = std::move(answer);
  } else if (action == "notice") {
    notice_ = printable(str(frame, "text"));
    r.lines.push_back({tone::error, "! server: " + notice_});
  }
  return r;
}

}  // namespace jim::client
