#include "console.hpp"

#include "text.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/use_awaitable.hpp>

// libedit's readline-compatible interface; its callback API fits an event loop.
#include <cerrno>
#include <climits>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cwchar>
#include <editline/readline.h>
#include <fcntl.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

namespace jim::client {

namespace asio = boost::asio;
using asio::awaitable;

namespace {
constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);

/// libedit calls back a plain function: this is the console it talks to.
console* active = nullptr;
int saved_stdin_flags = -1;

/// Tab: the candidates of the current completion, handed out by next_match().
std::vector<std::string> matches;

char* next_match(const char* /*text*/, int state) {
  static std::size_t next = 0;
  if (state == 0) next = 0;
  if (next >= matches.size()) return nullptr;
  return ::strdup(matches[next++].c_str());
}

// ---- The line being edited -------------------------------------------------------------------
// libedit 3.1-20221030 (Debian 12's libedit2) has these bugs in its readline emulation
// (src/readline.c, src/eln.c, src/chartype.c), which jim works around here:
// - rl_line_buffer is meant to be the line encoded as multibyte text. el_line() and el_gets()
//   encode libedit's wide line into one conversion buffer (ct_encode_string() into
//   el_lgcyconv.cbuff), which they grow with realloc() by 1 KiB when a line needs more; but
//   rl_line_buffer is pointed at that buffer only when the *wide* line buffer grows (the
//   EL_RESIZE hook _resize_fun()). A line of 2047 x "é" (4094 bytes in 2047 characters)
//   moves the one after the other has grown for the last time: rl_line_buffer dangles,
//   libedit itself writes rl_line_buffer[rl_end] = '\0' into freed memory after every key
//   (_rl_update_pos()), and jim aborted with "realloc(): invalid next size".
// - rl_copy_text(from, to) copies one byte less than asked (strlcpy() is given the length, not
//   the length + 1), and never the line's last byte: Tab completion saw "/m" for "/ms".
// - el_line() and el_gets() encode the wide line up to its first zero, not up to its end: what
//   earlier, longer lines left after the end is encoded too (libedit's own rl_line_buffer is
//   the line followed by that).
// So console anchors rl_line_buffer once (anchor_line_buffer()): it makes the conversion buffer
// large, then has libedit point rl_line_buffer at it, where it stays as long as no encoding
// needs more than that buffer holds; and it bounds every encoding: a wide zero stays after
// anchored_chars characters, and each character encodes to at most fill_bytes. That holds while
// no line reaches anchored_chars characters: keys other than Enter and Backspace are dropped
// once a line has max_line_bytes (take_when_full()); one key adds at most what was killed
// before from a line below max_line_bytes (a yank), or a history entry, and entries longer
// than max_line_bytes are not kept (on_line(), load_history()); Tab adds a name. So no line
// exceeds 2 x max_line_bytes + a name. encoded_line() has libedit encode the line afresh there.
// libedit's numeric arguments (ESC and digits), which repeat an insertion up to a million times,
// are unbound (console::console()).
constexpr std::size_t max_line_bytes = 30000;
/// A wide zero stays after this many characters once anchored (more than any line has).
constexpr std::size_t anchored_chars = 2 * max_line_bytes + 4096;
/// The most bytes one character encodes to, and the fill character that takes that many
/// (set by anchor_line_buffer(): 4 in a UTF-8 locale, 1 in a single-byte one).
std::size_t fill_bytes = 0;
/// Bytes rl_line_buffer holds once anchored: no encoding is longer.
std::size_t anchored_bytes = 0;
/// rl_line_buffer until it is anchored (and for good when it cannot be): no libedit call made
/// meanwhile writes to it, and jim never reads it.
char unanchored[1];

/// Fills the line with characters of fill_bytes each, 1 Ki at a time, until libedit's
/// EL_RESIZE hook has encoded at least anchored_chars of them and pointed rl_line_buffer at the
/// encoding: the hook runs when the wide buffer grows, before the text that made it grow goes
/// in, and rl_insert_text() encodes nothing itself (it decodes into another buffer), so a
/// changed rl_line_buffer after an insertion tells that the hook ran with the characters there
/// before it. Then rl_replace_line() (which encodes nothing either) puts wide zeros at that
/// count and at 2^k characters below it (longest first), so that a short line typed over the
/// fill is encoded only up to the next zero, not through all of it. False when the locale is
/// neither UTF-8 nor single-byte, or the hook never ran within 512 Ki characters (another
/// libedit). The first rl_callback_handler_install() empties the line (read_prepare()).
/// Costs about 2.8 MiB: libedit's wide line, kill, undo, redo and history buffers grow to 128 Ki
/// characters (the insertion that passes 64 Ki doubles them), the encoding to 256 KiB.
bool anchor_line_buffer() {
  std::string fill;
  std::mbstate_t state{};
  char four[MB_LEN_MAX];
  if (std::wcrtomb(four, L'\U00010348', &state) == 4) {  // GOTHIC LETTER HWAIR, 4 bytes in UTF-8
    fill.assign(four, 4);
  } else if (MB_CUR_MAX == 1) {
    fill = "x";
  } else {
    return false;
  }
  std::string chunk;
  for (int i = 0; i < 1024; ++i) chunk += fill;
  std::size_t chars = 0;
  bool anchored = false;
  for (int i = 0; i < 512 && !anchored; ++i) {
    rl_line_buffer = unanchored;
    if (rl_insert_text(chunk.c_str()) != static_cast<int>(chunk.size())) break;
    anchored = rl_line_buffer != unanchored && chars >= anchored_chars;
    if (!anchored) chars += 1024;
  }
  if (!anchored) {
    rl_line_buffer = unanchored;
    return false;
  }
  fill_bytes = fill.size();
  anchored_bytes = chars * fill_bytes;
  std::string text;  // `chars` fill characters: rl_replace_line() puts a zero after its text
  for (std::size_t i = 0; i < chars; ++i) text += fill;
  rl_replace_line(text.c_str(), 0);
  std::size_t n = 1;
  while (n * 2 < chars) n *= 2;
  for (; n >= 1; n /= 2) rl_replace_line(text.substr(0, n * fill_bytes).c_str(), 0);
  return true;
}

/// What libedit has encoded of the wide line, encoded afresh (rl_copy_text() calls el_line();
/// what it copies is not used): the line being edited, then whatever earlier lines left after
/// it. Cut it by rl_point or rl_end (bytes), or by characters while libedit completes.
std::string_view encoded_line() {
  if (char* unused = rl_copy_text(0, 0)) std::free(unused);
  return std::string_view(rl_line_buffer, ::strnlen(rl_line_buffer, anchored_bytes));
}

/// The first `chars` characters of `line` (UTF-8; each lead byte starts one, as libedit counts
/// them with ct_enc_width()), or all of it.
std::string_view first_chars(std::string_view line, std::size_t chars) {
  std::size_t i = 0;
  for (; i < line.size(); ++i) {
    const bool lead = (static_cast<unsigned char>(line[i]) & 0xC0) != 0x80;
    if (lead && chars-- == 0) break;
  }
  return line.substr(0, i);
}

/// Ctrl-D, bound by us: libedit's own binding draws "^D" on an empty line before it reports
/// the end of input.
bool ctrl_d_eof = false;     ///< Ctrl-D on an empty line: the end of input
bool ctrl_d_replay = false;  ///< keys were pushed back for libedit: one more round reads them

int on_ctrl_d(int, int) {
  if (rl_end == 0) {
    ctrl_d_eof = true;
    return 0;
  }
  // On a non-empty line Ctrl-D deletes the character under the cursor, as libedit's emacs
  // binding does: the Delete key (bound by libedit's readline emulation) does that.
  for (char ch : std::string_view("\033[3~")) rl_insert(1, ch);
  ctrl_d_replay = true;
  return 0;
}

/// Never file names: nothing to offer when the completer has nothing.
char* no_match(const char*, int) { return nullptr; }

/// libedit's completion hook: `text` is the word before the cursor, which starts after `start`
/// characters of the line (libedit counts characters here, and so are rl_point and rl_end
/// while it completes: fn_complete() sets them from its wide line).
char** complete_word(const char* text, int start, int /*end*/) {
  rl_attempted_completion_over = 1;
  if (!active) return nullptr;
  const std::string_view word(text);
  const std::string_view line =
      first_chars(encoded_line(), start > 0 ? static_cast<std::size_t>(start) : 0);
  matches = active->complete(line, word);
  if (matches.empty()) return nullptr;
  return rl_completion_matches(text, &next_match);
}

void out(std::string_view s) {
  std::fwrite(s.data(), 1, s.size(), stdout);
}

std::size_t columns() {
  winsize ws{};
  if (ioctl(STDOUT_FILENO, TIOCGWINSZ, &ws) == 0 && ws.ws_col > 0) return ws.ws_col;
  return 80;
}

/// The row, counted from the prompt's first row, where the cursor is after `prompt` and
/// `typed` (wide characters and wrapping as the terminal does them).
std::size_t cursor_row(std::string_view prompt, std::string_view typed) {
  std::string all(prompt);
  all += typed;
  const auto cols = columns();
  const auto p = cursor_after(all, cols);
  // A full last row: libedit moves the cursor to the next row at once (terminals would keep
  // it in the last column until the next character).
  return p.row + (p.col >= cols ? 1 : 0);
}

/// True when the terminal behind `fd` has hung up (its window was closed).
bool hung_up(int fd) {
  pollfd p{fd, POLLIN, 0};
  return ::poll(&p, 1, 0) == 1 && (p.revents & (POLLHUP | POLLERR | POLLNVAL)) != 0;
}

/// Turns echo off for as long as it lives (a password prompt); the newline the user typed is
/// not echoed either, so it prints one when done.
class echo_off {
 public:
  echo_off() {
    if (tcgetattr(STDIN_FILENO, &saved_) != 0) return;
    termios t = saved_;
    t.c_lflag &= ~static_cast<tcflag_t>(ECHO);
    active_ = tcsetattr(STDIN_FILENO, TCSAFLUSH, &t) == 0;
  }
  ~echo_off() {
    if (!active_) return;
    tcsetattr(STDIN_FILENO, TCSANOW, &saved_);
    out("\n");
    std::fflush(stdout);
  }
  echo_off(echo_off const&) = delete;
  echo_off& operator=(echo_off const&) = delete;

