#include "chat_helpers.hpp"
#include "files.hpp"
#include "harness.hpp"

#include <catch2/catch.hpp>

#include <optional>
#include <set>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <sys/wait.h>
#include <thread>

using namespace jim::test;
namespace fs = std::filesystem;

namespace {

// The test hook of snapshot::write (server/src/snapshot.hpp): exit(3) before the rename.
constexpr char const* crash_hook_env = "JIMD_TEST_CRASH_BEFORE_RENAME";

const std::vector<std::string> daemon_args{"--autosave", "0", "--rate-limit", "0"};

/// The snapshot in a data dir: the one JSON file jimd keeps there.
fs::path snapshot_in(fs::path const& dir) {
  std::vector<fs::path> found;
  for (auto const& e : fs::directory_iterator(dir))
    if (e.is_regular_file() && e.path().extension() == ".json") found.push_back(e.path());
  REQUIRE(found.size() == 1);
  return found.front();
}

/// Every frame the server sent before it closed the connection (bounded).
std::vector<json::object> frames_until_closed(client& c) {
  REQUIRE(c.closed_within(5s));
  std::vector<json::object> frames;
  try {
    for (int i = 0; i < 100000; ++i) frames.push_back(c.push(100ms));
  } catch (std::runtime_error const&) {
    // connection closed: everything has been read
  }
  return frames;
}

bool got_notice(client& c) {
  for (auto const& f : frames_until_closed(c))
    if (f.contains("action") && f.at("action") == "notice") return true;
  return false;
}

/// Fails when any file under `dir` contains one of `secrets`.
void check_no_secret_in(fs::path const& dir, std::vector<std::string> const& secrets) {
  std::size_t files = 0;
  for (auto const& e : fs::recursive_directory_iterator(dir)) {
    if (!e.is_regular_file()) continue;
    ++files;
    const std::string bytes = read_bytes(e.path());
    for (auto const& s : secrets) {
      INFO(e.path().string() << " must not contain " << s);
      CHECK(bytes.find(s) == std::string::npos);
    }
  }
  CHECK(files >= 2);  // at least the snapshot and the daemon's output
}


/// The whole story of issue 4 with one signal: state before, signal, state after.
void state_survives_restart(int sig) {
  temp_dir dir;
  const std::string pw_alice = "Alice-clear-4711", pw_bob = "Bob-clear-0815",
                    pw_carol = "Carol-clear-2323", pw_dave = "Dave-clear-9090";
  std::string room_pw;
  std::uint64_t id_g1 = 0, id_g2 = 0, id_den = 0, id_queued = 0, id_private = 0;
  {
    jimd_process d(daemon_args, dir.path());
    for (auto [name, pw] : {std::pair{"Carol", pw_carol}, std::pair{"dave", pw_dave}}) {
      auto c = sign_up(d.port(), name, pw);
      CHECK(code_of(c.request(R"({"action":"quit"})")) == 200);
      REQUIRE(c.closed_within(5s));  // signed out once the server closes it
    }
    auto alice = sign_up(d.port(), "Alice", pw_alice);
    auto bob = sign_up(d.port(), "bob", pw_bob);

    auto r = alice.request(R"({"action":"msg","message":"hello everyone","to":"#general"})");
    REQUIRE(code_of(r) == 200);
    id_g1 = id_of(r);
    CHECK(id_of(bob.push()) == id_g1);
    r = bob.request(R"({"action":"msg","message":"hi alice"})");
    REQUIRE(code_of(r) == 200);
    id_g2 = id_of(r);
    CHECK(id_of(alice.push()) == id_g2);

    r = alice.request(R"({"action":"create","room":"Den"})");
    REQUIRE(code_of(r) == 201);
    room_pw = r.at("password").as_string().c_str();
    r = alice.request(R"({"action":"msg","message":"plans for the den"})");
    REQUIRE(code_of(r) == 200);
    id_den = id_of(r);

    r = alice.request(R"({"action":"msg","message":"read this later","to":"carol"})");
    REQUIRE(code_of(r) == 202);
    id_queued = id_of(r);
    r = alice.request(R"({"action":"msg","message":"psst bob","to":"BOB"})");
    REQUIRE(code_of(r) == 200);
    id_private = id_of(r);
    CHECK(id_of(bob.push()) == id_private);

    const auto t0 = std::chrono::steady_clock::now();
    CHECK(d.stop(sig, 10s) == 0);
    CHECK(std::chrono::steady_clock::now() - t0 < 5s);
    CHECK(got_notice(alice));
    CHECK(got_notice(bob));
  }
  CHECK(id_g1 < id_g2);
  CHECK(id_g2 < id_den);
  CHECK(id_den < id_queued);
  CHECK(id_queued < id_private);

  {
    jimd_process d(daemon_args, dir.path());
    {
      client wrong(d.port());
      CHECK(code_of(ask(wrong, authenticate_req("alice", "not-the-password"))) == 402);
    }
    client alice(d.port());
    auto r = ask(alice, authenticate_req("ALICE", pw_alice));
    REQUIRE(code_of(r) == 200);
    CHECK(r.at("missed") == 0);  // she was online until the shutdown
    auto h1 = alice.push(), h2 = alice.push();
    CHECK(id_of(h1) == id_g1);
    CHECK(id_of(h2) == id_g2);
    CHECK(h1.at("history") == true);
    CHECK(h2.at("message") == "hi alice");

    r = alice.request(R"({"action":"msg","message":"after the restart"})");
    REQUIRE(code_of(r) == 200);
    const std::uint64_t id_new = id_of(r);
    CHECK(id_new > id_private);

    r = alice.request(R"({"action":"history","room":"general"})");
    REQUIRE(code_of(r) == 200);
    CHECK(ids_of(r) == std::vector<std::uint64_t>{id_g1, id_g2, id_new});
    r = alice.request(R"({"action":"history","with":"bob"})");
    REQUIRE(code_of(r) == 200);
    CHECK(ids_of(r) == std::vector<std::uint64_t>{id_private});
    r = alice.request(R"({"action":"history","room":"den"})");
    REQUIRE(code_of(r) == 200);  // still the owner and a member
    CHECK(ids_of(r) == std::vector<std::uint64_t>{id_den});

    // Carol was away since before the first message: 3 missed, then her queued message.
    client carol(d.port());
    r = ask(carol, authenticate_req("carol", pw_carol));
    REQUIRE(code_of(r) == 200);
    CHECK(r.at("missed") == 3);
    for (auto id : {id_g1, id_g2, id_new}) CHECK(id_of(carol.push()) == id);
    auto queued = carol.push();
    CHECK(queued.at("action") == "msg");
    CHECK(id_of(queued) == id_queued);
    CHECK(queued.at("from") == "Alice");
    CHECK(queued.at("message") == "read this later");
    CHECK_FALSE(queued.contains("history"));

    // Bob left when the first daemon stopped: only the message since then is new to him.
    client bob(d.port());
    r = ask(bob, authenticate_req("bob", pw_bob));
    REQUIRE(code_of(r) == 200);
    CHECK(r.at("missed") == 1);

    // The room password still works for someone who is not a member.
    auto dave = sign_in(d.port(), "dave", pw_dave);
    CHECK(code_of(dave.request(R"({"action":"join","room":"den","password":"guess"})")) == 403);
    json::object join{{"action", "join"}, {"room", "Den"}, {"password", room_pw}};
    dave.send(join);
    r = dave.reply();
    REQUIRE(code_of(r) == 200);
    CHECK(r.at("room") == "#Den");
    json::object den_msg;
    for (int i = 0; i < 10; ++i) {  // skip #general's history pushed at sign-in
      den_msg = dave.push();
      if (den_msg.at("to") == "#Den") break;
    }
    CHECK(id_of(den_msg) == id_den);

    CHECK(d.stop(sig, 10s) == 0);
  }
  check_no_secret_in(dir.path(), {pw_alice, pw_bob, pw_carol, pw_dave, room_pw});
}

}  // namespace

TEST_CASE("Everything survives a SIGINT and a restart", "[integration][persistence]") {
  state_survives_restart(SIGINT);
}

TEST_CASE("Everything survives a SIGTERM and a restart", "[integration][persistence]") {
  state_survives_restart(SIGTERM);
}

TEST_CASE("A signal to a busy server loses no acknowledged message", "[integration][persistence]") {
  temp_dir dir;
  const std::vector<std::string> args{"--autosave",      "0",    "--rate-limit", "0",
                                      "--history-limit", "10000"};
  std::set<std::uint64_t> acked;
  constexpr int sent = 5000;
  {
    jimd_process d(args, dir.path());
    auto alice = sign_up(d.port(), "alice", "pw-alice");
    std::string batch;
    for (int i = 0; i < sent; ++i)
      batch += R"({"action":"msg","message":"burst )" + std::to_string(i) + "\"}\n";
    alice.send_raw(batch);
    for (int i = 0; i < 50; ++i) {
      auto r = alice.reply();
      REQUIRE(code_of(r) == 200);
      acked.insert(id_of(r));
    }
    ::kill(d.pid(), SIGINT);
    for (auto const& f : frames_until_closed(alice))
      if (f.contains("response") && code_of(f) == 200) acked.insert(id_of(f));
    CHECK(d.stop(SIGINT, 10s) == 0);  // a second SIGINT during the shutdown changes nothing
  }
  INFO(acked.size() << " of " << sent << " messages were acknowledged");
  {
    jimd_process d(args, dir.path());
    auto alice = sign_in(d.port(), "alice", "pw-alice");
    std::set<std::uint64_t> stored;
    std::uint64_t before = 0;
    for (int page = 0; page < 100; ++page) {
      std::string req = R"({"action":"history","room":"general","limit":500)";
      if (before) req += ",\"before\":" + std::to_string(before);
      auto r = alice.request(req + "}");
      REQUIRE(code_of(r) == 200);
      auto ids = ids_of(r);
      if (ids.empty()) break;
      stored.insert(ids.begin(), ids.end());
      before = ids.front();
    }
    for (auto id : acked) {
      INFO("acknowledged id " << id);
      CHECK(stored.count(id) == 1);
    }
    CHECK(d.stop(SIGINT) == 0);
  }
}

