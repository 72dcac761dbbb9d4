#include "console.hpp"

#include "text.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/error.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>

// libedit's own interface (histedit.h), wide characters; its unbuffered mode fits an event loop.
#include <algorithm>
#include <cerrno>
#include <climits>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <cwchar>
#include <cwctype>
#include <fcntl.h>
#include <fstream>
#include <histedit.h>
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

/// libedit calls back plain functions: this is the console they talk to.
console* active = nullptr;
/// The editor of the last console, kept until the process ends (see console::~console()).
EditLine* kept_editor = nullptr;
int saved_stdin_flags = -1;

// ---- The line being edited -------------------------------------------------------------------
// jim drives libedit through its own wide-character interface (el_wgets() in unbuffered mode:
// one command per call, el_wline() to look at the line). It used libedit's readline emulation
// before, which re-encodes the whole line into one multibyte buffer after every key (el_gets(),
// el_line(): a paste of 30000 characters took 85 s of quadratic work) and points rl_line_buffer
// at a buffer it may move (a use after free that jim fenced in with a fixed-size "anchored"
// buffer -- which a repeat count bound in ~/.editrc still overran: SIGSEGV). Here nothing is
// encoded while a line is edited, and no pointer into libedit is kept.
//
// The bound on a typed line, whatever ~/.editrc binds (repeat counts, `bind -s` macros, yanks,
// vi's `.`, history entries): the line never keeps more than max_line_bytes bytes (UTF-8).
// - After every command whose line has more than 2 x max_line_bytes characters, and after the
//   last command of each burst of input (enforce_limit()), whatever is past the bound is cut
//   before the cursor (where insertions leave it), with one bell; so is a line entered in the
//   same burst, before it is sent (finish_line()).
// - While the line is full, a printable key that starts a command is dropped (read_key()):
//   a full line costs nothing per key (no echo, no cut and redraw).
// - A repeat count has at most max_count_keys keys (read_key()): libedit's counts
//   (em-universal-argument multiplies by 4, ed-argument-digit and vi counts add digits, up to
//   ten million) are chains of keys read within one command -- the key that starts the count
//   again or digits -- and a longer chain is abandoned (abandon_command()) with the digits
//   that follow it (skipping_count: the next other key runs once, uncounted). So one command
//   inserts at most a million characters (a vi count of six digits; 99999 after
//   em-universal-argument; 4^6) before the cut, and memory stays bounded. Other commands that
//   read many keys (Ctrl-R's incremental search, vi's `/`) are not counts and not limited.
constexpr std::size_t max_line_bytes = 30000;
/// The longest line read plainly (a script's stdin, or a terminal without line editing), in
/// bytes: 16 times the server's default --max-frame, so any frame a server may be configured
/// to take in practice passes, while `jim < /dev/zero` no longer grows without bound. A longer
/// line is skipped up to its newline, with an error.
constexpr std::size_t max_plain_line_bytes = 1 << 20;
/// The most keys a repeat count may have (the key that starts it, then itself or digits).
constexpr std::size_t max_count_keys = 6;
/// Commands run per readiness of stdin before the io_context gets its turn (messages that
/// came meanwhile are shown during a long paste).
constexpr int commands_per_turn = 4096;

/// What read_key() did during one el_wgets() call.
struct key_reading {
  bool at_start = false;     ///< the next key starts a command
  std::size_t keys = 0;      ///< keys read for this command
  wchar_t first = 0;         ///< its first key
  bool count_like = true;    ///< every key after the first is the first again or a digit
  bool drop_printable = false;  ///< the line is full: a printable first key is dropped
  bool would_block = false;  ///< stopped: nothing typed at the start of a command
  bool too_many = false;     ///< stopped: a repeat count of more than max_count_keys keys
  bool eof = false;          ///< the terminal ended
  bool dropped = false;      ///< a key was dropped (the line is full)
};
key_reading reading;
/// A repeat count was too long (see max_count_keys): the digits that follow it are dropped
/// too, up to the first other key (which runs once, without a count).
bool skipping_count = false;

/// Writes to stdout (stdio's buffer).
void out(std::string_view s);

/// Bracketed paste (xterm's mode 2004): on while lines are edited, so that a paste comes
/// between ESC [ 200 ~ and ESC [ 201 ~ and is inserted as typed text (a tab is a tab, not
/// completion); off whenever the terminal is not jim's (suspended, at exit).
constexpr char const* paste_on = "\033[?2004h";
constexpr char const* paste_off = "\033[?2004l";
/// Within a bracketed paste.
bool pasting = false;

