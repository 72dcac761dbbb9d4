#include "store/events.hpp"

#include <boost/json.hpp>

#include <initializer_list>
#include <type_traits>

namespace jim::server::store {

namespace json = boost::json;

namespace {

void put_message(json::object& o, proto::chat_message const& m) {
  o.emplace("id", m.id);
  o.emplace("time", m.time);
  o.emplace("from", m.from);
  o.emplace("to", m.to);
  o.emplace("message", m.message);
}

[[noreturn]] void fail(std::string const& what) {
  throw bad_event(what);
}

class reader {
 public:
  explicit reader(json::object const& o) : o_(o) {}

  void exact(std::initializer_list<std::string_view> names) const {
    for (auto name : names)
      if (!o_.contains(name)) fail("missing field \"" + std::string(name) + "\"");
    if (o_.size() != names.size()) {
      for (auto const& kv : o_) {
        bool known = false;
        for (auto name : names) known = known || kv.key() == name;
        if (!known) fail("unknown field \"" + std::string(kv.key()) + "\"");
      }
    }
  }
  std::string str(std::string_view k) const {
    auto const& v = o_.at(k);
    if (!v.is_string()) fail("field \"" + std::string(k) + "\" is not a string");
    return std::string(v.get_string());
  }
  std::uint64_t count(std::string_view k) const {
    auto const& v = o_.at(k);
    if (v.is_uint64()) return v.get_uint64();
    if (v.is_int64() && v.get_int64() >= 0) return static_cast<std::uint64_t>(v.get_int64());
    fail("field \"" + std::string(k) + "\" is not a non-negative integer");
  }
  std::int64_t integer(std::string_view k) const {
    auto const& v = o_.at(k);
    if (v.is_int64()) return v.get_int64();
    if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
      return static_cast<std::int64_t>(v.get_uint64());
    fail("field \"" + std::string(k) + "\" is not an integer");
  }
  bool boolean(std::string_view k) const {
    auto const& v = o_.at(k);
    if (!v.is_bool()) fail("field \"" + std::string(k) + "\" is not a boolean");
    return v.get_bool();
  }
  /// `posted`: a message_posted, whose id apply() assigns (0 since issue 13); a queued
  /// message has its id.
  proto::chat_message message(bool posted = false) const {
    proto::chat_message m;
    m.id = count("id");
    if (m.id == 0 && !posted) fail("message id 0");
    m.time = integer("time");
    m.from = str("from");
    m.to = str("to");
    m.message = str("message");
    return m;
  }

