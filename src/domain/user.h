// Plain account data passed between the domain, the stores and the transports.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/time.h"

namespace mmchat::domain {

// An account's state, set by an administrator (`mmchat user disable|enable|delete`). A
// disabled account cannot log in; a deleted one had its personal data erased and is gone for
// clients (README, "Administration"). Never shown on the wire.
enum class UserStatus { kActive, kDisabled, kDeleted };

inline const char* UserStatusName(UserStatus s) {
  return s == UserStatus::kActive ? "active" : s == UserStatus::kDisabled ? "disabled" : "deleted";
}
inline UserStatus ParseUserStatus(std::string_view name) {
  return name == "disabled"  ? UserStatus::kDisabled
         : name == "deleted" ? UserStatus::kDeleted
                             : UserStatus::kActive;
}

// A verified account as clients see it. `email` is shown only to the user itself.
struct User {
  int64_t id = 0;
  std::string username;
  std::string email;
  std::optional<std::string> profile_picture;
  TimeMs created_at = 0;
  std::optional<TimeMs> last_seen;
  bool online = false;  // filled in by the domain from presence, never stored
  UserStatus status = UserStatus::kActive;
};

// A user row with the secrets the account use cases need.
struct UserRecord {
  User user;
  std::string password_hash;
  int64_t token_version = 0;  // bumped by a password reset; older tokens stop working
  int32_t failed_logins = 0;  // failures counted in the current window
  TimeMs failed_window_start = 0;
};

struct NewUser {
  std::string username;
  std::string email;
  std::string password_hash;
  TimeMs created_at = 0;
};

// Fields of PUT /api/me; an absent optional leaves the field unchanged.
struct ProfileUpdate {
  std::optional<std::string> username;
  std::optional<std::optional<std::string>> profile_picture;  // inner nullopt clears it
};

}  // namespace mmchat::domain
