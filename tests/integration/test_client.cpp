// The real `jim` binary against a real `jimd`: as a script over pipes, as a --json pipe, and as
// a person at a terminal (a pseudo-terminal from forkpty). Every wait is bounded by a deadline;
// nothing sleeps to synchronise.
#include "chat_helpers.hpp"
#include "harness.hpp"
#include "tls_support.hpp"

#include <catch2/catch.hpp>

#include <algorithm>
#include <arpa/inet.h>
#include <cerrno>
#include <fcntl.h>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <memory>
#include <netinet/in.h>
#include <optional>
#include <poll.h>
#include <pty.h>
#include <signal.h>
#include <sstream>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/wait.h>
#include <termios.h>
#include <thread>
#include <unistd.h>
#include <vector>

using namespace jim::test;

namespace {

using steady = std::chrono::steady_clock;

int ms_until(steady::time_point deadline) {
  const auto left =
      std::chrono::duration_cast<std::chrono::milliseconds>(deadline - steady::now()).count();
  return left < 0 ? 0 : static_cast<int>(left);
}

/// An environment variable for the child: set to `value`, or removed when it has none.
struct env_var {
  std::string name;
  std::optional<std::string> value;
};

/// A `jim` child process: its stdin, stdout and stderr on pipes (a script), or its terminal
/// on a pseudo-terminal (a person). Output is collected as it comes; `all()` holds stdout and
/// stderr in arrival order.
class jim_child {
 public:
  /// `terminal_piped_stdout`: a terminal for stdin and stderr, stdout a pipe (collected as
  /// err()). `terminal_job`: jim in a process group of its own, the terminal's foreground
  /// job, under a session leader that waits for it as a shell does (so that SIGTSTP stops it:
  /// the kernel discards it in an orphaned process group); job_pid() is jim.
  enum class io { pipes, terminal, terminal_piped_stdout, terminal_job };

  jim_child(io kind, std::vector<std::string> args, std::vector<env_var> env) {
    signal(SIGPIPE, SIG_IGN);  // typing to a child that has exited must fail, not kill us
    // jim keeps tokens and its input history in $XDG_STATE_HOME/jim: a test that does not
    // choose the directory gets a fresh one of its own, never the home directory.
    if (std::none_of(env.begin(), env.end(), [](env_var const& e) { return e.name == "XDG_STATE_HOME"; })) {
      state_ = std::make_shared<temp_dir>();
      env.push_back({"XDG_STATE_HOME", state_->path().string()});
    }
    std::vector<std::string> argv_s{program("jim").string()};
    argv_s.insert(argv_s.end(), args.begin(), args.end());
    auto exec = [&] {
      for (auto const& e : env) {
        if (e.value)
          setenv(e.name.c_str(), e.value->c_str(), 1);
        else
          unsetenv(e.name.c_str());
      }
      std::vector<char*> argv;
      for (auto& s : argv_s) argv.push_back(s.data());
      argv.push_back(nullptr);
      execv(argv[0], argv.data());
      _exit(127);
    };
    if (kind != io::pipes) {
      winsize ws{};
      ws.ws_row = 24;
      ws.ws_col = 80;
      int out[2] = {-1, -1}, job[2] = {-1, -1};
      if ((kind == io::terminal_piped_stdout && pipe2(out, O_CLOEXEC)) ||
          (kind == io::terminal_job && pipe2(job, O_CLOEXEC)))
        throw std::runtime_error("pipe failed");
      int master = -1;
      pid_ = forkpty(&master, nullptr, nullptr, &ws);
      if (pid_ < 0) throw std::runtime_error("forkpty failed");
      if (pid_ == 0) {
        if (kind == io::terminal_piped_stdout) dup2(out[1], 1);
        if (kind == io::terminal_job) run_job(job[1], exec);
        exec();
      }
      in_ = out_ = master;
      if (kind == io::terminal_piped_stdout) {
        ::close(out[1]);
        err_ = out[0];
      }
      if (kind == io::terminal_job) {
        ::close(job[1]);
        if (::read(job[0], &job_pid_, sizeof job_pid_) != sizeof job_pid_) job_pid_ = -1;
        ::close(job[0]);
        if (job_pid_ <= 0) throw std::runtime_error("the job did not start");
      }
    } else {
      int in[2], out[2], err[2];
      if (pipe2(in, O_CLOEXEC) || pipe2(out, O_CLOEXEC) || pipe2(err, O_CLOEXEC))
        throw std::runtime_error("pipe failed");
      pid_ = fork();
      if (pid_ < 0) throw std::runtime_error("fork failed");
      if (pid_ == 0) {
        dup2(in[0], 0);
        dup2(out[1], 1);
        dup2(err[1], 2);
        exec();
      }
      ::close(in[0]);
      ::close(out[1]);
      ::close(err[1]);
      in_ = in[1];
      out_ = out[0];
      err_ = err[0];
    }
    pidfd_ = static_cast<int>(syscall(SYS_pidfd_open, pid_, 0));
  }

  ~jim_child() {
    if (job_pid_ > 0 && !status_) kill(job_pid_, SIGKILL);
    if (!status_) {
      kill(pid_, SIGKILL);
      waitpid(pid_, nullptr, 0);
    }
    for (int fd : {in_ == out_ ? -1 : in_, out_, err_, pidfd_})
      if (fd >= 0) ::close(fd);
  }
  jim_child(jim_child const&) = delete;
  jim_child& operator=(jim_child const&) = delete;

  /// Writes to the child's stdin (or types on its terminal: end lines with "\r" there).
  void type(std::string_view s) {
    while (!s.empty()) {
      const ssize_t n = ::write(in_, s.data(), s.size());
      if (n < 0 && errno == EINTR) continue;
      if (n <= 0) throw std::runtime_error("jim does not read its input any more");
      s.remove_prefix(static_cast<std::size_t>(n));
    }
  }

  /// Types all of `s` at once, as a terminal pastes it, while collecting output (jim echoes as
  /// it reads, and a terminal whose output nobody reads stops it). False if it is not all
  /// written within `bound`.
  bool paste(std::string_view s, std::chrono::milliseconds bound = 20s) {
    const auto deadline = steady::now() + bound;
    const int flags = fcntl(in_, F_GETFL);
    fcntl(in_, F_SETFL, flags | O_NONBLOCK);
    while (!s.empty() && steady::now() < deadline) {
      pollfd p{in_, static_cast<short>(POLLIN | POLLOUT), 0};
      if (poll(&p, 1, ms_until(deadline)) <= 0) continue;
      if (p.revents & POLLIN) pump(0);
      if (p.revents & (POLLERR | POLLHUP)) break;
      if (!(p.revents & POLLOUT)) continue;
      const ssize_t n = ::write(in_, s.data(), std::min<std::size_t>(s.size(), 4096));
      if (n > 0) s.remove_prefix(static_cast<std::size_t>(n));
      else if (n < 0 && errno != EAGAIN && errno != EINTR) break;
    }
    fcntl(in_, F_SETFL, flags);
    return s.empty();
  }

  /// Ends the child's stdin (pipes only).
  void close_input() {
    if (in_ != out_ && in_ >= 0) ::close(in_);
    in_ = -1;
  }

  /// Where output collected from now on will start: a `from` for wait_for().
  std::size_t mark() const { return all_.size(); }

  /// True once `text` is in the output at or after `from`; false if it does not come within
  /// `bound` (or the child closed its output first).
  bool wait_for(std::string_view text, std::size_t from = 0,
                std::chrono::milliseconds bound = 10s) {
    const auto deadline = steady::now() + bound;
    for (;;) {
      if (all_.find(text, from) != std::string::npos) return true;
      if (!pump(ms_until(deadline))) return all_.find(text, from) != std::string::npos;
      if (steady::now() >= deadline) return all_.find(text, from) != std::string::npos;
    }
  }

  /// The exit status once the child has exited (128+N when killed by signal N), or nothing if
  /// it is still running after `bound`.
  std::optional<int> wait_exit(std::chrono::milliseconds bound = 10s) {
    const auto deadline = steady::now() + bound;
    while (pump(ms_until(deadline)) && steady::now() < deadline) {
    }
    for (;;) {
      int status = 0;
      const pid_t r = waitpid(pid_, &status, WNOHANG);
      if (r == pid_) {
        status_ = WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
        return status_;
      }
      if (steady::now() >= deadline) return std::nullopt;
      // The pidfd becomes readable when the child exits; without one, check again shortly.
      pollfd p{pidfd_, POLLIN, 0};
      poll(&p, pidfd_ >= 0 ? 1 : 0,
           pidfd_ >= 0 ? ms_until(deadline) : std::min(ms_until(deadline), 5));
    }
  }

  /// Reads whatever output comes within `bound`: jim waits for a terminal that nobody reads,
  /// as it must (its output is never dropped), so a test waiting elsewhere reads it too.
  void read_for(std::chrono::milliseconds bound) {
    const auto deadline = steady::now() + bound;
    while (steady::now() < deadline && pump(ms_until(deadline))) {
    }
  }

  /// jim's process (terminal_job), else the child's.
  pid_t job_pid() const { return job_pid_ > 0 ? job_pid_ : pid_; }

  /// True once jim is stopped (`stopped`) or running again, as /proc/PID/stat says; reads
  /// output meanwhile. False if that does not happen within `bound`.
  bool wait_stopped(bool stopped, std::chrono::milliseconds bound = 10s) {
    const auto deadline = steady::now() + bound;
    for (;;) {
      std::ifstream stat("/proc/" + std::to_string(job_pid()) + "/stat");
      std::string text((std::istreambuf_iterator<char>(stat)), std::istreambuf_iterator<char>());
      const auto close = text.rfind(')');
      if (close != std::string::npos && close + 2 < text.size() && (text[close + 2] == 'T') == stopped)
        return true;
      if (steady::now() >= deadline) return false;
      pump(10);
    }
  }

  std::string const& out() const { return out_text_; }
  std::string const& err() const { return err_text_; }
  pid_t pid() const { return pid_; }
  /// The terminal's master side (terminal children only).
  int master() const { return out_; }
  std::string const& all() const { return all_; }

 private:
  /// Waits up to `timeout_ms` for output and reads it; false once every output is closed.
  bool pump(int timeout_ms) {
    pollfd fds[2];
    nfds_t n = 0;
    if (out_ >= 0) fds[n++] = {out_, POLLIN, 0};
    if (err_ >= 0) fds[n++] = {err_, POLLIN, 0};
    if (n == 0) return false;
    if (poll(fds, n, timeout_ms) <= 0) return true;
    for (nfds_t i = 0; i < n; ++i) {
      if (!fds[i].revents) continue;
      char buf[4096];
      const ssize_t got = ::read(fds[i].fd, buf, sizeof buf);
      if (got < 0 && errno == EINTR) continue;
      const bool is_err = fds[i].fd == err_;
      if (got <= 0) {  // EOF, or EIO from a terminal whose child side is gone
        if (is_err) {
          ::close(err_);
          err_ = -1;
        } else {
          if (in_ == out_) in_ = -1;
          ::close(out_);
          out_ = -1;
        }
        continue;
      }
      (is_err ? err_text_ : out_text_).append(buf, static_cast<std::size_t>(got));
      all_.append(buf, static_cast<std::size_t>(got));
    }
    return true;
  }

  /// In the session leader forkpty() made: starts jim (`exec`) as the terminal's foreground
  /// job in a process group of its own, tells the test its pid on `report`, waits for it (its
  /// stops too, as a shell) and exits with its status.
  template <class Exec>
  [[noreturn]] static void run_job(int report, Exec const& exec) {
    int go[2];
    if (pipe2(go, O_CLOEXEC)) _exit(127);
    const pid_t job = fork();
    if (job < 0) _exit(127);
    if (job == 0) {
      char c = 0;
      if (::read(go[0], &c, 1) != 1) _exit(127);  // the terminal is the job's
      exec();
    }
    setpgid(job, job);
    tcsetpgrp(STDIN_FILENO, job);
    if (::write(report, &job, sizeof job) != sizeof job || ::write(go[1], "g", 1) != 1) _exit(127);
    int status = 0;
    while (waitpid(job, &status, 0) < 0 && errno == EINTR) {
    }
    _exit(WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status));
  }

  std::shared_ptr<temp_dir> state_;
  pid_t job_pid_ = -1;
  pid_t pid_ = -1;
  int in_ = -1, out_ = -1, err_ = -1, pidfd_ = -1;
  std::string out_text_, err_text_, all_;
  std::optional<int> status_;
};

std::vector<std::string> endpoint(jimd_process const& d) {
  return {"-a", "127.0.0.1", "-p", std::to_string(d.port())};
}

/// `jim -u user` as a script: stdin, stdout and stderr are pipes.
jim_child script(jimd_process const& d, std::string const& user, std::string const& password = "pw",
                 std::vector<std::string> extra = {}) {
  auto args = endpoint(d);
  args.insert(args.end(), {"-u", user});
  args.insert(args.end(), extra.begin(), extra.end());
  return jim_child(jim_child::io::pipes, args,
                   {{"JIM_PASSWORD", password}, {"NO_COLOR", std::nullopt}});
}

/// `jim` on a terminal, as a person runs it (`env` adds to or overrides the defaults).
jim_child terminal(jimd_process const& d, std::vector<std::string> extra,
                   std::optional<std::string> password, bool colour = false,
                   std::vector<env_var> env = {}, jim_child::io kind = jim_child::io::terminal) {
  auto args = endpoint(d);
  args.insert(args.end(), extra.begin(), extra.end());
  std::vector<env_var> all{{"JIM_PASSWORD", password},
                           {"TERM", "xterm"},
                           {"NO_COLOR", colour ? std::nullopt : std::optional<std::string>("1")}};
  all.insert(all.end(), env.begin(), env.end());
  return jim_child(kind, args, all);
}

/// The environment of a user who set no locale at all ("C").
const std::vector<env_var> no_locale{{"LANG", std::nullopt}, {"LC_ALL", std::nullopt},
                                     {"LC_CTYPE", std::nullopt}, {"LANGUAGE", std::nullopt}};

/// How many times `needle` occurs in `text` from `from` on.
std::size_t count_of(std::string const& text, std::string_view needle, std::size_t from = 0) {
  std::size_t n = 0;
  for (auto at = text.find(needle, from); at != std::string::npos; at = text.find(needle, at + needle.size())) ++n;
  return n;
}

