#include "jim/codec.hpp"

#include <boost/json/serialize.hpp>

#include <algorithm>
#include <chrono>
#include <cmath>
#include <limits>

namespace jim::proto {

namespace json = boost::json;

namespace {

/// Thrown inside decoding only, caught in decode(): keeps every field check to one line.
struct invalid {
  code status;
  std::string message;
};

[[noreturn]] void fail(std::string message, code status = code::bad_request) {
  throw invalid{status, std::move(message)};
}

/// Reads the fields of one JSON object, naming the field path in every error.
class fields {
 public:
  fields(json::object const& obj, std::string prefix) : obj_(obj), prefix_(std::move(prefix)) {}

  json::value const* find(std::string_view key) const {
    auto it = obj_.find(key);
    return it == obj_.end() || it->value().is_null() ? nullptr : &it->value();
  }

  std::optional<std::string> opt_string(std::string_view key) const {
    auto const* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_string()) fail(name(key) + " must be a string");
    return std::string(v->get_string());
  }
  std::string string(std::string_view key) const {
    auto s = opt_string(key);
    if (!s) fail("missing field " + name(key));
    return *s;
  }
  std::optional<std::int64_t> opt_integer(std::string_view key) const {
    auto const* v = find(key);
    if (!v) return std::nullopt;
    if (v->is_int64()) return v->get_int64();
    if (v->is_uint64()) return std::numeric_limits<std::int64_t>::max();
    if (v->is_double()) {
      // Integral doubles saturate like uint64 above: casting one outside int64's range is UB.
      const double d = v->get_double();
      constexpr double two63 = 9223372036854775808.0;
      if (d == std::trunc(d)) {
        if (d >= two63) return std::numeric_limits<std::int64_t>::max();
        if (d < -two63) return std::numeric_limits<std::int64_t>::min();
        return static_cast<std::int64_t>(d);
      }
    }
    fail(name(key) + " must be an integer");
  }
  std::optional<bool> opt_boolean(std::string_view key) const {
    auto const* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_bool()) fail(name(key) + " must be true or false");
    return v->get_bool();
  }
  std::optional<fields> opt_object(std::string_view key) const {
    auto const* v = find(key);
    if (!v) return std::nullopt;
    if (!v->is_object()) fail(name(key) + " must be an object");
    return fields(v->get_object(), prefix_ + std::string(key) + ".");
  }
  fields object(std::string_view key) const {
    auto o = opt_object(key);
    if (!o) fail("missing field " + name(key));
    return *o;
  }
  std::string name(std::string_view key) const { return "\"" + prefix_ + std::string(key) + "\""; }

 private:
  json::object const& obj_;
  std::string prefix_;
};

std::string account(fields const& f, std::string_view key, std::string value) {
  if (!valid_account_name(value))
    fail(f.name(key) + " is not a valid account name (1-25 characters of A-Z a-z 0-9 _ . -)");
  return value;
}
std::optional<std::string> opt_account(fields const& f, std::string_view key) {
  auto v = f.opt_string(key);
  if (v) account(f, key, *v);
  return v;
}
std::string room(fields const& f, std::string_view key, std::string const& value) {
  auto bare = strip_hash(value);
  if (!valid_room_name(bare))
    fail(f.name(key) +
         " is not a valid room name (1-32 characters of A-Z a-z 0-9 _ -, optional leading #)");
  return std::string(bare);
}
std::optional<std::string> opt_room(fields const& f, std::string_view key) {
  auto v = f.opt_string(key);
  if (!v) return std::nullopt;
  return room(f, key, *v);
}
/// Any password (account or room): at most 1024 bytes, and no U+0000 (HMAC pads short keys
/// with zeros: `pw` and `pw\0` must not be two spellings of one password).
std::string const& checked_password(fields const& f, std::string_view key, std::string const& v) {
  if (v.size() > max_password) fail(f.name(key) + " is longer than 1024 bytes");
  if (v.find('\0') != std::string::npos) fail(f.name(key) + " must not contain U+0000");
  return v;
}
std::string password(fields const& f, std::string_view key) {
  auto v = f.string(key);
  if (v.empty()) fail(f.name(key) + " must not be empty");
  return checked_password(f, key, v);
}