TEST_CASE("A corrupt snapshot stops jimd with an error naming the file, which is left untouched",
          "[integration][persistence]") {
  temp_dir dir;
  {
    jimd_process d(daemon_args, dir.path());
    auto alice = sign_up(d.port(), "alice", "pw-alice");
    CHECK(code_of(alice.request(R"({"action":"msg","message":"hello"})")) == 200);
    alice.close();  // no connection left to linger on at shutdown
    REQUIRE(d.stop(SIGINT) == 0);
  }
  const fs::path file = snapshot_in(dir.path());
  const std::string good = read_bytes(file);
  json::value wrong_format = json::parse(good);
  wrong_format.as_object()["format"] = 6;  // a future one
  json::value wrong_type = json::parse(good);
  wrong_type.as_object()["last_id"] = "many";

  const std::vector<std::pair<char const*, std::string>> variants{
      {"truncated", good.substr(0, good.size() / 2)},
      {"garbage", "this is not JSON\n"},
      {"format 6", json::serialize(wrong_format)},
      {"wrong type", json::serialize(wrong_type)},
  };
  for (auto const& [what, bytes] : variants) {
    DYNAMIC_SECTION(what) {
      write_bytes(file, bytes);
      const auto r = run_jimd_to_exit(dir.path());
      INFO(r.output);
      CHECK(r.exit_code == 1);  // refused to start (124 would be the timeout)
      CHECK(r.output.find("Sanitizer") == std::string::npos);
      CHECK(r.output.find(file.string()) != std::string::npos);
      CHECK(read_bytes(file) == bytes);
    }
  }
}

