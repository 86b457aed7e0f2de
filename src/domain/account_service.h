// Account use cases of API.md's Authentication section: signup and password reset verified by
// a one-time code, login with lockout, and token authentication.
//
// Thread-safe (state lives in the stores). Signup, login and reset hash passwords and may send
// mail, so callers must run them off io threads; Authenticate is cheap (a signature check and,
// at most every few seconds per user, one indexed read).
#pragma once

#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>

#include "common/status.h"
#include "common/time.h"
#include "domain/auth_ports.h"
#include "domain/events.h"
#include "domain/store.h"
#include "domain/user.h"
#include "domain/user_cache.h"

namespace mmchat::domain {

struct AccountPolicy {
  int otp_digits = 6;
  TimeMs otp_ttl_ms = 300'000;
  TimeMs resend_window_ms = 30'000;
  int32_t max_code_attempts = 5;
  TimeMs login_window_ms = 15 * 60'000;
  int32_t max_login_failures = 10;
};

struct SignupRequest {
  std::string username;
  std::string email;
  std::string password;
};

struct LoginRequest {
  std::optional<std::string> username;
  std::optional<std::string> email;
  std::string password;
};

// An account an administrator creates directly (no code).
struct NewAccount {
  std::string username;
  std::string email;
};

struct AuthResult {
  IssuedToken token;
  User user;
};

class AccountService {
 public:
  struct Deps {
    UserStore* users;
    CodeStore* codes;
    PasswordHasher* hasher;
    OtpCrypto* otp;
    TokenCodec* tokens;
    CodeSender* sender;
    std::function<TimeMs()> now = NowMs;
    // Runs a task later, off the caller's thread (reset mails go out this way, so that the
    // answer's timing does not tell registered emails apart). Inline when unset.
    std::function<void(std::function<void()>)> background;
    EventBus* bus = nullptr;          // told of revoked tokens (a reset), when set
    UserCache* user_cache = nullptr;  // token versions are read through it (required)
  };

  AccountService(Deps deps, AccountPolicy policy);

  // Returns the code lifetime in seconds.
  Result<int64_t> SignupInitiate(const SignupRequest& req);
  Result<AuthResult> SignupVerify(const std::string& email, const std::string& otp);
  Result<AuthResult> Login(const LoginRequest& req);
  Status ForgotInitiate(const std::string& email);
  Status ForgotReset(const std::string& email, const std::string& otp,
                     const std::string& new_password);

  // The user id of a valid, unrevoked token of an existing user; kUnauthorized otherwise.
  Result<int64_t> Authenticate(std::string_view token);
  // The same answer from memory alone, or nullopt when it needs the user's row (then call
  // Authenticate): lets an io thread answer without waiting for the database.
  std::optional<Result<int64_t>> AuthenticateCached(std::string_view token);
  // The same answer from the user's row read now, never the cache: in a cluster a password
  // reset on another node reaches this node's cache one bus hop later.
  Result<int64_t> AuthenticateFresh(std::string_view token);

  // For administrators (`mmchat user add`): verified accounts without a code, all with one
  // password, hashed once, each with a fresh token. Every account is validated as in signup;
  // nothing is created when one is invalid or taken (then kConflict).
  Result<std::vector<AuthResult>> CreateAccounts(const std::vector<NewAccount>& accounts,
                                                 const std::string& password);

  // For administrators (`mmchat user set-password|disable|enable|delete`). Each revokes the
  // user's tokens through token_version (the store's write), makes the cache forget the row
  // and publishes TokensRevoked, so that this process's connections of the user end.
  // SetPassword applies signup's password rules and hashes as signup does; kConflict for a
  // deleted account. SetStatus takes kActive or kDisabled (UserStore::SetUserStatus).
  // Erase erases the personal data (UserStore::EraseUser); leaving the conversations is the
  // ConversationService's.
  Status SetPassword(int64_t user_id, const std::string& new_password);
  Status SetStatus(int64_t user_id, UserStatus status);
  Status Erase(int64_t user_id);

  const AccountPolicy& policy() const { return policy_; }

 private:
  // The resend window, shared by signup and forgot (each purpose has its own row).
  Status CheckResendWindow(CodePurpose purpose, const std::string& email, TimeMs now);
  // Stores a fresh code; returns the plain code for the caller to deliver.
  Result<std::string> StoreNewCode(PendingCode code);
  // Checks `otp` against the stored code and consumes it on success.
  Result<PendingCode> UseCode(CodePurpose purpose, const std::string& email,
                              const std::string& otp);
  Result<AuthResult> IssueToken(const User& user, int64_t token_version);
  // The user's tokens were revoked or its row changed: the cache forgets it, the bus is told.
  void Revoked(int64_t user_id);
  // The answer for verified `claims` given the user's kept row, or nullopt when the row must
  // be read: a token newer than the version kept (a reset this process has not heard of).
  static std::optional<Result<int64_t>> CheckVersion(const TokenClaims& claims,
                                                     const std::optional<CachedUser>& kept);
  // Authenticate, from the cache first unless `fresh`.
  Result<int64_t> Authenticate(std::string_view token, bool fresh);

  Deps d_;
  AccountPolicy policy_;
  // Verified against for unknown users, so that timing does not tell which accounts exist.
  std::once_flag dummy_once_;
  std::string dummy_hash_;
};

}  // namespace mmchat::domain