/// The lines of `text` containing `needle`, in order.
std::vector<std::string> lines_with(std::string const& text, std::string_view needle) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);)
    if (line.find(needle) != std::string::npos) out.push_back(line);
  return out;
}

/// The word following `label` in `text` (e.g. the room password after "Its password: ").
std::string word_after(std::string const& text, std::string_view label) {
  auto at = text.find(label);
  if (at == std::string::npos) return {};
  at += label.size();
  const auto end = text.find_first_of(" \r\n", at);
  return text.substr(at, end == std::string::npos ? std::string::npos : end - at);
}

}  // namespace

// ---- scripts over pipes ---------------------------------------------------------------------

TEST_CASE("Two scripted clients chat in #general and privately", "[integration][client]") {
  jimd_process d;
  auto alice = script(d, "alice");
  REQUIRE(alice.wait_for("* signed in as alice (new account); you are in #general"));
  auto bob = script(d, "bob");
  REQUIRE(bob.wait_for("* signed in as bob"));

  bob.type("hello alice\n");
  REQUIRE(alice.wait_for("): hello alice"));
  CHECK(lines_with(alice.out(), "hello alice").at(0).starts_with("bob ("));

  alice.type("/msg bob psst, bob\n");
  REQUIRE(bob.wait_for("): psst, bob"));
  CHECK(lines_with(bob.out(), "psst").at(0).starts_with("[private] alice ("));

  alice.close_input();
  bob.close_input();
  CHECK(alice.wait_exit() == 0);
  CHECK(bob.wait_exit() == 0);
  CHECK(alice.err().empty());
  CHECK(alice.out().find('\033') == std::string::npos);  // no colours into a pipe
}

TEST_CASE("A script's line over 1 MiB is skipped with an error, the lines around it are sent",
          "[integration][client]") {
  jimd_process d;
  auto bob = script(d, "bob");
  REQUIRE(bob.wait_for("* signed in as bob"));
  auto alice = script(d, "alice");
  REQUIRE(alice.wait_for("* signed in as alice"));
  alice.type("before\n");
  REQUIRE(bob.wait_for("): before"));
  // Fed in pieces, as a pipe delivers it: the bound holds across reads.
  for (int i = 0; i < 24; ++i) alice.type(std::string(64 * 1024, 'x'));
  alice.type("yyyy\nafter\n");
  REQUIRE(bob.wait_for("): after"));
  alice.close_input();
  CHECK(alice.wait_exit() == 1);  // not everything it was given was sent
  CHECK(alice.err().find("longer than 1048576 bytes: skipped") != std::string::npos);
  CHECK(bob.out().find("xxxx") == std::string::npos);
  CHECK(bob.out().find("yyyy") == std::string::npos);
  bob.close_input();
  CHECK(bob.wait_exit() == 0);
}

TEST_CASE("A script's line just over 1 MiB that ends within one read is skipped too",
          "[integration][client]") {
  // The bound was checked only on what was left after the read's whole lines were taken out:
  // a line ending in the read that took it over 1 MiB went through.
  jimd_process d;
  auto bob = script(d, "bob");
  REQUIRE(bob.wait_for("* signed in as bob"));
  auto alice = script(d, "alice");
  REQUIRE(alice.wait_for("* signed in as alice"));
  alice.type(std::string(1048576, 'z') + "zz\nafter\n");  // 1 MiB + 2 bytes, in one write
  REQUIRE(bob.wait_for("): after"));
  alice.close_input();
  CHECK(alice.wait_exit() == 1);
  CHECK(alice.err().find("longer than 1048576 bytes: skipped") != std::string::npos);
  CHECK(bob.out().find("zzzz") == std::string::npos);
  bob.close_input();
  CHECK(bob.wait_exit() == 0);
}

TEST_CASE("A script creates a room, another joins it with its password", "[integration][client]") {
  jimd_process d;
  auto alice = script(d, "alice");
  REQUIRE(alice.wait_for("* signed in as alice"));
  alice.type("/create dev\n");
  REQUIRE(alice.wait_for("* created #dev; you own it and are in it. Its password: "));
  REQUIRE(alice.wait_for(", or /invite them)"));
  const auto password = word_after(alice.out(), "Its password: ");
  CHECK(password.size() >= 16);

  auto bob = script(d, "bob");
  REQUIRE(bob.wait_for("* signed in as bob"));
  bob.type("/join dev not-the-password\n");
  REQUIRE(bob.wait_for("! wrong password for #dev"));
  bob.type("/join dev " + password + "\n");
  REQUIRE(bob.wait_for("* you are in #dev"));
  REQUIRE(alice.wait_for("* bob joined #dev"));

  bob.type("in the room\n/users\n");
  REQUIRE(alice.wait_for("): in the room"));
  REQUIRE(bob.wait_for("* in #dev: "));
  const auto users = lines_with(bob.out(), "* in #dev: ").at(0);
  CHECK(users.find("alice") != std::string::npos);
  CHECK(users.find("bob") != std::string::npos);

  bob.type("/exit\n");
  REQUIRE(bob.wait_for("* back in #general"));
  REQUIRE(alice.wait_for("* bob left #dev"));

  bob.close_input();
  alice.close_input();
  CHECK(bob.wait_exit() == 1);  // the wrong password failed
  CHECK(alice.wait_exit() == 0);
  CHECK(bob.err().find("wrong password") != std::string::npos);
}

TEST_CASE("Recent history comes at sign-in and /history pages back", "[integration][client]") {
  jimd_process d;
  {
    auto alice = script(d, "alice");
    alice.type("one\ntwo\nthree\n");
    alice.close_input();
    REQUIRE(alice.wait_exit() == 0);
  }
  auto bob = script(d, "bob");
  REQUIRE(bob.wait_for("[history] alice ("));
  REQUIRE(bob.wait_for("): three"));
  auto old = lines_with(bob.out(), "[history] alice (");
  REQUIRE(old.size() == 3);
  CHECK(old[0].ends_with("): one"));
  CHECK(old[2].ends_with("): three"));

  const auto m = bob.mark();
  bob.type("/history 2\n");
  bob.close_input();
  REQUIRE(bob.wait_exit() == 0);
  const auto paged = lines_with(bob.all().substr(m), "[history]");
  REQUIRE(paged.size() == 2);
  CHECK(paged[0].ends_with("): two"));
  CHECK(paged[1].ends_with("): three"));
}

TEST_CASE("A private message to an offline user waits for their sign-in", "[integration][client]") {
  jimd_process d;
  sign_up(d.port(), "carol");  // registered, then gone
  {
    auto alice = script(d, "alice");
    alice.type("/msg carol see you later\n");
    alice.close_input();
    CHECK(alice.wait_exit() == 0);  // queued (202) is a success
    CHECK(alice.out().find("* carol is offline: the message waits") != std::string::npos);
  }
  auto carol = script(d, "carol");
  REQUIRE(carol.wait_for("): see you later"));
  CHECK(lines_with(carol.out(), "see you later").at(0).starts_with("[private] alice ("));
  carol.close_input();
  CHECK(carol.wait_exit() == 0);
}

TEST_CASE("A script's exit status says whether everything worked", "[integration][client]") {
  jimd_process d;
  SECTION("all requests succeed: 0") {
    auto c = script(d, "alice");
    c.type("hello\n/rooms\n");
    c.close_input();
    CHECK(c.wait_exit() == 0);
    CHECK(c.out().find("  #general (") != std::string::npos);
  }
  SECTION("a failed request: 1, with its reason on stderr") {
    auto c = script(d, "alice");
    c.type("/join nowhere\nstill here\n");
    c.close_input();
    CHECK(c.wait_exit() == 1);
    CHECK(c.err().find("! no such room #nowhere") != std::string::npos);
  }
  SECTION("a malformed command: 1, with a usage hint, nothing sent") {
    auto c = script(d, "alice");
    c.type("/join\n/frob\n");
    c.close_input();
    CHECK(c.wait_exit() == 1);
    // Marked as errors like every other error line.
    CHECK(c.err().find("! usage: /join NAME [PASSWORD]") != std::string::npos);
    CHECK(c.err().find("! unknown command /frob") != std::string::npos);
  }
  SECTION("a wrong password: 1") {
    sign_up(d.port(), "dave", "right");
    auto c = script(d, "dave", "wrong");
    CHECK(c.wait_exit() == 1);
    CHECK(c.err().find("wrong password") != std::string::npos);
  }
  SECTION("no account name without a terminal: 2") {
    jim_child c(jim_child::io::pipes, endpoint(d), {{"JIM_PASSWORD", "pw"}});
    CHECK(c.wait_exit() == 2);
    CHECK(c.err().find("-u NAME") != std::string::npos);
  }
  SECTION("no password without a terminal: 2") {
    auto args = endpoint(d);
    args.insert(args.end(), {"-u", "alice"});
    jim_child c(jim_child::io::pipes, args, {{"JIM_PASSWORD", std::nullopt}});
    CHECK(c.wait_exit() == 2);
    CHECK(c.err().find("JIM_PASSWORD") != std::string::npos);
  }
  SECTION("nobody listening: 2") {
    // A bound socket that does not listen: connecting to its port is refused.
    const int s = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in addr{};
    addr.sin_family = AF_INET;
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    REQUIRE(bind(s, reinterpret_cast<sockaddr*>(&addr), sizeof addr) == 0);
    socklen_t len = sizeof addr;
    getsockname(s, reinterpret_cast<sockaddr*>(&addr), &len);
    jim_child c(jim_child::io::pipes,
                {"127.0.0.1", std::to_string(ntohs(addr.sin_port)), "-u", "alice"},
                {{"JIM_PASSWORD", "pw"}});
    CHECK(c.wait_exit() == 2);
    CHECK(c.err().find("cannot connect to 127.0.0.1:") != std::string::npos);
    ::close(s);
  }
  SECTION("a bad option: 2") {
    jim_child c(jim_child::io::pipes, {"--no-such-option"}, {});
    CHECK(c.wait_exit() == 2);
    CHECK(c.err().find("no-such-option") != std::string::npos);
  }
}

TEST_CASE("The password can come from a file", "[integration][client]") {
  jimd_process d;
  sign_up(d.port(), "erin", "from-a-file");
  temp_dir dir;
  const auto file = dir.path() / "pw";
  { std::ofstream(file) << "from-a-file\n"; }
  auto args = endpoint(d);
  args.insert(args.end(), {"-u", "erin", "--password-file", file.string()});
  jim_child c(jim_child::io::pipes, args, {{"JIM_PASSWORD", "not-this-one"}});
  REQUIRE(c.wait_for("* signed in as erin; you are in #general"));
  c.close_input();
  CHECK(c.wait_exit() == 0);
}

// ---- --json ---------------------------------------------------------------------------------

TEST_CASE("JSON mode (--json) prints every frame as one JSON line and sends lines as they are",
          "[integration][client]") {
  jimd_process d;
  sign_up(d.port(), "erin");
  jim_child c(jim_child::io::pipes, {"--json", "127.0.0.1", std::to_string(d.port())}, {});
  c.type(R"({"action":"authenticate","user":{"account_name":"erin","password":"pw"}})"
         "\n"
         R"({"action":"rooms","tag":7})"
         "\n\n"
         "{oops\n");
  c.close_input();
  CHECK(c.wait_exit() == 1);  // the malformed line got a 400
  std::vector<json::object> frames;
  std::istringstream in(c.out());
  for (std::string line; std::getline(in, line);) frames.push_back(json::parse(line).as_object());
  REQUIRE(frames.size() == 3);
  CHECK(code_of(frames[0]) == 200);
  CHECK(code_of(frames[1]) == 200);
  CHECK(frames[1].at("tag") == 7);
  CHECK(frames[1].at("rooms").as_array().size() == 1);
  CHECK(code_of(frames[2]) == 400);
}

TEST_CASE("JSON mode (--json) with -u signs in first, then pipes", "[integration][client]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto args = endpoint(d);
  args.insert(args.end(), {"--json", "-u", "erin"});
  jim_child c(jim_child::io::pipes, args, {{"JIM_PASSWORD", "pw"}});
  REQUIRE(c.wait_for(R"("response":201)"));
  bob.send(R"({"action":"msg","message":"to everyone"})");
  REQUIRE(c.wait_for(R"("message":"to everyone")"));
  c.type(R"({"action":"users"})"
         "\n");
  c.close_input();
  CHECK(c.wait_exit() == 0);
  std::vector<json::object> frames;
  std::istringstream in(c.out());
  for (std::string line; std::getline(in, line);) frames.push_back(json::parse(line).as_object());
  REQUIRE(frames.size() == 5);  // presence 100, register 100, confirm 201, the msg push, users
  CHECK(frames[2].at("room") == "#general");
  CHECK(frames[3].at("from") == "bob");
  CHECK(frames[4].at("users").as_array().size() == 2);
}

// ---- a person at a terminal -----------------------------------------------------------------

TEST_CASE("On a terminal the password is not echoed, and asked twice for a new account",
          "[integration][client]") {
  jimd_process d;
  auto t = terminal(d, {}, std::nullopt);
  REQUIRE(t.wait_for("Name: "));
  t.type("frank\r");
  REQUIRE(t.wait_for("is a new account: choose its password"));
  REQUIRE(t.wait_for("Password: "));
  t.type("Sup3rSecret\r");
  REQUIRE(t.wait_for("Repeat the password: "));
  t.type("Different1\r");
  REQUIRE(t.wait_for("! passwords differ"));
  REQUIRE(t.wait_for("Password: ", t.all().find("! passwords differ")));
  auto m = t.mark();
  t.type("Sup3rSecret\r");
  REQUIRE(t.wait_for("Repeat the password: ", m));
  t.type("Sup3rSecret\r");
  REQUIRE(t.wait_for("* signed in as frank (new account)"));
  REQUIRE(t.wait_for("#general> "));
  CHECK(t.all().find("Sup3rSecret") == std::string::npos);
  CHECK(t.all().find("Different1") == std::string::npos);
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
  sign_in(d.port(), "frank", "Sup3rSecret");  // throws unless the account has that password
}

TEST_CASE("On a terminal a wrong password is told and jim exits non-zero",
          "[integration][client]") {
  jimd_process d;
  sign_up(d.port(), "gina", "right");
  auto t = terminal(d, {"-u", "gina"}, std::nullopt);
  REQUIRE(t.wait_for("Password: "));
  t.type("wrong\r");
  REQUIRE(t.wait_for("! wrong password"));
  CHECK(t.wait_exit() == 1);
}

