// What jim keeps between runs: the token files (names, modes, atomic replacement).
#include "state.hpp"

#include <catch2/catch.hpp>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <stdlib.h>
#include <sys/stat.h>

using namespace jim::client;
namespace fs = std::filesystem;

namespace {

/// A fresh directory under the system temp dir, removed at the end.
struct scratch {
  fs::path dir;
  scratch() {
    std::string tmpl = (fs::temp_directory_path() / "jim-state-XXXXXX").string();
    REQUIRE(mkdtemp(tmpl.data()));
    dir = tmpl;
  }
  ~scratch() {
    std::error_code ec;
    fs::remove_all(dir, ec);
  }
};

fs::perms mode_of(fs::path const& p) { return fs::status(p).permissions() & fs::perms::all; }

}  // namespace

TEST_CASE("Token files are named by account and server", "[client][state-dir]") {
  CHECK(token_file_name("127.0.0.1", "7777", "Alice") == "alice@127.0.0.1:7777");
  CHECK(token_file_name("chat.example.org", "7777", "bob.b") == "bob.b@chat.example.org:7777");
  CHECK(token_file_name("::1", "7777", "bob") == "bob@::1:7777");
  CHECK(token_file_name("a/b c", "1", "x") == "x@a%2Fb%20c:1");
}

TEST_CASE("The state dir follows XDG_STATE_HOME, else HOME", "[client][state-dir]") {
  char const* old_xdg = std::getenv("XDG_STATE_HOME");
  char const* old_home = std::getenv("HOME");
  const std::string saved_xdg = old_xdg ? old_xdg : "";
  const std::string saved_home = old_home ? old_home : "";
  setenv("XDG_STATE_HOME", "/tmp/xdg", 1);
  setenv("HOME", "/home/someone", 1);
  CHECK(state_dir() == fs::path("/tmp/xdg/jim"));
  setenv("XDG_STATE_HOME", "relative", 1);  // invalid per the specification: ignored
  CHECK(state_dir() == fs::path("/home/someone/.local/state/jim"));
  unsetenv("XDG_STATE_HOME");
  CHECK(state_dir() == fs::path("/home/someone/.local/state/jim"));
  unsetenv("HOME");
  CHECK(state_dir().empty());
  if (old_xdg) setenv("XDG_STATE_HOME", saved_xdg.c_str(), 1);
  if (old_home) setenv("HOME", saved_home.c_str(), 1);
}

TEST_CASE("A token is saved private, loaded, replaced and forgotten", "[client][state-dir]") {
  scratch s;
  const auto dir = s.dir / "state" / "jim";
  token_store store(dir, "127.0.0.1", "7777", "Alice");
  CHECK(!store.load());
  const mode_t old_mask = ::umask(0);  // even a careless umask gives private files
  CHECK(store.save("abc_DEF-123").empty());
  ::umask(old_mask);
  CHECK(store.file() == dir / "tokens" / "alice@127.0.0.1:7777");
  CHECK(mode_of(store.file()) == (fs::perms::owner_read | fs::perms::owner_write));
  CHECK(mode_of(dir) == fs::perms::owner_all);
  CHECK(mode_of(dir / "tokens") == fs::perms::owner_all);
  CHECK(store.load() == "abc_DEF-123");
  // Another account, another file; the same account in other case, the same file.
  CHECK(!token_store(dir, "127.0.0.1", "7777", "bob").load());
  CHECK(token_store(dir, "127.0.0.1", "7777", "ALICE").load() == "abc_DEF-123");
  CHECK(!token_store(dir, "127.0.0.1", "7778", "alice").load());
  CHECK(store.save("second").empty());
  CHECK(store.load() == "second");
  std::size_t files = 0;
  for ([[maybe_unused]] auto const& e : fs::directory_iterator(dir / "tokens")) ++files;
  CHECK(files == 1);  // no temporary file left behind
  store.forget();
  CHECK(!fs::exists(store.file()));
  CHECK(!store.load());
  store.forget();  // twice is fine
}

TEST_CASE("A damaged token file does not count", "[client][state-dir]") {
  scratch s;
  token_store store(s.dir, "h", "1", "a");
  REQUIRE(store.save("x").empty());
  { std::ofstream(store.file()) << "has a space\n"; }
  CHECK(!store.load());
  { std::ofstream(store.file()) << "\n"; }
  CHECK(!store.load());
}

TEST_CASE("A store without a directory keeps nothing", "[client][state-dir]") {
  token_store store({}, "h", "1", "a");
  CHECK(store.save("x").empty());
  CHECK(!store.load());
  CHECK(store.file().empty());
}

TEST_CASE("An unwritable state dir is told, not fatal", "[client][state-dir]") {
  scratch s;
  { std::ofstream(s.dir / "file") << "x"; }
  token_store store(s.dir / "file" / "jim", "h", "1", "a");  // a file where a directory should be
  CHECK(!store.save("x").empty());
  CHECK(!store.load());
}
