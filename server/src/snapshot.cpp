#include "snapshot.hpp"

#include "hub.hpp"

#include <boost/json.hpp>

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <fcntl.h>
#include <initializer_list>
#include <optional>
#include <set>
#include <span>
#include <stdexcept>
#include <string_view>
#include <sys/stat.h>
#include <unordered_set>
#include <system_error>
#include <unistd.h>
#include <utility>
#include <vector>

namespace jim::server::snapshot {

namespace fs = std::filesystem;
namespace json = boost::json;
using proto::chat_message;
using proto::fold;

namespace {

using messages = std::deque<chat_message>;

// ---------------------------------------------------------------------------------------------
// capture

// Everything is allocated from one monotonic arena that the document owns: capture runs on the
// I/O thread, and 100k messages make half a million small allocations otherwise.
json::object message_json(chat_message const& m, json::storage_ptr const& sp) {
  json::object o(5, sp);
  o.emplace("id", m.id);
  o.emplace("time", m.time);
  o.emplace("from", m.from);
  o.emplace("to", m.to);
  if (m.deleted)
    o.emplace("deleted", true);  // format 5: no text any more
  else
    o.emplace("message", m.message);
  if (m.edited != 0 && !m.deleted) o.emplace("edited", m.edited);
  return o;
}

/// A JSON array in the arena `sp` of `to_json(e)` for each entry `e` of `list`, in its order.
template <class List, class ToJson>
json::array array_json(List const& list, json::storage_ptr const& sp, ToJson to_json) {
  json::array a(sp);
  a.reserve(list.size());
  for (auto const& e : list) a.emplace_back(to_json(e));
  return a;
}

template <class Messages>
json::array messages_json(Messages const& ms, json::storage_ptr const& sp) {
  return array_json(ms, sp, [&](chat_message const& m) { return message_json(m, sp); });
}

template <class Map>
std::vector<typename Map::const_pointer> sorted_by_key(Map const& map) {
  std::vector<typename Map::const_pointer> out;
  out.reserve(map.size());
  for (auto const& entry : map) out.push_back(&entry);
  std::sort(out.begin(), out.end(), [](auto x, auto y) { return x->first < y->first; });
  return out;
}

/// The strings of `set` (unordered) in order, as pointers into it.
template <class Set>
std::vector<std::string const*> sorted_strings(Set const& set) {
  std::vector<std::string const*> out;
  out.reserve(set.size());
  for (auto const& s : set) out.push_back(&s);
  std::sort(out.begin(), out.end(), [](auto x, auto y) { return *x < *y; });
  return out;
}

// ---------------------------------------------------------------------------------------------
// load: validation

/// Where in the document a value sits, rendered only when it is wrong (`rooms[2].history[5].id`).
/// Each level lives on the stack of the function that looks at it.
struct at {
  at const* parent = nullptr;
  std::string_view key;
  std::size_t index = 0;
  bool is_index = false;

  at operator[](std::string_view k) const { return at{this, k, 0, false}; }
  at operator[](std::size_t i) const { return at{this, {}, i, true}; }

