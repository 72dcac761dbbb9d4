#pragma once
/// \file
/// The chat hub: the one owner of shared state (accounts, rooms, membership, history, queued
/// private messages) and of the chat rules. It is synchronous and knows no sockets: sessions
/// call it on the I/O thread and get back an `outcome` to encode; CPU-heavy steps (password
/// hashing) happen in the session before the call.
///
/// Persistent state changes only through apply(store::event), which is deterministic: the same
/// events applied in the same order give the same state (live, at start-up replaying the
/// journal, and on the snapshot replica, which is a second hub nobody is signed in to). A
/// change goes check_X (validate against the current state, decide time/id/queueing) ->
/// event -> commit() (journal, durable) -> apply() -> the live part (X-ed: moves, pushes,
/// reply). The synchronous wrappers (register_account, post, create_room, join, invite,
/// sign_in) do check + apply + live part at once: for tests and tools without a journal.
///
/// @par Thread Safety
/// Not thread-safe: every call must be made on the hub's executor (the single I/O thread).

#include "cluster/session_limit.hpp"
#include "jim/codec.hpp"
#include "store/durability.hpp"

#include <boost/json/object.hpp>

#include <algorithm>
#include <array>
#include <chrono>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <ranges>
#include <set>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <unordered_set>
#include <utility>
#include <variant>
#include <vector>

namespace jim::server {

using proto::shared_frame;
using steady = std::chrono::steady_clock;

/// What the hub needs from a connection. Implementations never call back into the hub from
/// these functions (a broadcast may be iterating over a room).
class peer {
 public:
  /// Queues a push caused by someone else. Returns false when the push was not queued
  /// (the connection is closing, or its outbox is full and it is being dropped).
  virtual bool push(shared_frame const& frame) = 0;
  /// The account signed in elsewhere: queue `notice`, then close.
  virtual void replaced(shared_frame const& notice) = 0;

