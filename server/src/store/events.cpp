#include "store/events.hpp"

#include <boost/json.hpp>

#include <initializer_list>
#include <span>
#include <tuple>
#include <type_traits>
#include <utility>
#include <vector>

namespace jim::server::store {

namespace json = boost::json;

namespace {

[[noreturn]] void fail(std::string const& what) {
  throw bad_event(what);
}

class reader {
 public:
  explicit reader(json::object const& o) : o_(o) {}

  void exact(std::initializer_list<std::string_view> names) const {
    exact_list(std::span<std::string_view const>(names.begin(), names.size()));
  }
  void exact_list(std::span<std::string_view const> names) const {
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

 private:
  json::object const& o_;
};

// --- One table of fields per kind --------------------------------------------------------
// Each kind is its "ev" name and its fields in encoding order, a field being its JSON key and
// the path of members to it (one member pointer, or two for the message inside an event). The
// value's C++ type picks how it is read back: std::string a string, std::uint64_t a
// non-negative integer, std::int64_t an integer, bool a boolean.

template <class... Member>
struct field {
  std::string_view key;
  std::tuple<Member...> path;
};
template <class... Member>
constexpr field<Member...> at(std::string_view key, Member... path) {
  return {key, {path...}};
}

template <class... Field>
struct schema {
  std::string_view kind;
  std::tuple<Field...> fields;
};
template <class... Field>
constexpr schema<Field...> make_schema(std::string_view name, Field... fields) {
  return {name, {fields...}};
}

template <class T>
struct tag {};

using msg = proto::chat_message;
constexpr auto schema_for(tag<account_registered>) {
  using e = account_registered;
  return make_schema("account", at("name", &e::name), at("hash", &e::password_hash));
}
constexpr auto schema_for(tag<room_created>) {
  using e = room_created;
  return make_schema("room", at("room", &e::room), at("owner", &e::owner),
                     at("hash", &e::password_hash));
}
constexpr auto schema_for(tag<member_added>) {
  using e = member_added;
  return make_schema("member", at("room", &e::room), at("account", &e::account));
}
constexpr auto schema_for(tag<message_posted>) {
  using e = message_posted;
  return make_schema("msg", at("id", &e::m, &msg::id), at("time", &e::m, &msg::time),
                     at("from", &e::m, &msg::from), at("to", &e::m, &msg::to),
                     at("message", &e::m, &msg::message), at("queued", &e::queued));
}
constexpr auto schema_for(tag<message_queued>) {
  using e = message_queued;
  return make_schema("queue", at("id", &e::m, &msg::id), at("time", &e::m, &msg::time),
                     at("from", &e::m, &msg::from), at("to", &e::m, &msg::to),
                     at("message", &e::m, &msg::message));
}
constexpr auto schema_for(tag<queue_delivered>) {
  using e = queue_delivered;
  return make_schema("delivered", at("account", &e::account), at("upto", &e::upto));
}
/// `device` is written only when not empty (a cluster node's connection): see required().
constexpr auto schema_for(tag<general_seen>) {
  using e = general_seen;
  return make_schema("seen", at("account", &e::account), at("general", &e::general),
                     at("device", &e::device));
}
/// `device`, `node` and `max` are written only when `device` is not empty: see required().
constexpr auto schema_for(tag<signed_in>) {
  using e = signed_in;
  return make_schema("signin", at("account", &e::account), at("device", &e::device),
                     at("node", &e::node), at("max", &e::max));
}
constexpr auto schema_for(tag<node_gone>) {
  using e = node_gone;
  return make_schema("gone", at("node", &e::node), at("instance", &e::instance));
}

/// How many of a kind's first fields are always written. The fields after them form one
/// optional group, written (and read) together: present iff the group's first field, a
/// string, is not empty (the device fields of a cluster node; events written before them, and
/// by a single node, have none). Every kind but these two writes all its fields.
template <class T>
constexpr std::size_t required(tag<T>) {
  return std::tuple_size_v<decltype(schema_for(tag<T>{}).fields)>;
}
constexpr std::size_t required(tag<general_seen>) { return 2; }
constexpr std::size_t required(tag<signed_in>) { return 1; }
constexpr auto schema_for(tag<token_issued>) {
  using e = token_issued;
  return make_schema("token", at("account", &e::account), at("hash", &e::hash),
                     at("issued", &e::issued), at("expires", &e::expires));
}
constexpr auto schema_for(tag<tokens_revoked>) {
  using e = tokens_revoked;
  return make_schema("revoke", at("account", &e::account), at("hash", &e::hash),
                     at("all", &e::all));
}
constexpr auto schema_for(tag<password_rehashed>) {
  using e = password_rehashed;
  return make_schema("rehash", at("account", &e::account), at("was", &e::was),
                     at("hash", &e::hash));
}
/// Either "room" or "with" is written (see encode_fields and decode_fields below).
constexpr auto schema_for(tag<read_marked>) {
  using e = read_marked;
  return make_schema("read", at("account", &e::account), at("room", &e::room), at("with", &e::with),
                     at("id", &e::id));
}
constexpr auto schema_for(tag<invitation_queued>) {
  using e = invitation_queued;
  return make_schema("invitation", at("account", &e::account), at("from", &e::from),
                     at("room", &e::room));
}
constexpr auto schema_for(tag<invitations_delivered>) {
  using e = invitations_delivered;
  return make_schema("invitations", at("account", &e::account), at("count", &e::count));
}
constexpr auto schema_for(tag<contact_added>) {
  using e = contact_added;
  return make_schema("contact", at("account", &e::account), at("contact", &e::contact));
}
constexpr auto schema_for(tag<contact_removed>) {
  using e = contact_removed;
  return make_schema("uncontact", at("account", &e::account), at("contact", &e::contact));
}
constexpr auto schema_for(tag<message_edited>) {
  using e = message_edited;
  return make_schema("edit", at("id", &e::id), at("by", &e::by), at("message", &e::message),
                     at("time", &e::time));
}
constexpr auto schema_for(tag<message_deleted>) {
  using e = message_deleted;
  return make_schema("delete", at("id", &e::id), at("by", &e::by), at("admin", &e::admin));
}
constexpr auto schema_for(tag<message_scheduled>) {
  using e = message_scheduled;
  return make_schema("schedule", at("account", &e::account), at("to", &e::to),
                     at("message", &e::message), at("at", &e::at), at("origin", &e::origin));
}
constexpr auto schema_for(tag<schedule_cancelled>) {
  using e = schedule_cancelled;
  return make_schema("unschedule", at("scheduled", &e::scheduled), at("account", &e::account));
}
constexpr auto schema_for(tag<schedule_due>) {
  using e = schedule_due;
  return make_schema("due", at("scheduled", &e::scheduled), at("time", &e::time),
                     at("queued", &e::queued));
}
constexpr auto schema_for(tag<notices_delivered>) {
  using e = notices_delivered;
  return make_schema("notices", at("account", &e::account), at("count", &e::count));
}
constexpr auto schema_for(tag<user_reported>) {
  using e = user_reported;
  return make_schema("report", at("account", &e::account), at("by", &e::by),
                     at("reason", &e::reason), at("time", &e::time), at("threshold", &e::threshold),
                     at("window", &e::window), at("mute", &e::mute));
}
constexpr auto schema_for(tag<room_moderated>) {
  using e = room_moderated;
  return make_schema("roomban", at("room", &e::room), at("account", &e::account), at("by", &e::by),
                     at("action", &e::action));
}
constexpr auto schema_for(tag<account_banned>) {
  using e = account_banned;
  return make_schema("ban", at("account", &e::account), at("by", &e::by), at("reason", &e::reason),
                     at("banned", &e::banned));
}

/// The member that `path` leads to inside `obj` (const when `obj` is).
template <class Obj>
Obj& follow(Obj& obj) {
  return obj;
}
template <class Obj, class Member, class... Rest>
auto& follow(Obj& obj, Member member, Rest... rest) {
  return follow(obj.*member, rest...);
}
template <class Event, class... Member>
auto& member_of(Event& ev, field<Member...> const& f) {
  return std::apply(
      [&](auto... path) -> auto& { return follow(ev, path...); }, f.path);
}

template <class Value>
Value read_value(reader const& r, std::string_view key) {
  if constexpr (std::is_same_v<Value, std::string>)
    return r.str(key);
  else if constexpr (std::is_same_v<Value, std::uint64_t>)
    return r.count(key);
  else if constexpr (std::is_same_v<Value, std::int64_t>)
    return r.integer(key);
  else {
    static_assert(std::is_same_v<Value, bool>);
    return r.boolean(key);
  }
}

}  // namespace

std::string encode(event const& e, std::uint64_t seq) {
  json::object o;
  o.emplace("seq", seq);
  std::visit(
      [&](auto const& ev) {
        using T = std::decay_t<decltype(ev)>;
        constexpr auto s = schema_for(tag<T>{});
        o.emplace("ev", s.kind);
        constexpr std::size_t req = required(tag<T>{});
        bool optional_group = true;
        if constexpr (req < std::tuple_size_v<decltype(s.fields)>)
          optional_group = !member_of(ev, std::get<req>(s.fields)).empty();
        std::apply(
            [&](auto const&... f) {
              std::size_t index = 0;
              auto put = [&](auto const& one) {
                if (index++ >= req && !optional_group) return;
                if constexpr (std::is_same_v<T, read_marked>) {
                  // A room's marker has "room", a private conversation's "with".
                  if (one.key == (ev.room.empty() ? "room" : "with")) return;
                }
                o.emplace(one.key, member_of(ev, one));
              };
              (put(f), ...);
            },
            s.fields);
      },
      e);
  return json::serialize(o);
}

namespace {

template <class T>
T decode_fields(json::object const& o, reader const& r) {
  constexpr auto s = schema_for(tag<T>{});
  [[maybe_unused]] constexpr std::size_t req = required(tag<T>{});
  T ev{};
  std::apply(
      [&](auto const&... f) {
        if constexpr (std::is_same_v<T, read_marked>) {
          // One of "room" (not empty) and "with".
          const bool room = o.contains("room");
          r.exact({"seq", "ev", "account", room ? "room" : "with", "id"});
          auto get = [&](auto const& one) {
            if (one.key == (room ? "with" : "room")) return;
            auto& v = member_of(ev, one);
            v = read_value<std::remove_cvref_t<decltype(v)>>(r, one.key);
          };
          (get(f), ...);
          if (room && ev.room.empty()) fail("empty \"room\"");
        } else if constexpr (req < sizeof...(f)) {
          // The optional group (see required()) is there or not as a whole.
          const bool group = o.contains(std::get<req>(s.fields).key);
          std::vector<std::string_view> names{"seq", "ev"};
          std::size_t index = 0;
          auto name = [&](auto const& one) {
            if (index++ < req || group) names.push_back(one.key);
          };
          (name(f), ...);
          r.exact_list(names);
          index = 0;
          auto get = [&](auto const& one) {
            if (index++ >= req && !group) return;
            auto& v = member_of(ev, one);
            v = read_value<std::remove_cvref_t<decltype(v)>>(r, one.key);
          };
          (get(f), ...);
          if (group && member_of(ev, std::get<req>(s.fields)).empty())
            fail("empty \"" + std::string(std::get<req>(s.fields).key) + "\"");
        } else {
          r.exact({"seq", "ev", f.key...});
          auto get = [&](auto const& one) {
            auto& v = member_of(ev, one);
            v = read_value<std::remove_cvref_t<decltype(v)>>(r, one.key);
          };
          (get(f), ...);
        }
      },
      s.fields);
  // Rules beyond the fields' types.
  if constexpr (std::is_same_v<T, message_queued>) {
    // A queued message has its id; a posted one is given its id by apply() (0 since issue 13).
    if (ev.m.id == 0) fail("message id 0");
  } else if constexpr (std::is_same_v<T, signed_in>) {
    if (!ev.device.empty() && (ev.node.empty() || ev.max == 0))
      fail("a device's sign-in needs a \"node\" and a \"max\" of at least 1");
  } else if constexpr (std::is_same_v<T, node_gone>) {
    if (ev.node.empty() || ev.instance.empty()) fail("empty \"node\" or \"instance\"");
  } else if constexpr (std::is_same_v<T, room_moderated>) {
    if (ev.action != "kick" && ev.action != "ban" && ev.action != "unban")
      fail("unknown room moderation \"" + ev.action + "\"");
  }
  return ev;
}

/// The event of kind `kind`, read by the decode_fields of the alternative whose schema has it.
template <std::size_t... I>
bool decode_kind(std::string_view kind, json::object const& o, reader const& r, event& out,
                 std::index_sequence<I...>) {
  auto one = [&]<std::size_t N>(std::integral_constant<std::size_t, N>) {
    using T = std::variant_alternative_t<N, event>;
    if (schema_for(tag<T>{}).kind != kind) return false;
    out = decode_fields<T>(o, r);
    return true;
  };
  return (one(std::integral_constant<std::size_t, I>{}) || ...);
}

}  // namespace

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
  if (!decode_kind(kind, o, r, d.e, std::make_index_sequence<std::variant_size_v<event>>{}))
    fail("unknown event \"" + kind + "\"");
  return d;
}

}  // namespace jim::server::store