  std::string str() const {
    std::vector<at const*> chain;
    for (at const* a = this; a && a->parent; a = a->parent) chain.push_back(a);
    if (chain.empty()) return "the document";
    std::string out;
    for (auto it = chain.rbegin(); it != chain.rend(); ++it) {
      if ((*it)->is_index) {
        out += "[" + std::to_string((*it)->index) + "]";
      } else {
        if (!out.empty()) out += '.';
        out += (*it)->key;
      }
    }
    return out;
  }
};

struct invalid : std::runtime_error {
  using std::runtime_error::runtime_error;
};

[[noreturn]] void fail(at const& where, std::string const& problem) {
  throw invalid(where.str() + ": " + problem);
}

std::string json_quote(std::string_view s) {
  return json::serialize(json::string_view(s.data(), s.size()));
}

json::object const& as_object(json::value const& v, at const& where) {
  if (!v.is_object()) fail(where, "expected an object");
  return v.get_object();
}

json::array const& as_array(json::value const& v, at const& where) {
  if (!v.is_array()) fail(where, "expected an array");
  return v.get_array();
}

std::string_view as_string(json::value const& v, at const& where) {
  if (!v.is_string()) fail(where, "expected a string");
  auto const& s = v.get_string();
  return {s.data(), s.size()};
}

std::int64_t as_int(json::value const& v, at const& where) {
  if (v.is_int64()) return v.get_int64();
  if (v.is_uint64() && v.get_uint64() <= static_cast<std::uint64_t>(INT64_MAX))
    return static_cast<std::int64_t>(v.get_uint64());
  fail(where, "expected an integer");
}

/// A non-negative integer (counters).
std::uint64_t as_count(json::value const& v, at const& where) {
  if (v.is_uint64()) return v.get_uint64();
  if (v.is_int64() && v.get_int64() >= 0) return static_cast<std::uint64_t>(v.get_int64());
  fail(where, "expected a non-negative integer");
}

/// A positive integer (message ids start at 1).
std::uint64_t as_id(json::value const& v, at const& where) {
  if (v.is_uint64() && v.get_uint64() > 0) return v.get_uint64();
  if (v.is_int64() && v.get_int64() > 0) return static_cast<std::uint64_t>(v.get_int64());
  fail(where, "expected a positive integer");
}

/// Checks that `o` has exactly the fields `names` (an unknown field means a writer that knew
/// more than we do: refusing beats silently dropping it at the next save).
void exact_fields(json::object const& o, std::span<std::string_view const> names,
                  at const& where) {
  for (auto name : names)
    if (!o.contains(name)) fail(where, "missing field " + json_quote(name));
  for (auto const& kv : o)
    if (std::find(names.begin(), names.end(), kv.key()) == names.end())
      fail(where, "unknown field " + json_quote(kv.key()));
}
void exact_fields(json::object const& o, std::initializer_list<std::string_view> names,
                  at const& where) {
  exact_fields(o, std::span<std::string_view const>(names.begin(), names.size()), where);
}

std::string account_name(json::value const& v, at const& where) {
  auto s = as_string(v, where);
  if (!proto::valid_account_name(s)) fail(where, "invalid account name " + json_quote(s));
  return std::string(s);
}

/// A folded account key that must name a stored account.
std::string account_key(json::value const& v, at const& where, std::set<std::string> const& keys) {
  std::string key = account_name(v, where);
  if (key != fold(key)) fail(where, "account key " + json_quote(key) + " is not in lower case");
  if (!keys.count(key)) fail(where, "no such account " + json_quote(key));
  return key;
}

struct loaded_account {
  std::string name;
  std::string password_hash;
  std::uint64_t general_seen = 0;
  messages queued;
  std::vector<resume_token> tokens;
  // Format 3.
  std::uint64_t general_since = 0;
  std::vector<std::pair<std::string, std::uint64_t>> read;
  std::vector<pending_invitation> invitations;
  std::vector<std::string> contacts;  ///< format 5 (j16d's format 4)
  // Format 5 (j16e's format 4).
  std::int64_t muted_until = 0;
  std::vector<report_entry> reports;
  std::optional<std::string> banned;
  std::vector<std::string> notices;
  std::vector<cluster_device> devices;  ///< optional in every format (a cluster node's)
};

struct loaded_room {
  std::string name;
  std::string owner;
  std::string password_hash;
  std::vector<std::string> members;
  std::uint64_t posted = 0;
  messages history;
  std::vector<std::pair<std::string, std::uint64_t>> since;  ///< format 3
  std::vector<std::string> banned;                           ///< format 5
};

struct loaded_conversation {
  conversation_key key;
  messages list;
};

struct loaded_state {
  std::uint64_t journal_seq = 0;
  std::uint64_t last_id = 0;
  std::uint64_t max_id = 0;  ///< the highest id anywhere in the file, pruned messages included
  std::vector<loaded_account> accounts;
  std::vector<loaded_room> rooms;
  std::vector<loaded_conversation> conversations;
  std::uint64_t last_scheduled = 0;           ///< format 5
  std::vector<scheduled_message> scheduled;  ///< format 5
};

class validator {
 public:
  explicit validator(loaded_state& out) : out_(out) {}

  std::int64_t format = format_version;
  /// Which parts of issue 16 the file holds: format 5 both; a format 4 (never released: written
  /// by one of the two branches merged into format 5) either, told apart by `last_scheduled`.
  bool has_contacts = true;
  bool has_moderation = true;

