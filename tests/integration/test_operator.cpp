// Integration tests of what the operator reads: the console and the log files of the real
// jimd (escaped user text, file modes, --log-messages, plain error texts) and the option
// defaults that adapt to the options given.

#include "chat_helpers.hpp"
#include "files.hpp"
#include "harness.hpp"
#include "tls_support.hpp"

#include <catch2/catch.hpp>

#include <arpa/inet.h>
#include <cstdio>
#include <filesystem>
#include <netinet/in.h>
#include <regex>
#include <stdexcept>
#include <string>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>
#include <vector>

using namespace jim::test;
namespace fs = std::filesystem;

namespace {

/// A TCP socket listening on 127.0.0.1 at an ephemeral port (the port is busy while it lives).
class busy_port {
 public:
  busy_port() {
    fd_ = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    socklen_t len = sizeof a;
    if (fd_ < 0 || bind(fd_, reinterpret_cast<sockaddr*>(&a), sizeof a) != 0 ||
        listen(fd_, 1) != 0 || getsockname(fd_, reinterpret_cast<sockaddr*>(&a), &len) != 0)
      throw std::runtime_error("cannot make a listener");
    port_ = ntohs(a.sin_port);
  }
  ~busy_port() { ::close(fd_); }
  busy_port(busy_port const&) = delete;
  busy_port& operator=(busy_port const&) = delete;
  std::uint16_t port() const { return port_; }

 private:
  int fd_ = -1;
  std::uint16_t port_ = 0;
};

/// What jimd printed when it refused to start with `args` (its constructor throws then).
std::string start_failure(std::vector<std::string> args) {
  try {
    jimd_process d(std::move(args));
  } catch (std::runtime_error const& e) {
    return e.what();
  }
  FAIL("jimd started");
  return {};
}

/// Every log file in the daemon's --log-dir, concatenated; checks each one's mode.
std::string log_files(jimd_process const& d) {
  std::string all;
  int files = 0;
  for (auto const& e : fs::directory_iterator(d.data_dir() / "logs")) {
    if (!e.is_regular_file()) continue;
    ++files;
    struct stat st {};
    REQUIRE(stat(e.path().c_str(), &st) == 0);
    INFO(e.path() << " mode " << std::oct << (st.st_mode & 07777));
    CHECK((st.st_mode & 0137) == 0);  // 0640 or tighter: nothing for others, no execute
    all += read_bytes(e.path());
  }
  CHECK(files >= 1);
  return all;
}

/// No byte that a terminal would act on: C0 controls other than the line ends, DEL, C1 (as
/// UTF-8: C2 80..C2 9F), bidi controls (E2 80 AA..AE, E2 81 A6..A9).
void check_harmless(std::string const& text) {
  for (std::size_t i = 0; i < text.size(); ++i) {
    const auto b = static_cast<unsigned char>(text[i]);
    INFO("byte " << i << ": " << int(b) << " in ..." << text.substr(i > 40 ? i - 40 : 0, 80));
    CHECK((b >= 0x20 || b == '\n'));
    CHECK(b != 0x7f);
    if (b == 0xc2 && i + 1 < text.size())
      CHECK_FALSE((static_cast<unsigned char>(text[i + 1]) >= 0x80 &&
                   static_cast<unsigned char>(text[i + 1]) <= 0x9f));
    if (b == 0xe2 && i + 2 < text.size()) {
      const auto b1 = static_cast<unsigned char>(text[i + 1]);
      const auto b2 = static_cast<unsigned char>(text[i + 2]);
      CHECK_FALSE((b1 == 0x80 && b2 >= 0xaa && b2 <= 0xae));
      CHECK_FALSE((b1 == 0x81 && b2 >= 0xa6 && b2 <= 0xa9));
    }
  }
}

const std::string forged =
    "2026-01-01 00:00:00.000 info hub register_account account root registered";

/// `jimd --check-config ARGS`: its exit status and everything it printed (bounded: 20 s).
std::pair<int, std::string> check_config(std::string const& args) {
  const std::string cmd =
      "timeout 20 '" + program("jimd").string() + "' --check-config " + args + " 2>&1 </dev/null";
  std::string out;
  FILE* p = ::popen(cmd.c_str(), "r");
  REQUIRE(p);
  char buf[4096];
  std::size_t got;
  while ((got = std::fread(buf, 1, sizeof buf, p)) > 0) out.append(buf, got);
  const int status = ::pclose(p);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, out};
}

}  // namespace

