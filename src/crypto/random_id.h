// Unguessable opaque ids (upload ids): random bytes from libsodium, base64url without padding.
#pragma once

#include <cstddef>
#include <string>

namespace mmchat::crypto {

// `bytes` random bytes as base64url (20 bytes: 27 characters, 160 bits). Thread-safe.
std::string RandomId(size_t bytes = 20);

}  // namespace mmchat::crypto