 private:
  termios saved_{};
  bool active_ = false;
};
}  // namespace

namespace {
/// Our own handle on stdin (Asio closes what it owns); /dev/null when stdin is closed.
int own_stdin() {
  const int fd = ::dup(STDIN_FILENO);
  return fd >= 0 ? fd : ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}
}  // namespace

console::console(asio::any_io_executor ex, bool interactive, bool colour)
    : in_(ex, own_stdin()), interactive_(interactive), colour_(colour) {
  active = this;
  saved_stdin_flags = fcntl(STDIN_FILENO, F_GETFL);
  if (interactive_) {
    // Signals belong to the io_context's signal_set, not to libedit.
    rl_catch_signals = 0;
    rl_catch_sigwinch = 0;
    rl_readline_name = "jim";
    // Tab completes commands, names and rooms (console::complete), never file names.
    rl_attempted_completion_function = &complete_word;
    rl_completion_entry_function = &no_match;
    rl_completer_word_break_characters = const_cast<char*>(" \t");
    rl_basic_word_break_characters = " \t";
    using_history();  // initialises libedit
    stifle_history(1000);
    rl_add_defun("jim-ctrl-d", &on_ctrl_d, 4);
    // ESC and a digit start libedit's numeric argument, which repeats the next insertion up to
    // a million times in one key: past the bound lines are kept under (see max_line_bytes).
    for (char d = '0'; d <= '9'; ++d)
      rl_parse_and_bind((std::string("bind '\\e") + d + "' ed-unassigned").c_str());
    // Once per process (libedit's state is global): see anchor_line_buffer().
    static const bool anchored = anchor_line_buffer();
    if (!anchored) {
      // Not the libedit jim knows: editing it could corrupt memory, so lines are read plainly.
      std::fprintf(stderr,
                   "jim: line editing is off (this libedit's line buffer cannot be used safely)\n");
      editing_ = false;
    }
  }
}

