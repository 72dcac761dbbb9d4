// jim: the command-line client of jimd. One io_context serves the socket, the terminal and
// the signals, each from its own coroutine; commands.hpp holds everything that can be tested
// without them.

#include "commands.hpp"
#include "connection.hpp"
#include "state.hpp"
#include "console.hpp"
#include "text.hpp"
#include "jim/codec.hpp"
#include "jim/protocol.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/serialize.hpp>
#include <boost/program_options.hpp>

#include <charconv>
#include <cmath>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <iostream>
#include <optional>
#include <random>
#include <string>
#include <unistd.h>
#include <variant>

namespace {

namespace asio = boost::asio;
namespace json = boost::json;
namespace po = boost::program_options;
using asio::awaitable;
using jim::client::out_line;
using jim::client::tone;
using namespace asio::experimental::awaitable_operators;

constexpr auto nothrow = asio::as_tuple(asio::use_awaitable);
constexpr auto quit_bound = std::chrono::seconds(5);  ///< for the server to answer quit and close

struct options {
  std::string host = "127.0.0.1";
  std::string port = "7777";
  std::string user;
  std::optional<std::string> password;  ///< from --password-file or JIM_PASSWORD
  bool json = false;
  std::size_t max_message = 4096;  ///< longer texts are sent as several messages
  bool tls = false;                ///< --tls (also implied by --ca-file and --insecure)
  jim::client::tls_options tls_opt;
  bool reconnect = true;  ///< on a terminal, unless --no-reconnect
};

std::int64_t status_of(json::object const& reply) {
  auto const* v = reply.if_contains("response");
  return v && v->is_int64() ? v->get_int64() : 0;
}

/// A refusal that says nothing about the credentials (server full or shutting down, storage
/// failing, throttled): worth another try later.
bool transient(std::int64_t status) { return status == 429 || status >= 500; }

/// Points `slot` at a timer for as long as it lives: a coroutine cancelled while it waits on
/// the timer (its frame destroyed) leaves no dangling pointer behind.
class timer_slot {
 public:
  timer_slot(asio::steady_timer*& slot, asio::steady_timer& timer) : slot_(slot) { slot_ = &timer; }
  ~timer_slot() { slot_ = nullptr; }
  timer_slot(timer_slot const&) = delete;
  timer_slot& operator=(timer_slot const&) = delete;

 private:
  asio::steady_timer*& slot_;
};

/// Reconnecting: the first wait, its growth and its bound (doubling from 0.5 s to 30 s, each
/// wait drawn between half and all of it: "equal jitter", so that the clients of a restarted
/// server do not all come back in the same instant; AWS Architecture Blog, "Exponential
/// Backoff And Jitter", 2015).
constexpr auto backoff_first = std::chrono::milliseconds(500);
constexpr auto backoff_max = std::chrono::milliseconds(30000);
/// How many times jim tries again at start when the server answers "busy" (429/503 with
/// `retry_after`: too many connections from this address, hashing queue full), before it
/// gives up; each wait is the server's `retry_after` or the back-off, whichever is longer.
constexpr int busy_retries_at_start = 8;

/// One run of the client: sign-in, then the conversation until quit, end of input, a signal
/// or the server closing; on a terminal, a lost connection is opened again by itself.
class app {
 public:
  app(options opt, jim::client::console& con, std::shared_ptr<asio::ssl::context> tls)
      : opt_(std::move(opt)), con_(con), tls_(std::move(tls)), state_({}, settings()) {}

  /// Everything, from connecting to the exit code.
  awaitable<int> run() {
    co_await (main_flow() || signals());
    if (conn_) conn_->close();
    con_.stop_editing();
    co_return exit_code();
  }

 private:
  enum class ending { none, quit, lost, refused, interrupted, unreachable };
  enum class signin { ok, refused, lost };

  int exit_code() const {
    switch (ending_) {
      case ending::quit:
        if (opt_.json) return json_failures_ > 0 || con_.skipped_lines() > 0 ? 1 : 0;
        return con_.interactive() ||
                       (state_.failures() == 0 && usage_errors_ == 0 && con_.skipped_lines() == 0)
                   ? 0
                   : 1;
      case ending::interrupted:
        // Ctrl-C after sign-in is a way to leave; before it, sign-in did not happen.
        return con_.interactive() && signed_in_ ? 0 : 1;
      case ending::unreachable:
        return 2;
      case ending::none:
      case ending::lost:
      case ending::refused:
        break;
    }
    return 1;
  }

  std::string where() const { return opt_.host + ":" + opt_.port; }

