#pragma once
/// \file
/// Persistence of the hub's state as a versioned JSON document (`"format": 1`) in --data-dir.
/// capture() runs on the I/O thread (one consistent step); write() runs off it.

#include <boost/json/value.hpp>

#include <cstdint>
#include <filesystem>
#include <optional>
#include <string>

namespace jim::server {

class hub;

namespace snapshot {

/// The snapshot file inside a data directory.
std::filesystem::path file_in(std::filesystem::path const& data_dir);

/// Captures every persistent piece of the hub: accounts (name, password hash, last-seen
/// #general counter, queued private messages), rooms (name, owner, password hash, members,
/// history, message counter), private conversations and the message-id counter.
/// Call on the hub's thread.
boost::json::value capture(hub const& h);

/// Serialises `doc` and writes it atomically and durably: a temp file in the same directory,
/// fsync, rename over `file`, fsync of the directory. Returns the bytes written.
/// Throws std::system_error / std::runtime_error on failure (the old file is then intact).
std::size_t write(std::filesystem::path const& file, boost::json::value const& doc);

/// Loads `file` into `h` (a freshly constructed hub). A missing file is not an error (the
/// hub stays empty). Messages older than the hub's TTL and beyond its history limit are
/// dropped; the id counter continues above the highest stored id. Never modifies the file.
/// Returns an error naming the file and the problem when it cannot be read or validated.
std::optional<std::string> load(std::filesystem::path const& file, hub& h, std::int64_t unix_now);

}  // namespace snapshot
}  // namespace jim::server
