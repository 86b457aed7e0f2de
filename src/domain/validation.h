// Field rules of API.md (lengths in code points). Each returns an ok Status or
// kInvalidRequest whose message names the field. Pure functions; thread-safe.
#pragma once

#include <cstddef>
#include <string>
#include <string_view>

#include "common/status.h"

namespace mmchat::domain {

Status ValidateUsername(std::string_view username);
Status ValidateEmail(std::string_view email);
Status ValidatePassword(std::string_view password, std::string_view field = "password");
Status ValidateProfilePicture(std::string_view url);
// A text field a store keeps or looks up: `min` to `max` code points of valid UTF-8, and no
// U+0000, which PostgreSQL's text cannot hold (so neither store takes it).
Status ValidateText(std::string_view field, std::string_view text, size_t min, size_t max);
// A reaction: 1 to 16 code points of valid UTF-8 with no whitespace or control character.
Status ValidateEmoji(std::string_view emoji);
// Whether a store can hold `text` (no U+0000).
bool Storable(std::string_view text);

// ASCII lower case (usernames and accepted emails are ASCII).
std::string AsciiLower(std::string_view s);

}  // namespace mmchat::domain