console::~console() {
  stop_editing();
  std::fflush(stdout);
  // Reading a pipe or a terminal through Asio makes it non-blocking, and the file description
  // is shared with whoever started us: give it back as it was.
  if (saved_stdin_flags >= 0) fcntl(STDIN_FILENO, F_SETFL, saved_stdin_flags);
  active = nullptr;
}

awaitable<std::optional<std::string>> console::ask(std::string prompt, bool secret) {
  // Echo goes off before the prompt shows: whatever is typed once it is visible stays hidden.
  std::optional<echo_off> no_echo;
  if (secret) no_echo.emplace();
  out(prompt);
  std::fflush(stdout);
  std::string answer;
  for (;;) {
    // Canonical mode: the terminal hands over whole lines, so a read after readiness
    // never blocks (and never takes more than the line).
    auto [ec] = co_await in_.async_wait(asio::posix::descriptor_base::wait_read, nothrow);
    if (ec) co_return std::nullopt;
    char buf[512];
    const ssize_t n = ::read(in_.native_handle(), buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      if (!secret) out("\n");
      co_return std::nullopt;
    }
    answer.append(buf, static_cast<std::size_t>(n));
    if (answer.back() == '\n') break;
  }
  while (!answer.empty() && (answer.back() == '\n' || answer.back() == '\r')) answer.pop_back();
  co_return answer;
}