 protected:
  ~peer() = default;
};

namespace cluster {
class presence;
}

struct hub_limits {
  std::size_t history_on_join = 20;
  std::size_t history_limit = 1000;
  std::chrono::seconds message_ttl{0};
  double rate_limit = 10;  ///< tokens per second; 0: unlimited
  double rate_burst = 20;
  std::size_t max_queued = 10000;  ///< private messages waiting for one offline account
  /// Connections (devices) of one account at once; a sign-in beyond it takes over the oldest
  /// (--max-sessions; 1: every sign-in takes over the live connection).
  std::size_t max_sessions = 8;
  // Edits, schedules, moderation: read by the checks of the proposing node only (an event
  // carries what apply() needs).
  std::size_t max_scheduled = 100;  ///< pending scheduled messages per account
  std::uint64_t report_threshold = 3;              ///< --report-threshold
  std::chrono::seconds report_window{24 * 3600};   ///< --report-window
  std::chrono::seconds mute_duration{4 * 3600};    ///< --mute-duration
  std::vector<std::string> admins{};               ///< --admin, folded names
};

/// The reply to encode (code, text, extra fields) and the pushes that follow it.
struct outcome {
  proto::code status = proto::code::ok;
  std::string text;
  boost::json::object fields;
  std::vector<shared_frame> then;
};

struct room;
struct account;

/// One live connection of a signed-in account (contract: "Devices"): its own current room.
/// Owned by its account (account::devices); gone at sign-out.
struct device {
  peer* p = nullptr;
  account* acc = nullptr;
  room* current = nullptr;
  std::size_t slot = 0;  ///< index in current->present
  /// Cluster: the signed_in event of this connection has been applied (with --max-sessions 1,
  /// a signed_in of another node applied after it takes the connection over; one applied
  /// before does not). Only for a signed_in without a device id (from an older node).
  bool in_log = false;
  /// Cluster: this connection's id on its account's cluster-wide device list
  /// (`"<instance>.<n>"`, store::signed_in::device); empty on a single node.
  std::string id;
  static constexpr std::size_t npos = static_cast<std::size_t>(-1);
  /// Single node with a journal: this connection's signed_in is not written yet (it may never
  /// need to be: see hub::attach): its index in the hub's list of such connections, else npos.
  std::size_t unlogged = npos;
};

/// One entry of an account's cluster-wide device list (store::signed_in): a connection of the
/// account on some node, by its id `"<instance>.<n>"`. Persistent (snapshot), the same on
/// every node.
struct cluster_device {
  std::string id;    ///< "<instance>.<n>"
  std::string node;  ///< the node it is on
  /// The process instance part of `id` (16 hex digits).
  std::string_view instance() const { return std::string_view(id).substr(0, id.find('.')); }
};

/// A resume token as stored: the digest of the token (kdf.hpp token_digest), never the token,
/// and when it was issued and expires (unix seconds).
struct resume_token {
  std::string hash;
  std::int64_t issued = 0;
  std::int64_t expires = 0;
};

/// An invitation kept for an account that was offline when invited (pushed at sign-in).
struct pending_invitation {
  std::string from;  ///< the inviter's name as registered
  std::string room;  ///< "#Name" as created
};

/// A report against an account (moderation), by a reporter's folded name at unix `time`.
struct report_entry {
  std::string by;
  std::int64_t time = 0;
};

/// A message scheduled to be posted at `at` (unix seconds); persistent.
struct scheduled_message {
  std::uint64_t id = 0;   ///< the schedule id S
  std::string account;    ///< the author, as registered
  std::string to;         ///< "#Room" as created, or an account as registered
  std::string message;
  std::int64_t at = 0;
  std::string origin;     ///< the node that accepted it (empty: a single node)
};

struct account {
  std::string name;  ///< as registered
  std::string password_hash;
  std::uint64_t general_seen = 0;  ///< #general's counter when the last connection ended
  std::uint32_t connections = 0;   ///< signed_in events not yet ended by a general_seen
  std::vector<proto::chat_message>
      queued;  ///< private messages waiting for sign-in (a vector: no memory while empty)
  /// Live resume tokens, oldest first; at most hub::max_resume_tokens.
  std::vector<resume_token> resume_tokens;
  std::string status = "online";
  // Unread counts and invitations (contract: "Watching, unread and presence"); persistent.
  std::uint64_t general_since = 0;  ///< the last message id when registered (#general's "since")
  /// Read markers: "#den" (folded bare room name after '#') or "bob" (folded account: the
  /// private conversation) -> the id read up to. Never decreases.
  std::map<std::string, std::uint64_t> read;
  std::vector<pending_invitation> invitations;  ///< for the next sign-in, oldest first
  /// The contact list (`add_contact`): names as registered, in the order added; persistent.
  std::vector<std::string> contacts;
  // Moderation and schedules (contract: "Edits, schedules, moderation, contacts"); persistent.
  std::int64_t muted_until = 0;        ///< unix seconds; a `msg` before it is 403
  std::vector<report_entry> reports;   ///< one per reporter, within the window
  std::optional<std::string> banned;   ///< server-wide ban: its reason
  std::vector<std::string> notices;    ///< texts for the next sign-in (dropped schedules)
  /// Cluster (issue 13): the account's connections on every node, oldest sign-in (in stream
  /// order) first; at most the --max-sessions of the last signed_in that added one. Kept by
  /// signed_in, general_seen and node_gone; empty on a single node.
  std::vector<cluster_device> cluster_devices;
  double tokens = 0;
  steady::time_point refilled{};
  // Failed sign-ins (wrong password or token), for the throttle: live, not persisted.
  std::array<steady::time_point, 3> failed_at{};  ///< the last three, a ring; {} = none
  std::uint8_t failed_next = 0;                   ///< the oldest slot of failed_at
  std::uint32_t checking = 0;  ///< password checks under way (hashing), counted as failures
  // Live state, reset at sign-out.
  /// The live connections (devices), oldest sign-in first; at most hub_limits::max_sessions.
  std::vector<std::unique_ptr<device>> devices;
  /// The highest queued message id pushed to the live connections whose queue_delivered is
  /// still being stored (so that it is not pushed twice).
  std::uint64_t flushed = 0;
  /// How many of the first `notices` were pushed already and are being taken off by a
  /// notices_delivered still being stored (so that they are not pushed twice).
  std::size_t notices_pushed = 0;
  bool online() const { return !devices.empty(); }
};

struct room {
  std::string name;   ///< "#name" as created
  std::string owner;  ///< folded account key; empty for #general
  std::string password_hash;
  std::unordered_set<std::string> members;  ///< folded account keys
  std::deque<proto::chat_message> history;
  /// The `"history":true` frames of the last history-on-join messages, encoded once (at the
  /// first sign-in or join that needs them) and shared by every sign-in and join.
  mutable std::deque<shared_frame> recent_frames;
  mutable std::uint64_t recent_upto = 0;  ///< id of the newest message in recent_frames
  std::uint64_t posted = 0;               ///< messages ever posted here
  std::vector<device*> present;           ///< connections whose current room this is
  /// Member key -> the last message id when it became a member (its unread count starts
  /// after it). Persistent; #general uses account::general_since instead.
  std::unordered_map<std::string, std::uint64_t> since;
  /// Live: connections watching this room (`watch`), in no order.
  struct watcher {
    peer* p = nullptr;
    device* dev = nullptr;
  };
  std::vector<watcher> watchers;
  std::unordered_set<std::string> banned;  ///< folded account keys banned by the owner
};

/// What apply() did: `status` ok, or the code that refused the event (409 name taken, 404
/// unknown room/account; 500 an integrity violation such as a message id out of order, which
/// replay treats as damage). A refused event changes nothing.
struct apply_result {
  proto::code status = proto::code::ok;
  std::string error;
  account* acc = nullptr;  ///< the account registered / added / seen
  room* rm = nullptr;      ///< the room created / joined
  std::vector<proto::chat_message> delivered;  ///< queue_delivered: the messages taken off
  /// message_posted: the message as stored, with the id apply() assigned.
  std::optional<store::message_posted> message;
  /// message_edited / message_deleted: the message as it is now (and where: `rm`, or the
  /// private conversation between `message_from` and `message_to`).
  std::optional<proto::chat_message> changed;
  std::uint64_t scheduled = 0;  ///< message_scheduled: the schedule id assigned
  std::string notice;           ///< schedule_due dropped: the notice queued for `acc`
  std::int64_t muted_until = 0; ///< user_reported: the mute it imposed (0: none)
  /// signed_in with a device: the device ids it took off the account's cluster-wide list
  /// (beyond its `max`), oldest first; the node where one lives closes it.
  std::vector<std::string> evicted;
  bool ok() const { return status == proto::code::ok; }
};

/// The `outcome` of a refused request: status `c` and its error text (no fields, no pushes).
inline outcome fail(proto::code c, std::string text) {
  return outcome{c, std::move(text), {}, {}};
}

/// What apply() returns for an event it refuses (nothing changed): status `c`, error `text`.
inline apply_result refuse(proto::code c, std::string text) {
  apply_result r;
  r.status = c;
  r.error = std::move(text);
  return r;
}

/// Key of a private conversation: the two folded names, ordered.
using conversation_key = std::pair<std::string, std::string>;

class hub {
 public:
  explicit hub(hub_limits lim);
  hub(hub const&) = delete;
  hub& operator=(hub const&) = delete;

