#pragma once
/// \file
/// Persistence of the hub's state as a versioned JSON document (`"format": 4`) in --data-dir:
/// the compaction of the journal. The server captures and writes it on the snapshot thread,
/// from a replica hub that applies the journal's events (the I/O thread only asks for it).
///
/// The document (format 4), every field required, no other field allowed:
/// ```
/// {"format": 4, "saved_at": UNIX, "journal_seq": P, "last_id": N,
///  "accounts": [{"name": "Alice", "password_hash": "pbkdf2-sha256$...", "general_seen": N,
///                "queued": [MSG...], "general_since": N, "read": {"#den": N, "bob": N},
///                "invitations": [{"from": "Carol", "room": "#Den"}], "contacts": ["Bob"],
///                "tokens": [{"hash": "<43 base64url>", "issued": UNIX, "expires": UNIX}]}],
///  "rooms": [{"name": "#general", "owner": null, "password_hash": "", "members": [],
///             "posted": N, "history": [MSG...], "since": {}},
///            {"name": "#Den", "owner": "alice", "password_hash": "...", "members": [...], ...,
///             "since": {"alice": N, ...}}],
///  "conversations": [{"between": ["alice", "bob"], "messages": [MSG...]}]}
/// MSG = {"id": N, "time": UNIX, "from": "Alice", "to": "#Den" | "bob", "message": "text"}
/// ```
/// `owner`, `members` and `between` hold folded (lower-case) account keys; every message
/// sequence is ordered by strictly increasing id. Only password hashes are ever stored.
/// `tokens` (an account's resume tokens: their SHA-256 digests, never the tokens, oldest first,
/// at most 16) is the one optional field: written only for an account that has tokens, so a
/// snapshot without any reads the same in versions before tokens; tokens expired at load are
/// dropped. `devices` is optional likewise (issue 13): a cluster node's list of the account's
/// connections on every node, oldest first (`[{"id": "<instance>.<n>", "node": "n1"}]`, see
/// store::signed_in), written only when not empty (never on a single node).
/// `journal_seq`: the state is that after applying the journal's records up to P; start-up
/// replays the records after P. Format 1 (no `journal_seq`, written before the journal
/// existed) is read as P = 0.
/// Format 3 added read markers (`read`: "#room" or account key -> id read up to), the start of
/// each membership's unread count (`general_since`, a room's `since`: the last message id when
/// the account became a member) and invitations kept for offline accounts. Formats 1 and 2 are
/// migrated with every membership starting at `last_id` (unread counts start at the upgrade),
/// no markers and no invitations.
/// Format 5 (issue 16) added each account's contact list (`contacts`: names as registered, in
/// the order added); for edits, schedules and moderation, to MSG an optional `"edited": UNIX`
/// and, for a deleted message, `"deleted": true` in place of `"message"`; to each account
/// `"muted_until": UNIX` (0: never), `"reports": [{"by": key, "time": UNIX}]`, `"banned": null |
/// "reason"` and `"notices": ["text"...]` (for the next sign-in); to each room `"banned":
/// [keys]`; to the document `"last_scheduled": S` (the schedule-id counter) and `"scheduled":
/// [{"scheduled": S, "account": "Alice", "to": "#Den" | "bob", "message": "t", "at": UNIX,
/// "origin": "node" | ""}]` (by id). Formats 1 to 3 are migrated with none of them. Format 4
/// was never released: two development branches each wrote one (the contacts alone, or the
/// moderation fields alone, told apart by `last_scheduled`), and both are read.

#include <boost/json/value.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace jim::server {

class hub;

namespace snapshot {

/// The version written by capture(); load() also reads formats 1 to 4.
inline constexpr std::int64_t format_version = 5;

/// Test hook read by write(): with this environment variable set to `1` the process exits
/// with status 3 after the temp file is completely written and synced, before the rename; set
/// to `partial` it exits after writing only the first part of the temp file. Either way the
/// previous snapshot must survive. Never set it in production.
inline constexpr char const* crash_hook_env = "JIMD_TEST_CRASH_BEFORE_RENAME";

/// The snapshot file inside a data directory.
std::filesystem::path file_in(std::filesystem::path const& data_dir);

/// The temp file write() uses next to `file` (left behind only by a crash; load ignores it).
std::filesystem::path temp_of(std::filesystem::path const& file);

/// Captures every persistent piece of the hub: accounts (name, password hash, last-seen
/// #general counter, queued private messages, resume-token digests), rooms (name, owner, password hash, members,
/// history, message counter), private conversations and the message-id counter. An account
/// online at capture time is saved as having seen #general up to now. Live state (who is
/// online, current rooms, statuses, rate-limit tokens) is not saved.
/// `journal_seq`: the last journal record applied to `h`. Call on the hub's thread.
boost::json::value capture(hub const& h, std::uint64_t journal_seq = 0);

/// Serialises `doc` and writes it atomically and durably: a temp file in the same directory,
/// fsync, rename over `file`, fsync of the directory. Returns the bytes written.
/// Throws std::system_error / std::runtime_error on failure (the old file is then intact).
/// One writer per file at a time (the temp file's name is fixed): the server's disk pool has
/// a single thread, which also keeps successive snapshots in order.
std::size_t write(std::filesystem::path const& file, boost::json::value const& doc);

/// Loads `file` into `h` (a freshly constructed hub). A missing file is not an error (the
/// hub stays empty). Messages older than the hub's TTL and beyond its history limit are
/// dropped; the id counter continues above the highest stored id. Never modifies the file.
/// Returns an error naming the file and the problem when it cannot be read or validated;
/// the whole document is validated before anything is put into `h`. `journal_seq` (if given)
/// receives the journal position the snapshot covers (0 for format 1 or no file).
/// `replica` (if given, also freshly constructed) receives the same state from the same parse:
/// start-up reads and validates the file once for the hub and its snapshot replica.
std::optional<std::string> load(std::filesystem::path const& file, hub& h, std::int64_t unix_now,
                                std::uint64_t* journal_seq = nullptr, hub* replica = nullptr);

}  // namespace snapshot
}  // namespace jim::server
