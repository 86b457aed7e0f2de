#include "crypto/sodium_otp.h"

#include <sodium.h>

#include "crypto/sodium_init.h"

namespace mmchat::crypto {

SodiumOtp::SodiumOtp(std::string_view key) {
  InitSodium();
  key_.resize(crypto_auth_hmacsha256_KEYBYTES);
  crypto_generichash(reinterpret_cast<unsigned char*>(key_.data()), key_.size(),
                     reinterpret_cast<const unsigned char*>(key.data()), key.size(),
                     reinterpret_cast<const unsigned char*>("mmchat-otp-key"), 14);
}

std::string SodiumOtp::Generate(int digits) {
  std::string code(static_cast<size_t>(digits), '0');
  for (char& c : code) c = static_cast<char>('0' + randombytes_uniform(10));
  return code;
}

std::string SodiumOtp::Hash(domain::CodePurpose purpose, std::string_view email,
                            std::string_view code) {
  // purpose | email | code, with separators that cannot appear in an email or a code.
  std::string msg = purpose == domain::CodePurpose::kSignup ? "signup" : "reset";
  msg.append("\n").append(email).append("\n").append(code);
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256(mac, reinterpret_cast<const unsigned char*>(msg.data()), msg.size(),
                         reinterpret_cast<const unsigned char*>(key_.data()));
  char hex[sizeof mac * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, mac, sizeof mac);
  return hex;
}

bool SodiumOtp::Matches(std::string_view stored_hash, domain::CodePurpose purpose,
                        std::string_view email, std::string_view code) {
  const std::string computed = Hash(purpose, email, code);
  return stored_hash.size() == computed.size() &&
         sodium_memcmp(stored_hash.data(), computed.data(), computed.size()) == 0;
}

}  // namespace mmchat::crypto