/// At most `max` bytes of `s`, never cutting a UTF-8 sequence (error texts quote input).
std::string_view utf8_prefix(std::string_view s, std::size_t max) noexcept {
  std::size_t n = std::min(s.size(), max);
  while (n > 0 && n < s.size() && (static_cast<unsigned char>(s[n]) & 0xC0) == 0x80) --n;
  return s.substr(0, n);
}

json::value read_tag(json::object const& frame) {
  auto it = frame.find("tag");
  if (it == frame.end() || it->value().is_null()) return nullptr;
  json::value const& t = it->value();
  if (t.is_int64() || t.is_uint64()) return t;
  if (t.is_string() && utf8_length(t.get_string()) <= max_tag) return t;
  fail("\"tag\" must be an integer or a string of at most 64 characters");
}

/// A chat text (`msg`, `edit`): non-empty, at most max_message bytes (else 413).
std::string text(fields const& f, limits const& lim) {
  std::string t = f.string("message");
  if (t.empty()) fail("\"message\" must not be empty");
  if (t.size() > lim.max_message)
    fail("\"message\" is longer than " + std::to_string(lim.max_message) + " bytes",
         code::too_large);
  return t;
}

/// A required integer field of at least 1 (message and schedule ids). Unlike opt_integer() it
/// does not saturate: an id beyond int64 (2^63 as uint64, 1e300) would name another id.
std::uint64_t positive(fields const& f, std::string_view key) {
  auto v = f.opt_integer(key);
  if (!v) fail("missing field " + f.name(key));
  if (*v < 1) fail(f.name(key) + " must be an integer of at least 1");
  if (*v == std::numeric_limits<std::int64_t>::max() && !f.find(key)->is_int64())
    fail(f.name(key) + " is out of range (at most " +
         std::to_string(std::numeric_limits<std::int64_t>::max()) + ")");
  return static_cast<std::uint64_t>(*v);
}

std::string reason_of(fields const& f) {
  std::string r = f.opt_string("reason").value_or("");
  if (r.size() > max_reason)
    fail("\"reason\" is longer than " + std::to_string(max_reason) + " bytes");
  return r;
}

