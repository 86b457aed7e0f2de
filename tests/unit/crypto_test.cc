// crypto/: Argon2id password hashing, one-time codes and JWT HS256 tokens. Foreign tokens
// (alg "none", HS512, other secrets, tampered, missing claims) are built with libjwt itself.
#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <jwt.h>
#include <sodium.h>

#include <atomic>
#include <cstdlib>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>

#include "crypto/argon2_hasher.h"
#include "crypto/jwt_codec.h"
#include "crypto/sodium_otp.h"

namespace mmchat::crypto {
namespace {

using domain::CodePurpose;
using ::testing::StartsWith;

// ---------------------------------------------------------------------------------------------
// Argon2Hasher
// ---------------------------------------------------------------------------------------------

// Small limits keep the tests fast; the algorithm and format are the same.
Argon2Hasher FastHasher() { return Argon2Hasher(1, 8192 * 1024); }

TEST(Argon2HasherTest, HashIsSelfDescribingArgon2id) {
  Argon2Hasher h = FastHasher();
  auto hash = h.Hash("correct horse battery staple");
  ASSERT_TRUE(hash.ok()) << hash.status().message();
  EXPECT_THAT(*hash, StartsWith("$argon2id$"));
  EXPECT_EQ(hash->find("correct horse"), std::string::npos);
}

TEST(Argon2HasherTest, VerifiesRightPasswordOnly) {
  Argon2Hasher h = FastHasher();
  auto hash = h.Hash("s3cret-password");
  ASSERT_TRUE(hash.ok());
  EXPECT_TRUE(h.Verify(*hash, "s3cret-password"));
  EXPECT_FALSE(h.Verify(*hash, "s3cret-passwore"));
  EXPECT_FALSE(h.Verify(*hash, "s3cret-password "));
  EXPECT_FALSE(h.Verify(*hash, ""));
}

TEST(Argon2HasherTest, SaltedHashesDiffer) {
  Argon2Hasher h = FastHasher();
  auto a = h.Hash("same password");
  auto b = h.Hash("same password");
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(*a, *b);
  EXPECT_TRUE(h.Verify(*a, "same password"));
  EXPECT_TRUE(h.Verify(*b, "same password"));
}

TEST(Argon2HasherTest, PasswordWithNulAndMultibyte) {
  Argon2Hasher h = FastHasher();
  const std::string pw("pa\0ss\xC3\xA9word", 11);  // 11 bytes: p a NUL s s C3 A9 w o r d
  auto hash = h.Hash(pw);
  ASSERT_TRUE(hash.ok());
  EXPECT_TRUE(h.Verify(*hash, pw));
  EXPECT_FALSE(h.Verify(*hash, "pa"));  // no truncation at the NUL
}

TEST(Argon2HasherTest, GarbageHashNeverVerifies) {
  Argon2Hasher h = FastHasher();
  EXPECT_FALSE(h.Verify("", "password"));
  EXPECT_FALSE(h.Verify("h:password", "password"));
  EXPECT_FALSE(h.Verify("$argon2id$v=19$m=8192,t=1,p=1$garbage", "password"));
}

// ---------------------------------------------------------------------------------------------
// SodiumOtp
// ---------------------------------------------------------------------------------------------

TEST(SodiumOtpTest, GenerateGivesExactlyNDigits) {
  SodiumOtp otp("otp-key");
  for (int digits : {4, 6, 8, 10}) {
    for (int i = 0; i < 20; ++i) {
      const std::string code = otp.Generate(digits);
      ASSERT_EQ(code.size(), static_cast<size_t>(digits));
      for (char c : code) ASSERT_TRUE(c >= '0' && c <= '9') << code;
    }
  }
}

TEST(SodiumOtpTest, GenerateIsRandom) {
  SodiumOtp otp("otp-key");
  std::set<std::string> seen;
  for (int i = 0; i < 50; ++i) seen.insert(otp.Generate(10));
  // 50 draws from 10^10 values: a repeat is (practically) impossible for a random source.
  EXPECT_EQ(seen.size(), 50u);
}

TEST(SodiumOtpTest, HashIsDeterministicHexAndHidesTheCode) {
  SodiumOtp otp("otp-key");
  const std::string h = otp.Hash(CodePurpose::kSignup, "a@example.com", "123456");
  EXPECT_EQ(h, otp.Hash(CodePurpose::kSignup, "a@example.com", "123456"));
  EXPECT_EQ(h.size(), 64u);  // HMAC-SHA-256, hex
  EXPECT_EQ(h.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_EQ(h.find("123456"), std::string::npos);
}

TEST(SodiumOtpTest, HashBindsPurposeEmailCodeAndKey) {
  SodiumOtp otp("otp-key");
  const std::string base = otp.Hash(CodePurpose::kSignup, "a@example.com", "123456");
  EXPECT_NE(base, otp.Hash(CodePurpose::kReset, "a@example.com", "123456"));
  EXPECT_NE(base, otp.Hash(CodePurpose::kSignup, "b@example.com", "123456"));
  EXPECT_NE(base, otp.Hash(CodePurpose::kSignup, "a@example.com", "123457"));
  // The separator keeps email and code apart: "a@x.co" + "1" vs "a@x.c" + "o1".
  EXPECT_NE(otp.Hash(CodePurpose::kSignup, "a@x.co", "1"),
            otp.Hash(CodePurpose::kSignup, "a@x.c", "o1"));
  SodiumOtp other("another-key");
  EXPECT_NE(base, other.Hash(CodePurpose::kSignup, "a@example.com", "123456"));
}

TEST(SodiumOtpTest, Matches) {
  SodiumOtp otp("otp-key");
  const std::string code = otp.Generate(6);
  const std::string stored = otp.Hash(CodePurpose::kReset, "u@example.com", code);
  EXPECT_TRUE(otp.Matches(stored, CodePurpose::kReset, "u@example.com", code));
  EXPECT_FALSE(otp.Matches(stored, CodePurpose::kSignup, "u@example.com", code));
  EXPECT_FALSE(otp.Matches(stored, CodePurpose::kReset, "v@example.com", code));
  std::string wrong = code;
  wrong[0] = static_cast<char>('0' + (wrong[0] - '0' + 1) % 10);
  EXPECT_FALSE(otp.Matches(stored, CodePurpose::kReset, "u@example.com", wrong));
  EXPECT_FALSE(otp.Matches("", CodePurpose::kReset, "u@example.com", code));
  EXPECT_FALSE(otp.Matches(stored.substr(0, 32), CodePurpose::kReset, "u@example.com", code));
  EXPECT_FALSE(otp.Matches(stored + "00", CodePurpose::kReset, "u@example.com", code));
  SodiumOtp other("another-key");
  EXPECT_FALSE(other.Matches(stored, CodePurpose::kReset, "u@example.com", code));
}

// ---------------------------------------------------------------------------------------------
// JwtCodec
// ---------------------------------------------------------------------------------------------

constexpr char kSecret[] = "unit-test-secret-0123456789abcdef";
constexpr TimeMs kNow = 1'700'000'000'000;
constexpr TimeMs kTtl = 60 * 60'000;

struct JwtDeleter {
  void operator()(jwt_t* j) const { jwt_free(j); }
};
using JwtPtr = std::unique_ptr<jwt_t, JwtDeleter>;

// Claims for a hand-made token; an empty optional leaves the claim out.
struct Claims {
  std::optional<std::string> sub = "42";
  std::optional<long> iat = kNow / 1000;
  std::optional<long> exp = (kNow + kTtl) / 1000;
  std::optional<long> ver = 0;
  std::string jti = "0123456789abcdef";
  std::string padding;  // an extra claim to make the token long
};

// Builds and signs a token with libjwt. JWT_ALG_NONE makes an unsigned token.
std::string MakeToken(jwt_alg_t alg, const std::string& key, const Claims& c) {
  jwt_t* raw = nullptr;
  if (jwt_new(&raw) != 0) return "";
  JwtPtr jwt(raw);
  if (c.sub) jwt_add_grant(jwt.get(), "sub", c.sub->c_str());
  if (c.iat) jwt_add_grant_int(jwt.get(), "iat", *c.iat);
  if (c.exp) jwt_add_grant_int(jwt.get(), "exp", *c.exp);
  if (c.ver) jwt_add_grant_int(jwt.get(), "ver", *c.ver);
  jwt_add_grant(jwt.get(), "jti", c.jti.c_str());
  if (!c.padding.empty()) jwt_add_grant(jwt.get(), "pad", c.padding.c_str());
  const bool none = alg == JWT_ALG_NONE;
  if (jwt_set_alg(jwt.get(), alg,
                  none ? nullptr : reinterpret_cast<const unsigned char*>(key.data()),
                  none ? 0 : static_cast<int>(key.size())) != 0) {
    return "";
  }
  char* s = jwt_encode_str(jwt.get());
  if (s == nullptr) return "";
  std::string out(s);
  free(s);
  return out;
}

std::string Base64Url(const std::string& bin) {
  std::string out(sodium_base64_ENCODED_LEN(bin.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                  '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bin.data()),
                    bin.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.find('\0'));
  return out;
}

std::string Base64UrlDecode(const std::string& b64) {
  std::string out(b64.size(), '\0');
  size_t len = 0;
  if (sodium_base642bin(reinterpret_cast<unsigned char*>(out.data()), out.size(), b64.data(),
                        b64.size(), nullptr, &len, nullptr,
                        sodium_base64_VARIANT_URLSAFE_NO_PADDING) != 0) {
    return "";
  }
  out.resize(len);
  return out;
}

struct Parts {
  std::string header, payload, signature;
};
Parts Split(const std::string& token) {
  const size_t a = token.find('.');
  const size_t b = token.find('.', a + 1);
  return {token.substr(0, a), token.substr(a + 1, b - a - 1), token.substr(b + 1)};
}

class JwtCodecTest : public ::testing::Test {
 protected:
  void ExpectRefused(const std::string& token, TimeMs now = kNow) {
    auto r = codec_.Verify(token, now);
    ASSERT_FALSE(r.ok()) << "accepted: " << token;
    EXPECT_EQ(r.status().code(), StatusCode::kUnauthorized);
  }

  JwtCodec codec_{kSecret, kTtl};
};

TEST_F(JwtCodecTest, RoundTrip) {
  auto issued = codec_.Issue(42, 7, kNow);
  ASSERT_TRUE(issued.ok()) << issued.status().message();
  EXPECT_EQ(issued->expires_at, kNow + kTtl);
  auto claims = codec_.Verify(issued->token, kNow);
  ASSERT_TRUE(claims.ok()) << claims.status().message();
  EXPECT_EQ(claims->user_id, 42);
  EXPECT_EQ(claims->token_version, 7);
}

TEST_F(JwtCodecTest, ExpiresAtIsWholeSecondsOfExp) {
  auto issued = codec_.Issue(1, 0, kNow + 1234);
  ASSERT_TRUE(issued.ok());
  EXPECT_EQ(issued->expires_at, (kNow + 1234 + kTtl) / 1000 * 1000);
}

TEST_F(JwtCodecTest, ClaimsOnTheWire) {
  auto issued = codec_.Issue(42, 3, kNow);
  ASSERT_TRUE(issued.ok());
  jwt_t* raw = nullptr;
  ASSERT_EQ(jwt_decode(&raw, issued->token.c_str(), reinterpret_cast<const unsigned char*>(kSecret),
                       sizeof kSecret - 1),
            0);
  JwtPtr jwt(raw);
  EXPECT_EQ(jwt_get_alg(jwt.get()), JWT_ALG_HS256);
  ASSERT_NE(jwt_get_grant(jwt.get(), "sub"), nullptr);
  EXPECT_STREQ(jwt_get_grant(jwt.get(), "sub"), "42");  // a string, per API.md
  EXPECT_EQ(jwt_get_grant_int(jwt.get(), "iat"), kNow / 1000);
  EXPECT_EQ(jwt_get_grant_int(jwt.get(), "exp"), (kNow + kTtl) / 1000);
  EXPECT_EQ(jwt_get_grant_int(jwt.get(), "ver"), 3);
  ASSERT_NE(jwt_get_grant(jwt.get(), "jti"), nullptr);
  EXPECT_GE(std::string(jwt_get_grant(jwt.get(), "jti")).size(), 16u);
}

TEST_F(JwtCodecTest, EveryTokenHasItsOwnJti) {
  auto a = codec_.Issue(42, 0, kNow);
  auto b = codec_.Issue(42, 0, kNow);
  ASSERT_TRUE(a.ok() && b.ok());
  EXPECT_NE(a->token, b->token);
}

TEST_F(JwtCodecTest, HandMadeHs256TokenWithTheSecretIsAccepted) {
  // Guards the tests below: what they change, and only that, makes the token fail.
  auto claims = codec_.Verify(MakeToken(JWT_ALG_HS256, kSecret, Claims{}), kNow);
  ASSERT_TRUE(claims.ok()) << claims.status().message();
  EXPECT_EQ(claims->user_id, 42);
  EXPECT_EQ(claims->token_version, 0);
}

TEST_F(JwtCodecTest, ExpiredTokenRefused) {
  auto issued = codec_.Issue(42, 0, kNow);
  ASSERT_TRUE(issued.ok());
  EXPECT_TRUE(codec_.Verify(issued->token, kNow + kTtl - 1).ok());
  ExpectRefused(issued->token, kNow + kTtl);
  ExpectRefused(issued->token, kNow + kTtl + 24 * 3600'000);
}

TEST_F(JwtCodecTest, AVerifiedTokenIsRememberedButNothingLikeIt) {
  auto issued = codec_.Issue(42, 5, kNow);
  ASSERT_TRUE(issued.ok());
  const std::string& token = issued->token;
  for (int i = 0; i < 2; ++i) {  // verified, then from the memo
    auto claims = codec_.Verify(token, kNow);
    ASSERT_TRUE(claims.ok()) << i;
    EXPECT_EQ(claims->user_id, 42);
    EXPECT_EQ(claims->token_version, 5);
  }
  std::string flipped = token;
  flipped.back() = flipped.back() == 'A' ? 'B' : 'A';
  ExpectRefused(flipped);
  ExpectRefused(token + "A");
  ExpectRefused(token.substr(0, token.size() - 1));
  // Remembered by this codec only: another secret still refuses it.
  JwtCodec other("another-secret-0123456789abcdef", kTtl);
  EXPECT_FALSE(other.Verify(token, kNow).ok());
}

TEST_F(JwtCodecTest, ConcurrentVerifiesOfRememberedTokensAgree) {
  // Many threads verify the same tokens at once, some for the first time, some from the memo.
  std::vector<std::string> tokens;
  for (int64_t user = 1; user <= 50; ++user) {
    auto issued = codec_.Issue(user, user % 3, kNow);
    ASSERT_TRUE(issued.ok());
    tokens.push_back(issued->token);
  }
  std::atomic<int> wrong{0};
  std::vector<std::thread> threads;
  for (int t = 0; t < 4; ++t) {
    threads.emplace_back([&, t] {
      for (int round = 0; round < 20; ++round) {
        for (size_t i = 0; i < tokens.size(); ++i) {
          const size_t k = (i + static_cast<size_t>(t) * 13) % tokens.size();
          auto claims = codec_.Verify(tokens[k], kNow);
          const auto user = static_cast<int64_t>(k) + 1;
          if (!claims.ok() || claims->user_id != user || claims->token_version != user % 3) ++wrong;
          if (codec_.Verify(tokens[k], kNow + kTtl).ok()) ++wrong;  // expired, memo or not
        }
      }
    });
  }
  for (auto& th : threads) th.join();
  EXPECT_EQ(wrong.load(), 0);
}

TEST_F(JwtCodecTest, OtherSecretRefused) {
  JwtCodec other("another-secret-0123456789abcdef", kTtl);
  auto issued = other.Issue(42, 0, kNow);
  ASSERT_TRUE(issued.ok());
  ExpectRefused(issued->token);
  ExpectRefused(MakeToken(JWT_ALG_HS256, "another-secret-0123456789abcdef", Claims{}));
}

TEST_F(JwtCodecTest, AlgNoneRefused) {
  const std::string unsigned_token = MakeToken(JWT_ALG_NONE, "", Claims{});
  ASSERT_FALSE(unsigned_token.empty());
  ExpectRefused(unsigned_token);

  // The same by hand: a valid token's payload under an {"alg":"none"} header, with no
  // signature and with the original signature.
  auto issued = codec_.Issue(42, 0, kNow);
  ASSERT_TRUE(issued.ok());
  const Parts p = Split(issued->token);
  for (const char* header : {R"({"alg":"none","typ":"JWT"})", R"({"alg":"None","typ":"JWT"})",
                             R"({"alg":"NONE"})", R"({"typ":"JWT"})"}) {
    SCOPED_TRACE(header);
    const std::string h = Base64Url(header);
    ExpectRefused(h + "." + p.payload + ".");
    ExpectRefused(h + "." + p.payload);
    ExpectRefused(h + "." + p.payload + "." + p.signature);
  }
}

TEST_F(JwtCodecTest, OtherHmacAlgorithmsWithTheSameSecretRefused) {
  const std::string hs512 = MakeToken(JWT_ALG_HS512, kSecret, Claims{});
  ASSERT_FALSE(hs512.empty());
  ExpectRefused(hs512);
  const std::string hs384 = MakeToken(JWT_ALG_HS384, kSecret, Claims{});
  ASSERT_FALSE(hs384.empty());
  ExpectRefused(hs384);
}

TEST_F(JwtCodecTest, TamperedPayloadRefused) {
  auto issued = codec_.Issue(42, 0, kNow);
  ASSERT_TRUE(issued.ok());
  const Parts p = Split(issued->token);
  std::string payload = Base64UrlDecode(p.payload);
  ASSERT_NE(payload.find("\"42\""), std::string::npos) << payload;
  payload.replace(payload.find("\"42\""), 4, "\"43\"");
  ExpectRefused(p.header + "." + Base64Url(payload) + "." + p.signature);
  // A flipped signature character.
  std::string sig = p.signature;
  sig[sig.size() / 2] = sig[sig.size() / 2] == 'A' ? 'B' : 'A';
  ExpectRefused(p.header + "." + p.payload + "." + sig);
}

TEST_F(JwtCodecTest, MissingOrMalformedClaimsRefused) {
  Claims no_sub;
  no_sub.sub.reset();
  ExpectRefused(MakeToken(JWT_ALG_HS256, kSecret, no_sub));
  for (const char* sub : {"", "abc", "0", "-5", "42x", " 42", "+42", "99999999999999999999999"}) {
    SCOPED_TRACE(sub);
    Claims c;
    c.sub = sub;
    ExpectRefused(MakeToken(JWT_ALG_HS256, kSecret, c));
  }
  Claims no_exp;
  no_exp.exp.reset();
  ExpectRefused(MakeToken(JWT_ALG_HS256, kSecret, no_exp));
  Claims no_ver;
  no_ver.ver.reset();
  ExpectRefused(MakeToken(JWT_ALG_HS256, kSecret, no_ver));
}

TEST_F(JwtCodecTest, GarbageRefused) {
  for (const char* token : {"", "garbage", "a.b.c", "..", "...", "a.b", "eyJhbGciOiJIUzI1NiJ9",
                            "eyJhbGciOiJIUzI1NiJ9..", "Bearer x.y.z", "\xFF\xFE.\x01.\x02"}) {
    SCOPED_TRACE(token);
    ExpectRefused(token);
  }
  // A NUL inside the token must not cut it short to something valid.
  auto issued = codec_.Issue(42, 0, kNow);
  ASSERT_TRUE(issued.ok());
  ExpectRefused(issued->token + std::string("\0garbage", 8));
}

TEST_F(JwtCodecTest, OverLongTokenRefused) {
  ExpectRefused(std::string(100'000, 'a'));
  // Correctly signed, but longer than any token we issue.
  Claims c;
  c.padding = std::string(5000, 'p');
  const std::string long_token = MakeToken(JWT_ALG_HS256, kSecret, c);
  ASSERT_GT(long_token.size(), 4096u);
  ExpectRefused(long_token);
}

TEST(GenerateSecretTest, RandomHex) {
  const std::string a = GenerateSecret();
  const std::string b = GenerateSecret();
  EXPECT_EQ(a.size(), 64u);
  EXPECT_EQ(a.find_first_not_of("0123456789abcdef"), std::string::npos);
  EXPECT_NE(a, b);
}

}  // namespace
}  // namespace mmchat::crypto
