// Resume tokens, logout and the failed sign-in throttle (issue 14; contract "TLS and sign-in
// security"), against the real daemon over loopback sockets.

#include "chat_helpers.hpp"
#include "files.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <openssl/evp.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

using namespace jim::test;
namespace fs = std::filesystem;

namespace {

/// `{"action":"authenticate","user":{"account_name":name,"token":token}}`.
json::object token_req(std::string const& name, std::string const& token) {
  return json::object{{"action", "authenticate"},
                      {"user", {{"account_name", name}, {"token", token}}}};
}

/// Signs in with `token` on a new connection; returns the reply (the connection is closed).
json::object try_token(std::uint16_t port, std::string const& name, std::string const& token) {
  client c(port);
  return ask(c, token_req(name, token));
}

/// Sends `req` on a new connection, requires the reply's code to be `expected` and returns its
/// token ("" when it has none).
std::string token_from(std::uint16_t port, json::object const& req, std::int64_t expected) {
  client c(port);
  auto r = ask(c, req);
  REQUIRE(code_of(r) == expected);
  return str(r, "token");
}

/// Registers `name` and returns the token of its 201.
std::string register_for_token(std::uint16_t port, std::string const& name,
                               std::string const& password = "pw") {
  return token_from(port, register_req(name, password), 201);
}

/// Signs in by password on a new connection and returns the token of its 200.
std::string password_for_token(std::uint16_t port, std::string const& name,
                               std::string const& password = "pw") {
  return token_from(port, authenticate_req(name, password), 200);
}

bool base64url_text(std::string const& s) {
  return std::all_of(s.begin(), s.end(), [](char ch) {
    return (ch >= 'A' && ch <= 'Z') || (ch >= 'a' && ch <= 'z') || (ch >= '0' && ch <= '9') ||
           ch == '-' || ch == '_';
  });
}

/// Unpadded base64url of SHA-256(text): what the server stores of a token.
std::string digest_of(std::string const& text) {
  unsigned char md[32];
  unsigned int n = 0;
  REQUIRE(EVP_Digest(text.data(), text.size(), md, &n, EVP_sha256(), nullptr) == 1);
  unsigned char b64[64] = {};
  const int len = EVP_EncodeBlock(b64, md, static_cast<int>(n));
  std::string out(reinterpret_cast<char const*>(b64), static_cast<std::size_t>(len));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& ch : out) ch = ch == '+' ? '-' : ch == '/' ? '_' : ch;
  return out;
}

/// Every regular file under `dir` with its content.
std::vector<std::pair<fs::path, std::string>> all_files(fs::path const& dir) {
  std::vector<std::pair<fs::path, std::string>> out;
  for (auto const& e : fs::recursive_directory_iterator(dir))
    if (e.is_regular_file()) out.emplace_back(e.path(), read_bytes(e.path()));
  return out;
}

