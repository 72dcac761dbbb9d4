// Sign-ins that write nothing (issue 14, reconnect storm): on a single node with a journal, a
// connection's signed_in is written only when a replay needs it (the account had not seen all
// of #general, or something is posted to #general while it is connected: then just before that
// post), and a connection whose signed_in was never written ends without a general_seen. What
// a replay of the log computes for `missed` after a crash must stay what it was with every
// pair written: checked here against the live state, over random sign-ins, sign-outs and posts
// whose events are stored in random batches.

#include "hub.hpp"
#include "store/durability.hpp"
#include "store/events.hpp"

#include <catch2/catch.hpp>
#include <spdlog/spdlog.h>

#include <deque>
#include <memory>
#include <random>
#include <string>
#include <utility>
#include <vector>

using namespace jim::server;
using jim::proto::code;

namespace {

const int quiet_logs = (spdlog::set_level(spdlog::level::warn), 0);

struct null_peer final : peer {
  bool push(shared_frame const&) override { return true; }
  void replaced(shared_frame const&) override {}
};

/// A log that keeps every appended event and stores them only when told (in order).
struct held_log final : store::event_log {
  std::vector<store::event> appended;
  std::deque<std::pair<store::event, done_fn>> pending;
  void append(store::event e, done_fn done) override {
    appended.push_back(e);
    pending.emplace_back(std::move(e), std::move(done));
  }
  /// Stores the `n` oldest pending events (their completions may append more).
  void store(std::size_t n) {
    for (; n > 0 && !pending.empty(); --n) {
      auto [e, done] = std::move(pending.front());
      pending.pop_front();
      if (done) done(&e);
    }
  }
  void store_all() {
    for (int i = 0; i < 1000000 && !pending.empty(); ++i) store(1);
  }
  /// How many appended events are of kind E.
  template <class E>
  std::size_t count() const {
    std::size_t n = 0;
    for (auto const& e : appended) n += std::holds_alternative<E>(e);
    return n;
  }
};

store::event general_post(std::string const& from, std::string text = "hi") {
  return store::message_posted{jim::proto::chat_message{0, 1700000000, from, "#general",
                                                        std::move(text)},
                               false};
}

struct fixture {
  held_log log;
  hub h{hub_limits{3, 1000, std::chrono::seconds(0), 0, 20, 10000, 3}};
  std::deque<null_peer> peers;

  fixture() { h.set_log(&log); }
  account& user(std::string const& name) {
    h.commit(store::account_registered{name, "hash"}, {});
    log.store_all();
    account* a = h.find_account(name);
    REQUIRE(a);
    return *a;
  }
  /// Signs `a` in on a new connection; returns it and the reply's `missed`.
  std::pair<peer*, std::uint64_t> sign_in(account& a) {
    peer& p = peers.emplace_back();
    auto res = h.attach(p, a, code::ok, {});
    return {&p, res.reply.fields.at("missed").as_uint64()};
  }
  void post(account& from) {
    h.commit(general_post(from.name), {});
  }
};

/// `missed` of each account's next sign-in after a crash at this point, computed as start-up
/// does: the journal's events applied to a fresh hub, then recover_connections().
std::map<std::string, std::uint64_t> missed_after_crash(std::vector<store::event> const& log) {
  hub replayed{hub_limits{3, 1000, std::chrono::seconds(0), 0, 20, 10000, 3}};
  for (auto const& e : log) replayed.apply(e);
  replayed.recover_connections();
  std::map<std::string, std::uint64_t> out;
  const std::uint64_t posted = replayed.general().posted;
  for (auto const& [key, a] : replayed.accounts()) out[key] = posted - a->general_seen;
  return out;
}

/// The same as the live hub sees it: 0 for an account signed in (it has seen everything up to
/// the crash), else what its next sign-in would say.
std::map<std::string, std::uint64_t> missed_live(hub& h) {
  std::map<std::string, std::uint64_t> out;
  const std::uint64_t posted = h.general().posted;
  for (auto const& [key, a] : h.accounts())
    out[key] = a->online() ? 0 : posted - a->general_seen;
  return out;
}

}  // namespace

TEST_CASE_METHOD(fixture, "Sign-ins and sign-outs while nothing is posted to #general write nothing",
                 "[hub][journal]") {
  account& alice = user("alice");
  account& bob = user("bob");
  const auto before = log.appended.size();
  for (int i = 0; i < 100; ++i) {
    auto [p, missed] = sign_in(i % 2 ? alice : bob);
    CHECK(missed == 0);
    h.sign_out(*p, i % 2 ? alice : bob);
  }
  // Several devices at once, too.
  auto [a1, m1] = sign_in(alice);
  auto [a2, m2] = sign_in(alice);
  h.sign_out(*a1, alice);
  h.sign_out(*a2, alice);
  CHECK(log.appended.size() == before);
  CHECK(h.unlogged_sign_ins() == 0);
  CHECK(missed_after_crash(log.appended) == missed_live(h));
}