  void document(json::value const& v) {
    at const root;
    auto const& o = as_object(v, root);
    // The version first: a future format may differ in everything else.
    if (!o.contains("format")) fail(root, "missing field \"format\" (not a jimd snapshot?)");
    format = as_int(o.at("format"), root["format"]);
    if (format < 1 || format > format_version)
      fail(root["format"], "unsupported format " + json::serialize(o.at("format")) +
                               " (this jimd reads formats 1 to " + std::to_string(format_version) +
                               ")");
    has_contacts = format >= 5 || (format == 4 && !o.contains("last_scheduled"));
    has_moderation = format >= 5 || (format == 4 && o.contains("last_scheduled"));
    if (format == 1) {
      // Migration: format 1 had no journal; its state covers no journal record.
      exact_fields(o, {"format", "saved_at", "last_id", "accounts", "rooms", "conversations"},
                   root);
    } else if (!has_moderation) {
      exact_fields(o,
                   {"format", "saved_at", "journal_seq", "last_id", "accounts", "rooms",
                    "conversations"},
                   root);
      out_.journal_seq = as_count(o.at("journal_seq"), root["journal_seq"]);
    } else {
      exact_fields(o,
                   {"format", "saved_at", "journal_seq", "last_id", "accounts", "rooms",
                    "conversations", "last_scheduled", "scheduled"},
                   root);
      out_.journal_seq = as_count(o.at("journal_seq"), root["journal_seq"]);
    }
    as_int(o.at("saved_at"), root["saved_at"]);
    out_.last_id = as_count(o.at("last_id"), root["last_id"]);

    at const accounts_at = root["accounts"];
    auto const& accounts = as_array(o.at("accounts"), accounts_at);
    out_.accounts.reserve(accounts.size());
    for (std::size_t i = 0; i < accounts.size(); ++i) account(accounts[i], accounts_at[i]);

    at const rooms_at = root["rooms"];
    auto const& rooms = as_array(o.at("rooms"), rooms_at);
    out_.rooms.reserve(rooms.size());
    for (std::size_t i = 0; i < rooms.size(); ++i) room(rooms[i], rooms_at[i]);
    if (!room_keys_.count(fold(proto::strip_hash(proto::general_room))))
      fail(rooms_at, std::string(proto::general_room) + " is missing");

    at const conversations_at = root["conversations"];
    auto const& conversations = as_array(o.at("conversations"), conversations_at);
    out_.conversations.reserve(conversations.size());
    for (std::size_t i = 0; i < conversations.size(); ++i)
      conversation(conversations[i], conversations_at[i]);

    // Read markers name rooms and accounts: checked once both are known.
    for (std::size_t i = 0; i < out_.accounts.size(); ++i) {
      at const account_at = accounts_at[i];  // a named parent: `at` points to its parent
      at const marks_at = account_at["read"];
      for (auto const& [key, id] : out_.accounts[i].read) {
        const bool known = !key.empty() && key.front() == '#' ? room_keys_.count(key.substr(1)) != 0
                                                              : account_keys_.count(key) != 0;
        if (!known) fail(marks_at[key], "no such room or account");
      }
      at const inv_at = account_at["invitations"];
      for (std::size_t j = 0; j < out_.accounts[i].invitations.size(); ++j)
        if (!room_keys_.count(fold(proto::strip_hash(out_.accounts[i].invitations[j].room))))
          fail(inv_at[j]["room"], "no such room");
      at const contacts_at = account_at["contacts"];
      for (std::size_t j = 0; j < out_.accounts[i].contacts.size(); ++j)
        if (!account_keys_.count(fold(out_.accounts[i].contacts[j])))
          fail(contacts_at[j], "no such account");
    }
    if (has_moderation) {
      out_.last_scheduled = as_count(o.at("last_scheduled"), root["last_scheduled"]);
      at const sched_at = root["scheduled"];
      auto const& list = as_array(o.at("scheduled"), sched_at);
      for (std::size_t i = 0; i < list.size(); ++i) scheduled(list[i], sched_at[i]);
      for (std::size_t i = 0; i < out_.rooms.size(); ++i)
        for (auto const& b : out_.rooms[i].banned)
          if (!account_keys_.count(b)) fail(rooms_at[i]["banned"], "no such account " + b);
    }
    if (format < 3) {
      // Migration: unread counts start at the upgrade (nothing older counts as unread).
      for (auto& a : out_.accounts) a.general_since = out_.last_id;
      for (auto& r : out_.rooms)
        for (auto const& m : r.members) r.since.emplace_back(m, out_.last_id);
    }
  }

 private:
  void account(json::value const& v, at const& where) {
    auto const& o = as_object(v, where);
    // `tokens` is optional in every format (see snapshot.hpp).
    std::vector<std::string_view> fields{"name", "password_hash", "general_seen", "queued"};
    if (format >= 3) fields.insert(fields.end(), {"general_since", "read", "invitations"});
    if (has_contacts) fields.push_back("contacts");
    if (has_moderation) fields.insert(fields.end(), {"muted_until", "reports", "banned", "notices"});
    if (o.contains("tokens")) fields.push_back("tokens");
    if (o.contains("devices")) fields.push_back("devices");
    exact_fields(o, fields, where);
    loaded_account a;
    a.name = account_name(o.at("name"), where["name"]);
    const std::string key = fold(a.name);
    if (!account_keys_.insert(key).second)
      fail(where["name"], "duplicate account " + json_quote(a.name));
    a.password_hash = std::string(as_string(o.at("password_hash"), where["password_hash"]));
    if (a.password_hash.empty()) fail(where["password_hash"], "empty password hash");
    a.general_seen = as_count(o.at("general_seen"), where["general_seen"]);
    a.queued = sequence(o.at("queued"), where["queued"], [&](chat_message const& m, at const& mw) {
      if (fold(m.to) != key)
        fail(mw["to"], "a message queued for " + a.name + " is addressed to " + m.to);
    });
    if (o.contains("tokens")) a.tokens = tokens(o.at("tokens"), where["tokens"]);
    if (o.contains("devices")) a.devices = devices(o.at("devices"), where["devices"]);
    if (format >= 3) {
      a.general_since = as_count(o.at("general_since"), where["general_since"]);
      at const read_at = where["read"];
      for (auto const& kv : as_object(o.at("read"), read_at)) {
        std::string mark(kv.key());
        if (mark != fold(mark)) fail(read_at[mark], "key is not in lower case");
        a.read.emplace_back(mark, as_count(kv.value(), read_at[kv.key()]));
      }
      at const inv_at = where["invitations"];
      auto const& invitations = as_array(o.at("invitations"), inv_at);
      for (std::size_t i = 0; i < invitations.size(); ++i) {
        auto const& io = as_object(invitations[i], inv_at[i]);
        exact_fields(io, {"from", "room"}, inv_at[i]);
        pending_invitation inv;
        inv.from = account_name(io.at("from"), inv_at[i]["from"]);
        inv.room = std::string(as_string(io.at("room"), inv_at[i]["room"]));
        if (inv.room.size() < 2 || inv.room.front() != '#' ||
            !proto::valid_room_name(proto::strip_hash(inv.room)))
          fail(inv_at[i]["room"], "invalid room name " + json_quote(inv.room));
        a.invitations.push_back(std::move(inv));
      }
    }
    if (has_contacts) {
      // Names as registered, in the order added; each once, never the account itself.
      at const contacts_at = where["contacts"];
      auto const& contacts = as_array(o.at("contacts"), contacts_at);
      std::unordered_set<std::string> listed;
      for (std::size_t i = 0; i < contacts.size(); ++i) {
        std::string c = account_name(contacts[i], contacts_at[i]);
        if (fold(c) == key) fail(contacts_at[i], "an account is not its own contact");
        if (!listed.insert(fold(c)).second)
          fail(contacts_at[i], "duplicate contact " + json_quote(c));
        a.contacts.push_back(std::move(c));
      }
    }
    if (has_moderation) {
      // Format 5 (issue 16): mute, reports, server-wide ban, pending notices.
      a.muted_until = as_int(o.at("muted_until"), where["muted_until"]);
      at const rep_at = where["reports"];
      auto const& reports = as_array(o.at("reports"), rep_at);
      for (std::size_t i = 0; i < reports.size(); ++i) {
        auto const& ro = as_object(reports[i], rep_at[i]);
        exact_fields(ro, {"by", "time"}, rep_at[i]);
        a.reports.push_back(report_entry{fold(account_name(ro.at("by"), rep_at[i]["by"])),
                                         as_int(ro.at("time"), rep_at[i]["time"])});
      }
      if (!o.at("banned").is_null())
        a.banned = std::string(as_string(o.at("banned"), where["banned"]));
      at const notices_at = where["notices"];
      auto const& notices = as_array(o.at("notices"), notices_at);
      for (std::size_t i = 0; i < notices.size(); ++i)
        a.notices.emplace_back(as_string(notices[i], notices_at[i]));
    }
    out_.accounts.push_back(std::move(a));
  }

