#include "files.hpp"
#include "harness.hpp"
#include "hub.hpp"
#include "snapshot.hpp"

#include <boost/json.hpp>

#include <catch2/catch.hpp>

#include <chrono>
#include <fstream>
#include <iostream>
#include <iterator>
#include <set>
#include <sstream>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>
#include <vector>

using namespace jim::server;
namespace fs = std::filesystem;
namespace json = boost::json;
using jim::proto::chat_message;

namespace {

using scratch_dir = jim::test::temp_dir;

/// A connection that accepts every push.
struct fake_peer final : peer {
  std::size_t pushes = 0;
  bool push(shared_frame const&) override {
    ++pushes;
    return true;
  }
  void replaced(shared_frame const&) override {}
};

using jim::test::read_bytes;
using jim::test::write_bytes;

std::set<std::string> listing(fs::path const& dir) {
  std::set<std::string> names;
  for (auto const& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
  return names;
}

jim::proto::msg_req to_room(std::string text, std::string room) {
  return {std::move(text), jim::proto::target{std::move(room), true}};
}
jim::proto::msg_req to_user(std::string text, std::string user) {
  return {std::move(text), jim::proto::target{std::move(user), false}};
}

hub_limits unlimited() {
  hub_limits lim;
  lim.rate_limit = 0;
  return lim;
}

/// The document without its time of saving: two captures of equal states compare equal.
json::value comparable(json::value doc) {
  doc.as_object().erase("saved_at");
  return doc;
}

template <class Messages>
std::string describe(Messages const& ms) {
  std::string out;
  for (auto const& m : ms) out += json::serialize(jim::proto::msg_object(m)) + "\n";
  return out;
}

/// A hub with something of everything: accounts online and offline, #general and a private
/// room with history, an invited member, private conversations and a queued message.
struct sample {
  hub h{unlimited()};
  fake_peer pa, pb, pc;

  sample() {
    const auto now = steady::now();
    account& alice = *h.register_account("Alice", "hash-of-alice");
    account& bob = *h.register_account("bob", "hash-of-bob");
    account& carol = *h.register_account("Carol.x", "hash-of-carol");
    h.register_account("dave", "hash-of-dave");
    h.sign_in(pa, alice, jim::proto::code::ok);
    h.sign_in(pb, bob, jim::proto::code::ok);
    h.sign_in(pc, carol, jim::proto::code::ok);
    h.post(alice, to_room("hello #general", "general"), now);
    h.post(bob, to_room("hi alice", "general"), now);
    h.create_room(alice, "Den", "hash-of-den", "clear-den-password");
    h.post(alice, to_room("in the den", "Den"), now);
    jim::proto::invite_req inv;
    inv.user = "carol.X";
    h.invite(alice, inv);
    h.join(bob, "den", true);  // bob gave the right password: a member from now on
    h.post(bob, to_room("bob in the den", "den"), now);
    h.sign_out(pc, carol);
    h.leave(*alice.devices.back());
    h.post(alice, to_room("after carol left", "general"), now);
    h.post(alice, to_user("psst carol", "CAROL.X"), now);  // queued: carol is offline
    h.post(alice, to_user("psst bob", "bob"), now);        // delivered live
    h.post(bob, to_user("note to self", "Bob"), now);
    h.apply(jim::server::store::contact_added{"Alice", "DAVE"});
    h.apply(jim::server::store::contact_added{"Alice", "bob"});
  }
};

}  // namespace

TEST_CASE("A snapshot round trip restores every persistent piece of state", "[snapshot]") {
  scratch_dir dir;
  sample s;
  const auto file = snapshot::file_in(dir.path());
  const json::value doc = snapshot::capture(s.h);
  const std::size_t bytes = snapshot::write(file, doc);
  CHECK(bytes == fs::file_size(file));
  CHECK(listing(dir.path()) == std::set<std::string>{file.filename().string()});
  CHECK((fs::status(file).permissions() & (fs::perms::group_all | fs::perms::others_all)) ==
        fs::perms::none);

  hub restored(unlimited());
  REQUIRE_FALSE(snapshot::load(file, restored, jim::proto::unix_now()));

  // The whole state, field by field, via a second capture.
  CHECK(comparable(snapshot::capture(restored)) == comparable(doc));

  // And the parts that matter most, spelled out.
  CHECK(restored.last_id() == s.h.last_id());
  CHECK(restored.last_id() == 8);
  REQUIRE(restored.accounts().size() == 4);
  for (auto const& [key, a] : s.h.accounts()) {
    INFO(key);
    auto const& b = *restored.accounts().at(key);
    CHECK(b.name == a->name);
    CHECK(b.password_hash == a->password_hash);
    // Online at capture: saved as having seen #general up to then.
    CHECK(b.general_seen == (a->online() ? s.h.general().posted : a->general_seen));
    CHECK(describe(b.queued) == describe(a->queued));
    CHECK(b.devices.empty());
    CHECK(b.contacts == a->contacts);
  }
  CHECK(restored.accounts().at("carol.x")->queued.size() == 1);
  CHECK(restored.accounts().at("carol.x")->general_seen == 2);  // signed out after 2 messages
  CHECK(restored.accounts().at("alice")->general_seen == 3);    // online: up to the capture
  CHECK(restored.accounts().at("dave")->general_seen == 0);     // never signed in
  CHECK(restored.accounts().at("alice")->contacts == std::vector<std::string>{"dave", "bob"});
  REQUIRE(restored.all_rooms().size() == 2);
  for (auto const& [key, r] : s.h.all_rooms()) {
    INFO(key);
    auto const& q = *restored.all_rooms().at(key);
    CHECK(q.name == r->name);
    CHECK(q.owner == r->owner);
    CHECK(q.password_hash == r->password_hash);
    CHECK(q.members == r->members);
    CHECK(q.posted == r->posted);
    CHECK(describe(q.history) == describe(r->history));
    CHECK(q.present.empty());
  }
  auto const& den = *restored.all_rooms().at("den");
  CHECK(den.name == "#Den");
  CHECK(den.owner == "alice");
  CHECK(den.members == std::unordered_set<std::string>{"alice", "bob", "carol.x"});
  CHECK(den.history.size() == 2);
  CHECK(&restored.general() == restored.all_rooms().at("general").get());
  CHECK(restored.general().history.size() == 3);
  CHECK(restored.conversations().size() == 3);
  for (auto const& [key, list] : s.h.conversations())
    CHECK(describe(restored.conversations().at(key)) == describe(list));

  // The restored hub keeps working and never reuses an id.
  fake_peer p;
  account& carol = *restored.find_account("carol.x");
  auto in = restored.sign_in(p, carol, jim::proto::code::ok);
  CHECK(in.reply.fields.at("missed") == 1);
  auto out = restored.post(carol, to_room("back again", "general"), steady::now());
  CHECK(out.fields.at("id") == 9);
}

TEST_CASE("No clear-text password ends up in a snapshot", "[snapshot]") {
  scratch_dir dir;
  sample s;
  const auto file = snapshot::file_in(dir.path());
  snapshot::write(file, snapshot::capture(s.h));
  CHECK(read_bytes(file).find("clear-den-password") == std::string::npos);
}

TEST_CASE("Writing a snapshot replaces the previous one and leaves no temp file", "[snapshot]") {
  scratch_dir dir;
  sample s;
  const auto file = snapshot::file_in(dir.path());
  snapshot::write(file, snapshot::capture(s.h));
  hub empty(unlimited());
  snapshot::write(file, snapshot::capture(empty));
  CHECK(listing(dir.path()) == std::set<std::string>{file.filename().string()});
  hub restored(unlimited());
  REQUIRE_FALSE(snapshot::load(file, restored, jim::proto::unix_now()));
  CHECK(restored.accounts().empty());
  CHECK(restored.last_id() == 0);

  // A stale temp file from a crash is simply reused.
  write_bytes(snapshot::temp_of(file), "half a sna");
  snapshot::write(file, snapshot::capture(s.h));
  CHECK(listing(dir.path()) == std::set<std::string>{file.filename().string()});
}

TEST_CASE("A snapshot that cannot be written throws and keeps the old file", "[snapshot]") {
  scratch_dir dir;
  sample s;
  CHECK_THROWS_AS(
      snapshot::write(dir.path() / "no-such-dir" / "state.json", snapshot::capture(s.h)),
      std::system_error);
  // The target is a directory: the rename fails, the temp file is cleaned up.
  fs::create_directory(dir.path() / "occupied");
  write_bytes(dir.path() / "occupied" / "keep", "x");
  CHECK_THROWS_AS(snapshot::write(dir.path() / "occupied", snapshot::capture(s.h)),
                  std::system_error);
  CHECK(fs::is_directory(dir.path() / "occupied"));
  CHECK(listing(dir.path()) == std::set<std::string>{"occupied"});
}

TEST_CASE("A missing snapshot gives an empty hub", "[snapshot]") {
  scratch_dir dir;
  hub h(unlimited());
  CHECK_FALSE(snapshot::load(snapshot::file_in(dir.path()), h, jim::proto::unix_now()));
  CHECK(h.accounts().empty());
  CHECK(h.all_rooms().size() == 1);
  CHECK(h.last_id() == 0);
  CHECK(listing(dir.path()).empty());
}

TEST_CASE("Loading drops expired messages and history beyond the limit", "[snapshot]") {
  scratch_dir dir;
  const auto file = snapshot::file_in(dir.path());
  const std::int64_t now = 1'700'000'000;
  {
    hub h(unlimited());
    fake_peer pa;
    account& alice = *h.register_account("alice", "h");
    h.register_account("bob", "h");
    h.sign_in(pa, alice, jim::proto::code::ok);
    for (int i = 0; i < 10; ++i)
      h.post(alice, to_room("general " + std::to_string(i), "general"), steady::now());
    for (int i = 0; i < 10; ++i)
      h.post(alice, to_user("to bob " + std::to_string(i), "bob"), steady::now());
    json::value doc = snapshot::capture(h);
    // Ages: message i of each sequence is (10 - i) hours old; the TTL below is 4.5 hours.
    auto age = [&](json::value& m, std::size_t i) {
      m.as_object()["time"] = now - static_cast<std::int64_t>(10 - i) * 3600;
    };
    auto& general = doc.at("rooms").as_array().at(0).as_object();
    REQUIRE(general.at("name") == "#general");
    for (std::size_t i = 0; i < 10; ++i) age(general.at("history").as_array()[i], i);
    for (std::size_t i = 0; i < 10; ++i)
      age(doc.at("conversations").as_array()[0].at("messages").as_array()[i], i);
    auto& bob = doc.at("accounts").as_array().at(1).as_object();
    REQUIRE(bob.at("name") == "bob");
    for (std::size_t i = 0; i < 10; ++i) age(bob.at("queued").as_array()[i], i);
    // A stale counter: ids must still continue above every stored one.
    doc.as_object()["last_id"] = 3;
    snapshot::write(file, doc);
  }
  const std::string before = read_bytes(file);

  SECTION("TTL") {
    hub_limits lim = unlimited();
    lim.message_ttl = std::chrono::seconds(4 * 3600 + 1800);
    hub h(lim);
    REQUIRE_FALSE(snapshot::load(file, h, now));
    auto const& g = h.general();
    REQUIRE(g.history.size() == 4);  // 4, 3, 2 and 1 hours old
    CHECK(g.history.front().message == "general 6");
    CHECK(g.posted == 10);  // `missed` still counts what expired
    CHECK(h.conversations().begin()->second.size() == 4);
    CHECK(h.find_account("bob")->queued.size() == 4);
    CHECK(h.find_account("bob")->queued.front().message == "to bob 6");
    CHECK(h.last_id() == 20);
  }
  SECTION("history limit") {
    hub_limits lim = unlimited();
    lim.history_limit = 3;
    hub h(lim);
    REQUIRE_FALSE(snapshot::load(file, h, now));
    REQUIRE(h.general().history.size() == 3);
    CHECK(h.general().history.front().message == "general 7");
    CHECK(h.general().posted == 10);
    REQUIRE(h.conversations().begin()->second.size() == 3);
    CHECK(h.conversations().begin()->second.back().message == "to bob 9");
    CHECK(h.find_account("bob")->queued.size() == 10);  // undelivered mail is not history
    CHECK(h.last_id() == 20);
  }
  SECTION("everything expired") {
    hub_limits lim = unlimited();
    lim.message_ttl = std::chrono::seconds(60);
    hub h(lim);
    REQUIRE_FALSE(snapshot::load(file, h, now));
    CHECK(h.general().history.empty());
    CHECK(h.conversations().empty());
    CHECK(h.find_account("bob")->queued.empty());
    CHECK(h.last_id() == 20);
  }
  CHECK(read_bytes(file) == before);
}

namespace {

/// A valid document to break in one place.
json::value valid_document() {
  sample s;
  return snapshot::capture(s.h);
}

json::object& first_room_with_history(json::value& doc) {
  for (auto& r : doc.at("rooms").as_array())
    if (r.at("name") == "#Den") return r.as_object();
  throw std::logic_error("no #Den");
}

}  // namespace

TEST_CASE("Broken snapshots are refused with an error naming the file, which is left as it is",
          "[snapshot]") {
  scratch_dir dir;
  const auto file = snapshot::file_in(dir.path());
  const std::string good = json::serialize(valid_document());

  struct variant {
    char const* what;
    std::string bytes;
    char const* expected;  ///< part of the error text
  };
  auto edit = [&](auto&& change) {
    json::value doc = valid_document();
    change(doc);
    return json::serialize(doc);
  };
  std::vector<variant> variants{
      {"empty file", "", "empty"},
      {"truncated", good.substr(0, good.size() / 2), "truncated"},
      {"garbage", "{\"format\": 1, oops}", "not valid JSON"},
      {"trailing garbage", good + " }", "not valid JSON"},
      {"not an object", "[1, 2, 3]", "expected an object"},
      {"invalid UTF-8", "{\"format\": 1, \"saved_at\": \"\xff\"}", "not valid JSON"},
      {"no format", edit([](json::value& d) { d.as_object().erase("format"); }),
       "missing field \"format\""},
      {"a future format", edit([](json::value& d) { d.as_object()["format"] = 6; }),
       "unsupported format 6"},
      {"read marker of an unknown room", edit([](json::value& d) {
         d.at("accounts").as_array()[0].as_object()["read"] = json::object{{"#nowhere", 1}};
       }),
       "accounts[0].read.#nowhere: no such room or account"},
      {"read marker not folded", edit([](json::value& d) {
         d.at("accounts").as_array()[0].as_object()["read"] = json::object{{"Bob", 1}};
       }),
       "key is not in lower case"},
      {"member without since",
       edit([](json::value& d) { first_room_with_history(d)["since"] = json::object(); }),
       "a member is missing"},
      {"since of a non-member", edit([](json::value& d) {
         first_room_with_history(d)["since"].as_object()["dave"] = 1;
       }),
       "not a member"},
      {"invitation to an unknown room", edit([](json::value& d) {
         d.at("accounts").as_array()[0].as_object()["invitations"] =
             json::array{json::object{{"from", "bob"}, {"room", "#nowhere"}}};
       }),
       "no such room"},
      {"format 2 without journal_seq",
       edit([](json::value& d) { d.as_object().erase("journal_seq"); }),
       "missing field \"journal_seq\""},
      {"format 1 with journal_seq", edit([](json::value& d) { d.as_object()["format"] = 1; }),
       "unknown field \"journal_seq\""},
      {"format as text", edit([](json::value& d) { d.as_object()["format"] = "1"; }),
       "format: expected an integer"},
      {"last_id text", edit([](json::value& d) { d.as_object()["last_id"] = "7"; }),
       "last_id: expected a non-negative integer"},
      {"last_id negative", edit([](json::value& d) { d.as_object()["last_id"] = -1; }), "last_id"},
      {"accounts not an array",
       edit([](json::value& d) { d.as_object()["accounts"] = json::object(); }),
       "accounts: expected an array"},
      {"account name a number",
       edit([](json::value& d) { d.at("accounts").as_array()[0].as_object()["name"] = 5; }),
       "accounts[0].name: expected a string"},
      {"invalid account name", edit([](json::value& d) {
         d.at("accounts").as_array()[0].as_object()["name"] = "bad name!";
       }),
       "invalid account name"},
      {"duplicate account",
       edit([](json::value& d) { d.at("accounts").as_array()[1].as_object()["name"] = "ALICE"; }),
       "duplicate account"},
      {"empty password hash", edit([](json::value& d) {
         d.at("accounts").as_array()[0].as_object()["password_hash"] = "";
       }),
       "empty password hash"},
      {"missing field", edit([](json::value& d) {
         d.at("accounts").as_array()[0].as_object().erase("general_seen");
       }),
       "missing field \"general_seen\""},
      {"unknown field",
       edit([](json::value& d) { d.at("accounts").as_array()[0].as_object()["pasword"] = "x"; }),
       "unknown field \"pasword\""},
      {"room without #", edit([](json::value& d) { first_room_with_history(d)["name"] = "Den"; }),
       "invalid room name"},
      {"owner unknown",
       edit([](json::value& d) { first_room_with_history(d)["owner"] = "mallory"; }),
       "no such account"},
      {"owner not folded",
       edit([](json::value& d) { first_room_with_history(d)["owner"] = "Alice"; }),
       "not in lower case"},
      {"member a number",
       edit([](json::value& d) { first_room_with_history(d)["members"].as_array()[0] = 1; }),
       "members[0]: expected a string"},
      {"message id zero", edit([](json::value& d) {
         first_room_with_history(d)["history"].as_array()[0].as_object()["id"] = 0;
       }),
       "history[0].id: expected a positive integer"},
      {"message id negative", edit([](json::value& d) {
         first_room_with_history(d)["history"].as_array()[0].as_object()["id"] = -4;
       }),
       "expected a positive integer"},
      {"message id fractional", edit([](json::value& d) {
         first_room_with_history(d)["history"].as_array()[0].as_object()["id"] = 4.5;
       }),
       "expected a positive integer"},
      {"ids out of order", edit([](json::value& d) {
         first_room_with_history(d)["history"].as_array()[1].as_object()["id"] = 1;
       }),
       "does not follow"},
      {"message in the wrong room", edit([](json::value& d) {
         first_room_with_history(d)["history"].as_array()[0].as_object()["to"] = "#general";
       }),
       "addressed to #general"},
      {"empty message", edit([](json::value& d) {
         first_room_with_history(d)["history"].as_array()[0].as_object()["message"] = "";
       }),
       "empty message"},
      {"time as text", edit([](json::value& d) {
         first_room_with_history(d)["history"].as_array()[0].as_object()["time"] = "noon";
       }),
       "time: expected an integer"},
      {"posted too small", edit([](json::value& d) { first_room_with_history(d)["posted"] = 1; }),
       "counts fewer messages"},
      {"no #general", edit([](json::value& d) {
         auto& rooms = d.at("rooms").as_array();
         rooms.erase(rooms.begin());
       }),
       "#general is missing"},
      {"#general with an owner",
       edit([](json::value& d) { d.at("rooms").as_array()[0].as_object()["owner"] = "alice"; }),
       "has no owner"},
      {"conversation out of order", edit([](json::value& d) {
         auto& between = d.at("conversations").as_array()[0].as_object()["between"].as_array();
         std::swap(between[0], between[1]);
       }),
       "out of order"},
      {"queued for someone else", edit([](json::value& d) {
         for (auto& a : d.at("accounts").as_array())
           for (auto& m : a.as_object()["queued"].as_array()) m.as_object()["to"] = "dave";
       }),
       "addressed to dave"},
  };

  for (auto const& v : variants) {
    DYNAMIC_SECTION(v.what) {
      write_bytes(file, v.bytes);
      const auto names = listing(dir.path());
      hub h(unlimited());
      auto err = snapshot::load(file, h, jim::proto::unix_now());
      REQUIRE(err);
      INFO(*err);
      CHECK(err->find(file.string()) != std::string::npos);
      CHECK(err->find(v.expected) != std::string::npos);
      CHECK(read_bytes(file) == v.bytes);
      CHECK(listing(dir.path()) == names);
    }
  }
}

TEST_CASE("A snapshot that is not a readable file is refused", "[snapshot]") {
  scratch_dir dir;
  const auto file = snapshot::file_in(dir.path());
  fs::create_directory(file);
  hub h(unlimited());
  auto err = snapshot::load(file, h, 0);
  REQUIRE(err);
  CHECK(err->find(file.string()) != std::string::npos);
  CHECK(fs::is_directory(file));
}

TEST_CASE("Snapshot of 100k messages: capture, write and load times", "[.bench]") {
  // 100 rooms x 1000 messages (the default history-limit), 1000 accounts, ~60-byte texts.
  constexpr int rooms = 100, per_room = 1000, accounts = 1000;
  hub h(unlimited());
  std::vector<fake_peer> peers(accounts);
  std::vector<account*> users;
  for (int i = 0; i < accounts; ++i) {
    account* a = h.register_account(
        "user" + std::to_string(i),
        "pbkdf2-sha256$100000$c2FsdHNhbHRzYWx0c2FsdA$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaGhhc2g");
    h.sign_in(peers[static_cast<std::size_t>(i)], *a, jim::proto::code::ok);
    users.push_back(a);
  }
  const auto now = steady::now();
  for (int r = 0; r < rooms; ++r) {
    account& owner = *users[static_cast<std::size_t>(r)];
    const std::string name = "room" + std::to_string(r);
    h.create_room(owner, name, "pbkdf2-sha256$100000$salt$hash", "pw");
    for (int i = 0; i < per_room; ++i)
      h.post(owner,
             to_room("message number " + std::to_string(i) + " in " + name +
                         ", some ordinary chat text",
                     name),
             now);
  }
  std::size_t total = 0;
  for (auto const& [k, r] : h.all_rooms()) total += r->history.size();
  REQUIRE(total == rooms * per_room);

  scratch_dir dir;
  const auto file = snapshot::file_in(dir.path());
  // Wall time, and this thread's CPU time (what the figure would be on an idle machine).
  struct stamp {
    std::chrono::steady_clock::time_point wall = std::chrono::steady_clock::now();
    double cpu_ms = [] {
      timespec ts{};
      clock_gettime(CLOCK_THREAD_CPUTIME_ID, &ts);
      return static_cast<double>(ts.tv_sec) * 1e3 + static_cast<double>(ts.tv_nsec) / 1e6;
    }();
  };
  auto between = [](stamp const& a, stamp const& b) {
    std::ostringstream out;
    out.precision(1);
    out << std::fixed << std::chrono::duration<double, std::milli>(b.wall - a.wall).count()
        << " ms (cpu " << b.cpu_ms - a.cpu_ms << " ms)";
    return out.str();
  };
  const stamp t0;
  json::value doc = snapshot::capture(h);
  const stamp t1;
  const std::size_t bytes = snapshot::write(file, doc);
  const stamp t2;
  hub restored(unlimited());
  REQUIRE_FALSE(snapshot::load(file, restored, jim::proto::unix_now()));
  const stamp t3;
  CHECK(restored.last_id() == h.last_id());
  std::cout << "snapshot of " << total << " messages, " << accounts << " accounts: " << bytes
            << " bytes\n  capture " << between(t0, t1) << "\n  write   " << between(t1, t2)
            << "\n  load    " << between(t2, t3) << "\n";
}

TEST_CASE("A format-1 snapshot (before the journal) loads as covering no journal record",
          "[snapshot]") {
  scratch_dir dir;
  const auto file = snapshot::file_in(dir.path());
  sample s;
  json::value doc = snapshot::capture(s.h, 42);
  CHECK(doc.as_object().at("format") == 5);
  CHECK(doc.as_object().at("journal_seq") == 42);
  // Format 1 is format 2 without journal_seq; format 2 is format 3 without read markers,
  // membership starts and kept invitations.
  auto downgrade = [](json::value& d) {
    for (auto& a : d.at("accounts").as_array()) {
      a.as_object().erase("general_since");
      a.as_object().erase("read");
      a.as_object().erase("invitations");
      a.as_object().erase("contacts");
      for (auto k : {"muted_until", "reports", "banned", "notices"}) a.as_object().erase(k);
    }
    for (auto& r : d.at("rooms").as_array()) {
      r.as_object().erase("since");
      r.as_object().erase("banned");
    }
    d.as_object().erase("last_scheduled");
    d.as_object().erase("scheduled");
  };
  downgrade(doc);
  doc.as_object()["format"] = 1;
  doc.as_object().erase("journal_seq");
  snapshot::write(file, doc);
  hub loaded{s.h.limits()};
  std::uint64_t covered = 99;
  REQUIRE_FALSE(snapshot::load(file, loaded, jim::proto::unix_now(), &covered));
  CHECK(covered == 0);
  CHECK(loaded.accounts().size() == s.h.accounts().size());
  CHECK(loaded.last_id() == s.h.last_id());
  // Saved again it is format 5, with the same state (none of issue 16's additions); every
  // membership's unread count starts at the migration.
  json::value again = snapshot::capture(loaded, 0);
  CHECK(again.at("format") == 5);
  for (auto const& a : again.at("accounts").as_array())
    CHECK(a.at("general_since") == s.h.last_id());
  for (auto const& r : again.at("rooms").as_array())
    for (auto const& kv : r.at("since").as_object()) CHECK(kv.value() == s.h.last_id());
  downgrade(again);
  again.as_object().erase("saved_at");
  json::value before = snapshot::capture(s.h, 0);
  downgrade(before);
  before.as_object().erase("saved_at");
  CHECK(again == before);
}
