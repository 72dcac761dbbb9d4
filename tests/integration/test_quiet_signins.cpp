// A reconnect storm writes nothing (issue 14): token sign-ins while nobody posts to #general
// append no event to the journal, and `missed` after kill -9 is what it was when every sign-in
// and sign-out was journaled.

#include "chat_helpers.hpp"
#include "files.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <signal.h>

#include <filesystem>
#include <map>
#include <string>
#include <vector>

using namespace jim::test;
namespace fs = std::filesystem;

namespace {

std::vector<std::string> args() {
  return {"--autosave", "0", "--rate-limit", "0", "--fsync", "always"};
}

json::object token_req(std::string const& name, std::string const& token) {
  return json::object{{"action", "authenticate"},
                      {"user", {{"account_name", name}, {"token", token}}}};
}

/// Registers `name` on a connection of its own, quits, and returns its token.
std::string register_quit(std::uint16_t port, std::string const& name) {
  client c(port);
  auto r = ask(c, register_req(name));
  REQUIRE(code_of(r) == 201);
  quit(c);
  return str(r, "token");
}

/// Signs in with `token` on a new connection; the reply checked 200.
client by_token(std::uint16_t port, std::string const& name, std::string const& token,
                std::uint64_t* missed = nullptr) {
  client c(port);
  auto r = ask(c, token_req(name, token));
  REQUIRE(code_of(r) == 200);
  if (missed) *missed = r.at("missed").to_number<std::uint64_t>();
  return c;
}

/// How many records of kind `ev` the journal segments in `dir` hold.
std::size_t journal_count(fs::path const& dir, std::string const& ev) {
  const std::string needle = "\"ev\":\"" + ev + "\"";
  std::size_t n = 0;
  for (auto const& e : fs::directory_iterator(dir)) {
    if (e.path().filename().string().rfind("journal-", 0) != 0) continue;
    const std::string bytes = read_bytes(e.path());
    for (auto at = bytes.find(needle); at != std::string::npos; at = bytes.find(needle, at + 1))
      ++n;
  }
  return n;
}

/// A private message from `c` to `to` (queued: 202), answered once stored: every event
/// appended before it is in the journal then.
void stored_marker(client& c, std::string const& to) {
  CHECK(code_of(say(c, "marker", to)) == 202);
}

}  // namespace

TEST_CASE("Token sign-ins while nobody posts to #general append nothing to the journal",
          "[integration][tokens][durability]") {
  temp_dir dir;
  jimd_process d(args(), dir.path());
  const std::string token = register_quit(d.port(), "alice");
  register_quit(d.port(), "nobody");
  auto bob = sign_up(d.port(), "bob");
  stored_marker(bob, "nobody");
  const auto signins = journal_count(dir.path(), "signin");
  const auto seens = journal_count(dir.path(), "seen");
  for (int i = 0; i < 100; ++i) {
    auto c = by_token(d.port(), "alice", token);
    quit(c);
  }
  // Two at once, too.
  {
    auto c1 = by_token(d.port(), "alice", token);
    auto c2 = by_token(d.port(), "alice", token);
    quit(c1);
    quit(c2);
  }
  stored_marker(bob, "nobody");
  CHECK(journal_count(dir.path(), "signin") == signins);
  CHECK(journal_count(dir.path(), "seen") == seens);
  CHECK(d.stop(SIGINT) == 0);
}

TEST_CASE("missed after kill -9 counts from what each account saw, journaled or not",
          "[integration][tokens][durability]") {
  temp_dir dir;
  std::map<std::string, std::string> token;
  {
    jimd_process d(args(), dir.path());
    for (auto name : {"alice", "bob", "carol", "dave", "eve", "nobody"})
      token[name] = register_quit(d.port(), name);
    // carol comes and goes before anything is posted.
    {
      auto carol = by_token(d.port(), "carol", token["carol"]);
      quit(carol);
    }
    // alice stays connected while bob posts: she saw both messages.
    auto alice = by_token(d.port(), "alice", token["alice"]);
    auto bob = by_token(d.port(), "bob", token["bob"]);
    CHECK(code_of(say(bob, "one")) == 200);
    CHECK(code_of(say(bob, "two")) == 200);
    // dave missed them: told so at his sign-in, and connected at the crash.
    std::uint64_t missed = 0;
    auto dave = by_token(d.port(), "dave", token["dave"], &missed);
    CHECK(missed == 2);
    // eve too, and signs out again.
    {
      auto eve = by_token(d.port(), "eve", token["eve"], &missed);
      CHECK(missed == 2);
      quit(eve);
    }
    stored_marker(bob, "nobody");
    CHECK(d.stop(SIGKILL) == 128 + SIGKILL);
  }
  jimd_process d(args(), dir.path());
  auto missed_of = [&](std::string const& name) {
    std::uint64_t missed = 0;
    auto c = by_token(d.port(), name, token[name], &missed);
    quit(c);
    return missed;
  };
  CHECK(missed_of("alice") == 0);
  CHECK(missed_of("bob") == 0);
  CHECK(missed_of("carol") == 2);
  CHECK(missed_of("dave") == 0);
  CHECK(missed_of("eve") == 0);
  CHECK(missed_of("nobody") == 2);
  CHECK(d.stop(SIGINT) == 0);
}
