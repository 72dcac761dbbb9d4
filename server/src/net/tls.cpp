#include "net/tls.hpp"

#include "jim/codec.hpp"

// The one translation unit of jimd that compiles Asio's SSL part (BOOST_ASIO_SEPARATE_COMPILATION
// is set by jim_asio, which compiles the rest).
#include <boost/asio/ssl/impl/src.hpp>

#include <openssl/asn1.h>
#include <openssl/bio.h>
#include <openssl/bn.h>
#include <openssl/err.h>
#include <openssl/pem.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <unistd.h>

namespace jim::server::net {

namespace asio = boost::asio;
namespace ssl = asio::ssl;

namespace {

/// Mozilla's "intermediate" configuration (v5.7) for TLS 1.2; TLS 1.3 keeps OpenSSL's
/// suites, which are the same three Mozilla lists.
constexpr char const* intermediate_ciphers =
    "ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-RSA-AES128-GCM-SHA256:"
    "ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-RSA-AES256-GCM-SHA384:"
    "ECDHE-ECDSA-CHACHA20-POLY1305:ECDHE-RSA-CHACHA20-POLY1305:"
    "DHE-RSA-AES128-GCM-SHA256:DHE-RSA-AES256-GCM-SHA384:DHE-RSA-CHACHA20-POLY1305";
constexpr char const* intermediate_groups = "X25519:prime256v1:secp384r1";

/// OpenSSL's reasons for the last failure (its error queue, emptied), most specific first:
/// "no start line (PEM routines)".
std::string openssl_reason() {
  std::string why;
  while (const unsigned long e = ERR_get_error()) {
    char const* reason = ERR_reason_error_string(e);
    char const* lib = ERR_lib_error_string(e);
    std::string one = reason ? reason : "error " + std::to_string(ERR_GET_REASON(e));
    if (lib) one += std::string(" (") + lib + ")";
    if (!why.empty()) why += "; ";
    why += one;
  }
  return why.empty() ? "unknown OpenSSL error" : why;
}

/// Why `path` cannot be read ("No such file or directory", "Is a directory", "the file is
/// empty"), or "" when it can.
std::string unreadable(std::string const& path) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return std::strerror(errno);
  char c;
  const ssize_t n = ::read(fd, &c, 1);
  const int err = errno;
  ::close(fd);
  if (n < 0) return std::strerror(err);
  return n == 0 ? "the file is empty" : "";
}

/// Whether the first MiB of `path` contains `needle`.
bool file_mentions(std::string const& path, std::string_view needle) {
  const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return false;
  std::string text(1 << 20, '\0');
  const ssize_t n = ::read(fd, text.data(), text.size());
  ::close(fd);
  return n > 0 && std::string_view(text.data(), static_cast<std::size_t>(n)).find(needle) !=
                      std::string_view::npos;
}

/// The first reason in OpenSSL's error queue in its own words ("ee key too small"), the queue
/// emptied; `pem_missing` is set when it is PEM's "no start line" (no PEM block of the kind).
std::string first_reason(bool& pem_missing) {
  const unsigned long e = ERR_peek_error();
  pem_missing = e != 0 && ERR_GET_LIB(e) == ERR_LIB_PEM && ERR_GET_REASON(e) == PEM_R_NO_START_LINE;
  char const* reason = e ? ERR_reason_error_string(e) : nullptr;
  std::string out = reason ? reason : "unknown OpenSSL error";
  ERR_clear_error();
  return out;
}

std::string bio_text(BIO* bio) {
  char* data = nullptr;
  const long n = BIO_get_mem_data(bio, &data);
  return n > 0 ? std::string(data, static_cast<std::size_t>(n)) : std::string();
}

}  // namespace