  /// A new connection; false (and the reason in connect_error_) if it cannot be opened.
  awaitable<bool> open() {
    if (conn_) conn_->close();
    conn_ = std::make_shared<jim::client::connection>(co_await asio::this_coro::executor, tls_);
    if (auto ec = co_await conn_->connect(opt_.host, opt_.port)) {
      connect_error_ = conn_->connect_error().empty() ? ec.message() : conn_->connect_error();
      conn_->close();
      co_return false;
    }
    co_return true;
  }

  awaitable<void> main_flow() {
    if (!co_await open()) {
      con_.show({tone::error, "jim: cannot connect to " + where() + ": " + connect_error_});
      if (tls_ && connect_error_.find("certificate") != std::string::npos)
        con_.show({tone::error, "jim: (give the server's CA with --ca-file FILE; --insecure skips the check)"});
      ending_ = ending::unreachable;
      co_return;
    }
    // A --json pipe without -u is raw from the first frame: the script signs in itself.
    const bool raw = opt_.json && opt_.user.empty();
    if (!raw) {
      auto s = co_await sign_in(true);
      s = co_await retry_while_busy(s);
      if (s != signin::ok) {
        if (s == signin::lost) disconnected();
        if (ending_ == ending::none) ending_ = ending::refused;
        co_return;
      }
    }
    signed_in_ = true;
    if (!opt_.json) {
      request({{"action", "presence"}});  // its reply tells the account name as registered
      if (con_.interactive()) {
        // Names and rooms for Tab, quietly.
        state_.submit({{"action", "users"}}, true);
        state_.submit({{"action", "rooms"}}, true);
        con_.set_completer([this](std::string_view before, std::string_view word) {
          return jim::client::completions(before, word, state_.known_names(), state_.known_rooms());
        });
        con_.show({tone::info, "* /help lists the commands; Tab completes commands, names and rooms"});
      }
      con_.set_prompt(state_.prompt());
    }
    co_await (online() || from_user());
  }

  /// The conversation on one connection after another: when one is lost (and jim may
  /// reconnect), a new one is opened with back-off and signed in with the token.
  awaitable<void> online() {
    for (;;) {
      online_ = true;
      co_await (from_server() || sender());
      online_ = false;
      conn_->close();
      if (ending_ != ending::none) co_return;  // quit, /logout or a signal: over
      if (!may_reconnect()) {
        disconnected();
        co_return;
      }
      const auto& why = conn_->why_ended();
      con_.show({tone::error, "! connection to " + where() + " lost" + (why.empty() ? "" : " (" + why + ")") +
                                  "; reconnecting (Ctrl-D or /quit to leave)"});
      con_.show(state_.lose_in_flight("connection lost"));
      if (!co_await reconnect()) co_return;
    }
  }

  /// Whether a lost connection is opened again: on a terminal (unless --no-reconnect), when
  /// signed in, and unless the server closed it because the account signed in elsewhere or
  /// was banned by an admin.
  bool may_reconnect() const {
    if (!opt_.reconnect || !con_.interactive() || opt_.json || !signed_in_) return false;
    auto const& notice = state_.last_notice();
    return notice.find("another connection") == std::string::npos && notice.find("elsewhere") == std::string::npos &&
           notice.find("account was banned") == std::string::npos;
  }

  /// Opens a connection and signs in again, waiting longer after each failure; re-enters the
  /// room the user was in. False when it cannot sign in again (the token was refused).
  awaitable<bool> reconnect() {
    const std::string room = state_.room();
    state_.hide_seen_history();
    std::mt19937 random(std::random_device{}());
    auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(backoff_first);
    std::chrono::milliseconds busy_wait{};  ///< the server said how long to wait
    for (int attempt = 1;; ++attempt) {
      std::uniform_int_distribution<long> pick(delay.count() / 2, delay.count());
      const auto wait_for = std::max(std::chrono::milliseconds(pick(random)), busy_wait);
      busy_wait = {};
      con_.set_prompt("(reconnecting) " + state_.prompt());
      co_await wait(wait_for);
      busy_after_ = 0;
      std::string failed;
      if (co_await open()) {
        const auto s = co_await sign_in(false);
        if (s == signin::ok) break;
        if (s == signin::refused) {
          ending_ = ending::refused;
          co_return false;
        }
        failed = conn_->why_ended().empty() ? "the connection closed during sign-in" : conn_->why_ended();
        conn_->close();
      } else {
        failed = connect_error_;
      }
      delay = std::min(delay * 2, std::chrono::duration_cast<std::chrono::milliseconds>(backoff_max));
      if (busy_after_ > 0) {
        busy_wait = busy_delay(random);
        con_.show({tone::info, "* server busy, retrying in " + seconds_text(busy_wait) + " s"});
        continue;
      }
      char next[32];
      std::snprintf(next, sizeof next, "%.1f", static_cast<double>(delay.count()) / 2000.0);
      con_.show({tone::info, "* reconnect attempt " + std::to_string(attempt) + " failed (" + failed +
                                 "); next in " + next + " s or more"});
    }
    // Back where the user was. A member needs no password; a refusal (banned, the room is
    // gone) is shown and the user stays in #general.
    if (jim::proto::fold(room) != jim::proto::fold(state_.room())) request({{"action", "join"}, {"room", room}});
    con_.set_prompt(state_.prompt());
    co_return true;
  }