/// libedit's key reader (EL_GETCFN), in place of its own read_char(): reads one character
/// (UTF-8, decoded as libedit does: an invalid byte is dropped) from stdin. At the start of a
/// command with nothing typed it reads nothing and makes el_wgets() return (`would_block`);
/// within a command (the rest of a key sequence) it waits for the key, as libedit does. While
/// the line is full a printable key starting a command is dropped; a repeat count past
/// max_count_keys ends the command (`too_many`). Returns 1 with `*wc` set, or -1 (libedit
/// then ends el_wgets()).
int read_key(EditLine* /*el*/, wchar_t* wc) {
  *wc = L'\0';
  for (;;) {
    if (reading.at_start) {
      int ready = 0;
      if (::ioctl(STDIN_FILENO, FIONREAD, &ready) != 0 || ready <= 0) {
        reading.would_block = true;
        errno = EAGAIN;
        return -1;
      }
    }
    char buf[MB_LEN_MAX];
    std::size_t have = 0;
    wchar_t ch = 0;
    for (bool got = false; !got;) {
      char byte = 0;
      const ssize_t n = ::read(STDIN_FILENO, &byte, 1);
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && errno == EAGAIN) {  // EWOULDBLOCK is EAGAIN on Linux
        pollfd p{STDIN_FILENO, POLLIN, 0};
        ::poll(&p, 1, -1);  // the rest of a key: bounded by the person typing it
        continue;
      }
      if (n <= 0) {
        reading.eof = true;
        return -1;
      }
      buf[have++] = byte;
      for (;;) {
        std::mbstate_t state{};
        const std::size_t r = std::mbrtowc(&ch, buf, have, &state);
        if (r == static_cast<std::size_t>(-2)) {
          if (have >= sizeof buf) have = 0;  // too long to be a character: dropped
          break;
        }
        if (r == static_cast<std::size_t>(-1)) {
          if (have > 1) {  // invalid: all but the last byte go, which may start a character
            buf[0] = buf[have - 1];
            have = 1;
            continue;
          }
          have = 0;
          break;
        }
        got = true;
        break;
      }
    }
    if (reading.at_start && skipping_count) {
      if (ch >= L'0' && ch <= L'9') continue;  // the rest of a count that was dropped
      skipping_count = false;
    }
    if (reading.at_start && reading.drop_printable && std::iswprint(static_cast<wint_t>(ch))) {
      reading.dropped = true;
      continue;  // the next key starts the command
    }
    // Within a command (Ctrl-V's quoted insert) a newline is inserted as a carriage return:
    // a line that ends with a newline is the one libedit has finished (drain()), and a
    // literal one there sent the line unfinished, with the screen one row off.
    if (!reading.at_start && ch == L'\n') ch = L'\r';
    reading.at_start = false;
    if (++reading.keys == 1)
      reading.first = ch;
    else if (ch != reading.first && !(ch >= L'0' && ch <= L'9'))
      reading.count_like = false;
    if (reading.count_like && reading.keys > max_count_keys) {
      reading.too_many = true;  // this key goes too
      errno = EAGAIN;
      return -1;
    }
    *wc = ch;
    return 1;
  }
}

/// Bytes of UTF-8 (the locale's encoding) the characters [b, e) take.
std::size_t encoded_size(wchar_t const* b, wchar_t const* e) {
  std::size_t n = 0;
  for (; b < e; ++b) {
    const auto c = static_cast<std::uint32_t>(*b);
    n += 1 + (c >= 0x80) + (c >= 0x800) + (c >= 0x10000);
  }
  return n;
}

/// The characters [b, e) in the locale's encoding (UTF-8; a character it cannot encode
/// becomes U+FFFD's encoding, or '?').
std::string encode(wchar_t const* b, wchar_t const* e) {
  std::string out;
  out.reserve(static_cast<std::size_t>(e - b));
  char buf[MB_LEN_MAX];
  for (; b < e; ++b) {
    std::mbstate_t state{};
    std::size_t n = std::wcrtomb(buf, *b, &state);
    if (n == static_cast<std::size_t>(-1)) {
      state = {};
      n = std::wcrtomb(buf, L'\uFFFD', &state);
      if (n == static_cast<std::size_t>(-1)) {
        buf[0] = '?';
        n = 1;
      }
    }
    out.append(buf, n);
  }
  return out;
}

/// `s` (UTF-8) as wide characters; an invalid byte is skipped.
std::wstring decode(std::string_view s) {
  std::wstring out;
  std::mbstate_t state{};
  while (!s.empty()) {
    wchar_t ch = 0;
    const std::size_t r = std::mbrtowc(&ch, s.data(), s.size(), &state);
    if (r == static_cast<std::size_t>(-1) || r == static_cast<std::size_t>(-2)) {
      state = {};
      s.remove_prefix(1);
      continue;
    }
    out += ch;
    s.remove_prefix(r == 0 ? 1 : r);
  }
  return out;
}

