// API.md "Authentication" over real HTTP: every status and error code of the account rows.
#include <gtest/gtest.h>

#include <atomic>
#include <iterator>
#include <regex>
#include <thread>

#include "harness.h"

namespace mmchat::test {
namespace {

// Decodes one base64url JWT segment (tests only; the server uses libjwt).
Json DecodeSegment(const std::string& seg) {
  static const std::string kAlphabet =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
  std::string out;
  int val = 0, bits = -8;
  for (char c : seg) {
    const size_t pos = kAlphabet.find(c);
    if (pos == std::string::npos) break;
    val = (val << 6) + static_cast<int>(pos);
    bits += 6;
    if (bits >= 0) {
      out.push_back(static_cast<char>((val >> bits) & 0xFF));
      bits -= 8;
    }
  }
  return Json::parse(out);
}

class AccountsTest : public ::testing::Test {
 protected:
  AccountsTest() : client_(server_.port()) {}

  HttpResult Initiate(const std::string& username, const std::string& email,
                      const std::string& password = "correct horse") {
    return client_.Post("/api/signup/initiate",
                        {{"username", username}, {"email", email}, {"password", password}});
  }
  HttpResult Verify(const std::string& email, const std::string& otp) {
    return client_.Post("/api/signup/verify", {{"email", email}, {"otp", otp}});
  }
  HttpResult Login(const Json& body) { return client_.Post("/api/login", body); }

  // A code of the right length that is not `code`.
  static std::string WrongCode(const std::string& code) {
    std::string wrong = code;
    wrong[0] = code[0] == '0' ? '1' : '0';
    return wrong;
  }

