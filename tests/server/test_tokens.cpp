// Resume tokens and the failed sign-in throttle in the hub, their events and their snapshot
// form; the KDF helpers they use (issue 14).

#include "files.hpp"
#include "harness.hpp"
#include "hub.hpp"
#include "kdf.hpp"
#include "options.hpp"
#include "snapshot.hpp"
#include "store/events.hpp"

#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <filesystem>
#include <string>
#include <vector>

using namespace jim::server;
namespace fs = std::filesystem;
namespace json = boost::json;
using namespace std::chrono_literals;

namespace {

using scratch_dir = jim::test::temp_dir;

/// The digest of a made-up token number `i`.
std::string digest(int i) {
  return token_digest("token-" + std::to_string(i));
}

std::vector<std::string> digests_of(account const& a) {
  std::vector<std::string> out;
  for (auto const& t : a.resume_tokens) out.push_back(t.hash);
  return out;
}

}  // namespace

TEST_CASE("Token digests are base64url SHA-256, weaker password hashes need a rehash", "[kdf]") {
  // SHA-256("") = e3b0c442...b855, in unpadded base64url.
  CHECK(token_digest("") == "47DEQpj8HBSa-_TImW-5JCeuQeRkm5NMpJWZG3hSuFU");
  CHECK(token_digest("abc").size() == 43);
  const std::string t = random_token(32);
  CHECK(t.size() == 43);
  CHECK(t != random_token(32));

  const std::string h = hash_password("pw", 1000);
  CHECK_FALSE(needs_rehash(h, 1000));
  CHECK_FALSE(needs_rehash(h, 999));
  CHECK(needs_rehash(h, 1001));
  CHECK(needs_rehash("pbkdf2-sha256$5000$c2FsdA$aGFzaA", 1000));  // the legacy scheme
  CHECK_FALSE(needs_rehash("garbage", 1000));
  CHECK_FALSE(needs_rehash("md5$1$a$b", 1000));
}

TEST_CASE("Token, revoke and rehash events survive encode and decode", "[journal]") {
  using namespace store;
  const std::vector<event> events{token_issued{"Alice", digest(1), 1700000000, 1702592000},
                                  tokens_revoked{"Alice", digest(1), false},
                                  tokens_revoked{"Alice", "", true},
                                  password_rehashed{"Alice", "old$1000", "new$600000"}};
  std::uint64_t seq = 1;
  for (auto const& e : events) {
    const std::string payload = encode(e, seq);
    auto d = decode(payload);
    CHECK(d.seq == seq);
    CHECK(d.e.index() == e.index());
    CHECK(encode(d.e, seq) == payload);
    ++seq;
  }
  CHECK(encode(events[0], 9) ==
        R"({"seq":9,"ev":"token","account":"Alice","hash":")" + digest(1) +
            R"(","issued":1700000000,"expires":1702592000})");
  CHECK_THROWS_WITH(decode(R"({"seq":1,"ev":"token","account":"a","hash":"h","issued":1})"),
                    Catch::Contains("missing field"));
  CHECK_THROWS_WITH(decode(R"({"seq":1,"ev":"revoke","account":"a","hash":"","all":1})"),
                    Catch::Contains("not a boolean"));
}

TEST_CASE("Applying tokens: at most 16, oldest out, expired forgotten, revoked", "[hub][tokens]") {
  hub h{hub_limits{}};
  account& a = *h.register_account("alice", "hash");
  for (int i = 0; i < 17; ++i)
    REQUIRE(h.apply(store::token_issued{"ALICE", digest(i), 1000 + i, 100000}).ok());
  auto list = digests_of(a);
  REQUIRE(list.size() == hub::max_resume_tokens);
  CHECK(list.front() == digest(1));  // the first one went
  CHECK(list.back() == digest(16));
  CHECK(h.find_token(a, digest(0), 2000) == nullptr);
  CHECK(h.find_token(a, digest(5), 2000) != nullptr);
  CHECK(h.find_token(a, digest(5), 100000) == nullptr);  // expired at `expires`
  CHECK(h.find_token(a, "", 2000) == nullptr);

  // An issue at a later time first forgets the tokens expired by then (the event's time).
  REQUIRE(h.apply(store::token_issued{"alice", digest(20), 5000, 5010}).ok());
  REQUIRE(h.apply(store::token_issued{"alice", digest(21), 100000, 200000}).ok());
  CHECK(digests_of(a) == std::vector<std::string>{digest(21)});

  REQUIRE(h.apply(store::token_issued{"alice", digest(22), 100001, 200000}).ok());
  REQUIRE(h.apply(store::tokens_revoked{"alice", digest(21), false}).ok());
  CHECK(digests_of(a) == std::vector<std::string>{digest(22)});
  REQUIRE(h.apply(store::tokens_revoked{"alice", digest(99), false}).ok());  // nothing to do
  REQUIRE(h.apply(store::tokens_revoked{"alice", "", true}).ok());
  CHECK(a.resume_tokens.empty());

  CHECK(h.apply(store::token_issued{"nobody", digest(1), 1, 2}).status ==
        jim::proto::code::not_found);
  CHECK(h.apply(store::token_issued{"alice", digest(1), 5, 5}).status ==
        jim::proto::code::bad_request);

  // Pruning at a time drops what expired by then.
  REQUIRE(h.apply(store::token_issued{"alice", digest(30), 10, 20}).ok());
  REQUIRE(h.apply(store::token_issued{"alice", digest(31), 10, 40}).ok());
  h.prune(30);
  CHECK(digests_of(a) == std::vector<std::string>{digest(31)});
}

