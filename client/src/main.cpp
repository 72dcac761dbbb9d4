// jim: the command-line client of jimd. One io_context serves the socket, the terminal and
// the signals, each from its own coroutine; commands.hpp holds everything that can be tested
// without them.

#include "commands.hpp"
#include "connection.hpp"
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
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <iostream>
#include <optional>
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
};

std::int64_t status_of(json::object const& reply) {
  auto const* v = reply.if_contains("response");
  return v && v->is_int64() ? v->get_int64() : 0;
}

/// One run of the client: sign-in, then the conversation until quit, end of input, a signal
/// or the server closing.
class app {
 public:
  app(options opt, jim::client::console& con, jim::client::connection& conn)
      : opt_(std::move(opt)), con_(con), conn_(conn), state_({}, settings()) {}

  /// Everything, from connecting to the exit code.
  awaitable<int> run() {
    if (auto ec = co_await conn_.connect(opt_.host, opt_.port)) {
      con_.show({tone::error,
                 "jim: cannot connect to " + opt_.host + ":" + opt_.port + ": " + ec.message()});
      co_return 2;
    }
    co_await (conversation() || conn_.write_loop() || signals());
    con_.stop_editing();
    co_return exit_code();
  }

 private:
  enum class ending { none, quit, lost, refused, interrupted };

  int exit_code() const {
    switch (ending_) {
      case ending::quit:
        if (opt_.json) return json_failures_ > 0 ? 1 : 0;
        return con_.interactive() || (state_.failures() == 0 && usage_errors_ == 0) ? 0 : 1;
      case ending::interrupted:
        // Ctrl-C after sign-in is a way to leave; before it, sign-in did not happen.
        return con_.interactive() && signed_in_ ? 0 : 1;
      case ending::none:
      case ending::lost:
      case ending::refused:
        break;
    }
    return 1;
  }

  awaitable<void> conversation() {
    // A --json pipe without -u is raw from the first frame: the script signs in itself.
    const bool raw = opt_.json && opt_.user.empty();
    if (!raw && !co_await sign_in()) {
      if (ending_ == ending::none) ending_ = ending::refused;
      co_return;
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
      con_.set_prompt(state_.room() + "> ");
    }
    co_await (from_server() || from_user() || sender());
  }

  jim::client::chat_settings settings() const {
    jim::client::chat_settings s;
    s.show_own = !opt_.json && con_.interactive();
    s.max_message = opt_.max_message;
    return s;
  }

  /// Writes what the outbox allows, in order; sleeps until a reply, a new request or the end
  /// of a 429's wait changes that. Runs until cancelled.
  awaitable<void> sender() {
    asio::steady_timer wake(co_await asio::this_coro::executor);
    for (;;) {
      for (auto& frame : state_.take_sendable(jim::client::chat_state::clock::now())) conn_.send(frame);
      if (progress_) progress_->cancel();
      const auto at = state_.wake_at();
      sender_wake_ = &wake;
      wake.expires_at(at ? *at : asio::steady_timer::time_point::max());
      co_await wake.async_wait(nothrow);
      sender_wake_ = nullptr;
    }
  }

  /// Tells sender() that the outbox may have something to write.
  void kick() {
    if (sender_wake_) sender_wake_->cancel();
  }

  /// Guided sign-in: presence, then one password (login) or two (new account).
  awaitable<bool> sign_in() {
    std::string name = opt_.user;
    while (!jim::proto::valid_account_name(name)) {
      if (!name.empty())
        con_.show({tone::error, "! an account name is 1 to 25 letters, digits, '_', '.' or '-'"});
      if (!con_.interactive()) co_return false;
      auto typed = co_await con_.ask("Name: ", false);
      if (!typed) co_return false;
      name = *typed;
      while (!name.empty() && name.back() == ' ') name.pop_back();
      while (!name.empty() && name.front() == ' ') name.erase(0, 1);
    }
    state_ = jim::client::chat_state(name, settings());
    request({{"action", "presence"}, {"user", {{"account_name", name}}}});
    auto r = co_await reply();
    if (!r || status_of(*r) != 100) co_return false;
    auto const* auth = r->if_contains("auth");
    const bool login = auth && auth->is_string() && auth->get_string() == "login";
    if (!login && con_.interactive() && !opt_.password)
      con_.show({tone::info, "* " + name + " is a new account: choose its password"});
    for (;;) {
      auto pw = co_await password("Password: ");
      if (!pw) co_return false;
      request({{"action", "authenticate"}, {"user", {{"password", *pw}}}});
      if (!(r = co_await reply())) co_return false;
      if (login) co_return status_of(*r) == 200;  // 402: shown, and the server closes
      if (status_of(*r) != 100) co_return false;
      auto again = co_await password("Repeat the password: ");
      if (!again) co_return false;
      request({{"action", "authenticate"}, {"user", {{"password", *again}}}});
      if (!(r = co_await reply())) co_return false;
      if (status_of(*r) == 201) co_return true;
      // 400: they differ, and the server expects the first password again.
      if (status_of(*r) != 400 || opt_.password) co_return false;
    }
  }

  awaitable<std::optional<std::string>> password(std::string prompt) {
    if (opt_.password) co_return *opt_.password;
    co_return co_await con_.ask(std::move(prompt), true);
  }

  /// The next reply, showing the pushes met on the way.
  awaitable<std::optional<json::object>> reply() {
    for (;;) {
      auto frame = co_await conn_.receive();
      if (!frame) {
        disconnected();
        co_return std::nullopt;
      }
      handle(*frame);
      if (frame->contains("response")) co_return frame;
    }
  }

