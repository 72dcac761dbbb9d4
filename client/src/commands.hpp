#pragma once
/// \file
/// The sans-io heart of `jim`: what a typed line becomes on the wire, and what a received
/// frame becomes on the screen. No sockets, no terminal: everything here is unit-tested.

#include <boost/json/array.hpp>
#include <boost/json/object.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

namespace jim::client {

/// What a line of output is, so the console can colour it (or send it to stderr).
enum class tone {
  chat,     ///< a room message
  direct,   ///< a private message
  history,  ///< a message from the past (history push or `/history`)
  info,     ///< a reply worth telling: joined, created, the room list...
  event,    ///< someone joined or left, an invitation
  error,    ///< a failed request, a server notice, a lost connection
};

/// One line for a person, without its newline. A multi-line chat message is one out_line whose
/// text holds `\n` followed by its indented continuation rows.
struct out_line {
  tone kind = tone::info;
  std::string text;
  friend bool operator==(out_line const&, out_line const&) = default;
};

/// A typed line that becomes a request.
struct send_request {
  boost::json::object frame;  ///< carries "action"
};
/// A typed command that is unknown or has the wrong arguments: show `text` (an error line,
/// `! usage: ...`), send nothing.
struct usage_hint {
  std::string text;
  /// The line is worth editing rather than typing again (a control character in it): a
  /// terminal offers it again as the next line.
  bool edit_again = false;
};
/// `/help`: show help_text().
struct show_help {};
/// An empty line: nothing to do.
struct nothing {};

/// What one typed line means.
using input = std::variant<nothing, send_request, usage_hint, show_help>;

/// Parses a line typed by the user. A line not starting with `/` is a message to the current
/// room; `//text` sends the message `/text`; `/command args...` is a command (case-insensitive).
/// A line with a control character other than tab (C0, DEL, C1: e.g. ESC typed with Ctrl-V)
/// is refused whatever it is (control_problem()), with `edit_again`: jim sends no text that
/// could act on a terminal, although the server stores it (protocol/PROTOCOL.md).
/// `/quit` becomes the `quit` request. `now` (unix seconds) is what `/at TIME` counts from;
/// the one-argument form takes the clock's.
///
/// Local actions, resolved by chat_state::submit(): `me`, `query`, `switch`, `ids` (`/ids on|off`:
/// `{"action":"ids","on":true}`). `/kick`, `/ban` and `/unban` without ROOM leave `room` out
/// (submit() names the current room); with ROOM `*` (`/ban USER * [REASON]`) they carry
/// `"room":"*"`, which submit() removes: the server-wide form of an admin (contract: "Edits,
/// schedules, moderation, contacts").
input parse_input(std::string_view line, std::int64_t now);
input parse_input(std::string_view line);

/// TIME of `/at TIME TEXT`, in unix seconds: `HH:MM` (or `H:MM`, 24-hour) is the next such local
/// time after `now` (today while still ahead, else tomorrow); `+N` and a unit, `s`, `m`, `h` or
/// `d` (`+90s`, `+10m`, `+2h`, `+1d`; several in a row add up: `+1h30m`), is that long after
/// `now`. Nothing when `spec` is none of these, is not after `now`, or is beyond what an int64
/// counts (at_problem() says why). jim knows no upper bound: the server's own, `--schedule-max`,
/// is told by its `400`.
std::optional<std::int64_t> parse_at(std::string_view spec, std::int64_t now);

/// A message or schedule id as typed: decimal digits, optionally after `#` (as `/ids on` shows
/// ids: `[#42]`), at least 1. Nothing for anything else (signs, spaces, overflow).
std::optional<std::int64_t> parse_id(std::string_view word);

/// Why `word`, all digits (optionally after `#`), is no id: `0`, or too large for an int64
/// (`no such id: 0 (ids start at 1)`, `no such id: 999... is too large`). Empty when `word` is
/// a valid id or not a number at all (then the command's usage line says what is wanted).
std::string id_problem(std::string_view word);

/// Why `spec`, shaped like a TIME of `/at` (it starts with `+`, `-` or a digit), is none; the
/// text starts with `spec`: `+0s` or `-5s` (`the time must be in the future`), `+11y` (`unknown
/// unit y`), `+5` (`a unit must follow 5`), `+s` (`a number must come before s`), `7:5`
/// (`minutes must be two digits`), `123:45` (`hours must be one or two digits`), `1830` (`a time
/// of day needs a colon`), `25:00` (`no such time of day`), a number beyond an int64 (`too far
/// ahead`). Empty when `spec` is valid or not shaped like a TIME (the usage line then says what
/// is wanted).
std::string at_problem(std::string_view spec, std::int64_t now);

/// Why `line` may not be sent: it has a control character other than tab (U+0000..U+001F,
/// U+007F, U+0080..U+009F), e.g. `the line has a control character, ^[ (U+001B), at character
/// 3`. Empty when it has none.
std::string control_problem(std::string_view line);

/// The line as it may be kept in the input history: `/join ROOM PASSWORD` loses its password
/// (`/join ROOM`, which works again once one is a member); other lines are kept as typed.
std::string for_history(std::string_view line);

/// Tab completion: the candidates for `word`, the word ending at the cursor, where `before`
/// is the line up to that word. A first word starting with `/` completes commands; the first
/// argument of `/msg`, `/private` and `/invite` completes names; of `/join`, rooms (and the
/// second of `/invite`); of `/history`, `#rooms` and names; in a chat line, a word starting
/// with `#` completes rooms and any other word names. Matching ignores case; candidates are
/// sorted, as registered (rooms bare unless `word` starts with `#`).
std::vector<std::string> completions(std::string_view before, std::string_view word,
                                     std::vector<std::string> const& names,
                                     std::vector<std::string> const& rooms);

/// How many replies the server owes for `line` sent as raw bytes (the --json mode): one per
/// frame in it, malformed ones included, as the daemon's framer splits it.
std::size_t count_frames(std::string_view line);

/// The command summary printed by `/help`, one command per line.
std::string_view help_text();

/// `HH:MM` in local time when `when` is on the same local day as `now` (both unix seconds),
/// else with the day (`Wed 2 Dec 18:30`), and the year when not this year's (`Wed 2 Dec 2025 18:30`).
std::string clock_time(std::int64_t when, std::int64_t now);

/// How chat_state shows and sends messages.
struct chat_settings {
  /// Show one's own messages once the server has accepted them (a terminal); a script shows
  /// only what others write.
  bool show_own = false;
  /// A message text longer than this many bytes is sent as several messages (split_text()).
  std::size_t max_message = 4096;
  /// How many times one message refused with 429 is sent again before it counts as not sent.
  int max_retries = 10;
  /// The irssi-like view of a terminal: after each sign-in jim watches every room it is a
  /// member of; lines of rooms other than the one viewed and private messages outside an open
  /// `/query` are counted into the activity line instead of being printed; entering a room or
  /// a query shows its unread messages under a "new messages" divider and marks them read.
  /// Off (a script): every push is printed as it comes.
  bool activity = false;
  /// Activity view: how many unread messages entering a room or query shows at most (the
  /// rest stay reachable with `/history`), and how many read ones before them for context.
  int max_unread_shown = 50;
  int context_shown = 5;
  /// Show each message's id before it (`[#42] alice (12:00): text`), so that it can be edited
  /// or deleted; `/ids on|off` switches it.
  bool show_ids = false;
};

/// One entry of the activity line: a room (`#den`) or a private conversation (`@bob`) with
/// messages not yet seen.
struct activity_entry {
  std::string label;  ///< `#den` or `@bob`, as the server writes the name
  std::int64_t count = 0;
  friend bool operator==(activity_entry const&, activity_entry const&) = default;
};

/// The activity line for `entries` (in order): `[#den 3] [@bob 1]`; at most `max_entries`
/// shown, the rest as `[+N]`. Empty when there are none. (The figure of irssi's "Act:" list,
/// shortened: one bracket per window with its count.)
std::string activity_line(std::vector<activity_entry> const& entries, std::size_t max_entries = 6);

/// The client's side of one connection: the requests queued and those waiting for their
/// replies (replies come in request order), the current room, the signed-in name, the names
/// and rooms met (for completion) and how many requests failed. Turns every received frame
/// into lines for a person.
///
/// Requests typed by the user go through an ordered outbox (submit(), then take_sendable()):
/// while a `msg` waits for its reply nothing else is sent, so that a message refused with
/// 429 (rate limit) and sent again after `retry_after`, or re-split after a 413, keeps its
/// place among the user's messages and commands.
class chat_state {
public:
  using clock = std::chrono::steady_clock;