awaitable<std::optional<std::string>> console::read_line() {
  if (!interactive_ || !editing_) co_return co_await read_plain();
  for (;;) {
    if (!lines_.empty()) {
      std::string line = std::move(lines_.front());
      lines_.pop_front();
      co_return line;
    }
    if (eof_) co_return std::nullopt;
    if (!installed_) install();
    auto [ec] = co_await in_.async_wait(asio::posix::descriptor_base::wait_read, nothrow);
    if (ec) co_return std::nullopt;
    if (hung_up(in_.native_handle())) {
      // The terminal is gone: libedit would read nothing and never call back.
      eof_ = true;
      continue;
    }
    if (static_cast<std::size_t>(rl_end) >= max_line_bytes) {
      take_when_full();
      continue;
    }
    rl_callback_read_char();  // one key; calls on_line() when a line is complete
    if (std::exchange(ctrl_d_replay, false)) rl_callback_read_char();
    if (std::exchange(ctrl_d_eof, false)) {
      // jim is leaving: the prompt goes.
      installed_ = false;
      eof_ = true;
      out("\r\033[J");
      std::fflush(stdout);
    }
  }
}

awaitable<std::optional<std::string>> console::read_plain() {
  for (;;) {
    if (!lines_.empty()) {
      std::string line = std::move(lines_.front());
      lines_.pop_front();
      co_return line;
    }
    if (eof_) {
      if (pending_.empty()) co_return std::nullopt;
      co_return std::exchange(pending_, {});  // a last line without its newline
    }
    char buf[4096];
    auto [ec, n] = co_await in_.async_read_some(asio::buffer(buf), nothrow);
    if (ec) {
      eof_ = true;
      continue;
    }
    pending_.append(buf, n);
    for (auto nl = pending_.find('\n'); nl != std::string::npos; nl = pending_.find('\n')) {
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      lines_.push_back(std::move(line));
    }
  }
}

void console::on_line(char* line) {
  console& c = *active;
  // libedit has finished this line (and echoed its newline); install() starts the next one
  // when it is wanted, so that nothing is drawn in between.
  c.installed_ = false;
  if (!line) {
    c.eof_ = true;
    out("\r\033[J");  // the prompt goes: jim is leaving
    std::fflush(stdout);
    return;
  }
  c.entered_ = line;
  // Not longer than a line may be typed: recalled, it must leave room (see max_line_bytes).
  if (*line && std::strlen(line) <= max_line_bytes) add_history(for_history(line).c_str());
  c.lines_.emplace_back(line);
  std::free(line);
}

void console::take_when_full() {
  // The line is as long as jim lets it be (see max_line_bytes): Enter and Backspace go to
  // libedit (pushed back, read again as the next key); other keys are dropped with a bell.
  char ch = 0;
  const ssize_t n = ::read(in_.native_handle(), &ch, 1);
  if (n <= 0) {
    if (n == 0 || (errno != EINTR && errno != EAGAIN)) eof_ = true;
    return;
  }
  if (ch == '\r' || ch == '\n' || ch == '\x7f' || ch == '\b') {
    full_bell_ = false;
    rl_insert(1, static_cast<unsigned char>(ch));
    rl_callback_read_char();
    return;
  }
  if (!std::exchange(full_bell_, true)) {
    out("\a");
    std::fflush(stdout);
  }
}

void console::install() {
  rl_callback_handler_install(prompt_.c_str(), &console::on_line);
  // The line is empty now; libedit updates these two only after the next key, and
  // clear_input() must not measure the previous line.
  rl_point = 0;
  rl_end = 0;
  installed_ = true;
}