/// How many characters before `cursor` (back to `buffer`) must go so that a line of `bytes`
/// bytes keeps at most max_line_bytes; `bytes` is lowered by what they take.
std::size_t excess_before(wchar_t const* buffer, wchar_t const* cursor, std::size_t& bytes) {
  std::size_t n = 0;
  for (wchar_t const* p = cursor; bytes > max_line_bytes && p > buffer; ++n) {
    --p;
    bytes -= encoded_size(p, p + 1);
  }
  return n;
}

/// The longest word of a ~/.editrc line jim hands to libedit.
constexpr std::size_t max_editrc_word = 1000;

/// Reads $EDITRC, else ~/.editrc, as el_source() does (blank lines and `#` comments skipped,
/// `jim:` lines for jim only, reading stops at the first line libedit refuses), one line at a
/// time through el_parse(), but skips a line with a word longer than max_editrc_word bytes
/// (with a warning): libedit 3.1-20221030 copies the key and the string of `bind` into stack
/// buffers of 1024 characters without a bound (map_bind(), parse__string()), so a long
/// `bind -s` string overran jim's stack.
void source_editrc(EditLine* el) {
  std::string path;
  if (char const* rc = ::secure_getenv("EDITRC")) {
    path = rc;
  } else if (char const* home = ::secure_getenv("HOME")) {
    path = std::string(home) + (*home ? "/.editrc" : ".editrc");
  }
  if (path.empty()) return;
  std::ifstream in(path);
  std::string line;
  for (std::size_t number = 1; std::getline(in, line); ++number) {
    const auto first = line.find_first_not_of(" \t\r\f\v");
    if (first == std::string::npos || line[first] == '#') continue;
    Tokenizer* tok = tok_init(nullptr);
    if (!tok) return;
    int argc = 0;
    char const** argv = nullptr;
    tok_str(tok, line.c_str(), &argc, &argv);
    bool too_long = false;
    for (int i = 0; i < argc && argv; ++i) too_long = too_long || std::strlen(argv[i]) > max_editrc_word;
    int result = 0;
    if (too_long)
      std::fprintf(stderr, "jim: %s:%zu: skipped (a word longer than %zu bytes, more than libedit takes)\n",
                   path.c_str(), number, max_editrc_word);
    else
      result = el_parse(el, argc, argv);
    tok_end(tok);
    if (result == -1) return;
  }
}

/// Ctrl-D, bound by jim after ~/.editrc: the end of input on an empty line (libedit's own
/// binding draws "^D" first), else the character under the cursor goes.
bool ctrl_d_eof = false;

unsigned char on_ctrl_d(EditLine* el, int) {
  const LineInfoW* li = el_wline(el);
  if (li->buffer == li->lastchar) {
    ctrl_d_eof = true;
    return CC_NORM;
  }
  if (li->cursor >= li->lastchar) return CC_ERROR;
  el_cursor(el, 1);
  el_wdeletestr(el, 1);
  return CC_REFRESH;
}

/// ESC [ 200 ~ and ESC [ 201 ~: the start and the end of a bracketed paste.
unsigned char on_paste_start(EditLine*, int) {
  pasting = true;
  return CC_NORM;
}
unsigned char on_paste_end(EditLine*, int) {
  pasting = false;
  return CC_NORM;
}