TEST_CASE_METHOD(fixture, "A post to #general writes first the signed_in of each connection there",
                 "[hub][journal]") {
  account& alice = user("alice");
  account& bob = user("bob");
  account& carol = user("carol");
  const auto before = log.appended.size();
  auto [pa, ma] = sign_in(alice);
  auto [pb, mb] = sign_in(bob);
  auto [pc, mc] = sign_in(carol);
  h.sign_out(*pc, carol);  // gone before the post: nothing of it is written
  CHECK(h.unlogged_sign_ins() == 2);
  CHECK(log.appended.size() == before);
  post(bob);
  REQUIRE(log.appended.size() == before + 3);
  CHECK(std::get<store::signed_in>(log.appended[before]).account == "alice");
  CHECK(std::get<store::signed_in>(log.appended[before + 1]).account == "bob");
  CHECK(std::holds_alternative<store::message_posted>(log.appended[before + 2]));
  CHECK(h.unlogged_sign_ins() == 0);
  // A private message or another room's does not need them: nothing more is written for a
  // connection that comes and goes around it.
  log.store_all();
  CHECK(missed_after_crash(log.appended) == missed_live(h));
  CHECK(missed_after_crash(log.appended).at("carol") == 1);
  CHECK(missed_after_crash(log.appended).at("alice") == 0);
  // Their sign-outs write the position they saw.
  h.sign_out(*pa, alice);
  REQUIRE(log.appended.size() == before + 4);
  CHECK(std::get<store::general_seen>(log.appended.back()).general == 1);
  auto [pc2, mc2] = sign_in(carol);  // missed one: written at once
  CHECK(mc2 == 1);
  REQUIRE(log.appended.size() == before + 5);
  CHECK(std::get<store::signed_in>(log.appended.back()).account == "carol");
  h.commit(store::message_posted{jim::proto::chat_message{0, 1700000000, "bob", "alice", "psst"},
                                 true},
           {});
  auto [pa2, ma2] = sign_in(alice);  // saw everything: not written
  CHECK(ma2 == 0);
  h.sign_out(*pa2, alice);
  log.store_all();
  CHECK(log.count<store::signed_in>() == 3);
  CHECK(missed_after_crash(log.appended) == missed_live(h));
  h.sign_out(*pc2, carol);
  h.sign_out(*pb, bob);
  log.store_all();
  CHECK(missed_after_crash(log.appended) == missed_live(h));
}

TEST_CASE_METHOD(fixture, "A sign-in while a post to #general is being stored writes its signed_in",
                 "[hub][journal]") {
  account& alice = user("alice");
  account& bob = user("bob");
  auto [pb, mb] = sign_in(bob);
  post(bob);  // not stored yet
  const auto before = log.appended.size();
  auto [pa, ma] = sign_in(alice);  // gets the post when it is stored
  CHECK(ma == 0);
  REQUIRE(log.appended.size() == before + 1);
  CHECK(std::get<store::signed_in>(log.appended.back()).account == "alice");
  log.store_all();
  // Crash now: alice was connected when the message came.
  CHECK(missed_after_crash(log.appended).at("alice") == 0);
  h.sign_out(*pa, alice);
  log.store_all();
  CHECK(std::get<store::general_seen>(log.appended.back()).general == 1);
  CHECK(missed_after_crash(log.appended) == missed_live(h));
  CHECK(mb == 0);
  h.sign_out(*pb, bob);
  log.store_all();
  CHECK(missed_after_crash(log.appended) == missed_live(h));
}

TEST_CASE_METHOD(fixture, "A due scheduled message writes the waiting signed_in first",
                 "[hub][journal]") {
  account& alice = user("alice");
  auto [pa, ma] = sign_in(alice);
  const auto before = log.appended.size();
  h.commit(store::schedule_due{1, 1700000000, false}, {});
  REQUIRE(log.appended.size() == before + 2);
  CHECK(std::holds_alternative<store::signed_in>(log.appended[before]));
  log.store_all();
  h.sign_out(*pa, alice);
}

TEST_CASE("Replay computes the same missed as the live hub, whatever the order of sign-ins, "
          "sign-outs, posts and stores",
          "[hub][journal]") {
  for (std::uint32_t seed = 1; seed <= 200; ++seed) {
    CAPTURE(seed);
    fixture f;
    std::mt19937 rng(seed);
    auto pick = [&](std::size_t n) {
      return std::uniform_int_distribution<std::size_t>(0, n - 1)(rng);
    };
    std::vector<account*> accounts;
    for (auto name : {"a", "b", "c", "d"}) accounts.push_back(&f.user(name));
    std::vector<std::pair<peer*, account*>> live;
    for (int step = 0; step < 200; ++step) {
      switch (pick(7)) {
        case 0:
        case 1: {  // a sign-in (a fourth device takes the oldest over)
          account* a = accounts[pick(accounts.size())];
          auto [p, missed] = f.sign_in(*a);
          std::erase_if(live, [&](auto const& l) {
            return l.second == a && !f.h.find_device(*a, *l.first);
          });
          live.emplace_back(p, a);
          break;
        }
        case 2:
        case 3:  // a sign-out
          if (!live.empty()) {
            const auto i = pick(live.size());
            f.h.sign_out(*live[i].first, *live[i].second);
            live.erase(live.begin() + static_cast<std::ptrdiff_t>(i));
          }
          break;
        case 4:  // a post to #general
          f.post(*accounts[pick(accounts.size())]);
          break;
        case 5:  // some events stored
          f.log.store(pick(4));
          break;
        case 6:  // everything stored: a crash now must give what the live hub says
          f.log.store_all();
          REQUIRE(missed_after_crash(f.log.appended) == missed_live(f.h));
          break;
      }
    }
    for (auto& [p, a] : live) f.h.sign_out(*p, *a);
    f.log.store_all();
    REQUIRE(missed_after_crash(f.log.appended) == missed_live(f.h));
    CHECK(f.h.unlogged_sign_ins() == 0);
  }
}