  /// `me` is the account name as typed at sign-in (replaced by the name as registered from
  /// the sign-in or `presence` reply).
  explicit chat_state(std::string me = {}, chat_settings settings = {})
      : me_(std::move(me)), settings_(settings) {}

  /// Records a request written to the server outside the outbox (sign-in, a probe's answer),
  /// so that its reply is understood. `quiet`: its reply shows nothing and a failure is not
  /// counted (a saved token that is refused, then the password works).
  void sent(boost::json::object const& frame, bool quiet = false);

  /// Queues a request typed by the user; a `msg` longer than `max_message` bytes becomes
  /// several. `quiet`: its reply shows nothing (only names and rooms are learnt from it).
  /// Local actions from parse_input() are resolved here: `me` becomes a `msg` "* NAME text";
  /// `query` (with `with`: open a conversation view; without: close it) and `switch` (a
  /// `join` without password), `ids` (switches chat_settings::show_ids, sends nothing); a
  /// `kick`, `ban` or `unban` without `room` names the current room when it is sent (after
  /// the replies of a `create`, `join` or `exit` before it), with `"room":"*"` none (the
  /// server-wide form). A `msg` without `to` typed while a query is open goes to the
  /// other party. In activity mode a request that is not quiet first marks the view read up to
  /// the last message shown (the user acted, so has read it). Returns lines to show at once
  /// (e.g. "no query open").
  std::vector<out_line> submit(boost::json::object frame, bool quiet = false);

