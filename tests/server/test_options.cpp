#include "options.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>
#include <unistd.h>

using namespace jim::server;

namespace {
parse_outcome parse(std::vector<char const*> args) {
  args.insert(args.begin(), "jimd");
  return parse_options(static_cast<int>(args.size()), args.data());
}
}  // namespace

TEST_CASE("Defaults follow the contract", "[options]") {
  auto r = parse({});
  REQUIRE(std::holds_alternative<run_daemon>(r));
  auto const& c = std::get<run_daemon>(r).cfg;
  CHECK(c.port == 7777);
  CHECK(c.data_dir == "./data");
  CHECK(c.max_clients == 1000);
  CHECK(c.max_frame == 65536);
  CHECK(c.max_message == 4096);
  CHECK(c.max_outbound == 1048576);
  CHECK(c.idle_timeout.count() == 300);
  CHECK(c.history_on_join == 20);
  CHECK(c.history_limit == 1000);
  CHECK(c.rate_limit == 10);
  CHECK(c.rate_burst == 20);
  CHECK(c.autosave.count() == 60);
  CHECK(c.kdf_iterations >= 100000);
  CHECK(c.hash_threads == 0);
  CHECK(c.http_port == 7780);
}

TEST_CASE("A bad option or value is a one-line error naming it", "[options]") {
  for (auto args : {std::vector<char const*>{"--bogus"},
                    {"-p", "70000"},
                    {"--max-clients", "abc"},
                    {"--log-level", "loud"},
                    {"--rate-limit", "-1"},
                    {"--hash-threads", "-2"}}) {
    auto r = parse(args);
    REQUIRE(std::holds_alternative<print_and_exit>(r));
    auto const& out = std::get<print_and_exit>(r);
    CHECK(out.exit_code != 0);
    CHECK(out.text.find('\n') == out.text.size() - 1);
    CHECK(out.text.find(std::string(args[0]).substr(std::string(args[0]).find_first_not_of('-'))) !=
          std::string::npos);
  }
}

TEST_CASE("The config file sets options and the command line wins", "[options]") {
  const std::string path = "/tmp/jimd-options-test.conf";
  {
    std::ofstream out(path);
    out << "# comment\nport = 9000\nmax-clients = 5\nhistory-limit = 7\n";
  }
  auto r = parse({"-c", path.c_str(), "--max-clients", "6"});
  std::remove(path.c_str());
  REQUIRE(std::holds_alternative<run_daemon>(r));
  auto const& c = std::get<run_daemon>(r).cfg;
  CHECK(c.port == 9000);
  CHECK(c.max_clients == 6);
  CHECK(c.history_limit == 7);
}

TEST_CASE("Help and version (--help, --version) print and exit 0", "[options]") {
  auto h = parse({"--help"});
  REQUIRE(std::holds_alternative<print_and_exit>(h));
  CHECK(std::get<print_and_exit>(h).exit_code == 0);
  CHECK(std::get<print_and_exit>(h).text.find("--kdf-iterations") != std::string::npos);
  auto v = parse({"--version"});
  CHECK(std::get<print_and_exit>(v).text.find("jimd") != std::string::npos);
}

namespace {
config parsed_ok(std::vector<char const*> args) {
  auto r = parse(args);
  if (auto* out = std::get_if<print_and_exit>(&r)) FAIL("refused: " << out->text);
  return std::get<run_daemon>(r).cfg;
}

/// The one-line error for `args`; checks that it names every option in `names`.
std::string refused(std::vector<char const*> args, std::vector<std::string> const& names) {
  auto r = parse(args);
  REQUIRE(std::holds_alternative<print_and_exit>(r));
  auto const& out = std::get<print_and_exit>(r);
  CHECK(out.exit_code != 0);
  CHECK(out.text.find('\n') == out.text.size() - 1);
  for (auto const& n : names) CHECK(out.text.find("--" + n) != std::string::npos);
  return out.text;
}

/// A config file with `text`, removed at the end of the scope.
struct config_file {
  std::string path = "/tmp/jimd-options-test-" + std::to_string(::getpid()) + ".conf";
  explicit config_file(std::string const& text) { std::ofstream(path) << text; }
  ~config_file() { std::remove(path.c_str()); }
};
}  // namespace

