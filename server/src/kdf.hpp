#pragma once
/// \file
/// Password hashing (PBKDF2-HMAC-SHA256 via OpenSSL) and secrets from the CSPRNG.
/// These functions are CPU-bound: call them off the I/O threads.

#include <string>
#include <string_view>

namespace jim::server {

/// Hashes `password` with a fresh 16-byte random salt: PBKDF2-HMAC-SHA256 of SHA-256(password)
/// (a fixed-length key, so distinct passwords never share a hash; see kdf.cpp). The result is
/// self-describing: `pbkdf2-sha256-prehash$ITERATIONS$SALT$HASH` (salt and hash in base64url), so
/// the work factor can change without invalidating stored hashes.
std::string hash_password(std::string_view password, unsigned iterations);

/// Checks `password` against a string made by hash_password (or by the earlier
/// `pbkdf2-sha256$...` scheme, raw PBKDF2, which never matches a password containing U+0000),
/// in constant time. A malformed `stored` string never matches.
bool verify_password(std::string_view password, std::string_view stored);

/// `bytes` bytes from OpenSSL's CSPRNG, as unpadded base64url text.
std::string random_token(std::size_t bytes);

/// Whether `stored` (made by hash_password or the legacy scheme) should be made again with
/// `iterations`: fewer iterations than that, or the legacy raw-PBKDF2 scheme. A malformed
/// `stored` string never needs it (it never verifies either).
bool needs_rehash(std::string_view stored, unsigned iterations);

/// What is stored of a resume token: unpadded base64url of SHA-256(token), 43 characters.
/// A token carries 256 random bits, so one fast hash suffices (no salt, no work factor: there
/// is no dictionary to attack); the clear text is never stored. Cheap: fine on the I/O thread.
std::string token_digest(std::string_view token);

/// Unpadded base64url of raw bytes (RFC 4648 §5).
std::string base64url(std::string_view raw);

/// Raw PBKDF2-HMAC-SHA256 (exposed for the known-answer test).
std::string pbkdf2_sha256(std::string_view password, std::string_view salt, unsigned iterations,
                          std::size_t length);

}  // namespace jim::server