std::shared_ptr<ssl::context> make_server_context(std::string const& cert_file,
                                                  std::string const& key_file) {
  ERR_clear_error();
  auto ctx = std::make_shared<ssl::context>(ssl::context::tls_server);
  SSL_CTX* h = ctx->native_handle();
  auto fail = [](std::string what) { throw std::runtime_error(std::move(what)); };
  if (SSL_CTX_set_min_proto_version(h, TLS1_2_VERSION) != 1 ||
      SSL_CTX_set_max_proto_version(h, TLS1_3_VERSION) != 1)
    fail("cannot restrict TLS to 1.2 and 1.3: " + openssl_reason());
  // No compression (CRIME), no renegotiation (a cheap way to make the server work hard).
  ctx->set_options(ssl::context::default_workarounds | ssl::context::no_compression |
                   ssl::context::single_dh_use);
  SSL_CTX_set_options(h, SSL_OP_NO_RENEGOTIATION);  // and no server preference, as Mozilla says
  if (SSL_CTX_set_cipher_list(h, intermediate_ciphers) != 1)
    fail("cannot set the cipher list: " + openssl_reason());
  if (SSL_CTX_set1_groups_list(h, intermediate_groups) != 1)
    fail("cannot set the key exchange groups: " + openssl_reason());
  SSL_CTX_set_dh_auto(h, 1);
  // Idle connections give their read and write buffers back (most chat connections are idle).
  SSL_CTX_set_mode(h, SSL_MODE_RELEASE_BUFFERS);

  // Plain words for what an operator gets wrong (a path, a file of the wrong kind, a key that
  // needs a passphrase, the key of another certificate); OpenSSL's own reason otherwise.
  if (auto why = unreadable(cert_file); !why.empty())
    fail("cannot read the certificate file " + cert_file + " (--tls-cert): " + why);
  if (auto why = unreadable(key_file); !why.empty())
    fail("cannot read the private key file " + key_file + " (--tls-key): " + why);
  bool pem_missing = false;
  if (SSL_CTX_use_certificate_chain_file(h, cert_file.c_str()) != 1) {
    const auto reason = first_reason(pem_missing);
    fail(pem_missing ? cert_file + " (--tls-cert) holds no PEM certificate (a block starting "
                                   "with -----BEGIN CERTIFICATE-----)"
                     : "cannot use the certificate in " + cert_file + " (--tls-cert): " + reason);
  }
  // Never ask for a passphrase (OpenSSL's default would read one from the terminal).
  SSL_CTX_set_default_passwd_cb(h, [](char*, int, int, void*) { return 0; });
  if (SSL_CTX_use_PrivateKey_file(h, key_file.c_str(), SSL_FILETYPE_PEM) != 1) {
    // OpenSSL 3 checks the key against the certificate loaded already.
    const unsigned long err = ERR_peek_error();
    const bool mismatch =
        ERR_GET_LIB(err) == ERR_LIB_X509 && ERR_GET_REASON(err) == X509_R_KEY_VALUES_MISMATCH;
    const auto reason = first_reason(pem_missing);
    if (mismatch)
      fail("the private key in " + key_file + " (--tls-key) is not the key of the certificate in " +
           cert_file + " (--tls-cert): they do not belong together");
    if (file_mentions(key_file, "ENCRYPTED"))
      fail(key_file + " (--tls-key) is protected by a passphrase, which jimd cannot ask for: "
                      "store the key without one (openssl pkey -in KEY -out PLAIN), readable "
                      "only by jimd");
    fail(pem_missing || !file_mentions(key_file, "PRIVATE KEY-----")
             ? key_file + " (--tls-key) holds no PEM private key (a block starting with "
                          "-----BEGIN PRIVATE KEY-----)"
                     : "cannot use the private key in " + key_file + " (--tls-key): " + reason);
  }
  if (SSL_CTX_check_private_key(h) != 1) {
    ERR_clear_error();
    fail("the private key in " + key_file + " (--tls-key) is not the key of the certificate in " +
         cert_file + " (--tls-cert): they do not belong together");
  }
  return ctx;
}

std::string describe_certificate(ssl::context& ctx) {
  X509* cert = SSL_CTX_get0_certificate(ctx.native_handle());
  if (!cert) return "no certificate";
  std::string out;
  std::unique_ptr<BIO, decltype(&BIO_free)> bio(BIO_new(BIO_s_mem()), &BIO_free);
  if (!bio) return "?";
  X509_NAME_print_ex(bio.get(), X509_get_subject_name(cert), 0,
                     XN_FLAG_ONELINE & ~ASN1_STRFLGS_ESC_MSB);
  out = bio_text(bio.get());
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
    if (char* hex = BN_bn2hex(bn)) {
      out += ", serial 0x";
      out += hex;
      OPENSSL_free(hex);
    }
    BN_free(bn);
  }
  std::unique_ptr<BIO, decltype(&BIO_free)> date(BIO_new(BIO_s_mem()), &BIO_free);
  if (date && ASN1_TIME_print(date.get(), X509_get0_notAfter(cert)) == 1)
    out += ", valid until " + bio_text(date.get());
  return out;
}

tls_manager::tls_manager(std::string cert_file, std::string key_file, bool required)
    : cert_file_(std::move(cert_file)),
      key_file_(std::move(key_file)),
      required_(required),
      ctx_(make_server_context(cert_file_, key_file_)) {}

std::optional<std::string> tls_manager::reload() {
  try {
    ctx_ = make_server_context(cert_file_, key_file_);
  } catch (std::exception const& e) {
    return e.what();
  }
  return std::nullopt;
}

std::string tls_required_frame() {
  return proto::encode_reply(proto::code::forbidden, nullptr,
                             "TLS required: this server accepts TLS connections only "
                             "(jim --tls)");
}

}  // namespace jim::server::net