  /// A cluster node's device list of an account: {"id": "<instance>.<n>", "node": "n1"}, each
  /// id once.
  std::vector<cluster_device> devices(json::value const& v, at const& where) {
    auto const& a = as_array(v, where);
    std::vector<cluster_device> out;
    out.reserve(a.size());
    std::set<std::string> ids;
    for (std::size_t i = 0; i < a.size(); ++i) {
      at const dw = where[i];
      auto const& o = as_object(a[i], dw);
      exact_fields(o, {"id", "node"}, dw);
      cluster_device d;
      d.id = std::string(as_string(o.at("id"), dw["id"]));
      d.node = std::string(as_string(o.at("node"), dw["node"]));
      const auto dot = d.id.find('.');
      if (dot == 0 || dot == std::string::npos || dot + 1 == d.id.size())
        fail(dw["id"], "not a device id (\"<instance>.<n>\")");
      if (d.node.empty()) fail(dw["node"], "empty node name");
      if (!ids.insert(d.id).second) fail(dw["id"], "duplicate device " + json_quote(d.id));
      out.push_back(std::move(d));
    }
    return out;
  }

  /// Resume-token digests: at most hub::max_resume_tokens, each 43 base64url characters.
  std::vector<resume_token> tokens(json::value const& v, at const& where) {
    auto const& a = as_array(v, where);
    if (a.size() > hub::max_resume_tokens)
      fail(where, "more than " + std::to_string(hub::max_resume_tokens) + " tokens");
    std::vector<resume_token> out;
    out.reserve(a.size());
    for (std::size_t i = 0; i < a.size(); ++i) {
      at const tw = where[i];
      auto const& o = as_object(a[i], tw);
      exact_fields(o, {"hash", "issued", "expires"}, tw);
      resume_token t;
      t.hash = std::string(as_string(o.at("hash"), tw["hash"]));
      if (t.hash.size() != 43 ||
          t.hash.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                   "0123456789-_") != std::string::npos)
        fail(tw["hash"], "not a token digest (43 base64url characters)");
      t.issued = as_int(o.at("issued"), tw["issued"]);
      t.expires = as_int(o.at("expires"), tw["expires"]);
      if (t.expires <= t.issued) fail(tw["expires"], "expires before it was issued");
      out.push_back(std::move(t));
    }
    return out;
  }

