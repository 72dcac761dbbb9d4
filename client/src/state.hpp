#pragma once
/// \file
/// What `jim` keeps between runs: the resume token of each server and account, and the input
/// history. Both live in `$XDG_STATE_HOME/jim/` (default `~/.local/state/jim/`, per the XDG Base
/// Directory Specification), a directory of mode 0700 whose files are 0600. Passwords are never
/// written anywhere. No sockets, no terminal: unit-tested on a temporary directory.

#include <filesystem>
#include <optional>
#include <string>
#include <string_view>

namespace jim::client {

/// `$XDG_STATE_HOME/jim` when that variable holds an absolute path, else `$HOME/.local/state/jim`;
/// empty when neither is set (then nothing is kept). Nothing is created here.
std::filesystem::path state_dir();

/// Creates `dir` (and its parents) if needed and makes it mode 0700. Returns an empty string on
/// success, else why it failed (for a warning: jim works on without saving).
std::string make_private_dir(std::filesystem::path const& dir);

/// The saved resume token of one account on one server (`host` and `port` as given to jim).
/// One file per server and account: `<dir>/tokens/<account>@<host>:<port>`, the account folded
/// to lower case (names are case-insensitive), characters of `host` outside
/// `[A-Za-z0-9._:-]` percent-encoded. Written to a temporary file of mode 0600 and renamed over
/// the old one, so a reader sees the old token or the new one, never half of one.
///
/// @par Thread Safety
/// Not shared: each jim process makes its own.
class token_store {
 public:
  /// `dir` empty: a store that keeps nothing (load() finds nothing, save() does nothing).
  token_store(std::filesystem::path dir, std::string_view host, std::string_view port,
              std::string_view account);

  /// The saved token, if there is one (a file that is empty or holds more than one line of
  /// printable ASCII does not count).
  std::optional<std::string> load() const;
  /// Saves `token` (replacing the old one). Empty string on success, else why it failed.
  std::string save(std::string_view token) const;
  /// Deletes the saved token (nothing if there is none).
  void forget() const;
  /// The file, empty for a store that keeps nothing.
  std::filesystem::path const& file() const noexcept { return file_; }

 private:
  std::filesystem::path file_;
};

/// The file name token_store uses for `account` on `host`:`port`.
std::string token_file_name(std::string_view host, std::string_view port, std::string_view account);

}  // namespace jim::client