 private:
  json::object const& o_;
};

}  // namespace

std::string encode(event const& e, std::uint64_t seq) {
  json::object o;
  o.emplace("seq", seq);
  std::visit(
      [&](auto const& ev) {
        using T = std::decay_t<decltype(ev)>;
        if constexpr (std::is_same_v<T, account_registered>) {
          o.emplace("ev", "account");
          o.emplace("name", ev.name);
          o.emplace("hash", ev.password_hash);
        } else if constexpr (std::is_same_v<T, room_created>) {
          o.emplace("ev", "room");
          o.emplace("room", ev.room);
          o.emplace("owner", ev.owner);
          o.emplace("hash", ev.password_hash);
        } else if constexpr (std::is_same_v<T, member_added>) {
          o.emplace("ev", "member");
          o.emplace("room", ev.room);
          o.emplace("account", ev.account);
        } else if constexpr (std::is_same_v<T, message_posted>) {
          o.emplace("ev", "msg");
          put_message(o, ev.m);
          o.emplace("queued", ev.queued);
        } else if constexpr (std::is_same_v<T, message_queued>) {
          o.emplace("ev", "queue");
          put_message(o, ev.m);
        } else if constexpr (std::is_same_v<T, queue_delivered>) {
          o.emplace("ev", "delivered");
          o.emplace("account", ev.account);
          o.emplace("upto", ev.upto);
        } else if constexpr (std::is_same_v<T, signed_in>) {
          o.emplace("ev", "signin");
          o.emplace("account", ev.account);
        } else if constexpr (std::is_same_v<T, token_issued>) {
          o.emplace("ev", "token");
          o.emplace("account", ev.account);
          o.emplace("hash", ev.hash);
          o.emplace("issued", ev.issued);
          o.emplace("expires", ev.expires);
        } else if constexpr (std::is_same_v<T, tokens_revoked>) {
          o.emplace("ev", "revoke");
          o.emplace("account", ev.account);
          o.emplace("hash", ev.hash);
          o.emplace("all", ev.all);
        } else if constexpr (std::is_same_v<T, password_rehashed>) {
          o.emplace("ev", "rehash");
          o.emplace("account", ev.account);
          o.emplace("was", ev.was);
          o.emplace("hash", ev.hash);
        } else if constexpr (std::is_same_v<T, read_marked>) {
          o.emplace("ev", "read");
          o.emplace("account", ev.account);
          if (!ev.room.empty())
            o.emplace("room", ev.room);
          else
            o.emplace("with", ev.with);
          o.emplace("id", ev.id);
        } else if constexpr (std::is_same_v<T, invitation_queued>) {
          o.emplace("ev", "invitation");
          o.emplace("account", ev.account);
          o.emplace("from", ev.from);
          o.emplace("room", ev.room);
        } else if constexpr (std::is_same_v<T, invitations_delivered>) {
          o.emplace("ev", "invitations");
          o.emplace("account", ev.account);
          o.emplace("count", ev.count);
        } else if constexpr (std::is_same_v<T, contact_added>) {
          o.emplace("ev", "contact");
          o.emplace("account", ev.account);
          o.emplace("contact", ev.contact);
        } else if constexpr (std::is_same_v<T, contact_removed>) {
          o.emplace("ev", "uncontact");
          o.emplace("account", ev.account);
          o.emplace("contact", ev.contact);
        } else if constexpr (std::is_same_v<T, message_edited>) {
          o.emplace("ev", "edit");
          o.emplace("id", ev.id);
          o.emplace("by", ev.by);
          o.emplace("message", ev.message);
          o.emplace("time", ev.time);
        } else if constexpr (std::is_same_v<T, message_deleted>) {
          o.emplace("ev", "delete");
          o.emplace("id", ev.id);
          o.emplace("by", ev.by);
          o.emplace("admin", ev.admin);
        } else if constexpr (std::is_same_v<T, message_scheduled>) {
          o.emplace("ev", "schedule");
          o.emplace("account", ev.account);
          o.emplace("to", ev.to);
          o.emplace("message", ev.message);
          o.emplace("at", ev.at);
          o.emplace("origin", ev.origin);
        } else if constexpr (std::is_same_v<T, schedule_cancelled>) {
          o.emplace("ev", "unschedule");
          o.emplace("scheduled", ev.scheduled);
          o.emplace("account", ev.account);
        } else if constexpr (std::is_same_v<T, schedule_due>) {
          o.emplace("ev", "due");
          o.emplace("scheduled", ev.scheduled);
          o.emplace("time", ev.time);
          o.emplace("queued", ev.queued);
        } else if constexpr (std::is_same_v<T, notices_delivered>) {
          o.emplace("ev", "notices");
          o.emplace("account", ev.account);
          o.emplace("count", ev.count);
        } else if constexpr (std::is_same_v<T, user_reported>) {
          o.emplace("ev", "report");
          o.emplace("account", ev.account);
          o.emplace("by", ev.by);
          o.emplace("reason", ev.reason);
          o.emplace("time", ev.time);
          o.emplace("threshold", ev.threshold);
          o.emplace("window", ev.window);
          o.emplace("mute", ev.mute);
        } else if constexpr (std::is_same_v<T, room_moderated>) {
          o.emplace("ev", "roomban");
          o.emplace("room", ev.room);
          o.emplace("account", ev.account);
          o.emplace("by", ev.by);
          o.emplace("action", ev.action);
        } else if constexpr (std::is_same_v<T, account_banned>) {
          o.emplace("ev", "ban");
          o.emplace("account", ev.account);
          o.emplace("by", ev.by);
          o.emplace("reason", ev.reason);
          o.emplace("banned", ev.banned);
        } else {
          static_assert(std::is_same_v<T, general_seen>);
          o.emplace("ev", "seen");
          o.emplace("account", ev.account);
          o.emplace("general", ev.general);
        }
      },
      e);
  return json::serialize(o);
}

decoded decode(std::string_view payload) {
  boost::system::error_code ec;
  json::value v = json::parse(json::string_view(payload.data(), payload.size()), ec);
  if (ec) fail("not valid JSON: " + ec.message());
  if (!v.is_object()) fail("not a JSON object");
  auto const& o = v.get_object();
  if (!o.contains("seq") || !o.contains("ev")) fail("missing \"seq\" or \"ev\"");
  reader r(o);
  decoded d;
  d.seq = r.count("seq");
  const std::string kind = r.str("ev");
  if (kind == "account") {
    r.exact({"seq", "ev", "name", "hash"});
    d.e = account_registered{r.str("name"), r.str("hash")};
  } else if (kind == "room") {
    r.exact({"seq", "ev", "room", "owner", "hash"});
    d.e = room_created{r.str("room"), r.str("owner"), r.str("hash")};
  } else if (kind == "member") {
    r.exact({"seq", "ev", "room", "account"});
    d.e = member_added{r.str("room"), r.str("account")};
  } else if (kind == "msg") {
    r.exact({"seq", "ev", "id", "time", "from", "to", "message", "queued"});
    d.e = message_posted{r.message(true), r.boolean("queued")};
  } else if (kind == "queue") {
    r.exact({"seq", "ev", "id", "time", "from", "to", "message"});
    d.e = message_queued{r.message()};
  } else if (kind == "delivered") {
    r.exact({"seq", "ev", "account", "upto"});
    d.e = queue_delivered{r.str("account"), r.count("upto")};
  } else if (kind == "seen") {
    r.exact({"seq", "ev", "account", "general"});
    d.e = general_seen{r.str("account"), r.count("general")};
  } else if (kind == "signin") {
    r.exact({"seq", "ev", "account"});
    d.e = signed_in{r.str("account")};
  } else if (kind == "token") {
    r.exact({"seq", "ev", "account", "hash", "issued", "expires"});
    d.e = token_issued{r.str("account"), r.str("hash"), r.integer("issued"), r.integer("expires")};
  } else if (kind == "revoke") {
    r.exact({"seq", "ev", "account", "hash", "all"});
    d.e = tokens_revoked{r.str("account"), r.str("hash"), r.boolean("all")};
  } else if (kind == "rehash") {
    r.exact({"seq", "ev", "account", "was", "hash"});
    d.e = password_rehashed{r.str("account"), r.str("was"), r.str("hash")};
  } else if (kind == "read") {
    read_marked m;
    if (o.contains("room")) {
      r.exact({"seq", "ev", "account", "room", "id"});
      m.room = r.str("room");
      if (m.room.empty()) fail("empty \"room\"");
    } else {
      r.exact({"seq", "ev", "account", "with", "id"});
      m.with = r.str("with");
    }
    m.account = r.str("account");
    m.id = r.count("id");
    d.e = std::move(m);
  } else if (kind == "invitation") {
    r.exact({"seq", "ev", "account", "from", "room"});
    d.e = invitation_queued{r.str("account"), r.str("from"), r.str("room")};
  } else if (kind == "invitations") {
    r.exact({"seq", "ev", "account", "count"});
    d.e = invitations_delivered{r.str("account"), r.count("count")};
  } else if (kind == "contact") {
    r.exact({"seq", "ev", "account", "contact"});
    d.e = contact_added{r.str("account"), r.str("contact")};
  } else if (kind == "uncontact") {
    r.exact({"seq", "ev", "account", "contact"});
    d.e = contact_removed{r.str("account"), r.str("contact")};
  } else if (kind == "edit") {
    r.exact({"seq", "ev", "id", "by", "message", "time"});
    d.e = message_edited{r.count("id"), r.str("by"), r.str("message"), r.integer("time")};
  } else if (kind == "delete") {
    r.exact({"seq", "ev", "id", "by", "admin"});
    d.e = message_deleted{r.count("id"), r.str("by"), r.boolean("admin")};
  } else if (kind == "schedule") {
    r.exact({"seq", "ev", "account", "to", "message", "at", "origin"});
    d.e = message_scheduled{r.str("account"), r.str("to"), r.str("message"), r.integer("at"),
                            r.str("origin")};
  } else if (kind == "unschedule") {
    r.exact({"seq", "ev", "scheduled", "account"});
    d.e = schedule_cancelled{r.count("scheduled"), r.str("account")};
  } else if (kind == "due") {
    r.exact({"seq", "ev", "scheduled", "time", "queued"});
    d.e = schedule_due{r.count("scheduled"), r.integer("time"), r.boolean("queued")};
  } else if (kind == "notices") {
    r.exact({"seq", "ev", "account", "count"});
    d.e = notices_delivered{r.str("account"), r.count("count")};
  } else if (kind == "report") {
    r.exact({"seq", "ev", "account", "by", "reason", "time", "threshold", "window", "mute"});
    d.e = user_reported{r.str("account"), r.str("by"),        r.str("reason"),
                        r.integer("time"), r.count("threshold"), r.integer("window"),
                        r.integer("mute")};
  } else if (kind == "roomban") {
    r.exact({"seq", "ev", "room", "account", "by", "action"});
    room_moderated m{r.str("room"), r.str("account"), r.str("by"), r.str("action")};
    if (m.action != "kick" && m.action != "ban" && m.action != "unban")
      fail("unknown room moderation \"" + m.action + "\"");
    d.e = std::move(m);
  } else if (kind == "ban") {
    r.exact({"seq", "ev", "account", "by", "reason", "banned"});
    d.e = account_banned{r.str("account"), r.str("by"), r.str("reason"), r.boolean("banned")};
  } else {
    fail("unknown event \"" + kind + "\"");
  }
  return d;
}

}  // namespace jim::server::store