  void room(json::value const& v, at const& where) {
    auto const& o = as_object(v, where);
    if (has_moderation)
      exact_fields(o,
                   {"name", "owner", "password_hash", "members", "posted", "history", "since",
                    "banned"},
                   where);
    else if (format >= 3)
      exact_fields(o, {"name", "owner", "password_hash", "members", "posted", "history", "since"},
                   where);
    else
      exact_fields(o, {"name", "owner", "password_hash", "members", "posted", "history"}, where);
    loaded_room r;
    r.name = std::string(as_string(o.at("name"), where["name"]));
    if (r.name.size() < 2 || r.name.front() != '#' ||
        !proto::valid_room_name(proto::strip_hash(r.name)))
      fail(where["name"], "invalid room name " + json_quote(r.name) + " (expected \"#name\")");
    const std::string key = fold(proto::strip_hash(r.name));
    if (!room_keys_.insert(key).second) fail(where["name"], "duplicate room " + json_quote(r.name));
    const bool general = key == fold(proto::strip_hash(proto::general_room));

    r.password_hash = std::string(as_string(o.at("password_hash"), where["password_hash"]));
    at const members_at = where["members"];
    auto const& members = as_array(o.at("members"), members_at);
    if (general) {
      // #general belongs to everyone: no owner, no password, no member list.
      if (!o.at("owner").is_null())
        fail(where["owner"], std::string(proto::general_room) + " has no owner");
      if (!r.password_hash.empty())
        fail(where["password_hash"], std::string(proto::general_room) + " has no password");
      if (!members.empty())
        fail(members_at, std::string(proto::general_room) + " has no member list");
    } else {
      r.owner = account_key(o.at("owner"), where["owner"], account_keys_);
      if (r.password_hash.empty()) fail(where["password_hash"], "empty password hash");
    }
    std::set<std::string> seen;
    r.members.reserve(members.size());
    for (std::size_t i = 0; i < members.size(); ++i) {
      std::string m = account_key(members[i], members_at[i], account_keys_);
      if (!seen.insert(m).second) fail(members_at[i], "duplicate member " + json_quote(m));
      r.members.push_back(std::move(m));
    }
    r.posted = as_count(o.at("posted"), where["posted"]);
    r.history =
        sequence(o.at("history"), where["history"], [&](chat_message const& m, at const& mw) {
          if (fold(m.to) != fold(r.name))
            fail(mw["to"], "a message in " + r.name + " is addressed to " + m.to);
        });
    if (r.history.size() > r.posted)
      fail(where["posted"], "counts fewer messages (" + std::to_string(r.posted) +
                                ") than the history holds (" + std::to_string(r.history.size()) +
                                ")");
    if (format >= 3) {
      // Every member's start of its unread count, and only members'.
      at const since_at = where["since"];
      auto const& since = as_object(o.at("since"), since_at);
      for (auto const& kv : since) {
        std::string member(kv.key());
        if (!seen.count(member)) fail(since_at[kv.key()], "not a member");
        r.since.emplace_back(std::move(member), as_count(kv.value(), since_at[kv.key()]));
      }
      if (since.size() != seen.size()) fail(since_at, "a member is missing");
    }
    if (has_moderation) {
      at const banned_at = where["banned"];
      auto const& banned = as_array(o.at("banned"), banned_at);
      for (std::size_t i = 0; i < banned.size(); ++i) {
        std::string banned_key = account_name(banned[i], banned_at[i]);
        if (banned_key != fold(banned_key))
          fail(banned_at[i], "account key is not in lower case");
        r.banned.push_back(std::move(banned_key));  // checked against the accounts after them all
      }
    }
    out_.rooms.push_back(std::move(r));
  }

  void conversation(json::value const& v, at const& where) {
    auto const& o = as_object(v, where);
    exact_fields(o, {"between", "messages"}, where);
    at const between_at = where["between"];
    auto const& between = as_array(o.at("between"), between_at);
    if (between.size() != 2) fail(between_at, "expected two account keys");
    loaded_conversation c;
    c.key.first = account_key(between[0], between_at[0], account_keys_);
    c.key.second = account_key(between[1], between_at[1], account_keys_);
    if (c.key.second < c.key.first) fail(between_at, "account keys out of order");
    if (!conversation_keys_.insert(c.key).second) fail(between_at, "duplicate conversation");
    c.list =
        sequence(o.at("messages"), where["messages"], [&](chat_message const& m, at const& mw) {
          auto ends = make_conversation_key(m.from, m.to);
          if (ends != c.key)
            fail(mw, "a message from " + m.from + " to " + m.to + " in the wrong conversation");
        });
    out_.conversations.push_back(std::move(c));
  }

  /// A message sequence: strictly increasing ids (history lookups binary-search on them).
  template <class Check>
  messages sequence(json::value const& v, at const& where, Check check) {
    auto const& a = as_array(v, where);
    messages out;
    for (std::size_t i = 0; i < a.size(); ++i) {
      at const mw = where[i];
      chat_message m = message(a[i], mw);
      if (!out.empty() && m.id <= out.back().id)
        fail(mw["id"],
             "id " + std::to_string(m.id) + " does not follow " + std::to_string(out.back().id));
      check(m, mw);
      out_.max_id = std::max(out_.max_id, m.id);
      out.push_back(std::move(m));
    }
    return out;
  }

  /// A pending scheduled message (format 5).
  void scheduled(json::value const& v, at const& where) {
    auto const& o = as_object(v, where);
    exact_fields(o, {"scheduled", "account", "to", "message", "at", "origin"}, where);
    scheduled_message s;
    s.id = as_id(o.at("scheduled"), where["scheduled"]);
    if (s.id > out_.last_scheduled)
      fail(where["scheduled"], "above last_scheduled " + std::to_string(out_.last_scheduled));
    if (!out_.scheduled.empty() && s.id <= out_.scheduled.back().id)
      fail(where["scheduled"], "out of order");
    s.account = account_name(o.at("account"), where["account"]);
    if (!account_keys_.count(fold(s.account))) fail(where["account"], "no such account");
    s.to = std::string(as_string(o.at("to"), where["to"]));
    const bool to_ok = !s.to.empty() && s.to.front() == '#'
                           ? room_keys_.count(fold(s.to.substr(1))) != 0
                           : account_keys_.count(fold(s.to)) != 0;
    if (!to_ok) fail(where["to"], "no such room or account " + json_quote(s.to));
    s.message = std::string(as_string(o.at("message"), where["message"]));
    if (s.message.empty()) fail(where["message"], "empty message");
    s.at = as_int(o.at("at"), where["at"]);
    s.origin = std::string(as_string(o.at("origin"), where["origin"]));
    out_.scheduled.push_back(std::move(s));
  }