  TestServer server_;
  HttpClient client_;
};

// ---------------------------------------------------------------------------------------------
// Signup
// ---------------------------------------------------------------------------------------------

TEST_F(AccountsTest, SignupInitiateAndVerifyCreatesTheAccount) {
  auto init = Initiate("alice", "alice@example.com");
  ASSERT_EQ(init.status, 202) << init.body;
  EXPECT_TRUE(init.json["message"].is_string());
  EXPECT_EQ(init.json["expires_in_sec"], 300);

  // No account before verify.
  ExpectError(Login({{"username", "alice"}, {"password", "correct horse"}}), 401,
              "invalid_credentials");

  auto code = server_.LatestCode("alice@example.com");
  ASSERT_TRUE(code.has_value());
  EXPECT_EQ(code->size(), 6u);
  auto verify = Verify("alice@example.com", *code);
  ASSERT_EQ(verify.status, 201) << verify.body;
  EXPECT_TRUE(verify.json["token"].is_string());
  EXPECT_EQ(verify.json["user"]["username"], "alice");
  EXPECT_FALSE(verify.json["user"].contains("email"));  // only /api/me shows it
  EXPECT_GT(verify.json["user"]["id"].get<int64_t>(), 0);
  EXPECT_TRUE(verify.json["user"]["profile_picture"].is_null());
  EXPECT_EQ(verify.json["user"]["online"], false);

  auto me = client_.Get("/api/me", verify.json["token"]);
  ASSERT_EQ(me.status, 200) << me.body;
  EXPECT_EQ(me.json["id"], verify.json["user"]["id"]);
  EXPECT_EQ(me.json["email"], "alice@example.com");
}

TEST_F(AccountsTest, TokenIsHs256WithTheDocumentedClaims) {
  Account a = SignUp(server_, client_, "claims");
  const std::string& t = a.token;
  const size_t d1 = t.find('.'), d2 = t.find('.', d1 + 1);
  ASSERT_NE(d2, std::string::npos);
  Json header = DecodeSegment(t.substr(0, d1));
  Json claims = DecodeSegment(t.substr(d1 + 1, d2 - d1 - 1));
  EXPECT_EQ(header["alg"], "HS256");
  EXPECT_EQ(claims["sub"], std::to_string(a.id));
  EXPECT_TRUE(claims["iat"].is_number_integer());
  EXPECT_TRUE(claims["exp"].is_number_integer());
  EXPECT_TRUE(claims["jti"].is_string());
  EXPECT_EQ(claims["exp"].get<int64_t>() - claims["iat"].get<int64_t>(), 1440 * 60);

  auto login = Login({{"username", a.username}, {"password", a.password}});
  ASSERT_EQ(login.status, 200);
  const std::string tok = login.json["token"];
  Json c2 = DecodeSegment(tok.substr(tok.find('.') + 1, tok.rfind('.') - tok.find('.') - 1));
  // expires_at is the RFC 3339 form of exp.
  const std::string expires_at = login.json["expires_at"];
  EXPECT_TRUE(std::regex_match(expires_at, std::regex(R"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.000Z)")))
      << expires_at;
  std::tm tm{};
  strptime(expires_at.c_str(), "%Y-%m-%dT%H:%M:%S", &tm);
  EXPECT_EQ(static_cast<int64_t>(timegm(&tm)), c2["exp"].get<int64_t>());
}

TEST_F(AccountsTest, SignupValidationIs400NamingTheField) {
  struct Case {
    Json body;
    std::string field;
  };
  const std::vector<Case> cases = {
      {{{"email", "a@example.com"}, {"password", "correct horse"}}, "username"},
      {{{"username", "ab"}, {"email", "a@example.com"}, {"password", "correct horse"}}, "username"},
      {{{"username", std::string(33, 'a')}, {"email", "a@example.com"}, {"password", "12345678"}},
       "username"},
      {{{"username", "bad name"}, {"email", "a@example.com"}, {"password", "correct horse"}},
       "username"},
      {{{"username", "bob"}, {"email", "not-an-email"}, {"password", "correct horse"}}, "email"},
      {{{"username", "bob"}, {"email", "a@b"}, {"password", "correct horse"}}, "email"},
      {{{"username", "bob"}, {"email", "a@example.com"}, {"password", "short"}}, "password"},
      {{{"username", "bob"}, {"email", "a@example.com"}, {"password", std::string(129, 'p')}},
       "password"},
      {{{"username", 7}, {"email", "a@example.com"}, {"password", "correct horse"}}, "username"},
      {{{"username", "bob"}, {"email", "a@example.com"}}, "password"},
  };
  for (const auto& c : cases) {
    auto r = client_.Post("/api/signup/initiate", c.body);
    ExpectError(r, 400, "invalid_request");
    EXPECT_NE(r.json["error"]["message"].get<std::string>().find(c.field), std::string::npos)
        << c.body.dump() << " -> " << r.body;
  }
  ExpectError(client_.Request("POST", "/api/signup/initiate", "{not json"), 400, "invalid_request");
  ExpectError(client_.Request("POST", "/api/signup/initiate", "[1,2]"), 400, "invalid_request");
  // Invalid UTF-8 inside a JSON string.
  ExpectError(client_.Request("POST", "/api/signup/initiate",
                              "{\"username\":\"b\xff\xfe\",\"email\":\"a@example.com\","
                              "\"password\":\"correct horse\"}"),
              400, "invalid_request");
  // Lengths count code points: 8 two-byte characters are a valid password, 128 too.
  EXPECT_EQ(Initiate("unicode1", "u1@example.com", "ééééàààà").status, 202);
  std::string long_pw;
  for (int i = 0; i < 128; ++i) long_pw += "é";
  EXPECT_EQ(Initiate("unicode2", "u2@example.com", long_pw).status, 202);
}

TEST_F(AccountsTest, TakenUsernameOrEmailIs409CaseInsensitive) {
  SignUp(server_, client_, "carol");
  ExpectError(Initiate("CAROL", "other@example.com"), 409, "conflict");
  ExpectError(Initiate("carol2", "Carol@Example.COM"), 409, "conflict");
  // Validation comes before conflict; conflict before the resend window.
  ExpectError(Initiate("CAROL", "bad"), 400, "invalid_request");
  ExpectError(Initiate("CAROL", "other@example.com"), 409, "conflict");
}

TEST_F(AccountsTest, SecondInitiateWithin30sIs429WithRetryAfter) {
  ASSERT_EQ(Initiate("dave", "dave@example.com").status, 202);
  auto again = Initiate("dave", "dave@example.com");
  ExpectError(again, 429, "rate_limited");
  ASSERT_TRUE(again.headers.count("retry-after"));
  const int retry = std::stoi(again.headers["retry-after"]);
  EXPECT_GE(retry, 1);
  EXPECT_LE(retry, 30);
  // The same email in another case is the same email.
  ExpectError(Initiate("dave", "DAVE@example.com"), 429, "rate_limited");
  // Signup and forgot keep separate windows.
  EXPECT_EQ(client_.Post("/api/forgot/initiate", {{"email", "dave@example.com"}}).status, 202);
  // The first code still works.
  auto code = server_.LatestCode("dave@example.com");
  ASSERT_TRUE(code);
  EXPECT_EQ(Verify("dave@example.com", *code).status, 201);
}

TEST_F(AccountsTest, WrongCodeIsOtpInvalidAndFiveWrongTriesBurnIt) {
  ASSERT_EQ(Initiate("erin", "erin@example.com").status, 202);
  const std::string code = *server_.LatestCode("erin@example.com");
  for (int i = 0; i < 5; ++i) {
    ExpectError(Verify("erin@example.com", WrongCode(code)), 400, "otp_invalid");
  }
  // Burned: even the right code is refused now.
  ExpectError(Verify("erin@example.com", code), 400, "otp_invalid");
  ExpectError(Login({{"username", "erin"}, {"password", "correct horse"}}), 401,
              "invalid_credentials");
}

TEST_F(AccountsTest, FourWrongTriesLeaveTheCodeUsable) {
  ASSERT_EQ(Initiate("erin2", "erin2@example.com").status, 202);
  const std::string code = *server_.LatestCode("erin2@example.com");
  for (int i = 0; i < 4; ++i) {
    ExpectError(Verify("erin2@example.com", WrongCode(code)), 400, "otp_invalid");
  }
  EXPECT_EQ(Verify("erin2@example.com", code).status, 201);
}

TEST_F(AccountsTest, CodeIsSingleUseAndUnknownEmailIsInvalid) {
  ASSERT_EQ(Initiate("frank", "frank@example.com").status, 202);
  const std::string code = *server_.LatestCode("frank@example.com");
  ASSERT_EQ(Verify("frank@example.com", code).status, 201);
  ExpectError(Verify("frank@example.com", code), 400, "otp_invalid");
  ExpectError(Verify("nobody@example.com", "123456"), 400, "otp_invalid");
  ExpectError(Verify("frank@example.com", "12ab56"), 400, "otp_invalid");
  ExpectError(client_.Post("/api/signup/verify", {{"email", "frank@example.com"}}), 400,
              "invalid_request");
}

TEST_F(AccountsTest, TwoPendingSignupsForOneNameOnlyTheFirstVerifiedWins) {
  ASSERT_EQ(Initiate("gina", "gina1@example.com").status, 202);
  ASSERT_EQ(Initiate("gina", "gina2@example.com").status, 202);
  const std::string c1 = *server_.LatestCode("gina1@example.com");
  const std::string c2 = *server_.LatestCode("gina2@example.com");
  EXPECT_EQ(Verify("gina2@example.com", c2).status, 201);
  ExpectError(Verify("gina1@example.com", c1), 409, "conflict");
}

TEST(AccountsExpiryTest, ExpiredCodeIsOtpExpired) {
  TestServer server({.env = {{"OTP_TTL_SEC", "1"}}});
  HttpClient client(server.port());
  auto init = client.Post(
      "/api/signup/initiate",
      {{"username", "henry"}, {"email", "henry@example.com"}, {"password", "correct horse"}});
  ASSERT_EQ(init.status, 202);
  EXPECT_EQ(init.json["expires_in_sec"], 1);
  const std::string code = *server.LatestCode("henry@example.com");
  // The lifetime has to pass; there is no event to await.
  std::this_thread::sleep_for(std::chrono::milliseconds(1100));
  ExpectError(client.Post("/api/signup/verify", {{"email", "henry@example.com"}, {"otp", code}}),
              400, "otp_expired");
}

TEST(AccountsDigitsTest, OtpDigitsSetsTheCodeLength) {
  TestServer server({.env = {{"OTP_DIGITS", "8"}}});
  HttpClient client(server.port());
  Account a = SignUp(server, client, "ivy");
  EXPECT_EQ(server.LatestCode(a.email)->size(), 8u);
}

// ---------------------------------------------------------------------------------------------
// Login
// ---------------------------------------------------------------------------------------------

TEST_F(AccountsTest, LoginByUsernameOrEmailCaseInsensitive) {
  Account a = SignUp(server_, client_, "jack");
  for (const Json& body : {Json{{"username", "jack"}, {"password", a.password}},
                           Json{{"username", "JACK"}, {"password", a.password}},
                           Json{{"email", "Jack@Example.com"}, {"password", a.password}}}) {
    auto r = Login(body);
    ASSERT_EQ(r.status, 200) << body.dump() << " " << r.body;
    EXPECT_EQ(r.json["user"]["id"], a.id);
    EXPECT_FALSE(r.json["user"].contains("email"));
    EXPECT_EQ(client_.Get("/api/me", r.json["token"]).status, 200);
  }
}

TEST_F(AccountsTest, FailedLoginIsTheSameAnswerForUnknownUserAndWrongPassword) {
  SignUp(server_, client_, "kate");
  auto wrong = Login({{"username", "kate"}, {"password", "wrong password"}});
  auto unknown = Login({{"username", "nobody"}, {"password", "wrong password"}});
  ExpectError(wrong, 401, "invalid_credentials");
  ExpectError(unknown, 401, "invalid_credentials");
  EXPECT_EQ(wrong.body, unknown.body);
  ExpectError(Login({{"password", "whatever1"}}), 400, "invalid_request");
  ExpectError(Login({{"username", "kate"}}), 400, "invalid_request");
}

TEST_F(AccountsTest, TenFailuresLockTheAccountEvenForTheRightPassword) {
  Account a = SignUp(server_, client_, "liam");
  for (int i = 0; i < 9; ++i) {
    ExpectError(Login({{"username", "liam"}, {"password", "wrong password"}}), 401,
                "invalid_credentials");
  }
  // Nine failures: the right password still works, and a success does not lift a lock
  // that is not there; it resets the count.
  ASSERT_EQ(Login({{"username", "liam"}, {"password", a.password}}).status, 200);
  for (int i = 0; i < 10; ++i) {
    ExpectError(Login({{"username", "liam"}, {"password", "wrong password"}}), 401,
                "invalid_credentials");
  }
  auto locked = Login({{"email", a.email}, {"password", a.password}});
  ExpectError(locked, 429, "rate_limited");
  ASSERT_TRUE(locked.headers.count("retry-after"));
  const int retry = std::stoi(locked.headers["retry-after"]);
  EXPECT_GT(retry, 800);
  EXPECT_LE(retry, 900);
  // Other accounts are unaffected.
  Account b = SignUp(server_, client_, "mona");
  EXPECT_EQ(Login({{"username", "mona"}, {"password", b.password}}).status, 200);
}

TEST(AccountsConcurrencyTest, ParallelWrongLoginsCheckNoMoreThanTenPasswords) {
  TestServer server({.env = {{"WORKER_THREADS", "8"}}});
  HttpClient client(server.port());
  SignUp(server, client, "race");
  std::atomic<int> unauthorized{0}, limited{0};
  std::vector<std::thread> threads;
  for (int i = 0; i < 20; ++i) {
    threads.emplace_back([&] {
      HttpClient c(server.port());
      auto r = c.Post("/api/login", {{"username", "race"}, {"password", "wrong password"}});
      if (r.status == 401) ++unauthorized;
      if (r.status == 429) ++limited;
    });
  }
  for (auto& t : threads) t.join();
  EXPECT_EQ(unauthorized.load(), 10);
  EXPECT_EQ(limited.load(), 10);
}

// ---------------------------------------------------------------------------------------------
// Password reset
// ---------------------------------------------------------------------------------------------

TEST_F(AccountsTest, ForgotInitiateAnswersTheSameForUnknownEmails) {
  SignUp(server_, client_, "nina");
  auto known = client_.Post("/api/forgot/initiate", {{"email", "nina@example.com"}});
  auto unknown = client_.Post("/api/forgot/initiate", {{"email", "ghost@example.com"}});
  EXPECT_EQ(known.status, 202);
  EXPECT_EQ(unknown.status, 202);
  EXPECT_EQ(known.body, unknown.body);
  // Once the registered email's mail is out (the same background queue), the other had its
  // chance: none went to it.
  ASSERT_TRUE(server_.WaitForLog("otp: to=nina@example.com subject=\"Your MmChat password reset"));
  EXPECT_FALSE(server_.LatestCode("ghost@example.com").has_value());
  // The resend window holds for both, so a 429 does not tell either.
  ExpectError(client_.Post("/api/forgot/initiate", {{"email", "nina@example.com"}}), 429,
              "rate_limited");
  ExpectError(client_.Post("/api/forgot/initiate", {{"email", "ghost@example.com"}}), 429,
              "rate_limited");
  ExpectError(client_.Post("/api/forgot/initiate", {{"email", "not an email"}}), 400,
              "invalid_request");
  ExpectError(client_.Post("/api/forgot/reset", {{"email", "ghost@example.com"},
                                                 {"otp", "123456"},
                                                 {"new_password", "new password"}}),
              400, "otp_invalid");
}

TEST_F(AccountsTest, ResetChangesPasswordAndRevokesOlderTokens) {
  Account a = SignUp(server_, client_, "oscar");
  auto second = Login({{"username", "oscar"}, {"password", a.password}});
  ASSERT_EQ(second.status, 200);
  ASSERT_EQ(client_.Post("/api/forgot/initiate", {{"email", a.email}}).status, 202);
  // The reset mail is sent in the background, after the 202: wait for it, or LatestCode
  // returns the older signup code.
  ASSERT_TRUE(server_.WaitForLog("otp: to=" + a.email + " subject=\"Your MmChat password reset"));
  auto code = server_.LatestCode(a.email);
  ASSERT_TRUE(code);

  ExpectError(client_.Post("/api/forgot/reset",
                           {{"email", a.email}, {"otp", *code}, {"new_password", "short"}}),
              400, "invalid_request");
  ExpectError(client_.Post("/api/forgot/reset", {{"email", a.email},
                                                 {"otp", WrongCode(*code)},
                                                 {"new_password", "brand new password"}}),
              400, "otp_invalid");
  auto reset =
      client_.Post("/api/forgot/reset",
                   {{"email", a.email}, {"otp", *code}, {"new_password", "brand new password"}});
  ASSERT_EQ(reset.status, 200) << reset.body;
  EXPECT_TRUE(reset.json["message"].is_string());

  // Right after the reset, within the same second: old tokens die, a new login works.
  auto fresh = Login({{"username", "oscar"}, {"password", "brand new password"}});
  ASSERT_EQ(fresh.status, 200);
  EXPECT_EQ(client_.Get("/api/me", fresh.json["token"]).status, 200);
  ExpectError(client_.Get("/api/me", a.token), 401, "unauthorized");
  ExpectError(client_.Get("/api/me", second.json["token"]), 401, "unauthorized");
  ExpectError(Login({{"username", "oscar"}, {"password", a.password}}), 401, "invalid_credentials");
  // The code was used.
  ExpectError(
      client_.Post("/api/forgot/reset",
                   {{"email", a.email}, {"otp", *code}, {"new_password", "third password"}}),
      400, "otp_invalid");
}

TEST_F(AccountsTest, ResetLiftsTheLoginLockout) {
  Account a = SignUp(server_, client_, "paul");
  for (int i = 0; i < 10; ++i) Login({{"username", "paul"}, {"password", "wrong password"}});
  ExpectError(Login({{"username", "paul"}, {"password", a.password}}), 429, "rate_limited");
  ASSERT_EQ(client_.Post("/api/forgot/initiate", {{"email", a.email}}).status, 202);
  // The reset mail is sent in the background, after the 202: wait for it, or LatestCode
  // returns the older signup code.
  ASSERT_TRUE(server_.WaitForLog("otp: to=" + a.email + " subject=\"Your MmChat password reset"));
  auto code = server_.LatestCode(a.email);
  ASSERT_EQ(client_
                .Post("/api/forgot/reset",
                      {{"email", a.email}, {"otp", *code}, {"new_password", "after lockout"}})
                .status,
            200);
  EXPECT_EQ(Login({{"username", "paul"}, {"password", "after lockout"}}).status, 200);
}

TEST_F(AccountsTest, CodesAreStoredOnlyAsHashes) {
  ASSERT_EQ(Initiate("quinn", "quinn@example.com").status, 202);
  const std::string code = *server_.LatestCode("quinn@example.com");
  Account a = SignUp(server_, client_, "rose");
  // Everything the database holds (SQLite: the raw file and its WAL; PostgreSQL: every row):
  // neither the code nor the password appears in it.
  server_.Stop();
  const std::string raw = StoreContents(server_.dir());
  ASSERT_FALSE(raw.empty());
  EXPECT_EQ(raw.find(code), std::string::npos);
  EXPECT_EQ(raw.find(a.password), std::string::npos);
  EXPECT_NE(raw.find("$argon2id$"), std::string::npos);
}

}  // namespace
}  // namespace mmchat::test
