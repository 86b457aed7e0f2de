// One-time codes with libsodium: uniform random digits, stored as HMAC-SHA-256 under a server
// key (so a stolen table does not give up six-digit codes by brute force), compared in
// constant time. Thread-safe.
#pragma once

#include <string>

#include "domain/auth_ports.h"

namespace mmchat::crypto {

class SodiumOtp final : public domain::OtpCrypto {
 public:
  // `key` is any secret string; it is hashed down to the HMAC key size.
  explicit SodiumOtp(std::string_view key);

  std::string Generate(int digits) override;
  std::string Hash(domain::CodePurpose purpose, std::string_view email,
                   std::string_view code) override;
  bool Matches(std::string_view stored_hash, domain::CodePurpose purpose, std::string_view email,
               std::string_view code) override;

 private:
  std::string key_;  // crypto_auth_hmacsha256_KEYBYTES bytes
};

}  // namespace mmchat::crypto
