#include "options.hpp"

#include <catch2/catch.hpp>

#include <cstdio>
#include <fstream>

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