TEST_CASE("An option left at its default adapts to the one the user set", "[options]") {
  SECTION("--max-frame below the default max-message: max-message follows it") {
    auto c = parsed_ok({"--max-frame", "1024"});
    CHECK(c.max_frame == 1024);
    CHECK(c.max_message == 1024);
  }
  SECTION("--max-frame above the default max-message: nothing else changes") {
    auto c = parsed_ok({"--max-frame", "8192"});
    CHECK(c.max_message == 4096);
  }
  SECTION("--max-message above the default max-frame: max-frame grows") {
    auto c = parsed_ok({"--max-message", "100000"});
    CHECK(c.max_message == 100000);
    CHECK(c.max_frame >= 100000);
    CHECK(c.max_outbound == 1u << 20);
  }
  SECTION("--max-message above the default max-outbound: max-outbound grows") {
    auto c = parsed_ok({"--max-message", "2000000"});
    CHECK(c.max_frame >= 2000000);
    CHECK(c.max_outbound > 2000000);
  }
  SECTION("--max-outbound below the default max-message: max-message shrinks") {
    auto c = parsed_ok({"--max-outbound", "2048"});
    CHECK(c.max_outbound == 2048);
    CHECK(c.max_message < 2048);
    CHECK(c.max_message >= 1);
  }
  SECTION("--history-limit below the default history-on-join") {
    auto c = parsed_ok({"--history-limit", "5"});
    CHECK(c.history_limit == 5);
    CHECK(c.history_on_join == 5);
  }
  SECTION("--history-on-join above the default history-limit") {
    auto c = parsed_ok({"--history-on-join", "2000"});
    CHECK(c.history_on_join == 2000);
    CHECK(c.history_limit == 2000);
  }
  SECTION("--rate-limit: the burst is two seconds' worth, at least 1") {
    CHECK(parsed_ok({"--rate-limit", "2"}).rate_burst == 4);
    CHECK(parsed_ok({"--rate-limit", "0.1"}).rate_burst == 1);
    CHECK(parsed_ok({"--rate-limit", "0"}).rate_burst == 20);
    CHECK(parsed_ok({"--rate-limit", "2", "--rate-burst", "30"}).rate_burst == 30);
  }
  SECTION("--port on the default HTTP port, or --http-port on the default port") {
    auto c = parsed_ok({"-p", "7780"});
    CHECK(c.port == 7780);
    CHECK(c.http_port != 7780);
    auto d = parsed_ok({"--http-port", "7777"});
    CHECK(d.http_port == 7777);
    CHECK(d.port != 7777);
  }
  SECTION("the same port on different addresses, or two ephemeral ports") {
    auto c = parsed_ok(
        {"-p", "7000", "--http-port", "7000", "-a", "127.0.0.1", "--http-address", "127.0.0.2"});
    CHECK(c.port == 7000);
    CHECK(c.http_port == 7000);
    auto d = parsed_ok({"-p", "0", "--http-port", "0"});
    CHECK(d.port == 0);
    CHECK(d.http_port == 0);
  }
  SECTION("a value from the config file adapts the defaults too") {
    config_file f("max-frame = 1024\nhistory-limit = 3\n");
    auto c = parsed_ok({"-c", f.path.c_str()});
    CHECK(c.max_message == 1024);
    CHECK(c.history_on_join == 3);
  }
}

TEST_CASE("Two options the user set that contradict each other: an error naming both",
          "[options]") {
  SECTION("on the command line") {
    refused({"--max-frame", "1024", "--max-message", "2000"}, {"max-frame", "max-message"});
    refused({"--max-message", "4000", "--max-outbound", "2048"}, {"max-message", "max-outbound"});
    refused({"--history-on-join", "50", "--history-limit", "10"},
            {"history-on-join", "history-limit"});
    refused({"-p", "7000", "--http-port", "7000"}, {"port", "http-port"});
  }
  SECTION("one in the config file, one on the command line") {
    config_file f("max-message = 4096\n");
    refused({"-c", f.path.c_str(), "--max-frame", "1024"}, {"max-frame", "max-message"});
  }
  SECTION("both in the config file") {
    config_file f("history-on-join = 50\nhistory-limit = 10\n");
    refused({"-c", f.path.c_str()}, {"history-on-join", "history-limit"});
  }
}

TEST_CASE("The option --log-messages chooses which chat texts are logged (default: rooms)", "[options]") {
  CHECK(parsed_ok({}).log_messages == message_logging::rooms);
  CHECK(parsed_ok({"--log-messages", "none"}).log_messages == message_logging::none);
  CHECK(parsed_ok({"--log-messages", "all"}).log_messages == message_logging::all);
  config_file f("log-messages = all\n");
  CHECK(parsed_ok({"-c", f.path.c_str()}).log_messages == message_logging::all);
  refused({"--log-messages", "private"}, {"log-messages"});
}