  jim::client::chat_settings settings() const {
    jim::client::chat_settings s;
    s.show_own = !opt_.json && con_.interactive();
    s.activity = s.show_own;  // a person at a terminal gets the irssi-like view; a script every line
    s.max_message = opt_.max_message;
    return s;
  }

  /// Writes what the outbox allows, in order; sleeps until a reply, a new request or the end
  /// of a 429's wait changes that. Runs until cancelled.
  awaitable<void> sender() {
    asio::steady_timer wake(co_await asio::this_coro::executor);
    // sender() runs once per connection: cancelled when it ends, and kick() must not reach a
    // timer of a finished run.
    timer_slot slot(sender_wake_, wake);
    for (;;) {
      for (auto& frame : state_.take_sendable(jim::client::chat_state::clock::now())) conn_->send(frame);
      if (progress_) progress_->cancel();
      const auto at = state_.wake_at();
      wake.expires_at(at ? *at : asio::steady_timer::time_point::max());
      co_await wake.async_wait(nothrow);
    }
  }

  /// Tells sender() that the outbox may have something to write.
  void kick() {
    if (sender_wake_) sender_wake_->cancel();
  }

  /// Signs in on the open connection: with the saved token when there is one, else (or when
  /// the server refuses it: then on a new connection) with the password. `first`: at start,
  /// when the name and the password may be asked for; later (a reconnect) nobody is asked.
  awaitable<signin> sign_in(bool first) {
    busy_after_ = 0;
    if (first) {
      std::string name = opt_.user;
      while (!jim::proto::valid_account_name(name)) {
        if (!name.empty())
          con_.show({tone::error, "! an account name is 1 to 25 letters, digits, '_', '.' or '-'"});
        if (!con_.interactive()) co_return signin::refused;
        auto typed = co_await con_.ask("Name: ", false);
        if (!typed) co_return signin::refused;
        name = *typed;
        while (!name.empty() && name.back() == ' ') name.pop_back();
        while (!name.empty() && name.front() == ' ') name.erase(0, 1);
      }
      opt_.user = name;  // a retry after "server busy" does not ask again
      state_ = jim::client::chat_state(name, settings());
      // --json is a thin pipe: no tokens there.
      if (!opt_.json) tokens_ = jim::client::token_store(jim::client::state_dir(), opt_.host, opt_.port, name);
      if (!token_) token_ = tokens_.load();
    }
    if (token_) {
      request({{"action", "authenticate"}, {"user", {{"account_name", state_.me()}, {"token", *token_}}}}, true);
      auto r = co_await reply();
      if (!r) co_return signin::lost;
      if (status_of(*r) == 200) {
        keep_token(*r);
        con_.show(state_.signed_in_line(*r, !first));
        co_return signin::ok;
      }
      if (transient(status_of(*r))) {
        auto const* e = r->if_contains("error");
        con_.show({tone::error, "! " + (e && e->is_string() ? jim::client::printable(e->get_string())
                                                          : "the server refused to sign in now")});
        co_return not_now(*r);
      }
      // Refused (402: expired or revoked; 404: no such account any more): forgotten, and
      // the password is needed, on a new connection (the server closes after a 402).
      tokens_.forget();
      token_.reset();
      if (!first && !opt_.password) {
        con_.show({tone::error, "! the server refused this session's token (expired or revoked): "
                                "run jim again to sign in with the password"});
        co_return signin::refused;
      }
      if (con_.interactive())
        con_.show({tone::info, "* the saved sign-in for " + state_.me() + " is no longer valid: " +
                                   (opt_.password ? "signing in with the password" : "the password, please")});
      if (!co_await open()) {
        if (first) con_.show({tone::error, "jim: cannot connect to " + where() + ": " + connect_error_});
        co_return signin::lost;
      }
    } else if (!first && !opt_.password) {
      con_.show({tone::error, "! cannot sign in again without asking for the password (the server gave "
                              "no token): run jim again"});
      co_return signin::refused;
    }
    co_return co_await password_sign_in(first);
  }