void console::clear_input() {
  // Back to the row where the prompt starts, then clear to the end of the screen: this also
  // removes a half-typed line that wrapped over several rows.
  // rl_point counts bytes of the multibyte line up to the cursor.
  const std::string_view typed =
      encoded_line().substr(0, rl_point > 0 ? static_cast<std::size_t>(rl_point) : 0);
  const std::size_t row = cursor_row(prompt_, typed);
  if (row > 0) out("\033[" + std::to_string(row) + "A");
  out("\r\033[J");
}

void console::set_prompt(std::string prompt) {
  if (prompt == prompt_) return;
  if (!installed_) {
    prompt_ = std::move(prompt);
    return;
  }
  clear_input();
  prompt_ = std::move(prompt);
  rl_set_prompt(prompt_.c_str());
  rl_forced_update_display();
}

std::string console::paint(out_line const& line) const {
  if (!colour_) return line.text;
  char const* sgr = "";
  switch (line.kind) {
    case tone::chat:
      return line.text;
    case tone::direct:
      sgr = "\033[35m";
      break;  // magenta
    case tone::history:
      sgr = "\033[2m";
      break;  // dim
    case tone::info:
      sgr = "\033[36m";
      break;  // cyan
    case tone::event:
      sgr = "\033[32m";
      break;  // green
    case tone::error:
      sgr = "\033[31m";
      break;  // red
  }
  return sgr + line.text + "\033[0m";
}

void console::show(std::vector<out_line> const& lines) {
  if (lines.empty()) return;
  if (!interactive_) {
    for (auto const& l : lines) {
      if (l.kind == tone::error) {
        std::fflush(stdout);
        std::fprintf(stderr, "%s\n", l.text.c_str());
      } else {
        out(paint(l));
        out("\n");
      }
    }
    std::fflush(stdout);
    return;
  }
  if (installed_) clear_input();
  for (auto const& l : lines) {
    out(paint(l));
    out("\n");
  }
  std::fflush(stdout);
  if (installed_) rl_forced_update_display();  // the prompt and the half-typed line, intact
}

void console::erase_entered() {
  if (!interactive_ || installed_ || entered_.empty()) return;
  // libedit left the cursor at the start of the row after the line; the line took the rows
  // up to the one its last character is on.
  const std::size_t rows = cursor_row(prompt_, entered_) + 1;
  out("\033[" + std::to_string(rows) + "A\r\033[J");
  std::fflush(stdout);
  entered_.clear();
}

std::vector<std::string> console::complete(std::string_view before, std::string_view word) const {
  return completer_ ? completer_(before, word) : std::vector<std::string>{};
}

void console::raw(std::string_view line) {
  out(line);
  out("\n");
  std::fflush(stdout);
}

void console::resized() {
  if (interactive_) rl_resize_terminal();
}

void console::redraw() {
  if (!installed_) return;
  out("\r\033[J");
  std::fflush(stdout);
  rl_forced_update_display();
}

void console::load_history(std::filesystem::path file) {
  if (!interactive_ || file.empty()) return;
  history_file_ = std::move(file);
  std::error_code ec;
  if (!std::filesystem::exists(history_file_, ec)) return;
  read_history(history_file_.c_str());
  // An entry longer than a line may be typed is dropped (see max_line_bytes): the others are
  // entered again in order.
  std::vector<std::string> kept;
  bool dropped = false;
  if (HIST_ENTRY** entries = history_list()) {
    for (; *entries; ++entries) {
      char const* text = (*entries)->line;
      if (!text) continue;
      if (std::strlen(text) <= max_line_bytes)
        kept.emplace_back(text);
      else
        dropped = true;
    }
  }
  if (dropped) {
    clear_history();
    for (auto const& text : kept) add_history(text.c_str());
  }
  // libedit's read_history() leaves the browsing position where it was (before the first
  // entry): back to the end, so that Up walks back from the newest line.
  using_history();
}

std::string console::save_history() {
  if (!interactive_ || history_file_.empty()) return {};
  // Created private before libedit writes it (libedit makes it 0600 too, after opening it).
  const int fd = ::open(history_file_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0 || ::fchmod(fd, 0600) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return "cannot write " + history_file_.string() + ": " + why;
  }
  ::close(fd);
  if (write_history(history_file_.c_str()) != 0) return "cannot write " + history_file_.string();
  return {};
}

void console::stop_editing() {
  if (!installed_) return;
  clear_input();
  rl_callback_handler_remove();
  installed_ = false;
  std::fflush(stdout);
}

}  // namespace jim::client
