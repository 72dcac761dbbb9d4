// The journal: the events codec, record framing, replay (torn tails, damage, gaps) and the
// writer (group commit, storage failures, rotation).
#include "hub.hpp"
#include "store/events.hpp"
#include "store/journal.hpp"

#include "files.hpp"
#include "harness.hpp"

#include <boost/asio/executor_work_guard.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <catch2/catch.hpp>
#include <spdlog/spdlog.h>

#include <cstdlib>
#include <functional>
#include <initializer_list>
#include <filesystem>
#include <fstream>
#include <stdexcept>

using namespace jim::server;
namespace fs = std::filesystem;
namespace asio = boost::asio;
using jim::test::read_bytes;
using jim::test::write_bytes;

namespace {

const int quiet_logs = (spdlog::set_level(spdlog::level::off), 0);

using scratch_dir = jim::test::temp_dir;

std::vector<store::event> sample_events() {
  using namespace store;
  return {account_registered{"Alice", "pbkdf2-sha256$1$salt$hash"},
          account_registered{"bob", "h2"},
          room_created{"#Den", "Alice", "room-hash"},
          member_added{"#Den", "bob"},
          message_posted{{1, 1700000000, "Alice", "#Den", "hello \"den\" \xc3\xa9"}, false},
          message_posted{{2, 1700000001, "Alice", "bob", "psst"}, true},
          message_queued{{2, 1700000001, "Alice", "bob", "psst"}},
          queue_delivered{"bob", 2},
          general_seen{"bob", 7}};
}

/// sample_events() followed by read markers and invitations (issue 15).
std::vector<store::event> marker_events() {
  using namespace store;
  auto evs = sample_events();
  for (event e : std::initializer_list<event>{
           read_marked{"bob", "#Den", "", 1}, read_marked{"bob", "", "Alice", 2},
           read_marked{"bob", "#Den", "", 0},  // backwards: changes nothing
           invitation_queued{"bob", "Alice", "#Den"}, invitation_queued{"bob", "Alice", "#den"},
           invitations_delivered{"bob", 1}})
    evs.push_back(std::move(e));
  return evs;
}

/// Writes `events` as records seq 1.. into one segment file; returns the record offsets.
std::vector<std::size_t> write_segment(fs::path const& dir, std::vector<store::event> const& evs,
                                       std::uint64_t first = 1) {
  std::string bytes;
  std::vector<std::size_t> offsets;
  for (std::size_t i = 0; i < evs.size(); ++i) {
    offsets.push_back(bytes.size());
    store::frame_record(bytes, store::encode(evs[i], first + i));
  }
  write_bytes(store::segment_path(dir, first), bytes);
  return offsets;
}

struct collected {
  std::vector<std::uint64_t> seqs;
  store::replay_fn fn() {
    return [this](std::uint64_t seq, store::event const&) -> std::optional<std::string> {
      seqs.push_back(seq);
      return std::nullopt;
    };
  }
};

}  // namespace

TEST_CASE("CRC32C is the Castagnoli checksum", "[journal]") {
  CHECK(store::crc32c("123456789", 9) == 0xE3069283u);
}

TEST_CASE("Every event survives encode and decode", "[journal]") {
  std::uint64_t seq = 10;
  for (auto const& e : sample_events()) {
    const std::string payload = store::encode(e, seq);
    auto d = store::decode(payload);
    CHECK(d.seq == seq);
    CHECK(d.e.index() == e.index());
    CHECK(store::encode(d.e, seq) == payload);
    ++seq;
  }
}

