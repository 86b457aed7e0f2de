// JWT HS256 bearer tokens through libjwt. Claims: sub (user id as a string), iat, exp, jti,
// and ver, the user's token version, which a password reset increments to revoke older
// tokens (iat has only second precision, too coarse to tell "before the reset" from "after").
// Thread-safe: holds only immutable configuration.
#pragma once

#include <string>

#include "domain/auth_ports.h"

namespace mmchat::crypto {

class JwtCodec final : public domain::TokenCodec {
 public:
  JwtCodec(std::string secret, TimeMs ttl_ms);

  Result<domain::IssuedToken> Issue(int64_t user_id, int64_t token_version, TimeMs now) override;
  Result<domain::TokenClaims> Verify(std::string_view token, TimeMs now) override;

 private:
  const std::string secret_;
  const TimeMs ttl_ms_;
};

// 32 random bytes, hex encoded: the secret generated when JWT_SECRET is unset.
std::string GenerateSecret();

}  // namespace mmchat::crypto
