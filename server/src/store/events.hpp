#pragma once
/// \file
/// The events that change the chat's persistent state. The hub applies them (hub::apply) live
/// once they are durable, at start-up when replaying the journal, and on the snapshot replica;
/// the same events could go to a replicated log. Everything an event needs is decided by the
/// node that proposes it (time, id, hashes, whether a private message is queued): applying
/// one reads no clock, no randomness and no connection.
///
/// Encoding (one journal record's payload): a compact JSON object, `"seq"` (the record's
/// position in the log, from 1) and `"ev"` (the kind) first, then the kind's fields:
/// ```
/// {"seq":1,"ev":"account","name":"Alice","hash":"pbkdf2-sha256$..."}
/// {"seq":2,"ev":"room","room":"#Den","owner":"Alice","hash":"..."}
/// {"seq":3,"ev":"member","room":"#Den","account":"bob"}
/// {"seq":4,"ev":"msg","id":7,"time":1700000000,"from":"Alice","to":"#Den"|"bob","message":"hi","queued":false}
/// {"seq":5,"ev":"queue","id":7,"time":...,"from":...,"to":"bob","message":...}
/// {"seq":6,"ev":"delivered","account":"bob","upto":7}
/// {"seq":7,"ev":"seen","account":"bob","general":42}
/// {"seq":8,"ev":"signin","account":"bob"}
///   (cluster: {"seq":8,"ev":"signin","account":"bob","device":"6f0c…e2.3","node":"n1","max":8})
///   ("seen" of a cluster device: ...,"general":42,"device":"6f0c…e2.3"})
/// {"seq":9,"ev":"token","account":"bob","hash":"<43 base64url>","issued":1700000000,"expires":1702592000}
/// {"seq":10,"ev":"revoke","account":"bob","hash":"<43 base64url>"|"","all":false}
/// {"seq":11,"ev":"rehash","account":"bob","was":"pbkdf2-sha256-prehash$1000$...","hash":"...$600000$..."}
/// {"seq":12,"ev":"read","account":"bob","room":"#Den","id":7}   (or "with":"Alice")
/// {"seq":13,"ev":"invitation","account":"bob","from":"Alice","room":"#Den"}
/// {"seq":14,"ev":"invitations","account":"bob","count":1}
/// {"seq":15,"ev":"contact","account":"bob","contact":"Alice"}
/// {"seq":16,"ev":"uncontact","account":"bob","contact":"Alice"}
/// {"seq":17,"ev":"edit","id":7,"by":"Alice","message":"hi!","time":1700000100}
/// {"seq":18,"ev":"delete","id":7,"by":"Alice","admin":false}
/// {"seq":19,"ev":"schedule","account":"Alice","to":"#Den","message":"hi","at":1700003600,"origin":"n1"}
/// {"seq":20,"ev":"unschedule","scheduled":3,"account":"Alice"}
/// {"seq":21,"ev":"due","scheduled":3,"time":1700003600,"queued":false}
/// {"seq":22,"ev":"notices","account":"Alice","count":1}
/// {"seq":23,"ev":"report","account":"bob","by":"Alice","reason":"spam","time":T,"threshold":3,"window":86400,"mute":14400}
/// {"seq":24,"ev":"roomban","room":"#Den","account":"bob","by":"Alice","action":"kick"|"ban"|"unban"}
/// {"seq":25,"ev":"ban","account":"bob","by":"root","reason":"spam","banned":true}
/// {"seq":26,"ev":"gone","node":"n1","instance":"6f0c…e2"}
/// ```
/// Every field is required; unknown fields and kinds are refused (a writer that knew more). The
/// one exception: the device fields of `signin` (`device`, `node`, `max`) and `seen` (`device`)
/// are written together or not at all, only by a cluster node (journals and events written
/// without them read as before).

#include "jim/codec.hpp"

#include <cstdint>
#include <stdexcept>
#include <string>
#include <string_view>
#include <variant>