TEST_CASE("An address that is not an IP address is refused naming the option", "[options]") {
  refused({"-a", "not-an-address"}, {"address"});
  refused({"--http-address", "300.1.2.3"}, {"http-address"});
  CHECK(parsed_ok({"-a", "::1"}).address == "::1");
  CHECK(parsed_ok({"-a", "127.0.0.1"}).address == "127.0.0.1");
}

TEST_CASE("A config file error names the file and the line", "[options]") {
  struct bad_case {
    std::string text;
    int line;
    std::string named;
  };
  for (auto const& [text, line, named] : std::vector<bad_case>{
           {"port = 9000\nno-such-option = 1\n", 2, "unknown option 'no-such-option'"},
           {"# a comment\n\nport = abc\n", 3, "port"},
           {"max-clients = 5\nfsync = sometimes   # a comment\n", 2, "--fsync"},
           {"max-clients = 5\n  max-clients = 6\n", 2, "first on line 1"},
           {"port = 1\njust words\n", 2, "'just words' is not 'name = value'"},
           {"[tls]\ncert = x.pem\n", 2, "unknown option 'tls.cert'"},
           {"port = 1\nhistory-on-join = 50\nhistory-limit = 10\n", 2, "--history-limit (10)"},
           {"max-clients = -3\n", 1, "--max-clients"},
           {"metrics-allow = 10.0.0.0/33\n", 1, "--metrics-allow"},
           {"syslog = perhaps\n", 1, "syslog"}}) {
    CAPTURE(text);
    config_file f(text);
    auto r = parse({"-c", f.path.c_str()});
    REQUIRE(std::holds_alternative<print_and_exit>(r));
    auto const& out = std::get<print_and_exit>(r);
    CHECK(out.exit_code == 2);
    CHECK(out.text.find(f.path + ":" + std::to_string(line) + ": ") != std::string::npos);
    CHECK(out.text.find(named) != std::string::npos);
    CHECK(out.text.find('\n') == out.text.size() - 1);
  }
}

TEST_CASE("A config file error is not blamed on the file when the command line gave the value",
          "[options]") {
  config_file f("port = 9000\nmax-clients = 5\n");
  auto r = parse({"-c", f.path.c_str(), "--max-clients", "abc"});
  REQUIRE(std::holds_alternative<print_and_exit>(r));
  auto const& out = std::get<print_and_exit>(r).text;
  CHECK(out.find("max-clients") != std::string::npos);
  CHECK(out.find(f.path) == std::string::npos);
}

TEST_CASE("A config file that cannot be read: its name and the reason", "[options]") {
  auto r = parse({"-c", "/nonexistent/jimd.conf"});
  REQUIRE(std::holds_alternative<print_and_exit>(r));
  CHECK(std::get<print_and_exit>(r).text ==
        "jimd: cannot read the config file /nonexistent/jimd.conf: No such file or directory\n");
  r = parse({"-c", "/tmp"});
  REQUIRE(std::holds_alternative<print_and_exit>(r));
  CHECK(std::get<print_and_exit>(r).text ==
        "jimd: cannot read the config file /tmp: Is a directory\n");
}

TEST_CASE("The options --nats and --admin take comma-separated lists, blanks around the commas ignored",
          "[options]") {
  auto r = parse({"--nats", "nats://127.0.0.1:4222, nats://127.0.0.1:4223 ", "--admin",
                  "alice ,Bob.9"});
  REQUIRE(std::holds_alternative<run_daemon>(r));
  auto const& c = std::get<run_daemon>(r).cfg;
  CHECK(c.nats == std::vector<std::string>{"nats://127.0.0.1:4222", "nats://127.0.0.1:4223"});
  CHECK(c.admins == std::vector<std::string>{"alice", "Bob.9"});

  auto none = parse({"--nats", "", "--admin", ""});
  REQUIRE(std::holds_alternative<run_daemon>(none));
  CHECK(std::get<run_daemon>(none).cfg.nats.empty());
  CHECK(std::get<run_daemon>(none).cfg.admins.empty());

  // An empty item, or a blank inside one, is an error naming the option.
  for (auto args : {std::vector<char const*>{"--nats", "nats://a:1,,nats://b:2"},
                    {"--nats", "nats://a:1,"},
                    {"--nats", "nats://a :1"},
                    {"--admin", "alice,"},
                    {"--admin", " , alice"},
                    {"--admin", "al ice"}}) {
    INFO(args[1]);
    auto bad = parse(args);
    REQUIRE(std::holds_alternative<print_and_exit>(bad));
    CHECK(std::get<print_and_exit>(bad).exit_code == 2);
    CHECK(std::get<print_and_exit>(bad).text.find(args[0]) != std::string::npos);
  }
}
