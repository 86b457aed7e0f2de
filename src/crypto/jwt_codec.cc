#include "crypto/jwt_codec.h"

#include <jwt.h>
#include <sodium.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <string>

#include "crypto/sodium_init.h"

namespace mmchat::crypto {
namespace {

struct JwtFree {
  void operator()(jwt_t* j) const { jwt_free(j); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtFree>;

// Tokens longer than this are garbage; refusing them early bounds libjwt's work.
constexpr size_t kMaxTokenLength = 4096;

bool ParseUserId(const char* s, int64_t* out) {
  if (s == nullptr || *s < '0' || *s > '9') return false;  // strtoll would skip spaces, '+'
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(s, &end, 10);
  if (errno != 0 || *end != '\0' || v <= 0) return false;
  *out = v;
  return true;
}

// The value of an integer claim. Not jwt_get_grant_int: libjwt 1.10 answers 0 for a claim of
// another JSON type ("ver": "0", 0.5, true), which would pass for token version 0.
bool IntegerGrant(jwt_t* jwt, const char* name, int64_t* out) {
  char* json = jwt_get_grants_json(jwt, name);
  if (json == nullptr) return false;
  const std::string text(json);
  free(json);
  const size_t digits = text.size() > 1 && text[0] == '-' ? 1 : 0;
  if (text.size() == digits || text.find_first_not_of("0123456789", digits) != std::string::npos) {
    return false;
  }
  errno = 0;
  const long long v = std::strtoll(text.c_str(), nullptr, 10);
  if (errno != 0) return false;
  *out = v;
  return true;
}

}  // namespace

std::string GenerateSecret() {
  InitSodium();
  unsigned char buf[32];
  randombytes_buf(buf, sizeof buf);
  char hex[sizeof buf * 2 + 1];
  sodium_bin2hex(hex, sizeof hex, buf, sizeof buf);
  return hex;
}

JwtCodec::Memo::Memo(size_t max_entries) : max_per_shard_(max_entries / kShards + 1) {
  InitSodium();
  randombytes_buf(key_.data(), key_.size());
}

JwtCodec::Memo::Digest JwtCodec::Memo::DigestOf(std::string_view token) const {
  Digest d;
  crypto_generichash(d.data(), d.size(), reinterpret_cast<const unsigned char*>(token.data()),
                     token.size(), key_.data(), key_.size());
  return d;
}

namespace {
uint64_t SlotOf(const std::array<unsigned char, 32>& digest) {
  uint64_t h = 0;
  std::memcpy(&h, digest.data(), sizeof h);
  return h;
}
}  // namespace

std::optional<JwtCodec::Memo::Verified> JwtCodec::Memo::Find(std::string_view token) {
  const Digest d = DigestOf(token);
  const uint64_t slot = SlotOf(d);
  Shard& s = shards_[slot % kShards];
  std::lock_guard lock(s.mu);
  auto it = s.entries.find(slot);
  if (it == s.entries.end() || sodium_memcmp(it->second.digest.data(), d.data(), d.size()) != 0) {
    return std::nullopt;
  }
  return it->second.verified;
}

void JwtCodec::Memo::Put(std::string_view token, const Verified& verified) {
  const Digest d = DigestOf(token);
  const uint64_t slot = SlotOf(d);
  Shard& s = shards_[slot % kShards];
  std::lock_guard lock(s.mu);
  if (s.entries.size() >= max_per_shard_ && !s.entries.contains(slot)) s.entries.clear();
  s.entries[slot] = Entry{d, verified};
}

JwtCodec::JwtCodec(std::string secret, TimeMs ttl_ms)
    : secret_(std::move(secret)), ttl_ms_(ttl_ms) {
  InitSodium();
}

Result<domain::IssuedToken> JwtCodec::Issue(int64_t user_id, int64_t token_version, TimeMs now) {
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) return Status::Internal("token creation failed");
  JwtPtr jwt(raw);
  const int64_t iat = now / 1000;
  const int64_t exp = (now + ttl_ms_) / 1000;
  unsigned char id[16];
  randombytes_buf(id, sizeof id);
  char jti[sizeof id * 2 + 1];
  sodium_bin2hex(jti, sizeof jti, id, sizeof id);
  const std::string sub = std::to_string(user_id);
  if (jwt_add_grant(jwt.get(), "sub", sub.c_str()) != 0 ||
      jwt_add_grant_int(jwt.get(), "iat", iat) != 0 ||
      jwt_add_grant_int(jwt.get(), "exp", exp) != 0 || jwt_add_grant(jwt.get(), "jti", jti) != 0 ||
      jwt_add_grant_int(jwt.get(), "ver", token_version) != 0 ||
      jwt_set_alg(jwt.get(), JWT_ALG_HS256, reinterpret_cast<const unsigned char*>(secret_.data()),
                  static_cast<int>(secret_.size())) != 0) {
    return Status::Internal("token creation failed");
  }
  char* encoded = jwt_encode_str(jwt.get());
  if (encoded == nullptr) return Status::Internal("token creation failed");
  domain::IssuedToken out{encoded, exp * 1000};
  free(encoded);  // libjwt 1.10 allocates with malloc and has no jwt_free_str
  return out;
}

Result<domain::TokenClaims> JwtCodec::Verify(std::string_view token, TimeMs now) {
  const Status bad = Status::Unauthorized("invalid or expired token");
  if (token.empty() || token.size() > kMaxTokenLength) return bad;
  if (token.find('\0') != std::string_view::npos) return bad;  // libjwt would stop at it
  // exp in seconds against now / 1000: exp * 1000 could overflow.
  if (auto known = memo_.Find(token)) {
    if (known->exp <= now / 1000) return bad;
    return known->claims;
  }
  const std::string tok(token);
  jwt_t* raw = nullptr;
  // With a key, libjwt checks the signature for the algorithm the header names; we then
  // insist that algorithm is HS256, so "none" and every other algorithm are refused.
  if (jwt_decode(&raw, tok.c_str(), reinterpret_cast<const unsigned char*>(secret_.data()),
                 static_cast<int>(secret_.size())) != 0 ||
      raw == nullptr) {
    if (raw) jwt_free(raw);
    return bad;
  }
  JwtPtr jwt(raw);
  if (jwt_get_alg(jwt.get()) != JWT_ALG_HS256) return bad;
  int64_t exp = 0;
  int64_t ver = 0;
  if (!IntegerGrant(jwt.get(), "exp", &exp) || exp <= now / 1000) return bad;
  if (!IntegerGrant(jwt.get(), "ver", &ver)) return bad;
  domain::TokenClaims claims;
  if (!ParseUserId(jwt_get_grant(jwt.get(), "sub"), &claims.user_id)) return bad;
  claims.token_version = ver;
  memo_.Put(token, {claims, exp});
  return claims;
}

}  // namespace mmchat::crypto