/// jim-suspend, bound to Ctrl-Z: SIGTSTP to the process group, as the terminal's suspend key
/// does (console::suspend() handles it). libedit's editing mode keeps ISIG and VSUSP, so Ctrl-Z
/// itself is usually the terminal's: this is for a terminal without it, or a key ~/.editrc binds.
unsigned char on_suspend(EditLine*, int) {
  ::kill(0, SIGTSTP);
  return CC_NORM;
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
/// Gives stdout and stderr, where they are a terminal, a file description of their own (the
/// terminal opened again by name, blocking): the one they share with stdin and with the shell
/// may be made non-blocking by anyone who shares it, and a write to a terminal that drains
/// slowly (ssh, a paused terminal) then fails with EAGAIN and the text is lost. A blocking
/// write waits instead (back-pressure). Nothing to restore at exit: only jim's descriptors
/// change. Left as they are when the terminal cannot be opened by name.
void own_terminal_output() {
  std::fflush(stdout);
  std::fflush(stderr);
  int fd = -1;
  dev_t dev{};
  for (int target : {STDOUT_FILENO, STDERR_FILENO}) {
    struct stat st{};
    if (!::isatty(target) || ::fstat(target, &st) != 0) continue;
    if (fd < 0) {
      char const* name = ::ttyname(target);
      if (!name) continue;
      fd = ::open(name, O_WRONLY | O_NOCTTY | O_CLOEXEC);
      if (fd < 0) continue;
      struct stat mine{};
      if (::fstat(fd, &mine) != 0 || mine.st_rdev != st.st_rdev) {
        ::close(fd);
        fd = -1;
        continue;
      }
      dev = mine.st_rdev;
    }
    if (st.st_rdev == dev) ::dup2(fd, target);  // dup2 clears O_CLOEXEC on `target`
  }
  if (fd >= 0) ::close(fd);
}

/// Our own handle on stdin for Asio to wait on (Asio closes what it owns); /dev/null when
/// stdin is closed. Asio makes a descriptor non-blocking at its first wait (Boost 1.81:
/// reactive_descriptor_service::start_op() sets FIONBIO, even for async_wait()), and a dup()
/// shares the file description, and so its O_NONBLOCK, with stdout, stderr and the shell:
/// a terminal or a pipe is opened again (/proc/self/fd/0: a description of jim's own, opened
/// non-blocking, so that a FIFO without a writer does not block the open). Only a file or a
/// socket is dup()ed (non-blocking changes nothing for a file; a socket is not a terminal).
int own_stdin() {
  struct stat st{};
  if (::fstat(STDIN_FILENO, &st) == 0 && (S_ISCHR(st.st_mode) || S_ISFIFO(st.st_mode))) {
    const int own = ::open("/proc/self/fd/0", O_RDONLY | O_NOCTTY | O_NONBLOCK | O_CLOEXEC);
    if (own >= 0) return own;
  }
  const int fd = ::fcntl(STDIN_FILENO, F_DUPFD_CLOEXEC, 0);
  return fd >= 0 ? fd : ::open("/dev/null", O_RDONLY | O_CLOEXEC);
}
}  // namespace

console::console(asio::any_io_executor ex, bool interactive, bool colour)
    : in_(ex, own_stdin()), interactive_(interactive), colour_(colour) {
  active = this;
  saved_stdin_flags = fcntl(STDIN_FILENO, F_GETFL);
  own_terminal_output();
  if (!interactive_) return;
  if (!::isatty(STDOUT_FILENO)) {
    // `jim | tee log`: libedit edits only when its output is a terminal too (tty_setup()
    // checks el_outfd); otherwise it reads one raw character per el_wgets() and jim sent every
    // line typed as an empty one. The terminal's own line editing (cooked mode) is used instead.
    editing_ = false;
    return;
  }
  el_ = el_init("jim", stdin, stdout, stderr);  // "jim" selects `jim:` lines of ~/.editrc
  hist_ = history_init();
  if (!el_ || !hist_) {
    std::fprintf(stderr, "jim: line editing is off (libedit could not start)\n");
    editing_ = false;
    return;
  }
  HistEvent ev;
  history(hist_, &ev, H_SETSIZE, 1000);
  el_set(el_, EL_HIST, history, hist_);
  el_set(el_, EL_EDITOR, "emacs");
  el_set(el_, EL_SIGNAL, 0);  // signals belong to the io_context's signal_set
  el_set(el_, EL_PROMPT, &console::prompt_of);
  el_set(el_, EL_GETCFN, &read_key);
  // The bindings libedit's readline emulation made (jim used it before), so that ~/.editrc
  // may change them: Tab completes, Ctrl-Z suspends, Ctrl-R searches back; Home, End,
  // Delete, Insert and Ctrl-arrows.
  // Functions are added with wide literals: libedit keeps the names it is given, and copies
  // narrow ones into memory el_end() does not free.
  el_wset(el_, EL_ADDFN, L"jim-complete", L"complete a command, name or room", &console::on_tab);
  el_set(el_, EL_BIND, "^I", "jim-complete", nullptr);
  el_wset(el_, EL_ADDFN, L"jim-suspend", L"suspend jim", &on_suspend);
  el_set(el_, EL_BIND, "^Z", "jim-suspend", nullptr);
  el_set(el_, EL_BIND, "^R", "em-inc-search-prev", nullptr);
  el_wset(el_, EL_ADDFN, L"jim-paste-start", L"start of a bracketed paste", &on_paste_start);
  el_set(el_, EL_BIND, "\\e[200~", "jim-paste-start", nullptr);
  el_wset(el_, EL_ADDFN, L"jim-paste-end", L"end of a bracketed paste", &on_paste_end);
  el_set(el_, EL_BIND, "\\e[201~", "jim-paste-end", nullptr);
  for (auto const* home : {"\\e[1~", "\\e[7~", "\\e[H"}) el_set(el_, EL_BIND, home, "ed-move-to-beg", nullptr);
  for (auto const* end : {"\\e[4~", "\\e[8~", "\\e[F"}) el_set(el_, EL_BIND, end, "ed-move-to-end", nullptr);
  el_set(el_, EL_BIND, "\\e[3~", "ed-delete-next-char", nullptr);
  el_set(el_, EL_BIND, "\\e[2~", "ed-quoted-insert", nullptr);
  for (auto const* right : {"\\e[1;5C", "\\e[5C", "\\e\\e[C"}) el_set(el_, EL_BIND, right, "em-next-word", nullptr);
  for (auto const* left : {"\\e[1;5D", "\\e[5D", "\\e\\e[D"}) el_set(el_, EL_BIND, left, "ed-prev-word", nullptr);
  source_editrc(el_);  // $EDITRC or ~/.editrc
  // After ~/.editrc: jim's Ctrl-D (see on_ctrl_d). ESC-digit counts stay: read_key() bounds
  // every count (unbinding ESC 0 .. ESC 9, as jim did, also broke vi mode's ESC then a digit).
  el_wset(el_, EL_ADDFN, L"jim-ctrl-d", L"end of input on an empty line, else delete", &on_ctrl_d);
  el_set(el_, EL_BIND, "^D", "jim-ctrl-d", nullptr);
}