request_body decode_body(std::string_view action, fields const& f, limits const& lim,
                         std::int64_t now) {
  if (action == "presence") {
    presence_req r;
    if (auto user = f.opt_object("user")) {
      r.account_name = opt_account(*user, "account_name");
      r.status = user->opt_string("status");
      // The same rule before and after sign-in: a status is a field value, checked here.
      if (r.status && r.status->empty()) fail("\"user.status\" must not be empty");
      if (r.status && utf8_length(*r.status) > max_status_chars)
        fail("\"user.status\" is longer than " + std::to_string(max_status_chars) +
             " characters");
    }
    return r;
  }
  if (action == "authenticate") {
    auto user = f.object("user");
    auto name = opt_account(user, "account_name");
    if (auto token = user.opt_string("token")) {
      if (user.find("password")) fail("\"user.password\" and \"user.token\" exclude each other");
      if (token->empty() || token->size() > max_token)
        fail("\"user.token\" must be 1-" + std::to_string(max_token) + " bytes");
      return authenticate_req{std::move(name), {}, std::move(token)};
    }
    return authenticate_req{std::move(name), password(user, "password"), std::nullopt};
  }
  if (action == "register") {
    auto user = f.object("user");
    return register_req{account(user, "account_name", user.string("account_name")),
                        password(user, "password")};
  }
  if (action == "msg") {
    msg_req r;
    r.message = text(f, lim);
    r.at = f.opt_integer("at");
    if (r.at && *r.at <= now) fail("\"at\" must be in the future");
    if (r.at && *r.at - now > lim.schedule_max)
      fail("\"at\" is more than " + std::to_string(lim.schedule_max) +
           " seconds ahead (--schedule-max)");
    if (auto to = f.opt_string("to")) {
      if (!to->empty() && to->front() == '#')
        r.to = target{room(f, "to", *to), true};
      else
        r.to = target{account(f, "to", *to), false};
    }
    return r;
  }
  if (action == "create") return create_req{room(f, "room", f.string("room"))};
  if (action == "join") {
    join_req r{room(f, "room", f.string("room")), f.opt_string("password")};
    if (r.password) checked_password(f, "password", *r.password);
    return r;
  }
  if (action == "exit" || action == "leave") return exit_req{};
  if (action == "invite")
    return invite_req{opt_room(f, "room"), account(f, "user", f.string("user"))};
  if (action == "history") {
    history_req r;
    r.room = opt_room(f, "room");
    r.with = opt_account(f, "with");
    if (r.room && r.with) fail("\"room\" and \"with\" exclude each other");
    if (auto limit = f.opt_integer("limit")) {
      if (*limit < 1) fail("\"limit\" must be at least 1");
      r.limit = static_cast<int>(std::min<std::int64_t>(*limit, history_max_limit));
    }
    if (auto before = f.opt_integer("before")) {
      if (*before < 0) fail("\"before\" must not be negative");
      r.before = static_cast<std::uint64_t>(*before);
    }
    return r;
  }
  if (action == "users") {
    if (auto v = f.find("room"); v && v->is_string() && v->get_string() == "*")
      return users_req{std::nullopt, true};
    return users_req{opt_room(f, "room")};
  }
  if (action == "watch" || action == "unwatch") {
    watch_req r;
    r.unwatch = action == "unwatch";
    auto const* v = f.find("rooms");
    if (!v) fail("missing field \"rooms\"");
    if (v->is_string()) {
      if (v->get_string() != "all") fail("\"rooms\" must be an array of room names or \"all\"");
      r.all = true;
      return r;
    }
    if (!v->is_array()) fail("\"rooms\" must be an array of room names or \"all\"");
    auto const& a = v->get_array();
    r.rooms.reserve(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      const std::string key = "rooms[" + std::to_string(i) + "]";
      if (!a[i].is_string()) fail(f.name(key) + " must be a string");
      r.rooms.push_back(room(f, key, std::string(a[i].get_string())));
    }
    return r;
  }
  if (action == "read") {
    read_req r;
    r.room = opt_room(f, "room");
    r.with = opt_account(f, "with");
    if (r.room && r.with) fail("\"room\" and \"with\" exclude each other");
    if (!r.room && !r.with) fail("missing field \"room\" or \"with\"");
    auto id = f.opt_integer("id");
    if (!id) fail("missing field \"id\"");
    if (*id < 1) fail("\"id\" must be an integer of at least 1");
    r.id = static_cast<std::uint64_t>(*id);
    return r;
  }
  if (action == "conversations") return conversations_req{};
  if (action == "get_contacts") return get_contacts_req{};
  if (action == "add_contact" || action == "del_contact")
    return contact_req{account(f, "user_id", f.string("user_id")), action == "del_contact"};
  if (action == "edit") {
    edit_req r;
    r.id = positive(f, "id");
    r.message = text(f, lim);
    return r;
  }
  if (action == "delete") return delete_req{positive(f, "id")};
  if (action == "scheduled") return scheduled_req{};
  if (action == "cancel") return cancel_req{positive(f, "scheduled")};
  if (action == "report") return report_req{account(f, "user", f.string("user")), reason_of(f)};
  if (action == "kick" || action == "ban" || action == "unban") {
    moderate_req r;
    r.what = action == "kick"  ? moderate_req::kind::kick
             : action == "ban" ? moderate_req::kind::ban
                               : moderate_req::kind::unban;
    r.room = opt_room(f, "room");
    if (!r.room && r.what == moderate_req::kind::kick) fail("missing field \"room\"");
    r.user = account(f, "user", f.string("user"));
    r.reason = reason_of(f);
    return r;
  }
  if (action == "rooms") return rooms_req{};
  if (action == "quit") return quit_req{};
  if (action == "logout") return logout_req{f.opt_boolean("all").value_or(false)};
  fail("unknown action \"" + std::string(utf8_prefix(action, 64)) + "\"");
}

}  // namespace

decode_result decode(json::object const& frame, limits const& lim, std::int64_t now) {
  json::value tag;
  try {
    tag = read_tag(frame);
    fields f(frame, "");
    if (auto const* t = f.find("time"); t && !t->is_number()) fail("\"time\" must be a number");
    auto const* action = f.find("action");
    if (!action) fail("missing field \"action\"");
    if (!action->is_string()) fail("\"action\" must be a string");
    return request{decode_body(action->get_string(), f, lim, now), tag};
  } catch (invalid& e) {
    return decode_error{e.status, std::move(e.message), std::move(tag)};
  }
}

