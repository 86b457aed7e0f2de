#include "crypto/argon2_hasher.h"

#include <sodium.h>

#include <string>

#include "crypto/sodium_init.h"

namespace mmchat::crypto {

bool InitSodium() {
  static const bool ok = sodium_init() >= 0;
  return ok;
}

Argon2Hasher::Argon2Hasher()
    : Argon2Hasher(crypto_pwhash_OPSLIMIT_INTERACTIVE, crypto_pwhash_MEMLIMIT_INTERACTIVE) {}

Argon2Hasher::Argon2Hasher(unsigned long long ops_limit, size_t mem_limit)
    : ops_limit_(ops_limit), mem_limit_(mem_limit) {
  InitSodium();
}

Result<std::string> Argon2Hasher::Hash(std::string_view password) {
  char out[crypto_pwhash_STRBYTES];
  if (crypto_pwhash_str_alg(out, password.data(), password.size(), ops_limit_, mem_limit_,
                            crypto_pwhash_ALG_ARGON2ID13) != 0) {
    return Status::Internal("password hashing failed");  // out of memory
  }
  return std::string(out);
}

bool Argon2Hasher::Verify(std::string_view hash, std::string_view password) {
  const std::string h(hash);  // needs a NUL-terminated string
  return crypto_pwhash_str_verify(h.c_str(), password.data(), password.size()) == 0;
}

}  // namespace mmchat::crypto