  /// Guided sign-in: presence, then one password (login) or two (new account).
  awaitable<signin> password_sign_in(bool first) {
    const std::string name = state_.me();
    request({{"action", "presence"}, {"user", {{"account_name", name}}}});
    auto r = co_await reply();
    if (!r) co_return signin::lost;
    if (status_of(*r) != 100) co_return transient(status_of(*r)) ? not_now(*r) : signin::refused;
    auto const* auth = r->if_contains("auth");
    const bool login = auth && auth->is_string() && auth->get_string() == "login";
    if (!login && con_.interactive() && !opt_.password)
      con_.show({tone::info, "* " + name + " is a new account: choose its password"});
    const bool quiet = !first;  // a reconnect tells it in its own words
    for (;;) {
      auto pw = co_await password("Password: ");
      if (!pw) co_return signin::refused;
      request({{"action", "authenticate"}, {"user", {{"password", *pw}}}}, quiet && login);
      if (!(r = co_await reply())) co_return signin::lost;
      if (login) {
        // 402: shown, and the server closes.
        if (status_of(*r) != 200) {
          if (!transient(status_of(*r))) co_return signin::refused;
          retry_password_ = *pw;  // "busy": the same password on the next try, not asked again
          co_return not_now(*r);
        }
        keep_token(*r);
        if (quiet) con_.show(state_.signed_in_line(*r, true));
        co_return signin::ok;
      }
      if (status_of(*r) != 100) co_return signin::refused;
      auto again = co_await password("Repeat the password: ");
      if (!again) co_return signin::refused;
      request({{"action", "authenticate"}, {"user", {{"password", *again}}}});
      if (!(r = co_await reply())) co_return signin::lost;
      if (status_of(*r) == 201) {
        keep_token(*r);
        co_return signin::ok;
      }
      if (transient(status_of(*r))) {  // "busy": the next try starts again from this password
        retry_password_ = *pw;
        co_return not_now(*r);
      }
      // 400: they differ, and the server expects the first password again.
      if (status_of(*r) != 400 || opt_.password) co_return signin::refused;
    }
  }

  /// A sign-in refused for now (429/503): `lost`, and its `retry_after` (seconds, if any) kept
  /// in busy_after_ for the wait before the next attempt.
  signin not_now(json::object const& r) {
    auto const* a = r.if_contains("retry_after");
    busy_after_ = a && a->is_number() ? std::max(a->to_number<double>(), 0.001) : 0;
    return signin::lost;
  }

  /// The wait after a "busy" answer: its retry_after plus up to a quarter more (so that the
  /// clients told the same figure do not all come back at once), at least 0.1 s.
  std::chrono::milliseconds busy_delay(std::mt19937& random) const {
    std::uniform_real_distribution<double> spread(1.0, 1.25);
    return std::chrono::milliseconds(std::max<long>(100, std::lround(busy_after_ * 1000 * spread(random))));
  }

  static std::string seconds_text(std::chrono::milliseconds d) {
    char text[32];
    std::snprintf(text, sizeof text, "%.1f", static_cast<double>(d.count()) / 1000.0);
    return text;
  }

  /// At start: while the server answers "busy" with a `retry_after` (§9.7, §9.8), says so,
  /// waits that long (or the back-off, if longer) and tries again on a new connection, at most
  /// busy_retries_at_start times. Returns the last attempt's outcome.
  awaitable<signin> retry_while_busy(signin s) {
    std::mt19937 random(std::random_device{}());
    auto delay = std::chrono::duration_cast<std::chrono::milliseconds>(backoff_first);
    for (int retry = 1; s == signin::lost && busy_after_ > 0 && retry <= busy_retries_at_start; ++retry) {
      std::uniform_int_distribution<long> pick(delay.count() / 2, delay.count());
      const auto wait_for = std::max(busy_delay(random), std::chrono::milliseconds(pick(random)));
      delay = std::min(delay * 2, std::chrono::duration_cast<std::chrono::milliseconds>(backoff_max));
      con_.show({tone::info, "* server busy, retrying in " + seconds_text(wait_for) + " s"});
      co_await wait(wait_for);
      // A connection that cannot be opened now is one more busy round (the server may be
      // restarting); the last one is told.
      while (!co_await open()) {
        if (++retry > busy_retries_at_start) {
          con_.show({tone::error, "jim: cannot connect to " + where() + ": " + connect_error_});
          co_return signin::lost;
        }
        co_await wait(std::chrono::milliseconds(pick(random)));
      }
      s = co_await sign_in(true);
    }
    co_return s;
  }

