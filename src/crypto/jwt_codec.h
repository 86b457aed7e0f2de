// JWT HS256 bearer tokens through libjwt. Claims: sub (user id as a string), iat, exp, jti,
// and ver, the user's token version, which a password reset increments to revoke older
// tokens (iat has only second precision, too coarse to tell "before the reset" from "after").
// Thread-safe: immutable configuration and a mutex-guarded memo of verified tokens.
#pragma once

#include <array>
#include <cstdint>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "domain/auth_ports.h"

namespace mmchat::crypto {

class JwtCodec final : public domain::TokenCodec {
 public:
  JwtCodec(std::string secret, TimeMs ttl_ms);

  Result<domain::IssuedToken> Issue(int64_t user_id, int64_t token_version, TimeMs now) override;
  Result<domain::TokenClaims> Verify(std::string_view token, TimeMs now) override;

 private:
  // Tokens verified before, so that a client's next request skips the HMAC and the JSON
  // parse (about a seventh of a small request's CPU). Kept as a keyed hash (BLAKE2b with a
  // random key, 32 bytes), never the token itself, and compared in constant time, so that
  // neither memory nor timing gives a token away. Expiry is still checked on every use.
  class Memo {
   public:
    struct Verified {
      domain::TokenClaims claims;
      int64_t exp = 0;  // seconds
    };
    explicit Memo(size_t max_entries);
    std::optional<Verified> Find(std::string_view token);
    void Put(std::string_view token, const Verified& verified);

   private:
    using Digest = std::array<unsigned char, 32>;
    struct Entry {
      Digest digest;
      Verified verified;
    };
    struct Shard {
      std::mutex mu;
      std::unordered_map<uint64_t, Entry> entries;  // by the digest's first bytes; guarded
    };
    Digest DigestOf(std::string_view token) const;

    static constexpr size_t kShards = 16;
    const size_t max_per_shard_;
    std::array<unsigned char, 32> key_{};
    std::array<Shard, kShards> shards_;
  };

  const std::string secret_;
  const TimeMs ttl_ms_;
  Memo memo_{100'000};
};

// 32 random bytes, hex encoded: the secret generated when JWT_SECRET is unset.
std::string GenerateSecret();

}  // namespace mmchat::crypto
