#pragma once
/// \file
/// Test support for TLS: a throwaway CA and server certificates made with the `openssl` CLI in
/// a temporary directory, and blocking TLS clients (Asio SSL) for the JIM port and for
/// WebSocket/HTTPS on the HTTP port. Every blocking read and write gives up after 5 s.

#include "harness.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/context.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/beast/core/tcp_stream.hpp>
#include <boost/beast/websocket/stream.hpp>
#include <boost/json.hpp>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

namespace jim::test {

/// A certificate authority and the certificates it signs, in a temp dir (ECDSA P-256 keys).
class test_ca {
 public:
  /// Makes the CA ("CN=<name>"). Throws std::runtime_error when `openssl` fails.
  explicit test_ca(std::string name = "jimd test CA");
  std::filesystem::path const& dir() const { return dir_.path(); }
  /// The CA certificate (what a client trusts).
  std::filesystem::path ca_file() const { return dir() / "ca.pem"; }

  struct issued {
    std::filesystem::path cert;  ///< PEM: the certificate, then the CA (a chain)
    std::filesystem::path key;   ///< PEM private key
  };
  /// A server certificate for `host` (CN and DNS SAN; IP SAN 127.0.0.1 too when `with_ip`),
  /// serial `serial`, valid two days, files named `<stem>.pem` and `<stem>.key`.
  issued server_cert(std::string const& stem, long serial, std::string const& host = "localhost",
                     bool with_ip = true) const;

 private:
  temp_dir dir_;
};

/// Runs `command` with /bin/sh; throws std::runtime_error naming it if it fails.
void run_shell(std::string const& command);

/// What a TLS client checks.
struct tls_verify {
  std::filesystem::path ca_file;  ///< trusted CA; empty: no verification at all
  std::string host = "localhost";  ///< name checked against the certificate (and sent as SNI)
};

/// A blocking TLS client for the JIM port (newline-delimited frames).
class tls_client {
 public:
  /// Connects to 127.0.0.1:`port` (no handshake yet).
  tls_client(std::uint16_t port, tls_verify verify);
  ~tls_client();
  tls_client(tls_client const&) = delete;
  tls_client& operator=(tls_client const&) = delete;

  /// The TLS handshake; returns its error (empty on success).
  boost::system::error_code handshake();
  /// Sends bytes as they are (after the handshake).
  void send_raw(std::string_view bytes);
  /// Parses `json_text` and sends it as a line.
  void send(std::string_view json_text);
  /// The next frame; throws on timeout (5 s) or end of stream.
  json::object recv();
  /// The next reply (frames with "response"), skipping pushes.
  json::object reply();
  /// Sends a request and returns its reply.
  json::object request(std::string_view json_text);
  /// True when the server ends the stream within about 5 s (frames before are discarded).
  bool closed();
  /// The serial number of the server's certificate, as a decimal string.
  std::string peer_serial();
  /// The negotiated protocol ("TLSv1.3", ...).
  std::string protocol();
  boost::asio::ssl::stream<boost::asio::ip::tcp::socket>& stream() { return stream_; }

 private:
  boost::asio::io_context io_;
  boost::asio::ssl::context ctx_;
  boost::asio::ssl::stream<boost::asio::ip::tcp::socket> stream_;
  std::string buffer_;
};

/// A blocking WebSocket client over TLS (wss://) for the HTTP port.
class wss_client {
 public:
  /// Connects, handshakes TLS (throws boost::system::system_error on failure), upgrades /chat.
  wss_client(std::uint16_t port, tls_verify verify);
  ~wss_client();
  json::object request(std::string_view json_text);

 private:
  boost::asio::io_context io_;
  boost::asio::ssl::context ctx_;
  boost::beast::websocket::stream<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>> ws_;
};

/// One HTTP/1.1 GET over TLS (`tls` given) or plaintext; returns the status and body.
struct http_result {
  unsigned status = 0;
  std::string body;
};
http_result https_get(std::uint16_t port, std::string const& target, tls_verify verify);
http_result http_get(std::uint16_t port, std::string const& target);

/// Sets 5 s receive and send timeouts on a blocking socket.
void bound_io(boost::asio::ip::tcp::socket& s, std::chrono::seconds bound = std::chrono::seconds(5));

}  // namespace jim::test