console::~console() {
  stop_editing();
  std::fflush(stdout);
  // The editor is kept, not ended (the terminal is back in its ordinary mode already):
  // libedit 3.1-20221030's el_end() frees the tree of multi-key bindings but not the strings
  // of `bind -s` (keymacro.c, node__free()), which LeakSanitizer reported at every exit.
  // jim ends right after; a later console (none in jim) ends the kept one first.
  if (el_) {
    if (kept_editor) el_end(kept_editor);
    kept_editor = el_;
  }
  if (hist_) history_end(hist_);
  // stdin's file description is shared with whoever started us; Asio may have made it
  // non-blocking when it could not be opened again (see own_stdin()): give it back as it was.
  if (saved_stdin_flags >= 0) fcntl(STDIN_FILENO, F_SETFL, saved_stdin_flags);
  active = nullptr;
}

char* console::prompt_of(EditLine*) {
  return active ? active->prompt_.data() : const_cast<char*>("");
}

unsigned char console::on_tab(EditLine* el, int key) {
  // Called by libedit (C): nothing may be thrown through it.
  try {
    return complete_word(el, key);
  } catch (...) {
    return CC_ERROR;
  }
}

unsigned char console::complete_word(EditLine* el, int) {
  // The word before the cursor: after the last space or tab.
  const LineInfoW* li = el_wline(el);
  wchar_t const* start = li->cursor;
  while (start > li->buffer && start[-1] != L' ' && start[-1] != L'\t') --start;
  if (pasting) {  // a pasted tab is text
    el_winsertstr(el, L"\t");
    return CC_REFRESH;
  }
  if (!active) return CC_ERROR;
  console& c = *active;
  const std::string word = encode(start, li->cursor);
  const std::string before = encode(li->buffer, start);
  const auto matches = c.complete(before, word);
  if (matches.empty()) return CC_ERROR;
  const auto replace_word = [&](std::string const& with) {
    el_wdeletestr(el, static_cast<int>(li->cursor - start));
    el_winsertstr(el, decode(with).c_str());
  };
  if (matches.size() == 1) {
    replace_word(matches.front() + " ");
    return CC_REFRESH;
  }
  // Several: their longest common beginning (whole characters), if it adds to the word.
  std::string common = matches.front();
  for (auto const& m : matches) {
    std::size_t i = 0;
    while (i < common.size() && i < m.size() && common[i] == m[i]) ++i;
    common.resize(i);
  }
  // Not within a character: back to its lead byte unless all of it is there.
  std::size_t lead = common.size();
  while (lead > 0 && (static_cast<unsigned char>(common[lead - 1]) & 0xC0) == 0x80) --lead;
  if (lead > 0) {
    const auto b = static_cast<unsigned char>(common[lead - 1]);
    const std::size_t len = b < 0x80 ? 1 : b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : 2;
    if (common.size() - (lead - 1) < len) common.resize(lead - 1);
  }
  if (common.size() > word.size()) {
    replace_word(common);
    return CC_REFRESH;
  }
  // Tab again with nothing to add: the candidates are listed above the prompt.
  if (std::exchange(c.last_tab_, c.commands_ + 1) != c.commands_) return CC_ERROR;
  std::string list;
  for (auto const& m : matches) list += (list.empty() ? "" : "  ") + printable(m);
  c.show({tone::info, list});
  return CC_NORM;
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
  co_return valid_utf8(answer);
}

awaitable<std::optional<std::string>> console::read_line() {
  // Every line jim is given, typed or read, goes through here: it leaves as valid UTF-8.
  auto line = co_await read_any_line();
  if (line) {
    bool replaced = false;
    *line = valid_utf8(*line, &replaced);
    if (replaced)
      show({tone::error, "! the line had bytes that are not UTF-8: each invalid sequence became \xEF\xBF\xBD (U+FFFD)"});
  }
  co_return line;
}

