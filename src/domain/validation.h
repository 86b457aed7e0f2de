// Field rules of API.md (lengths in code points). Each returns an ok Status or
// kInvalidRequest whose message names the field. Pure functions; thread-safe.
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace mmchat::domain {

Status ValidateUsername(std::string_view username);
Status ValidateEmail(std::string_view email);
Status ValidatePassword(std::string_view password, std::string_view field = "password");
Status ValidateProfilePicture(std::string_view url);

// ASCII lower case (usernames and accepted emails are ASCII).
std::string AsciiLower(std::string_view s);

}  // namespace mmchat::domain