  /// Where commit() sends events; nullptr (the default): commit() applies at once.
  void set_log(store::event_log* log) { log_ = log; }
  /// Cluster mode: who is signed in on the other nodes (shown by users and rooms, counted as
  /// online for private messages), told of local sign-ins, sign-outs and room changes.
  /// nullptr (the default): a single node.
  void set_presence(cluster::presence* p) { presence_ = p; }
  /// True on a cluster node (set_presence was given one).
  bool clustered() const { return presence_ != nullptr; }
  /// Cluster: this process's instance (nats_stream::instance(), 16 hex digits): with a local
  /// counter it names this node's connections on the cluster-wide device lists. Set with
  /// set_presence; empty (the default): connections get no id, signed_in carries none.
  void set_instance(std::string instance) { instance_ = std::move(instance); }

  /// Cluster, every presence heartbeat (2 s) on the I/O thread: keeps the cluster-wide device
  /// lists honest. Proposes again the signed_in / general_seen of this node's connections that
  /// could not be stored (NATS unreachable), and a node_gone for every process instance with
  /// devices on the lists that is gone: an earlier instance of this node, or one whose presence
  /// heartbeats stopped for the presence TTL (presence::alive). At most one node_gone per
  /// instance in flight.
  void sweep_devices();
  /// Restoring from a snapshot: `a`'s cluster-wide device list.
  void restore_devices(account& a, std::vector<cluster_device> list);
  /// Devices on the cluster-wide lists, by (node, process instance): how many.
  std::map<std::pair<std::string, std::string>, std::size_t> const& device_instances() const {
    return device_instances_;
  }

  /// The only code that changes persistent state. Deterministic; validates again (an account
  /// or room name taken by an earlier event is 409, an unknown account or room 404, a message
  /// to a room or account that does not exist 500). A message gets the next id here (the last
  /// applied + 1, whatever the proposer put in the event): ids follow the log's order, the same
  /// on every replica and every cluster node. Logs nothing and pushes nothing.
  apply_result apply(store::event const& e);

  /// Cluster mode: an event another node proposed (or one of this node's whose publish was
  /// reported failed but that was stored after all), in stream order. Applies it, then does
  /// what it means for this node's connections: a room message is pushed to the members
  /// present here; a private message queued for an account connected here is pushed and
  /// taken off the queue (queue_delivered); an invitation is pushed to a guest connected here
  /// (from the room's owner: only the owner invites); a sign-in of an account connected here
  /// whose own sign-in came earlier in the stream takes that connection over (notice, close).
  void remote(store::event const& e);
  /// Cluster mode: `user`, signed in on another node, left room `from` and entered `to` ("#name";
  /// empty: not signed in). Pushes the `leave`/`join` events to this node's connections in
  /// those rooms (never for #general), as for a local move. Ignored for an account connected
  /// here (its local moves are told already).
  void remote_moved(std::string const& user, std::string const& from, std::string const& to);