awaitable<std::optional<std::string>> console::read_any_line() {
  if (!interactive_ || !editing_) co_return co_await read_plain();
  bool more = false;
  for (;;) {
    if (!lines_.empty()) {
      std::string line = std::move(lines_.front());
      lines_.pop_front();
      co_return line;
    }
    if (eof_) co_return std::nullopt;
    if (!installed_) install();
    if (more) {
      // Commands are left (a long paste, or a `bind -s` macro libedit holds): after the
      // io_context's other work, not after the next key.
      co_await asio::post(in_.get_executor(), asio::use_awaitable);
    } else {
      auto [ec] = co_await in_.async_wait(asio::posix::descriptor_base::wait_read, nothrow);
      if (ec) co_return std::nullopt;
      if (hung_up(in_.native_handle())) {
        // The terminal is gone: there is nothing more to read.
        end_of_input();
        continue;
      }
    }
    more = drain();
  }
}

bool console::drain() {
  // One command per el_wgets() (unbuffered mode); read_key() ends the round when nothing more
  // has been typed. Bounded: after commands_per_turn the io_context gets its turn (stdin is
  // still readable, so read_line() comes straight back).
  int i = 0;
  for (; i < commands_per_turn && installed_; ++i) {
    reading = key_reading{};
    reading.at_start = true;
    reading.drop_printable = full_;
    int count = 0;
    wchar_t const* line = el_wgets(el_, &count);
    if (reading.dropped && !std::exchange(full_bell_, true)) out("\a");
    if (std::exchange(ctrl_d_eof, false) || reading.eof) {
      end_of_input();
      return false;
    }
    if (reading.too_many) {
      skipping_count = true;
      abandon_command();
      continue;
    }
    if (reading.would_block) break;
    ++commands_;  // a command ran
    const LineInfoW* li = el_wline(el_);
    // ed-newline (and the vi commands that end with it) appends '\n': nothing else puts one
    // in the line (read_key()), so it ends the line. (A '\r' is text: Ctrl-V Enter.)
    if (line && count > 0 && line[count - 1] == L'\n') {
      finish_line(li->buffer, static_cast<std::size_t>(count - 1),
                  static_cast<std::size_t>(li->cursor - li->buffer));
      return false;
    }
    // libedit's own end of file (e.g. em-delete-or-list bound by ~/.editrc) on an empty line.
    if (line && count == 1 && line[0] == L'\x04') {
      end_of_input();
      return false;
    }
    // A command that made the line very long is cut at once (memory); otherwise the cut waits
    // for the end of the burst (one redraw however many keys passed the bound). A full line
    // may have become shorter (Backspace): the next printable key is no longer dropped.
    const auto chars = static_cast<std::size_t>(li->lastchar - li->buffer);
    if (chars > 2 * max_line_bytes)
      enforce_limit();
    else if (full_)
      full_ = encoded_size(li->buffer, li->lastchar) >= max_line_bytes;
  }
  if (installed_) enforce_limit();
  std::fflush(stdout);
  return installed_ && i == commands_per_turn;
}

void console::enforce_limit() {
  const LineInfoW* li = el_wline(el_);
  std::size_t bytes = encoded_size(li->buffer, li->lastchar);
  if (bytes <= max_line_bytes) {
    full_ = bytes >= max_line_bytes;
    if (!full_) full_bell_ = false;
    return;
  }
  // Past the bound: what is past it goes from before the cursor (insertions leave the cursor
  // after what they added), then from the end; the line is drawn again.
  clear_input();
  std::size_t cut = excess_before(li->buffer, li->cursor, bytes);
  el_wdeletestr(el_, static_cast<int>(cut));
  if (bytes > max_line_bytes) {
    li = el_wline(el_);
    const auto back = static_cast<int>(li->lastchar - li->cursor);
    el_cursor(el_, back);
    li = el_wline(el_);
    el_wdeletestr(el_, static_cast<int>(excess_before(li->buffer, li->cursor, bytes)));
    el_cursor(el_, -back);
  }
  el_set(el_, EL_REFRESH);
  full_ = true;
  if (!std::exchange(full_bell_, true)) out("\a");
  std::fflush(stdout);
}

void console::abandon_command() {
  // A repeat count longer than max_count_keys: libedit keeps the count for the next command,
  // so its state is reset (el_reset() also empties the line and the terminal goes back to raw
  // mode at the next key) and the line put back.
  const LineInfoW* li = el_wline(el_);
  const std::wstring text(li->buffer, li->lastchar);
  const auto after_cursor = static_cast<int>(li->lastchar - li->cursor);
  clear_input();
  el_reset(el_);
  el_winsertstr(el_, text.c_str());
  el_cursor(el_, -after_cursor);
  el_set(el_, EL_REFRESH);
  out("\a");
  std::fflush(stdout);
}