TEST_CASE("A snapshot write interrupted before the rename leaves the previous snapshot valid",
          "[integration][persistence]") {
  temp_dir dir;
  {
    jimd_process d(daemon_args, dir.path());
    auto alice = sign_up(d.port(), "alice", "pw-alice");
    CHECK(code_of(alice.request(R"({"action":"msg","message":"before the crash"})")) == 200);
    alice.close();
    REQUIRE(d.stop(SIGINT) == 0);
  }
  const fs::path file = snapshot_in(dir.path());
  const std::string good = read_bytes(file);

  for (auto [mode, name] : {std::pair{"1", "bob"}, std::pair{"partial", "carol"}}) {
    INFO("hook mode " << mode);
    {
      std::optional<jimd_process> d;
      d.emplace(daemon_args, dir.path(), jimd_process::environment{{crash_hook_env, mode}});
      auto c = sign_up(d->port(), name, "pw-bob");
      CHECK(code_of(say(c, std::string("kept by the journal: ") + name)) == 200);
      c.close();
      CHECK(d->stop(SIGINT) == 3);  // the hook's exit status
    }
    CHECK(read_bytes(file) == good);
  }

  // The snapshot did not change, and nothing acknowledged was lost: the journal kept it.
  jimd_process d(daemon_args, dir.path());
  client bob(d.port());
  CHECK(code_of(ask(bob, authenticate_req("bob", "pw-bob"))) == 200);
  auto alice = sign_in(d.port(), "alice", "pw-alice");
  auto r = alice.request(R"({"action":"history"})");
  REQUIRE(code_of(r) == 200);
  REQUIRE(r.at("messages").as_array().size() == 3);
  CHECK(r.at("messages").as_array()[0].at("message") == "before the crash");
  CHECK(r.at("messages").as_array()[1].at("message") == "kept by the journal: bob");
  CHECK(r.at("messages").as_array()[2].at("message") == "kept by the journal: carol");
  CHECK(d.stop(SIGINT) == 0);
  // The next shutdown saved normally, over the stale temp file of the crash.
  for (auto const& e : fs::directory_iterator(dir.path()))
    CHECK(e.path().filename().string().find(".tmp") == std::string::npos);
  CHECK(snapshot_in(dir.path()) == file);
}