  /// Saves the token a sign-in reply carries (for this run's reconnects and the next runs).
  void keep_token(json::object const& r) {
    auto const* t = r.if_contains("token");
    if (opt_.json || !t || !t->is_string() || t->get_string().empty()) return;
    token_ = std::string(t->get_string());
    if (auto err = tokens_.save(*token_); !err.empty() && con_.interactive())
      con_.show({tone::error, "! the sign-in is not saved for next time: " + err});
  }

  awaitable<std::optional<std::string>> password(std::string prompt) {
    if (opt_.password) co_return *opt_.password;
    if (retry_password_) {
      auto pw = std::move(retry_password_);
      retry_password_.reset();
      co_return pw;
    }
    co_return co_await con_.ask(std::move(prompt), true);
  }

  /// The next reply, showing the pushes met on the way; nothing if the connection ends first.
  awaitable<std::optional<json::object>> reply() {
    for (;;) {
      auto frame = co_await conn_->receive();
      if (!frame) co_return std::nullopt;
      handle(*frame);
      if (frame->contains("response")) co_return frame;
    }
  }

  awaitable<void> from_server() {
    while (auto frame = co_await conn_->receive()) handle(*frame);
  }

  /// The connection ended for good: unless we asked for it, say so, and which messages did
  /// not go.
  void disconnected() {
    if (ending_ != ending::none) return;
    ending_ = ending::lost;
    const auto& why = conn_->why_ended();
    // After a notice (shutdown, takeover) the server closed on purpose and said why; any
    // other end is a lost connection (a crashed or killed server, a network failure).
    const std::string what = state_.last_notice().empty() ? "connection to " + where() + " lost"
                                                          : "the server closed the connection";
    con_.show({tone::error, "! " + what + (why.empty() ? std::string() : " (" + why + ")")});
    con_.show(state_.give_up(state_.last_notice().empty() ? "connection lost" : "the server closed the connection"));
  }

  awaitable<void> from_user() {
    json::object leave{{"action", "quit"}};
    bool told_offline = false;
    while (auto line = co_await con_.read_line()) {
      if (opt_.json) {
        if (const auto n = jim::client::count_frames(*line); n > 0) {
          json_pending_ += n;
          conn_->send_raw(*line + "\n");
        }
        continue;
      }
      auto in = jim::client::parse_input(*line);
      if (auto* r = std::get_if<jim::client::send_request>(&in)) {
        const auto action = r->frame.at("action");
        if (action == "quit") break;
        if (action == "logout") {
          // Deleted here at once; the server revokes it when it gets the request.
          tokens_.forget();
          token_.reset();
          leave = std::move(r->frame);
          break;
        }
        // A message shows once the server has accepted it (chat_state), not as typed.
        if (action == "msg") con_.erase_entered();
        con_.show(state_.submit(std::move(r->frame)));
        if (!online_ && !std::exchange(told_offline, true))
          con_.show({tone::info, "* not connected: what you type is sent once jim has reconnected"});
        if (online_) told_offline = false;
        kick();
      } else if (auto* u = std::get_if<jim::client::usage_hint>(&in)) {
        // Said, or whatever is typed next is added to the refused line (even a /quit).
        const bool kept = u->edit_again && con_.edit_again(*line);
        con_.show({tone::error, u->text + (kept ? " (the line is kept for editing: fix it, or "
                                                  "Ctrl-U clears it)"
                                                : "")});
        ++usage_errors_;  // a script with a broken command has failed too
      } else if (std::holds_alternative<jim::client::show_help>(in)) {
        std::vector<out_line> lines;
        std::string_view text = jim::client::help_text();
        for (auto nl = text.find('\n'); !text.empty(); nl = text.find('\n')) {
          lines.push_back({tone::info, std::string(text.substr(0, nl))});
          text = nl == std::string_view::npos ? std::string_view{} : text.substr(nl + 1);
        }
        con_.show(lines);
      }
    }
    // End of input or /quit: the replies still owed come first, then we leave. (Input also
    // ends when this coroutine is cancelled because the server or a signal ended the run.)
    if (ending_ != ending::none) co_return;
    ending_ = ending::quit;
    const bool logout = leave.at("action") == "logout";
    if (logout) con_.show({tone::info, "* signed out: the saved sign-in is deleted"});
    if (opt_.json) {
      asio::steady_timer idle(co_await asio::this_coro::executor);
      timer_slot slot(idle_, idle);
      while (json_pending_ > 0) {
        idle.expires_at(asio::steady_timer::time_point::max());
        co_await idle.async_wait(nothrow);
      }
      co_return;  // closing the socket is all a raw pipe needs
    }
    if (!online_) {
      // Reconnecting: leave at once; what was typed meanwhile is not sent.
      con_.show(state_.drop_queued("you left while disconnected"));
      if (logout) con_.show({tone::error, "! the server was not told: the token stays valid there until it expires"});
      co_return;
    }
    // The quit waits its turn behind the messages still queued (a 429 may hold them back).
    state_.submit(std::move(leave));
    kick();
    {
      asio::steady_timer progress(co_await asio::this_coro::executor);
      timer_slot slot(progress_, progress);
      while (!state_.outbox_empty()) {
        progress.expires_at(asio::steady_timer::time_point::max());
        co_await progress.async_wait(nothrow);  // sender() cancels it after each write
      }
    }
    co_await wait(quit_bound);  // online() ends first, when the server closes
  }