void console::finish_line(wchar_t const* line, std::size_t chars, std::size_t cursor) {
  // libedit has finished the line (and moved below it); install() starts the next one when it
  // is wanted, so that nothing is drawn in between.
  std::string text = encode(line, line + chars);
  entered_ = text;  // as it was echoed
  std::size_t bytes = text.size();
  if (bytes > max_line_bytes) {
    // Typed in the same burst as what made it too long: cut as enforce_limit() would have.
    std::wstring wide(line, line + chars);
    cursor = std::min(cursor, chars);
    const std::size_t cut = excess_before(wide.data(), wide.data() + cursor, bytes);
    wide.erase(cursor - cut, cut);
    if (bytes > max_line_bytes) {
      const std::size_t more = excess_before(wide.data(), wide.data() + wide.size(), bytes);
      wide.erase(wide.size() - more);
    }
    text = encode(wide.data(), wide.data() + wide.size());
    out("\a");
  }
  // libedit's line ends (its unbuffered mode off, so that install() starts a new one) but
  // the terminal stays raw until jim stops editing: leaving it cooked between lines, as
  // EL_UNBUFFERED 0 does (read_finish()), gave keys typed meanwhile to the terminal's own
  // echo and line editing. libedit skips tty_cookedmode() while editing is disabled;
  // tty_rawmode() then has nothing to do.
  installed_ = false;
  el_set(el_, EL_EDITMODE, 0);
  el_set(el_, EL_UNBUFFERED, 0);
  el_set(el_, EL_EDITMODE, 1);
  if (!text.empty()) {
    HistEvent ev;
    history(hist_, &ev, H_ENTER, for_history(text).c_str());
  }
  lines_.push_back(std::move(text));
  std::fflush(stdout);
}

void console::end_of_input() {
  stop_editing();  // jim is leaving: the prompt goes
  eof_ = true;
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
    // Readiness, then a plain read (which then does not block): stdin is never made
    // non-blocking, as async_read_some() would do. Its file description is shared with
    // stdout and stderr when they are the same terminal, and with whoever started jim: a
    // non-blocking stdout loses output when the terminal drains slowly (EAGAIN). A regular
    // file cannot be waited for (epoll: operation_not_supported); reading it does not block.
    auto [ec] = co_await in_.async_wait(asio::posix::descriptor_base::wait_read, nothrow);
    if (ec && ec != asio::error::operation_not_supported) {
      eof_ = true;
      continue;
    }
    char buf[4096];
    const ssize_t n = ::read(in_.native_handle(), buf, sizeof buf);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n <= 0) {
      eof_ = true;
      continue;
    }
    std::string_view chunk(buf, static_cast<std::size_t>(n));
    if (skipping_) {  // the rest of a line over the bound
      const auto nl = chunk.find('\n');
      if (nl == std::string_view::npos) continue;
      skipping_ = false;
      chunk.remove_prefix(nl + 1);
    }
    pending_.append(chunk);
    auto skipped = [this] {
      ++skipped_lines_;
      show({tone::error, "! a line of input is longer than " + std::to_string(max_plain_line_bytes) +
                             " bytes: skipped up to its end"});
    };
    for (auto nl = pending_.find('\n'); nl != std::string::npos; nl = pending_.find('\n')) {
      // A line may end in the read that took it over the bound: checked here too.
      if (nl > max_plain_line_bytes) {
        pending_.erase(0, nl + 1);
        skipped();
        continue;
      }
      std::string line = pending_.substr(0, nl);
      pending_.erase(0, nl + 1);
      if (!line.empty() && line.back() == '\r') line.pop_back();
      lines_.push_back(std::move(line));
    }
    if (pending_.size() > max_plain_line_bytes) {
      pending_.clear();
      skipping_ = true;
      skipped();
    }
  }
}

void console::install() {
  // Unbuffered mode: raw terminal, an empty line, the prompt drawn.
  if (!raw_) out(paste_on);  // before the prompt: nothing comes between it and the typed text
  raw_ = true;
  el_set(el_, EL_UNBUFFERED, 1);
  installed_ = true;
  full_ = false;
  full_bell_ = false;
  if (!refill_.empty()) {
    el_winsertstr(el_, decode(std::exchange(refill_, {})).c_str());
    out("\r\033[J");
    el_set(el_, EL_REFRESH);
    enforce_limit();
  }
  std::fflush(stdout);
}

bool console::edit_again(std::string line) {
  if (!interactive_ || !editing_) return false;
  refill_ = std::move(line);
  return true;
}

