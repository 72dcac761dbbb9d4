#include "kdf.hpp"

#include <openssl/evp.h>

#include <catch2/catch.hpp>

using namespace jim::server;

namespace {
std::string hex(std::string const& raw) {
  static const char* digits = "0123456789abcdef";
  std::string out;
  for (unsigned char c : raw) {
    out.push_back(digits[c >> 4]);
    out.push_back(digits[c & 15]);
  }
  return out;
}
}  // namespace

TEST_CASE("PBKDF2-HMAC-SHA256 matches the known test vectors", "[kdf]") {
  // RFC 7914 section 11 (PBKDF2-HMAC-SHA256 vectors).
  CHECK(hex(pbkdf2_sha256("passwd", "salt", 1, 64)) ==
        "55ac046e56e3089fec1691c22544b605f94185216dde0465e68b9d57c20dacbc"
        "49ca9cccf179b645991664b39d77ef317c71b845b1e30bd509112041d3a19783");
  CHECK(hex(pbkdf2_sha256("Password", "NaCl", 80000, 64)) ==
        "4ddcd8f60b98be21830cee5ef22701f9641a4418d04c0414aeff08876b34ab56"
        "a1d425a1225833549adb841b51c9b3176a272bdebba1d078478f62b397f33c8d");
}

TEST_CASE("A stored hash verifies its password and nothing else", "[kdf]") {
  const std::string stored = hash_password("s3cret", 1000);
  CHECK(stored.rfind("pbkdf2-sha256-prehash$1000$", 0) == 0);
  CHECK(stored.find("s3cret") == std::string::npos);
  CHECK(verify_password("s3cret", stored));
  CHECK_FALSE(verify_password("s3cret ", stored));
  CHECK_FALSE(verify_password("", stored));
}

TEST_CASE("Two hashes of one password differ by their salt", "[kdf]") {
  CHECK(hash_password("same", 1000) != hash_password("same", 1000));
}

TEST_CASE("Malformed stored hashes never verify", "[kdf]") {
  for (std::string bad : {"", "pbkdf2-sha256", "pbkdf2-sha256$x$abc$def", "md5$1000$abc$def",
                          "pbkdf2-sha256$0$abc$def", "pbkdf2-sha256$1000$$"})
    CHECK_FALSE(verify_password("pw", bad));
}

TEST_CASE("Room passwords are URL-safe and carry at least 96 bits", "[kdf]") {
  const std::string t = random_token(18);
  CHECK(t.size() >= 16);
  CHECK(t.find_first_not_of("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_") ==
        std::string::npos);
  CHECK(random_token(18) != t);
}

namespace {
std::string raw_sha256(std::string_view data) {
  std::string out(32, '\0');
  unsigned int n = 0;
  EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &n,
             EVP_sha256(), nullptr);
  return out;
}
}  // namespace

TEST_CASE("Different passwords never verify: trailing NULs, long keys, Unicode forms", "[kdf]") {
  using namespace std::string_literals;
  const std::string stored = hash_password("pw", 1000);
  CHECK(verify_password("pw", stored));
  CHECK_FALSE(verify_password("pw\0"s, stored));
  CHECK_FALSE(verify_password("pw\0\0"s, stored));

  // HMAC hashes a key longer than its 64-byte block: raw PBKDF2 verifies such a password and
  // its own SHA-256 digest alike.
  const std::string long_pw(100, 'x');
  const std::string long_stored = hash_password(long_pw, 1000);
  CHECK(verify_password(long_pw, long_stored));
  CHECK_FALSE(verify_password(raw_sha256(long_pw), long_stored));
  CHECK_FALSE(verify_password(long_pw + "\0"s, long_stored));
  CHECK_FALSE(verify_password(std::string(64, 'x'), long_stored));

  // No normalisation: precomposed U+00E9 and e + U+0301 are different passwords.
  const std::string nfc_stored = hash_password("caf\xc3\xa9", 1000);
  CHECK(verify_password("caf\xc3\xa9", nfc_stored));
  CHECK_FALSE(verify_password("cafe\xcc\x81", nfc_stored));
}

TEST_CASE("Hashes of the earlier raw scheme still verify, but never a password with U+0000",
          "[kdf]") {
  using namespace std::string_literals;
  // Made as the earlier hash_password did: pbkdf2-sha256$ITER$SALT$HASH over the raw password.
  const std::string salt = "0123456789abcdef";
  const std::string legacy = "pbkdf2-sha256$1000$" + base64url(salt) + "$" +
                             base64url(pbkdf2_sha256("pw", salt, 1000, 32));
  CHECK(verify_password("pw", legacy));
  CHECK_FALSE(verify_password("pw\0"s, legacy));
  CHECK_FALSE(verify_password("pw2", legacy));
}
