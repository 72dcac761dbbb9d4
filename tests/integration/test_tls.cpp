// TLS on both ports (issue 14): a throwaway CA made with the openssl CLI, TLS and plaintext on
// the same ports, --tls-required, verification failures, the handshake deadline, SIGHUP reload.

#include "harness.hpp"
#include "tls_support.hpp"

#include <boost/asio/ssl/error.hpp>

#include <catch2/catch.hpp>

#include <csignal>
#include <filesystem>
#include <fstream>
#include <thread>

using namespace jim::test;
namespace asio = boost::asio;
namespace fs = std::filesystem;
using tcp = asio::ip::tcp;

namespace {

std::vector<std::string> tls_args(test_ca::issued const& cert, std::uint16_t http_port) {
  return {"--tls-cert", cert.cert.string(), "--tls-key", cert.key.string(), "--http-port",
          std::to_string(http_port)};
}

/// A TLS client of the JIM port that verified the server against `ca`.
std::unique_ptr<tls_client> tls_connect(std::uint16_t port, test_ca const& ca) {
  auto c = std::make_unique<tls_client>(port, tls_verify{ca.ca_file(), "localhost"});
  const auto ec = c->handshake();
  INFO("handshake: " << ec.message());
  REQUIRE(!ec);
  return c;
}

/// Waits (bounded) until the daemon's output contains `text`.
bool output_shows(jimd_process const& d, std::string const& text,
                  std::chrono::milliseconds bound = 5s) {
  const auto until = std::chrono::steady_clock::now() + bound;
  while (std::chrono::steady_clock::now() < until) {
    if (d.output().find(text) != std::string::npos) return true;
    std::this_thread::sleep_for(20ms);
  }
  return false;
}

}  // namespace