TEST_CASE("A rehash applies only over the hash it replaces", "[hub][tokens]") {
  hub h{hub_limits{}};
  account& a = *h.register_account("alice", "old");
  CHECK(h.apply(store::password_rehashed{"alice", "other", "new"}).status ==
        jim::proto::code::conflict);
  CHECK(a.password_hash == "old");
  CHECK(h.apply(store::password_rehashed{"alice", "old", "new"}).ok());
  CHECK(a.password_hash == "new");
}

TEST_CASE("The failed sign-in throttle: 3 per minute, checks under way count", "[hub][tokens]") {
  hub h{hub_limits{}};
  account& a = *h.register_account("alice", "hash");
  const auto t0 = steady::now();
  CHECK_FALSE(h.sign_in_throttled(a, t0));
  h.sign_in_failed(a, t0);
  h.sign_in_failed(a, t0 + 10s);
  CHECK_FALSE(h.sign_in_throttled(a, t0 + 10s));
  h.sign_in_failed(a, t0 + 20s);
  auto wait = h.sign_in_throttled(a, t0 + 20s);
  REQUIRE(wait);
  CHECK(*wait == Approx(40).margin(0.01));  // until the first failure is a minute old
  CHECK_FALSE(h.sign_in_throttled(a, t0 + 60s));

  // Two failures and one check under way: throttled until the older failure leaves.
  hub h2{hub_limits{}};
  account& b = *h2.register_account("bob", "hash");
  h2.sign_in_failed(b, t0);
  h2.sign_in_failed(b, t0 + 30s);
  h2.password_check_started(b);
  wait = h2.sign_in_throttled(b, t0 + 30s);
  REQUIRE(wait);
  CHECK(*wait == Approx(30).margin(0.01));
  h2.password_check_ended(b);
  CHECK_FALSE(h2.sign_in_throttled(b, t0 + 30s));

  // Three checks under way and no failure yet: a short wait.
  hub h3{hub_limits{}};
  account& c = *h3.register_account("carol", "hash");
  for (int i = 0; i < 3; ++i) h3.password_check_started(c);
  wait = h3.sign_in_throttled(c, t0);
  REQUIRE(wait);
  CHECK(*wait > 0);
  for (int i = 0; i < 3; ++i) h3.password_check_ended(c);
  CHECK_FALSE(h3.sign_in_throttled(c, t0));

  // More failures: the ring keeps the last three.
  for (int i = 0; i < 5; ++i) h3.sign_in_failed(c, t0 + std::chrono::seconds(i * 10));
  wait = h3.sign_in_throttled(c, t0 + 40s);
  REQUIRE(wait);
  CHECK(*wait == Approx(40).margin(0.01));  // the failure at +20 s leaves at +80 s
}

TEST_CASE("Tokens go through a snapshot, expired ones are dropped at load", "[snapshot][tokens]") {
  scratch_dir dir;
  const auto file = snapshot::file_in(dir.path());
  hub h{hub_limits{}};
  h.register_account("alice", "hash-a");
  h.register_account("bob", "hash-b");
  REQUIRE(h.apply(store::token_issued{"alice", digest(1), 100, 1000}).ok());
  REQUIRE(h.apply(store::token_issued{"alice", digest(2), 200, 5000}).ok());
  auto doc = snapshot::capture(h, 7);
  // bob has no token: his entry has no "tokens" field (a snapshot without tokens reads as before).
  for (auto const& acc : doc.at("accounts").as_array())
    CHECK(acc.as_object().contains("tokens") == (acc.at("name") == "alice"));
  snapshot::write(file, doc);

  hub loaded{hub_limits{}};
  REQUIRE_FALSE(snapshot::load(file, loaded, 2000));
  CHECK(digests_of(*loaded.find_account("alice")) == std::vector<std::string>{digest(2)});
  CHECK(loaded.find_account("alice")->resume_tokens[0].issued == 200);
  CHECK(loaded.find_account("bob")->resume_tokens.empty());

  // A damaged digest is refused, naming where.
  std::string text = jim::test::read_bytes(file);
  const auto at = text.find(digest(2));
  REQUIRE(at != std::string::npos);
  text.replace(at, 43, "not-a-digest");
  jim::test::write_bytes(file, text);
  hub refused{hub_limits{}};
  auto err = snapshot::load(file, refused, 2000);
  REQUIRE(err);
  CHECK_THAT(*err, Catch::Contains("accounts[0].tokens[1].hash"));
}

TEST_CASE("Options: --token-ttl and the --kdf-iterations default", "[options][tokens]") {
  auto parse = [](std::vector<char const*> args) {
    args.insert(args.begin(), "jimd");
    return parse_options(static_cast<int>(args.size()), args.data());
  };
  auto d = parse({});
  REQUIRE(std::holds_alternative<run_daemon>(d));
  CHECK(std::get<run_daemon>(d).cfg.kdf_iterations == 600000);
  CHECK(std::get<run_daemon>(d).cfg.token_ttl == std::chrono::seconds(2592000));
  auto t = parse({"--token-ttl", "60"});
  REQUIRE(std::holds_alternative<run_daemon>(t));
  CHECK(std::get<run_daemon>(t).cfg.token_ttl == std::chrono::seconds(60));
  for (auto bad : {"0", "-1", "x"}) {
    auto b = parse({"--token-ttl", bad});
    REQUIRE(std::holds_alternative<print_and_exit>(b));
    CHECK(std::get<print_and_exit>(b).exit_code != 0);
    CHECK_THAT(std::get<print_and_exit>(b).text, Catch::Contains("token-ttl"));
  }
  auto help = parse({"--help"});
  CHECK_THAT(std::get<print_and_exit>(help).text, Catch::Contains("--token-ttl"));
}