  /// The queued requests that may be written now, in order; they count as sent.
  std::vector<boost::json::object> take_sendable(clock::time_point now);

  /// When take_sendable() will have something again because a refused message may be sent
  /// again; nothing when that only depends on a reply.
  std::optional<clock::time_point> wake_at() const;

  /// Nothing queued (requests may still wait for their replies).
  bool outbox_empty() const noexcept { return outbox_.empty(); }

  /// The connection is gone (`why`: e.g. "connection lost"): one error line per message that
  /// will not be sent and per message whose fate is unknown (sent, no reply); forgets them.
  std::vector<out_line> give_up(std::string_view why);

  /// The connection is gone and jim will reconnect: one error line per message whose fate is
  /// unknown (sent, no reply); forgets the requests in flight and keeps the queue, which goes
  /// out once signed in again.
  std::vector<out_line> lose_in_flight(std::string_view why);

  /// From now on a history push (`"history":true`) of a message already seen in that room or
  /// conversation is not shown again: after a reconnect only what was missed shows.
  void hide_seen_history() noexcept { hide_seen_history_ = true; }

  /// The line telling a successful sign-in (`reply`: the 200/201 of authenticate or register):
  /// `* signed in as alice; you are in #general (3 new messages since your last visit)`, or
  /// with `again`, `* reconnected as alice; ...` for a reconnect.
  out_line signed_in_line(boost::json::object const& reply, bool again) const;

  /// The user leaves before the outbox is empty (`why`: e.g. "you left"): one error line per
  /// queued message; forgets the queue (the requests in flight still get their replies).
  std::vector<out_line> drop_queued(std::string_view why);

  /// What a received frame means for the caller.
  struct reaction {
    std::vector<out_line> lines;               ///< what to show, maybe nothing
    std::optional<boost::json::object> answer;  ///< a frame to send at once (a probe's answer)
  };
  /// Interprets a reply (matched with the oldest request in flight) or a push. `now` (unix
  /// seconds) decides whether a time needs its date; `mono` is when it arrived, from which a
  /// 429's `retry_after` counts.
  reaction received(boost::json::object const& frame, std::int64_t now, clock::time_point mono = clock::now());

