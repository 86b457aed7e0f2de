// Bearer tokens. The first byte picks how the rest is used:
//  - even: the token text as a client sends it (header, payload and signature all hostile);
//  - odd:  the claims JSON of a token signed with the right key, so that the claim checks
//          behind the signature (exp, ver, sub) are reached too.
#include <sodium.h>

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "crypto/jwt_codec.h"

namespace {

const std::string kSecret = "fuzz-secret-0123456789abcdef0123456789abcdef";
constexpr mmchat::TimeMs kNow = 1'800'000'000'000;  // fixed, so that a seed stays valid

std::string Base64Url(std::string_view bytes) {
  std::string out(sodium_base64_encoded_len(bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING),
                  '\0');
  sodium_bin2base64(out.data(), out.size(), reinterpret_cast<const unsigned char*>(bytes.data()),
                    bytes.size(), sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.size() - 1);  // the terminating NUL
  return out;
}

std::string Signed(std::string_view claims) {
  const std::string signing_input =
      Base64Url(R"({"alg":"HS256","typ":"JWT"})") + "." + Base64Url(claims);
  unsigned char mac[crypto_auth_hmacsha256_BYTES];
  crypto_auth_hmacsha256_state state;
  crypto_auth_hmacsha256_init(&state, reinterpret_cast<const unsigned char*>(kSecret.data()),
                              kSecret.size());
  crypto_auth_hmacsha256_update(
      &state, reinterpret_cast<const unsigned char*>(signing_input.data()), signing_input.size());
  crypto_auth_hmacsha256_final(&state, mac);
  return signing_input + "." +
         Base64Url(std::string_view(reinterpret_cast<const char*>(mac), sizeof mac));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const int sodium_ready = sodium_init();
  (void)sodium_ready;
  if (size == 0) return 0;
  static mmchat::crypto::JwtCodec codec(kSecret, 60'000);
  const std::string_view rest(reinterpret_cast<const char*>(data) + 1, size - 1);
  auto claims = codec.Verify(data[0] % 2 == 0 ? std::string(rest) : Signed(rest), kNow);
  // Whatever passes must have come from a well-formed, positive user id.
  if (claims.ok() && claims->user_id <= 0) __builtin_trap();
  return 0;
}