  /// Appends `e` to the log; once durable, applies it and calls `then` with the result, or
  /// with nullptr when it could not be stored (nothing applied). `then` runs on the I/O thread
  /// in log order (at once without a log); it may be empty.
  void commit(store::event e, std::function<void(apply_result const*)> then);

  account* find_account(std::string_view name);
  room* find_room(std::string_view bare_name);

  /// Resume tokens kept per account: a token_issued beyond it forgets the oldest.
  static constexpr std::size_t max_resume_tokens = 16;
  /// The token of `a` whose digest is `hash` (kdf.hpp token_digest), if it is still valid at
  /// unix time `now`; nullptr otherwise. Constant-time comparison of the digests.
  resume_token const* find_token(account const& a, std::string_view hash, std::int64_t now) const;

  /// The failed sign-in throttle (live state, per account; idea and figures from ergo's
  /// login throttle): at most `max_failed_sign_ins` failed sign-ins per `failed_sign_in_window`.
  /// A password check under way counts as a failure until it ends, so that concurrent guesses
  /// cannot overtake the limit.
  static constexpr std::size_t max_failed_sign_ins = 3;
  static constexpr std::chrono::seconds failed_sign_in_window{60};
  /// Seconds (> 0) until a password sign-in to `a` may be tried, or nullopt when it may now.
  std::optional<double> sign_in_throttled(account const& a, steady::time_point now) const;
  /// A password check of `a` starts / ends (pair them; see sign_in_throttled).
  void password_check_started(account& a) { ++a.checking; }
  void password_check_ended(account& a) {
    if (a.checking > 0) --a.checking;
  }
  /// A sign-in to `a` failed (wrong password or token) at `now`.
  void sign_in_failed(account& a, steady::time_point now);
  bool is_member(account const& a, room const& r) const;

  /// Creates an account with an already-hashed password; nullptr if the name is taken.
  /// Synchronous (check + apply): for tests and tools without a log.
  account* register_account(std::string_view name, std::string password_hash);

  struct sign_in_result {
    outcome reply;             ///< 200/201 with room and missed, then history and queued pushes
    peer* replaced = nullptr;  ///< the connection that was taken over, if any
    device* dev = nullptr;     ///< the new connection's device (owned by the account)
  };
  /// Attaches `p` to `a` in #general as a new device. With --max-sessions devices already
  /// live, the oldest is detached and told why (take_over).
  /// Synchronous: queued private messages are delivered (queue_delivered applied at once).
  sign_in_result sign_in(peer& p, account& a, proto::code status);
  /// The live part of a sign-in: `delivered` (the messages a queue_delivered took off the
  /// queue, oldest first) follow the history pushes. With a journal, commits the connection's
  /// signed_in; on a single node, when the account has seen all of #general and no post to it
  /// is being stored, not yet: it is written before the next event that posts to #general
  /// while the connection lasts, else never (nor its general_seen: the pair would change
  /// nothing a replay computes). Cluster: always (its device list needs it).
  sign_in_result attach(peer& p, account& a, proto::code status,
                        std::vector<proto::chat_message> const& delivered);
  /// Takes `a`'s oldest live connection (or `which`, one of its devices) away (signs it out,
  /// tells it why with a `notice`); returns it, or nullptr when `a` has none.
  peer* take_over(account& a, device* which = nullptr);
  /// Whether a new sign-in of `a` must first take over its oldest connection (it has
  /// --max-sessions connections already).
  bool at_session_limit(account const& a) const {
    return a.devices.size() >= std::max<std::size_t>(1, lim_.max_sessions);
  }
  /// Detaches `p` from `a`; a no-op if `p` is no longer one of `a`'s connections. Commits the
  /// general_seen event (each connection's signed_in is ended by one; `missed` counts from the
  /// last), without waiting for it; nothing when the connection's signed_in was never written
  /// (see attach).
  void sign_out(peer& p, account& a);
  /// The device of `a` that connection `p` is, or nullptr.
  device* find_device(account const& a, peer const& p) const;

  /// A refusal to send as it is, or the event to commit.
  template <class Event>
  using checked = std::variant<outcome, Event>;

  /// Validates a message (room, recipient, queue bound, rate limit: spends a token) and
  /// builds its event: id 0 (apply() assigns it), the time now, queued if the recipient is
  /// not connected to this node (in cluster mode the node it is signed in on, if any, pushes
  /// it when it applies the event and takes it off the queue).
  checked<store::message_posted> check_post(device& from, proto::msg_req const& req,
                                            steady::time_point now);
  /// The live part of an applied message (`ev` as apply() returned it, with its id): pushes
  /// and the reply. `from` (the sending connection, if on this node) gets no push; the
  /// sender's other connections get a private message, and a room message if they are in or
  /// watching the room. If a private push is refused (the recipient's connection is ending)
  /// `queue` is set: commit it, then reply 202. A message queued for an account signed in on
  /// another node is answered 200 (`delivered` 0: that node pushes it).
  outcome posted(device* from, store::message_posted const& ev,
                 std::optional<store::message_queued>& queue);
  /// A checked message could not be stored: its token is refunded.
  void abandon_post(account& from);
  /// Synchronous (check + apply + live part) from `from`'s newest connection (401 without).
  outcome post(account& from, proto::msg_req const& req, steady::time_point now);

