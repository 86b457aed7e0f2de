// Interfaces for the slow or secret-holding parts of authentication, implemented outside the
// domain (crypto/ with libsodium and libjwt, mail/ with libcurl). All implementations must be
// thread-safe.
#pragma once

#include <cstdint>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/time.h"
#include "domain/store.h"

namespace mmchat::domain {

// Slow salted password hashing (Argon2id). Deliberately expensive: call it off io threads.
class PasswordHasher {
 public:
  virtual ~PasswordHasher() = default;
  virtual Result<std::string> Hash(std::string_view password) = 0;
  virtual bool Verify(std::string_view hash, std::string_view password) = 0;
};

// One-time codes: random digits, stored only as a keyed hash, compared in constant time.
class OtpCrypto {
 public:
  virtual ~OtpCrypto() = default;
  virtual std::string Generate(int digits) = 0;
  // The hash binds the code to its purpose and email, so a row cannot be reused elsewhere.
  virtual std::string Hash(CodePurpose purpose, std::string_view email, std::string_view code) = 0;
  virtual bool Matches(std::string_view stored_hash, CodePurpose purpose, std::string_view email,
                       std::string_view code) = 0;
};

struct IssuedToken {
  std::string token;
  TimeMs expires_at = 0;
};

struct TokenClaims {
  int64_t user_id = 0;
  int64_t token_version = 0;
};

// Signed bearer tokens (JWT HS256).
class TokenCodec {
 public:
  virtual ~TokenCodec() = default;
  virtual Result<IssuedToken> Issue(int64_t user_id, int64_t token_version, TimeMs now) = 0;
  // kUnauthorized for anything but a well-formed, correctly signed, unexpired HS256 token.
  virtual Result<TokenClaims> Verify(std::string_view token, TimeMs now) = 0;
};

struct OutgoingMail {
  std::string to;
  std::string subject;
  std::string body;  // plain text
};

// Delivers verification codes (log or SMTP). May block: call it off io threads.
class CodeSender {
 public:
  virtual ~CodeSender() = default;
  // Any non-ok Status when delivery failed; the message may be shown to the client.
  virtual Status Send(const OutgoingMail& mail) = 0;
};

}  // namespace mmchat::domain