  /// Ctrl-C, SIGTERM, SIGHUP: leave politely. SIGWINCH: the terminal was resized. SIGTSTP
  /// (Ctrl-Z, kill -TSTP): the terminal is given back before jim stops. SIGCONT: back from a
  /// stop, the prompt is drawn again.
  awaitable<void> signals() {
    asio::signal_set sigs(co_await asio::this_coro::executor, SIGINT, SIGTERM, SIGHUP);
    sigs.add(SIGWINCH);
    sigs.add(SIGTSTP);
    sigs.add(SIGCONT);
    for (;;) {
      auto [ec, sig] = co_await sigs.async_wait(nothrow);
      if (ec) continue;  // cancelled: the next co_await throws and ends this coroutine
      if (sig == SIGWINCH)
        con_.resized();
      else if (sig == SIGTSTP)
        con_.suspend();
      else if (sig == SIGCONT)
        con_.redraw();
      else
        break;
    }
    if (ending_ == ending::none) ending_ = ending::interrupted;
    con_.stop_editing();
    con_.show(state_.drop_queued("jim was interrupted"));
    if (!signed_in_ || opt_.json || !online_) co_return;  // nothing to wait for; closing is enough
    request({{"action", "quit"}});
    co_await wait(quit_bound);
  }

  awaitable<void> wait(std::chrono::steady_clock::duration d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(nothrow);
  }

  void request(json::object frame, bool quiet = false) {
    state_.sent(frame, quiet);
    if (opt_.json) ++json_pending_;
    conn_->send(frame);
  }

  void handle(json::object const& frame) {
    if (opt_.json) {
      con_.raw(json::serialize(frame));
      if (!frame.contains("response")) return;
      if (status_of(frame) >= 400) ++json_failures_;
      if (json_pending_ > 0 && --json_pending_ == 0 && idle_) idle_->cancel();
      return;
    }
    auto reaction = state_.received(frame, jim::proto::unix_now());
    con_.show(reaction.lines);
    if (reaction.answer) conn_->send(*reaction.answer);
    if (signed_in_ && online_) con_.set_prompt(state_.prompt());
    // A reply may let the outbox go on; a push may have queued a request (a notice: where are we?).
    if (frame.contains("response") || !state_.outbox_empty()) kick();
  }

