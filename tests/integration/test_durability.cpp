// Crash safety (issue 12): every acknowledged change is in the journal before its reply, so
// kill -9 at any moment loses nothing answered 2xx, in every --fsync mode; a damaged journal
// is refused untouched; a failing disk gives 503 and recovers; one jimd per data dir.
#include "chat_helpers.hpp"
#include "files.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <atomic>
#include <map>
#include <random>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <thread>

using namespace jim::test;
namespace fs = std::filesystem;

namespace {

constexpr char const* fail_hook_env = "JIMD_TEST_JOURNAL_FAIL_IF";

std::vector<std::string> args_for(std::string const& mode) {
  return {"--autosave", "0", "--rate-limit", "0", "--history-limit", "100000", "--fsync", mode};
}

std::vector<fs::path> journal_files(fs::path const& dir) {
  std::vector<fs::path> out;
  for (auto const& e : fs::directory_iterator(dir))
    if (e.path().filename().string().rfind("journal-", 0) == 0) out.push_back(e.path());
  std::sort(out.begin(), out.end());
  return out;
}

/// The whole history of a room, paged back with `before`, oldest first.
std::vector<json::object> whole_history(client& c, std::string const& room) {
  std::vector<json::object> all;
  std::optional<std::uint64_t> before;
  for (int page = 0; page < 1000; ++page) {
    json::object req{{"action", "history"}, {"room", room}, {"limit", 500}};
    if (before) req["before"] = *before;
    auto r = ask(c, req);
    REQUIRE(code_of(r) == 200);
    auto const& ms = r.at("messages").as_array();
    if (ms.empty()) break;
    std::vector<json::object> chunk;
    for (auto const& m : ms) chunk.push_back(m.as_object());
    all.insert(all.begin(), chunk.begin(), chunk.end());
    before = id_of(chunk.front());
  }
  return all;
}

/// Reads and drops every push queued for `c` so far (history after a sign-in or join).
void drain(client& c, std::size_t = 0) {
  barrier(c);
  for (int i = 0; i < 100000; ++i) {
    try {
      c.push(0ms);
    } catch (std::runtime_error const&) {
      return;
    }
  }
}

/// `c` once drain() dropped what was pushed to it: `auto a = drained(sign_in(port, "a"));`.
client drained(client c) {
  drain(c);
  return c;
}

/// A jimd (`--fsync always`, args_for) on a fresh data dir whose journal writes fail (503)
/// while the file `hook` exists (the test hook JIMD_TEST_JOURNAL_FAIL_IF). `d` is optional so
/// that a test can stop it and start another on `dir`.
struct failing_disk {
  temp_dir dir;
  fs::path hook = dir.path() / "disk-full";
  std::optional<jimd_process> d{std::in_place, args_for("always"), dir.path(),
                                jimd_process::environment{{fail_hook_env, hook.string()}}};
};

/// `n` pipelined room messages `text` tagged 0 to n-1, as one write.
std::string tagged_batch(std::string const& text, int n) {
  std::string batch;
  for (int i = 0; i < n; ++i)
    batch += json::serialize(json::object{{"action", "msg"}, {"message", text}, {"tag", i}}) + "\n";
  return batch;
}

}  // namespace

TEST_CASE("kill -9 at random moments loses no acknowledged message, in every fsync mode",
          "[integration][durability]") {
  std::mt19937 rng(12345);
  for (std::string mode : {"always", "everysec", "no"}) {
    DYNAMIC_SECTION("--fsync " << mode) {
      temp_dir dir;
      std::map<std::uint64_t, std::string> acked;  // id -> text, over every round
      for (int round = 0; round < 3; ++round) {
        INFO("round " << round);
        jimd_process d(args_for(mode), dir.path());
        client alice =
            drained(round == 0 ? sign_up(d.port(), "alice") : sign_in(d.port(), "alice"));
        // A window of requests in flight; the kill comes from another thread at a random time.
        const auto delay = std::chrono::milliseconds(std::uniform_int_distribution<>(30, 300)(rng));
        std::thread killer([&d, delay] {
          std::this_thread::sleep_for(delay);
          ::kill(d.pid(), SIGKILL);
        });
        std::map<std::string, std::string> tag_text;
        int sent = 0, answered = 0;
        constexpr int window = 16, max_messages = 20000;
        try {
          auto send_one = [&] {
            const std::string text = "r" + std::to_string(round) + "-" + std::to_string(sent);
            alice.send(json::object{{"action", "msg"}, {"message", text}, {"tag", sent}});
            ++sent;
          };
          for (int i = 0; i < window; ++i) send_one();
          while (answered < max_messages) {
            auto r = alice.reply(3s);
            ++answered;
            REQUIRE(code_of(r) == 200);
            const auto tag = r.at("tag").to_number<int>();
            acked[id_of(r)] = "r" + std::to_string(round) + "-" + std::to_string(tag);
            if (sent < max_messages) send_one();
          }
        } catch (std::runtime_error const&) {
          // the daemon died: the connection ended
        }
        killer.join();
        CHECK(d.stop(SIGKILL) == 128 + SIGKILL);
      }
      // Every acknowledged id is there, with its text, in order.
      jimd_process d(args_for(mode), dir.path());
      auto alice = drained(sign_in(d.port(), "alice"));
      auto history = whole_history(alice, "general");
      std::map<std::uint64_t, std::string> stored;
      std::uint64_t prev = 0;
      for (auto const& m : history) {
        CHECK(id_of(m) > prev);
        prev = id_of(m);
        stored[id_of(m)] = str(m, "message");
      }
      std::size_t missing = 0;
      for (auto const& [id, text] : acked) {
        auto it = stored.find(id);
        if (it == stored.end() || it->second != text) ++missing;
      }
      INFO(acked.size() << " acknowledged, " << stored.size() << " stored");
      CHECK(missing == 0);
      CHECK(acked.size() > 0);
      // Ids continue above everything stored.
      auto r = say(alice, "after the crashes");
      REQUIRE(code_of(r) == 200);
      CHECK(id_of(r) > prev);
      CHECK(d.stop(SIGINT) == 0);
    }
  }
}