  chat_message message(json::value const& v, at const& where) {
    auto const& o = as_object(v, where);
    if (has_moderation) {
      // Format 5: optional "edited"; a deleted message has "deleted": true and no "message".
      const bool deleted = o.contains("deleted");
      std::vector<std::string_view> names{"id", "time", "from", "to"};
      names.push_back(deleted ? "deleted" : "message");
      if (o.contains("edited")) names.push_back("edited");
      exact_fields(o, names, where);
      chat_message m = message_head(o, where);
      if (deleted) {
        if (!o.at("deleted").is_bool() || !o.at("deleted").get_bool())
          fail(where["deleted"], "expected true");
        m.deleted = true;
      } else {
        m.message = std::string(as_string(o.at("message"), where["message"]));
        if (m.message.empty()) fail(where["message"], "empty message");
      }
      if (o.contains("edited")) {
        m.edited = as_int(o.at("edited"), where["edited"]);
        if (m.edited <= 0) fail(where["edited"], "expected a positive time");
      }
      return m;
    }
    exact_fields(o, {"id", "time", "from", "to", "message"}, where);
    chat_message m = message_head(o, where);
    m.message = std::string(as_string(o.at("message"), where["message"]));
    if (m.message.empty()) fail(where["message"], "empty message");
    return m;
  }

  chat_message message_head(json::object const& o, at const& where) {
    chat_message m;
    m.id = as_id(o.at("id"), where["id"]);
    m.time = as_int(o.at("time"), where["time"]);
    m.from = account_name(o.at("from"), where["from"]);
    auto to = as_string(o.at("to"), where["to"]);
    const bool to_ok = !to.empty() && to.front() == '#' ? proto::valid_room_name(to.substr(1))
                                                        : proto::valid_account_name(to);
    if (!to_ok) fail(where["to"], "invalid recipient " + json_quote(to));
    m.to = std::string(to);
    return m;
  }

  loaded_state& out_;
  std::set<std::string> account_keys_;
  std::set<std::string> room_keys_;
  std::set<conversation_key> conversation_keys_;
};

// ---------------------------------------------------------------------------------------------
// load: restoring

void drop_expired(messages& ms, std::int64_t oldest) {
  while (!ms.empty() && ms.front().time < oldest) ms.pop_front();
}

void keep_last(messages& ms, std::size_t n) {
  while (ms.size() > n) ms.pop_front();
}

void restore(loaded_state&& s, hub& h, std::int64_t unix_now) {
  auto const& lim = h.limits();
  // Same rule as hub::prune: a message expires once it is older than the TTL.
  const bool ttl = lim.message_ttl.count() > 0;
  const std::int64_t oldest = unix_now - lim.message_ttl.count();
  for (auto& la : s.accounts) {
    account& a = h.restore_account(std::move(la.name));
    a.password_hash = std::move(la.password_hash);
    a.general_seen = la.general_seen;
    a.general_since = la.general_since;
    a.read.insert(la.read.begin(), la.read.end());
    a.invitations = std::move(la.invitations);
    a.contacts = std::move(la.contacts);
    a.muted_until = la.muted_until;
    a.reports = std::move(la.reports);
    a.banned = std::move(la.banned);
    a.notices = std::move(la.notices);
    if (ttl) drop_expired(la.queued, oldest);
    // Undelivered mail is never cut by history-limit.
    a.queued.assign(std::make_move_iterator(la.queued.begin()),
                    std::make_move_iterator(la.queued.end()));
    std::erase_if(la.tokens, [unix_now](resume_token const& t) { return t.expires <= unix_now; });
    a.resume_tokens = std::move(la.tokens);
    h.restore_devices(a, std::move(la.devices));
  }
  for (auto& lr : s.rooms) {
    room& r = h.restore_room(std::move(lr.name));
    r.owner = std::move(lr.owner);
    r.password_hash = std::move(lr.password_hash);
    r.members.insert(std::make_move_iterator(lr.members.begin()),
                     std::make_move_iterator(lr.members.end()));
    r.since.insert(lr.since.begin(), lr.since.end());
    r.banned.insert(lr.banned.begin(), lr.banned.end());
    r.posted = lr.posted;  // counts expired and trimmed messages too: `missed` stays right
    if (ttl) drop_expired(lr.history, oldest);
    keep_last(lr.history, lim.history_limit);
    r.history = std::move(lr.history);
  }
  for (auto& lc : s.conversations) {
    if (ttl) drop_expired(lc.list, oldest);
    keep_last(lc.list, lim.history_limit);
    if (!lc.list.empty()) h.restore_conversation(std::move(lc.key)) = std::move(lc.list);
  }
  // Ids are never reused: continue above the counter and above every id the file held,
  // including messages just dropped.
  h.restore_last_id(std::max(s.last_id, s.max_id));
  h.restore_last_schedule(s.last_scheduled);
  for (auto& sm : s.scheduled) h.restore_schedule(std::move(sm));
}

// ---------------------------------------------------------------------------------------------
// write

std::system_error os_error(std::string const& what) {
  return std::system_error(errno, std::generic_category(), what);
}

void write_all(int fd, char const* data, std::size_t size, fs::path const& tmp) {
  while (size > 0) {
    const ssize_t n = ::write(fd, data, size);
    if (n < 0) {
      if (errno == EINTR) continue;
      throw os_error("cannot write " + tmp.string());
    }
    data += n;
    size -= static_cast<std::size_t>(n);
  }
}

/// Owns the temp file until it has been renamed: on any failure it is closed and removed.
class temp_file {
 public:
  temp_file(fs::path path, int fd) : path_(std::move(path)), fd_(fd) {}
  temp_file(temp_file const&) = delete;
  temp_file& operator=(temp_file const&) = delete;
  ~temp_file() {
    if (fd_ >= 0) ::close(fd_);
    if (!renamed_) ::unlink(path_.c_str());
  }
  int fd() const { return fd_; }
  void close() {
    const int handle = std::exchange(fd_, -1);
    if (::close(handle) != 0) throw os_error("cannot close " + path_.string());
  }
  void renamed() { renamed_ = true; }

