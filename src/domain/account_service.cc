#include "domain/account_service.h"

#include <algorithm>
#include <string>
#include <utility>

#include "domain/validation.h"

namespace mmchat::domain {
namespace {

bool IsDigits(std::string_view s) {
  for (char c : s) {
    if (c < '0' || c > '9') return false;
  }
  return !s.empty();
}

// The body holds the code as its only run of digits (API.md), so no other numbers appear.
OutgoingMail CodeMail(CodePurpose purpose, const std::string& to, const std::string& code) {
  OutgoingMail mail;
  mail.to = to;
  if (purpose == CodePurpose::kSignup) {
    mail.subject = "Your MmChat verification code";
    mail.body = "Welcome to MmChat.\r\n\r\nYour verification code is " + code +
                "\r\n\r\nIt expires soon and can be used once. If you did not sign up, "
                "ignore this mail.\r\n";
  } else {
    mail.subject = "Your MmChat password reset code";
    mail.body = "Your password reset code is " + code +
                "\r\n\r\nIt expires soon and can be used once. If you did not ask to reset "
                "your password, ignore this mail.\r\n";
  }
  return mail;
}

}  // namespace

AccountService::AccountService(Deps deps, AccountPolicy policy)
    : d_(std::move(deps)), policy_(policy) {}

// ---------------------------------------------------------------------------------------------
// Signup
// ---------------------------------------------------------------------------------------------

Result<int64_t> AccountService::SignupInitiate(const SignupRequest& req) {
  if (Status s = ValidateUsername(req.username); !s.ok()) return s;
  if (Status s = ValidateEmail(req.email); !s.ok()) return s;
  if (Status s = ValidatePassword(req.password); !s.ok()) return s;

  auto by_name = d_.users->FindUserByUsername(req.username);
  if (!by_name.ok()) return by_name.status();
  if (by_name->has_value()) return Status::Conflict(kUsernameTaken);
  auto by_email = d_.users->FindUserByEmail(req.email);
  if (!by_email.ok()) return by_email.status();
  if (by_email->has_value()) return Status::Conflict(kEmailTaken);

  const std::string email = AsciiLower(req.email);
  const TimeMs now = d_.now();
  if (Status s = CheckResendWindow(CodePurpose::kSignup, email, now); !s.ok()) return s;

  auto hash = d_.hasher->Hash(req.password);
  if (!hash.ok()) return hash.status();

  PendingCode code;
  code.purpose = CodePurpose::kSignup;
  code.email = email;
  code.username = req.username;
  code.password_hash = std::move(hash).value();
  auto plain = StoreNewCode(code);
  if (!plain.ok()) return plain.status();
  if (Status sent = d_.sender->Send(CodeMail(CodePurpose::kSignup, email, *plain)); !sent.ok()) {
    // Leave nothing half-made: no pending account, and no resend window to wait out.
    if (Status s = d_.codes->DeleteCode(CodePurpose::kSignup, email); !s.ok()) return s;
    return Status(StatusCode::kDeliveryFailed, sent.message());
  }
  return policy_.otp_ttl_ms / 1000;
}

Result<AuthResult> AccountService::SignupVerify(const std::string& email, const std::string& otp) {
  auto code = UseCode(CodePurpose::kSignup, AsciiLower(email), otp);
  if (!code.ok()) return code.status();
  NewUser nu;
  nu.username = code->username;
  nu.email = code->email;
  nu.password_hash = code->password_hash;
  nu.created_at = d_.now();
  auto user = d_.users->CreateUser(nu);  // kConflict when someone verified the name first
  if (!user.ok()) return user.status();
  return IssueToken(*user, 0);
}

// ---------------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------------

Result<AuthResult> AccountService::Login(const LoginRequest& req) {
  const Status bad = Status::InvalidCredentials("invalid username, email or password");
  Result<std::optional<UserRecord>> found = std::optional<UserRecord>();
  // A name no store can hold matches no account.
  if (req.username) {
    if (Storable(*req.username)) found = d_.users->FindUserByUsername(*req.username);
  } else if (req.email) {
    if (Storable(*req.email)) found = d_.users->FindUserByEmail(*req.email);
  } else {
    return Status::InvalidRequest("username or email is required");
  }
  if (!found.ok()) return found.status();

  // A deleted account is no account: its name and email are not its own any more.
  if (found->has_value() && (**found).user.status == UserStatus::kDeleted) found->reset();
  if (!found->has_value()) {
    // Spend the same time as a real check so that response times do not reveal accounts.
    std::call_once(dummy_once_, [this] {
      auto h = d_.hasher->Hash("mmchat-timing-equalizer");
      if (h.ok()) dummy_hash_ = std::move(h).value();
    });
    d_.hasher->Verify(dummy_hash_, req.password);
    return bad;
  }
  const UserRecord& rec = **found;
  auto gate = d_.users->BeginLoginAttempt(rec.user.id, d_.now(), policy_.login_window_ms,
                                          policy_.max_login_failures);
  if (!gate.ok()) return gate.status();
  if (!gate->allowed) {
    const TimeMs window_end = gate->window_start + policy_.login_window_ms;
    return Status::RateLimited("too many failed logins; try again later",
                               (window_end - d_.now() + 999) / 1000);
  }
  // The attempt already counts as a failure; only a right password takes it back.
  if (!d_.hasher->Verify(rec.password_hash, req.password)) return bad;
  if (Status s = d_.users->ClearLoginFailures(rec.user.id); !s.ok()) return s;
  // Said only to whoever knows the password: a wrong one is answered as for any account.
  if (rec.user.status == UserStatus::kDisabled) {
    return Status::Forbidden("this account is disabled");
  }
  return IssueToken(rec.user, rec.token_version);
}

// ---------------------------------------------------------------------------------------------
// Password reset
// ---------------------------------------------------------------------------------------------

Status AccountService::ForgotInitiate(const std::string& email_in) {
  if (Status s = ValidateEmail(email_in); !s.ok()) return s;
  const std::string email = AsciiLower(email_in);
  const TimeMs now = d_.now();
  // The window applies to unknown emails too: a 429 only for registered ones would tell.
  if (Status s = CheckResendWindow(CodePurpose::kReset, email, now); !s.ok()) return s;
  auto user = d_.users->FindUserByEmail(email);
  if (!user.ok()) return user.status();
  PendingCode code;
  code.purpose = CodePurpose::kReset;
  code.email = email;
  // Every email gets a stored code, so that the window and the answer are the same for all;
  // only registered ones are mailed, in the background so that timing does not tell either.
  // A failed delivery is logged by the sender; the user asks again after the window.
  auto plain = StoreNewCode(std::move(code));
  if (!plain.ok()) return plain.status();
  // A disabled or deleted account gets no mail, and so no code: the answer is the same.
  if (user->has_value() && (**user).user.status == UserStatus::kActive) {
    auto deliver = [sender = d_.sender, mail = CodeMail(CodePurpose::kReset, email, *plain)] {
      (void)sender->Send(mail);
    };
    if (d_.background) {
      d_.background(std::move(deliver));
    } else {
      deliver();
    }
  }
  return Status::Ok();
}

Status AccountService::ForgotReset(const std::string& email_in, const std::string& otp,
                                   const std::string& new_password) {
  if (Status s = ValidatePassword(new_password, "new_password"); !s.ok()) return s;
  const std::string email = AsciiLower(email_in);
  // The code first: it is cheap, and checked the same way for every email, so neither the
  // answer nor its timing tells whether the email is registered.
  auto code = UseCode(CodePurpose::kReset, email, otp);
  if (!code.ok()) return code.status();
  auto user = d_.users->FindUserByEmail(email);
  if (!user.ok()) return user.status();
  // A code mailed before the account was disabled does not reset it either.
  if (!user->has_value() || (**user).user.status != UserStatus::kActive) {
    return Status::OtpInvalid("invalid verification code");
  }
  auto hash = d_.hasher->Hash(new_password);
  if (!hash.ok()) return hash.status();
  const Status replaced = d_.users->ReplacePassword((*user)->user.id, *hash);
  // Told even when the write reports an error: it may have committed before the connection
  // was lost, and forgetting a user that did not change costs one read.
  d_.user_cache->Forget((*user)->user.id);  // also without a bus
  // Tokens are checked when presented: open WebSocket connections must be told.
  if (d_.bus != nullptr) d_.bus->Publish(TokensRevoked{(*user)->user.id});
  return replaced;
}

// ---------------------------------------------------------------------------------------------
// Tokens
// ---------------------------------------------------------------------------------------------

std::optional<Result<int64_t>> AccountService::CheckVersion(const TokenClaims& claims,
                                                            const std::optional<CachedUser>& kept) {
  if (!kept || kept->token_version < claims.token_version) return std::nullopt;
  if (kept->token_version > claims.token_version) {
    return Result<int64_t>(Status::Unauthorized("token revoked"));
  }
  return Result<int64_t>(claims.user_id);
}

std::optional<Result<int64_t>> AccountService::AuthenticateCached(std::string_view token) {
  auto claims = d_.tokens->Verify(token, d_.now());
  if (!claims.ok()) return Result<int64_t>(claims.status());
  return CheckVersion(*claims, d_.user_cache->Peek(claims->user_id));
}

Result<int64_t> AccountService::Authenticate(std::string_view token) {
  return Authenticate(token, /*fresh=*/false);
}

Result<int64_t> AccountService::AuthenticateFresh(std::string_view token) {
  return Authenticate(token, /*fresh=*/true);
}

Result<int64_t> AccountService::Authenticate(std::string_view token, bool fresh) {
  auto claims = d_.tokens->Verify(token, d_.now());
  if (!claims.ok()) return claims.status();
  if (!fresh) {
    if (auto answer = CheckVersion(*claims, d_.user_cache->Peek(claims->user_id))) return *answer;
  }
  auto rec = d_.user_cache->Reload(claims->user_id);
  if (!rec.ok()) return rec.status();
  if (!rec->has_value()) return Status::Unauthorized("unknown user");
  if (auto answer = CheckVersion(*claims, *rec)) return *answer;
  return Status::Unauthorized("token revoked");  // a version newer than the row's
}

Result<std::vector<AuthResult>> AccountService::CreateAccounts(
    const std::vector<NewAccount>& accounts, const std::string& password) {
  if (Status s = ValidatePassword(password); !s.ok()) return s;
  for (const auto& a : accounts) {
    if (Status s = ValidateUsername(a.username); !s.ok()) return s;
    if (Status s = ValidateEmail(a.email); !s.ok()) return s;
  }
  auto hash = d_.hasher->Hash(password);
  if (!hash.ok()) return hash.status();
  std::vector<NewUser> rows;
  rows.reserve(accounts.size());
  const TimeMs now = d_.now();
  for (const auto& a : accounts) rows.push_back({a.username, AsciiLower(a.email), *hash, now});
  auto users = d_.users->CreateUsers(rows);
  if (!users.ok()) return users.status();
  std::vector<AuthResult> out;
  out.reserve(users->size());
  for (const User& u : *users) {
    auto issued = IssueToken(u, 0);
    if (!issued.ok()) return issued.status();
    out.push_back(std::move(issued).value());
  }
  return out;
}

Status AccountService::SetPassword(int64_t user_id, const std::string& new_password) {
  if (Status s = ValidatePassword(new_password); !s.ok()) return s;
  auto user = d_.users->FindUserById(user_id);
  if (!user.ok()) return user.status();
  if (!user->has_value()) return Status::NotFound(kUserNotFound);
  if ((**user).user.status == UserStatus::kDeleted) return Status::Conflict(kUserDeleted);
  auto hash = d_.hasher->Hash(new_password);
  if (!hash.ok()) return hash.status();
  const Status replaced = d_.users->ReplacePassword(user_id, *hash);
  Revoked(user_id);
  return replaced;
}

Status AccountService::SetStatus(int64_t user_id, UserStatus status) {
  const Status s = d_.users->SetUserStatus(user_id, status);
  Revoked(user_id);  // disabling revoked the tokens; enabling changed the row
  return s;
}

Status AccountService::Erase(int64_t user_id) {
  const Status s = d_.users->EraseUser(user_id);
  Revoked(user_id);
  return s;
}

void AccountService::Revoked(int64_t user_id) {
  // As after a reset: told even after an error (the write may have committed).
  d_.user_cache->Forget(user_id);
  if (d_.bus != nullptr) d_.bus->Publish(TokensRevoked{user_id});
}

Result<AuthResult> AccountService::IssueToken(const User& user, int64_t token_version) {
  auto token = d_.tokens->Issue(user.id, token_version, d_.now());
  if (!token.ok()) return token.status();
  return AuthResult{std::move(token).value(), user};
}

// ---------------------------------------------------------------------------------------------
// One-time codes
// ---------------------------------------------------------------------------------------------

Status AccountService::CheckResendWindow(CodePurpose purpose, const std::string& email,
                                         TimeMs now) {
  auto existing = d_.codes->FindCode(purpose, email);
  if (!existing.ok()) return existing.status();
  if (existing->has_value()) {
    const TimeMs until = (*existing)->sent_at + policy_.resend_window_ms;
    if (now < until) {
      return Status::RateLimited("a code was sent recently; wait before asking again",
                                 (until - now + 999) / 1000);
    }
  }
  return Status::Ok();
}

Result<std::string> AccountService::StoreNewCode(PendingCode code) {
  const std::string plain = d_.otp->Generate(policy_.otp_digits);
  code.code_hash = d_.otp->Hash(code.purpose, code.email, plain);
  code.sent_at = d_.now();
  code.expires_at = code.sent_at + policy_.otp_ttl_ms;
  code.attempts = 0;
  code.used = false;
  // Codes past both their lifetime and the resend window serve no purpose: drop them, so that
  // the table does not grow with every email anyone ever typed.
  const TimeMs keep = std::max(policy_.otp_ttl_ms, policy_.resend_window_ms);
  if (Status s = d_.codes->PurgeCodes(code.sent_at - keep); !s.ok()) return s;
  if (Status s = d_.codes->PutCode(code); !s.ok()) return s;
  return plain;
}

Result<PendingCode> AccountService::UseCode(CodePurpose purpose, const std::string& email,
                                            const std::string& otp) {
  const Status invalid = Status::OtpInvalid("invalid verification code");
  if (!Storable(email)) return invalid;  // no code is kept for it
  // Counting the try before comparing keeps concurrent guesses within the limit.
  auto found = d_.codes->ReserveCodeAttempt(purpose, email, policy_.max_code_attempts);
  if (!found.ok()) return found.status();
  if (!found->has_value()) return invalid;  // none, used or burned
  const PendingCode& code = **found;
  const bool well_formed = otp.size() == static_cast<size_t>(policy_.otp_digits) && IsDigits(otp);
  if (!well_formed || !d_.otp->Matches(code.code_hash, purpose, email, otp)) return invalid;
  if (d_.now() >= code.expires_at) return Status::OtpExpired("verification code expired");
  auto consumed = d_.codes->ConsumeCode(purpose, email, code.sent_at);
  if (!consumed.ok()) return consumed.status();
  if (!*consumed) return invalid;  // a concurrent request used or replaced it
  return code;
}

}  // namespace mmchat::domain