TEST_CASE("Accounts, rooms, invitations, queued messages and missed survive kill -9",
          "[integration][durability]") {
  temp_dir dir;
  std::uint64_t queued_id = 0;
  std::string den_pw;
  {
    jimd_process d(args_for("always"), dir.path());
    for (auto name : {"bob", "carol", "dave"}) {
      auto c = sign_up(d.port(), name);
      CHECK(code_of(c.request(R"({"action":"quit"})")) == 200);
      REQUIRE(c.closed_within(5s));
    }
    auto alice = drained(sign_up(d.port(), "alice"));
    den_pw = create_room(alice, "den");
    CHECK(code_of(alice.request(R"({"action":"invite","room":"den","user":"bob"})")) == 200);
    CHECK(code_of(alice.request(R"({"action":"exit"})")) == 200);
    for (int i = 0; i < 3; ++i) CHECK(code_of(say(alice, "g" + std::to_string(i))) == 200);
    auto q = say(alice, "for carol", "carol");
    REQUIRE(code_of(q) == 202);
    queued_id = id_of(q);
    // dave joins with the password: a member from now on.
    auto dave = drained(sign_in(d.port(), "dave"));
    CHECK(code_of(ask(dave, json::object{{"action", "join"}, {"room", "den"}, {"password", den_pw}})) ==
          200);
    CHECK(d.stop(SIGKILL) == 128 + SIGKILL);
  }
  jimd_process d(args_for("always"), dir.path());
  // bob: missed the three #general messages; a member of #den by invitation.
  client bob(d.port());
  auto r = ask(bob, authenticate_req("bob"));
  REQUIRE(code_of(r) == 200);
  CHECK(r.at("missed") == 3);
  drain(bob, 20);
  CHECK(code_of(bob.request(R"({"action":"join","room":"den"})")) == 200);
  // dave too (joined with the password before the crash).
  auto dave = drained(sign_in(d.port(), "dave"));
  CHECK(code_of(dave.request(R"({"action":"join","room":"den"})")) == 200);
  // carol gets the queued message at sign-in, with its id.
  client carol(d.port());
  REQUIRE(code_of(ask(carol, authenticate_req("carol"))) == 200);
  bool got = false;
  for (int i = 0; i < 30 && !got; ++i) {
    auto p = carol.push();
    got = str(p, "message") == "for carol" && id_of(p) == queued_id;
  }
  CHECK(got);
  auto rooms = bob.request(R"({"action":"rooms"})");
  CHECK(json::serialize(rooms).find("\"#den\"") != std::string::npos);
  CHECK(d.stop(SIGINT) == 0);
}

TEST_CASE("A second jimd on the same data dir exits non-zero naming the first one's pid",
          "[integration][durability]") {
  temp_dir dir;
  jimd_process first(args_for("always"), dir.path());
  auto r = run_jimd_to_exit(dir.path());
  INFO(r.output);
  CHECK(r.exit_code == 1);
  CHECK(r.output.find("pid " + std::to_string(first.pid())) != std::string::npos);
  // The first one is unharmed.
  auto alice = sign_up(first.port(), "alice");
  CHECK(code_of(say(alice, "still here")) == 200);
  CHECK(first.stop(SIGINT) == 0);
}