  /// The room the user is in, as the server writes it (`#general` after sign-in).
  std::string const& room() const noexcept { return room_; }
  /// The other party of the open `/query` (as registered), empty when none is open.
  std::string const& query() const noexcept { return query_; }
  /// What is viewed: the open query's name, else the room.
  std::string const& view() const noexcept { return query_.empty() ? room_ : query_; }
  /// The activity entries, oldest activity first (activity mode only).
  std::vector<activity_entry> const& activity() const noexcept { return activity_; }
  /// The prompt: `[#den 3] [@bob 1] #general> ` (a query shows as `@bob> `).
  std::string prompt() const;
  std::string const& me() const noexcept { return me_; }
  /// Requests still waiting for their reply.
  std::size_t in_flight() const noexcept { return pending_.size(); }
  /// Account names met so far (sign-in, messages, events, lists), as registered, sorted.
  std::vector<std::string> known_names() const;
  /// Room names met so far, as created (`#dev`), sorted.
  std::vector<std::string> known_rooms() const;
  /// The current message size bound (lowered when the server refuses a part with 413).
  std::size_t max_message() const noexcept { return settings_.max_message; }
  /// Replies that reported a failure (4xx/5xx) so far.
  int failures() const noexcept { return failures_; }
  /// The text of the last `notice` push when nothing but pushes came after it (why the server
  /// is closing); empty if none came, or a reply followed it (a kick: the server went on).
  std::string const& last_notice() const noexcept { return notice_; }

private:
  /// Why jim sent a request on its own (activity mode), which decides what its reply does.
  enum class purpose {
    none,          ///< typed, or sent by the app
    counts,        ///< `rooms` / `conversations`: unread counts for the activity line
    view_history,  ///< the history of the view being entered (`target` names it)
    switch_room,   ///< `/switch`: a `join` without password to a room one is a member of
    query_open,    ///< `/query NAME`: the conversation's history (its `with`)
    where,         ///< a `presence` after a `notice`: a kick or ban may have moved us to #general
  };

  /// A request queued or waiting for its reply.
  struct outgoing {
    boost::json::object frame;
    bool quiet = false;
    int refusals = 0;                 ///< 429s met by this message so far
    clock::time_point not_before{};  ///< a refused message waits until then
    purpose why = purpose::none;
    std::string target = {};  ///< view_history: the room (`#r`) or person it belongs to
    bool typed = false;  ///< came through submit() (the user), not sent()
    /// `/kick`, `/ban`, `/unban` of the current room: the room is named when it is sent, once
    /// the replies of the room changes typed before it are in.
    bool here = false;
  };

  /// Where entering a view stands: its unread count comes with the next `rooms` or
  /// `conversations` reply, then its history is asked for and shown.
  enum class entering { none, want_counts, want_history };