 private:
  fs::path path_;
  int fd_;
  bool renamed_ = false;
};

/// The test hook described at crash_hook_env.
std::string_view crash_hook() {
  char const* v = std::getenv(crash_hook_env);
  return v ? std::string_view(v) : std::string_view();
}

}  // namespace

fs::path file_in(fs::path const& data_dir) {
  return data_dir / "jimd-state.json";
}

fs::path temp_of(fs::path const& file) {
  fs::path tmp = file;
  tmp += ".tmp";
  return tmp;
}

json::value capture(hub const& h, std::uint64_t journal_seq) {
  auto sp = json::make_shared_resource<json::monotonic_resource>();
  json::object root(8, sp);
  root.emplace("format", format_version);
  root.emplace("saved_at", proto::unix_now());
  root.emplace("journal_seq", journal_seq);
  root.emplace("last_id", h.last_id());

  // Sorted by key so that two snapshots of the same state are the same bytes.
  json::array accounts(sp);
  accounts.reserve(h.accounts().size());
  std::uint64_t const general_posted =
      h.all_rooms().at(fold(proto::strip_hash(proto::general_room)))->posted;
  for (auto const* entry : sorted_by_key(h.accounts())) {
    account const& a = *entry->second;
    json::object o(4, sp);
    o.emplace("name", a.name);
    o.emplace("password_hash", a.password_hash);
    // Someone online has seen #general up to now: if this autosave is the last snapshot before
    // a crash, `missed` then counts from here and not from their previous sign-out. (At a clean
    // shutdown every session has signed out before the capture, so both are the same.)
    o.emplace("general_seen", a.online() || a.connections > 0 ? general_posted : a.general_seen);
    o.emplace("queued", messages_json(a.queued, sp));
    if (!a.resume_tokens.empty()) {
      o.emplace("tokens", array_json(a.resume_tokens, sp, [&](resume_token const& t) {
        return json::object({{"hash", t.hash}, {"issued", t.issued}, {"expires", t.expires}}, sp);
      }));
    }
    if (!a.cluster_devices.empty()) {
      o.emplace("devices", array_json(a.cluster_devices, sp, [&](cluster_device const& d) {
        return json::object({{"id", d.id}, {"node", d.node}}, sp);
      }));
    }
    o.emplace("general_since", a.general_since);
    json::object marks(sp);
    for (auto const& [key, id] : a.read) marks.emplace(key, id);  // a std::map: sorted
    o.emplace("read", std::move(marks));
    o.emplace("invitations", array_json(a.invitations, sp, [&](pending_invitation const& i) {
      return json::object({{"from", i.from}, {"room", i.room}}, sp);
    }));
    o.emplace("contacts", json::array(a.contacts.begin(), a.contacts.end(), sp));
    o.emplace("muted_until", a.muted_until);
    o.emplace("reports", array_json(a.reports, sp, [&](report_entry const& rp) {
      return json::object({{"by", rp.by}, {"time", rp.time}}, sp);
    }));
    if (a.banned)
      o.emplace("banned", *a.banned);
    else
      o.emplace("banned", nullptr);
    o.emplace("notices", json::array(a.notices.begin(), a.notices.end(), sp));
    accounts.emplace_back(std::move(o));
  }
  root.emplace("accounts", std::move(accounts));

  json::array rooms(sp);
  rooms.reserve(h.all_rooms().size());
  auto room_order = sorted_by_key(h.all_rooms());
  std::stable_partition(room_order.begin(), room_order.end(), [&](auto entry) {
    return entry->second->owner.empty();
  });  // #general first
  for (auto const* entry : room_order) {
    room const& r = *entry->second;
    json::object o(6, sp);
    o.emplace("name", r.name);
    if (r.owner.empty())
      o.emplace("owner", nullptr);
    else
      o.emplace("owner", r.owner);
    o.emplace("password_hash", r.password_hash);
    const auto members = sorted_strings(r.members);
    o.emplace("members", array_json(members, sp, [](auto m) { return std::string_view(*m); }));
    o.emplace("posted", r.posted);
    o.emplace("history", messages_json(r.history, sp));
    json::object since(sp);
    since.reserve(members.size());
    for (auto const* m : members) {
      auto it = r.since.find(*m);
      since.emplace(*m, it == r.since.end() ? 0 : it->second);
    }
    o.emplace("since", std::move(since));
    o.emplace("banned", array_json(sorted_strings(r.banned), sp,
                                   [](auto b) { return std::string_view(*b); }));
    rooms.emplace_back(std::move(o));
  }
  root.emplace("rooms", std::move(rooms));

  json::array conversations(sp);
  for (auto const& [key, list] : h.conversations()) {
    if (list.empty()) continue;
    json::object o(2, sp);
    json::array between(sp);
    between.emplace_back(key.first);
    between.emplace_back(key.second);
    o.emplace("between", std::move(between));
    o.emplace("messages", messages_json(list, sp));
    conversations.emplace_back(std::move(o));
  }
  root.emplace("conversations", std::move(conversations));
  root.emplace("last_scheduled", h.last_schedule());
  json::array scheduled(sp);
  for (auto const& [id, sm] : h.schedules()) {  // a std::map: by id
    json::object so(6, sp);
    so.emplace("scheduled", sm.id);
    so.emplace("account", sm.account);
    so.emplace("to", sm.to);
    so.emplace("message", sm.message);
    so.emplace("at", sm.at);
    so.emplace("origin", sm.origin);
    scheduled.emplace_back(std::move(so));
  }
  root.emplace("scheduled", std::move(scheduled));
  return json::value(std::move(root));
}