TEST_CASE("TLS and plaintext share the JIM port and the HTTP port", "[tls]") {
  test_ca ca;
  const auto cert = ca.server_cert("server", 1001);
  const auto http_port = free_port();
  jimd_process d(tls_args(cert, http_port));

  auto alice = tls_connect(d.port(), ca);
  CHECK((alice->protocol() == "TLSv1.3" || alice->protocol() == "TLSv1.2"));
  CHECK(alice->peer_serial() == "1001");
  auto r = alice->request(R"({"action":"register","user":{"account_name":"alice","password":"pw"}})");
  CHECK(code_of(r) == 201);

  // Plaintext on the same port, as before.
  auto bob = sign_up(d.port(), "bob");
  drain_history(bob, 0);
  r = alice->request(R"({"action":"msg","to":"#general","message":"over TLS"})");
  CHECK(code_of(r) == 200);
  auto push = bob.push();
  CHECK(push.at("message") == "over TLS");
  bob.send(R"({"action":"msg","to":"#general","message":"in clear"})");
  CHECK(code_of(bob.reply()) == 200);
  json::object got;
  for (int i = 0; i < 100; ++i) {
    got = alice->recv();
    if (got.contains("action") && got.at("action") == "msg") break;
  }
  CHECK(got.at("message") == "in clear");

  // A burst of frames arrives whole (writes coalesced into TLS records).
  std::string burst;
  for (int i = 0; i < 200; ++i)
    burst += R"({"action":"rooms","tag":)" + std::to_string(i) + "}\n";
  alice->send_raw(burst);
  for (int i = 0; i < 200; ++i) {
    auto rr = alice->reply();
    REQUIRE(rr.at("tag").as_int64() == i);
  }

  // quit: the reply, then close_notify.
  r = alice->request(R"({"action":"quit"})");
  CHECK(code_of(r) == 200);
  CHECK(alice->closed());

  // The HTTP port: the web client over https, its socket over wss, plaintext HTTP still.
  const tls_verify v{ca.ca_file(), "localhost"};
  auto page = https_get(http_port, "/", v);
  CHECK(page.status == 200);
  CHECK(page.body.find("<html") != std::string::npos);
  CHECK(http_get(http_port, "/").status == 200);
  wss_client web(http_port, v);
  r = web.request(R"({"action":"authenticate","user":{"account_name":"alice","password":"pw"}})");
  CHECK(code_of(r) == 200);
  r = web.request(R"({"action":"rooms"})");
  CHECK(code_of(r) == 200);
  CHECK(d.stop() == 0);
}

TEST_CASE("With --tls-required plaintext is refused on both ports", "[tls]") {
  test_ca ca;
  const auto cert = ca.server_cert("server", 7);
  const auto http_port = free_port();
  auto args = tls_args(cert, http_port);
  args.push_back("--tls-required");
  jimd_process d(args);

  client plain(d.port());
  plain.send(R"({"action":"presence","user":{"account_name":"eve"}})");
  auto r = plain.recv();
  CHECK(code_of(r) == 403);
  CHECK(std::string(r.at("error").as_string()).find("TLS required") != std::string::npos);
  CHECK(plain.closed_within(5s));

  auto res = http_get(http_port, "/");
  CHECK(res.status == 403);
  CHECK(res.body.find("TLS required") != std::string::npos);

  auto c = tls_connect(d.port(), ca);
  CHECK(code_of(c->request(
            R"({"action":"register","user":{"account_name":"carol","password":"pw"}})")) == 201);
  const tls_verify v{ca.ca_file(), "localhost"};
  CHECK(https_get(http_port, "/", v).status == 200);
  wss_client web(http_port, v);
  CHECK(code_of(web.request(R"({"action":"rooms"})")) == 401);
}

TEST_CASE("TLS clients verify the server: another CA or another name is refused", "[tls]") {
  test_ca ca;
  test_ca other("another CA");
  const auto cert = ca.server_cert("server", 42, "chat.example.org", false);
  jimd_process d(tls_args(cert, free_port()));

  {
    tls_client c(d.port(), tls_verify{other.ca_file(), "chat.example.org"});
    const auto ec = c.handshake();
    INFO(ec.message());
    CHECK(ec);  // certificate verify failed: unknown CA
  }
  {
    tls_client c(d.port(), tls_verify{ca.ca_file(), "localhost"});
    const auto ec = c.handshake();
    INFO(ec.message());
    CHECK(ec);  // the certificate names chat.example.org
  }
  {
    tls_client c(d.port(), tls_verify{ca.ca_file(), "chat.example.org"});
    CHECK(!c.handshake());
    CHECK(code_of(c.request(R"({"action":"rooms"})")) == 401);
  }
  {
    // TLS 1.1 is not offered by the server.
    tls_client c(d.port(), tls_verify{});
    SSL_set_max_proto_version(c.stream().native_handle(), TLS1_1_VERSION);
    SSL_set_security_level(c.stream().native_handle(), 0);
    CHECK(c.handshake());
  }
}

TEST_CASE("A TLS handshake that stalls is closed after 10 s and counts toward max-clients",
          "[tls][slow]") {
  test_ca ca;
  const auto cert = ca.server_cert("server", 3);
  auto args = tls_args(cert, free_port());
  args.insert(args.end(), {"--max-clients", "1"});
  jimd_process d(args);

  client staller(d.port());
  const auto start = std::chrono::steady_clock::now();
  staller.send_raw(std::string("\x16\x03\x01\x00\xc8\x01", 6));  // a ClientHello's first bytes
  // While it is in its handshake, the server is full.
  client second(d.port());
  auto r = second.recv();
  CHECK(code_of(r) == 503);
  CHECK(staller.closed_within(13s));
  const auto waited = std::chrono::steady_clock::now() - start;
  CHECK(waited >= 9s);
  CHECK(waited <= 12s);
  // The slot is free again.
  auto c = tls_connect(d.port(), ca);
  CHECK(code_of(c->request(R"({"action":"rooms"})")) == 401);
}

TEST_CASE("SIGHUP reloads the certificate for new connections, a bad file keeps the old one",
          "[tls]") {
  test_ca ca;
  const auto first = ca.server_cert("first", 1001);
  const auto second = ca.server_cert("second", 2002);
  temp_dir live;
  const auto cert_file = live.path() / "cert.pem";
  const auto key_file = live.path() / "key.pem";
  fs::copy_file(first.cert, cert_file);
  fs::copy_file(first.key, key_file);
  const auto http_port = free_port();
  jimd_process d({"--tls-cert", cert_file.string(), "--tls-key", key_file.string(),
                  "--http-port", std::to_string(http_port), "--log-level", "info"});

  auto old_conn = tls_connect(d.port(), ca);
  CHECK(old_conn->peer_serial() == "1001");
  CHECK(code_of(old_conn->request(
            R"({"action":"register","user":{"account_name":"olga","password":"pw"}})")) == 201);

  fs::copy_file(second.cert, cert_file, fs::copy_options::overwrite_existing);
  fs::copy_file(second.key, key_file, fs::copy_options::overwrite_existing);
  REQUIRE(::kill(d.pid(), SIGHUP) == 0);
  REQUIRE(output_shows(d, "TLS certificate reloaded"));
  CHECK(tls_connect(d.port(), ca)->peer_serial() == "2002");
  // The open connection is untouched.
  CHECK(code_of(old_conn->request(R"({"action":"rooms"})")) == 200);
  CHECK(old_conn->peer_serial() == "1001");

  // A certificate file that does not load: the previous certificate stays.
  { std::ofstream(cert_file, std::ios::trunc) << "not a certificate\n"; }
  REQUIRE(::kill(d.pid(), SIGHUP) == 0);
  REQUIRE(output_shows(d, "NOT reloaded"));
  CHECK(d.output().find(cert_file.string()) != std::string::npos);  // the log names the file
  CHECK(tls_connect(d.port(), ca)->peer_serial() == "2002");
  const tls_verify v{ca.ca_file(), "localhost"};
  CHECK(https_get(http_port, "/", v).status == 200);
  CHECK(code_of(old_conn->request(R"({"action":"rooms"})")) == 200);
  CHECK(d.stop() == 0);
}

TEST_CASE("jimd refuses to start with a certificate that does not load", "[tls]") {
  test_ca ca;
  const auto cert = ca.server_cert("server", 5);
  temp_dir dir;
  const auto bad = dir.path() / "bad.pem";
  { std::ofstream(bad) << "garbage\n"; }
  CHECK_THROWS(jimd_process({"--tls-cert", bad.string(), "--tls-key", cert.key.string()}));
}