  options opt_;
  jim::client::console& con_;
  std::shared_ptr<asio::ssl::context> tls_;  ///< null: plaintext
  std::shared_ptr<jim::client::connection> conn_;
  std::string connect_error_;
  jim::client::chat_state state_;
  jim::client::token_store tokens_{{}, {}, {}, {}};
  std::optional<std::string> token_;  ///< this session's resume token, if the server gave one
  double busy_after_ = 0;  ///< the last sign-in attempt was answered "busy, retry after" (s); 0: not
  std::optional<std::string> retry_password_;  ///< the password typed before a "busy" answer
  ending ending_ = ending::none;
  bool signed_in_ = false;
  bool online_ = false;  ///< signed in on the current connection
  std::size_t json_pending_ = 0;  ///< --json: replies still owed
  int json_failures_ = 0;
  int usage_errors_ = 0;
  asio::steady_timer* idle_ = nullptr;  ///< --json: woken when json_pending_ drops to 0
  asio::steady_timer* sender_wake_ = nullptr;  ///< sender()'s sleep, cancelled by kick()
  asio::steady_timer* progress_ = nullptr;     ///< woken when sender() has written
};

constexpr char const* usage_line =
    "Usage: jim [-a ADDR] [-p PORT] [-u NAME] [--tls [--ca-file FILE | --insecure]] [--json]\n"
    "           [--password-file FILE] [--max-message BYTES] [--no-reconnect]\n"
    "       jim ADDR PORT";

/// Options, or the exit code when there is nothing to run (--help, --version, an error).
std::variant<options, int> parse_command_line(int argc, char** argv) {
  options o;
  std::string password_file;
  po::options_description visible("Options");
  visible.add_options()("help,h", "show this help and exit")(
      "version,V", "show the version and exit")("address,a", po::value(&o.host),
                                                "jimd's address (default 127.0.0.1)")(
      "port,p", po::value(&o.port), "jimd's port (default 7777)")(
      "user,u", po::value(&o.user),
      "account name (asked for when not given; required without a terminal)")(
      "password-file", po::value(&password_file), "read the password from the first line of FILE")(
      "json", po::bool_switch(&o.json),
      "print each frame received as one JSON line; send each input line as a raw frame")(
      "max-message", po::value(&o.max_message)->value_name("BYTES"),
      "send a longer text as several messages, cut at character boundaries (default 4096, "
      "the daemon's default limit)")(
      "tls", po::bool_switch(&o.tls),
      "connect over TLS; the server's certificate must be signed by a CA the system trusts (or "
      "--ca-file) and name ADDR")(
      "ca-file", po::value(&o.tls_opt.ca_file)->value_name("FILE"),
      "trust the CA certificates in FILE (PEM) instead of the system's (implies --tls)")(
      "insecure", po::bool_switch(&o.tls_opt.insecure),
      "TLS without checking the server's certificate (implies --tls; warns: anyone on the way "
      "can read and change everything, the password included)")(
      "no-reconnect", "on a terminal, exit when the connection is lost instead of reconnecting");
  po::options_description all;
  all.add(visible).add_options()("endpoint", po::value<std::vector<std::string>>());
  po::positional_options_description positional;
  positional.add("endpoint", 2);
  po::variables_map vm;
  try {
    po::store(po::command_line_parser(argc, argv).options(all).positional(positional).run(), vm);
    po::notify(vm);
  } catch (po::error const& e) {
    std::cerr << "jim: " << e.what() << "\n" << usage_line << "\n";
    return 2;
  }
  if (vm.count("help")) {
    std::cout
        << usage_line
        << "\n\nChat with a jimd daemon. On a terminal, jim asks for the name (unless -u) and the\n"
           "password (twice for a new account; unless --password-file or JIM_PASSWORD gives\n"
           "it), then reads lines to send:\n\n"
        << jim::client::help_text() << "\n\n"
        << visible
        << "\nWithout a terminal (a script), the password comes from --password-file or the\n"
           "JIM_PASSWORD variable, lines are read from standard input, and jim leaves once it\n"
           "ends and every request has its reply. With --json and no -u, the script signs in\n"
           "itself (its first line is e.g. an authenticate frame). Colours are used on a\n"
           "terminal unless NO_COLOR is set.\n\n"
           "On a terminal jim watches every room you are a member of: what is said in a room\n"
           "you are not looking at, or privately outside an open /query, is counted in the\n"
           "prompt ([#den 3] [@bob 1] #general> ); /switch, /join, /exit and /query show the\n"
           "unread messages under a \"new messages\" divider and mark them read.\n\n"
           "A text longer than --max-message bytes is sent as several messages. Your own\n"
           "messages show once the server has accepted them; one refused for going too fast\n"
           "is sent again when the server allows, in order.\n\n"
           "With --tls the connection is encrypted and the server's certificate checked: signed\n"
           "by a CA of the system (or of --ca-file) and naming ADDR; jim refuses to talk to a\n"
           "server that fails the check and says why.\n\n"
           "After a password sign-in jim saves the server's resume token in\n"
           "$XDG_STATE_HOME/jim/tokens/ (default ~/.local/state/jim/, private to you) and\n"
           "signs in with it next time without asking for the password; /logout revokes and\n"
           "deletes it. On a terminal, a lost connection (a server restart) is opened again by\n"
           "itself, waiting 0.5 s, then twice as long after each failure, up to 30 s; jim signs\n"
           "in with the token, watches your rooms again, enters the room you were in and shows\n"
           "what you missed. The input history is kept in $XDG_STATE_HOME/jim/history (1000\n"
           "lines; passwords never).\n\n"
           "Exit status: 0 when all went well; 1 when sign-in failed or was interrupted, the\n"
           "server closed the connection, or (without a terminal) a request failed; 2 for a\n"
           "usage or connection error.\n";
    return 0;
  }
  if (vm.count("no-reconnect")) o.reconnect = false;
  if (!o.tls_opt.ca_file.empty() || o.tls_opt.insecure) o.tls = true;
  if (!o.tls_opt.ca_file.empty() && o.tls_opt.insecure) {
    std::cerr << "jim: --ca-file and --insecure contradict each other\n";
    return 2;
  }
  if (vm.count("version")) {
    std::cout << "jim 0.1.0\n";
    return 0;
  }
  if (vm.count("endpoint")) {
    auto const& ep = vm["endpoint"].as<std::vector<std::string>>();
    if (ep.size() != 2) {
      std::cerr << "jim: give both ADDR and PORT\n" << usage_line << "\n";
      return 2;
    }
    o.host = ep[0];
    o.port = ep[1];
  }
  unsigned port = 0;
  auto [end, ec] = std::from_chars(o.port.data(), o.port.data() + o.port.size(), port);
  if (ec != std::errc{} || end != o.port.data() + o.port.size() || port == 0 || port > 65535) {
    std::cerr << "jim: invalid port '" << o.port << "'\n";
    return 2;
  }
  if (o.max_message < 4 || o.max_message > (std::size_t{1} << 30)) {
    std::cerr << "jim: --max-message must be between 4 bytes (one character) and 1 GiB\n";
    return 2;
  }
  if (!password_file.empty()) {
    std::ifstream in(password_file);
    std::string line;
    if (!in || !std::getline(in, line)) {
      std::cerr << "jim: cannot read the password from " << password_file << "\n";
      return 2;
    }
    if (!line.empty() && line.back() == '\r') line.pop_back();
    o.password = line;
  } else if (char const* env = std::getenv("JIM_PASSWORD")) {
    o.password = env;
  }
  return o;
}

}  // namespace