namespace jim::server::store {

/// An account was registered (`name` as registered, the password's salted hash).
struct account_registered {
  std::string name;
  std::string password_hash;
};
/// A room was created: `room` is "#Name" as created, `owner` the account's name.
struct room_created {
  std::string room;
  std::string owner;
  std::string password_hash;
};
/// `account` became a member of `room` (joined with its password, or was invited).
struct member_added {
  std::string room;
  std::string account;
};
/// A message was posted; `m.id` is ignored by apply, which assigns the next id (the log's order
/// decides it: written 0 by the proposer since issue 13, older journals hold the id), `m.time` the
/// proposer's clock. A private message with `queued` is also queued for its offline recipient.
struct message_posted {
  proto::chat_message m;
  bool queued = false;
};
/// A private message already posted is queued for its recipient after all (its push was
/// refused: the connection was ending).
struct message_queued {
  proto::chat_message m;
};
/// The queued private messages of `account` with ids up to `upto` were handed to a sign-in.
struct queue_delivered {
  std::string account;
  std::uint64_t upto = 0;
};
/// `account`'s last connection ended having seen #general up to its counter `general`.
/// Cluster: `device` is the connection's id (see signed_in), taken off the account's
/// cluster-wide device list; empty (not written) on a single node.
struct general_seen {
  std::string account;
  std::uint64_t general = 0;
  std::string device{};
};

/// A connection of `account` signed in (each is ended by a general_seen). After a crash, an
/// account still signed in is taken to have seen #general up to the crash. A single node
/// writes it (and the general_seen that ends it) only when it matters for that: at the sign-in
/// when the account had not seen all of #general, else just before the next post to #general
/// while the connection lasts (hub::attach).
///
/// Cluster (issue 13, --max-sessions across nodes): `device` names the connection
/// cluster-wide, `"<instance>.<n>"` (the proposing process's 16 hex digits of
/// nats_stream::instance(), then a counter of that process), `node` the node it is on, `max` the
/// proposer's --max-sessions. apply() appends the device to the account's device list (in
/// stream order, the same on every node) and, beyond `max` devices, takes the oldest off it
/// (apply_result::evicted): the node where such a device lives closes it with a notice. A
/// device already listed changes nothing (a retried announcement). On a single node `device`
/// is empty and none of the three is written.
struct signed_in {
  std::string account;
  std::string device{};
  std::string node{};
  std::uint64_t max = 0;
};

/// Cluster: the process `instance` (16 hex digits) of node `node` is gone (it died, or it was
/// restarted as another instance): every device it had on any account's device list is taken
/// off. Proposed by the node itself at start for its own earlier instances, and by any node
/// that has heard no presence heartbeat of that instance for the presence TTL. Idempotent: a
/// second one (several nodes saw it go) changes nothing.
struct node_gone {
  std::string node;
  std::string instance;
};

/// A resume token was issued to `account` at a password sign-in. `hash` is the token's digest
/// (kdf.hpp token_digest; the token itself is never stored); `issued` and `expires` are unix
/// seconds decided by the proposer (its clock, its --token-ttl). Applying it first forgets the
/// account's tokens expired at `issued`, then, at the limit, the oldest.
struct token_issued {
  std::string account;
  std::string hash;
  std::int64_t issued = 0;
  std::int64_t expires = 0;
};
/// Resume tokens of `account` were revoked (logout): the one whose digest is `hash`, or every
/// one when `all` (then `hash` is empty).
struct tokens_revoked {
  std::string account;
  std::string hash;
  bool all = false;
};
/// `account`'s password hash `was` was made again (more iterations) as `hash` at a sign-in.
/// Refused (409) when the stored hash is no longer `was`.
struct password_rehashed {
  std::string account;
  std::string was;
  std::string hash;
};
/// `account` has read up to message `id` in `room` ("#Name") or, when `room` is empty, in the
/// private conversation `with` (an account name). A marker never moves backwards: applying a
/// smaller id changes nothing.
struct read_marked {
  std::string account;
  std::string room;  ///< "#Name", or empty for a private conversation
  std::string with;  ///< the other account, when `room` is empty
  std::uint64_t id = 0;
};

/// An invitation of `account` (offline when invited) to `room` ("#Name") by `from`, kept until
/// it is pushed at the next sign-in. One per room: a second one to the same room is dropped.
struct invitation_queued {
  std::string account;
  std::string from;
  std::string room;
};

/// The first `count` pending invitations of `account` were pushed to a sign-in.
struct invitations_delivered {
  std::string account;
  std::uint64_t count = 0;
};

/// `account` added `contact` (an account name) to its contact list (the JIM course's
/// `add_contact`). Refused: either account unknown (404), the account itself (400); a contact
/// already in the list stays where it is.
struct contact_added {
  std::string account;
  std::string contact;
};

/// `account` removed `contact` from its contact list (`del_contact`). Refused (404) when it is
/// not in the list.
struct contact_removed {
  std::string account;
  std::string contact;
};

// --- edits, schedules, moderation (contract: "Edits, schedules, moderation, contacts") -----

/// `by` (the author: apply checks it) replaced the text of message `id` at `time`.
struct message_edited {
  std::uint64_t id = 0;
  std::string by;
  std::string message;
  std::int64_t time = 0;
};
/// `by` deleted message `id`: its author, the owner of its room, or (`admin`, decided by the
/// proposer from its --admin) a server admin.
struct message_deleted {
  std::uint64_t id = 0;
  std::string by;
  bool admin = false;
};
/// `account` scheduled `message` to `to` ("#Room" or an account, resolved by the proposer) for
/// unix time `at`. apply() gives it the next schedule id. `origin`: the node that accepted it
/// (empty on a single node), the one that posts it in cluster mode.
struct message_scheduled {
  std::string account;
  std::string to;
  std::string message;
  std::int64_t at = 0;
  std::string origin;
};
/// `account` cancelled its scheduled message `scheduled` (404 when not pending or not its).
struct schedule_cancelled {
  std::uint64_t scheduled = 0;
  std::string account;
};
/// Scheduled message `scheduled` fell due and is posted at `time` (a message_posted of its
/// own, `queued` as for one), or dropped with a notice for its author when the author may no
/// longer post there. Refused (409) when it is no longer pending: a duplicate changes nothing.
struct schedule_due {
  std::uint64_t scheduled = 0;
  std::int64_t time = 0;
  bool queued = false;
};
/// The first `count` pending notices of `account` were pushed to it.
struct notices_delivered {
  std::string account;
  std::uint64_t count = 0;
};
/// `by` reported `account` at `time`. The proposer's --report-threshold, --report-window and
/// --mute-duration (seconds) travel with it so that applying it reads no configuration:
/// `threshold` distinct reporters within `window` mute `account` until `time + mute`.
struct user_reported {
  std::string account;
  std::string by;
  std::string reason;
  std::int64_t time = 0;
  std::uint64_t threshold = 3;
  std::int64_t window = 86400;
  std::int64_t mute = 14400;
};
/// The owner `by` of `room` kicked, banned or unbanned `account` (`action`: "kick", "ban",
/// "unban"). A kick changes no persistent state; it is an event so that every cluster node
/// moves the account's connections.
struct room_moderated {
  std::string room;
  std::string account;
  std::string by;
  std::string action;
};
/// The server admin `by` banned (with `reason`) or unbanned `account` server-wide.
struct account_banned {
  std::string account;
  std::string by;
  std::string reason;
  bool banned = false;
};

using event = std::variant<account_registered, room_created, member_added, message_posted,
                           message_queued, queue_delivered, general_seen, signed_in, token_issued,
                           tokens_revoked, password_rehashed, read_marked, invitation_queued,
                           invitations_delivered, contact_added, contact_removed,
                           message_edited, message_deleted, message_scheduled, schedule_cancelled,
                           schedule_due, notices_delivered, user_reported, room_moderated,
                           account_banned, node_gone>;

/// The payload of the journal record for `e` at position `seq` (compact JSON, no newline).
std::string encode(event const& e, std::uint64_t seq);

/// A payload that is not a well-formed event (bad JSON, unknown kind, missing field).
struct bad_event : std::runtime_error {
  using std::runtime_error::runtime_error;
};

struct decoded {
  std::uint64_t seq = 0;
  event e;
};
/// Parses a payload written by encode(). Throws bad_event saying what is wrong.
decoded decode(std::string_view payload);

}  // namespace jim::server::store
