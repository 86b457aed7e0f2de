#pragma once

namespace mmchat::crypto {

// Initializes libsodium once; safe to call from any thread, any number of times.
// Returns false when the library cannot be used (then nothing in crypto/ works).
bool InitSodium();

}  // namespace mmchat::crypto