TEST_CASE("User text reaches the console and the log files escaped, log files are 0640",
          "[integration][operator]") {
  jimd_process d({"--log-level", "info"});
  auto alice = sign_up(d.port(), "alice");
  CHECK(code_of(say(alice, "Hello, World!")) == 200);
  CHECK(code_of(say(alice, "\x1b[2J\x1b[31mred\nFAKE " + forged)) == 200);
  CHECK(code_of(say(alice, "abc\u202Efed\u2066 \u0085\u009b2J tab\there")) == 200);
  // A request that fails quotes its input back and may be logged: send a few.
  alice.send_raw("{\"action\":\"msg\",\"to\":\"#\\u001b[2J\",\"message\":\"x\"}\n");
  alice.reply();
  alice.send_raw(std::string("\x1b[2J\n"));
  alice.reply();
  alice.close();
  REQUIRE(d.stop() == 0);

  const auto console = d.output();
  const auto files = log_files(d);
  for (auto const* text : {&console, &files}) {
    check_harmless(*text);
    // The newline in the message did not start a line of its own.
    CHECK(text->find("\nFAKE") == std::string::npos);
    CHECK(text->find("\n" + forged) == std::string::npos);
    CHECK(text->find("\\x1b[2J\\x1b[31mred\\nFAKE") != std::string::npos);
    CHECK(text->find("abc\\u202efed\\u2066 \\u0085\\u009b2J tab\\there") != std::string::npos);
  }
  // Ordinary text is shown exactly as it was, as a line of its own on the console.
  CHECK(std::regex_search(console, std::regex("(^|\n)alice \\(\\d\\d:\\d\\d\\): Hello, World!\n")));
  CHECK(std::regex_search(files, std::regex(" alice \\(\\d\\d:\\d\\d\\): Hello, World!\n")));
}

TEST_CASE("Private texts are logged only with --log-messages all", "[integration][operator]") {
  std::string mode;
  SECTION("default (rooms)") {}
  SECTION("rooms") {
    mode = "rooms";
  }
  SECTION("none") {
    mode = "none";
  }
  SECTION("all") {
    mode = "all";
  }
  std::vector<std::string> args{"--log-level", "info"};
  if (!mode.empty()) args.insert(args.end(), {"--log-messages", mode});
  jimd_process d(args);
  auto [alice, bob] = sign_up_all(d.port(), "alice", "bob");
  CHECK(code_of(say(alice, "secret for bob 8125", "bob")) == 200);
  CHECK(code_of(say(alice, "public room text 3391")) == 200);
  barrier(bob);
  alice.close();
  bob.close();
  REQUIRE(d.stop() == 0);

  const auto console = d.output();
  const auto files = log_files(d);
  const bool private_logged = mode == "all";
  const bool room_logged = mode != "none";
  CHECK((console.find("secret for bob 8125") != std::string::npos) == private_logged);
  CHECK((files.find("secret for bob 8125") != std::string::npos) == private_logged);
  CHECK((console.find("public room text 3391") != std::string::npos) == room_logged);
  CHECK((files.find("public room text 3391") != std::string::npos) == room_logged);
  // The rest of the log is there whatever the mode.
  CHECK(files.find("alice signed in") != std::string::npos);
}

TEST_CASE("A busy port: a plain error naming the port that failed, no internals",
          "[integration][operator]") {
  busy_port taken;
  const auto port = std::to_string(taken.port());
  std::string out;
  std::string option;
  SECTION("the chat port") {
    out = start_failure({"--port", port});
    option = "--port";
  }
  SECTION("only the HTTP port (the chat port is free)") {
    out = start_failure({"--http-port", port});
    option = "--http-port";
    CHECK(out.find("web client") != std::string::npos);
  }
  INFO(out);
  CHECK(out.find("/usr/include") == std::string::npos);
  CHECK(out.find("boost::") == std::string::npos);
  CHECK(out.find("[system:") == std::string::npos);
  CHECK(out.find("port " + port + " (" + option + ")") != std::string::npos);
  CHECK(out.find("already in use") != std::string::npos);
}

TEST_CASE("The start-up log: counts in the right number, the web client as a link",
          "[integration][operator]") {
  const auto http = std::to_string(free_port());
  jimd_process d({"--log-level", "info", "--http-port", http});
  sign_up(d.port(), "alice").close();
  REQUIRE(d.stop() == 0);
  const auto first = d.output();
  CHECK(first.find("(0 accounts, 1 room)") != std::string::npos);
  CHECK(first.find("http://127.0.0.1:" + http + "/") != std::string::npos);
  CHECK(first.find(" rooms)") == std::string::npos);

  jimd_process again({"--log-level", "info"}, d.data_dir());
  // A round trip first: the port file is written before the signal handler is in place.
  sign_in(again.port(), "alice").close();
  INFO(again.output());
  REQUIRE(again.stop() == 0);
  CHECK(again.output().find("(1 account, 1 room)") != std::string::npos);
}

TEST_CASE("/invite in #general says that everyone is already there", "[integration][operator]") {
  jimd_process d;
  auto alice = sign_up(d.port(), "alice");
  sign_up(d.port(), "bob").close();
  auto r = ask(alice, json::object{{"action", "invite"}, {"room", "#general"}, {"user", "bob"}});
  CHECK(code_of(r) == 403);
  CHECK(str(r, "error").find("already") != std::string::npos);
  CHECK(str(r, "error").find("owner") == std::string::npos);
  r = ask(alice, json::object{{"action", "invite"}, {"user", "bob"}});  // current room: #general
  CHECK(str(r, "error").find("already") != std::string::npos);
}

