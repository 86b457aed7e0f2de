#include "crypto/random_id.h"

#include <sodium.h>

#include <vector>

#include "crypto/sodium_init.h"

namespace mmchat::crypto {

std::string RandomId(size_t bytes) {
  InitSodium();
  std::vector<unsigned char> raw(bytes);
  randombytes_buf(raw.data(), raw.size());
  std::string out(sodium_base64_ENCODED_LEN(bytes, sodium_base64_VARIANT_URLSAFE_NO_PADDING), '\0');
  sodium_bin2base64(out.data(), out.size(), raw.data(), raw.size(),
                    sodium_base64_VARIANT_URLSAFE_NO_PADDING);
  out.resize(out.find('\0'));
  return out;
}

}  // namespace mmchat::crypto