void console::clear_input() {
  // Back to the row where the prompt starts, then clear to the end of the screen: this also
  // removes a half-typed line that wrapped over several rows. libedit shows a control
  // character as ^X, as printable() writes it.
  const LineInfoW* li = el_wline(el_);
  const std::size_t row = cursor_row(prompt_, printable(encode(li->buffer, li->cursor)));
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
  el_set(el_, EL_REFRESH);
  std::fflush(stdout);
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
  if (installed_) el_set(el_, EL_REFRESH);  // the prompt and the half-typed line, intact
  std::fflush(stdout);
}

void console::erase_entered() {
  if (!interactive_ || installed_ || entered_.empty()) return;
  // libedit left the cursor at the start of the row after the line; the line took the rows
  // up to the one its last character is on.
  const std::size_t rows = cursor_row(prompt_, printable(entered_)) + 1;
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
  if (interactive_ && el_) el_resize(el_);
}

void console::redraw() {
  if (!raw_) return;
  // Back from a stop (Ctrl-Z, or SIGTSTP from elsewhere) the terminal is in whatever mode the
  // shell left it (cooked: icanon echo). libedit still believes it is raw, so its
  // tty_rawmode() (EL_PREP_TERM 1) would do nothing: first back to "cooked" in its books
  // (EL_PREP_TERM 0 sets the modes jim started with), then raw again from what is there now.
  // Only when the terminal is not raw: SIGCONT redraws after suspend() has, and toggling a raw
  // terminal made it cooked for an instant (a key typed then was echoed by the terminal).
  termios now{};
  if (::tcgetattr(STDIN_FILENO, &now) != 0 || (now.c_lflag & (ICANON | ECHO)) != 0) {
    el_set(el_, EL_PREP_TERM, 0);
    el_set(el_, EL_PREP_TERM, 1);
  }
  pasting = false;
  out(paste_on);
  if (installed_) {
    out("\r\033[J");
    el_set(el_, EL_REFRESH);
  }
  std::fflush(stdout);
}

void console::suspend() {
  // The shell gets the terminal as jim found it (SIGTSTP from anyone: Ctrl-Z, `kill -TSTP`);
  // redraw() makes it raw again.
  if (raw_) {
    out(paste_off);
    std::fflush(stdout);
    el_set(el_, EL_PREP_TERM, 0);
  }
  // SIGTSTP's own action, as readline does: Asio's handler is put back once jim runs again.
  struct sigaction stop{}, caught{};
  stop.sa_handler = SIG_DFL;
  sigemptyset(&stop.sa_mask);
  if (::sigaction(SIGTSTP, &stop, &caught) == 0) {
    ::raise(SIGTSTP);  // stops here (an orphaned process group discards it: nobody could continue jim)
    ::sigaction(SIGTSTP, &caught, nullptr);
  }
  redraw();  // SIGCONT redraws too (a SIGSTOP is not seen)
}

void console::load_history(std::filesystem::path file) {
  if (!interactive_ || !hist_ || file.empty()) return;
  history_file_ = std::move(file);
  std::error_code ec;
  if (!std::filesystem::exists(history_file_, ec)) return;
  HistEvent ev;
  history(hist_, &ev, H_LOAD, history_file_.c_str());
  // An entry longer than a line may be typed is dropped (see max_line_bytes): the others are
  // entered again, oldest first.
  std::vector<std::string> kept;
  bool dropped = false;
  for (int r = history(hist_, &ev, H_LAST); r != -1; r = history(hist_, &ev, H_PREV)) {
    if (!ev.str) continue;
    if (std::strlen(ev.str) <= max_line_bytes)
      kept.emplace_back(ev.str);
    else
      dropped = true;
  }
  if (dropped) {
    history(hist_, &ev, H_CLEAR);
    for (auto const& text : kept) history(hist_, &ev, H_ENTER, text.c_str());
  }
}

std::string console::save_history() {
  if (!interactive_ || !hist_ || history_file_.empty()) return {};
  // Created private before libedit writes it (libedit makes it 0600 too, after opening it).
  const int fd = ::open(history_file_.c_str(), O_WRONLY | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
  if (fd < 0 || ::fchmod(fd, 0600) != 0) {
    const std::string why = std::strerror(errno);
    if (fd >= 0) ::close(fd);
    return "cannot write " + history_file_.string() + ": " + why;
  }
  ::close(fd);
  HistEvent ev;
  if (history(hist_, &ev, H_SAVE, history_file_.c_str()) == -1) return "cannot write " + history_file_.string();
  return {};
}

void console::stop_editing() {
  if (installed_) clear_input();
  if (!raw_) return;
  el_set(el_, EL_UNBUFFERED, 0);  // the line ends (read_finish()) ...
  el_set(el_, EL_PREP_TERM, 0);   // ... and the terminal is cooked again (between lines too)
  out(paste_off);
  installed_ = false;
  raw_ = false;
  std::fflush(stdout);
}

}  // namespace jim::client
