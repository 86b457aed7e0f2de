// domain::AccountService against the real SQLite store on a temporary file, the real OTP and
// JWT crypto, a fast fake password hasher, a recording mail sender and a hand-moved clock.
#include "domain/account_service.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <memory>
#include <string>
#include <vector>

#include "chat_fakes.h"
#include "crypto/jwt_codec.h"
#include "crypto/sodium_otp.h"
#include "fakes.h"
#include "store/common/statement_count.h"
#include "store/sqlite/sqlite_store.h"

namespace mmchat::domain {
namespace {

using test::DigitRuns;
using ::testing::HasSubstr;

constexpr TimeMs kSec = 1000;
constexpr TimeMs kMin = 60 * kSec;

// The real SodiumOtp, except that two codes in a row never coincide, so that "the old code no
// longer works" cannot be confused by a one-in-a-million repeat.
class DistinctOtp final : public OtpCrypto {
 public:
  std::string Generate(int digits) override {
    std::string code;
    do {
      code = real_.Generate(digits);
    } while (code == last_);
    last_ = code;
    return code;
  }
  std::string Hash(CodePurpose purpose, std::string_view email, std::string_view code) override {
    return real_.Hash(purpose, email, code);
  }
  bool Matches(std::string_view stored_hash, CodePurpose purpose, std::string_view email,
               std::string_view code) override {
    return real_.Matches(stored_hash, purpose, email, code);
  }

 private:
  crypto::SodiumOtp real_{"account-service-test-otp-key"};
  std::string last_;
};

// A code of the right shape that is certainly not `code`.
std::string WrongCode(const std::string& code, int k = 1) {
  std::string w = code;
  w[0] = static_cast<char>('0' + (w[0] - '0' + k) % 10);
  return w;
}

class AccountServiceTest : public ::testing::Test {
 protected:
  void SetUp() override {
    store::sqlite::Options opts;
    opts.dsn = dir_.File("accounts.db");
    auto s = store::sqlite::SqliteStore::Open(opts);
    ASSERT_TRUE(s.ok()) << s.status().message();
    store_ = std::move(s).value();
    MakeService(AccountPolicy{});
  }

  void MakeService(const AccountPolicy& policy) {
    service_ = std::make_unique<AccountService>(NewDeps(), policy);
  }

  // The service's dependencies, with a fresh user cache on `bus` (may be null), timed by the
  // test's clock.
  AccountService::Deps NewDeps(EventBus* bus = nullptr) {
    caches_.push_back(std::make_unique<UserCache>(store_.get(), bus, clock_.Fn()));
    AccountService::Deps deps{store_.get(), store_.get(), &hasher_,   &otp_,
                              &jwt_,        &sender_,     clock_.Fn()};
    deps.bus = bus;
    deps.user_cache = caches_.back().get();
    return deps;
  }

  // The code in the last mail; the body holds it as its only run of digits.
  std::string LastCode() {
    if (sender_.sent.empty()) {
      ADD_FAILURE() << "no mail was sent";
      return "";
    }
    const auto runs = DigitRuns(sender_.sent.back().body);
    EXPECT_EQ(runs.size(), 1u) << sender_.sent.back().body;
    return runs.empty() ? "" : runs[0];
  }

  // Signs a user up (initiate + verify) and returns the result.
  AuthResult SignUp(const std::string& username, const std::string& email,
                    const std::string& password) {
    auto init = service_->SignupInitiate({username, email, password});
    EXPECT_TRUE(init.ok()) << init.status().message();
    auto verified = service_->SignupVerify(email, LastCode());
    EXPECT_TRUE(verified.ok()) << verified.status().message();
    return verified.ok() ? *verified : AuthResult{};
  }

  Result<AuthResult> LoginName(const std::string& username, const std::string& password) {
    LoginRequest req;
    req.username = username;
    req.password = password;
    return service_->Login(req);
  }

  Result<AuthResult> LoginEmail(const std::string& email, const std::string& password) {
    LoginRequest req;
    req.email = email;
    req.password = password;
    return service_->Login(req);
  }

  bool UserExists(const std::string& email) {
    auto u = store_->FindUserByEmail(email);
    EXPECT_TRUE(u.ok());
    return u.ok() && u->has_value();
  }