TEST_CASE("A failing disk gives 503 with nothing stored or pushed, reads work, and it recovers",
          "[integration][durability]") {
  failing_disk disk;
  auto& [dir, hook, d] = disk;
  auto alice = drained(sign_up(d->port(), "alice"));
  auto bob = drained(sign_up(d->port(), "bob"));
  auto r = say(alice, "before");
  REQUIRE(code_of(r) == 200);
  const auto id_before = id_of(r);
  CHECK(id_of(bob.push()) == id_before);

  write_bytes(hook, "");
  for (int i = 0; i < 3; ++i) {
    r = say(alice, "refused " + std::to_string(i));
    CHECK(code_of(r) == 503);
    CHECK(str(r, "error").find("storage unavailable") != std::string::npos);
  }
  CHECK(code_of(alice.request(R"({"action":"create","room":"den"})")) == 503);
  client carol(d->port());
  CHECK(code_of(ask(carol, register_req("carol"))) == 503);
  CHECK(no_push_pending(bob));  // nothing was pushed
  // Reads keep working.
  CHECK(code_of(alice.request(R"({"action":"history"})")) == 200);
  CHECK(code_of(alice.request(R"({"action":"rooms"})")) == 200);
  CHECK(code_of(alice.request(R"({"action":"users"})")) == 200);

  fs::remove(hook);
  r = say(alice, "after");
  REQUIRE(code_of(r) == 200);
  CHECK(id_of(r) == id_before + 1);  // no id was consumed by the refused messages
  CHECK(code_of(ask(carol, register_req("carol"))) == 201);
  CHECK(d->stop(SIGKILL) == 128 + SIGKILL);
  // One error line for the episode.
  const std::string out = d->output();
  std::size_t lines = 0;
  for (auto at = out.find("storage unavailable:"); at != std::string::npos;
       at = out.find("storage unavailable:", at + 1))
    ++lines;
  CHECK(lines == 1);

  d.reset();
  jimd_process again(args_for("always"), dir.path());
  auto a2 = drained(sign_in(again.port(), "alice"));
  auto h = whole_history(a2, "general");
  REQUIRE(h.size() == 2);
  CHECK(str(h[0], "message") == "before");
  CHECK(str(h[1], "message") == "after");
  CHECK(again.stop(SIGINT) == 0);
}

TEST_CASE("A damaged journal is refused untouched, a torn tail is dropped",
          "[integration][durability]") {
  temp_dir dir;
  {
    jimd_process d(args_for("always"), dir.path());
    auto alice = sign_up(d.port(), "alice");
    for (int i = 0; i < 5; ++i) CHECK(code_of(say(alice, "m" + std::to_string(i))) == 200);
    CHECK(d.stop(SIGKILL) == 128 + SIGKILL);
  }
  auto files = journal_files(dir.path());
  REQUIRE(files.size() == 1);
  const std::string good = read_bytes(files[0]);
  // The records, then the segment's preallocated zeros.
  std::size_t used = good.size();
  while (used > 0 && good[used - 1] == 0) --used;
  REQUIRE(used > 200);
  {
    std::string bad = good;
    bad[used / 2] = static_cast<char>(bad[used / 2] ^ 0x01);
    write_bytes(files[0], bad);
    auto r = run_jimd_to_exit(dir.path());
    INFO(r.output);
    CHECK(r.exit_code == 1);
    CHECK(r.output.find(files[0].string()) != std::string::npos);
    CHECK(r.output.find("offset") != std::string::npos);
    CHECK(read_bytes(files[0]) == bad);
    CHECK(journal_files(dir.path()).size() == 1);
  }
  // Torn: the last few bytes missing (the last record was never acknowledged).
  write_bytes(files[0], good.substr(0, used - 3) + std::string(good.size() - used + 3, '\0'));
  jimd_process d(args_for("always"), dir.path());
  auto alice = drained(sign_in(d.port(), "alice"));
  auto h = whole_history(alice, "general");
  CHECK(h.size() >= 4);
  CHECK(d.output().find("torn") != std::string::npos);
  CHECK(code_of(say(alice, "after the tear")) == 200);
  CHECK(d.stop(SIGINT) == 0);
}