  /// 409 if the room exists or is #general, else nullopt.
  std::optional<outcome> check_create(std::string_view bare_name);
  /// The live part of an applied room_created: the creating connection (if still signed in)
  /// moves in.
  outcome created(device* owner, room& r, std::string const& password);
  outcome create_room(account& owner, std::string_view bare_name, std::string password_hash,
                      std::string const& password);

  /// Moves connection `d` into `r` (a member); the reply carries the room's recent history.
  outcome enter_room(device& d, room& r);
  /// Joins a room from `a`'s newest connection (synchronous); `password_ok` says whether the
  /// caller verified a password for it.
  outcome join(account& a, std::string_view bare_name, bool password_ok);
  /// Moves connection `d` back to #general.
  outcome leave(device& d);
  /// Validates an invitation (owner only; the room defaults to `d`'s current room) and builds
  /// its member_added event.
  checked<store::member_added> check_invite(device& d, proto::invite_req const& req);
  /// The live part of an applied invitation: the guest's push and the reply.
  outcome invited(account& a, store::member_added const& ev);
  outcome invite(account& a, proto::invite_req const& req);
  /// The live part of an applied invitation, and whether it was pushed: if the guest is offline
  /// (or its push is refused) `queue` is set: commit it, then reply (with `"online":false`).
  outcome invited(account& a, store::member_added const& ev,
                  std::optional<store::invitation_queued>& queue);
  /// `history` from connection `d` (the room defaults to its current room).
  outcome history(device& d, proto::history_req const& req);
  /// `users` from connection `d` (the room defaults to its current room): each account in
  /// the room once, however many of its connections are there.
  outcome users(device& d, proto::users_req const& req);
  outcome rooms(account& a);

  // --- watching, unread and presence (contract: "Watching, unread and presence") ----------

  /// The live connections of `a`, oldest sign-in first (a view over account::devices).
  static auto connections(account const& a) {
    return a.devices | std::views::transform([](auto const& d) { return d->p; });
  }
  /// `watch`/`unwatch` for connection `p` of `a`: 200 with `"rooms"` (what `p` now watches,
  /// sorted); 404 for an unknown room, 403 for a room `a` is not a member of (nothing is
  /// changed by a request that fails). `"all"` also watches every room `a` joins later.
  outcome watch(peer& p, account& a, proto::watch_req const& req);
  /// `a` is no longer a member of `r`: none of its connections watches it any more.
  void unwatch_room(account& a, room& r);
  /// Validates a `read` (404 unknown room or account, 403 not a member) and builds its event.
  checked<store::read_marked> check_read(account& a, proto::read_req const& req);
  /// The live part of an applied read marker: 200 with the marker, and if it moved (it was
  /// `before`) the `read` push to `a`'s connections other than `by`.
  outcome marked(peer const* by, account& a, store::read_marked const& ev, std::uint64_t before);
  /// The read marker of `a` for the room or conversation `ev` names (0 before any `read`).
  std::uint64_t last_read(account const& a, store::read_marked const& ev) const;
  /// `conversations`: 200 with `a`'s private conversations, newest last message first.
  outcome conversations(account& a);
  /// `users` with `"room":"*"`: every signed-in account once, by name.
  outcome everyone();
  /// `presence` with a status after sign-in from connection `p` (1-64 characters: checked by
  /// proto::decode); a change is pushed (`event` `status`) to every other connection in or
  /// watching a room where one of `a`'s connections is.
  outcome set_status(peer& p, account& a, std::string const& status);
  /// How #general's coalesced online counts are timed: `arm(delay)` must call flush_counts()
  /// after `delay` (the server's timer). Without it counts are pushed at once.
  void set_count_timer(std::function<void(steady::duration)> arm) { arm_count_ = std::move(arm); }
  /// Pushes #general's online count to its watchers if it changed since the last push.
  void flush_counts();
  /// Messages in `r` that `a` has not read: ids above its marker posted by others after it
  /// became a member, among those kept in the history.
  std::uint64_t unread(account const& a, room const& r) const;

  // --- contacts (the JIM course's contact list; contacts.cpp) -------------------------------

