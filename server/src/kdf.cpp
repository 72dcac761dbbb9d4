#include "kdf.hpp"

#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/rand.h>

#include <charconv>
#include <stdexcept>
#include <vector>

namespace jim::server {

namespace {
constexpr std::size_t salt_bytes = 16;
constexpr std::size_t hash_bytes = 32;
/// PBKDF2 over SHA-256(password): HMAC zero-pads keys shorter than a block and hashes longer
/// ones, so raw PBKDF2 verifies `pw`, `pw\0` and `pw\0\0` alike, and a password over 64 bytes
/// alike with its own SHA-256 digest. A fixed-length 32-byte key makes distinct passwords distinct
/// keys (as long as SHA-256 has no collision).
constexpr std::string_view scheme = "pbkdf2-sha256-prehash";
/// Hashes made before: raw PBKDF2 of the password. Still verified, but never for a password
/// containing U+0000 (the trailing-NUL ambiguity); no new hash uses it.
constexpr std::string_view legacy_scheme = "pbkdf2-sha256";

/// SHA-256 fetched from the default provider once. With EVP_sha256() every EVP_Digest call
/// fetches the implementation again (OpenSSL 3's implicit fetch: a locked method-store lookup
/// per call; migration_guide(7), "Fetching algorithms and using them": explicit fetching once
/// "is more efficient"); a token sign-in hashes once on the I/O thread. Thread-safe (a static
/// initialized once); never freed (it lives as long as the process).
EVP_MD const* sha256_md() {
  static EVP_MD* const md = EVP_MD_fetch(nullptr, "SHA2-256", nullptr);
  return md ? md : EVP_sha256();
}

std::string sha256(std::string_view data) {
  std::string out(hash_bytes, '\0');
  unsigned int n = 0;
  if (EVP_Digest(data.data(), data.size(), reinterpret_cast<unsigned char*>(out.data()), &n,
                 sha256_md(), nullptr) != 1 ||
      n != hash_bytes)
    throw std::runtime_error("EVP_Digest(SHA-256) failed");
  return out;
}

std::string random_bytes(std::size_t n) {
  std::string out(n, '\0');
  if (RAND_bytes(reinterpret_cast<unsigned char*>(out.data()), static_cast<int>(n)) != 1)
    throw std::runtime_error("RAND_bytes failed");
  return out;
}

bool from_base64url(std::string_view text, std::string& out) {
  std::string b64(text);
  for (char& c : b64) {
    if (c == '-')
      c = '+';
    else if (c == '_')
      c = '/';
  }
  while (b64.size() % 4 != 0) b64.push_back('=');
  std::vector<unsigned char> buf(b64.size() / 4 * 3 + 1);
  const int n = EVP_DecodeBlock(buf.data(), reinterpret_cast<unsigned char const*>(b64.data()),
                                static_cast<int>(b64.size()));
  if (n < 0) return false;
  std::size_t len = static_cast<std::size_t>(n);
  for (auto it = b64.rbegin(); it != b64.rend() && *it == '=' && len > 0; ++it) --len;
  out.assign(reinterpret_cast<char const*>(buf.data()), len);
  return true;
}
}  // namespace

std::string base64url(std::string_view raw) {
  std::vector<unsigned char> buf(4 * ((raw.size() + 2) / 3) + 1);
  const int n = EVP_EncodeBlock(buf.data(), reinterpret_cast<unsigned char const*>(raw.data()),
                                static_cast<int>(raw.size()));
  std::string out(reinterpret_cast<char const*>(buf.data()), static_cast<std::size_t>(n));
  while (!out.empty() && out.back() == '=') out.pop_back();
  for (char& c : out) {
    if (c == '+')
      c = '-';
    else if (c == '/')
      c = '_';
  }
  return out;
}

std::string pbkdf2_sha256(std::string_view password, std::string_view salt, unsigned iterations,
                          std::size_t length) {
  std::string out(length, '\0');
  if (PKCS5_PBKDF2_HMAC(password.data(), static_cast<int>(password.size()),
                        reinterpret_cast<unsigned char const*>(salt.data()),
                        static_cast<int>(salt.size()), static_cast<int>(iterations), EVP_sha256(),
                        static_cast<int>(length),
                        reinterpret_cast<unsigned char*>(out.data())) != 1)
    throw std::runtime_error("PKCS5_PBKDF2_HMAC failed");
  return out;
}

std::string hash_password(std::string_view password, unsigned iterations) {
  const std::string salt = random_bytes(salt_bytes);
  const std::string hash = pbkdf2_sha256(sha256(password), salt, iterations, hash_bytes);
  // Appended piece by piece: operator+ chains here make GCC 12 report a false -Warray-bounds.
  std::string out(scheme);
  for (std::string const& part : {std::to_string(iterations), base64url(salt), base64url(hash)}) {
    out += '$';
    out += part;
  }
  return out;
}

namespace {
/// The pieces of `scheme$iterations$salt$hash`; false when `stored` is not of that shape.
struct stored_hash {
  bool legacy = false;
  unsigned iterations = 0;
  std::string_view salt, hash;  ///< base64url
};
bool split(std::string_view stored, stored_hash& out) {
  std::string_view parts[4];
  for (int i = 0; i < 3; ++i) {
    const auto d = stored.find('$');
    if (d == std::string_view::npos) return false;
    parts[i] = stored.substr(0, d);
    stored.remove_prefix(d + 1);
  }
  parts[3] = stored;
  out.legacy = parts[0] == legacy_scheme;
  if (!out.legacy && parts[0] != scheme) return false;
  auto [p, ec] =
      std::from_chars(parts[1].data(), parts[1].data() + parts[1].size(), out.iterations);
  if (ec != std::errc{} || p != parts[1].data() + parts[1].size() || out.iterations == 0 ||
      out.iterations > 100'000'000)
    return false;
  out.salt = parts[2];
  out.hash = parts[3];
  return true;
}
}  // namespace

bool needs_rehash(std::string_view stored, unsigned iterations) {
  stored_hash h;
  if (!split(stored, h)) return false;
  return h.legacy || h.iterations < iterations;
}

std::string token_digest(std::string_view token) {
  return base64url(sha256(token));
}

bool verify_password(std::string_view password, std::string_view stored) {
  stored_hash h;
  if (!split(stored, h)) return false;
  const bool legacy = h.legacy;
  const unsigned iterations = h.iterations;
  if (legacy && password.find('\0') != std::string_view::npos) return false;
  std::string salt, expected;
  if (!from_base64url(h.salt, salt) || !from_base64url(h.hash, expected) || expected.empty())
    return false;
  const std::string actual =
      pbkdf2_sha256(legacy ? std::string(password) : sha256(password), salt, iterations,
                    expected.size());
  return CRYPTO_memcmp(actual.data(), expected.data(), expected.size()) == 0;
}

std::string random_token(std::size_t bytes) {
  return base64url(random_bytes(bytes));
}

}  // namespace jim::server