TEST_CASE("An incoming message does not garble the line being typed", "[integration][client]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "grace"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  t.type("half typed");
  REQUIRE(t.wait_for("half typed"));

  const auto m = t.mark();
  auto r = bob.request(R"({"action":"msg","message":"from bob"})");
  CHECK(r.at("delivered") == 1);
  REQUIRE(t.wait_for("): from bob", m));
  // Printed above the prompt, which comes back with the half-typed line intact.
  const auto shown = t.all().find("): from bob", m);
  CHECK(t.all().find("bob (", m) < shown);
  REQUIRE(t.wait_for("#general> half typed", shown));

  t.type(" and finished\r");
  auto pushed = bob.push();
  CHECK(pushed.at("from") == "grace");
  CHECK(pushed.at("message") == "half typed and finished");
  // One's own message is shown as others see it.
  REQUIRE(t.wait_for("grace (", shown));
  REQUIRE(t.wait_for("): half typed and finished", shown));
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("/quit, Ctrl-D and Ctrl-C leave cleanly", "[integration][client]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "hana"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  SECTION("/quit") {
    t.type("/quit\r");
  }
  SECTION("Ctrl-D on an empty line") {
    t.type("\x04");
  }
  SECTION("Ctrl-C") {
    t.type("typing\x03");
  }
  CHECK(t.wait_exit() == 0);
  CHECK(t.all().find("^D") == std::string::npos);  // libedit draws Ctrl-D so; jim wipes it
  // The server has signed hana out: only bob is left in #general.
  auto users = bob.request(R"({"action":"users"})");
  CHECK(users.at("users").as_array().size() == 1);
}