std::size_t write(fs::path const& file, json::value const& doc) {
  const fs::path tmp = temp_of(file);
  const fs::path dir = file.has_parent_path() ? file.parent_path() : fs::path(".");
  // O_TRUNC reuses a temp file left by a crash; 0600 because the file holds password hashes.
  const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0) throw os_error("cannot create " + tmp.string());
  temp_file out(tmp, fd);
  if (::fchmod(fd, 0600) != 0) throw os_error("cannot chmod " + tmp.string());

  const auto hook = crash_hook();
  // Serialised in chunks straight to the file: no second full copy of a big document in memory.
  json::serializer sr;
  sr.reset(&doc);
  std::vector<char> buf(1 << 16);
  std::size_t bytes = 0;
  while (!sr.done()) {
    auto chunk = sr.read(buf.data(), buf.size());
    write_all(fd, chunk.data(), chunk.size(), tmp);
    bytes += chunk.size();
    if (hook == "partial") ::_exit(3);
  }
  write_all(fd, "\n", 1, tmp);
  ++bytes;
  if (::fsync(fd) != 0) throw os_error("cannot fsync " + tmp.string());
  out.close();
  if (hook == "1") ::_exit(3);

  if (::rename(tmp.c_str(), file.c_str()) != 0)
    throw os_error("cannot rename " + tmp.string() + " to " + file.string());
  out.renamed();
  // The rename is durable only once the directory entry is on disk.
  const int dfd = ::open(dir.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  if (dfd < 0) throw os_error("cannot open directory " + dir.string() + " to fsync it");
  const int synced = ::fsync(dfd);
  const int saved_errno = errno;
  ::close(dfd);
  if (synced != 0) {
    errno = saved_errno;
    throw os_error("cannot fsync directory " + dir.string());
  }
  return bytes;
}

std::optional<std::string> load(fs::path const& file, hub& h, std::int64_t unix_now,
                                std::uint64_t* journal_seq, hub* replica) {
  if (journal_seq) *journal_seq = 0;
  auto error = [&](std::string const& problem) {
    return "cannot load snapshot " + file.string() + ": " + problem +
           " (the file was left untouched; repair it or move it away to start)";
  };
  // Read-only, start to end: nothing here may modify, rename or delete the file.
  const int fd = ::open(file.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) {
    if (errno == ENOENT) return std::nullopt;
    return error(std::strerror(errno));
  }
  std::string text;
  {
    struct stat st {};
    bool ok = ::fstat(fd, &st) == 0;
    int err = errno;
    if (ok && !S_ISREG(st.st_mode)) {
      ::close(fd);
      return error("not a regular file");
    }
    if (ok) text.reserve(static_cast<std::size_t>(st.st_size));
    char buf[1 << 16];
    while (ok) {
      const ssize_t n = ::read(fd, buf, sizeof buf);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0) {
        ok = false;
        err = errno;
        break;
      }
      if (n == 0) break;
      text.append(buf, static_cast<std::size_t>(n));
    }
    ::close(fd);
    if (!ok) return error(std::strerror(err));
  }
  if (text.empty()) return error("the file is empty");

  json::monotonic_resource arena;
  json::stream_parser parser;
  parser.reset(&arena);
  boost::system::error_code ec;
  const std::size_t used = parser.write(text.data(), text.size(), ec);
  if (!ec) parser.finish(ec);
  if (ec)
    return error("not valid JSON at byte " + std::to_string(used) + " of " +
                 std::to_string(text.size()) + ": " + ec.message() +
                 (used >= text.size() ? " (truncated?)" : ""));
  const json::value doc = parser.release();

  loaded_state state;
  try {
    validator(state).document(doc);
  } catch (invalid const& e) {
    return error(e.what());
  }
  if (journal_seq) *journal_seq = state.journal_seq;
  if (replica) restore(loaded_state(state), *replica, unix_now);  // a copy: parsed once
  restore(std::move(state), h, unix_now);
  return std::nullopt;
}

}  // namespace jim::server::snapshot
