#pragma once
/// \file
/// TLS for both listeners (Boost.Asio SSL over OpenSSL 3): the server context built from a PEM
/// certificate chain and key (TLS 1.2 and 1.3 only, Mozilla "intermediate" ciphers), its live
/// replacement on SIGHUP, and what a listener needs to tell TLS from plaintext.

#include <boost/asio/ssl/context.hpp>

#include <chrono>
#include <memory>
#include <optional>
#include <string>

namespace jim::server::net {

/// A TLS handshake (counted from its first byte) that has not finished after this is closed.
inline constexpr std::chrono::seconds handshake_timeout{10};
/// Bound on sending close_notify (and waiting for the peer's) when a TLS connection ends.
inline constexpr std::chrono::seconds shutdown_timeout{2};

/// Builds a server context from `cert_file` (PEM: the certificate, then its chain) and
/// `key_file` (PEM private key matching it, without a passphrase). Throws std::runtime_error
/// with one line in plain words naming the file and its option (--tls-cert, --tls-key) when
/// either cannot be read (the errno text), holds no PEM block of its kind, has a passphrase,
/// or they do not belong together; OpenSSL's reason for anything else.
std::shared_ptr<boost::asio::ssl::context> make_server_context(std::string const& cert_file,
                                                               std::string const& key_file);

/// One line about the certificate in use: "CN=host, serial 0x1A2B, valid until <date>".
std::string describe_certificate(boost::asio::ssl::context& ctx);

/// The listeners' TLS settings and the context new connections get.
///
/// @par Thread Safety
/// I/O thread only (context() and reload() are called there: SIGHUP is handled in the loop).
class tls_manager {
 public:
  /// Loads the files at once; throws std::runtime_error (see make_server_context).
  tls_manager(std::string cert_file, std::string key_file, bool required);

  /// The context for a new connection. Each connection keeps the shared_ptr it was given, so
  /// a reload never touches open connections.
  std::shared_ptr<boost::asio::ssl::context> context() const { return ctx_; }
  /// Whether plaintext connections are refused (--tls-required).
  bool required() const { return required_; }

  /// Loads the files again. On success new connections get the new context and the result
  /// is empty; on failure the previous context stays in use and the result says why.
  std::optional<std::string> reload();

  /// describe_certificate() of the context in use.
  std::string describe() const { return describe_certificate(*ctx_); }

 private:
  std::string cert_file_;
  std::string key_file_;
  bool required_;
  std::shared_ptr<boost::asio::ssl::context> ctx_;
};

/// The one frame a plaintext JIM connection gets under --tls-required (with its newline).
std::string tls_required_frame();

}  // namespace jim::server::net
