// UTF-8 validation and code-point counting: API.md measures text lengths in code points.
// Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <optional>
#include <string_view>

namespace mmchat {

// Number of Unicode code points in `s`, or nullopt when `s` is not valid UTF-8 (overlong
// forms, surrogates and values above U+10FFFF are invalid).
std::optional<size_t> Utf8Length(std::string_view s);

}  // namespace mmchat