TEST_CASE("jimd starts with one option of a dependent pair set, and refuses two that clash",
          "[integration][operator]") {
  SECTION("--max-frame 1024 alone") {
    jimd_process d({"--max-frame", "1024"});
    auto alice = sign_up(d.port(), "alice");
    CHECK(code_of(say(alice, std::string(900, 'a'))) == 200);
  }
  SECTION("--history-limit 2 alone") {
    jimd_process d({"--history-limit", "2"});
  }
  SECTION("--max-frame 1024 --max-message 2048") {
    const auto out = start_failure({"--max-frame", "1024", "--max-message", "2048"});
    INFO(out);
    CHECK(out.find("--max-message (2048)") != std::string::npos);
    CHECK(out.find("--max-frame (1024)") != std::string::npos);
  }
}

TEST_CASE("TLS files that do not load: one plain line naming the file, its option and why",
          "[integration][operator]") {
  test_ca ca;
  const auto good = ca.server_cert("good", 1);
  const auto other = ca.server_cert("other", 2);
  const fs::path dir = ca.dir();
  write_bytes(dir / "not-pem.pem", "hello\n");
  run_shell("openssl pkey -in '" + good.key.string() + "' -aes256 -passout pass:secret -out '" +
            (dir / "locked.key").string() + "' 2>/dev/null");
  struct bad_case {
    fs::path cert, key;
    std::string says;
  };
  const std::string missing = (dir / "missing.pem").string();
  for (auto const& [cert, key, says] : std::vector<bad_case>{
           {missing, good.key,
            "cannot read the certificate file " + missing + " (--tls-cert): No such file or directory"},
           {good.cert, dir,
            "cannot read the private key file " + dir.string() + " (--tls-key): Is a directory"},
           {dir / "not-pem.pem", good.key,
            (dir / "not-pem.pem").string() + " (--tls-cert) holds no PEM certificate"},
           {good.cert, dir / "not-pem.pem",
            (dir / "not-pem.pem").string() + " (--tls-key) holds no PEM private key"},
           {good.cert, dir / "locked.key",
            (dir / "locked.key").string() + " (--tls-key) is protected by a passphrase"},
           {good.cert, other.key,
            "the private key in " + other.key.string() +
                " (--tls-key) is not the key of the certificate in " + good.cert.string() +
                " (--tls-cert)"}}) {
    CAPTURE(cert, key);
    const std::string start = start_failure({"--tls-cert", cert.string(), "--tls-key", key.string()});
    CHECK(start.find(says) != std::string::npos);
    auto [code, out] = check_config("--tls-cert '" + cert.string() + "' --tls-key '" + key.string() + "'");
    CHECK(code == 2);
    CHECK(out.rfind("jimd: ", 0) == 0);
    CHECK(out.find(says) != std::string::npos);
    CHECK(std::count(out.begin(), out.end(), '\n') == 1);
    for (char const* internal : {"routines", "error:", "OpenSSL", "SSL_CTX"}) {
      CHECK(start.find(internal) == std::string::npos);
      CHECK(out.find(internal) == std::string::npos);
    }
  }
  auto [code, out] = check_config("--tls-cert '" + good.cert.string() + "' --tls-key '" +
                                  good.key.string() + "'");
  CHECK(code == 0);
  CHECK(out == "OK\n");
}

TEST_CASE("A config file error at start and under --check-config: FILE:LINE: and the option",
          "[integration][operator]") {
  temp_dir dir;
  const fs::path conf = dir.path() / "jimd.conf";
  write_bytes(conf, "# jimd\nmax-clients = 10\n\nfsync = sometimes\n");
  const std::string start = start_failure({"-c", conf.string()});
  CHECK(start.find(conf.string() + ":4: ") != std::string::npos);
  CHECK(start.find("--fsync") != std::string::npos);
  auto [code, out] = check_config("-c '" + conf.string() + "'");
  CHECK(code == 2);
  CHECK(out.rfind("jimd: " + conf.string() + ":4: ", 0) == 0);
  write_bytes(conf, "max-clients = 10\nmax-clinets = 11\n");
  std::tie(code, out) = check_config("-c '" + conf.string() + "'");
  CHECK(code == 2);
  CHECK(out.rfind("jimd: " + conf.string() + ":2: unknown option 'max-clinets'", 0) == 0);
  std::tie(code, out) = check_config("-c '" + (dir.path() / "none.conf").string() + "'");
  CHECK(code == 2);
  CHECK(out == "jimd: cannot read the config file " + (dir.path() / "none.conf").string() +
                   ": No such file or directory\n");
}