int main(int argc, char** argv) {
  // Before libedit starts: in the "C" locale it drops every non-ASCII character typed.
  jim::client::use_utf8_locale();
  auto parsed = parse_command_line(argc, argv);
  if (auto const* code = std::get_if<int>(&parsed)) return *code;
  auto& opt = std::get<options>(parsed);

  const bool interactive = !opt.json && isatty(STDIN_FILENO);
  // A raw --json pipe without -u signs in by itself; everything else needs a name and a
  // password that a script cannot be asked for.
  if (!interactive && !(opt.json && opt.user.empty())) {
    if (opt.user.empty()) {
      std::cerr << "jim: no terminal: give the account name with -u NAME\n";
      return 2;
    }
    if (!opt.password) {
      std::cerr << "jim: no terminal: set JIM_PASSWORD or use --password-file FILE\n";
      return 2;
    }
  }
  char const* no_colour = std::getenv("NO_COLOR");
  const bool colour = !opt.json && isatty(STDOUT_FILENO) && !(no_colour && *no_colour);

  asio::io_context ioc(1);
  int code = 1;
  try {
    std::shared_ptr<asio::ssl::context> tls;
    if (opt.tls) {
      tls = jim::client::make_tls_context(opt.tls_opt);
      if (opt.tls_opt.insecure)
        std::fprintf(stderr,
                     "jim: warning: --insecure: the server's certificate is not checked; anyone on the way can "
                     "read and change what you send, your password included\n");
    }
    jim::client::console con(ioc.get_executor(), interactive, colour);
    std::filesystem::path history;
    if (interactive) {
      if (auto dir = jim::client::state_dir(); !dir.empty() && jim::client::make_private_dir(dir).empty())
        history = dir / "history";
      con.load_history(history);
    }
    app a(std::move(opt), con, std::move(tls));
    asio::co_spawn(ioc, a.run(), [&code](std::exception_ptr e, int c) {
      code = c;
      if (!e) return;
      code = 1;
      try {
        std::rethrow_exception(e);
      } catch (std::exception const& x) {
        std::fprintf(stderr, "jim: %s\n", x.what());
      }
    });
    ioc.run();
    if (auto err = con.save_history(); !err.empty()) std::fprintf(stderr, "jim: %s\n", err.c_str());
  } catch (std::exception const& e) {
    std::fprintf(stderr, "jim: %s\n", e.what());
    return 2;
  }
  return code;
}
