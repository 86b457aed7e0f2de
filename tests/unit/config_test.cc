// app/config: .env parsing, LoadConfig (defaults, every API.md variable, precedence, errors
// naming the variable) and listen address parsing.
#include "app/config.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <algorithm>
#include <map>
#include <optional>
#include <set>
#include <string>
#include <thread>

namespace mmchat::app {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;
using ::testing::StartsWith;

using Env = std::map<std::string, std::string>;

// A getenv over a map, standing in for the real environment.
auto Getenv(const Env& env) {
  return [&env](const char* name) -> std::optional<std::string> {
    auto it = env.find(name);
    if (it == env.end()) return std::nullopt;
    return it->second;
  };
}

Result<Config> Load(const Env& env, const Env& dotenv = {}) {
  return LoadConfig(Getenv(env), dotenv);
}

// ---------------------------------------------------------------------------------------------
// ParseDotEnv
// ---------------------------------------------------------------------------------------------

TEST(ParseDotEnvTest, ParsesPlainPairs) {
  auto r = ParseDotEnv("A=1\nB=two\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r, (Env{{"A", "1"}, {"B", "two"}}));
}

TEST(ParseDotEnvTest, EmptyContentGivesNothing) {
  auto r = ParseDotEnv("");
  ASSERT_TRUE(r.ok());
  EXPECT_TRUE(r->empty());
}

TEST(ParseDotEnvTest, SkipsCommentsAndBlankLines) {
  auto r = ParseDotEnv("# a comment\n\n   \n\t# indented comment\nA=1\n\n#B=2\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r, (Env{{"A", "1"}}));
}

TEST(ParseDotEnvTest, LastLineWithoutNewline) {
  auto r = ParseDotEnv("A=1\nB=2");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (Env{{"A", "1"}, {"B", "2"}}));
}

TEST(ParseDotEnvTest, AcceptsCrLfLineEndings) {
  auto r = ParseDotEnv("A=1\r\nB=\"x y\"\r\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r, (Env{{"A", "1"}, {"B", "x y"}}));
}

TEST(ParseDotEnvTest, AcceptsExportPrefix) {
  auto r = ParseDotEnv("export A=1\nexport   B=2\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r, (Env{{"A", "1"}, {"B", "2"}}));
}

TEST(ParseDotEnvTest, TrimsSpacesAroundKeyAndValue) {
  auto r = ParseDotEnv("  A  =   spaced value  \n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(*r, (Env{{"A", "spaced value"}}));
}

TEST(ParseDotEnvTest, EmptyValue) {
  auto r = ParseDotEnv("A=\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(*r, (Env{{"A", ""}}));
}

TEST(ParseDotEnvTest, ValueMayContainEqualsSign) {
  auto r = ParseDotEnv("SMTP_URL=smtp://h:25/?a=b\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->at("SMTP_URL"), "smtp://h:25/?a=b");
}

TEST(ParseDotEnvTest, QuotedValues) {
  auto r = ParseDotEnv(
      "D=\"double quoted\"\n"
      "S='single quoted'\n"
      "H=\"has # hash\"\n"
      "M='it \"mixes\"'\n"
      "E=\"\"\n"
      "C=\"value\"   # trailing comment\n"
      "P=\"  kept padding  \"\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->at("D"), "double quoted");
  EXPECT_EQ(r->at("S"), "single quoted");
  EXPECT_EQ(r->at("H"), "has # hash");
  EXPECT_EQ(r->at("M"), "it \"mixes\"");
  EXPECT_EQ(r->at("E"), "");
  EXPECT_EQ(r->at("C"), "value");
  EXPECT_EQ(r->at("P"), "  kept padding  ");
}

TEST(ParseDotEnvTest, InlineCommentNeedsPrecedingSpace) {
  auto r = ParseDotEnv("A=value # comment\nB=no#comment\nC=x\t # tab then space\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->at("A"), "value");
  EXPECT_EQ(r->at("B"), "no#comment");
  EXPECT_EQ(r->at("C"), "x");
}

TEST(ParseDotEnvTest, CommentOnlyValueIsEmpty) {
  // "KEY= # note" leaves KEY empty, as in shells and other .env readers, rather than setting it
  // to "# note".
  auto r = ParseDotEnv("SMTP_URL= # set for OTP_SENDER=smtp\n");
  ASSERT_TRUE(r.ok()) << r.status().message();
  EXPECT_EQ(r->at("SMTP_URL"), "");
}

TEST(ParseDotEnvTest, LaterDuplicateWins) {
  auto r = ParseDotEnv("A=1\nA=2\n");
  ASSERT_TRUE(r.ok());
  EXPECT_EQ(r->at("A"), "2");
}

TEST(ParseDotEnvTest, MalformedLinesNameTheirLineNumber) {
  struct Case {
    const char* content;
    const char* line;
  };
  const Case cases[] = {
      {"A=1\nB=2\njust words\n", "line 3"},
      {"# c\n\nA=1\n\nBAD KEY=1\n", "line 5"},
      {"=value\n", "line 1"},
      {"A=1\n1ABC=2\n", "line 2"},
      {"A=\"unterminated\n", "line 1"},
      {"A=1\nB='x' trailing\n", "line 2"},
      {"A=1\r\nB-C=1\r\n", "line 2"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.content);
    auto r = ParseDotEnv(c.content);
    ASSERT_FALSE(r.ok());
    EXPECT_EQ(r.status().code(), StatusCode::kInvalidRequest);
    EXPECT_THAT(r.status().message(), HasSubstr(c.line));
  }
}

// ---------------------------------------------------------------------------------------------
// LoadConfig
// ---------------------------------------------------------------------------------------------

TEST(LoadConfigTest, DefaultsMatchApiMd) {
  auto c = Load({});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->http_host, "");
  EXPECT_EQ(c->http_port, 8080);
  EXPECT_FALSE(c->jwt_secret.has_value());
  EXPECT_EQ(c->jwt_ttl_min, 1440);
  EXPECT_EQ(c->sqlite_dsn, "file:chat.db");
  EXPECT_EQ(c->otp_digits, 6);
  EXPECT_EQ(c->otp_ttl_sec, 300);
  EXPECT_EQ(c->otp_sender, "log");
  EXPECT_EQ(c->smtp_url, "");
  EXPECT_EQ(c->smtp_from, "mmchat@localhost");
  EXPECT_EQ(c->max_message_len, 4000);
  // Not in API.md: two PostgreSQL connections per core, at least 4; or as set.
  EXPECT_EQ(c->database_pool_size, std::max<int64_t>(4, 2 * std::thread::hardware_concurrency()));
  auto set = Load({{"DATABASE_POOL_SIZE", "3"}});
  ASSERT_TRUE(set.ok()) << set.status().message();
  EXPECT_EQ(set->database_pool_size, 3);
}

const Env& AllApiVars() {
  static const Env kEnv = {
      {"HTTP_ADDR", "127.0.0.1:9090"},
      {"JWT_SECRET", "0123456789abcdef-secret"},
      {"JWT_TTL_MIN", "60"},
      {"SQLITE_DSN", "file:/tmp/x.db"},
      {"OTP_DIGITS", "8"},
      {"OTP_TTL_SEC", "120"},
      {"OTP_SENDER", "smtp"},
      {"SMTP_URL", "smtps://user:pw@mail.example.com:465"},
      {"SMTP_FROM", "noreply@example.com"},
      {"MAX_MESSAGE_LEN", "500"},
  };
  return kEnv;
}

void ExpectAllApiVars(const Config& c) {
  EXPECT_EQ(c.http_host, "127.0.0.1");
  EXPECT_EQ(c.http_port, 9090);
  EXPECT_EQ(c.jwt_secret, std::optional<std::string>("0123456789abcdef-secret"));
  EXPECT_EQ(c.jwt_ttl_min, 60);
  EXPECT_EQ(c.sqlite_dsn, "file:/tmp/x.db");
  EXPECT_EQ(c.otp_digits, 8);
  EXPECT_EQ(c.otp_ttl_sec, 120);
  EXPECT_EQ(c.otp_sender, "smtp");
  EXPECT_EQ(c.smtp_url, "smtps://user:pw@mail.example.com:465");
  EXPECT_EQ(c.smtp_from, "noreply@example.com");
  EXPECT_EQ(c.max_message_len, 500);
}

TEST(LoadConfigTest, ReadsEveryApiVariableFromTheEnvironment) {
  auto c = Load(AllApiVars());
  ASSERT_TRUE(c.ok()) << c.status().message();
  ExpectAllApiVars(*c);
}

TEST(LoadConfigTest, ReadsEveryApiVariableFromDotEnv) {
  auto c = Load({}, AllApiVars());
  ASSERT_TRUE(c.ok()) << c.status().message();
  ExpectAllApiVars(*c);
}

TEST(LoadConfigTest, ReadsOwnVariables) {
  EXPECT_EQ(Load({})->max_pending_upload_bytes, 10 * 26214400);  // ten of the largest
  EXPECT_EQ(Load({{"MAX_UPLOAD_BYTES", "1000"}})->max_pending_upload_bytes, 10000);
  auto c = Load({{"HTTP_THREADS", "3"},
                 {"WORKER_THREADS", "5"},
                 {"HTTP_READ_TIMEOUT_SEC", "7"},
                 {"SQLITE_SYNCHRONOUS", "FULL"},
                 {"LOG_LEVEL", "debug"},
                 {"MAX_PENDING_UPLOAD_BYTES", "0"}});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->max_pending_upload_bytes, 0);
  EXPECT_EQ(c->http_threads, 3);
  EXPECT_EQ(c->worker_threads, 5);
  EXPECT_EQ(c->http_read_timeout_sec, 7);
  EXPECT_EQ(c->sqlite_synchronous, "FULL");
  EXPECT_EQ(c->log_level, "debug");
}

TEST(LoadConfigTest, EnvironmentWinsOverDotEnv) {
  const Env env = {{"OTP_DIGITS", "7"}, {"HTTP_ADDR", ":7000"}};
  const Env dotenv = {{"OTP_DIGITS", "9"}, {"HTTP_ADDR", ":6000"}, {"OTP_TTL_SEC", "42"}};
  auto c = Load(env, dotenv);
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->otp_digits, 7);
  EXPECT_EQ(c->http_port, 7000);
  EXPECT_EQ(c->otp_ttl_sec, 42);  // only in .env: used
}

TEST(LoadConfigTest, BadDotEnvValueShadowedByEnvironmentIsNotAnError) {
  auto c = Load({{"OTP_TTL_SEC", "60"}}, {{"OTP_TTL_SEC", "not-a-number"}});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->otp_ttl_sec, 60);
}

TEST(LoadConfigTest, EmptyJwtSecretMeansUnset) {
  auto c = Load({{"JWT_SECRET", ""}});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_FALSE(c->jwt_secret.has_value());
}

TEST(LoadConfigTest, SmtpSenderWithUrl) {
  auto c = Load({{"OTP_SENDER", "smtp"}, {"SMTP_URL", "smtp://127.0.0.1:2525"}});
  ASSERT_TRUE(c.ok()) << c.status().message();
  EXPECT_EQ(c->otp_sender, "smtp");
  EXPECT_EQ(c->smtp_url, "smtp://127.0.0.1:2525");
}

TEST(LoadConfigTest, InvalidValuesNameTheVariable) {
  struct Case {
    Env env;
    const char* var;
  };
  const Case cases[] = {
      {{{"OTP_TTL_SEC", "abc"}}, "OTP_TTL_SEC"},
      {{{"OTP_TTL_SEC", "10s"}}, "OTP_TTL_SEC"},
      {{{"OTP_TTL_SEC", "0"}}, "OTP_TTL_SEC"},
      {{{"OTP_TTL_SEC", ""}}, "OTP_TTL_SEC"},
      {{{"OTP_TTL_SEC", "99999999999999999999999"}}, "OTP_TTL_SEC"},
      {{{"OTP_DIGITS", "3"}}, "OTP_DIGITS"},
      {{{"OTP_DIGITS", "11"}}, "OTP_DIGITS"},
      {{{"JWT_TTL_MIN", "-5"}}, "JWT_TTL_MIN"},
      {{{"JWT_TTL_MIN", "1.5"}}, "JWT_TTL_MIN"},
      {{{"MAX_MESSAGE_LEN", "many"}}, "MAX_MESSAGE_LEN"},
      {{{"HTTP_ADDR", "8080"}}, "HTTP_ADDR"},
      {{{"HTTP_ADDR", "localhost:http"}}, "HTTP_ADDR"},
      {{{"HTTP_ADDR", ":70000"}}, "HTTP_ADDR"},
      {{{"OTP_SENDER", "smtp"}}, "SMTP_URL"},
      {{{"OTP_SENDER", "pigeon"}}, "OTP_SENDER"},
      {{{"SMTP_URL", "http://mail.example.com"}}, "SMTP_URL"},
      {{{"OTP_SENDER", "smtp"}, {"SMTP_URL", "mail.example.com:25"}}, "SMTP_URL"},
      {{{"SMTP_FROM", "not-an-address"}}, "SMTP_FROM"},
      {{{"SMTP_FROM", "Name <a@b.c>"}}, "SMTP_FROM"},
      {{{"SQLITE_DSN", ""}}, "SQLITE_DSN"},
      {{{"SQLITE_DSN", ":memory:"}}, "SQLITE_DSN"},
      {{{"SQLITE_DSN", "file:x?mode=memory&cache=shared"}}, "SQLITE_DSN"},
      {{{"JWT_SECRET", "short"}}, "JWT_SECRET"},
      {{{"HTTP_THREADS", "0"}}, "HTTP_THREADS"},
      {{{"WORKER_THREADS", "x"}}, "WORKER_THREADS"},
      {{{"HTTP_READ_TIMEOUT_SEC", "-1"}}, "HTTP_READ_TIMEOUT_SEC"},
      {{{"MAX_PENDING_UPLOAD_BYTES", "-1"}}, "MAX_PENDING_UPLOAD_BYTES"},
      {{{"MAX_PENDING_UPLOAD_BYTES", "26214399"}}, "MAX_PENDING_UPLOAD_BYTES"},
      {{{"SQLITE_SYNCHRONOUS", "OFF"}}, "SQLITE_SYNCHRONOUS"},
      {{{"LOG_LEVEL", "loud"}}, "LOG_LEVEL"},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.var + std::string("=") + c.env.begin()->second);
    // The same from the environment and from .env.
    for (bool from_dotenv : {false, true}) {
      auto r = from_dotenv ? Load({}, c.env) : Load(c.env);
      ASSERT_FALSE(r.ok());
      EXPECT_EQ(r.status().code(), StatusCode::kInvalidRequest);
      EXPECT_THAT(r.status().message(), StartsWith(std::string(c.var) + ":"));
    }
  }
}

TEST(LoadConfigTest, SmtpWithoutUrlMentionsOtpSender) {
  auto r = Load({{"OTP_SENDER", "smtp"}});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), HasSubstr("OTP_SENDER"));
}

TEST(LoadConfigTest, ShortJwtSecretIsNotEchoed) {
  auto r = Load({{"JWT_SECRET", "hunter2-secret"}});
  ASSERT_FALSE(r.ok());
  EXPECT_THAT(r.status().message(), Not(HasSubstr("hunter2")));
}

TEST(LoadConfigTest, ConfigVarsListsEveryApiVariable) {
  std::set<std::string> names;
  for (const ConfigVar& v : ConfigVars()) names.insert(v.name);
  for (const auto& [name, value] : AllApiVars()) EXPECT_TRUE(names.count(name)) << name;
}

// ---------------------------------------------------------------------------------------------
// ParseListenAddress
// ---------------------------------------------------------------------------------------------

TEST(ParseListenAddressTest, AcceptsValidForms) {
  struct Case {
    const char* addr;
    const char* host;
    uint16_t port;
  };
  const Case cases[] = {
      {":8080", "", 8080},
      {"127.0.0.1:0", "127.0.0.1", 0},
      {"[::1]:9000", "::1", 9000},
      {"localhost:80", "localhost", 80},
      {"0.0.0.0:65535", "0.0.0.0", 65535},
      {"[::]:1", "::", 1},
  };
  for (const Case& c : cases) {
    SCOPED_TRACE(c.addr);
    std::string host = "unchanged";
    uint16_t port = 1234;
    Status s = ParseListenAddress(c.addr, &host, &port);
    ASSERT_TRUE(s.ok()) << s.message();
    EXPECT_EQ(host, c.host);
    EXPECT_EQ(port, c.port);
  }
}

TEST(ParseListenAddressTest, RejectsBadForms) {
  for (const char* addr :
       {"", "8080", ":", "localhost", "localhost:", ":65536", ":-1", ":+80", ":80x", "::1:9000",
        "[::1]", "[::1]9000", "[::1:9000", "host name:80", "a/b:80", "user@host:80", " :80"}) {
    SCOPED_TRACE(addr);
    std::string host = "unchanged";
    uint16_t port = 1234;
    Status s = ParseListenAddress(addr, &host, &port);
    EXPECT_FALSE(s.ok());
    EXPECT_EQ(s.code(), StatusCode::kInvalidRequest);
    EXPECT_THAT(s.message(), StartsWith("HTTP_ADDR:"));
    EXPECT_EQ(host, "unchanged");
    EXPECT_EQ(port, 1234);
  }
}

}  // namespace
}  // namespace mmchat::app