  reaction on_reply(boost::json::object const& frame, std::int64_t now, clock::time_point mono);
  reaction on_msg_reply(outgoing req, boost::json::object const& frame, std::int64_t now, clock::time_point mono);
  reaction on_push(boost::json::object const& frame, std::int64_t now);
  void learn_name(std::string_view name);
  void learn_room(std::string_view room);
  void learn_message(boost::json::object const& msg);
  /// The room (`#name`) or the other party of a message, folded: the key of seen_.
  std::string conversation_of(boost::json::object const& msg) const;
  /// Records `msg`'s id as met; true when it was met before (an id not above the largest).
  bool seen_before(boost::json::object const& msg);
  /// `name` as registered when it has been met, else as given.
  std::string registered(std::string_view name) const;
  /// `room` as created when it has been met, else as given.
  std::string registered_room(std::string_view room) const;
  bool msg_in_flight() const;
  /// A `create`, `join` or `exit` waits for its reply: the current room may be about to change.
  bool room_change_in_flight() const;
  /// Activity mode: the view becomes `target` (a `#room` or a name): asks for its unread count,
  /// then its history; the view left is marked read up to the last message shown there.
  void enter_view(std::string target, std::string const& left);
  /// Submits `read` for `view` (room or name) if a message above its known marker was shown.
  void mark_read(std::string const& view, std::int64_t id);
  void queue_internal(boost::json::object frame, purpose why, std::string target = {});
  /// The lines of a view's history reply: context, divider, the unread ones.
  void show_view(boost::json::array const& messages, std::string const& target, std::int64_t now,
                 std::vector<out_line>& lines);
  /// A `rooms` or `conversations` reply: the unread counts and read markers it carries.
  void take_counts(boost::json::object const& frame, std::string_view action);
  /// Activity counts by label (`#den`, `@bob`; matched ignoring case): add to one (a new one
  /// goes last; at most 1000 entries), or set one (0 removes it).
  void count_activity(std::string const& label, std::int64_t add);
  void set_activity(std::string const& label, std::int64_t count);
  /// The activity-line label of a view (`#den` for a room, `@bob` for a person).
  static std::string label_of(std::string const& view);
  /// render_message() for this state: its name, view and id setting.
  out_line render(boost::json::object const& msg, bool history, std::int64_t now) const;
  /// Remembers who wrote message `id` and where (`to`), for the edit and delete pushes, which
  /// carry only the id. At most 4096 kept, the newest ids.
  void remember(std::int64_t id, std::string_view from, std::string_view to);
  /// An `edit` or `delete` event push as a line; nothing when the message is known to be in a
  /// view other than the one shown (activity mode: entering that view shows it as it is now).
  std::optional<out_line> on_change(boost::json::object const& frame) const;
  /// The sentence for a refused request (`reply`: its 4xx/5xx) that is not a `msg`.
  std::string refusal(boost::json::object const& request, boost::json::object const& reply, std::int64_t now) const;

  /// Who wrote a remembered message, and where.
  struct message_ref {
    std::string from;
    std::string to;
  };

  std::string me_;
  chat_settings settings_;
  std::string room_;
  std::string notice_;
  std::deque<outgoing> outbox_;   ///< typed requests not yet written, in order
  std::deque<outgoing> pending_;  ///< requests written, waiting for their reply, oldest first
  std::map<std::string, std::string> names_;  ///< folded -> as registered
  std::map<std::string, std::string> rooms_;  ///< folded -> as created
  std::map<std::string, std::int64_t> seen_;  ///< folded room or conversation -> largest id met
  bool hide_seen_history_ = false;
  std::deque<std::int64_t> own_ids_;  ///< shown on their reply: their push to oneself is not shown again
  int failures_ = 0;
  std::string query_;  ///< the open query's other party, empty when none
  std::vector<activity_entry> activity_;  ///< in order of first activity, bounded (count_activity())
  std::map<std::string, std::int64_t> marked_;  ///< folded view -> read marker as known
  std::map<std::string, std::int64_t> unread_;  ///< folded view -> unread per the last counts reply
  std::string entering_;  ///< the view being entered (activity mode)
  entering entering_phase_ = entering::none;
  /// Ids of the view being entered shown live (pushed, or one's own) before its history came:
  /// the history does not show them again. Bounded by what arrives in one round trip.
  std::set<std::int64_t> shown_entering_;
  int tell_activity_ = 0;  ///< counts replies still to come before the activity is told (after a sign-in)
  std::map<std::int64_t, message_ref> messages_;  ///< id -> author and place, bounded (remember())
};

/// Renders a `msg` (push or history element) as a line: `alice (12:00): text`, marked
/// `[private]` for a private message and `[history]` for an old one; `[#room]` is added when
/// the message belongs to a room other than `current_room`. `current_room` may be a name (the
/// open query): the conversation with that name then goes without `[private]`. A text
/// "* FROM action" (one line, sent by `/me`) reads `* alice action (12:00)`. A message with
/// `"edited":T` ends with ` (edited)`; one with `"deleted":true` shows `(deleted)` instead of
/// its text. `show_id`: the line starts with the message's id, `[#42] `.
out_line render_message(boost::json::object const& msg, std::string_view me, std::string_view current_room,
                        bool history, std::int64_t now, bool show_id = false);

}  // namespace jim::client