  /// `get_contacts`: 202 with `"quantity":N`, then N `contact_list` pushes in the order added.
  outcome contacts(account& a) const;
  /// Validates `add_contact`/`del_contact` (404 unknown account; adding oneself 400; removing
  /// one that is not a contact 404) and builds its event (contact_added / contact_removed).
  /// Adding a contact already listed needs no event: the outcome is its 200 then.
  checked<store::event> check_contact(account& a, proto::contact_req const& req);
  /// The reply to an applied contact_added / contact_removed: 200 with `"user_id"`.
  outcome contact_changed(store::event const& ev) const;
  // --- edits, schedules, moderation (contract: "Edits, schedules, moderation, contacts") ---
  // In moderation.cpp and schedule.cpp.

  /// `edit`: 404 unknown (or deleted) id, 403 not the author, 403 with `until` (unix seconds)
  /// while the author is muted (as for `msg`); else the event.
  checked<store::message_edited> check_edit(account& a, proto::edit_req const& req);
  /// The 403 with `until` of a muted account's `msg`, `msg` with `at` and `edit`; nullopt when
  /// `a` is not muted at `now` (unix seconds).
  std::optional<outcome> muted(account const& a, std::int64_t now) const;
  /// `delete`: 404 unknown (or deleted) id, 403 unless the author, the room's owner or an admin.
  checked<store::message_deleted> check_delete(account& a, proto::delete_req const& req);
  /// The live part of an applied edit or delete (`r.changed`): the `event` push to everyone
  /// online who may read the message and to `actor`'s connections, except `by` (the acting
  /// connection, nullptr for another node's). Returns the 200.
  outcome changed(peer const* by, account* actor, apply_result const& r, bool deleted);
  /// Whether `a` is a server admin (--admin).
  bool is_admin(account const& a) const;
  /// `report`: 404 unknown, 400 yourself; else the event (with this node's thresholds).
  checked<store::user_reported> check_report(account& a, proto::report_req const& req);
  /// `kick`/`ban`/`unban` with a room: 404 unknown room or account, 403 not its owner, 400
  /// yourself.
  checked<store::room_moderated> check_room_moderation(account& a, proto::moderate_req const& req);
  /// The live part of an applied room_moderated: kick and ban move the account's connections
  /// in the room to #general, each with a notice; ban also ends their watches of it.
  outcome room_moderated(store::room_moderated const& ev);
  /// `ban`/`unban` without a room: 403 not an admin, 404 unknown, 400 yourself.
  checked<store::account_banned> check_account_ban(account& a, proto::moderate_req const& req);
  /// The live part of an applied account_banned: a banned account's connections get a
  /// notice and are closed (signed out first).
  outcome account_banned(store::account_banned const& ev);

  /// `msg` with `at` (already in --schedule-max's window: proto::decode); the target
  /// resolved now (default the current room; a room must exist (404) and have `a` as a
  /// member (403)); 403 beyond max_scheduled pending.
  checked<store::message_scheduled> check_schedule(device& d, proto::msg_req const& req,
                                                   std::int64_t now);
  /// `scheduled`: 200 with the pending scheduled messages of `a`, by time.
  outcome scheduled_list(account& a);
  /// `cancel`: 404 when S is not a pending schedule of `a`, else the event.
  checked<store::schedule_cancelled> check_cancel(account& a, proto::cancel_req const& req);
  /// The pending scheduled messages, by id.
  std::map<std::uint64_t, scheduled_message> const& schedules() const { return schedules_; }
  std::uint64_t last_schedule() const { return last_schedule_; }
  /// The earliest time a scheduled message should be looked at (unix seconds), if any.
  std::optional<std::int64_t> next_due() const;
  /// Proposes (commits) a schedule_due for every pending schedule due at `now` that this node
  /// posts (cluster: the origin node, or any node once a minute overdue) and that is not being
  /// stored already; its live part follows when applied.
  void post_due(std::int64_t now);
  /// This node's name for schedules (cluster mode); empty: a single node, which posts all.
  void set_node(std::string node) { node_ = std::move(node); }
  /// Called (on the I/O thread) whenever the pending schedules changed: re-arm the timer.
  void set_schedule_hook(std::function<void()> hook) { schedule_hook_ = std::move(hook); }
  /// The live part of an applied schedule_due: the message's pushes (as for a message sent
  /// at that time, the author's connections included), or the notice to the author if it is
  /// connected here (then taken off by notices_delivered).
  void due_posted(apply_result const& r);
  /// The frames of `a`'s pending notices not yet pushed (each is pushed once: those whose
  /// notices_delivered is still being stored are left out), and commits their
  /// notices_delivered; empty if there are none.
  std::vector<shared_frame> take_notices(account& a);
  // Restoring from a snapshot.
  void restore_schedule(scheduled_message s) {
    auto id = s.id;
    schedules_[id] = std::move(s);
  }
  void restore_last_schedule(std::uint64_t s) { last_schedule_ = std::max(last_schedule_, s); }

