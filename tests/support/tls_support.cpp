#include "tls_support.hpp"

// The one translation unit of the test binary that compiles Asio's SSL part
// (BOOST_ASIO_SEPARATE_COMPILATION comes with jim_asio).
#include <boost/asio/ssl/impl/src.hpp>

#include <boost/asio/connect.hpp>
#include <boost/asio/ssl/host_name_verification.hpp>
#include <boost/beast/core/buffers_to_string.hpp>
#include <boost/beast/core/flat_buffer.hpp>
#include <boost/beast/http.hpp>
#include <boost/beast/websocket/ssl.hpp>

#include <openssl/bn.h>
#include <openssl/ssl.h>
#include <openssl/x509.h>

#include <cstdlib>
#include <fstream>
#include <stdexcept>
#include <sys/socket.h>

namespace jim::test {

namespace asio = boost::asio;
namespace ssl = asio::ssl;
namespace beast = boost::beast;
namespace http = beast::http;
using tcp = asio::ip::tcp;

void run_shell(std::string const& command) {
  const int rc = std::system(("(" + command + ") >/dev/null 2>&1").c_str());
  if (rc != 0) throw std::runtime_error("command failed (" + std::to_string(rc) + "): " + command);
}

namespace {
std::string q(std::filesystem::path const& p) {
  return "'" + p.string() + "'";
}
constexpr char const* ec_key = "-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes";

void connect_local(tcp::socket& s, std::uint16_t port) {
  s.connect(tcp::endpoint(asio::ip::make_address("127.0.0.1"), port));
  bound_io(s);
}

void configure(ssl::context& ctx, tls_verify const& v) {
  if (v.ca_file.empty()) {
    ctx.set_verify_mode(ssl::verify_none);
    return;
  }
  ctx.load_verify_file(v.ca_file.string());
  ctx.set_verify_mode(ssl::verify_peer);
}

template <class Stream>
void prepare(Stream& s, tls_verify const& v) {
  if (!v.host.empty()) SSL_set_tlsext_host_name(s.native_handle(), v.host.c_str());
  if (!v.ca_file.empty()) s.set_verify_callback(ssl::host_name_verification(v.host));
}
}  // namespace

void bound_io(tcp::socket& s, std::chrono::seconds bound) {
  timeval tv{static_cast<time_t>(bound.count()), 0};
  setsockopt(s.native_handle(), SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(s.native_handle(), SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
}

test_ca::test_ca(std::string name) {
  run_shell("cd " + q(dir()) + " && openssl req -x509 " + ec_key +
            " -keyout ca.key -out ca.pem -days 2 -subj '/CN=" + name +
            "' -addext basicConstraints=critical,CA:TRUE"
            " -addext keyUsage=critical,keyCertSign,cRLSign");
}

test_ca::issued test_ca::server_cert(std::string const& stem, long serial, std::string const& host,
                                     bool with_ip) const {
  {
    std::ofstream ext(dir() / (stem + ".ext"));
    ext << "subjectAltName=DNS:" << host << (with_ip ? ",IP:127.0.0.1" : "") << "\n"
        << "basicConstraints=CA:FALSE\nkeyUsage=digitalSignature\nextendedKeyUsage=serverAuth\n";
  }
  run_shell("cd " + q(dir()) + " && openssl req " + ec_key + " -keyout " + stem + ".key -out " +
            stem + ".csr -subj '/CN=" + host + "' && openssl x509 -req -in " + stem +
            ".csr -CA ca.pem -CAkey ca.key -set_serial " + std::to_string(serial) +
            " -days 2 -extfile " + stem + ".ext -out " + stem + ".leaf && cat " + stem +
            ".leaf ca.pem > " + stem + ".pem");
  return {dir() / (stem + ".pem"), dir() / (stem + ".key")};
}

// --- tls_client ---------------------------------------------------------------------------

tls_client::tls_client(std::uint16_t port, tls_verify verify)
    : ctx_(ssl::context::tls_client), stream_(io_, (configure(ctx_, verify), ctx_)) {
  connect_local(stream_.next_layer(), port);
  prepare(stream_, verify);
}

tls_client::~tls_client() {
  boost::system::error_code ignored;
  stream_.next_layer().close(ignored);
}

boost::system::error_code tls_client::handshake() {
  boost::system::error_code ec;
  stream_.handshake(ssl::stream_base::client, ec);
  return ec;
}

void tls_client::send_raw(std::string_view bytes) {
  asio::write(stream_, asio::buffer(bytes));
}

void tls_client::send(std::string_view json_text) {
  send_raw(json::serialize(json::parse(json_text)) + "\n");
}

json::object tls_client::recv() {
  for (;;) {
    const auto nl = buffer_.find('\n');
    if (nl != std::string::npos) {
      auto line = buffer_.substr(0, nl);
      buffer_.erase(0, nl + 1);
      if (line.empty()) continue;
      return json::parse(line).as_object();
    }
    char buf[4096];
    boost::system::error_code ec;
    const std::size_t n = stream_.read_some(asio::buffer(buf), ec);
    if (ec) throw boost::system::system_error(ec, "TLS read");
    buffer_.append(buf, n);
  }
}

json::object tls_client::reply() {
  for (int i = 0; i < 10000; ++i) {
    auto o = recv();
    if (o.contains("response")) return o;
  }
  throw std::runtime_error("no reply among 10000 frames");
}

json::object tls_client::request(std::string_view json_text) {
  send(json_text);
  return reply();
}

bool tls_client::closed() {
  buffer_.clear();
  for (int i = 0; i < 10000; ++i) {
    char buf[4096];
    boost::system::error_code ec;
    stream_.read_some(asio::buffer(buf), ec);
    if (ec == asio::error::would_block || ec == asio::error::try_again ||
        ec == asio::error::timed_out)
      return false;  // SO_RCVTIMEO: still open after 5 s
    if (ec) return true;  // close_notify (eof), stream_truncated, reset
  }
  return false;
}

std::string tls_client::peer_serial() {
  SSL* ssl_handle = stream_.native_handle();
  X509* cert = SSL_get1_peer_certificate(ssl_handle);
  if (!cert) return {};
  std::string out;
  if (BIGNUM* bn = ASN1_INTEGER_to_BN(X509_get0_serialNumber(cert), nullptr)) {
    if (char* dec = BN_bn2dec(bn)) {
      out = dec;
      OPENSSL_free(dec);
    }
    BN_free(bn);
  }
  X509_free(cert);
  return out;
}

std::string tls_client::protocol() {
  return SSL_get_version(stream_.native_handle());
}

// --- wss_client -------------------------------------------------------------------------------

wss_client::wss_client(std::uint16_t port, tls_verify verify)
    : ctx_(ssl::context::tls_client), ws_(io_, (configure(ctx_, verify), ctx_)) {
  auto& tls = ws_.next_layer();
  connect_local(tls.next_layer(), port);
  prepare(tls, verify);
  tls.handshake(ssl::stream_base::client);
  ws_.handshake(verify.host + ":" + std::to_string(port), "/chat");
  ws_.text(true);
}

wss_client::~wss_client() {
  boost::system::error_code ignored;
  ws_.next_layer().next_layer().close(ignored);
}

json::object wss_client::request(std::string_view json_text) {
  ws_.write(asio::buffer(json_text));
  for (int i = 0; i < 10000; ++i) {
    beast::flat_buffer buf;
    ws_.read(buf);
    auto o = json::parse(beast::buffers_to_string(buf.data())).as_object();
    if (o.contains("response")) return o;
  }
  throw std::runtime_error("no reply among 10000 messages");
}

// --- HTTP -------------------------------------------------------------------------------------

namespace {
template <class Stream>
http_result get(Stream& s, std::uint16_t port, std::string const& target) {
  http::request<http::empty_body> req{http::verb::get, target, 11};
  req.set(http::field::host, "localhost:" + std::to_string(port));
  req.keep_alive(false);
  http::write(s, req);
  beast::flat_buffer buf;
  http::response<http::string_body> res;
  http::read(s, buf, res);
  return {res.result_int(), res.body()};
}
}  // namespace

http_result https_get(std::uint16_t port, std::string const& target, tls_verify verify) {
  asio::io_context io;
  ssl::context ctx(ssl::context::tls_client);
  configure(ctx, verify);
  ssl::stream<tcp::socket> s(io, ctx);
  connect_local(s.next_layer(), port);
  prepare(s, verify);
  s.handshake(ssl::stream_base::client);
  return get(s, port, target);
}

http_result http_get(std::uint16_t port, std::string const& target) {
  asio::io_context io;
  tcp::socket s(io);
  connect_local(s, port);
  return get(s, port, target);
}

}  // namespace jim::test
