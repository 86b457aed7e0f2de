// Storage interfaces the domain needs. Implemented by store/<backend>; the domain never sees
// SQL. Every implementation must be safe to call from many threads at once.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "common/status.h"
#include "domain/user.h"

namespace mmchat::domain {

struct LoginGate {
  bool allowed = false;
  TimeMs window_start = 0;  // start of the failure window (for Retry-After when refused)
};

// The conflicts a user write can meet, worded once for every backend.
inline constexpr const char* kUsernameTaken = "username already taken";
inline constexpr const char* kEmailTaken = "email already registered";
inline constexpr const char* kUserNotFound = "user not found";
inline constexpr const char* kUserDeleted = "the account was deleted";
// What EraseUser names a deleted account (ValidateUsername keeps the prefix from signups).
inline constexpr const char* kDeletedUsernamePrefix = "deleted-";

class UserStore {
 public:
  virtual ~UserStore() = default;

  // Inserts a verified user. kConflict (kUsernameTaken or kEmailTaken) when the username or
  // email is taken (case-insensitive).
  virtual Result<User> CreateUser(const NewUser& user) = 0;
  // Inserts many verified users in one transaction: all or none (kConflict when one is taken).
  virtual Result<std::vector<User>> CreateUsers(const std::vector<NewUser>& users) = 0;
  virtual Result<std::optional<UserRecord>> FindUserById(int64_t id) = 0;
  // Both look-ups are case-insensitive.
  virtual Result<std::optional<UserRecord>> FindUserByEmail(std::string_view email) = 0;
  virtual Result<std::optional<UserRecord>> FindUserByUsername(std::string_view username) = 0;
  // Users whose username starts with `prefix` (case-insensitive), ordered by username.
  virtual Result<std::vector<User>> SearchUsersByPrefix(std::string_view prefix, int limit) = 0;
  // kConflict when the new username is taken by another user; kNotFound for an unknown id.
  virtual Status UpdateProfile(int64_t id, const ProfileUpdate& update) = 0;
  // Stores a new password hash, increments token_version and clears login failures.
  virtual Status ReplacePassword(int64_t id, const std::string& password_hash) = 0;
  // Admits one login attempt, atomically: refused when `max_failures` failures already lie in
  // the window that started at failed_window_start and lasts `window_ms`; otherwise counted as
  // a failure up front (a new window starts at `now` when the old one is over), so that
  // concurrent attempts cannot check more passwords than the limit. A success then calls
  // ClearLoginFailures.
  virtual Result<LoginGate> BeginLoginAttempt(int64_t id, TimeMs now, TimeMs window_ms,
                                              int32_t max_failures) = 0;
  virtual Status ClearLoginFailures(int64_t id) = 0;
  // Records when the user's last connection closed; an older time than the one kept is
  // ignored (two nodes of a cluster may store their closes out of order).
  virtual Status SetLastSeen(int64_t id, TimeMs at) = 0;

  // For administrators (`mmchat user ...`), off the hot paths.
  // Up to `limit` users of every status in id order, skipping the first `offset`; only those
  // whose username starts with `prefix` (case-insensitive) when it is not empty.
  virtual Result<std::vector<UserRecord>> ListUsers(std::string_view prefix, int limit,
                                                    int offset) = 0;
  // kDisabled disables the account and increments token_version (every token it holds stops
  // working); kActive enables it again (old tokens stay revoked). kNotFound for an unknown id,
  // kConflict (kUserDeleted) for a deleted account, kInvalidRequest for kDeleted (EraseUser).
  virtual Status SetUserStatus(int64_t id, UserStatus status) = 0;
  // Erases the account's personal data: username `deleted-<id>`, email `deleted-<id>` (not an
  // address: the real one is free again), no password hash (no login), no picture, no
  // last_seen, status deleted, token_version incremented. Messages and memberships are left to
  // the caller. kNotFound for an unknown id; kConflict when the username is taken.
  virtual Status EraseUser(int64_t id) = 0;
};

enum class CodePurpose { kSignup, kReset };

// A one-time code waiting to be used. Kept after use (used = true) so that the resend window
// still applies and a second use is refused.
struct PendingCode {
  CodePurpose purpose = CodePurpose::kSignup;
  std::string email;  // normalized to lower case
  std::string code_hash;
  TimeMs sent_at = 0;
  TimeMs expires_at = 0;
  int32_t attempts = 0;  // wrong tries so far
  bool used = false;
  // Signup only: the account to create on verify.
  std::string username;
  std::string password_hash;
};

class CodeStore {
 public:
  virtual ~CodeStore() = default;

  virtual Result<std::optional<PendingCode>> FindCode(CodePurpose purpose,
                                                      std::string_view email) = 0;
  // Inserts or replaces the code for (purpose, email).
  virtual Status PutCode(const PendingCode& code) = 0;
  virtual Status DeleteCode(CodePurpose purpose, std::string_view email) = 0;
  // Counts one try against the unused code for (purpose, email) and returns the code,
  // atomically; nullopt when there is no usable code (none, used, or `max_attempts` tries
  // spent). Counting before the comparison means concurrent guesses cannot exceed the limit.
  virtual Result<std::optional<PendingCode>> ReserveCodeAttempt(CodePurpose purpose,
                                                                std::string_view email,
                                                                int32_t max_attempts) = 0;
  // Deletes every code sent before `sent_before` (expired and past the resend window).
  virtual Status PurgeCodes(TimeMs sent_before) = 0;
  // Marks the code sent at `sent_at` used. Returns false when it was already used or was
  // replaced meanwhile, so that two concurrent uses cannot both succeed.
  virtual Result<bool> ConsumeCode(CodePurpose purpose, std::string_view email, TimeMs sent_at) = 0;
};

class SettingsStore {
 public:
  virtual ~SettingsStore() = default;
  // Returns the stored value of `key`, storing `value_if_absent` first when there is none.
  virtual Result<std::string> GetOrCreateSetting(std::string_view key,
                                                 std::string_view value_if_absent) = 0;
};

// Lets /readyz ask whether the database answers.
class StoreHealth {
 public:
  virtual ~StoreHealth() = default;
  virtual Status Ping() = 0;
};

}  // namespace mmchat::domain