TEST_CASE("Events are written in the journal's format, field by field as documented", "[journal]") {
  // The format journals on disk are in (store/events.hpp): the kind's name, its fields in order.
  CHECK(store::encode(store::account_registered{"Alice", "h"}, 1) ==
        R"({"seq":1,"ev":"account","name":"Alice","hash":"h"})");
  CHECK(store::encode(store::message_posted{{7, 1700000000, "Alice", "#Den", "hi"}, false}, 4) ==
        R"({"seq":4,"ev":"msg","id":7,"time":1700000000,"from":"Alice","to":"#Den","message":"hi","queued":false})");
  CHECK(store::encode(store::read_marked{"bob", "#Den", "", 7}, 12) ==
        R"({"seq":12,"ev":"read","account":"bob","room":"#Den","id":7})");
  CHECK(store::encode(store::read_marked{"bob", "", "Alice", 7}, 12) ==
        R"({"seq":12,"ev":"read","account":"bob","with":"Alice","id":7})");
  CHECK(store::encode(store::user_reported{"bob", "Alice", "spam", 5, 3, 86400, 14400}, 23) ==
        R"({"seq":23,"ev":"report","account":"bob","by":"Alice","reason":"spam","time":5,"threshold":3,"window":86400,"mute":14400})");
  // Each field's type is checked when read back, and the rules beyond types hold.
  CHECK_THROWS_WITH(store::decode(R"({"seq":1,"ev":"account","name":1,"hash":"h"})"),
                    Catch::Contains("\"name\" is not a string"));
  CHECK_THROWS_WITH(store::decode(R"({"seq":1,"ev":"delete","id":1,"by":"a","admin":1})"),
                    Catch::Contains("\"admin\" is not a boolean"));
  CHECK_THROWS_WITH(store::decode(R"({"seq":1,"ev":"edit","id":1,"by":"a","message":"m","time":"t"})"),
                    Catch::Contains("\"time\" is not an integer"));
  CHECK_THROWS_WITH(
      store::decode(R"({"seq":1,"ev":"queue","id":0,"time":1,"from":"a","to":"b","message":"m"})"),
      Catch::Contains("message id 0"));
  CHECK_NOTHROW(
      store::decode(R"({"seq":1,"ev":"msg","id":0,"time":1,"from":"a","to":"b","message":"m","queued":false})"));
  CHECK_THROWS_WITH(store::decode(R"({"seq":1,"ev":"read","account":"a","room":"","id":1})"),
                    Catch::Contains("empty \"room\""));
  CHECK_THROWS_WITH(store::decode(R"({"seq":1,"ev":"roomban","room":"#r","account":"a","by":"b","action":"hug"})"),
                    Catch::Contains("unknown room moderation"));
}

TEST_CASE("Malformed events are refused with a reason", "[journal]") {
  CHECK_THROWS_WITH(store::decode("{\"seq\":1,\"ev\":\"dance\"}"), Catch::Contains("unknown event"));
  CHECK_THROWS_WITH(store::decode("{\"seq\":1,\"ev\":\"seen\",\"account\":\"a\"}"),
                    Catch::Contains("missing field"));
  CHECK_THROWS_WITH(
      store::decode("{\"seq\":1,\"ev\":\"seen\",\"account\":\"a\",\"general\":1,\"x\":1}"),
      Catch::Contains("unknown field"));
  CHECK_THROWS_WITH(store::decode("not json"), Catch::Contains("not valid JSON"));
  CHECK_THROWS_WITH(store::decode("{\"seq\":-1,\"ev\":\"seen\",\"account\":\"a\",\"general\":1}"),
                    Catch::Contains("non-negative"));
}

TEST_CASE("Replay reads every record in order and skips what the snapshot covers", "[journal]") {
  scratch_dir dir;
  write_segment(dir.path(), sample_events());
  collected all;
  auto rep = store::replay(dir.path(), 0, all.fn());
  REQUIRE_FALSE(rep.error);
  CHECK_FALSE(rep.torn);
  CHECK(all.seqs == std::vector<std::uint64_t>{1, 2, 3, 4, 5, 6, 7, 8, 9});
  CHECK(rep.last_seq == 9);
  collected after;
  rep = store::replay(dir.path(), 4, after.fn());
  REQUIRE_FALSE(rep.error);
  CHECK(after.seqs == std::vector<std::uint64_t>{5, 6, 7, 8, 9});
}

TEST_CASE("A torn last record at every byte offset is dropped, the rest loads", "[journal]") {
  scratch_dir dir;
  const auto evs = sample_events();
  const auto offsets = write_segment(dir.path(), evs);
  const auto file = store::segment_path(dir.path(), 1);
  const std::string whole = read_bytes(file);
  for (std::size_t cut = offsets.back(); cut < whole.size(); ++cut) {
    write_bytes(file, whole.substr(0, cut));
    collected c;
    auto rep = store::replay(dir.path(), 0, c.fn());
    INFO("cut at " << cut);
    REQUIRE_FALSE(rep.error);
    CHECK(c.seqs.size() == evs.size() - 1);
    CHECK(rep.torn.has_value() == (cut > offsets.back()));
    CHECK(rep.tail_valid_end == offsets.back());
  }
  // Zeros after the last record are the preallocated part of the segment: the end, no warning.
  write_bytes(file, whole + std::string(100, '\0'));
  collected z;
  auto rep = store::replay(dir.path(), 0, z.fn());
  REQUIRE_FALSE(rep.error);
  CHECK_FALSE(rep.torn);
  CHECK(z.seqs.size() == evs.size());
  CHECK(rep.tail_valid_end == whole.size());
}

TEST_CASE("A torn record inside a preallocated segment is dropped, damage before zeros is not",
          "[journal]") {
  scratch_dir dir;
  const auto evs = sample_events();
  const auto offsets = write_segment(dir.path(), evs);
  const auto file = store::segment_path(dir.path(), 1);
  const std::string whole = read_bytes(file);
  const std::string zeros(4096, '\0');
  // The last record cut at every byte, the rest of the segment zeros (a write cut short).
  for (std::size_t cut = offsets.back(); cut < whole.size(); ++cut) {
    write_bytes(file, whole.substr(0, cut) + zeros);
    collected c;
    auto rep = store::replay(dir.path(), 0, c.fn());
    INFO("cut at " << cut);
    REQUIRE_FALSE(rep.error);
    CHECK(c.seqs.size() == evs.size() - 1);
    CHECK(rep.torn.has_value() == (cut > offsets.back()));
    CHECK(rep.tail_valid_end == offsets.back());
  }
  // The last record's first page written, a later part zeros (pages reach the disk in any order).
  {
    std::string bad = whole + zeros;
    std::fill(bad.begin() + static_cast<std::ptrdiff_t>(offsets.back() + 14),
              bad.begin() + static_cast<std::ptrdiff_t>(offsets.back() + 20), '\0');
    write_bytes(file, bad);
    collected c;
    auto rep = store::replay(dir.path(), 0, c.fn());
    REQUIRE_FALSE(rep.error);
    CHECK(rep.torn);
    CHECK(c.seqs.size() == evs.size() - 1);
  }
  // A flipped byte in a middle record, zeros after the last one: whole records follow it.
  for (std::size_t at = offsets[3]; at < offsets[4]; ++at) {
    std::string bad = whole + zeros;
    bad[at] = static_cast<char>(bad[at] ^ 0x20);
    write_bytes(file, bad);
    collected c;
    auto rep = store::replay(dir.path(), 0, c.fn());
    INFO("flipped byte " << at);
    REQUIRE(rep.error);
    CHECK_THAT(*rep.error, Catch::Contains("offset " + std::to_string(offsets[3])));
    CHECK(read_bytes(file) == bad);  // untouched
  }
  // Zeros at the end of an earlier segment are its unused part too; the next one follows on.
  {
    write_bytes(file, whole + zeros);
    const auto next = store::segment_path(dir.path(), evs.size() + 1);
    std::string rec;
    store::frame_record(rec, store::encode(store::general_seen{"bob", 9}, evs.size() + 1));
    write_bytes(next, rec + zeros);
    collected c;
    auto rep = store::replay(dir.path(), 0, c.fn());
    REQUIRE_FALSE(rep.error);
    CHECK_FALSE(rep.torn);
    CHECK(c.seqs.size() == evs.size() + 1);
    fs::remove(next);
  }
}

TEST_CASE("A flipped byte in the middle is damage naming the file and offset", "[journal]") {
  scratch_dir dir;
  const auto offsets = write_segment(dir.path(), sample_events());
  const auto file = store::segment_path(dir.path(), 1);
  const std::string whole = read_bytes(file);
  // Every byte of a middle record: length, length check, CRC and payload.
  for (std::size_t at = offsets[3]; at < offsets[4]; ++at) {
    std::string bad = whole;
    bad[at] = static_cast<char>(bad[at] ^ 0x20);
    write_bytes(file, bad);
    collected c;
    auto rep = store::replay(dir.path(), 0, c.fn());
    INFO("flipped byte " << at);
    REQUIRE(rep.error);
    CHECK_THAT(*rep.error, Catch::Contains(file.string()) &&
                               Catch::Contains("offset " + std::to_string(offsets[3])));
    CHECK(read_bytes(file) == bad);  // untouched
  }
}

TEST_CASE("Gaps and unknown events are damage", "[journal]") {
  scratch_dir dir;
  auto evs = sample_events();
  SECTION("a gap between segments") {
    write_segment(dir.path(), {evs[0], evs[1]}, 1);
    write_segment(dir.path(), {evs[2]}, 4);
    collected c;
    auto rep = store::replay(dir.path(), 0, c.fn());
    REQUIRE(rep.error);
    CHECK_THAT(*rep.error, Catch::Contains("gap"));
  }
  SECTION("a journal starting after the snapshot") {
    write_segment(dir.path(), {evs[0]}, 5);
    collected c;
    auto rep = store::replay(dir.path(), 3, c.fn());
    REQUIRE(rep.error);
    CHECK_THAT(*rep.error, Catch::Contains("gap"));
  }
  SECTION("an unknown event with a good checksum") {
    std::string bytes;
    store::frame_record(bytes, store::encode(evs[0], 1));
    store::frame_record(bytes, R"({"seq":2,"ev":"teleport"})");
    store::frame_record(bytes, store::encode(evs[1], 3));
    write_bytes(store::segment_path(dir.path(), 1), bytes);
    collected c;
    auto rep = store::replay(dir.path(), 0, c.fn());
    REQUIRE(rep.error);
    CHECK_THAT(*rep.error, Catch::Contains("unknown event"));
  }
  SECTION("segments the snapshot covers, not yet removed, are skipped") {
    write_segment(dir.path(), {evs[0], evs[1]}, 1);
    write_segment(dir.path(), {evs[2], evs[3]}, 3);
    collected c;
    auto rep = store::replay(dir.path(), 2, c.fn());
    REQUIRE_FALSE(rep.error);
    CHECK(c.seqs == std::vector<std::uint64_t>{3, 4});
    CHECK(store::remove_segments_before(dir.path(), 3) == 1);
    CHECK(store::list_segments(dir.path()).size() == 1);
  }
}

namespace {
/// Runs the I/O side until `done` or a bound.
void run_until(asio::io_context& ioc, bool const& done) {
  auto busy = asio::make_work_guard(ioc);  // the completions come from the disk thread
  for (int i = 0; i < 2000 && !done; ++i) {
    ioc.run_for(std::chrono::milliseconds(5));
    ioc.restart();
  }
  REQUIRE(done);
}
}  // namespace

TEST_CASE("The journal writer groups appends, completes in order and replays", "[journal]") {
  scratch_dir dir;
  for (auto mode : {store::fsync_mode::always, store::fsync_mode::everysec, store::fsync_mode::no}) {
    DYNAMIC_SECTION(store::to_string(mode)) {
      asio::io_context ioc;
      std::vector<store::event> replicated;
      auto first = store::replay(dir.path(), 0, [](auto, auto const&) { return std::nullopt; });
      store::journal j(ioc, dir.path(), mode, first, 1,
                       [&](std::vector<store::event>&& evs) {
                         for (auto& e : evs) replicated.push_back(std::move(e));
                       });
      std::vector<int> order;
      const auto evs = sample_events();
      for (std::size_t i = 0; i < evs.size(); ++i)
        j.append(evs[i], [&order, i](store::event const* stored) {
          CHECK(stored);
          order.push_back(static_cast<int>(i));
        });
      bool all = false;
      j.append(store::general_seen{"bob", 8}, [&](store::event const*) { all = true; });
      run_until(ioc, all);
      CHECK(order == std::vector<int>{0, 1, 2, 3, 4, 5, 6, 7, 8});
      j.stop();
      CHECK(replicated.size() == evs.size() + 1);
      collected c;
      auto rep = store::replay(dir.path(), 0, c.fn());
      REQUIRE_FALSE(rep.error);
      CHECK(c.seqs.size() == evs.size() + 1);
    }
  }
}

TEST_CASE("Segments are preallocated with zeros, reopened after their last record, synced in "
          "parallel", "[journal]") {
  scratch_dir dir;
  asio::io_context ioc;
  auto append_all = [&](store::journal& j, int n, std::uint64_t base) {
    std::vector<std::uint64_t> order;
    bool all = false;
    // One event per round (each handler posts the next after the journal's submit): batches
    // of one, several in flight at once.
    std::function<void(int)> step = [&](int i) {
      j.append(store::general_seen{"bob", base + static_cast<std::uint64_t>(i)},
               [&, i](store::event const* stored) {
                 CHECK(stored);
                 order.push_back(static_cast<std::uint64_t>(i));
                 if (i + 1 == n) all = true;
               });
      if (i + 1 < n) asio::post(ioc, [&step, i] { step(i + 1); });
    };
    asio::post(ioc, [&step] { step(0); });
    run_until(ioc, all);
    for (std::size_t i = 0; i < order.size(); ++i) CHECK(order[i] == i);
    CHECK(order.size() == static_cast<std::size_t>(n));
  };
  {
    auto first = store::replay(dir.path(), 0, [](auto, auto const&) { return std::nullopt; });
    store::journal j(ioc, dir.path(), store::fsync_mode::always, first, 1, {});
    append_all(j, 50, 0);
    j.stop();
  }
  const auto file = store::segment_path(dir.path(), 1);
  CHECK(fs::file_size(file) == store::journal::prealloc_chunk);
  collected c;
  auto rep = store::replay(dir.path(), 0, c.fn());
  REQUIRE_FALSE(rep.error);
  CHECK_FALSE(rep.torn);
  CHECK(c.seqs.size() == 50);
  const auto used = rep.tail_valid_end;
  {
    store::journal j(ioc, dir.path(), store::fsync_mode::always, rep, rep.last_seq + 1, {});
    append_all(j, 30, 100);
    j.stop();
  }
  CHECK(fs::file_size(file) == store::journal::prealloc_chunk);  // the same zeros, reused
  collected d;
  rep = store::replay(dir.path(), 0, d.fn());
  REQUIRE_FALSE(rep.error);
  CHECK_FALSE(rep.torn);
  CHECK(d.seqs.size() == 80);
  CHECK(rep.tail_valid_end > used);
}

TEST_CASE("A write failure fails the batch and what is behind it, the journal recovers",
          "[journal]") {
  scratch_dir dir;
  const auto hook = dir.path() / "fail-now";
  ::setenv(store::journal::fail_hook_env, hook.c_str(), 1);
  asio::io_context ioc;
  auto first = store::replay(dir.path(), 0, [](auto, auto const&) { return std::nullopt; });
  store::journal j(ioc, dir.path(), store::fsync_mode::always, first, 1, {});
  ::unsetenv(store::journal::fail_hook_env);
  bool ok1 = false;
  j.append(store::general_seen{"a", 1}, [&](store::event const* s) { ok1 = s != nullptr; });
  bool done = false;
  j.append(store::general_seen{"a", 2}, [&](store::event const*) { done = true; });
  run_until(ioc, done);
  CHECK(ok1);

  write_bytes(hook, "");
  int failed = 0;
  done = false;
  for (int i = 0; i < 5; ++i)
    j.append(store::general_seen{"a", 10}, [&](store::event const* s) {
      if (!s) ++failed;
    });
  j.append(store::general_seen{"a", 11}, [&](store::event const* s) {
    if (!s) ++failed;
    done = true;
  });
  run_until(ioc, done);
  CHECK(failed == 6);

  fs::remove(hook);
  bool recovered = false;
  done = false;
  j.append(store::general_seen{"a", 20}, [&](store::event const* s) {
    recovered = s != nullptr;
    done = true;
  });
  run_until(ioc, done);
  CHECK(recovered);
  j.stop();
  // Nothing of the failed appends was kept, and the seqs stay consecutive.
  std::vector<std::uint64_t> seen_values;
  auto rep = store::replay(dir.path(), 0, [&](std::uint64_t, store::event const& e) {
    seen_values.push_back(std::get<store::general_seen>(e).general);
    return std::optional<std::string>();
  });
  REQUIRE_FALSE(rep.error);
  CHECK(seen_values == std::vector<std::uint64_t>{1, 2, 20});
}

TEST_CASE("Applying the same events gives the same state, apply validates again", "[journal]") {
  hub a{hub_limits{}}, b{hub_limits{}};
  const auto evs = sample_events();
  for (auto const& e : evs) {
    auto ra = a.apply(e), rb = b.apply(e);
    CHECK(ra.status == rb.status);
    CHECK(ra.ok());
  }
  CHECK(a.find_account("bob")->queued.empty());
  CHECK(a.find_account("bob")->general_seen == 7);
  CHECK(a.last_id() == 2);
  // A name taken by an earlier event: refused, nothing changed.
  CHECK(a.apply(store::account_registered{"ALICE", "x"}).status == jim::proto::code::conflict);
  CHECK(a.find_account("alice")->password_hash == "pbkdf2-sha256$1$salt$hash");
  // The id comes from the log's order, not from the event (two cluster nodes propose from the
  // same last id): the next one, whatever the proposer wrote.
  auto late = a.apply(store::message_posted{{9, 1, "Alice", "#Den", "x"}, false});
  REQUIRE(late.message);
  CHECK(late.message->m.id == 3);
  auto zero = a.apply(store::message_posted{{0, 1, "Alice", "bob", "y"}, false});
  REQUIRE(zero.message);
  CHECK(zero.message->m.id == 4);
  CHECK(a.last_id() == 4);
  // A message to a room that does not exist is an integrity error.
  CHECK(a.apply(store::message_posted{{0, 1, "Alice", "#Nowhere", "x"}, false}).status ==
        jim::proto::code::internal_error);
}

TEST_CASE("Read markers and kept invitations survive encode and decode and apply alike",
          "[journal]") {
  std::uint64_t seq = 1;
  for (auto const& e : marker_events()) {
    const std::string payload = store::encode(e, seq);
    auto d = store::decode(payload);
    CHECK(d.e.index() == e.index());
    CHECK(store::encode(d.e, seq) == payload);
    ++seq;
  }
  CHECK_THROWS_WITH(store::decode("{\"seq\":1,\"ev\":\"read\",\"account\":\"a\",\"id\":1}"),
                    Catch::Contains("missing field"));
  CHECK_THROWS_WITH(store::decode("{\"seq\":1,\"ev\":\"read\",\"account\":\"a\",\"room\":"
                                  "\"#r\",\"with\":\"b\",\"id\":1}"),
                    Catch::Contains("unknown field"));

  hub a{hub_limits{}}, b{hub_limits{}};
  for (auto const& e : marker_events()) {
    auto ra = a.apply(e), rb = b.apply(e);
    CHECK(ra.status == rb.status);
    CHECK(ra.ok());
  }
  auto const& marks = a.find_account("bob")->read;
  CHECK(marks.at("#den") == 1);  // never backwards
  CHECK(marks.at("alice") == 2);
  CHECK(marks == b.find_account("bob")->read);
  CHECK(a.find_account("bob")->invitations.empty());  // one kept per room, then handed over
  // A membership's unread count starts at the last id applied when it began.
  CHECK(a.find_room("den")->since.at("bob") == 0);
  CHECK(a.find_account("bob")->general_since == 0);
  CHECK(a.apply(store::read_marked{"Alice", "#nowhere", "", 1}).status ==
        jim::proto::code::not_found);
  CHECK(a.apply(store::read_marked{"Alice", "", "ghost", 1}).status == jim::proto::code::not_found);
}