std::int64_t unix_now() noexcept {
  using namespace std::chrono;
  return duration_cast<seconds>(system_clock::now().time_since_epoch()).count();
}

std::string to_line(json::value const& v) {
  std::string out = json::serialize(v);
  out.push_back('\n');
  return out;
}

std::string encode_reply(code c, json::value const& tag, std::string_view text, json::object fields,
                         std::int64_t now) {
  json::object o;
  o.reserve(fields.size() + 4);
  o.emplace("response", to_int(c));
  o.emplace("time", now);
  if (!tag.is_null()) o.emplace("tag", tag);
  if (is_success(c)) {
    if (!text.empty()) o.emplace("alert", text);
  } else {
    o.emplace("error", text.empty() ? reason(c) : text);
  }
  for (auto& kv : fields) o.emplace(kv.key(), std::move(kv.value()));
  return to_line(o);
}

json::object msg_object(chat_message const& m) {
  json::object o{{"action", "msg"}, {"id", m.id}, {"time", m.time}, {"from", m.from}, {"to", m.to}};
  if (m.deleted)
    o.emplace("deleted", true);
  else
    o.emplace("message", m.message);
  if (m.edited != 0 && !m.deleted) o.emplace("edited", m.edited);
  return o;
}

std::string encode_msg(chat_message const& m, bool history) {
  // Every message is encoded (twice: live and as history), so the line is written directly:
  // the same bytes as serialising msg_object(m), without building and hashing a JSON object
  // (that was about a tenth of the server's CPU at 100 receivers).
  std::string out;
  out.reserve(m.from.size() + m.to.size() + m.message.size() + 112);
  out += R"({"action":"msg","id":)";
  out += std::to_string(m.id);
  out += R"(,"time":)";
  out += std::to_string(m.time);
  out += R"(,"from":)";
  out += json::serialize(json::string_view(m.from));
  out += R"(,"to":)";
  out += json::serialize(json::string_view(m.to));
  if (m.deleted) {
    out += R"(,"deleted":true)";
  } else {
    out += R"(,"message":)";
    out += json::serialize(json::string_view(m.message));
  }
  if (m.edited != 0 && !m.deleted) {
    out += R"(,"edited":)";
    out += std::to_string(m.edited);
  }
  if (history) out += R"(,"history":true)";
  out += "}\n";
  return out;
}

std::string encode_event(std::string_view event, std::string_view room, std::string_view user) {
  return to_line(
      json::object{{"action", "event"}, {"event", event}, {"room", room}, {"user", user}});
}

std::string encode_invite(std::string_view from, std::string_view room) {
  return to_line(json::object{{"action", "invite"}, {"from", from}, {"room", room}});
}

std::string encode_contact(std::string_view user_id) {
  return to_line(json::object{{"action", "contact_list"}, {"user_id", user_id}});
}

std::string encode_status(std::string_view user, std::string_view status) {
  return to_line(
      json::object{{"action", "event"}, {"event", "status"}, {"user", user}, {"status", status}});
}

std::string encode_online(std::string_view room, std::uint64_t online) {
  return to_line(
      json::object{{"action", "event"}, {"event", "online"}, {"room", room}, {"online", online}});
}

std::string encode_read(bool is_room, std::string_view name, std::uint64_t id) {
  return to_line(json::object{{"action", "read"}, {is_room ? "room" : "with", name}, {"id", id}});
}

std::string encode_edited(std::uint64_t id, std::string_view message, std::int64_t edited) {
  return to_line(json::object{{"action", "event"},
                              {"event", "edit"},
                              {"id", id},
                              {"message", message},
                              {"edited", edited}});
}

std::string encode_deleted(std::uint64_t id) {
  return to_line(json::object{{"action", "event"}, {"event", "delete"}, {"id", id}});
}

std::string encode_probe() {
  return to_line(json::object{{"action", "probe"}, {"time", unix_now()}});
}

std::string encode_notice(std::string_view text) {
  return to_line(json::object{{"action", "notice"}, {"time", unix_now()}, {"text", text}});
}

}  // namespace jim::proto
