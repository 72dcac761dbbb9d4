#pragma once
/// \file
/// The terminal side of `jim`: reading what the user types (libedit line editing on a TTY,
/// plain lines from a pipe or file) and showing lines above the prompt without disturbing
/// the half-typed line.

#include "commands.hpp"

#include <boost/asio/any_io_executor.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/posix/stream_descriptor.hpp>

#include <cstdint>
#include <deque>
#include <filesystem>
#include <functional>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

/// libedit's EditLine and History (histedit.h).
struct editline;
struct history;

namespace jim::client {

/// Standard input and output of the client.
///
/// Interactive (stdin is a terminal): lines are edited with libedit's own (wide character)
/// interface in its unbuffered mode, driven by readiness of stdin on the io_context: each
/// readiness runs libedit's commands for every key already typed (a paste at once), then
/// returns to the io_context. Output is printed above the prompt, then the prompt and the
/// half-typed line are redrawn. A typed line never keeps more than 30000 bytes (see
/// max_line_bytes in console.cpp). Otherwise: lines are read from stdin as they come and
/// output is printed as it is (errors to stderr).
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
  /// Interactive: the first call shows the prompt and starts line editing. Always valid UTF-8:
  /// invalid sequences become U+FFFD, with a note (valid_utf8()).
  boost::asio::awaitable<std::optional<std::string>> read_line();

  /// Sets the prompt shown while editing (redrawn at once if it is on screen).
  void set_prompt(std::string prompt);

  /// Shows lines for a person: above the prompt when editing, errors to stderr when not
  /// interactive.
  void show(std::vector<out_line> const& lines);
  void show(out_line const& line) { show(std::vector<out_line>{line}); }

  /// Interactive: offers `line` again for editing as the next line (a line jim refused to
  /// send, e.g. one with a control character); true then. Ignored (false) otherwise.
  bool edit_again(std::string line);

  /// Interactive: removes the line just entered (still on screen as prompt + text), e.g. a
  /// message that is shown once the server has accepted it. Call right after read_line().
  void erase_entered();

  /// What Tab offers: the candidates for `word`, the word before the cursor, where `before`
  /// is the line up to it (see jim::client::completions()).
  using completer = std::function<std::vector<std::string>(std::string_view before, std::string_view word)>;
  void set_completer(completer c) { completer_ = std::move(c); }
  /// The candidates for Tab (the completer's, or none).
  std::vector<std::string> complete(std::string_view before, std::string_view word) const;

  /// Lines of input skipped for being longer than the bound of plain reading (1 MiB; a script's
  /// stdin): each was reported as an error, and a script that had one exits with status 1.
  std::size_t skipped_lines() const noexcept { return skipped_lines_; }

  /// Writes one line to stdout exactly as given (the --json output).
  void raw(std::string_view line);

  /// Tells line editing the terminal was resized (SIGWINCH).
  void resized();

  /// Draws the prompt and the half-typed line again, e.g. after a `fg` (SIGCONT).
  void redraw();

  /// SIGTSTP (Ctrl-Z, or from another process): gives the terminal back as jim found it
  /// (cooked, bracketed paste off), stops the process with SIGTSTP's default action, and once
  /// continued makes the terminal raw again and redraws (see redraw()). Call from the thread
  /// that runs the io_context; the SIGTSTP handler is SIG_DFL while stopped.
  void suspend();

  /// Interactive: loads the input history kept in `file` (libedit's format) and remembers the
  /// file for save_history(). Nothing happens for an empty path or a missing file.
  void load_history(std::filesystem::path file);
  /// Interactive: writes the input history (at most 1000 lines, the newest) to the file given
  /// to load_history(), mode 0600. Empty string on success, else why it failed.
  std::string save_history();

  /// Interactive: removes the prompt and the half-typed line and gives the terminal back.
  void stop_editing();

private:
  void install();
  /// Runs libedit's commands for what has been typed; true when it stopped at its bound with
  /// more to do.
  bool drain();
  void finish_line(wchar_t const* line, std::size_t chars, std::size_t cursor);
  void end_of_input();
  void enforce_limit();
  void abandon_command();
  void clear_input();
  std::string paint(out_line const& line) const;
  boost::asio::awaitable<std::optional<std::string>> read_any_line();
  boost::asio::awaitable<std::optional<std::string>> read_plain();
  static char* prompt_of(::editline* el);
  static unsigned char on_tab(::editline* el, int key);
  static unsigned char complete_word(::editline* el, int key);


  boost::asio::posix::stream_descriptor in_;
  bool interactive_;
  bool colour_;
  ::editline* el_ = nullptr;  ///< libedit's editor (interactive, once set up)
  struct ::history* hist_ = nullptr;  ///< its input history (narrow: UTF-8 entries)
  bool full_ = false;       ///< the line has max_line_bytes: printable keys are dropped
  bool full_bell_ = false;  ///< the bell for a full line has rung
  bool editing_ = true;     ///< libedit may be used (false: lines are read plainly)
  bool installed_ = false;  ///< a line is being edited: the prompt is on screen
  bool raw_ = false;        ///< the terminal is jim's (raw, bracketed paste) until stop_editing()
  bool eof_ = false;
  bool skipping_ = false;  ///< read_plain() is skipping a line over its bound, up to its newline
  std::size_t skipped_lines_ = 0;
  std::uint64_t commands_ = 0;   ///< libedit commands run so far (Tab twice in a row lists)
  std::uint64_t last_tab_ = ~std::uint64_t{0};  ///< commands_ when Tab last offered several candidates
  std::string prompt_ = "> ";
  completer completer_;
  std::filesystem::path history_file_;
  std::string refill_;            ///< the text the next line starts with (edit_again())
  std::string entered_;           ///< the last line entered, as it was echoed
  std::string pending_;           ///< plain mode: bytes read, not yet a full line
  std::deque<std::string> lines_;  ///< complete lines not yet returned
};

}  // namespace jim::client