TEST_CASE("An autosave survives a crash of the daemon", "[integration][persistence]") {
  temp_dir dir;
  const std::vector<std::string> args{"--autosave", "1", "--rate-limit", "0"};
  std::uint64_t id = 0;
  {
    jimd_process d(args, dir.path());
    auto alice = sign_up(d.port(), "alice", "pw-alice");
    auto r = alice.request(R"({"action":"msg","message":"saved by the autosave"})");
    REQUIRE(code_of(r) == 200);
    id = id_of(r);
    // Wait (bounded) for an autosave that holds the message, then crash without any shutdown.
    bool saved = false;
    for (auto deadline = std::chrono::steady_clock::now() + 10s;
         !saved && std::chrono::steady_clock::now() < deadline;) {
      std::this_thread::sleep_for(100ms);
      for (auto const& e : fs::directory_iterator(dir.path()))
        if (e.path().extension() == ".json" &&
            read_bytes(e.path()).find("saved by the autosave") != std::string::npos)
          saved = true;
    }
    REQUIRE(saved);
    CHECK(d.stop(SIGKILL) == 128 + SIGKILL);
  }
  jimd_process d(args, dir.path());
  client alice(d.port());
  auto r = ask(alice, authenticate_req("alice", "pw-alice"));
  REQUIRE(code_of(r) == 200);
  CHECK(r.at("missed") == 0);  // she was online when the autosave captured the message
  CHECK(id_of(alice.push()) == id);
  r = alice.request(R"({"action":"msg","message":"after the crash"})");
  REQUIRE(code_of(r) == 200);
  CHECK(id_of(r) > id);
  CHECK(d.stop(SIGINT) == 0);
}