TEST_CASE("A format-1 snapshot from before the journal loads and is saved as format 2",
          "[integration][durability]") {
  temp_dir dir;
  {
    jimd_process d(args_for("always"), dir.path());
    auto alice = sign_up(d.port(), "alice");
    CHECK(code_of(say(alice, "from format 1")) == 200);
    alice.close();
    CHECK(d.stop(SIGINT) == 0);
  }
  const fs::path file = dir.path() / "jimd-state.json";
  auto doc = json::parse(read_bytes(file));
  CHECK(doc.at("format") == 5);
  doc.as_object()["format"] = 1;
  doc.as_object().erase("journal_seq");
  doc.as_object().erase("last_scheduled");  // format 3's and 5's additions
  doc.as_object().erase("scheduled");
  for (auto& a : doc.at("accounts").as_array())
    for (auto key : {"general_since", "read", "invitations", "contacts", "muted_until", "reports",
                     "banned", "notices"})
      a.as_object().erase(key);
  for (auto& r : doc.at("rooms").as_array())
    for (auto key : {"since", "banned"}) r.as_object().erase(key);
  write_bytes(file, json::serialize(doc));
  for (auto const& f : journal_files(dir.path())) fs::remove(f);  // no journal before format 2
  jimd_process d(args_for("always"), dir.path());
  auto alice = drained(sign_in(d.port(), "alice"));
  auto h = whole_history(alice, "general");
  REQUIRE(h.size() == 1);
  CHECK(str(h[0], "message") == "from format 1");
  CHECK(code_of(say(alice, "in format 2")) == 200);
  alice.close();
  CHECK(d.stop(SIGINT) == 0);
  CHECK(json::parse(read_bytes(file)).at("format") == 5);
}

// A session's room messages are stored in a pipeline (several in one journal batch, not one
// per fdatasync); every reply still comes in request order, and anything that is not a room
// message waits for the pipelined ones first.
TEST_CASE("Pipelined room messages: replies stay in request order, ids consecutive",
          "[integration][durability]") {
  temp_dir dir;
  jimd_process d(args_for("always"), dir.path());
  auto alice = drained(sign_up(d.port(), "alice"));
  auto bob = drained(sign_up(d.port(), "bob"));
  // One write: messages, a read, a malformed frame, a refusal, a private message, more messages.
  std::string batch;
  int tag = 0;
  auto msg = [&](std::string const& text, std::string const& to = {}) {
    json::object f{{"action", "msg"}, {"message", text}, {"tag", tag++}};
    if (!to.empty()) f["to"] = to;
    batch += json::serialize(f) + "\n";
  };
  for (int i = 0; i < 20; ++i) msg("a" + std::to_string(i));
  batch += R"({"action":"rooms","tag":)" + std::to_string(tag++) + "}\n";
  for (int i = 0; i < 5; ++i) msg("b" + std::to_string(i));
  batch += "{\"action\":\n";  // malformed: 400, no tag
  for (int i = 0; i < 5; ++i) msg("c" + std::to_string(i));
  msg("not a member", "#nowhere");  // 404
  msg("hi bob", "bob");             // private
  for (int i = 0; i < 20; ++i) msg("d" + std::to_string(i));
  alice.send_raw(batch);

  std::uint64_t prev_id = 0;
  int expect_tag = 0;
  bool saw_400 = false;
  while (expect_tag < tag) {
    auto r = alice.reply(10s);
    if (!r.contains("tag")) {  // the malformed frame: after b4, before c0
      CHECK(code_of(r) == 400);
      CHECK(expect_tag == 26);
      saw_400 = true;
      continue;
    }
    REQUIRE(r.at("tag").to_number<int>() == expect_tag);
    if (expect_tag == 20) {
      CHECK(code_of(r) == 200);  // rooms
    } else if (expect_tag == 31) {
      CHECK(code_of(r) == 404);
    } else {
      REQUIRE(code_of(r) == 200);
      CHECK(id_of(r) == prev_id + 1);
      prev_id = id_of(r);
    }
    ++expect_tag;
  }
  CHECK(saw_400);
  // Bob got every room message in order, and the private one in its place.
  std::vector<std::string> seen;
  for (int i = 0; i < 51; ++i) seen.push_back(str(bob.push(), "message"));
  CHECK(seen.front() == "a0");
  CHECK(seen[25] == "c0");
  CHECK(seen[30] == "hi bob");
  CHECK(seen.back() == "d19");
  CHECK(d.stop(SIGINT) == 0);
}

TEST_CASE("Pipelined room messages that cannot be stored are all refused, in order, ids unused",
          "[integration][durability]") {
  failing_disk disk;
  auto& [dir, hook, d] = disk;
  auto alice = drained(sign_up(d->port(), "alice"));
  auto r = say(alice, "before");
  REQUIRE(code_of(r) == 200);
  const auto id_before = id_of(r);
  write_bytes(hook, "");
  alice.send_raw(tagged_batch("x", 30));
  for (int i = 0; i < 30; ++i) {
    auto x = alice.reply(10s);
    REQUIRE(x.at("tag").to_number<int>() == i);
    CHECK(code_of(x) == 503);
  }
  fs::remove(hook);
  alice.send_raw(tagged_batch("y", 30));
  for (int i = 0; i < 30; ++i) {
    auto y = alice.reply(10s);
    REQUIRE(y.at("tag").to_number<int>() == i);
    REQUIRE(code_of(y) == 200);
    CHECK(id_of(y) == id_before + 1 + static_cast<std::uint64_t>(i));
  }
  CHECK(d->stop(SIGINT) == 0);
}
