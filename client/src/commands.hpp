#pragma once
/// \file
/// The sans-io heart of `jim`: what a typed line becomes on the wire, and what a received
/// frame becomes on the screen. No sockets, no terminal: everything here is unit-tested.

#include <boost/json/object.hpp>

#include <cstdint>
#include <deque>
#include <optional>
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

/// One line for a person, without its newline.
struct out_line {
  tone kind = tone::info;
  std::string text;
  friend bool operator==(out_line const&, out_line const&) = default;
};

/// A typed line that becomes a request.
struct send_request {
  boost::json::object frame;  ///< carries "action"
};
/// A typed command that is unknown or has the wrong arguments: show `text`, send nothing.
struct usage_hint {
  std::string text;
};
/// `/help`: show help_text().
struct show_help {};
/// An empty line: nothing to do.
struct nothing {};

/// What one typed line means.
using input = std::variant<nothing, send_request, usage_hint, show_help>;

/// Parses a line typed by the user. A line not starting with `/` is a message to the current
/// room; `//text` sends the message `/text`; `/command args...` is a command (case-insensitive).
/// `/quit` becomes the `quit` request.
input parse_input(std::string_view line);

/// How many replies the server owes for `line` sent as raw bytes (the --json mode): one per
/// frame in it, malformed ones included, as the daemon's framer splits it.
std::size_t count_frames(std::string_view line);

/// The command summary printed by `/help`, one command per line.
std::string_view help_text();

/// `HH:MM` in local time, or `YYYY-MM-DD HH:MM` when `when` is not on the same local day as
/// `now` (both unix seconds).
std::string clock_time(std::int64_t when, std::int64_t now);

/// The client's side of one connection: the requests waiting for their replies (replies come
/// in request order), the current room, the signed-in name and how many requests failed.
/// Turns every received frame into lines for a person.
class chat_state {
public:
  /// `me` is the account name as typed at sign-in (corrected by a later `presence` reply).
  explicit chat_state(std::string me = {}) : me_(std::move(me)) {}

  /// Records a request written to the server, so that its reply is understood.
  void sent(boost::json::object const& frame);

  /// What a received frame means for the caller.
  struct reaction {
    std::vector<out_line> lines;               ///< what to show, maybe nothing
    std::optional<boost::json::object> answer;  ///< a frame to send at once (a probe's answer)
  };
  /// Interprets a reply (matched with the oldest request in flight) or a push. `now` is used
  /// to decide whether a time needs its date.
  reaction received(boost::json::object const& frame, std::int64_t now);

  /// The line showing one's own message as sent (`alice (12:00): hi`), for the terminal where
  /// the typed line is replaced by it; nothing for a frame that is not a `msg`.
  std::optional<out_line> echo(boost::json::object const& frame, std::int64_t now) const;

  /// The room the user is in, as the server writes it (`#general` after sign-in).
  std::string const& room() const noexcept { return room_; }
  std::string const& me() const noexcept { return me_; }
  /// Requests still waiting for their reply.
  std::size_t in_flight() const noexcept { return pending_.size(); }
  /// Replies that reported a failure (4xx/5xx) so far.
  int failures() const noexcept { return failures_; }
  /// The text of the last `notice` push (why the server is closing), empty if none came.
  std::string const& last_notice() const noexcept { return notice_; }

private:
  reaction on_reply(boost::json::object const& frame, std::int64_t now);
  reaction on_push(boost::json::object const& frame, std::int64_t now);

  std::string me_;
  std::string room_;
  std::string notice_;
  std::deque<std::string> pending_;  ///< actions of the requests in flight, oldest first
  int failures_ = 0;
};

/// Renders a `msg` (push or history element) as a line: `alice (12:00): text`, marked
/// `[private]` for a private message and `[history]` for an old one; `[#room]` is added when
/// the message belongs to a room other than `current_room`.
out_line render_message(boost::json::object const& msg, std::string_view me, std::string_view current_room,
                        bool history, std::int64_t now);

}  // namespace jim::client