  test::TempDir dir_;
  std::unique_ptr<store::sqlite::SqliteStore> store_;
  test::FakeHasher hasher_;
  DistinctOtp otp_;
  crypto::JwtCodec jwt_{"account-service-test-jwt-secret", 24 * 60 * kMin};
  test::RecordingSender sender_;
  test::FakeClock clock_;
  std::vector<std::unique_ptr<UserCache>> caches_;  // outlive the services that use them
  std::unique_ptr<AccountService> service_;
};

// ---------------------------------------------------------------------------------------------
// Signup
// ---------------------------------------------------------------------------------------------

TEST_F(AccountServiceTest, SignupHappyPath) {
  auto init = service_->SignupInitiate({"Alice", "Alice@Example.com", "password-1"});
  ASSERT_TRUE(init.ok()) << init.status().message();
  EXPECT_EQ(*init, 300);                          // expires_in_sec
  EXPECT_FALSE(UserExists("alice@example.com"));  // only after verify

  ASSERT_EQ(sender_.sent.size(), 1u);
  const OutgoingMail& mail = sender_.sent[0];
  EXPECT_EQ(mail.to, "alice@example.com");
  EXPECT_FALSE(mail.subject.empty());
  const auto runs = DigitRuns(mail.body);
  ASSERT_EQ(runs.size(), 1u) << mail.body;
  EXPECT_EQ(runs[0].size(), 6u);

  clock_.Advance(299 * kSec);
  auto verified = service_->SignupVerify("alice@example.com", runs[0]);
  ASSERT_TRUE(verified.ok()) << verified.status().message();
  EXPECT_GT(verified->user.id, 0);
  EXPECT_EQ(verified->user.username, "Alice");
  EXPECT_EQ(verified->user.email, "alice@example.com");
  EXPECT_EQ(verified->user.created_at, clock_.now);
  EXPECT_FALSE(verified->token.token.empty());
  EXPECT_GT(verified->token.expires_at, clock_.now);

  auto id = service_->Authenticate(verified->token.token);
  ASSERT_TRUE(id.ok()) << id.status().message();
  EXPECT_EQ(*id, verified->user.id);

  auto rec = store_->FindUserByUsername("alice");
  ASSERT_TRUE(rec.ok() && rec->has_value());
  EXPECT_EQ((*rec)->password_hash, "h:password-1");  // hashed by the hasher, never plain
}

TEST_F(AccountServiceTest, CodeHasConfiguredDigits) {
  AccountPolicy policy;
  policy.otp_digits = 8;
  policy.otp_ttl_ms = 120 * kSec;
  MakeService(policy);
  auto init = service_->SignupInitiate({"bob", "bob@example.com", "password-1"});
  ASSERT_TRUE(init.ok());
  EXPECT_EQ(*init, 120);
  const std::string code = LastCode();
  EXPECT_EQ(code.size(), 8u);
  // A code of the default length is malformed here.
  EXPECT_EQ(service_->SignupVerify("bob@example.com", code.substr(0, 6)).status().code(),
            StatusCode::kOtpInvalid);
  EXPECT_TRUE(service_->SignupVerify("bob@example.com", code).ok());
}

TEST_F(AccountServiceTest, SignupValidatesFields) {
  EXPECT_EQ(service_->SignupInitiate({"ab", "a@example.com", "password-1"}).status().code(),
            StatusCode::kInvalidRequest);
  EXPECT_EQ(service_->SignupInitiate({"abc", "not-an-email", "password-1"}).status().code(),
            StatusCode::kInvalidRequest);
  EXPECT_EQ(service_->SignupInitiate({"abc", "a@example.com", "short"}).status().code(),
            StatusCode::kInvalidRequest);
  EXPECT_TRUE(sender_.sent.empty());
}

TEST_F(AccountServiceTest, SignupConflictsAreCaseInsensitive) {
  SignUp("Alice", "alice@example.com", "password-1");
  sender_.sent.clear();

  auto name = service_->SignupInitiate({"ALICE", "other@example.com", "password-1"});
  EXPECT_EQ(name.status().code(), StatusCode::kConflict);
  EXPECT_THAT(name.status().message(), HasSubstr("username"));

  auto email = service_->SignupInitiate({"carol", "ALICE@EXAMPLE.COM", "password-1"});
  EXPECT_EQ(email.status().code(), StatusCode::kConflict);
  EXPECT_THAT(email.status().message(), HasSubstr("email"));

  EXPECT_TRUE(sender_.sent.empty());
}

TEST_F(AccountServiceTest, ValidationAndConflictComeBeforeTheResendWindow) {
  ASSERT_TRUE(service_->SignupInitiate({"bob", "bob@example.com", "password-1"}).ok());
  SignUp("carol", "carol@example.com", "password-1");
  // Within bob's window: a 400 and a 409 are still reported as such, not as 429.
  EXPECT_EQ(service_->SignupInitiate({"bob", "bob@example.com", "short"}).status().code(),
            StatusCode::kInvalidRequest);
  EXPECT_EQ(service_->SignupInitiate({"Carol", "bob@example.com", "password-1"}).status().code(),
            StatusCode::kConflict);
}

TEST_F(AccountServiceTest, ResendWindowThenReplacement) {
  ASSERT_TRUE(service_->SignupInitiate({"bob", "bob@example.com", "password-1"}).ok());
  const std::string first = LastCode();

  clock_.Advance(10 * kSec);
  auto again = service_->SignupInitiate({"bob", "bob@example.com", "password-1"});
  ASSERT_EQ(again.status().code(), StatusCode::kRateLimited);
  EXPECT_EQ(again.status().retry_after_sec(), std::optional<int64_t>(20));
  // The same email in other case is the same email.
  EXPECT_EQ(service_->SignupInitiate({"bob", "BOB@example.com", "password-1"}).status().code(),
            StatusCode::kRateLimited);
  clock_.Advance(19'999);
  auto last_ms = service_->SignupInitiate({"bob", "bob@example.com", "password-1"});
  ASSERT_EQ(last_ms.status().code(), StatusCode::kRateLimited);
  EXPECT_EQ(last_ms.status().retry_after_sec(), std::optional<int64_t>(1));
  EXPECT_EQ(sender_.sent.size(), 1u);

  clock_.Advance(1);  // 30 s after the first
  auto replaced = service_->SignupInitiate({"bobby", "bob@example.com", "password-2"});
  ASSERT_TRUE(replaced.ok()) << replaced.status().message();
  ASSERT_EQ(sender_.sent.size(), 2u);
  const std::string second = LastCode();
  ASSERT_NE(first, second);

  EXPECT_EQ(service_->SignupVerify("bob@example.com", first).status().code(),
            StatusCode::kOtpInvalid);
  auto verified = service_->SignupVerify("bob@example.com", second);
  ASSERT_TRUE(verified.ok()) << verified.status().message();
  // The replacement's username and password count, not the first request's.
  EXPECT_EQ(verified->user.username, "bobby");
  EXPECT_TRUE(LoginName("bobby", "password-2").ok());
  EXPECT_EQ(LoginName("bobby", "password-1").status().code(), StatusCode::kInvalidCredentials);
}

TEST_F(AccountServiceTest, SignupAndForgotWindowsAreIndependent) {
  SignUp("alice", "alice@example.com", "password-1");  // signup code sent just now
  // The signup window does not hold back a reset.
  EXPECT_TRUE(service_->ForgotInitiate("alice@example.com").ok());
  EXPECT_EQ(service_->ForgotInitiate("alice@example.com").code(), StatusCode::kRateLimited);

  // And a reset request does not hold back a signup (an unregistered email this time).
  EXPECT_TRUE(service_->ForgotInitiate("dave@example.com").ok());
  EXPECT_TRUE(service_->SignupInitiate({"dave", "dave@example.com", "password-1"}).ok());
  auto again = service_->SignupInitiate({"dave", "dave@example.com", "password-1"});
  EXPECT_EQ(again.status().code(), StatusCode::kRateLimited);
  Status forgot_again = service_->ForgotInitiate("dave@example.com");
  EXPECT_EQ(forgot_again.code(), StatusCode::kRateLimited);
  EXPECT_EQ(forgot_again.retry_after_sec(), std::optional<int64_t>(30));
}

TEST_F(AccountServiceTest, FiveWrongCodesBurnTheCode) {
  ASSERT_TRUE(service_->SignupInitiate({"bob", "bob@example.com", "password-1"}).ok());
  const std::string code = LastCode();
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(service_->SignupVerify("bob@example.com", WrongCode(code, i)).status().code(),
              StatusCode::kOtpInvalid);
  }
  EXPECT_EQ(service_->SignupVerify("bob@example.com", code).status().code(),
            StatusCode::kOtpInvalid);
  EXPECT_FALSE(UserExists("bob@example.com"));
}

TEST_F(AccountServiceTest, FourWrongCodesLeaveTheCodeUsable) {
  ASSERT_TRUE(service_->SignupInitiate({"bob", "bob@example.com", "password-1"}).ok());
  const std::string code = LastCode();
  for (int i = 1; i <= 4; ++i) {
    EXPECT_EQ(service_->SignupVerify("bob@example.com", WrongCode(code, i)).status().code(),
              StatusCode::kOtpInvalid);
  }
  EXPECT_TRUE(service_->SignupVerify("bob@example.com", code).ok());
}

TEST_F(AccountServiceTest, MalformedCodesAreInvalid) {
  ASSERT_TRUE(service_->SignupInitiate({"bob", "bob@example.com", "password-1"}).ok());
  const std::string code = LastCode();
  for (const std::string& bad : {std::string(""), code.substr(0, 5), code + "0",
                                 std::string("abcdef"), " " + code.substr(1)}) {
    EXPECT_EQ(service_->SignupVerify("bob@example.com", bad).status().code(),
              StatusCode::kOtpInvalid)
        << bad;
  }
}

TEST_F(AccountServiceTest, ExpiredCode) {
  ASSERT_TRUE(service_->SignupInitiate({"bob", "bob@example.com", "password-1"}).ok());
  const std::string code = LastCode();
  clock_.Advance(300 * kSec);
  EXPECT_EQ(service_->SignupVerify("bob@example.com", code).status().code(),
            StatusCode::kOtpExpired);
  EXPECT_FALSE(UserExists("bob@example.com"));
  // A wrong code is still just invalid, not a hint that a code exists.
  EXPECT_EQ(service_->SignupVerify("bob@example.com", WrongCode(code)).status().code(),
            StatusCode::kOtpInvalid);
}

TEST_F(AccountServiceTest, CodeIsSingleUse) {
  ASSERT_TRUE(service_->SignupInitiate({"bob", "bob@example.com", "password-1"}).ok());
  const std::string code = LastCode();
  ASSERT_TRUE(service_->SignupVerify("bob@example.com", code).ok());
  EXPECT_EQ(service_->SignupVerify("bob@example.com", code).status().code(),
            StatusCode::kOtpInvalid);
}

TEST_F(AccountServiceTest, VerifyIsCaseInsensitiveInTheEmail) {
  ASSERT_TRUE(service_->SignupInitiate({"bob", "Bob@Example.com", "password-1"}).ok());
  EXPECT_TRUE(service_->SignupVerify("BOB@EXAMPLE.COM", LastCode()).ok());
}

TEST_F(AccountServiceTest, UnknownEmailIsInvalid) {
  EXPECT_EQ(service_->SignupVerify("nobody@example.com", "123456").status().code(),
            StatusCode::kOtpInvalid);
  // A code sent to one email does not verify another.
  ASSERT_TRUE(service_->SignupInitiate({"bob", "bob@example.com", "password-1"}).ok());
  EXPECT_EQ(service_->SignupVerify("rob@example.com", LastCode()).status().code(),
            StatusCode::kOtpInvalid);
}

TEST_F(AccountServiceTest, FirstVerifiedSignupTakesTheUsername) {
  ASSERT_TRUE(service_->SignupInitiate({"bob", "bob1@example.com", "password-1"}).ok());
  const std::string code1 = LastCode();
  ASSERT_TRUE(service_->SignupInitiate({"BOB", "bob2@example.com", "password-1"}).ok());
  const std::string code2 = LastCode();
  ASSERT_TRUE(service_->SignupVerify("bob2@example.com", code2).ok());
  EXPECT_EQ(service_->SignupVerify("bob1@example.com", code1).status().code(),
            StatusCode::kConflict);
}

TEST_F(AccountServiceTest, FailingSenderLeavesNothingBehind) {
  sender_.fail = true;
  auto init = service_->SignupInitiate({"bob", "bob@example.com", "password-1"});
  EXPECT_EQ(init.status().code(), StatusCode::kDeliveryFailed);  // 503 unavailable
  EXPECT_EQ(sender_.attempts, 1);

  EXPECT_EQ(service_->SignupVerify("bob@example.com", "123456").status().code(),
            StatusCode::kOtpInvalid);
  EXPECT_FALSE(UserExists("bob@example.com"));
  auto code = store_->FindCode(CodePurpose::kSignup, "bob@example.com");
  ASSERT_TRUE(code.ok());
  EXPECT_FALSE(code->has_value());

  // No resend window to wait out.
  sender_.fail = false;
  ASSERT_TRUE(service_->SignupInitiate({"bob", "bob@example.com", "password-1"}).ok());
  EXPECT_TRUE(service_->SignupVerify("bob@example.com", LastCode()).ok());
}

TEST_F(AccountServiceTest, FailingSenderOnForgotIsHiddenLikeAnUnknownEmail) {
  SignUp("alice", "alice@example.com", "password-1");
  sender_.fail = true;
  const int attempts_before = sender_.attempts;
  // The same answer as for an unregistered email, so a failure reveals nothing.
  EXPECT_TRUE(service_->ForgotInitiate("alice@example.com").ok());
  EXPECT_TRUE(service_->ForgotInitiate("ghost@example.com").ok());
  EXPECT_EQ(sender_.attempts, attempts_before + 1);  // only the registered one was tried
  // Both keep a code, so the resend window treats them alike.
  EXPECT_EQ(service_->ForgotInitiate("alice@example.com").code(), StatusCode::kRateLimited);
  EXPECT_EQ(service_->ForgotInitiate("ghost@example.com").code(), StatusCode::kRateLimited);
  // After the window, a new request is mailed and its code works.
  clock_.Advance(30'000);
  sender_.fail = false;
  sender_.sent.clear();
  EXPECT_TRUE(service_->ForgotInitiate("alice@example.com").ok());
  ASSERT_EQ(sender_.sent.size(), 1u);
  EXPECT_TRUE(service_->ForgotReset("alice@example.com", LastCode(), "password-2").ok());
}

TEST_F(AccountServiceTest, ResetMailGoesOutThroughTheBackgroundRunner) {
  SignUp("alice", "alice@example.com", "password-1");
  std::vector<std::function<void()>> queued;
  AccountService::Deps deps = NewDeps();
  deps.background = [&queued](std::function<void()> task) { queued.push_back(std::move(task)); };
  AccountService service(deps, AccountPolicy{});
  sender_.sent.clear();
  ASSERT_TRUE(service.ForgotInitiate("alice@example.com").ok());
  EXPECT_TRUE(sender_.sent.empty());  // answered before the mail went out
  ASSERT_EQ(queued.size(), 1u);
  queued[0]();
  ASSERT_EQ(sender_.sent.size(), 1u);
  EXPECT_TRUE(service.ForgotReset("alice@example.com", LastCode(), "password-2").ok());
  // An unknown email queues nothing.
  ASSERT_TRUE(service.ForgotInitiate("ghost@example.com").ok());
  EXPECT_EQ(queued.size(), 1u);
}

TEST_F(AccountServiceTest, OldCodesArePurgedWhenNewOnesAreIssued) {
  ASSERT_TRUE(service_->ForgotInitiate("ghost@example.com").ok());
  ASSERT_TRUE(store_->FindCode(CodePurpose::kReset, "ghost@example.com")->has_value());
  clock_.Advance(300'001);  // past the code lifetime (longer than the resend window)
  ASSERT_TRUE(service_->ForgotInitiate("other@example.com").ok());
  EXPECT_FALSE(store_->FindCode(CodePurpose::kReset, "ghost@example.com")->has_value());
  EXPECT_TRUE(store_->FindCode(CodePurpose::kReset, "other@example.com")->has_value());
}

// ---------------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------------

TEST_F(AccountServiceTest, LoginByUsernameOrEmailCaseInsensitive) {
  const AuthResult signed_up = SignUp("Alice", "alice@example.com", "password-1");
  for (const char* name : {"Alice", "alice", "ALICE"}) {
    auto r = LoginName(name, "password-1");
    ASSERT_TRUE(r.ok()) << name << ": " << r.status().message();
    EXPECT_EQ(r->user.id, signed_up.user.id);
    EXPECT_EQ(r->user.username, "Alice");
    auto id = service_->Authenticate(r->token.token);
    ASSERT_TRUE(id.ok());
    EXPECT_EQ(*id, signed_up.user.id);
  }
  for (const char* email : {"alice@example.com", "ALICE@Example.COM"}) {
    auto r = LoginEmail(email, "password-1");
    ASSERT_TRUE(r.ok()) << email << ": " << r.status().message();
    EXPECT_EQ(r->user.id, signed_up.user.id);
  }
}

TEST_F(AccountServiceTest, UnknownUserAndWrongPasswordLookTheSame) {
  SignUp("alice", "alice@example.com", "password-1");
  auto unknown = LoginName("mallory", "password-1");
  auto unknown_email = LoginEmail("mallory@example.com", "password-1");
  auto wrong = LoginName("alice", "password-2");
  auto wrong_email = LoginEmail("alice@example.com", "password-2");
  for (const auto* r : {&unknown, &unknown_email, &wrong, &wrong_email}) {
    EXPECT_EQ(r->status().code(), StatusCode::kInvalidCredentials);
    EXPECT_EQ(r->status().message(), unknown.status().message());
  }
}

TEST_F(AccountServiceTest, LoginNeedsUsernameOrEmail) {
  LoginRequest req;
  req.password = "password-1";
  EXPECT_EQ(service_->Login(req).status().code(), StatusCode::kInvalidRequest);
}

TEST_F(AccountServiceTest, TenFailuresLockTheAccountForTheWindow) {
  SignUp("alice", "alice@example.com", "password-1");
  const TimeMs first_failure = clock_.now;
  for (int i = 0; i < 10; ++i) {
    EXPECT_EQ(LoginName("alice", "wrong-password").status().code(), StatusCode::kInvalidCredentials)
        << "attempt " << i + 1;
    clock_.Advance(kSec);
  }
  // Locked, even with the right password, by username or by email.
  auto locked = LoginName("alice", "password-1");
  ASSERT_EQ(locked.status().code(), StatusCode::kRateLimited);
  const TimeMs window_end = first_failure + 15 * kMin;
  EXPECT_EQ(locked.status().retry_after_sec(),
            std::optional<int64_t>((window_end - clock_.now + 999) / 1000));
  EXPECT_EQ(LoginEmail("alice@example.com", "password-1").status().code(),
            StatusCode::kRateLimited);

  clock_.now = window_end - 1;
  auto last_ms = LoginName("alice", "password-1");
  ASSERT_EQ(last_ms.status().code(), StatusCode::kRateLimited);
  EXPECT_EQ(last_ms.status().retry_after_sec(), std::optional<int64_t>(1));

  clock_.now = window_end;
  auto ok = LoginName("alice", "password-1");
  ASSERT_TRUE(ok.ok()) << ok.status().message();
  // The success cleared the count: a new failure is one of ten again.
  EXPECT_EQ(LoginName("alice", "wrong-password").status().code(), StatusCode::kInvalidCredentials);
  EXPECT_TRUE(LoginName("alice", "password-1").ok());
}

TEST_F(AccountServiceTest, SuccessfulLoginResetsTheFailureCount) {
  SignUp("alice", "alice@example.com", "password-1");
  for (int round = 0; round < 2; ++round) {
    for (int i = 0; i < 9; ++i) {
      EXPECT_EQ(LoginName("alice", "wrong-password").status().code(),
                StatusCode::kInvalidCredentials);
    }
    EXPECT_TRUE(LoginName("alice", "password-1").ok()) << "round " << round;
  }
}

TEST_F(AccountServiceTest, FailuresOutsideTheWindowDoNotAddUp) {
  SignUp("alice", "alice@example.com", "password-1");
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(LoginName("alice", "wrong").status().code(), StatusCode::kInvalidCredentials);
  }
  clock_.Advance(15 * kMin);  // the window of those nine has passed
  for (int i = 0; i < 9; ++i) {
    EXPECT_EQ(LoginName("alice", "wrong").status().code(), StatusCode::kInvalidCredentials);
  }
  EXPECT_TRUE(LoginName("alice", "password-1").ok());
}

// ---------------------------------------------------------------------------------------------
// Password reset
// ---------------------------------------------------------------------------------------------

TEST_F(AccountServiceTest, ForgotForUnknownEmailIsOkAndSendsNothing) {
  EXPECT_TRUE(service_->ForgotInitiate("nobody@example.com").ok());
  EXPECT_TRUE(sender_.sent.empty());
  EXPECT_EQ(sender_.attempts, 0);
  EXPECT_EQ(service_->ForgotReset("nobody@example.com", "123456", "new-password").code(),
            StatusCode::kOtpInvalid);
  EXPECT_FALSE(UserExists("nobody@example.com"));
}

TEST_F(AccountServiceTest, ForgotValidatesTheEmail) {
  EXPECT_EQ(service_->ForgotInitiate("not-an-email").code(), StatusCode::kInvalidRequest);
}

TEST_F(AccountServiceTest, ResetChangesPasswordAndRevokesOldTokens) {
  const AuthResult signed_up = SignUp("alice", "alice@example.com", "password-1");
  auto login = LoginName("alice", "password-1");
  ASSERT_TRUE(login.ok());
  const std::string old_token = login->token.token;
  ASSERT_TRUE(service_->Authenticate(old_token).ok());

  clock_.Advance(kMin);
  sender_.sent.clear();
  ASSERT_TRUE(service_->ForgotInitiate("Alice@Example.com").ok());
  ASSERT_EQ(sender_.sent.size(), 1u);
  EXPECT_EQ(sender_.sent[0].to, "alice@example.com");
  const std::string code = LastCode();
  EXPECT_EQ(code.size(), 6u);

  // Same fake millisecond from here on: reset, then log in at once.
  ASSERT_TRUE(service_->ForgotReset("alice@example.com", code, "password-2").ok());

  EXPECT_EQ(service_->Authenticate(old_token).status().code(), StatusCode::kUnauthorized);
  EXPECT_EQ(service_->Authenticate(signed_up.token.token).status().code(),
            StatusCode::kUnauthorized);
  EXPECT_EQ(LoginName("alice", "password-1").status().code(), StatusCode::kInvalidCredentials);

  auto fresh = LoginName("alice", "password-2");
  ASSERT_TRUE(fresh.ok()) << fresh.status().message();
  auto id = service_->Authenticate(fresh->token.token);
  ASSERT_TRUE(id.ok()) << id.status().message();
  EXPECT_EQ(*id, signed_up.user.id);

  // The code was used.
  EXPECT_EQ(service_->ForgotReset("alice@example.com", code, "password-3").code(),
            StatusCode::kOtpInvalid);
  EXPECT_TRUE(LoginName("alice", "password-2").ok());
}

TEST_F(AccountServiceTest, TokenChecksReadTheUserAtMostOncePerTtl) {
  service_ = std::make_unique<AccountService>(NewDeps(), AccountPolicy{});
  const AuthResult alice = SignUp("alice", "alice@example.com", "password-1");
  auto statements = [&](const std::string& token) {
    const uint64_t before = store::StatementsOnThisThread();
    EXPECT_TRUE(service_->Authenticate(token).ok());
    return store::StatementsOnThisThread() - before;
  };
  EXPECT_EQ(statements(alice.token.token), 1u);
  EXPECT_EQ(statements(alice.token.token), 0u);
  clock_.Advance(UserCache::kDefaultTtlMs - 1);
  EXPECT_EQ(statements(alice.token.token), 0u);
  clock_.Advance(1);
  EXPECT_EQ(statements(alice.token.token), 1u);  // expired: read again
}

TEST_F(AccountServiceTest, ATokenNewerThanTheCachedVersionIsCheckedAgainstTheRow) {
  service_ = std::make_unique<AccountService>(NewDeps(), AccountPolicy{});
  const AuthResult alice = SignUp("alice", "alice@example.com", "password-1");
  ASSERT_TRUE(service_->Authenticate(alice.token.token).ok());  // version 0 cached
  // Another process resets the password (and nobody tells this one); the user logs in again.
  ASSERT_TRUE(store_->ReplacePassword(alice.user.id, "h:password-2").ok());
  auto fresh = LoginName("alice", "password-2");
  ASSERT_TRUE(fresh.ok()) << fresh.status().message();
  // The new token works at once; with the row read, the old one is refused at once too.
  EXPECT_TRUE(service_->Authenticate(fresh->token.token).ok());
  EXPECT_EQ(service_->Authenticate(alice.token.token).status().code(), StatusCode::kUnauthorized);
}

TEST_F(AccountServiceTest, ARevocationFromTheBusEndsWhatIsCached) {
  test::RecordingBus bus;
  service_ = std::make_unique<AccountService>(NewDeps(&bus), AccountPolicy{});
  const AuthResult alice = SignUp("alice", "alice@example.com", "password-1");
  ASSERT_TRUE(service_->Authenticate(alice.token.token).ok());  // cached now
  // Another process resets the password: the row changes, and the bus tells this one.
  ASSERT_TRUE(store_->ReplacePassword(alice.user.id, "h:other").ok());
  bus.Publish(domain::TokensRevoked{alice.user.id});
  EXPECT_EQ(service_->Authenticate(alice.token.token).status().code(), StatusCode::kUnauthorized);
}

TEST_F(AccountServiceTest, ResetClearsALockout) {
  SignUp("alice", "alice@example.com", "password-1");
  for (int i = 0; i < 10; ++i) (void)LoginName("alice", "wrong");
  ASSERT_EQ(LoginName("alice", "password-1").status().code(), StatusCode::kRateLimited);
  clock_.Advance(kMin);
  ASSERT_TRUE(service_->ForgotInitiate("alice@example.com").ok());
  ASSERT_TRUE(service_->ForgotReset("alice@example.com", LastCode(), "password-2").ok());
  EXPECT_TRUE(LoginName("alice", "password-2").ok());
}

TEST_F(AccountServiceTest, ResetWithWrongOrExpiredCode) {
  SignUp("alice", "alice@example.com", "password-1");
  clock_.Advance(kMin);
  ASSERT_TRUE(service_->ForgotInitiate("alice@example.com").ok());
  const std::string code = LastCode();
  EXPECT_EQ(service_->ForgotReset("alice@example.com", WrongCode(code), "password-2").code(),
            StatusCode::kOtpInvalid);
  // An invalid new password is refused before the code is looked at.
  EXPECT_EQ(service_->ForgotReset("alice@example.com", code, "short").code(),
            StatusCode::kInvalidRequest);
  clock_.Advance(300 * kSec);
  EXPECT_EQ(service_->ForgotReset("alice@example.com", code, "password-2").code(),
            StatusCode::kOtpExpired);
  EXPECT_TRUE(LoginName("alice", "password-1").ok());
}

TEST_F(AccountServiceTest, ResetCodeBurnsAfterFiveWrongTries) {
  SignUp("alice", "alice@example.com", "password-1");
  clock_.Advance(kMin);
  ASSERT_TRUE(service_->ForgotInitiate("alice@example.com").ok());
  const std::string code = LastCode();
  for (int i = 1; i <= 5; ++i) {
    EXPECT_EQ(service_->ForgotReset("alice@example.com", WrongCode(code, i), "password-2").code(),
              StatusCode::kOtpInvalid);
  }
  EXPECT_EQ(service_->ForgotReset("alice@example.com", code, "password-2").code(),
            StatusCode::kOtpInvalid);
  EXPECT_TRUE(LoginName("alice", "password-1").ok());
}

// ---------------------------------------------------------------------------------------------
// Authenticate
// ---------------------------------------------------------------------------------------------

TEST_F(AccountServiceTest, AuthenticateRejectsGarbage) {
  for (const char* token : {"", "garbage", "a.b.c", "Bearer abc"}) {
    EXPECT_EQ(service_->Authenticate(token).status().code(), StatusCode::kUnauthorized) << token;
  }
}

TEST_F(AccountServiceTest, AuthenticateRejectsUnknownUserAndExpiredToken) {
  auto stray = jwt_.Issue(999, 0, clock_.now);
  ASSERT_TRUE(stray.ok());
  EXPECT_EQ(service_->Authenticate(stray->token).status().code(), StatusCode::kUnauthorized);

  const AuthResult a = SignUp("alice", "alice@example.com", "password-1");
  ASSERT_TRUE(service_->Authenticate(a.token.token).ok());
  clock_.Advance(24 * 60 * kMin);
  EXPECT_EQ(service_->Authenticate(a.token.token).status().code(), StatusCode::kUnauthorized);
}

TEST_F(AccountServiceTest, AuthenticateRejectsWrongTokenVersion) {
  const AuthResult a = SignUp("alice", "alice@example.com", "password-1");
  auto future = jwt_.Issue(a.user.id, 5, clock_.now);
  ASSERT_TRUE(future.ok());
  EXPECT_EQ(service_->Authenticate(future->token).status().code(), StatusCode::kUnauthorized);
}

}  // namespace
}  // namespace mmchat::domain

// ---------------------------------------------------------------------------------------------
// Accounts created by an administrator (mmchat user add)
// ---------------------------------------------------------------------------------------------

namespace mmchat::domain {
namespace {

TEST_F(AccountServiceTest, CreateAccountsMakesVerifiedUsersWithTokensAndNoMail) {
  auto made = service_->CreateAccounts({{"ann", "Ann@Example.com"}, {"bob", "bo@example.com"}},
                                       "shared password");
  ASSERT_TRUE(made.ok()) << made.status().message();
  ASSERT_EQ(made->size(), 2u);
  EXPECT_TRUE(sender_.sent.empty());
  EXPECT_EQ((*made)[0].user.email, "ann@example.com");  // stored in lower case, as in signup
  for (const auto& a : *made) {
    auto who = service_->Authenticate(a.token.token);
    ASSERT_TRUE(who.ok()) << who.status().message();
    EXPECT_EQ(*who, a.user.id);
  }
  EXPECT_TRUE(LoginName("bob", "shared password").ok());
}

TEST_F(AccountServiceTest, CreateAccountsIsAllOrNothing) {
  SignUp("taken", "taken@example.com", "password one");
  auto clash = service_->CreateAccounts(
      {{"fresh", "fresh@example.com"}, {"TAKEN", "t2@example.com"}}, "shared password");
  EXPECT_EQ(clash.status().code(), StatusCode::kConflict);
  EXPECT_FALSE(UserExists("fresh@example.com"));
  auto invalid = service_->CreateAccounts({{"ok_name", "not-an-email"}}, "shared password");
  EXPECT_EQ(invalid.status().code(), StatusCode::kInvalidRequest);
  auto weak = service_->CreateAccounts({{"ok_name", "ok@example.com"}}, "short");
  EXPECT_EQ(weak.status().code(), StatusCode::kInvalidRequest);
  EXPECT_FALSE(UserExists("ok@example.com"));
}

}  // namespace
}  // namespace mmchat::domain
