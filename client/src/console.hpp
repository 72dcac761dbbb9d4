#pragma once
/// \file
/// The terminal side of `jim`: reading what the user types (libedit line editing on a TTY,
/// plain lines from a pipe or file) and showing lines above the prompt without disturbing
/// the half-typed line.

#include "commands.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <deque>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace jim::client {

/// Standard input and output of the client.
///
/// Interactive (stdin is a terminal): lines are edited with libedit's callback interface,
/// driven by readiness of stdin on the io_context; output is printed above the prompt, then
/// the prompt and the half-typed line are redrawn. Otherwise: lines are read from stdin as
/// they come and output is printed as it is (errors to stderr).
///
/// @par Thread Safety
/// Single-threaded; at most one console exists (libedit's state is global).
class console {
public:
  /// `colour`: use ANSI colours on stdout.
  console(boost::asio::any_io_executor ex, bool interactive, bool colour);
  ~console();
  console(console const&) = delete;
  console& operator=(console const&) = delete;

  bool interactive() const noexcept { return interactive_; }

  /// Interactive only, before editing starts: shows `prompt` and reads one line, with echo
  /// off when `secret`. `nullopt` at end of input or when cancelled (echo is restored).
  boost::asio::awaitable<std::optional<std::string>> ask(std::string prompt, bool secret);

  /// The next line typed (or read from stdin), without its newline; `nullopt` at end of input.
  /// Interactive: the first call shows the prompt and starts line editing.
  boost::asio::awaitable<std::optional<std::string>> read_line();

  /// Sets the prompt shown while editing (redrawn at once if it is on screen).
  void set_prompt(std::string prompt);

  /// Shows lines for a person: above the prompt when editing, errors to stderr when not
  /// interactive.
  void show(std::vector<out_line> const& lines);
  void show(out_line const& line) { show(std::vector<out_line>{line}); }

  /// Interactive: removes the line just entered (still on screen as prompt + text), e.g. a
  /// message that is shown once the server has accepted it. Call right after read_line().
  void erase_entered();

  /// What Tab offers: the candidates for `word`, the word before the cursor, where `before`
  /// is the line up to it (see jim::client::completions()).
  using completer = std::function<std::vector<std::string>(std::string_view before, std::string_view word)>;
  void set_completer(completer c) { completer_ = std::move(c); }
  /// Called by libedit's completion hook.
  std::vector<std::string> complete(std::string_view before, std::string_view word) const;

  /// Writes one line to stdout exactly as given (the --json output).
  void raw(std::string_view line);

  /// Tells line editing the terminal was resized (SIGWINCH).
  void resized();

  /// Draws the prompt and the half-typed line again, e.g. after a `fg` (SIGCONT).
  void redraw();

  /// Interactive: loads the input history kept in `file` (libedit's format) and remembers the
  /// file for save_history(). Nothing happens for an empty path or a missing file.
  void load_history(std::filesystem::path file);
  /// Interactive: writes the input history (at most 1000 lines, the newest) to the file given
  /// to load_history(), mode 0600. Empty string on success, else why it failed.
  std::string save_history();

  /// Interactive: removes the prompt and the half-typed line and gives the terminal back.
  void stop_editing();

private:
  static void on_line(char* line);
  void install();
  void clear_input();
  std::string paint(out_line const& line) const;
  boost::asio::awaitable<std::optional<std::string>> read_plain();

  boost::asio::posix::stream_descriptor in_;
  bool interactive_;
  bool colour_;
  /// Reads one key while the line is full (max_line_bytes in console.cpp): Enter and Backspace
  /// go to libedit, anything else is dropped (one bell per full line).
  void take_when_full();
  bool full_bell_ = false;  ///< the bell for a full line has rung
  bool editing_ = true;     ///< libedit may be used (false: lines are read plainly)
  bool installed_ = false;  ///< libedit's handler is installed: the prompt is on screen
  bool eof_ = false;
  std::string prompt_ = "> ";
  completer completer_;
  std::filesystem::path history_file_;
  std::string entered_;           ///< the last line entered, as it was echoed
  std::string pending_;           ///< plain mode: bytes read, not yet a full line
  std::deque<std::string> lines_;  ///< complete lines not yet returned
};

}  // namespace jim::client