std::size_t count_of_text(std::string const& hay, std::string const& needle) {
  std::size_t n = 0;
  for (auto at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

}  // namespace

TEST_CASE("A password sign-in hands out a token that later signs in without the password",
          "[integration][tokens]") {
  jimd_process d;
  const std::string t1 = register_for_token(d.port(), "alice");
  CHECK(t1.size() >= 22);  // at least 128 bits in base64url (jimd: 256 bits, 43 characters)
  CHECK(base64url_text(t1));

  // One-shot, with the name in another case: no new token for a sign-in by token.
  {
    client c(d.port());
    auto r = ask(c, token_req("ALICE", t1));
    CHECK(code_of(r) == 200);
    CHECK(str(r, "account_name") == "alice");
    CHECK(r.find("token") == r.end());
    CHECK(code_of(say(c, "signed in by token")) == 200);
    quit(c);
  }
  // Guided: presence, then the token without the name.
  {
    client c(d.port());
    CHECK(str(ask(c, presence_req("alice")), "auth") == "login");
    auto r = c.request(R"({"action":"authenticate","user":{"token":")" + t1 + R"("}})");
    CHECK(code_of(r) == 200);
    quit(c);
  }
  // Every password sign-in gets a token of its own; the earlier ones stay valid.
  const std::string t2 = password_for_token(d.port(), "alice");
  CHECK(t2 != t1);
  CHECK(code_of(try_token(d.port(), "alice", t1)) == 200);
  CHECK(code_of(try_token(d.port(), "alice", t2)) == 200);
  // A token belongs to its account.
  register_for_token(d.port(), "bob");
  CHECK(code_of(try_token(d.port(), "bob", t1)) == 402);
}

TEST_CASE("A wrong token gets 402 and the connection is closed, malformed ones get 400",
          "[integration][tokens]") {
  jimd_process d;
  const std::string t = register_for_token(d.port(), "alice");
  {
    client c(d.port());
    auto r = ask(c, token_req("alice", t.substr(0, t.size() - 1) + (t.back() == 'A' ? "B" : "A")));
    CHECK(code_of(r) == 402);
    CHECK(c.closed_within(5s));
  }
  {
    client c(d.port());
    CHECK(code_of(ask(c, token_req("alice", "not-a-token"))) == 402);
    CHECK(c.closed_within(5s));
  }
  client c(d.port());
  CHECK(code_of(ask(c, token_req("nobody", t))) == 404);  // as with a password: stays open
  CHECK(code_of(c.request(
            R"({"action":"authenticate","user":{"account_name":"alice","token":"x","password":"pw"}})")) ==
        400);
  CHECK(code_of(ask(c, token_req("alice", ""))) == 400);
  CHECK(code_of(ask(c, token_req("alice", std::string(257, 'a')))) == 400);
  CHECK(code_of(c.request(R"({"action":"authenticate","user":{"account_name":"alice","token":7}})")) ==
        400);
  CHECK(code_of(ask(c, token_req("alice", t))) == 200);  // the connection was still usable
}

TEST_CASE("A token expires --token-ttl seconds after it was issued", "[integration][tokens]") {
  jimd_process d({"--token-ttl", "2"});
  client c(d.port());
  auto r = ask(c, register_req("alice"));
  REQUIRE(code_of(r) == 201);
  const std::string t = str(r, "token");
  const auto issued = r.at("time").as_int64();  // the server's clock, whole seconds
  CHECK(code_of(try_token(d.port(), "alice", t)) == 200);
  // Waiting for the clock itself (nothing to await): valid while now < issued + 2.
  std::this_thread::sleep_until(std::chrono::system_clock::time_point(
                                    std::chrono::seconds(issued + 2)) +
                                200ms);
  CHECK(code_of(try_token(d.port(), "alice", t)) == 402);
  // A fresh one works again.
  CHECK(code_of(try_token(d.port(), "alice", password_for_token(d.port(), "alice"))) == 200);
}

TEST_CASE("logout revokes the connection's token, logout all revokes every token",
          "[integration][tokens]") {
  jimd_process d;
  const std::string t1 = register_for_token(d.port(), "alice");
  const std::string t2 = password_for_token(d.port(), "alice");
  const std::string t3 = password_for_token(d.port(), "alice");
  {
    client c(d.port());
    CHECK(code_of(c.request(R"({"action":"logout"})")) == 401);  // not signed in
    REQUIRE(code_of(ask(c, token_req("alice", t1))) == 200);
    CHECK(code_of(c.request(R"({"action":"logout","all":"yes"})")) == 400);
    auto r = c.request(R"({"action":"logout","tag":9})");
    CHECK(code_of(r) == 200);
    CHECK(r.at("tag") == 9);
    CHECK(c.closed_within(5s));
  }
  CHECK(code_of(try_token(d.port(), "alice", t1)) == 402);
  CHECK(code_of(try_token(d.port(), "alice", t2)) == 200);
  // A connection signed in by password revokes the token its reply carried.
  {
    client c(d.port());
    auto r = ask(c, authenticate_req("alice"));
    REQUIRE(code_of(r) == 200);
    const std::string given = str(r, "token");
    CHECK(code_of(c.request(R"({"action":"logout"})")) == 200);
    CHECK(c.closed_within(5s));
    CHECK(code_of(try_token(d.port(), "alice", given)) == 402);
  }
  CHECK(code_of(try_token(d.port(), "alice", t3)) == 200);
  {
    client c(d.port());
    REQUIRE(code_of(ask(c, token_req("alice", t2))) == 200);
    CHECK(code_of(c.request(R"({"action":"logout","all":true})")) == 200);
    CHECK(c.closed_within(5s));
  }
  CHECK(code_of(try_token(d.port(), "alice", t2)) == 402);
  CHECK(code_of(try_token(d.port(), "alice", t3)) == 402);
  // Four revoked tokens were tried: failed sign-ins, so the password waits for the throttle.
  client c(d.port());
  CHECK(code_of(ask(c, authenticate_req("alice"))) == 429);
}

TEST_CASE("The 17th token evicts the oldest", "[integration][tokens]") {
  jimd_process d;
  std::vector<std::string> tokens{register_for_token(d.port(), "alice")};
  for (int i = 1; i < 17; ++i) tokens.push_back(password_for_token(d.port(), "alice"));
  CHECK(code_of(try_token(d.port(), "alice", tokens[0])) == 402);
  CHECK(code_of(try_token(d.port(), "alice", tokens[1])) == 200);
  CHECK(code_of(try_token(d.port(), "alice", tokens[16])) == 200);
  // One more: now the second goes.
  tokens.push_back(password_for_token(d.port(), "alice"));
  CHECK(code_of(try_token(d.port(), "alice", tokens[1])) == 402);
  CHECK(code_of(try_token(d.port(), "alice", tokens[2])) == 200);
}

TEST_CASE("Tokens survive a restart and a crash, only their digests are stored",
          "[integration][tokens]") {
  temp_dir dir;
  std::string kept, revoked, crash_kept;
  {
    jimd_process d({"--log-level", "debug"}, dir.path());
    kept = register_for_token(d.port(), "alice");
    revoked = password_for_token(d.port(), "alice");
    client c(d.port());
    REQUIRE(code_of(ask(c, token_req("alice", revoked))) == 200);
    REQUIRE(code_of(c.request(R"({"action":"logout"})")) == 200);
    REQUIRE(c.closed_within(5s));
    REQUIRE(d.stop(15 /*SIGTERM*/) == 0);  // a snapshot
  }
  {
    jimd_process d({"--log-level", "debug"}, dir.path());
    CHECK(code_of(try_token(d.port(), "alice", kept)) == 200);
    CHECK(code_of(try_token(d.port(), "alice", revoked)) == 402);
    crash_kept = password_for_token(d.port(), "alice");
    CHECK(d.stop(9 /*SIGKILL*/) == 128 + 9);  // no snapshot: the journal has it
  }
  {
    jimd_process d({"--log-level", "debug"}, dir.path());
    CHECK(code_of(try_token(d.port(), "alice", crash_kept)) == 200);
    CHECK(code_of(try_token(d.port(), "alice", kept)) == 200);
    CHECK(code_of(try_token(d.port(), "alice", revoked)) == 402);
    REQUIRE(d.stop(15) == 0);  // flushes the logs
  }
  // No clear-text token anywhere: snapshot, journal, log files, console output.
  const auto files = all_files(dir.path());
  CHECK(files.size() >= 3);
  bool digest_seen = false;
  for (auto const& [path, content] : files) {
    INFO(path.string());
    for (auto const* t : {&kept, &revoked, &crash_kept}) CHECK(content.find(*t) == std::string::npos);
    digest_seen = digest_seen || content.find(digest_of(kept)) != std::string::npos;
  }
  CHECK(digest_seen);  // what is stored instead
}

TEST_CASE("The 4th wrong password within a minute gets 429 without hashing, a token still works",
          "[integration][tokens]") {
  // The hashing counter: at --log-level debug the daemon logs one line "checking the password
  // of NAME" per PBKDF2 check; the console output is read once the daemon has stopped.
  jimd_process d({"--log-level", "debug"});
  const std::string t = register_for_token(d.port(), "alice", "right");
  for (int i = 0; i < 3; ++i) {
    client c(d.port());
    CHECK(code_of(ask(c, authenticate_req("alice", "wrong" + std::to_string(i)))) == 402);
    CHECK(c.closed_within(5s));
  }
  client c(d.port());
  auto r = ask(c, authenticate_req("alice", "wrong3"));
  CHECK(code_of(r) == 429);
  const double wait = r.at("retry_after").to_number<double>();
  CHECK(wait > 0);
  CHECK(wait <= 60);
  // The owner's password is refused alike (unchecked), the connection stays open...
  CHECK(code_of(ask(c, authenticate_req("alice", "right"))) == 429);
  // ... also in the guided flow ...
  CHECK(str(ask(c, presence_req("alice")), "auth") == "login");
  CHECK(code_of(c.request(R"({"action":"authenticate","user":{"password":"right"}})")) == 429);
  // ... but the owner's token signs in, on this very connection.
  CHECK(code_of(ask(c, token_req("alice", t))) == 200);
  // Other accounts are not affected.
  register_for_token(d.port(), "bob");
  CHECK(password_for_token(d.port(), "bob").size() == t.size());
  REQUIRE(d.stop(15) == 0);
  const std::string out = d.output();
  CHECK(count_of_text(out, "checking the password of alice") == 3);
  CHECK(count_of_text(out, "checking the password of bob") == 1);
  CHECK(count_of_text(out, "sign-in to alice throttled") == 3);
}

TEST_CASE("Wrong passwords sent at once on many connections are held to the same limit",
          "[integration][tokens]") {
  // A slow hash keeps the checks under way while the others arrive: they count as failures.
  jimd_process d({"--kdf-iterations", "20000"});
  register_for_token(d.port(), "alice");
  std::vector<client> bots;
  for (int i = 0; i < 8; ++i) bots.emplace_back(d.port());
  for (int i = 0; i < 8; ++i) bots[i].send(authenticate_req("alice", "guess" + std::to_string(i)));
  int wrong = 0, throttled = 0;
  for (auto& b : bots) {
    const auto code = code_of(b.reply(30s));
    wrong += code == 402;
    throttled += code == 429;
  }
  CHECK(wrong == 3);
  CHECK(throttled == 5);
}

TEST_CASE("A password hash with fewer iterations is upgraded at the next sign-in, as an event",
          "[integration][tokens]") {
  temp_dir dir;
  {
    jimd_process d({"--kdf-iterations", "1000"}, dir.path());
    register_for_token(d.port(), "alice", "pw-alice");
    register_for_token(d.port(), "bob", "pw-bob");
    REQUIRE(d.stop(15) == 0);
  }
  auto snapshot = [&] { return read_bytes(dir.path() / "jimd-state.json"); };
  CHECK(snapshot().find("\"pbkdf2-sha256-prehash$1000$") != std::string::npos);
  {
    jimd_process d({"--kdf-iterations", "2000", "--log-level", "info"}, dir.path());
    // A wrong password upgrades nothing.
    {
      client c(d.port());
      CHECK(code_of(ask(c, authenticate_req("alice", "nope"))) == 402);
    }
    password_for_token(d.port(), "alice", "pw-alice");
    // The upgrade is stored before the reply: killed now, the journal holds it.
    CHECK(d.stop(9) == 128 + 9);
    CHECK(count_of_text(d.output(), "password hash of alice upgraded to 2000 iterations") == 1);
  }
  std::string journal;
  for (auto const& [path, content] : all_files(dir.path()))
    if (content.find("\"ev\":\"rehash\"") != std::string::npos) journal += content;
  CHECK(count_of_text(journal, "\"ev\":\"rehash\",\"account\":\"alice\"") == 1);
  CHECK(journal.find("pbkdf2-sha256-prehash$2000$") != std::string::npos);
  {
    jimd_process d({"--kdf-iterations", "2000", "--log-level", "info"}, dir.path());
    password_for_token(d.port(), "alice", "pw-alice");  // the new hash verifies; no second upgrade
    REQUIRE(d.stop(15) == 0);
    // The console output of all three runs (the file is appended to): one upgrade in all.
    CHECK(count_of_text(d.output(), "upgraded") == 1);
  }
  const std::string snap = snapshot();
  CHECK(count_of_text(snap, "pbkdf2-sha256-prehash$2000$") == 1);  // alice
  CHECK(count_of_text(snap, "pbkdf2-sha256-prehash$1000$") == 1);  // bob has not signed in
  CHECK(snap.find("pw-alice") == std::string::npos);
}
