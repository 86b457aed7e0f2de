// Argon2id password hashing through libsodium's crypto_pwhash_str (salted, self-describing
// hash strings). Thread-safe. Each call costs about 64 MiB and a tenth of a second: run it on
// the worker pool.
#pragma once

#include <cstddef>

#include "domain/auth_ports.h"

namespace mmchat::crypto {

class Argon2Hasher final : public domain::PasswordHasher {
 public:
  // Defaults are libsodium's "interactive" limits.
  Argon2Hasher();
  Argon2Hasher(unsigned long long ops_limit, size_t mem_limit);

  Result<std::string> Hash(std::string_view password) override;
  bool Verify(std::string_view hash, std::string_view password) override;

 private:
  unsigned long long ops_limit_;
  size_t mem_limit_;
};

}  // namespace mmchat::crypto