  /// Drops messages older than the TTL (no-op without one) and resume tokens expired at
  /// `unix_now`. Returns how many messages were dropped.
  std::size_t prune(std::int64_t unix_now);

  /// After a crash (start-up, once the journal is replayed): an account whose connections
  /// never ended saw #general up to the crash.
  void recover_connections();

  // State access for the snapshot service.
  std::unordered_map<std::string, std::unique_ptr<account>> const& accounts() const {
    return accounts_;
  }
  std::unordered_map<std::string, std::unique_ptr<room>> const& all_rooms() const { return rooms_; }
  std::map<conversation_key, std::deque<proto::chat_message>> const& conversations() const {
    return conversations_;
  }
  std::uint64_t last_id() const { return last_id_; }
  hub_limits const& limits() const { return lim_; }
  room& general() { return *general_; }

  /// Restoring from a snapshot: raw insertion, no rules applied beyond the limits.
  account& restore_account(std::string name);
  room& restore_room(std::string name);
  std::deque<proto::chat_message>& restore_conversation(conversation_key key);
  void restore_last_id(std::uint64_t id) { last_id_ = std::max(last_id_, id); }

  std::size_t online_count() const { return online_; }
  /// Connections whose signed_in is not written (yet): see attach.
  std::size_t unlogged_sign_ins() const { return unlogged_.size(); }

 private:
  void enter(device& d, room& r);
  void exit_current(device& d);
  /// `a`'s newest connection, or nullptr (the synchronous wrappers act from it).
  static device* newest(account& a) { return a.devices.empty() ? nullptr : a.devices.back().get(); }
  void append(std::deque<proto::chat_message>& h, proto::chat_message const& m) const;
  apply_result apply_one(store::account_registered const& e);
  apply_result apply_one(store::room_created const& e);
  apply_result apply_one(store::member_added const& e);
  apply_result apply_one(store::message_posted const& e);
  apply_result apply_one(store::message_queued const& e);
  apply_result apply_one(store::queue_delivered const& e);
  apply_result apply_one(store::general_seen const& e);
  apply_result apply_one(store::signed_in const& e);
  apply_result apply_one(store::token_issued const& e);
  apply_result apply_one(store::tokens_revoked const& e);
  apply_result apply_one(store::password_rehashed const& e);
  apply_result apply_one(store::read_marked const& e);
  apply_result apply_one(store::invitation_queued const& e);
  apply_result apply_one(store::invitations_delivered const& e);
  apply_result apply_one(store::contact_added const& e);    // contacts.cpp
  apply_result apply_one(store::contact_removed const& e);  // contacts.cpp
  apply_result apply_one(store::message_edited const& e);
  apply_result apply_one(store::message_deleted const& e);
  apply_result apply_one(store::message_scheduled const& e);
  apply_result apply_one(store::schedule_cancelled const& e);
  apply_result apply_one(store::schedule_due const& e);
  apply_result apply_one(store::notices_delivered const& e);
  apply_result apply_one(store::user_reported const& e);
  apply_result apply_one(store::room_moderated const& e);
  apply_result apply_one(store::account_banned const& e);
  apply_result apply_one(store::node_gone const& e);
  /// Cluster: the devices an applied signed_in took off `a`'s list; those of this node's
  /// connections are taken over (notice, close).
  void devices_evicted(account& a, std::vector<std::string> const& ids);
  /// Cluster: an applied node_gone; if it names this process, its connections are on no list
  /// any more (another node took it for dead: NATS was unreachable for the presence TTL), so
  /// each is announced again (a signed_in at the end of its account's list).
  void node_gone_applied(store::node_gone const& e);
  /// Cluster: commits the signed_in of connection `d` (its id on the device list).
  void announce(device& d);
  /// Single node: commits the signed_in of connection `d` (no device id).
  void log_sign_in(device& d);
  /// Single node: commits the signed_in of every connection in unlogged_ (before an event that
  /// posts to #general), and empties it.
  void log_sign_ins();
  /// Takes `d` off unlogged_ (its sign-out: nothing of it is written).
  void forget_unlogged(device& d);
  /// Whether applying `e` may post to #general (a message to it, or any schedule_due).
  bool posts_to_general(store::event const& e);
  /// Cluster: if device `id` is this process's, no longer connected and still on `a`'s list
  /// (it signed out before its signed_in was applied), commits its general_seen again.
  void forget_if_gone(account& a, std::string const& id);
  /// Cluster: commits device `id`'s sign-out (general_seen with `seen`, the position `missed`
  /// counts from); if that cannot be stored, sweep_devices tries again (retry_out_, bounded).
  void propose_signed_out(account& a, std::uint64_t seen, std::string const& id);
  /// Cluster: takes `it` off `a`'s device list (and off device_instances_); the next entry.
  std::vector<cluster_device>::iterator drop_listed(account& a,
                                                    std::vector<cluster_device>::iterator it);
  /// A message kept in a room's history or a private conversation, by id (binary search in
  /// each: O(rooms + conversations) lookups, for the rare edit and delete); nullptr if none.
  /// `in` receives its room (nullptr for a private one).
  proto::chat_message* locate(std::uint64_t id, room** in);
  void schedules_changed();
  /// A connection's watches: the rooms (with its slot in room::watchers) and `"all"`.
  struct watch_set {
    device* dev = nullptr;
    bool all = false;
    std::unordered_map<room*, std::size_t> rooms;
  };
  void add_watch(peer& p, watch_set& w, room& r);
  void drop_watch(peer& p, watch_set& w, room& r);
  /// `a` became a member of `r`: its connections that watch "all" watch `r` too.
  void watch_new_member(account& a, room& r);
  void drop_watches(peer& p);
  /// Pushes `frame` to the watchers of `r` that are not in it, except `skip`; returns how many
  /// took it.
  std::uint64_t push_watchers(room const& r, shared_frame const& frame, peer const* skip);
  /// #general's population changed: schedule a coalesced count for its watchers.
  void general_changed();
  std::optional<double> retry_after(account& a, steady::time_point now) const;
  /// Pushes `a`'s queued messages not pushed yet to its live connection (it is signed in
  /// here) and commits their queue_delivered. Stops at a push that is refused.
  void flush_queue(account& a);
  /// Signed in on another node (cluster mode), by folded name.
  bool online_elsewhere(std::string const& folded_name) const;
  void touch_presence();
  std::vector<shared_frame> recent(room const& r) const;