TEST_CASE("A server shutdown makes the client say why and exit (no-reconnect)", "[integration][client]") {
  jimd_process d;
  auto t = terminal(d, {"-u", "ivan", "--no-reconnect"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  t.type("a draft");
  REQUIRE(t.wait_for("a draft"));
  CHECK(d.stop(SIGINT) == 0);
  REQUIRE(t.wait_for("! server: "));
  CHECK(t.wait_for("shutting down"));
  CHECK(t.wait_for("! the server closed the connection"));
  CHECK(t.wait_exit() == 1);
}

TEST_CASE("A server that dies reads as a lost connection (no-reconnect)", "[integration][client]") {
  jimd_process d;
  auto t = terminal(d, {"-u", "ivan", "--no-reconnect"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  CHECK(d.stop(SIGKILL) == 128 + SIGKILL);
  CHECK(t.wait_for("! connection to 127.0.0.1:" + std::to_string(d.port()) + " lost"));
  CHECK(t.all().find("disconnected by the server") == std::string::npos);
  CHECK(t.wait_exit() == 1);
}

TEST_CASE("Ctrl-C at the password prompt is not a success", "[integration][client]") {
  jimd_process d;
  sign_up(d.port(), "gina", "right");
  auto t = terminal(d, {"-u", "gina"}, std::nullopt);
  REQUIRE(t.wait_for("Password: "));
  t.type("\x03");
  CHECK(t.wait_exit() == 1);
}

TEST_CASE("On a terminal errors are in colour unless NO_COLOR is set", "[integration][client]") {
  jimd_process d;
  SECTION("colour") {
    auto t = terminal(d, {"-u", "jo"}, "pw", true);
    REQUIRE(t.wait_for("#general> "));
    t.type("/join nowhere\r");
    CHECK(t.wait_for("\033[31m! no such room #nowhere"));
    t.type("/quit\r");
    CHECK(t.wait_exit() == 0);
  }
  SECTION("NO_COLOR") {
    auto t = terminal(d, {"-u", "jo"}, "pw", false);
    REQUIRE(t.wait_for("#general> "));
    t.type("/join nowhere\r");
    REQUIRE(t.wait_for("! no such room #nowhere"));
    CHECK(t.all().find("\033[31m") == std::string::npos);
    t.type("/quit\r");
    CHECK(t.wait_exit() == 0);
  }
}

// ---- Unicode at the terminal ----------------------------------------------------------------

TEST_CASE("Non-ASCII text typed on a terminal is sent as typed", "[integration][client][unicode]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  SECTION("no locale set at all") {
    auto t = terminal(d, {"-u", "grace"}, "pw", false, no_locale);
    REQUIRE(t.wait_for("#general> "));
    t.type("café Привет 👋 日本\r");
    auto pushed = bob.push();
    CHECK(pushed.at("message") == "café Привет 👋 日本");
    t.type("/quit\r");
    CHECK(t.wait_exit() == 0);
  }
  SECTION("LC_ALL=C.UTF-8") {
    auto env = no_locale;
    env.push_back({"LC_ALL", "C.UTF-8"});
    auto t = terminal(d, {"-u", "grace"}, "pw", false, env);
    REQUIRE(t.wait_for("#general> "));
    t.type("café Привет 👋\r");
    auto pushed = bob.push();
    CHECK(pushed.at("message") == "café Привет 👋");
    t.type("/quit\r");
    CHECK(t.wait_exit() == 0);
  }
}

TEST_CASE("A half-typed line of wide characters is redrawn in place", "[integration][client][unicode]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "grace"}, "pw", false, no_locale);
  REQUIRE(t.wait_for("#general> "));
  // "#general> " and 40 CJK characters of two columns: 90 columns, the cursor on the second
  // row of an 80-column terminal. Counted as one column each, they would seem to fit in one.
  std::string wide;
  for (int i = 0; i < 40; ++i) wide += "語";
  // libedit breaks the row after 35 characters by itself.
  std::string first_row;
  for (int i = 0; i < 35; ++i) first_row += "語";
  t.type(wide);
  // The whole line is echoed (its first row, then the last 5 on the second) before bob's
  // message comes: otherwise jim would be redrawing a line still being typed.
  REQUIRE(t.wait_for(first_row));
  REQUIRE(t.wait_for("語語語語語", t.all().find(first_row) + first_row.size()));
  const auto m = t.mark();
  bob.request(R"({"action":"msg","message":"from bob"})");
  REQUIRE(t.wait_for("): from bob", m));
  const auto shown = t.all().find("bob (", m);
  // Before printing, jim went up one row to the start of the prompt and cleared below.
  CHECK(t.all().substr(m, shown - m).find("\033[1A\r\033[J") != std::string::npos);
  // The prompt and the line again.
  REQUIRE(t.wait_for("#general> " + first_row, shown));
  t.type("\r");
  CHECK(bob.push().at("message").as_string() == wide);
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("A pasted line of thousands of wide characters is sent intact and jim keeps running",
          "[integration][client][unicode]") {
  // libedit re-encoded such a line into a buffer it moved, and wrote into the old one: jim
  // aborted with "realloc(): invalid next size" on Enter after 2047 x "é" (4094 bytes).
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "grace"}, "pw", false, no_locale);
  REQUIRE(t.wait_for("#general> "));
  // Typed 16 characters at a time, each lot echoed before the next: jim's echo is read while
  // it types (a terminal whose output nobody reads stops jim).
  auto paste = [&t](std::string const& ch, int count, std::string_view then = "\r") {
    for (int i = 0; i < count; i += 16) {
      std::string lot;
      for (int j = i; j < std::min(count, i + 16); ++j) lot += ch;
      const auto m = t.mark();
      t.type(lot);
      REQUIRE(t.wait_for(ch, m, 20s));
    }
    t.type(then);
  };
  std::string e_acute;
  for (int i = 0; i < 2047; ++i) e_acute += "é";
  paste("é", 2047);
  CHECK(bob.push(20s).at("message").as_string() == e_acute);
  // 6300 bytes: two messages of at most --max-message (4096) bytes, cut between characters.
  std::string cjk;
  for (int i = 0; i < 2100; ++i) cjk += "日";
  paste("日", 2100);
  std::string got(bob.push(20s).at("message").as_string());
  CHECK(got.size() <= 4096);
  got += bob.push(20s).at("message").as_string();
  CHECK(got == cjk);
  // And after the long lines jim still edits and sends short ones.
  t.type("still here\r");
  CHECK(bob.push().at("message").as_string() == "still here");
  // Tab after the long lines completes a command and a name (the line before the word is read
  // whole: libedit's rl_copy_text() would have cut "/ms" to "/m").
  t.type("/users\r");
  REQUIRE(t.wait_for("* in #general: "));
  t.type("/ms\t");
  t.type("bo\t");
  t.type("after the long lines\r");
  auto pushed = bob.push();
  CHECK(pushed.at("to") == "bob");
  CHECK(pushed.at("message") == "after the long lines");
  // And at the end of a long line of wide characters (3900 bytes in 1300 characters; libedit
  // counts characters where it completes).
  std::string line;
  for (int i = 0; i < 1300; ++i) line += "日";
  paste("日", 1300, " bo\t");
  t.type("hi\r");
  CHECK(bob.push(20s).at("message").as_string() == line + " bob hi");
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

namespace {

/// bob's next push, read while `t`'s terminal is read too (see gather()).
json::object next_push(client& bob, jim_child& t) {
  const auto deadline = steady::now() + 20s;
  while (bob.silent_for(10ms) && steady::now() < deadline) t.read_for(10ms);
  return bob.push(1s);
}

}  // namespace

TEST_CASE(
    "A typed line stops growing at 30000 bytes: the bell rings, Backspace and Enter still work",
    "[integration][client][unicode]") {
  // jim keeps every line under a bound (max_line_bytes in client/src/console.cpp); a full line
  // drops printable keys without echoing them.
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "grace"}, "pw", false, no_locale);
  REQUIRE(t.wait_for("#general> "));
  // 10000 x "日" (30000 bytes), 50 at a time, each lot echoed before the next.
  std::string lot;
  for (int i = 0; i < 50; ++i) lot += "日";
  for (int i = 0; i < 10000; i += 50) {
    const auto m = t.mark();
    t.type(lot);
    REQUIRE(t.wait_for("日", m, 20s));
  }
  // The line is full: more is dropped, with one bell.
  auto m = t.mark();
  t.type("日日x");
  REQUIRE(t.wait_for("\a", m, 20s));
  // Backspace takes the last character away, and then one more fits.
  t.type("\x7f");
  m = t.mark();
  t.type("z");
  REQUIRE(t.wait_for("z", m, 20s));
  t.type("\r");
  std::string expected;
  for (int i = 0; i < 9999; ++i) expected += "日";
  expected += "z";
  std::string got;
  for (int i = 0; i < 16 && got.size() < expected.size(); ++i) {
    const auto piece = std::string(next_push(bob, t).at("message").as_string());
    CHECK(piece.size() <= 4096);
    got += piece;
  }
  CHECK(got == expected);
  t.type("still here\r");
  CHECK(bob.push().at("message").as_string() == "still here");
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

namespace {

/// The messages bob gets before one that is `marker` (at most 64, within 60 s), joined: the
/// pieces of a long line typed on `t` before a line `marker`. `t`'s terminal is read
/// meanwhile: jim's echo of a long line fills it, and jim then waits for it to be read.
std::string gather(client& bob, jim_child& t, std::string_view marker = "--end--") {
  std::string got;
  const auto deadline = steady::now() + 60s;
  for (int i = 0; i < 64 && steady::now() < deadline; ++i) {
    const auto piece = std::string(next_push(bob, t).at("message").as_string());
    if (piece == marker) break;
    CHECK(piece.size() <= 4096);
    got += piece;
  }
  return got;
}

std::string repeated(std::string_view unit, std::size_t n) {
  std::string out;
  for (std::size_t i = 0; i < n; ++i) out += unit;
  return out;
}

}  // namespace

TEST_CASE("Whatever ~/.editrc binds, jim stays up and a line keeps at most 30000 bytes",
          "[integration][client][unicode][editrc]") {
  // Issue 16: with `bind ^T em-universal-argument`, Ctrl-T x 10 and an emoji crashed jim
  // (SIGSEGV: a 4^10-fold insertion overran libedit's re-encoded line), and with `a` one
  // 65536-byte line was sent.
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  temp_dir home;
  {
    std::ofstream rc(home.path() / ".editrc");
    rc << "# repeat counts, a long string, and one longer than libedit can take\n"
       << "bind ^T em-universal-argument\n"
       << "jim:bind -s ^] " << repeated("b", 1000) << "\n"
       << "bind -s ^G " << repeated("c", 40000) << "\n"
       << "bind ^K ed-kill-line\n";
  }
  auto t = terminal(d, {"-u", "grace"}, "pw", false, {{"HOME", home.path().string()}, {"EDITRC", std::nullopt}});
  REQUIRE(t.wait_for("#general> "));
  CHECK(t.all().find(".editrc:4: skipped (a word longer than 1000 bytes") != std::string::npos);
  const std::string emoji = "\xF0\x9F\x98\x80";  // U+1F600, 4 bytes
  auto only = [](std::string const& text, std::string_view unit) {
    if (text.empty() || text.size() % unit.size() != 0) return false;
    for (std::size_t i = 0; i < text.size(); i += unit.size())
      if (text.compare(i, unit.size(), unit) != 0) return false;
    return true;
  };
  SECTION("Ctrl-T ten times: a repeat count of more than six keys is dropped") {
    t.type(repeated("\x14", 10) + emoji + "\r--end--\r");
    const auto got = gather(bob, t);
    CHECK(got.size() <= 30000);
    CHECK(only(got, emoji));
    t.type(repeated("\x14", 10) + "a\r--end--\r");
    const auto more = gather(bob, t);
    CHECK(more.size() <= 30000);
    CHECK(only(more, "a"));
  }
  SECTION("a count of 99999 emoji is cut to 30000 bytes") {
    t.type("\x14" "99999" + emoji + "\r--end--\r");
    CHECK(gather(bob, t) == repeated(emoji, 7500));
  }
  SECTION("a count of 99999 letters is cut to 30000 bytes") {
    t.type("\x14" "99999a\r--end--\r");
    CHECK(gather(bob, t) == repeated("a", 30000));
  }
  SECTION("a 1000-character string bound to a key, 40 times") {
    t.type(repeated("\x1d", 40) + "\r--end--\r");
    CHECK(gather(bob, t) == repeated("b", 30000));
  }
  SECTION("yanks of a long kill") {
    // 20000 letters (a count), killed, yanked three times: libedit refuses a yank its buffer
    // cannot hold, and what passes 30000 bytes is cut.
    t.type("\x14" "20000x\x01\x0b\x19\x19\x19\r--end--\r");
    const auto got = gather(bob, t);
    CHECK(got.size() >= 20000);
    CHECK(got.size() <= 30000);
    CHECK(only(got, "x"));
  }
  // jim is alive and edits as before.
  t.type("still here\r");
  CHECK(bob.push(20s).at("message").as_string() == "still here");
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("Counts, searches and vi mode still work under the bound on counts", "[integration][client][editrc]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  temp_dir home;
  SECTION("emacs: ESC-digit counts, and Ctrl-R finds a line with a long search") {
    auto t = terminal(d, {"-u", "grace"}, "pw", false, {{"HOME", home.path().string()}, {"EDITRC", std::nullopt}});
    REQUIRE(t.wait_for("#general> "));
    t.type("\x1b" "1\x1b" "2a\r");  // M-1 M-2 a: twelve of them
    CHECK(bob.push().at("message") == "aaaaaaaaaaaa");
    t.type("\x1b" "9999999a\r");  // a count of seven keys is dropped, all its digits: "a" is typed
    CHECK(bob.push().at("message") == "a");
    t.type("unique search text here\r");
    CHECK(bob.push().at("message") == "unique search text here");
    t.type("other\r");
    CHECK(bob.push().at("message") == "other");
    t.type("\x12" "search text here");  // Ctrl-R and 16 keys
    t.type("\r");
    CHECK(bob.push().at("message") == "unique search text here");
    t.type("/quit\r");
    CHECK(t.wait_exit() == 0);
  }
  SECTION("vi: ESC then a digit is the command mode's") {
    {
      std::ofstream rc(home.path() / ".editrc");
      rc << "bind -v\n";
    }
    auto t = terminal(d, {"-u", "grace"}, "pw", false, {{"HOME", home.path().string()}, {"EDITRC", std::nullopt}});
    REQUIRE(t.wait_for("#general> "));
    t.type("abc\x1b" "0xA!\r");  // to the start, delete "a", append "!"
    CHECK(bob.push().at("message") == "bc!");
    // Command mode, then a count of seven digits: dropped with its seventh digit, and libedit
    // reset (insert mode): "x" is typed.
    t.type("\x1b" "9999999x");
    t.type("ok\r");
    CHECK(bob.push().at("message") == "xok");
    t.type("/quit\r");
    CHECK(t.wait_exit() == 0);
  }
}

TEST_CASE("A paste of 30000 characters at once arrives intact", "[integration][client][paste]") {
  // Issue 16: libedit's readline emulation re-encoded the whole line after every key: 30000
  // pasted characters took 85 s. Timed tests are not benchmarks: the bound is generous.
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "grace"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  std::string text;
  for (int i = 0; text.size() < 30000; ++i) text += std::to_string(i % 10);
  text.resize(30000);
  const auto started = steady::now();
  REQUIRE(t.paste(text + "\r--end--\r"));
  CHECK(gather(bob, t) == text);
  const auto took = std::chrono::duration_cast<std::chrono::milliseconds>(steady::now() - started);
  WARN("30000 pasted characters arrived in " << took.count() << " ms");
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("A line with a control character is not sent and comes back for editing",
          "[integration][client]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  SECTION("typed with Ctrl-V on a terminal") {
    auto t = terminal(d, {"-u", "grace"}, "pw");
    REQUIRE(t.wait_for("#general> "));
    auto m = t.mark();
    t.type("\x16\x1b[31mred\r");  // Ctrl-V ESC: a raw escape sequence
    REQUIRE(t.wait_for("! not sent: the line has a control character, ^[ (U+001B), at character 1; jim sends "
                       "none but tab (the line is kept for editing: fix it, or Ctrl-U clears it)", m));
    // The line is offered again: Ctrl-A, Ctrl-D (the ESC goes), Enter.
    const auto after = t.all().find("jim sends none but tab", m);
    REQUIRE(t.wait_for("#general> ^[[31mred", after));
    t.type("\x01\x04\r");
    CHECK(bob.push().at("message") == "[31mred");  // the first message bob gets: nothing before
    // BEL too, anywhere in the line, and in a command.
    m = t.mark();
    t.type("/msg bob ding\x16\x07\r");
    REQUIRE(t.wait_for("^G (U+0007), at character 14", m));
    t.type("\x08\r");  // Backspace takes the BEL away
    const auto pushed = bob.push();
    CHECK(pushed.at("to") == "bob");
    CHECK(pushed.at("message") == "ding");
    t.type("/quit\r");
    CHECK(t.wait_exit() == 0);
  }
  SECTION("from a script") {
    auto c = script(d, "grace");
    REQUIRE(c.wait_for("* signed in as grace"));
    c.type("beep\x07\nfine\n");
    CHECK(bob.push().at("message") == "fine");
    c.close_input();
    CHECK(c.wait_exit() == 1);  // a refused line is a failure for a script
    CHECK(c.err().find("! not sent: the line has a control character, ^G (U+0007), at character 5") !=
          std::string::npos);
  }
}

TEST_CASE("Multi-line messages show as indented rows, bidi overrides are neutralised",
          "[integration][client][unicode]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "grace"}, "pw", false, no_locale);
  REQUIRE(t.wait_for("#general> "));
  const auto m = t.mark();
  bob.request(R"({"action":"msg","message":"first line\nsecond line\r\nthird"})");
  REQUIRE(t.wait_for("third", m));
  const auto text = t.all().substr(m);
  CHECK(text.find("^J") == std::string::npos);
  // "bob (HH:MM): " is 13 columns: the next rows start there.
  CHECK(text.find("): first line\r\n             second line\r\n             third") != std::string::npos);

  const auto m2 = t.mark();
  bob.request(R"({"action":"msg","message":"invoice \u202Efdp.exe"})");
  REQUIRE(t.wait_for("invoice ?fdp.exe", m2));
  CHECK(t.all().find("\u202E") == std::string::npos);
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

// ---- the screen shows only what the server confirmed ----------------------------------------

TEST_CASE("A refused message is never shown as sent", "[integration][client][confirm]") {
  jimd_process d;
  auto t = terminal(d, {"-u", "hana"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  const auto m = t.mark();
  t.type("/msg nobody hi\r");
  REQUIRE(t.wait_for("! not sent to nobody: hi (no such account nobody)", m));
  CHECK(t.all().find("-> nobody", m) == std::string::npos);
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("A private message to oneself is shown once", "[integration][client][confirm]") {
  jimd_process d;
  auto t = terminal(d, {"-u", "hana"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  const auto m = t.mark();
  t.type("/msg hana note to self\r");
  REQUIRE(t.wait_for("[private] hana -> hana (", m));
  t.type("/users\r");  // its reply comes after the push of the note: the push was handled
  REQUIRE(t.wait_for("* in #general:", m));
  CHECK(count_of(t.all(), "): note to self", m) == 1);
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("A pasted burst over the rate limit is sent in order, every line shown once",
          "[integration][client][confirm]") {
  jimd_process d({"--rate-limit", "20", "--rate-burst", "5"});
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "hana"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  std::string paste;
  for (int i = 1; i <= 25; ++i) paste += "line " + std::to_string(i) + "\r";
  const auto m = t.mark();
  t.type(paste);
  for (int i = 1; i <= 25; ++i) CHECK(bob.push().at("message").as_string() == "line " + std::to_string(i));
  REQUIRE(t.wait_for("): line 25\r\n", m));
  for (int i = 1; i <= 25; ++i) CHECK(count_of(t.all(), "): line " + std::to_string(i) + "\r\n", m) == 1);
  CHECK(t.all().find("! ", m) == std::string::npos);
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("A text longer than the message limit goes as several messages", "[integration][client][confirm]") {
  jimd_process d({"--max-message", "100"});
  auto bob = sign_up(d.port(), "bob");
  std::string text;
  for (int i = 0; text.size() < 230; ++i) text += "Привет " + std::to_string(i) + " ";  // 2-byte letters
  auto check_pieces = [&] {
    std::string got;
    while (got.size() < text.size()) {
      const auto piece = std::string(bob.push().at("message").as_string());
      CHECK(piece.size() <= 100);
      got += piece;
    }
    CHECK(got == text);
  };
  SECTION("split by jim with --max-message") {
    auto c = script(d, "hana", "pw", {"--max-message", "100"});
    c.type(text + "\n");
    check_pieces();
    c.close_input();
    CHECK(c.wait_exit() == 0);
  }
  SECTION("split again after the server's 413") {
    auto c = script(d, "hana");
    c.type(text + "\n");
    check_pieces();
    c.close_input();
    CHECK(c.wait_exit() == 0);
    CHECK(c.err().empty());
  }
}

// ---- smaller things -------------------------------------------------------------------------

TEST_CASE("Names show as registered, not as typed", "[integration][client]") {
  jimd_process d;
  sign_up(d.port(), "Alice");
  auto t = terminal(d, {"-u", "ALICE"}, "pw");
  REQUIRE(t.wait_for("* signed in as Alice; you are in #general"));
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("Tab completes commands, names and rooms, not file names", "[integration][client]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bobby");
  bob.request(R"({"action":"create","room":"devroom"})");
  bob.request(R"({"action":"exit"})");
  auto t = terminal(d, {"-u", "hana"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  // Replies come in order: once /users is answered, jim's own quiet lists at sign-in are too.
  t.type("/users\r");
  REQUIRE(t.wait_for("* in #general: "));
  // A command, then a name (bobby is online in #general): what is sent tells what completed.
  t.type("/ms\t");
  t.type("bo\t");
  t.type("hello\r");
  auto pushed = bob.push();
  CHECK(pushed.at("to") == "bobby");
  CHECK(pushed.at("message") == "hello");
  // A room known from the room list.
  const auto m = t.mark();
  t.type("/join gen\t\r");
  REQUIRE(t.wait_for("* you are in #general", m));
  // Several candidates and nothing to add: Tab again lists them.
  const auto m2 = t.mark();
  t.type("/s\t");
  t.type("\t");
  REQUIRE(t.wait_for("/scheduled  /switch", m2));
  t.type("\x15");  // Ctrl-U: the line goes
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("A room password does not stay in the input history", "[integration][client]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  const auto created = bob.request(R"({"action":"create","room":"dev"})");
  const std::string password(created.at("password").as_string());
  auto t = terminal(d, {"-u", "hana"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  t.type("/join dev " + password + "\r");
  REQUIRE(t.wait_for("* you are in #dev"));
  REQUIRE(t.wait_for("#dev> "));
  const auto m = t.mark();
  t.type("\033[A");  // up: the last line entered
  REQUIRE(t.wait_for("/join dev", m));
  CHECK(t.all().find(password, m) == std::string::npos);
  t.type("\r");  // a member needs no password any more
  REQUIRE(t.wait_for("* you are in #dev", m));
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("/history NAME pages a private conversation", "[integration][client]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto c = script(d, "hana");
  REQUIRE(c.wait_for("* signed in as hana"));
  bob.request(R"({"action":"msg","to":"hana","message":"just between us"})");
  REQUIRE(c.wait_for("): just between us"));
  const auto m = c.mark();
  c.type("/history bob\n");
  c.close_input();
  CHECK(c.wait_exit() == 0);
  CHECK(lines_with(c.all().substr(m), "[history] [private] bob (").size() == 1);
}

// ---- TLS (issue 14) -------------------------------------------------------------------------

namespace {

std::vector<std::string> tls_server(test_ca::issued const& cert, std::vector<std::string> more = {}) {
  std::vector<std::string> args{"--tls-cert", cert.cert.string(), "--tls-key", cert.key.string()};
  args.insert(args.end(), more.begin(), more.end());
  return args;
}

}  // namespace

TEST_CASE("jim over TLS verifies the server against the CA of --ca-file", "[integration][client][tls]") {
  test_ca ca;
  const auto cert = ca.server_cert("server", 11);  // localhost and 127.0.0.1
  jimd_process d(tls_server(cert));
  auto bob = sign_up(d.port(), "bob");  // plaintext, on the same port
  SECTION("the right CA: signed in, and the chat works") {
    auto c = script(d, "alice", "pw", {"--ca-file", ca.ca_file().string()});
    REQUIRE(c.wait_for("* signed in as alice"));
    c.type("sent over TLS\n");
    CHECK(bob.push().at("message") == "sent over TLS");
    bob.request(R"({"action":"msg","message":"back in clear"})");
    REQUIRE(c.wait_for("): back in clear"));
    c.close_input();
    CHECK(c.wait_exit() == 0);
    CHECK(c.err().empty());
  }
  SECTION("another CA: refused, and told why") {
    test_ca other("another CA");
    auto c = script(d, "alice", "pw", {"--ca-file", other.ca_file().string()});
    CHECK(c.wait_exit() == 2);
    CHECK(c.err().find("cannot connect to 127.0.0.1:") != std::string::npos);
    CHECK(c.err().find("the server's certificate was refused") != std::string::npos);
    CHECK(c.err().find("--ca-file") != std::string::npos);
  }
  SECTION("--tls alone: the system's CAs do not know a throwaway CA") {
    auto c = script(d, "alice", "pw", {"--tls"});
    CHECK(c.wait_exit() == 2);
    CHECK(c.err().find("the server's certificate was refused") != std::string::npos);
  }
  SECTION("--insecure: connects without checking, with a warning") {
    auto c = script(d, "alice", "pw", {"--insecure"});
    REQUIRE(c.wait_for("* signed in as alice"));
    c.close_input();
    CHECK(c.wait_exit() == 0);
    CHECK(c.err().find("warning: --insecure") != std::string::npos);
  }
  SECTION("a CA file that cannot be read: a usage error") {
    auto c = script(d, "alice", "pw", {"--ca-file", "/nonexistent/ca.pem"});
    CHECK(c.wait_exit() == 2);
    CHECK(c.err().find("/nonexistent/ca.pem") != std::string::npos);
  }
}

TEST_CASE("jim over TLS refuses a certificate made out to another host", "[integration][client][tls]") {
  test_ca ca;
  const auto cert = ca.server_cert("server", 12, "chat.example", false);
  jimd_process d(tls_server(cert));
  auto c = script(d, "alice", "pw", {"--ca-file", ca.ca_file().string()});
  CHECK(c.wait_exit() == 2);
  CHECK(c.err().find("the server's certificate was refused: the certificate is not for 127.0.0.1") !=
        std::string::npos);
}

TEST_CASE("jim over TLS on a terminal, and plaintext refused by --tls-required", "[integration][client][tls]") {
  test_ca ca;
  const auto cert = ca.server_cert("server", 13);
  jimd_process d(tls_server(cert, {"--tls-required"}));
  {
    auto plain = script(d, "alice");
    CHECK(plain.wait_exit() == 1);
    CHECK(plain.err().find("TLS required") != std::string::npos);
    CHECK(plain.err().find("jim --tls") != std::string::npos);
  }
  auto t = terminal(d, {"-u", "alice", "--ca-file", ca.ca_file().string()}, "pw");
  REQUIRE(t.wait_for("* signed in as alice"));
  REQUIRE(t.wait_for("#general> "));
  t.type("/rooms\r");
  REQUIRE(t.wait_for("  #general ("));
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

// ---- resume tokens, reconnecting, saved history (issues 14 and 15) ---------------------------

namespace {

namespace fs = std::filesystem;

/// Whether the daemon gives resume tokens (a password sign-in reply carries "token").
bool gives_tokens(jimd_process const& d) {
  client c(d.port());
  auto r = c.request(R"({"action":"register","user":{"account_name":"token-probe","password":"pw"}})");
  return r.contains("token");
}

std::string read_file(fs::path const& p) {
  std::ifstream in(p);
  std::stringstream ss;
  ss << in.rdbuf();
  return ss.str();
}

fs::perms mode_of(fs::path const& p) { return fs::status(p).permissions() & fs::perms::all; }

/// The state directory of jim as a variable for the child.
env_var state_home(temp_dir const& dir) { return {"XDG_STATE_HOME", dir.path().string()}; }

/// The token file of `account` on daemon `d` under the state dir `dir`.
fs::path token_file(temp_dir const& dir, jimd_process const& d, std::string const& account) {
  return dir.path() / "jim" / "tokens" / (account + "@127.0.0.1:" + std::to_string(d.port()));
}

}  // namespace

TEST_CASE("A token that the server refuses is forgotten and the password used", "[integration][client][token]") {
  jimd_process d;
  sign_up(d.port(), "alice", "pw");
  temp_dir state;
  const auto file = token_file(state, d, "alice");
  fs::create_directories(file.parent_path());
  { std::ofstream(file) << "not-a-token-the-server-gave\n"; }
  SECTION("a script with JIM_PASSWORD") {
    auto args = endpoint(d);
    args.insert(args.end(), {"-u", "alice"});
    jim_child c(jim_child::io::pipes, args, {{"JIM_PASSWORD", "pw"}, state_home(state)});
    REQUIRE(c.wait_for("* signed in as alice; you are in #general"));
    c.close_input();
    CHECK(c.wait_exit() == 0);  // the refused token is no failure
    CHECK(c.err().empty());
  }
  SECTION("a person: asked for the password") {
    auto t = terminal(d, {"-u", "alice"}, std::nullopt, false, {state_home(state)});
    REQUIRE(t.wait_for("is no longer valid: the password, please"));
    REQUIRE(t.wait_for("Password: "));
    t.type("pw\r");
    REQUIRE(t.wait_for("* signed in as alice"));
    t.type("/quit\r");
    CHECK(t.wait_exit() == 0);
  }
  // Forgotten, or replaced by the one this sign-in got.
  CHECK(read_file(file).find("not-a-token-the-server-gave") == std::string::npos);
}

TEST_CASE("jim saves its token, signs in with it next time, and /logout revokes it",
          "[integration][client][token]") {
  jimd_process d;
  if (!gives_tokens(d)) {
    WARN("pending: this jimd gives no resume tokens yet (branch sec14)");
    return;
  }
  temp_dir state;
  const auto file = token_file(state, d, "alice");
  {
    auto t = terminal(d, {"-u", "alice"}, std::nullopt, false, {state_home(state)});
    REQUIRE(t.wait_for("Password: "));
    t.type("Secret-1\r");
    REQUIRE(t.wait_for("Repeat the password: "));
    t.type("Secret-1\r");
    REQUIRE(t.wait_for("#general> "));
    t.type("/quit\r");
    CHECK(t.wait_exit() == 0);
  }
  REQUIRE(fs::exists(file));
  CHECK(mode_of(file) == (fs::perms::owner_read | fs::perms::owner_write));
  CHECK(mode_of(state.path() / "jim") == fs::perms::owner_all);
  CHECK(mode_of(file.parent_path()) == fs::perms::owner_all);
  std::string token = read_file(file);
  while (!token.empty() && token.back() == '\n') token.pop_back();
  CHECK(token.size() >= 22);  // 128 bits in base64url
  // No password anywhere in the state directory.
  for (auto const& e : fs::recursive_directory_iterator(state.path()))
    if (e.is_regular_file()) CHECK(read_file(e.path()).find("Secret-1") == std::string::npos);

  {
    // Next time: no password asked (none is given either).
    auto t = terminal(d, {"-u", "ALICE"}, std::nullopt, false, {state_home(state)});
    REQUIRE(t.wait_for("* signed in as alice; you are in #general"));
    CHECK(t.all().find("Password:") == std::string::npos);
    t.type("/logout\r");
    REQUIRE(t.wait_for("* signed out"));
    CHECK(t.wait_exit() == 0);
  }
  CHECK(!fs::exists(file));
  // The server no longer takes it.
  client c(d.port());
  auto r = c.request(json::serialize(json::object{
      {"action", "authenticate"}, {"user", json::object{{"account_name", "alice"}, {"token", token}}}}));
  CHECK(code_of(r) == 402);
  {
    auto t = terminal(d, {"-u", "alice"}, std::nullopt, false, {state_home(state)});
    REQUIRE(t.wait_for("Password: "));
  }
}

TEST_CASE("jim reconnects after a server restart, re-enters its room and shows only what it missed",
          "[integration][client][reconnect]") {
  temp_dir data;
  std::optional<jimd_process> d;
  d.emplace(std::vector<std::string>{}, data.path());
  const auto port = std::to_string(d->port());
  sign_up(d->port(), "hana").request(R"({"action":"quit"})");
  auto bob = sign_up(d->port(), "bob");
  CHECK(code_of(bob.request(R"({"action":"create","room":"den"})")) == 201);
  CHECK(code_of(bob.request(R"({"action":"invite","user":"hana","room":"den"})")) == 200);

  const bool tokens = gives_tokens(*d);
  // With tokens a person types the password once; without, jim needs it from JIM_PASSWORD.
  auto t = terminal(*d, {"-u", "hana"}, tokens ? std::nullopt : std::optional<std::string>("pw"));
  if (tokens) {
    REQUIRE(t.wait_for("Password: "));
    t.type("pw\r");
  }
  REQUIRE(t.wait_for("#general> "));
  t.type("/join den\r");
  REQUIRE(t.wait_for("* you are in #den"));
  bob.request(R"({"action":"msg","message":"seen before the restart"})");
  REQUIRE(t.wait_for("): seen before the restart"));
  bob.close();

  // The server stops; while it is down, bob says something in #den (on another port of the
  // same data, so that jim cannot be back before it is said).
  auto m = t.mark();
  CHECK(d->stop(SIGINT) == 0);
  d.reset();
  REQUIRE(t.wait_for("; reconnecting (Ctrl-D or /quit to leave)", m));
  REQUIRE(t.wait_for("(reconnecting) #den> ", m));
  {
    jimd_process aside({}, data.path());
    auto b = sign_in(aside.port(), "bob");
    b.request(R"({"action":"join","room":"den"})");
    CHECK(code_of(b.request(R"({"action":"msg","message":"said while hana was away"})")) == 200);
    b.request(R"({"action":"quit"})");
    CHECK(aside.stop(SIGINT) == 0);
  }
  // A failed attempt or two are told; then the server is back on its port.
  REQUIRE(t.wait_for("* reconnect attempt 1 failed", m));
  d.emplace(std::vector<std::string>{"--port", port}, data.path());
  REQUIRE(t.wait_for("* reconnected as hana", m, 40s));
  REQUIRE(t.wait_for("* you are in #den", m));
  REQUIRE(t.wait_for("): said while hana was away", m));
  REQUIRE(t.wait_for("#den> ", t.all().find("* you are in #den", m)));
  CHECK(t.all().find("seen before the restart", m) == std::string::npos);
  CHECK(t.all().find("Password:", m) == std::string::npos);

  // And chats on in #den.
  auto b2 = sign_in(d->port(), "bob");
  b2.request(R"({"action":"join","room":"den"})");
  t.type("I am back\r");
  json::object got;
  for (int i = 0; i < 20; ++i) {
    got = b2.push();
    if (got.at("action") == "msg" && got.at("message") == "I am back") break;
  }
  CHECK(got.at("to") == "#den");
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("Ctrl-D while reconnecting leaves at once", "[integration][client][reconnect]") {
  std::optional<jimd_process> d;
  d.emplace();
  auto t = terminal(*d, {"-u", "hana"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  CHECK(d->stop(SIGKILL) == 128 + SIGKILL);
  REQUIRE(t.wait_for("; reconnecting (Ctrl-D or /quit to leave)"));
  REQUIRE(t.wait_for("(reconnecting) #general> "));
  const auto m = t.mark();
  t.type("typed while away\r");
  REQUIRE(t.wait_for("* not connected: what you type is sent once jim has reconnected", m));
  // The next line's prompt first: a key typed in the instant between two lines, while the
  // terminal is not in jim's editing mode, is read by the terminal's own line discipline (a
  // Ctrl-D there was lost in 4 of 8 runs at load 10).
  REQUIRE(t.wait_for("(reconnecting) #general> ", t.all().find("* not connected", m)));
  t.type("\x04");
  const auto status = t.wait_exit(3s);
  INFO(t.all());
  CHECK(status == 0);
  CHECK(t.all().find("! not sent: typed while away (you left while disconnected)") != std::string::npos);
}

TEST_CASE("A takeover by another sign-in is not fought back", "[integration][client][reconnect]") {
  // One session per account (--max-sessions 1 where the daemon has that option).
  std::optional<jimd_process> started;
  try {
    started.emplace(std::vector<std::string>{"--max-sessions", "1"});
  } catch (std::runtime_error const&) {
    started.emplace();
  }
  auto& d = *started;
  auto t = terminal(d, {"-u", "hana"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  auto other = sign_in(d.port(), "hana");
  REQUIRE(t.wait_for("! server: signed in from another connection"));
  CHECK(t.wait_exit() == 1);
  CHECK(t.all().find("reconnecting") == std::string::npos);
}

TEST_CASE("The input history is kept between runs, without passwords", "[integration][client][history]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  const auto created = bob.request(R"({"action":"create","room":"dev"})");
  const std::string room_password(created.at("password").as_string());
  bob.request(R"({"action":"exit"})");
  // The next message pushed to bob (events skipped).
  auto next_msg = [&bob] {
    for (int i = 0; i < 20; ++i)
      if (auto p = bob.push(); p.at("action") == "msg") return std::string(p.at("message").as_string());
    return std::string();
  };
  temp_dir state;
  {
    auto t = terminal(d, {"-u", "hana"}, std::nullopt, false, {state_home(state)});
    REQUIRE(t.wait_for("Password: "));
    t.type("Pass-Word-9\r");
    REQUIRE(t.wait_for("Repeat the password: "));
    t.type("Pass-Word-9\r");
    REQUIRE(t.wait_for("#general> "));
    t.type("first line kept\r");
    CHECK(next_msg() == "first line kept");
    t.type("/join dev " + room_password + "\r");
    REQUIRE(t.wait_for("* you are in #dev"));
    t.type("/quit\r");
    CHECK(t.wait_exit() == 0);
  }
  const auto file = state.path() / "jim" / "history";
  REQUIRE(fs::exists(file));
  CHECK(mode_of(file) == (fs::perms::owner_read | fs::perms::owner_write));
  const auto kept = read_file(file);
  CHECK(kept.find("first") != std::string::npos);
  CHECK(kept.find("Pass-Word-9") == std::string::npos);
  CHECK(kept.find(room_password) == std::string::npos);
  {
    auto t = terminal(d, {"-u", "hana"}, "Pass-Word-9", false, {state_home(state)});
    REQUIRE(t.wait_for("#general> "));
    auto m = t.mark();
    t.type("\033[A");  // up: the last line of the previous run
    REQUIRE(t.wait_for("/quit", m));
    t.type("\033[A");
    // libedit redraws only what changed: "/join dev" over "/quit" writes "join dev".
    REQUIRE(t.wait_for("join dev", m));
    t.type("\033[A");
    REQUIRE(t.wait_for("first line kept", m));
    t.type("\r");
    CHECK(next_msg() == "first line kept");
    t.type("/quit\r");
    CHECK(t.wait_exit() == 0);
  }
}

TEST_CASE("An input history entry longer than a typed line may be is not loaded",
          "[integration][client][history]") {
  // Recalled, it would make a line past the bound jim keeps lines under (max_line_bytes in
  // client/src/console.cpp).
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  temp_dir state;
  {
    auto t = terminal(d, {"-u", "hana"}, "pw", false, {state_home(state)});
    REQUIRE(t.wait_for("#general> "));
    t.type("/quit\r");
    CHECK(t.wait_exit() == 0);
  }
  const auto file = state.path() / "jim" / "history";
  REQUIRE(read_file(file).find("/quit") != std::string::npos);
  {
    std::ofstream out(file, std::ios::app);
    out << std::string(40000, 'a') << "\nsecond\n";
  }
  auto t = terminal(d, {"-u", "hana"}, "pw", false, {state_home(state)});
  REQUIRE(t.wait_for("#general> "));
  const auto m = t.mark();
  t.type("\033[A");  // up: the newest entry
  REQUIRE(t.wait_for("second", m));
  t.type("\033[A");  // the one before it in the file was too long
  REQUIRE(t.wait_for("/quit", m));
  CHECK(t.all().find("aaaaaaaaaa", m) == std::string::npos);
  t.type("\r");
  CHECK(t.wait_exit() == 0);
}

// ---- a busy server (429/503 with retry_after) at connect time (issue 14) --------------------

namespace {

/// A listening socket on 127.0.0.1:`port` that stands in for a busy server.
int listen_on(std::uint16_t port) {
  const int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  const int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (fd < 0 || ::bind(fd, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0 || ::listen(fd, 8) != 0)
    throw std::runtime_error("cannot listen on port " + std::to_string(port));
  return fd;
}

/// Accepts one connection on `listener` (within 15 s), reads its first line, answers with
/// `frame` as a refusing jimd does (one frame, then the close) and closes the listener unless
/// `keep_listening`. Returns the line the client sent.
std::string refuse_once(int listener, std::string const& frame, bool keep_listening = false) {
  const auto deadline = steady::now() + 15s;
  pollfd p{listener, POLLIN, 0};
  if (poll(&p, 1, ms_until(deadline)) != 1) {
    ::close(listener);
    throw std::runtime_error("nobody connected to the busy stand-in");
  }
  const int c = ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC);
  if (!keep_listening) ::close(listener);
  std::string got;
  char buf[1024];
  while (got.find('\n') == std::string::npos) {
    pollfd q{c, POLLIN, 0};
    if (poll(&q, 1, ms_until(deadline)) != 1) break;
    const ssize_t n = ::read(c, buf, sizeof buf);
    if (n <= 0) break;
    got.append(buf, static_cast<std::size_t>(n));
  }
  const std::string line = frame + "\n";
  (void)!::write(c, line.data(), line.size());
  ::shutdown(c, SHUT_WR);
  // Until the client closes (it has read the frame), so that nothing is cut by a reset.
  for (;;) {
    pollfd q{c, POLLIN, 0};
    if (poll(&q, 1, std::min(ms_until(deadline), 5000)) != 1) break;
    if (::read(c, buf, sizeof buf) <= 0) break;
  }
  ::close(c);
  return got;
}

/// Writes all `n` bytes of `data` to `fd`; false when the peer is gone.
bool write_all(int fd, char const* data, std::size_t n) {
  while (n > 0) {
    const ssize_t w = ::send(fd, data, n, MSG_NOSIGNAL);
    if (w <= 0) return false;
    data += w;
    n -= static_cast<std::size_t>(w);
  }
  return true;
}

/// Accepts the next connection on `listener` (within 30 s), closes the listener and relays
/// bytes between that connection and 127.0.0.1:`to_port` in both directions until both sides
/// have closed (bounded: 60 s). The busy stand-in thus becomes the real server for the client's
/// retry, whatever the time the real server took to start. Run it on a thread of its own.
void relay_once(int listener, std::uint16_t to_port) {
  const auto deadline = steady::now() + 60s;
  pollfd p{listener, POLLIN, 0};
  const bool came = poll(&p, 1, 30000) == 1;
  const int a = came ? ::accept4(listener, nullptr, nullptr, SOCK_CLOEXEC) : -1;
  ::close(listener);
  if (a < 0) return;
  const int b = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in sin{};
  sin.sin_family = AF_INET;
  sin.sin_port = htons(to_port);
  sin.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (b < 0 || ::connect(b, reinterpret_cast<sockaddr*>(&sin), sizeof sin) != 0) {
    ::close(a);
    if (b >= 0) ::close(b);
    return;
  }
  bool open[2] = {true, true};  // a -> b, b -> a
  char buf[4096];
  while ((open[0] || open[1]) && steady::now() < deadline) {
    pollfd q[2] = {{a, static_cast<short>(open[0] ? POLLIN : 0), 0},
                   {b, static_cast<short>(open[1] ? POLLIN : 0), 0}};
    if (poll(q, 2, std::max(1, ms_until(deadline))) <= 0) break;
    for (int i = 0; i < 2; ++i) {
      if (!open[i] || !(q[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      const int from = i == 0 ? a : b, to = i == 0 ? b : a;
      const ssize_t n = ::read(from, buf, sizeof buf);
      if (n <= 0 || !write_all(to, buf, static_cast<std::size_t>(n))) {
        open[i] = false;
        ::shutdown(to, SHUT_WR);
      }
    }
  }
  ::close(a);
  ::close(b);
}

}  // namespace

TEST_CASE("At start jim waits out a busy server's retry_after, then signs in and sends",
          "[integration][client][busy]") {
  const std::uint16_t port = free_port();
  const int busy = listen_on(port);
  auto j = jim_child(jim_child::io::pipes, {"-a", "127.0.0.1", "-p", std::to_string(port), "-u", "hana"},
                     {{"JIM_PASSWORD", "pw"}, {"NO_COLOR", std::nullopt}});
  j.type("sent after the wait\n");
  j.close_input();
  // The real server is up before jim retries, however slow its start (a sanitizer build):
  // the stand-in's listener relays jim's retry to it.
  jimd_process d;
  const auto first = refuse_once(busy, R"j({"response":429,"time":1767225600,"error":"too many new connections from your address (new-conns-per-ip 32 per 10 minutes)","retry_after":1})j",
                                 true);
  CHECK(first.find("\"presence\"") != std::string::npos);
  std::thread relay(relay_once, busy, d.port());
  REQUIRE(j.wait_for("server busy, retrying in 1."));
  CHECK(j.wait_exit(30s) == 0);
  relay.join();
  INFO(j.all());
  auto bob = sign_up(d.port(), "bob");
  auto h = bob.request(R"({"action":"history","room":"#general","limit":5})");
  CHECK(json::serialize(h).find("sent after the wait") != std::string::npos);
}

TEST_CASE("At start jim waits out a real jimd's too-many-connections 503, then signs in and sends",
          "[integration][client][busy][throttle]") {
  jimd_process d({"--throttle-loopback", "yes", "--max-conns-per-ip", "1"});
  std::optional<client> holder(std::in_place, d.port());  // the address's one connection
  CHECK(code_of(holder->request(R"({"action":"rooms"})")) == 401);
  auto j = jim_child(jim_child::io::pipes,
                     {"-a", "127.0.0.1", "-p", std::to_string(d.port()), "-u", "hana"},
                     {{"JIM_PASSWORD", "pw"}, {"NO_COLOR", std::nullopt}});
  j.type("sent after the wait\n");
  j.close_input();
  // The 503 carries retry_after (5 s): without it jim would give up at once.
  REQUIRE(j.wait_for("server busy, retrying in "));
  holder.reset();  // the slot frees
  CHECK(j.wait_exit(30s) == 0);
  INFO(j.all());
  // jim's connection frees the slot once the server has seen it close: bounded retries.
  bool found = false;
  for (int attempt = 0; attempt < 50 && !found; ++attempt) {
    client bob(d.port());
    auto r = bob.request(R"({"action":"register","user":{"account_name":"bob","password":"pw"}})");
    if (code_of(r) == 503) {
      std::this_thread::sleep_for(20ms);
      continue;
    }
    auto h = bob.request(R"({"action":"history","room":"#general","limit":5})");
    found = json::serialize(h).find("sent after the wait") != std::string::npos;
    break;
  }
  CHECK(found);
}

TEST_CASE("A reconnect that meets a busy server waits its retry_after, then resumes",
          "[integration][client][busy][reconnect]") {
  temp_dir data;
  std::optional<jimd_process> d;
  d.emplace(std::vector<std::string>{}, data.path());
  const auto port = d->port();
  auto t = terminal(*d, {"-u", "hana"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  const auto m = t.mark();
  CHECK(d->stop(SIGINT) == 0);
  d.reset();
  const int busy = listen_on(port);
  REQUIRE(t.wait_for("; reconnecting (Ctrl-D or /quit to leave)", m));
  const auto line = refuse_once(busy, R"({"response":503,"time":1767225600,"error":"server busy: the password could not be checked in time; try again later","retry_after":2})");
  CHECK(line.find("\"token\"") != std::string::npos);  // it resumes by token
  REQUIRE(t.wait_for("* server busy, retrying in 2.", m));
  d.emplace(std::vector<std::string>{"--port", std::to_string(port)}, data.path());
  INFO(t.all().substr(m));
  REQUIRE(t.wait_for("* reconnected as hana", m, 40s));
  CHECK(t.all().find("Password:", m) == std::string::npos);
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

// ---- the irssi-like view on a terminal (issue 15) -------------------------------------------

namespace {

/// The unread count of `room` in a `rooms` reply (-1 when it is not listed).
std::int64_t unread_of(json::object const& rooms_reply, std::string_view room) {
  for (auto const& v : rooms_reply.at("rooms").as_array())
    if (v.as_object().at("room").as_string() == room) return v.as_object().at("unread").as_int64();
  return -1;
}

/// The next push to `c` that is a `msg` with text `text` (others skipped, bounded).
json::object next_msg(client& c, std::string_view text) {
  for (int i = 0; i < 50; ++i)
    if (auto p = c.push(); p.at("action") == "msg" && p.at("message").as_string() == text) return p;
  return {};
}

}  // namespace

TEST_CASE("Other rooms' lines are counted in the activity line, /switch shows them under a divider",
          "[integration][client][activity]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  sign_up(d.port(), "hana").request(R"({"action":"quit"})");
  CHECK(code_of(bob.request(R"({"action":"create","room":"den"})")) == 201);
  CHECK(code_of(bob.request(R"({"action":"invite","user":"hana","room":"den"})")) == 200);
  auto t = terminal(d, {"-u", "hana"}, "pw");
  // The sign-in's lists are answered once /names is: jim watches everything by then.
  REQUIRE(t.wait_for("#general> "));
  t.type("/names\r");
  REQUIRE(t.wait_for("* in #general:"));
  auto m = t.mark();
  CHECK(code_of(bob.request(R"({"action":"msg","message":"den one"})")) == 200);
  CHECK(code_of(bob.request(R"({"action":"msg","message":"den two"})")) == 200);
  REQUIRE(t.wait_for("[#den 2] #general> ", m));
  CHECK(code_of(bob.request(R"({"action":"msg","to":"hana","message":"psst"})")) == 200);
  REQUIRE(t.wait_for("[#den 2] [@bob 1] #general> ", m));
  CHECK(t.all().find("den one", m) == std::string::npos);
  CHECK(t.all().find("psst", m) == std::string::npos);

  t.type("/switch den\r");
  REQUIRE(t.wait_for("* you are in #den", m));
  REQUIRE(t.wait_for("--- new messages ---", m));
  const auto divider = t.all().find("--- new messages ---", m);
  REQUIRE(t.wait_for("bob (", divider));
  REQUIRE(t.wait_for("): den two", divider));
  CHECK(t.all().find("): den one", divider) != std::string::npos);
  REQUIRE(t.wait_for("[@bob 1] #den> ", divider));
  // A line typed goes to #den; /me is an action; /exit (or /part) is back to #general with
  // what was said there meanwhile.
  auto carol = sign_up(d.port(), "carol");
  CHECK(code_of(carol.request(R"({"action":"msg","message":"general news"})")) == 200);
  REQUIRE(t.wait_for("[#general 1]", divider));
  t.type("/me waves\r");
  CHECK(next_msg(bob, "* hana waves").at("to") == "#den");
  REQUIRE(t.wait_for("* hana waves (", divider));
  m = t.mark();
  t.type("/part\r");
  REQUIRE(t.wait_for("* back in #general", m));
  REQUIRE(t.wait_for("--- new messages ---", m));
  REQUIRE(t.wait_for("carol (", t.all().find("--- new messages ---", m)));
  REQUIRE(t.wait_for("): general news", m));
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
  // Marked read on the server: nothing is unread for hana in #den or #general.
  auto again = sign_in(d.port(), "hana");
  const auto rooms = again.request(R"({"action":"rooms"})");
  CHECK(unread_of(rooms, "#den") == 0);
  CHECK(unread_of(rooms, "#general") == 0);
}

TEST_CASE("/query opens a private conversation with its history, typed lines go there",
          "[integration][client][activity]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  sign_up(d.port(), "hana").request(R"({"action":"quit"})");
  CHECK(code_of(bob.request(R"({"action":"msg","to":"hana","message":"while you were out"})")) == 202);
  CHECK(code_of(bob.request(R"({"action":"msg","to":"hana","message":"call me"})")) == 202);
  auto t = terminal(d, {"-u", "hana"}, "pw");
  REQUIRE(t.wait_for("* new messages in [@bob 2]"));
  REQUIRE(t.wait_for("[@bob 2] #general> "));
  CHECK(t.all().find("call me") == std::string::npos);
  auto m = t.mark();
  t.type("/query bob\r");
  REQUIRE(t.wait_for("* talking privately with bob", m));
  REQUIRE(t.wait_for("--- new messages ---", m));
  const auto divider = t.all().find("--- new messages ---", m);
  REQUIRE(t.wait_for("): call me", divider));
  CHECK(t.all().find("): while you were out", divider) != std::string::npos);
  REQUIRE(t.wait_for("@bob> ", divider));
  t.type("hello bob\r");
  CHECK(next_msg(bob, "hello bob").at("from") == "hana");
  REQUIRE(t.wait_for("hana (", divider));
  // bob's answer shows in the view; a line in #general is counted.
  CHECK(code_of(bob.request(R"({"action":"msg","to":"hana","message":"hi hana"})")) == 200);
  REQUIRE(t.wait_for("bob (", t.all().find("hello bob", divider)));
  REQUIRE(t.wait_for("): hi hana", divider));
  CHECK(code_of(bob.request(R"({"action":"msg","message":"in general"})")) == 200);
  REQUIRE(t.wait_for("[#general 1] @bob> ", divider));
  m = t.mark();
  t.type("/conversations\r");
  REQUIRE(t.wait_for("* private conversations", m));
  REQUIRE(t.wait_for("  bob: ", m));
  t.type("/query\r");
  REQUIRE(t.wait_for("* closed the query with bob; back in #general", m));
  REQUIRE(t.wait_for("): in general", m));
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("/who lists everyone signed in with their status, /away and /back change it",
          "[integration][client][activity]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto carol = sign_up(d.port(), "carol");
  CHECK(code_of(carol.request(R"({"action":"create","room":"attic"})")) == 201);
  auto t = terminal(d, {"-u", "hana"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  auto m = t.mark();
  t.type("/who\r");
  REQUIRE(t.wait_for("* signed in: ", m));
  auto line = lines_with(t.all().substr(m), "* signed in: ");
  REQUIRE(line.size() == 1);
  CHECK(line[0].find("bob") != std::string::npos);
  CHECK(line[0].find("carol") != std::string::npos);  // in another room, still listed
  CHECK(line[0].find("hana") != std::string::npos);
  t.type("/names\r");
  REQUIRE(t.wait_for("* in #general: ", m));
  CHECK(lines_with(t.all().substr(m), "* in #general: ")[0].find("carol") == std::string::npos);

  t.type("/away at lunch\r");
  REQUIRE(t.wait_for("* you are marked away: at lunch", m));
  json::object status;
  for (int i = 0; i < 20; ++i)
    if ((status = bob.push()).at("action") == "event" && status.at("event") == "status") break;
  CHECK(status.at("user") == "hana");
  CHECK(status.at("status") == "at lunch");
  t.type("/who\r");
  REQUIRE(t.wait_for("hana (at lunch)", m));
  bob.request(R"({"action":"presence","user":{"status":"away"}})");
  REQUIRE(t.wait_for("* bob is away", m));
  t.type("/back\r");
  REQUIRE(t.wait_for("* you are back (online)", m));
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("After a server restart jim watches again and shows the activity it missed",
          "[integration][client][activity][reconnect]") {
  temp_dir data;
  std::optional<jimd_process> d;
  d.emplace(std::vector<std::string>{}, data.path());
  const auto port = std::to_string(d->port());
  sign_up(d->port(), "hana").request(R"({"action":"quit"})");
  {
    auto bob = sign_up(d->port(), "bob");
    CHECK(code_of(bob.request(R"({"action":"create","room":"den"})")) == 201);
    CHECK(code_of(bob.request(R"({"action":"invite","user":"hana","room":"den"})")) == 200);
    bob.request(R"({"action":"quit"})");
  }
  auto t = terminal(*d, {"-u", "hana"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  auto m = t.mark();
  CHECK(d->stop(SIGINT) == 0);
  d.reset();
  REQUIRE(t.wait_for("; reconnecting (Ctrl-D or /quit to leave)", m));
  {
    // While jim is away: a line in #den, one in #general, a private message.
    jimd_process aside({}, data.path());
    auto b = sign_in(aside.port(), "bob");
    CHECK(code_of(b.request(R"({"action":"msg","message":"general while away"})")) == 200);
    CHECK(code_of(b.request(R"({"action":"msg","to":"hana","message":"dm while away"})")) == 202);
    b.request(R"({"action":"join","room":"den"})");
    CHECK(code_of(b.request(R"({"action":"msg","message":"den while away"})")) == 200);
    b.request(R"({"action":"quit"})");
    CHECK(aside.stop(SIGINT) == 0);
  }
  d.emplace(std::vector<std::string>{"--port", port}, data.path());
  REQUIRE(t.wait_for("* reconnected as hana", m, 40s));
  REQUIRE(t.wait_for("* new messages in [#den 1] [@bob 1]", m));
  REQUIRE(t.wait_for("): general while away", m));
  REQUIRE(t.wait_for("[#den 1] [@bob 1] #general> ", m));
  CHECK(t.all().find("den while away", m) == std::string::npos);
  // Watching again: a new line in #den counts.
  auto b = sign_in(d->port(), "bob");
  b.request(R"({"action":"join","room":"den"})");
  CHECK(code_of(b.request(R"({"action":"msg","message":"den after"})")) == 200);
  REQUIRE(t.wait_for("[#den 2] [@bob 1] #general> ", m));
  t.type("/switch den\r");
  REQUIRE(t.wait_for("): den after", m));
  CHECK(t.all().find("): den while away", m) != std::string::npos);
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

// ---- edits, schedules, moderation, contacts on a terminal (issue 16) ------------------------

namespace {

/// The decimal number right after the first `label` at or after `from` in `text`, or -1.
std::int64_t number_after(std::string const& text, std::string_view label, std::size_t from = 0) {
  auto at = text.find(label, from);
  if (at == std::string::npos) return -1;
  at += label.size();
  std::int64_t n = 0;
  std::size_t digits = 0;
  for (; at < text.size() && text[at] >= '0' && text[at] <= '9' && digits < 18; ++at, ++digits) n = n * 10 + (text[at] - '0');
  return digits == 0 ? -1 : n;
}

/// Waits until a terminal jim has signed in and its sign-in requests have all been answered
/// (its `/names` answer comes after them): the rooms are watched, the view entered.
void settle(jim_child& t) {
  REQUIRE(t.wait_for("#general> "));
  t.type("/names\r");
  REQUIRE(t.wait_for("* in #general:"));
}

}  // namespace

TEST_CASE("/ids shows ids, /edit and /delete reach another jim and a client, history shows them",
          "[integration][client][edits]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto hana = terminal(d, {"-u", "hana"}, "pw");
  settle(hana);
  auto ivan = terminal(d, {"-u", "ivan"}, "pw");
  settle(ivan);
  auto m = hana.mark();
  hana.type("/ids on\r");
  REQUIRE(hana.wait_for("* message ids are shown: [#42]", m));
  hana.type("helo world\r");
  const auto pushed = next_msg(bob, "helo world");
  REQUIRE(pushed.contains("id"));
  const auto id = std::to_string(pushed.at("id").as_int64());
  REQUIRE(hana.wait_for("[#" + id + "] hana (", m));
  REQUIRE(ivan.wait_for("): helo world"));
  CHECK(ivan.all().find("[#" + id + "]") == std::string::npos);  // ivan did not ask for ids

  auto mi = ivan.mark();
  hana.type("/edit " + id + " hello world\r");
  REQUIRE(hana.wait_for("* edited message #" + id + ": hello world", m));
  REQUIRE(ivan.wait_for("* hana edited message #" + id + ": hello world", mi));
  json::object edit;
  for (int i = 0; i < 10 && str(edit, "event") != "edit"; ++i) edit = bob.push();
  CHECK(edit.at("id").as_int64() == pushed.at("id").as_int64());
  CHECK(str(edit, "message") == "hello world");
  hana.type("/history 1\r");
  REQUIRE(hana.wait_for("[#" + id + "] [history] hana (", m));
  REQUIRE(hana.wait_for("): hello world (edited)", m));

  // Not hers to edit or delete; an id that is not a number is a usage error.
  CHECK(code_of(say(bob, "bob's own")) == 200);
  REQUIRE(hana.wait_for("): bob's own", m));
  const auto bobs = number_after(hana.all(), "[#", hana.all().rfind("[#", hana.all().find("): bob's own", m)));
  REQUIRE(bobs > 0);
  hana.type("/edit " + std::to_string(bobs) + " mine now\r");
  REQUIRE(hana.wait_for("! message #" + std::to_string(bobs) + " is not yours: only its author can edit it", m));
  hana.type("/delete " + std::to_string(bobs) + "\r");
  REQUIRE(hana.wait_for("! message #" + std::to_string(bobs) +
                            " is not yours: only its author, the owner of its room or an admin can delete it",
                        m));
  hana.type("/edit last fixed\r");
  REQUIRE(hana.wait_for("! usage: /edit ID TEXT", m));

  mi = ivan.mark();
  hana.type("/delete " + id + "\r");
  REQUIRE(hana.wait_for("* deleted message #" + id, m));
  REQUIRE(ivan.wait_for("* message #" + id + " by hana was deleted", mi));
  json::object del;
  for (int i = 0; i < 10 && str(del, "event") != "delete"; ++i) del = bob.push();
  CHECK(del.at("id").as_int64() == pushed.at("id").as_int64());
  ivan.type("/history 5\r");
  REQUIRE(ivan.wait_for("): (deleted)", mi));
  CHECK(ivan.all().find("hello world", ivan.all().find("): (deleted)", mi)) == std::string::npos);
  hana.type("/delete " + id + "\r");
  REQUIRE(hana.wait_for("! no message #" + id + " to delete (it never was, is deleted, or is no longer kept)", m));
  hana.type("/quit\r");
  ivan.type("/quit\r");
  CHECK(hana.wait_exit() == 0);
  CHECK(ivan.wait_exit() == 0);
}

TEST_CASE("/at +Ns posts at its time, /scheduled lists, /cancel takes one back", "[integration][client][schedule]") {
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "hana"}, "pw");
  settle(t);
  auto m = t.mark();
  t.type("/at +2s ding\r");
  REQUIRE(t.wait_for("* scheduled message ", m));
  REQUIRE(t.wait_for(" takes it back)", m));
  CHECK(t.all().find(" goes to #general at ", m) != std::string::npos);
  // Posted at its time: bob gets it as an ordinary message, and so does hana's jim.
  const auto posted = next_msg(bob, "ding");
  CHECK(str(posted, "from") == "hana");
  CHECK(str(posted, "to") == "#general");
  REQUIRE(t.wait_for("): ding", m));

  m = t.mark();
  t.type("/at +1h later\r");
  REQUIRE(t.wait_for(" takes it back)", m));
  const auto later = number_after(t.all(), "* scheduled message ", m);
  REQUIRE(later > 0);
  const auto id = std::to_string(later);
  t.type("/scheduled\r");
  REQUIRE(t.wait_for("* scheduled messages (/cancel ID takes one back):", m));
  REQUIRE(t.wait_for("  " + id + "  at ", m));
  REQUIRE(t.wait_for(" to #general: later", m));
  CHECK(t.all().find(": ding", t.all().find("* scheduled messages", m)) == std::string::npos);  // posted: gone
  t.type("/cancel " + id + "\r");
  REQUIRE(t.wait_for("* cancelled scheduled message " + id, m));
  t.type("/scheduled\r");
  REQUIRE(t.wait_for("* no scheduled messages (/at TIME TEXT schedules one)", m));
  t.type("/cancel " + id + "\r");
  REQUIRE(t.wait_for("! you have no scheduled message " + id + " waiting (/scheduled lists them)", m));
  t.type("/at 24:00 never\r");
  REQUIRE(t.wait_for("! 24:00: no such time of day", m));
  auto r = bob.request(R"({"action":"scheduled"})");
  CHECK(r.at("scheduled").as_array().empty());  // bob's list: his own, none
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("/contacts, /add and /del keep the contact list", "[integration][client][contacts]") {
  jimd_process d;
  sign_up(d.port(), "Bob").request(R"({"action":"quit"})");
  sign_up(d.port(), "carol").request(R"({"action":"quit"})");
  auto t = terminal(d, {"-u", "hana"}, "pw");
  settle(t);
  auto m = t.mark();
  t.type("/contacts\r");
  REQUIRE(t.wait_for("* no contacts yet (/add USER adds one)", m));
  t.type("/add bob\r");
  REQUIRE(t.wait_for("* Bob is in your contacts", m));  // as registered
  t.type("/add carol\r");
  REQUIRE(t.wait_for("* carol is in your contacts", m));
  t.type("/add hana\r");
  REQUIRE(t.wait_for("! you cannot be your own contact", m));
  t.type("/add nobody\r");
  REQUIRE(t.wait_for("! no such account nobody", m));
  t.type("/contacts\r");
  REQUIRE(t.wait_for("* your contacts (2):", m));
  REQUIRE(t.wait_for("  carol", m));
  const auto list = t.all().find("* your contacts (2):", m);
  CHECK(t.all().find("  Bob", list) < t.all().find("  carol", list));  // in the order added
  m = t.mark();
  t.type("/del bob\r");
  REQUIRE(t.wait_for("* Bob is no longer in your contacts", m));
  t.type("/del bob\r");
  REQUIRE(t.wait_for("! ", m));
  CHECK(t.all().find("contact", t.all().find("! ", m)) != std::string::npos);
  // The server keeps it: another device of hana's sees carol only.
  auto other = sign_in(d.port(), "hana");
  auto r = other.request(R"({"action":"get_contacts"})");
  CHECK(r.at("quantity").as_int64() == 1);
  CHECK(str(other.push(), "user_id") == "carol");
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("/kick and /ban by a room owner's jim, seen from the kicked user's jim", "[integration][client][moderation]") {
  jimd_process d;
  auto dave = sign_up(d.port(), "dave");  // stays in #general
  auto carol = terminal(d, {"-u", "carol"}, "pw");
  settle(carol);
  auto bob = terminal(d, {"-u", "bob"}, "pw");
  settle(bob);
  auto mc = carol.mark();
  carol.type("/create den\r");
  REQUIRE(carol.wait_for("* created #den", mc));
  REQUIRE(carol.wait_for("#den> ", mc));
  const auto pw = word_after(carol.all().substr(mc), "Its password: ");
  REQUIRE(!pw.empty());
  auto mb = bob.mark();
  bob.type("/join den " + pw + "\r");
  REQUIRE(bob.wait_for("#den> ", mb));
  REQUIRE(carol.wait_for("* bob joined #den", mc));
  bob.type("/kick carol\r");
  REQUIRE(bob.wait_for("! only the owner of #den can do that", mb));

  // A kick: bob's jim says so and is back in #general, where what he types goes.
  carol.type("/kick bob\r");
  REQUIRE(carol.wait_for("* kicked bob out of #den (still a member: may come back)", mc));
  REQUIRE(bob.wait_for("! server: you were kicked from #den by carol; you are in #general", mb));
  REQUIRE(bob.wait_for("#general> ", bob.all().find("kicked from #den", mb)));
  bob.type("back in general\r");
  CHECK(str(next_msg(dave, "back in general"), "to") == "#general");
  mb = bob.mark();
  bob.type("/switch den\r");  // still a member: no password
  REQUIRE(bob.wait_for("* you are in #den", mb));
  REQUIRE(bob.wait_for("#den> ", mb));
  REQUIRE(carol.wait_for("* bob joined #den", carol.all().find("* kicked bob", mc)));

  // A ban: out again, and no way back in, even with the password, until the unban.
  mb = bob.mark();
  carol.type("/ban bob\r");
  REQUIRE(carol.wait_for("* banned bob from #den (/unban bob #den lifts it)", mc));
  REQUIRE(bob.wait_for("! server: you were banned from #den by carol; you are in #general", mb));
  REQUIRE(bob.wait_for("#general> ", bob.all().find("banned from #den", mb)));
  bob.type("/join den " + pw + "\r");
  REQUIRE(bob.wait_for("! ", bob.all().find("#general> ", bob.all().find("banned from #den", mb))));
  REQUIRE(bob.wait_for("! you are banned from #den", mb));
  CHECK(bob.all().find("* you are in #den", mb) == std::string::npos);
  carol.type("/unban bob den\r");
  REQUIRE(carol.wait_for("* bob is no longer banned from #den", mc));
  bob.type("/join den " + pw + "\r");
  REQUIRE(bob.wait_for("* you are in #den", mb));
  bob.type("/quit\r");
  carol.type("/quit\r");
  CHECK(bob.wait_exit() == 0);
  CHECK(carol.wait_exit() == 0);
}

TEST_CASE("An admin's jim bans an account server-wide: the banned jim is told and ends", "[integration][client][moderation]") {
  jimd_process d({"--admin", "root"});
  sign_up(d.port(), "mallory").request(R"({"action":"quit"})");
  auto root = terminal(d, {"-u", "root"}, "pw");
  settle(root);
  auto mallory = terminal(d, {"-u", "mallory"}, "pw");
  settle(mallory);
  auto m = mallory.mark();
  mallory.type("/ban root *\r");
  REQUIRE(mallory.wait_for("! only a server admin can ban an account (a room's owner: /ban USER ROOM)", m));
  auto mr = root.mark();
  root.type("/ban mallory * spamming\r");
  REQUIRE(root.wait_for("* banned the account mallory from the server (/unban mallory * lifts it)", mr));
  REQUIRE(mallory.wait_for("! server: your account was banned: spamming", m));
  // Not fought back with a reconnect: jim ends.
  CHECK(mallory.wait_exit() == 1);
  CHECK(mallory.all().find("reconnecting", m) == std::string::npos);
  client again(d.port());
  CHECK(code_of(ask(again, authenticate_req("mallory"))) == 403);
  root.type("/unban mallory *\r");
  REQUIRE(root.wait_for("* the account mallory is no longer banned", mr));
  sign_in(d.port(), "mallory");
  root.type("/quit\r");
  CHECK(root.wait_exit() == 0);
}

TEST_CASE("/report: three people's reports mute, the muted jim is told until when", "[integration][client][moderation]") {
  jimd_process d;
  auto carol = sign_up(d.port(), "carol");
  auto dave = sign_up(d.port(), "dave");
  auto hana = terminal(d, {"-u", "hana"}, "pw");
  settle(hana);
  auto mallory = terminal(d, {"-u", "mallory"}, "pw");
  settle(mallory);
  auto m = hana.mark();
  hana.type("/report\r");
  REQUIRE(hana.wait_for("! usage: /report USER [REASON]", m));
  hana.type("/report hana\r");
  REQUIRE(hana.wait_for("! you cannot report yourself", m));
  hana.type("/report nobody\r");
  REQUIRE(hana.wait_for("! no such account nobody", m));
  hana.type("/report mallory spam links\r");
  REQUIRE(hana.wait_for("* reported mallory (when enough people report someone, the server mutes them for a while)", m));
  CHECK(code_of(ask(carol, json::object{{"action", "report"}, {"user", "mallory"}})) == 200);
  CHECK(code_of(ask(dave, json::object{{"action", "report"}, {"user", "mallory"}})) == 200);
  auto mm = mallory.mark();
  mallory.type("buy now\r");
  REQUIRE(mallory.wait_for("! not sent: buy now (you are muted (reported by other users) until ", mm));
  hana.type("/quit\r");
  mallory.type("/quit\r");
  CHECK(hana.wait_exit() == 0);
  CHECK(mallory.wait_exit() == 0);
}

TEST_CASE("A scheduled message the author may no longer post is dropped, and jim says so",
          "[integration][client][schedule]") {
  jimd_process d;
  auto carol = sign_up(d.port(), "carol");
  const auto pw = create_room(carol, "den");
  auto t = terminal(d, {"-u", "hana"}, "pw");
  settle(t);
  auto m = t.mark();
  t.type("/join den " + pw + "\r");
  REQUIRE(t.wait_for("#den> ", m));
  t.type("/at +2s too late\r");
  REQUIRE(t.wait_for(" goes to #den at ", m));
  const auto id = number_after(t.all(), "* scheduled message ", m);
  REQUIRE(id > 0);
  CHECK(code_of(ask(carol, json::object{{"action", "ban"}, {"room", "den"}, {"user", "hana"}})) == 200);
  REQUIRE(t.wait_for("! server: you were banned from #den by carol", m));
  REQUIRE(t.wait_for("! server: your scheduled message " + std::to_string(id) + " to #den was not posted", m));
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

// ---- the terminal itself (issue 16: the newcomer trial) -------------------------------------

TEST_CASE("Messages that come while the terminal is not read are all shown once it is",
          "[integration][client][tty]") {
  // Issue 16: stdin, stdout and stderr shared one file description of the terminal, and
  // reading stdin through Asio made it non-blocking: while the terminal drained slowly,
  // writes failed with EAGAIN and messages were lost (7 of 20 shown). Output now waits.
  jimd_process d({"--rate-limit", "0"});
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "grace"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  const bool typing = GENERATE(false, true);
  if (typing) {  // a long half-typed line, redrawn after every message
    REQUIRE(t.paste(std::string(2900, 'q')));
    REQUIRE(t.wait_for(std::string(60, 'q')));
  }
  const auto m = t.mark();
  constexpr int n = 20;
  for (int i = 0; i < n; ++i) {
    const auto r = say(bob, "begin " + std::string(typing ? 100 : 3000, 'x') + " <end " + std::to_string(i) + ">");
    REQUIRE(code_of(r) == 200);
  }
  // The terminal is not read meanwhile (the condition under test, not a synchronisation):
  // jim's writes fill it and must wait.
  std::this_thread::sleep_for(3s);
  for (int i = 0; i < n; ++i) CHECK(t.wait_for("<end " + std::to_string(i) + ">", m, 20s));
  t.type("\x15/quit\r");  // Ctrl-U clears the half-typed line
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("After Ctrl-Z and fg the terminal is in editing mode again", "[integration][client][tty]") {
  // Issue 16: the SIGCONT handler only redrew; the terminal stayed in the shell's cooked mode
  // (icanon echo) until the next Enter.
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "grace"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  t.type("abc");
  REQUIRE(t.wait_for("#general> abc"));
  // SIGSTOP: jim leads its own session here (forkpty), an orphaned process group, where the
  // kernel discards SIGTSTP; the stop and the SIGCONT after it are the same for jim.
  REQUIRE(kill(t.pid(), SIGSTOP) == 0);
  int status = 0;
  REQUIRE(waitpid(t.pid(), &status, WUNTRACED) == t.pid());
  REQUIRE(WIFSTOPPED(status));
  // The shell takes the terminal back in its own (cooked) mode.
  termios tio{};
  REQUIRE(tcgetattr(t.master(), &tio) == 0);
  tio.c_lflag |= ICANON | ECHO;
  REQUIRE(tcsetattr(t.master(), TCSANOW, &tio) == 0);
  const auto m = t.mark();
  REQUIRE(kill(t.pid(), SIGCONT) == 0);
  REQUIRE(t.wait_for("#general> abc", m));  // redrawn
  REQUIRE(tcgetattr(t.master(), &tio) == 0);
  CHECK((tio.c_lflag & ICANON) == 0);
  CHECK((tio.c_lflag & ECHO) == 0);
  t.type("\x01X\r");  // Ctrl-A works at once
  CHECK(bob.push().at("message") == "Xabc");
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("Bytes that are not UTF-8 never reach the server", "[integration][client][tty]") {
  // Issue 16: beyond U+10FFFF, the 5-byte form and a stray 0xFF were sent as they were, and
  // the server answered "invalid JSON".
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  const std::string r = "\xEF\xBF\xBD";
  SECTION("typed") {
    auto t = terminal(d, {"-u", "grace"}, "pw");
    REQUIRE(t.wait_for("#general> "));
    t.type("a\xF4\x90\x80\x80z\r");
    auto got = str(bob.push(), "message");
    CHECK(got.starts_with("a"));
    CHECK(got.ends_with("z"));
    CHECK(got.find("\xF4") == std::string::npos);
    t.type("b\xF8\x88\x80\x80\x80y\r");
    got = str(bob.push(), "message");
    CHECK(got.starts_with("b"));
    CHECK(got.ends_with("y"));
    CHECK(got.find("\xF8") == std::string::npos);
    t.type("fine\r");
    CHECK(bob.push().at("message") == "fine");
    t.type("/quit\r");
    CHECK(t.wait_exit() == 0);
  }
  SECTION("from a script") {
    auto c = script(d, "grace");
    REQUIRE(c.wait_for("* signed in as grace"));
    c.type("ok\xff" "bad\n" "x\xF4\x90\x80\x80\n");
    CHECK(str(bob.push(), "message") == "ok" + r + "bad");
    CHECK(str(bob.push(), "message") == "x" + r + r + r + r);
    c.close_input();
    CHECK(c.wait_exit() == 0);
    CHECK(c.err().find("! the line had bytes that are not UTF-8") != std::string::npos);
    CHECK(c.all().find("invalid JSON") == std::string::npos);
  }
}

TEST_CASE("A bracketed paste is inserted as text: its tabs are tabs, its markers do not leak",
          "[integration][client][tty]") {
  // Issue 16: a pasted tab ran completion and ESC [ 200 ~ ... ESC [ 201 ~ was sent as "0~...1~".
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "grace"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  REQUIRE(t.wait_for("\x1b[?2004h"));  // asked for while a line is edited
  t.type("\x1b[200~say\tx\ty\x1b[201~\r");
  CHECK(bob.push().at("message") == "say\tx\ty");
  // Outside a paste Tab still completes; Ctrl-V Tab types one.
  t.type("/ms\tbob hi\x16\tthere\r");
  const auto p = bob.push();
  CHECK(p.at("to") == "bob");
  CHECK(p.at("message") == "hi\tthere");
  // Two lines in one paste are two messages.
  t.type("\x1b[200~one\ttwo\rthree\x1b[201~\r");
  CHECK(bob.push().at("message") == "one\ttwo");
  CHECK(bob.push().at("message") == "three");
  const auto m = t.mark();
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
  CHECK(t.all().find("\x1b[?2004l", m) != std::string::npos);  // off again at exit
}

TEST_CASE("With stdout not a terminal, lines typed on the terminal are sent as typed", "[integration][client][tty]") {
  // `jim | tee log`: libedit does not edit when its output is not a terminal, and read one
  // character per call: every line typed was sent as an empty line (nothing reached bob) and
  // /quit did not work.
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "grace"}, "pw", false, {}, jim_child::io::terminal_piped_stdout);
  REQUIRE(t.wait_for("* signed in as grace"));
  t.type("hello there\r");
  CHECK(bob.push().at("message") == "hello there");
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
  CHECK(t.err().find("\x1b[?2004h") == std::string::npos);  // no terminal controls in the log
}

TEST_CASE("SIGTSTP from anywhere gives the terminal back before jim stops", "[integration][client][tty]") {
  // SIGTSTP sent by another process (kill -TSTP) stopped jim with the terminal raw and in
  // bracketed paste mode: the shell got a terminal that did not echo.
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "grace"}, "pw", false, {}, jim_child::io::terminal_job);
  REQUIRE(t.wait_for("#general> "));
  t.type("abc");
  REQUIRE(t.wait_for("#general> abc"));
  termios tio{};
  for (char const* how : {"kill", "Ctrl-Z"}) {
    INFO(how);
    auto m = t.mark();
    if (how == std::string_view("kill"))
      REQUIRE(kill(t.job_pid(), SIGTSTP) == 0);
    else
      t.type("\x1a");
    REQUIRE(t.wait_stopped(true));
    REQUIRE(tcgetattr(t.master(), &tio) == 0);
    CHECK((tio.c_lflag & ICANON) != 0);
    CHECK((tio.c_lflag & ECHO) != 0);
    CHECK(t.wait_for("\x1b[?2004l", m));
    m = t.mark();
    REQUIRE(kill(t.job_pid(), SIGCONT) == 0);
    REQUIRE(t.wait_stopped(false));
    REQUIRE(t.wait_for("#general> abc", m));  // redrawn
    REQUIRE(tcgetattr(t.master(), &tio) == 0);
    CHECK((tio.c_lflag & ICANON) == 0);
    CHECK((tio.c_lflag & ECHO) == 0);
  }
  t.type("\x01X\r");  // Ctrl-A works at once
  CHECK(bob.push().at("message") == "Xabc");
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("A newline typed with Ctrl-V is a control character, not the end of the line",
          "[integration][client][tty]") {
  // Ctrl-V Ctrl-J (or Ctrl-V Enter) at the end of a line sent the line as if Enter had been
  // pressed, without the newline libedit draws: the next prompt came on the same row and the
  // row above (here "* /help ...") was erased with the echo of the message.
  jimd_process d;
  auto bob = sign_up(d.port(), "bob");
  auto t = terminal(d, {"-u", "grace"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  for (std::string_view key : {"\x0a", "\x0d"}) {
    INFO("Ctrl-V " << (key == "\x0a" ? "Ctrl-J" : "Enter"));
    auto m = t.mark();
    t.type("abc\x16");
    t.type(key);
    t.type("def\r");
    REQUIRE(t.wait_for("! not sent: the line has a control character, ^M (U+000D), at character 4", m));
    const auto after = t.all().find("at character 4", m);
    REQUIRE(t.wait_for("#general> abc^Mdef", after));  // offered again
    t.type("\x15");                                     // Ctrl-U: the line goes
  }
  t.type("ok\r");
  CHECK(bob.push().at("message") == "ok");  // the first message bob gets
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}

TEST_CASE("Between lines the terminal stays jim's: keys typed ahead are not echoed by it",
          "[integration][client][tty]") {
  // jim made the terminal cooked after each line until the next prompt (libedit's
  // EL_UNBUFFERED 0): keys typed meanwhile met the terminal's own echo and line editing (a
  // probable cause of the "echo with the new room's prompt or none" glitch). Here jim writes
  // /help's rows after each of 30 lines to a terminal read slowly: it is often between lines,
  // and the terminal's mode is sampled meanwhile.
  jimd_process d;
  auto t = terminal(d, {"-u", "grace"}, "pw");
  REQUIRE(t.wait_for("#general> "));
  constexpr int lines = 30;
  std::string typed;
  for (int i = 0; i < lines; ++i) typed += "/help\r";
  t.type(typed);
  const int fd = t.master();
  std::string seen;
  int samples = 0, cooked = 0;
  const auto deadline = steady::now() + 30s;
  while (count_of(seen, "Type a line to send it") < lines && steady::now() < deadline) {
    termios tio{};
    REQUIRE(tcgetattr(fd, &tio) == 0);
    ++samples;
    if (tio.c_lflag & (ICANON | ECHO)) ++cooked;
    pollfd p{fd, POLLIN, 0};
    if (poll(&p, 1, ms_until(deadline)) <= 0) continue;
    char buf[512];
    const ssize_t n = ::read(fd, buf, sizeof buf);
    if (n <= 0) break;
    seen.append(buf, static_cast<std::size_t>(n));
  }
  INFO(samples << " samples");
  CHECK(count_of(seen, "Type a line to send it") == lines);
  CHECK(cooked == 0);
  t.type("/quit\r");
  CHECK(t.wait_exit() == 0);
}
