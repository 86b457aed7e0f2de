// UTF-8 validation and code-point counting: API.md measures text lengths in code points. And
// LogSafe, which makes client text harmless for a log line. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mmchat {

// Number of Unicode code points in `s`, or nullopt when `s` is not valid UTF-8 (overlong
// forms, surrogates and values above U+10FFFF are invalid).
std::optional<size_t> Utf8Length(std::string_view s);

// The length of the valid UTF-8 sequence at s[i], with its code point in *cp, or 0 when the
// bytes there are not one (overlong forms, surrogates, values above U+10FFFF, truncation).
size_t Utf8Decode(std::string_view s, size_t i, uint32_t* cp);

// `s` as it may appear inside one log line, for text a client chose (an address, a detail):
// printable ASCII and valid UTF-8 pass unchanged; control bytes, DEL, C1 controls, bidi
// overrides and bytes of invalid UTF-8 become `\xNN` (so no line break, terminal escape or
// reordering reaches the log), and `\` becomes `\\` (so an escape cannot be faked). Input past
// `max_bytes` is cut at a character boundary and marked with "...".
std::string LogSafe(std::string_view s, size_t max_bytes = 256);

}  // namespace mmchat