  hub_limits lim_;
  std::unordered_map<std::string, std::unique_ptr<account>> accounts_;  ///< by folded name
  std::unordered_map<std::string, std::unique_ptr<room>> rooms_;        ///< by folded bare name
  std::map<conversation_key, std::deque<proto::chat_message>> conversations_;
  room* general_ = nullptr;
  std::uint64_t last_id_ = 0;  ///< the last message id applied
  std::size_t online_ = 0;
  store::event_log* log_ = nullptr;
  cluster::presence* presence_ = nullptr;
  std::unordered_map<peer const*, watch_set> watches_;  ///< live: by connection
  std::function<void(steady::duration)> arm_count_;
  bool count_pending_ = false;
  steady::time_point count_sent_{};
  std::uint64_t count_last_ = 0;  ///< the last count pushed
  std::map<std::uint64_t, scheduled_message> schedules_;  ///< pending, by schedule id
  std::uint64_t last_schedule_ = 0;                       ///< the last schedule id applied
  std::string node_;
  std::function<void()> schedule_hook_;
  std::unordered_set<std::uint64_t> due_in_flight_;  ///< live: schedule_due being stored
  // Cluster-wide device lists (issue 13).
  std::string instance_;           ///< this process (set_instance); empty: a single node
  std::uint64_t device_counter_ = 0;  ///< live: the last device id's counter of this process
  /// Persistent, derived from the accounts' cluster_devices: (node, instance) -> how many.
  std::map<std::pair<std::string, std::string>, std::size_t> device_instances_;
  /// Live: node_gone proposed and not yet stored or failed, by instance.
  std::set<std::string> gone_in_flight_;
  /// Live: the other nodes' differing --max-sessions already warned about.
  cluster::session_limit_check session_limits_;
  /// Live: this node's connections whose signed_in (`announce`) / general_seen could not be
  /// stored, (folded account, device id), proposed again by sweep_devices; bounded.
  std::vector<std::pair<std::string, std::string>> retry_in_, retry_out_;
  static constexpr std::size_t max_retries = 10000;
  std::int64_t due_retry_ = 0;  ///< live: after a schedule_due could not be stored
  // Sign-ins that write nothing (single node with a journal). A signed_in is there only so that
  // replay after a crash counts the account as connected when #general moved meanwhile
  // (recover_connections); a connection that signs in when its account has seen all of
  // #general, and out again before anything more is posted there, changes nothing a replay
  // computes, so neither its signed_in nor its general_seen is written. Its signed_in is
  // written just before the next event that posts to #general, if it is still connected then.
  /// Live: the connections whose signed_in is not written (device::unlogged is the index).
  std::vector<device*> unlogged_;
  /// Live: events that post to #general proposed and not yet stored or failed; while there are
  /// any, each sign-in writes its signed_in at once (it comes after them in the log).
  std::uint32_t general_posts_in_flight_ = 0;
};

conversation_key make_conversation_key(std::string_view a, std::string_view b);

}  // namespace jim::server
