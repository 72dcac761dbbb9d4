#pragma once
/// \file
/// Typed requests decoded from frames, and the encoders for replies and pushes.
/// `decode` is the only reader of `"action"`; everything after it works on types.

#include "jim/protocol.hpp"

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace jim::proto {

/// A message target as written in `msg.to`: `#room` or an account name.
struct target {
  std::string name;  ///< bare name, without `#`
  bool is_room = false;
};

struct presence_req {
  std::optional<std::string> account_name;
  std::optional<std::string> status;
};
/// Either `password` (non-empty) or `token` (a resume token from an earlier sign-in reply;
/// then `password` is empty).
struct authenticate_req {
  std::optional<std::string> account_name;
  std::string password;
  std::optional<std::string> token;
};
struct register_req {
  std::string account_name;
  std::string password;
};
struct msg_req {
  std::string message;
  std::optional<target> to;
  /// `"at"`: unix seconds to post it at (a scheduled message; contract: "Edits, schedules,
  /// moderation, contacts"): in the future, at most `limits::schedule_max` ahead (decode()).
  std::optional<std::int64_t> at{};  // a default initializer: aggregate inits without it
};
struct create_req {
  std::string room;  ///< bare name
};
struct join_req {
  std::string room;  ///< bare name
  std::optional<std::string> password;
};
struct exit_req {};
struct invite_req {
  std::optional<std::string> room;  ///< bare name; the current room when absent
  std::string user;
};
struct history_req {
  std::optional<std::string> room;  ///< bare name
  std::optional<std::string> with;  ///< account: the private conversation
  int limit = history_default_limit;
  std::optional<std::uint64_t> before;
};
struct users_req {
  std::optional<std::string> room;  ///< bare name
  bool everyone = false;            ///< `"room":"*"`: every signed-in account
};
struct rooms_req {};
struct quit_req {};
/// Revokes this connection's resume token (`all`: every token of the account), then closes.
struct logout_req {
  bool all = false;
};
/// `{"action":"watch"|"unwatch","rooms":["#a","b"]|"all"}`.
struct watch_req {
  bool all = false;                ///< `"rooms":"all"`
  std::vector<std::string> rooms;  ///< bare names (empty with `all`)
  bool unwatch = false;            ///< the action was `unwatch`
};
/// `{"action":"read","room":"r"|"with":"bob","id":N}`: exactly one of room and with; N >= 1.
struct read_req {
  std::optional<std::string> room;  ///< bare name
  std::optional<std::string> with;  ///< account: the private conversation
  std::uint64_t id = 0;
};
/// `{"action":"conversations"}`.
struct conversations_req {};
/// `{"action":"get_contacts"}` (the JIM course's contact list).
struct get_contacts_req {};
/// `{"action":"add_contact"|"del_contact","user_id":"bob"}`.
struct contact_req {
  std::string user_id;  ///< an account name (as written: looked up case-insensitively)
  bool remove = false;  ///< the action was `del_contact`
};
/// `{"action":"edit","id":N,"message":"t"}`: N >= 1, the text as for `msg`.
struct edit_req {
  std::uint64_t id = 0;
  std::string message;
};
/// `{"action":"delete","id":N}`.
struct delete_req {
  std::uint64_t id = 0;
};
/// `{"action":"scheduled"}`: the account's pending scheduled messages.
struct scheduled_req {};
/// `{"action":"cancel","scheduled":S}`.
struct cancel_req {
  std::uint64_t scheduled = 0;
};
/// `{"action":"report","user":"bob","reason":"..."}` (reason optional, at most max_reason
/// bytes).
struct report_req {
  std::string user;
  std::string reason;
};
/// `kick`/`ban`/`unban` with `room` (a room owner's) or, for ban/unban, without (a server
/// admin's, with an optional `reason`).
struct moderate_req {
  enum class kind { kick, ban, unban };
  kind what = kind::kick;
  std::optional<std::string> room;  ///< bare name; absent: server-wide (ban/unban only)
  std::string user;
  std::string reason;
};

using request_body =
    std::variant<presence_req, authenticate_req, register_req, msg_req, create_req, join_req,
                 exit_req, invite_req, history_req, users_req, rooms_req, quit_req, logout_req,
                 watch_req, read_req, conversations_req, get_contacts_req, contact_req, edit_req,
                 delete_req, scheduled_req, cancel_req, report_req, moderate_req>;

/// A decoded request. `tag` is null when the client sent none.
struct request {
  request_body body;
  boost::json::value tag;
};

/// Why a frame is not a valid request: the reply code (400 or 413) and a precise text.
struct decode_error {
  code status = code::bad_request;
  std::string message;
  boost::json::value tag;  ///< echoed when the frame carried a valid tag
};

using decode_result = std::variant<request, decode_error>;

/// Current unix time in whole seconds.
std::int64_t unix_now() noexcept;

/// Validates a frame (already known to be an object) and turns it into a typed request.
/// Every check of a field value that needs no server state is made here, so that it answers
/// `400`/`413` in every state, before sign-in too (contract: "a malformed or unknown request is
/// 400 in every state"); `now` (unix seconds) is what a scheduled `msg`'s `"at"` is checked
/// against (in the future, at most `lim.schedule_max` ahead).
decode_result decode(boost::json::object const& frame, limits const& lim,
                     std::int64_t now = unix_now());

/// An immutable encoded frame (one JSON line with its '\n'), shared by all its recipients.
using shared_frame = std::shared_ptr<std::string const>;

/// Builds a reply `{"response":C,"time":T[,"tag":..][,"alert"|"error":text], fields...}\n`.
/// `text` goes in "alert" for 1xx/2xx codes and in "error" otherwise; an error always gets a
/// text (the code's reason when `text` is empty).
std::string encode_reply(code c, boost::json::value const& tag, std::string_view text = {},
                         boost::json::object fields = {}, std::int64_t now = unix_now());

/// A chat message as stored and pushed.
struct chat_message {
  std::uint64_t id = 0;
  std::int64_t time = 0;
  std::string from;  ///< account name as registered
  std::string to;    ///< `#room` or account name as registered
  std::string message;  ///< empty once deleted
  std::int64_t edited = 0;  ///< unix seconds of the last edit; 0: never edited
  bool deleted = false;     ///< deleted: shown with `"deleted":true` and no `message`
};

/// The `msg` push; `history` adds `"history":true`. An edited message carries `"edited":T`;
/// a deleted one `"deleted":true` instead of `message`.
std::string encode_msg(chat_message const& m, bool history = false);
/// `msg` as an element of a `history` reply's `messages` array.
boost::json::object msg_object(chat_message const& m);
std::string encode_event(std::string_view event, std::string_view room, std::string_view user);
std::string encode_invite(std::string_view from, std::string_view room);
/// `{"action":"contact_list","user_id":..}`: one entry of a `get_contacts` answer.
std::string encode_contact(std::string_view user_id);
/// `{"action":"event","event":"status","user":..,"status":..}`: an account changed its status.
std::string encode_status(std::string_view user, std::string_view status);
/// `{"action":"event","event":"online","room":..,"online":K}`: how many connections are in a
/// room now (the coalesced join/leave count sent to the watchers of #general).
std::string encode_online(std::string_view room, std::uint64_t online);
/// `{"action":"read","room":"#r"|"with":"bob","id":N}`: a read marker moved (pushed to the
/// account's other connections). `is_room` picks the key.
std::string encode_read(bool is_room, std::string_view name, std::uint64_t id);
/// `{"action":"event","event":"edit","id":N,"message":"t","edited":T}`.
std::string encode_edited(std::uint64_t id, std::string_view message, std::int64_t edited);
/// `{"action":"event","event":"delete","id":N}`.
std::string encode_deleted(std::uint64_t id);
std::string encode_probe();
std::string encode_notice(std::string_view text);

/// Serialises `v` followed by '\n'.
std::string to_line(boost::json::value const& v);

/// Convenience: wraps a line into a shared frame.
inline shared_frame share(std::string line) {
  return std::make_shared<std::string const>(std::move(line));
}

}  // namespace jim::proto