  awaitable<void> from_server() {
    while (auto frame = co_await conn_.receive()) handle(*frame);
    disconnected();
  }

  /// The connection ended: unless we asked for it, say so, and which messages did not go.
  void disconnected() {
    if (ending_ != ending::none) return;
    ending_ = ending::lost;
    const auto& why = conn_.why_ended();
    // After a notice (shutdown, takeover) the server closed on purpose and said why; any
    // other end is a lost connection (a crashed or killed server, a network failure).
    const std::string what = state_.last_notice().empty()
                                 ? "connection to " + opt_.host + ":" + opt_.port + " lost"
                                 : "the server closed the connection";
    con_.show({tone::error, "! " + what + (why.empty() ? std::string() : " (" + why + ")")});
    con_.show(state_.give_up(state_.last_notice().empty() ? "connection lost" : "the server closed the connection"));
  }

  awaitable<void> from_user() {
    while (auto line = co_await con_.read_line()) {
      if (opt_.json) {
        if (const auto n = jim::client::count_frames(*line); n > 0) {
          json_pending_ += n;
          conn_.send_raw(*line + "\n");
        }
        continue;
      }
      auto in = jim::client::parse_input(*line);
      if (auto* r = std::get_if<jim::client::send_request>(&in)) {
        if (r->frame.at("action") == "quit") break;
        // A message shows once the server has accepted it (chat_state), not as typed.
        if (r->frame.at("action") == "msg") con_.erase_entered();
        state_.submit(std::move(r->frame));
        kick();
      } else if (auto* u = std::get_if<jim::client::usage_hint>(&in)) {
        con_.show({tone::error, u->text});
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
    if (opt_.json) {
      asio::steady_timer idle(co_await asio::this_coro::executor);
      while (json_pending_ > 0) {
        idle_ = &idle;
        idle.expires_at(asio::steady_timer::time_point::max());
        co_await idle.async_wait(nothrow);
      }
      idle_ = nullptr;
      co_return;  // closing the socket is all a raw pipe needs
    }
    // The quit waits its turn behind the messages still queued (a 429 may hold them back).
    state_.submit({{"action", "quit"}});
    kick();
    asio::steady_timer progress(co_await asio::this_coro::executor);
    while (!state_.outbox_empty()) {
      progress_ = &progress;
      progress.expires_at(asio::steady_timer::time_point::max());
      co_await progress.async_wait(nothrow);  // sender() cancels it after each write
    }
    progress_ = nullptr;
    co_await wait(quit_bound);  // from_server() ends first, when the server closes
  }

  /// Ctrl-C, SIGTERM, SIGHUP: leave politely. SIGWINCH: the terminal was resized. SIGCONT:
  /// back from Ctrl-Z, the prompt is drawn again.
  awaitable<void> signals() {
    asio::signal_set sigs(co_await asio::this_coro::executor, SIGINT, SIGTERM, SIGHUP);
    sigs.add(SIGWINCH);
    sigs.add(SIGCONT);
    for (;;) {
      auto [ec, sig] = co_await sigs.async_wait(nothrow);
      if (ec) continue;  // cancelled: the next co_await throws and ends this coroutine
      if (sig == SIGWINCH)
        con_.resized();
      else if (sig == SIGCONT)
        con_.redraw();
      else
        break;
    }
    if (ending_ == ending::none) ending_ = ending::interrupted;
    con_.stop_editing();
    con_.show(state_.drop_queued("jim was interrupted"));
    if (!signed_in_ || opt_.json) co_return;  // nothing to wait for; closing is enough
    request({{"action", "quit"}});
    co_await wait(quit_bound);
  }

  awaitable<void> wait(std::chrono::steady_clock::duration d) {
    asio::steady_timer t(co_await asio::this_coro::executor, d);
    co_await t.async_wait(nothrow);
  }

  void request(json::object frame) {
    state_.sent(frame);
    if (opt_.json) ++json_pending_;
    conn_.send(frame);
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
    if (reaction.answer) conn_.send(*reaction.answer);
    if (signed_in_) con_.set_prompt(state_.room() + "> ");
    if (frame.contains("response")) kick();  // a reply may let the outbox go on
  }

  options opt_;
  jim::client::console& con_;
  jim::client::connection& conn_;
  jim::client::chat_state state_;
  ending ending_ = ending::none;
  bool signed_in_ = false;
  std::size_t json_pending_ = 0;  ///< --json: replies still owed
  int json_failures_ = 0;
  int usage_errors_ = 0;
  asio::steady_timer* idle_ = nullptr;  ///< --json: woken when json_pending_ drops to 0
  asio::steady_timer* sender_wake_ = nullptr;  ///< sender()'s sleep, cancelled by kick()
  asio::steady_timer* progress_ = nullptr;     ///< woken when sender() has written
};

constexpr char const* usage_line =
    "Usage: jim [-a ADDR] [-p PORT] [-u NAME] [--json] [--password-file FILE] [--max-message BYTES]\n"
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
      "the daemon's default limit)");
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
           "A text longer than --max-message bytes is sent as several messages. Your own\n"
           "messages show once the server has accepted them; one refused for going too fast\n"
           "is sent again when the server allows, in order.\n\n"
           "Exit status: 0 when all went well; 1 when sign-in failed or was interrupted, the\n"
           "server closed the connection, or (without a terminal) a request failed; 2 for a\n"
           "usage or connection error.\n";
    return 0;
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
    jim::client::console con(ioc.get_executor(), interactive, colour);
    jim::client::connection conn(ioc.get_executor());
    app a(std::move(opt), con, conn);
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
  } catch (std::exception const& e) {
    std::fprintf(stderr, "jim: %s\n", e.what());
    return 2;
  }
  return code;
}
