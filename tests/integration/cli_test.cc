// API.md "Configuration" and the command line: --help, --version, --migrate, invalid
// configuration, the .env file, the generated JWT secret, and stopping on SIGINT.
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/wait.h>

#include <algorithm>
#include <cctype>
#include <cstdio>
#include <fstream>
#include <regex>
#include <set>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "test_postgres.h"

namespace mmchat::test {
namespace {

std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

std::vector<std::string> NonEmptyLines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (line.find_first_not_of(" \t\r") != std::string::npos) out.push_back(line);
  }
  return out;
}

struct Exited {
  int code = -1;  // -1: still running after the timeout (then killed)
  std::string log;
};

// Starts the binary as a server (harness defaults plus `options.env`) and waits, bounded, for
// it to exit by itself, as it must when start-up fails. A server that wrongly starts serving
// is killed after the timeout instead of hanging the test.
Exited ServeExpectingExit(ServerOptions options) {
  options.wait_ready = false;
  TestServer server(options);
  Exited out;
  out.code = server.WaitExit(std::chrono::seconds(20));
  out.log = server.Log();
  return out;
}

// The single line of a failed start-up; empty (after a test failure) when it is not one line.
std::string OneLine(const Exited& e) {
  const auto lines = NonEmptyLines(e.log);
  EXPECT_EQ(lines.size(), 1u) << "expected one clear line, got:\n" << e.log;
  return lines.size() == 1 ? lines[0] : "";
}

// ---------------------------------------------------------------------------------------------
// --help, --version
// ---------------------------------------------------------------------------------------------

// Variables of API.md's Configuration table that the server does not read yet. --help must not
// list them (so this list cannot go stale): remove one here when implementing it.
const std::set<std::string> kConfigNotYetImplemented = {};

// Whether `text` names `var` as a whole word (MAX_MESSAGE_LEN is not MAX_MESSAGE_LEN_X).
bool NamesVariable(const std::string& text, const std::string& var) {
  return std::regex_search(text, std::regex("(^|[^A-Z0-9_])" + var + "($|[^A-Z0-9_])"));
}

// Neither the default database file nor the configured store (StoreEnv) was touched.
void ExpectNoDatabase(const std::filesystem::path& dir) {
  EXPECT_FALSE(std::filesystem::exists(dir / "chat.db"));
  EXPECT_EQ(StoreTables(dir), std::vector<std::string>{});
}

TEST(CliTest, HelpListsFlagsAndConfiguration) {
  TempDir dir;
  const RunResult r = RunBinary({"--help"}, StoreEnv(dir.path()), dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--migrate"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--version"), std::string::npos) << r.output;
  const std::vector<std::string> vars = ApiConfigVariables();
  EXPECT_FALSE(vars.empty());
  for (const std::string& var : vars) {
    if (kConfigNotYetImplemented.contains(var)) {
      EXPECT_FALSE(NamesVariable(r.output, var))
          << var << " is in --help: remove it from kConfigNotYetImplemented";
    } else {
      EXPECT_TRUE(NamesVariable(r.output, var)) << var << " missing from:\n" << r.output;
    }
  }
  for (const std::string& var : kConfigNotYetImplemented) {
    EXPECT_TRUE(std::find(vars.begin(), vars.end(), var) != vars.end())
        << var << " is no longer in API.md's Configuration table";
  }
  EXPECT_NE(r.output.find(".env"), std::string::npos) << r.output;
  // Help neither serves nor touches a database.
  ExpectNoDatabase(dir.path());
}

// The README's Configuration table and --help name the same variables, in the same order (so
// the README also has API.md's, as the test above checks for --help).
TEST(CliTest, ReadmeListsTheVariablesOfHelp) {
  TempDir dir;
  const RunResult r = RunBinary({"--help"}, {}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  // "  NAME (default ...)" lines.
  static const std::regex kHelpVar(R"((^|\n)  ([A-Z0-9_]+) \(default)");
  std::vector<std::string> help;
  for (auto it = std::sregex_iterator(r.output.begin(), r.output.end(), kHelpVar);
       it != std::sregex_iterator(); ++it) {
    help.push_back((*it)[2]);
  }
  EXPECT_FALSE(help.empty()) << r.output;
  EXPECT_EQ(ConfigTableVariables(MMCHAT_README), help);
}

TEST(CliTest, VersionPrintsNameAndVersion) {
  TempDir dir;
  const RunResult r = RunBinary({"--version"}, StoreEnv(dir.path()), dir.path());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::regex_search(r.output, std::regex(R"(^mmchat \d+\.\d+(\.\d+)?)"))) << r.output;
  ExpectNoDatabase(dir.path());
}

TEST(CliTest, UnknownFlagFails) {
  TempDir dir;
  const RunResult r = RunBinary({"--no-such-flag"}, StoreEnv(dir.path()), dir.path());
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("--no-such-flag"), std::string::npos) << r.output;
  ExpectNoDatabase(dir.path());
}

// ---------------------------------------------------------------------------------------------
// --migrate / -migrate
// ---------------------------------------------------------------------------------------------

class CliMigrateTest : public ::testing::TestWithParam<const char*> {};

// On the configured store (StoreEnv: SQLITE_DSN, or DATABASE_URL on PostgreSQL), from a working
// directory of its own: the schema lands there, not in a chat.db of the working directory.
TEST_P(CliMigrateTest, CreatesTheDatabaseAndIsIdempotent) {
  TempDir dir;
  const auto cwd = dir.path() / "cwd";
  std::filesystem::create_directory(cwd);
  const auto env = StoreEnv(dir.path());
  const std::string rows_sql =
      "SELECT version, name, applied_at FROM schema_migrations ORDER BY version";

  const RunResult first = RunBinary({GetParam()}, env, cwd);
  ASSERT_EQ(first.exit_code, 0) << first.output;
  if (!OnPostgres()) {
    ASSERT_TRUE(std::filesystem::exists(dir.path() / "chat.db")) << first.output;
  }
  EXPECT_FALSE(std::filesystem::exists(cwd / "chat.db")) << first.output;
  const std::string count = QueryStoreOne(dir.path(), "SELECT COUNT(*) FROM schema_migrations");
  ASSERT_FALSE(count.empty());
  EXPECT_GE(std::stoi(count), 1);
  const auto rows = QueryStore(dir.path(), rows_sql);
  const auto tables = StoreTables(dir.path());
  for (const char* table : {"schema_migrations", "users", "conversations", "messages"}) {
    EXPECT_TRUE(std::find(tables.begin(), tables.end(), table) != tables.end()) << table;
  }
  // It migrated and exited; it did not serve.
  EXPECT_EQ(first.output.find("listening on"), std::string::npos) << first.output;

  const RunResult second = RunBinary({GetParam()}, env, cwd);
  ASSERT_EQ(second.exit_code, 0) << second.output;
  EXPECT_EQ(QueryStoreOne(dir.path(), "SELECT COUNT(*) FROM schema_migrations"), count);
  EXPECT_EQ(QueryStore(dir.path(), rows_sql), rows);
  EXPECT_EQ(StoreTables(dir.path()), tables);
}

INSTANTIATE_TEST_SUITE_P(CliFlags, CliMigrateTest, ::testing::Values("--migrate", "-migrate"),
                         [](const auto& info) {
                           return std::string(info.param)[1] == '-' ? "DoubleDash" : "SingleDash";
                         });

TEST(CliTest, MigrateUsesTheDefaultDatabaseInTheWorkingDirectory) {
  if (OnPostgres()) {
    GTEST_SKIP() << "SQLite only: without SQLITE_DSN or DATABASE_URL the store is SQLite's "
                    "default file; PostgreSQL has no default (CliMigrateTest checks that "
                    "--migrate with DATABASE_URL creates no chat.db)";
  }
  TempDir dir;
  const RunResult r = RunBinary({"--migrate"}, {}, dir.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(std::filesystem::exists(dir.path() / "chat.db")) << r.output;
}

TEST(CliTest, NewerSchemaStopsMigrateAndServe) {
  TempDir dir;
  const auto env = StoreEnv(dir.path());  // the database TestServer uses for this directory
  ASSERT_EQ(RunBinary({"--migrate"}, env, dir.path()).exit_code, 0);
  // The newest version this build knows: what --migrate just brought the database to.
  const std::string supported =
      QueryStoreOne(dir.path(), "SELECT MAX(version) FROM schema_migrations");
  ASSERT_FALSE(supported.empty());
  QueryStore(dir.path(),
             "INSERT INTO schema_migrations(version, name, applied_at) VALUES (9999, 'future', 0)");
  const std::string sql = "SELECT version, name FROM schema_migrations ORDER BY version";
  const auto before = QueryStore(dir.path(), sql);
  ASSERT_GE(before.size(), 2u);

  // One line names the database's version and the newest this build supports, and says to
  // upgrade.
  auto expect_clear = [&](const std::string& output) {
    std::vector<std::string> lines;
    for (const auto& line : NonEmptyLines(output)) {
      if (line.find("9999") != std::string::npos) lines.push_back(line);
    }
    ASSERT_EQ(lines.size(), 1u) << output;
    // The message, past the log line's timestamp and level.
    static const std::regex kLogLine(R"(^\S+ (critical|error) (.*)$)");
    std::smatch m;
    ASSERT_TRUE(std::regex_match(lines[0], m, kLogLine)) << lines[0];
    const std::string message = Lower(m[2]);
    EXPECT_NE(message.find("schema"), std::string::npos) << message;
    EXPECT_NE(message.find("upgrade"), std::string::npos) << message;
    EXPECT_TRUE(std::regex_search(message, std::regex("(^|[^0-9])" + supported + "([^0-9]|$)")))
        << "the supported version " << supported << " is not named: " << message;
  };

  const RunResult migrate = RunBinary({"--migrate"}, env, dir.path());
  EXPECT_NE(migrate.exit_code, 0) << migrate.output;
  expect_clear(migrate.output);

  ServerOptions options;
  options.dir = dir.path();  // the harness points the server at StoreEnv(dir)
  const Exited serve = ServeExpectingExit(options);
  EXPECT_NE(serve.code, -1) << "the server kept running:\n" << serve.log;
  EXPECT_NE(serve.code, 0) << serve.log;
  EXPECT_EQ(serve.log.find("listening on"), std::string::npos) << serve.log;
  expect_clear(serve.log);

  EXPECT_EQ(QueryStore(dir.path(), sql), before);
}

// ---------------------------------------------------------------------------------------------
// Invalid configuration
// ---------------------------------------------------------------------------------------------

struct BadConfig {
  const char* label;
  std::map<std::string, std::string> env;
  const char* named;  // the variable the message must name
  const char* value;  // the value it should quote, or nullptr
};

// PostgreSQL start-up problems: the binary exits 1 with one line naming the problem, after
// waiting DATABASE_WAIT_SEC for an unreachable server, at once for the rest; the password in
// DATABASE_URL never reaches the output.
TEST(CliPostgresStartupTest, EachProblemIsOneLineAndExitOne) {
  const std::string url = TestPostgresUrl();
  ASSERT_FALSE(url.empty());
  struct Case {
    std::string what;
    std::string database_url;
    std::string expected;
  };
  const size_t at = url.find('@');
  const std::string wrong_password =
      url.substr(0, url.rfind(':', at) + 1) + "not-the-password" + url.substr(at);
  const std::vector<Case> cases = {
      {"unreachable", "postgresql://mmchat:secret-pw@127.0.0.1:1/mmchat", "database unreachable"},
      {"wrong password", WithDatabase(wrong_password, "postgres"), "authentication failed"},
      {"missing database", WithDatabase(url, "no_such_database_anywhere"), "database missing"},
  };
  for (const auto& c : cases) {
    for (const std::vector<std::string>& args :
         {std::vector<std::string>{}, std::vector<std::string>{"--migrate"}}) {
      SCOPED_TRACE(c.what + (args.empty() ? " (serve)" : " (--migrate)"));
      TempDir dir;
      const RunResult r = RunBinary(
          args, {{"DATABASE_URL", c.database_url}, {"DATABASE_WAIT_SEC", "1"}}, dir.path());
      EXPECT_EQ(r.exit_code, 1) << r.output;
      std::vector<std::string> problems;
      for (const auto& line : NonEmptyLines(r.output)) {
        if (line.find(" critical ") != std::string::npos) problems.push_back(line);
      }
      ASSERT_EQ(problems.size(), 1u) << r.output;
      EXPECT_NE(problems[0].find(c.expected), std::string::npos) << problems[0];
      EXPECT_EQ(r.output.find("secret-pw"), std::string::npos) << r.output;
      EXPECT_EQ(r.output.find("not-the-password"), std::string::npos) << r.output;
    }
  }
}

class CliConfigTest : public ::testing::TestWithParam<BadConfig> {};

TEST_P(CliConfigTest, StopsStartUpWithOneLineNamingTheVariable) {
  TempDir dir;
  ServerOptions options;
  options.dir = dir.path();
  options.env = GetParam().env;
  const Exited e = ServeExpectingExit(options);
  ASSERT_NE(e.code, -1) << "the server kept running:\n" << e.log;
  EXPECT_NE(e.code, 0) << e.log;
  const std::string line = OneLine(e);
  EXPECT_NE(line.find(GetParam().named), std::string::npos) << line;
  if (GetParam().value != nullptr) {
    EXPECT_NE(line.find(GetParam().value), std::string::npos) << line;
  }
  ExpectNoDatabase(dir.path());  // stopped before the database
}

INSTANTIATE_TEST_SUITE_P(
    CliValues, CliConfigTest,
    ::testing::Values(
        BadConfig{"OtpTtlNotANumber", {{"OTP_TTL_SEC", "abc"}}, "OTP_TTL_SEC", "abc"},
        BadConfig{"OtpTtlZero", {{"OTP_TTL_SEC", "0"}}, "OTP_TTL_SEC", nullptr},
        BadConfig{"JwtTtlNegative", {{"JWT_TTL_MIN", "-5"}}, "JWT_TTL_MIN", "-5"},
        BadConfig{"JwtTtlTrailingText", {{"JWT_TTL_MIN", "10min"}}, "JWT_TTL_MIN", "10min"},
        BadConfig{"HttpAddrNonsense", {{"HTTP_ADDR", "nonsense"}}, "HTTP_ADDR", "nonsense"},
        BadConfig{"HttpAddrPortTooBig", {{"HTTP_ADDR", "127.0.0.1:70000"}}, "HTTP_ADDR", nullptr},
        BadConfig{"OtpSenderPigeon", {{"OTP_SENDER", "pigeon"}}, "OTP_SENDER", "pigeon"},
        BadConfig{"SmtpWithoutUrl", {{"OTP_SENDER", "smtp"}}, "SMTP_URL", nullptr},
        BadConfig{"SmtpUrlNotSmtp",
                  {{"OTP_SENDER", "smtp"}, {"SMTP_URL", "http://127.0.0.1:25"}},
                  "SMTP_URL",
                  nullptr},
        BadConfig{"OtpDigitsTooMany", {{"OTP_DIGITS", "11"}}, "OTP_DIGITS", nullptr},
        BadConfig{"SqliteSynchronousMaybe",
                  {{"SQLITE_SYNCHRONOUS", "MAYBE"}},
                  "SQLITE_SYNCHRONOUS",
                  "MAYBE"},
        // A cluster shares one PostgreSQL database (an empty value removes the harness's).
        BadConfig{"RedisWithoutDatabase",
                  {{"REDIS_URL", "redis://127.0.0.1:6379"}, {"DATABASE_URL", ""}},
                  "REDIS_URL: requires DATABASE_URL",
                  nullptr},
        BadConfig{"RedisUrlNotRedis",
                  {{"REDIS_URL", "http://127.0.0.1:6379"}},
                  "REDIS_URL must look like redis://",
                  nullptr},
        // A browser's Origin never ends in a slash: this entry would never match.
        BadConfig{"CorsOriginWithPath",
                  {{"CORS_ALLOWED_ORIGINS", "http://localhost:5173,https://app.example.com/"}},
                  "CORS_ALLOWED_ORIGINS",
                  "https://app.example.com/"}),
    [](const auto& info) { return std::string(info.param.label); });

// ---------------------------------------------------------------------------------------------
// .env
// ---------------------------------------------------------------------------------------------

// Starts a signup for `name` and returns the logged code (log sender).
std::string LoggedCode(TestServer& server, const std::string& name) {
  HttpClient client(server.port());
  const std::string email = name + "@example.com";
  const auto r = client.Post("/api/signup/initiate",
                             {{"username", name}, {"email", email}, {"password", "correct horse"}});
  EXPECT_EQ(r.status, 202) << r.body;
  EXPECT_TRUE(server.WaitForLog("otp: to=" + email));
  return server.LatestCode(email).value_or("");
}

TEST(CliDotEnvTest, ValuesAreUsed) {
  const uint16_t port = FreePort();
  ServerOptions options;
  options.env = {{"HTTP_ADDR", ""}};  // only .env sets it
  options.dotenv = "# MmChat settings\n\nHTTP_ADDR=127.0.0.1:" + std::to_string(port) +
                   "\nexport OTP_DIGITS=\"8\"\n";
  TestServer server(options);
  EXPECT_EQ(server.port(), port);
  HttpClient client(port);
  EXPECT_EQ(client.Get("/healthz").status, 200);
  EXPECT_EQ(LoggedCode(server, "dotenv").size(), 8u);
}

TEST(CliDotEnvTest, EnvironmentWins) {
  const uint16_t dotenv_port = FreePort();
  uint16_t env_port = FreePort();
  while (env_port == dotenv_port) env_port = FreePort();
  ServerOptions options;
  options.env = {{"HTTP_ADDR", "127.0.0.1:" + std::to_string(env_port)}, {"OTP_DIGITS", "5"}};
  options.dotenv = "HTTP_ADDR=127.0.0.1:" + std::to_string(dotenv_port) + "\nOTP_DIGITS=9\n";
  TestServer server(options);
  EXPECT_EQ(server.port(), env_port);
  EXPECT_EQ(LoggedCode(server, "envwins").size(), 5u);
}

class CliDotEnvMalformedTest
    : public ::testing::TestWithParam<std::pair<const char*, const char*>> {};

TEST_P(CliDotEnvMalformedTest, StopsStartUpNamingTheLine) {
  TempDir dir;
  ServerOptions options;
  options.dir = dir.path();
  options.dotenv = GetParam().first;
  const Exited e = ServeExpectingExit(options);
  ASSERT_NE(e.code, -1) << "the server kept running:\n" << e.log;
  EXPECT_NE(e.code, 0) << e.log;
  const std::string line = OneLine(e);
  EXPECT_NE(line.find(".env"), std::string::npos) << line;
  EXPECT_NE(line.find(GetParam().second), std::string::npos) << line;
}

INSTANTIATE_TEST_SUITE_P(
    CliLines, CliDotEnvMalformedTest,
    ::testing::Values(std::pair{"OTP_DIGITS=6\n\n# fine so far\nthis line is broken\n", "line 4"},
                      std::pair{"OTP_DIGITS=6\nSMTP_FROM=\"unterminated\n", "line 2"},
                      std::pair{"1BAD=1\n", "line 1"}),
    [](const auto& info) { return "Line" + std::to_string(info.index); });

// ---------------------------------------------------------------------------------------------
// JWT_SECRET
// ---------------------------------------------------------------------------------------------

bool HasJwtSecretWarning(const std::string& log) {
  for (const auto& line : NonEmptyLines(log)) {
    if (line.find("JWT_SECRET") != std::string::npos &&
        Lower(line).find("warn") != std::string::npos) {
      return true;
    }
  }
  return false;
}

TEST(CliJwtSecretTest, GeneratedSecretIsKeptInTheDatabase) {
  TempDir dir;
  ServerOptions unset;
  unset.dir = dir.path();
  unset.env = {{"JWT_SECRET", ""}};  // removes the harness default

  std::string token;
  std::string first_log;
  {
    TestServer server(unset);
    EXPECT_TRUE(HasJwtSecretWarning(server.Log())) << server.Log();
    HttpClient client(server.port());
    token = SignUp(server, client, "keeper").token;
    EXPECT_EQ(client.Get("/api/me", token).status, 200);
    EXPECT_EQ(server.Stop(SIGTERM), 0);
    first_log = server.Log();
  }
  // The secret itself never reaches the log.
  const auto secrets = QueryStore(dir.path(), "SELECT value FROM settings");
  EXPECT_FALSE(secrets.empty()) << "no generated secret in the settings table";
  for (const auto& row : secrets) {
    EXPECT_EQ(first_log.find(row.at(0)), std::string::npos) << "a stored secret is in the log";
  }
  std::filesystem::remove(dir.path() / "server.log");

  {
    TestServer server(unset);  // same directory, same database
    EXPECT_TRUE(HasJwtSecretWarning(server.Log())) << server.Log();
    HttpClient client(server.port());
    const auto me = client.Get("/api/me", token);
    EXPECT_EQ(me.status, 200) << me.body;
    EXPECT_EQ(me.json.value("username", ""), "keeper") << me.body;
    EXPECT_EQ(server.Stop(SIGTERM), 0);
  }
  std::filesystem::remove(dir.path() / "server.log");

  {
    ServerOptions set;
    set.dir = dir.path();
    set.env = {{"JWT_SECRET", "another-secret-for-this-test-0123456789"}};
    TestServer server(set);
    EXPECT_FALSE(HasJwtSecretWarning(server.Log())) << server.Log();
    HttpClient client(server.port());
    // The token was signed with the stored secret, not this one.
    EXPECT_EQ(client.Get("/api/me", token).status, 401);
    const auto login =
        client.Post("/api/login", {{"username", "keeper"}, {"password", "correct horse"}});
    ASSERT_EQ(login.status, 200) << login.body;
    EXPECT_EQ(client.Get("/api/me", login.json.value("token", "")).status, 200);
    EXPECT_EQ(server.Stop(SIGTERM), 0);
  }
  std::filesystem::remove(dir.path() / "server.log");

  {
    // Running with JWT_SECRET once did not replace the stored secret.
    TestServer server(unset);
    HttpClient client(server.port());
    EXPECT_EQ(client.Get("/api/me", token).status, 200);
  }
}

TEST(CliJwtSecretTest, NoWarningWhenSet) {
  TestServer server;  // the harness sets JWT_SECRET
  HttpClient client(server.port());
  EXPECT_EQ(client.Get("/healthz").status, 200);
  EXPECT_FALSE(HasJwtSecretWarning(server.Log())) << server.Log();
}

TEST(CliJwtSecretTest, ShortSecretIsRejected) {
  TempDir dir;
  ServerOptions options;
  options.dir = dir.path();
  options.env = {{"JWT_SECRET", "short"}};
  const Exited e = ServeExpectingExit(options);
  ASSERT_NE(e.code, -1) << e.log;
  EXPECT_NE(e.code, 0) << e.log;
  const std::string line = OneLine(e);
  EXPECT_NE(line.find("JWT_SECRET"), std::string::npos) << line;
  EXPECT_EQ(line.find("short"), std::string::npos) << "the secret was echoed: " << line;
}

// ---------------------------------------------------------------------------------------------
// Signals
// ---------------------------------------------------------------------------------------------

TEST(CliSignalTest, SigintStopsCleanly) {
  TestServer server;
  HttpClient client(server.port());
  ASSERT_EQ(client.Get("/healthz").status, 200);
  EXPECT_EQ(server.Stop(SIGINT), 0) << server.Log();
}

TEST(CliSignalTest, SigtermStopsCleanly) {
  TestServer server;
  HttpClient client(server.port());
  ASSERT_EQ(client.Get("/healthz").status, 200);
  EXPECT_EQ(server.Stop(SIGTERM), 0) << server.Log();
}

// ---------------------------------------------------------------------------------------------
// mmchat user add (administration and benchmark provisioning)
// ---------------------------------------------------------------------------------------------

class CliUserAddTest : public ::testing::Test {
 protected:
  CliUserAddTest() : client_(server_.port()) {}

  // Runs `mmchat user add ...` on the running server's database (either store), with its
  // secret.
  RunResult UserAdd(std::vector<std::string> args) {
    args.insert(args.begin(), {"user", "add"});
    auto env = StoreEnv(server_.dir());
    env["JWT_SECRET"] = "integration-test-secret-0123456789";
    return RunBinary(args, env, server_.dir());
  }
  std::vector<std::vector<std::string>> TokenLines(const std::string& file) {
    std::ifstream in(server_.dir() / file);
    std::vector<std::vector<std::string>> out;
    std::string id, name, token;
    while (in >> id >> name >> token) out.push_back({id, name, token});
    return out;
  }

  TestServer server_;
  HttpClient client_;
};

TEST_F(CliUserAddTest, CountCreatesVerifiedUsersWithWorkingTokens) {
  const RunResult r = UserAdd(
      {"--count", "40", "--prefix", "load", "--password", "benchpass1", "--tokens", "t.txt"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto lines = TokenLines("t.txt");
  ASSERT_EQ(lines.size(), 40u);
  for (size_t i = 0; i < lines.size(); ++i) {
    EXPECT_EQ(lines[i][1], "load_" + std::to_string(i + 1));
    auto me = client_.Get("/api/me", lines[i][2]);  // minted with the server's secret
    ASSERT_EQ(me.status, 200) << me.body;
    EXPECT_EQ(me.json["id"], std::stoll(lines[i][0]));
    EXPECT_EQ(me.json["username"], lines[i][1]);
    EXPECT_EQ(me.json["email"], lines[i][1] + "@example.com");
  }
  // The shared password is a real Argon2id hash: login works.
  auto login = client_.Post("/api/login", {{"username", "load_17"}, {"password", "benchpass1"}});
  EXPECT_EQ(login.status, 200) << login.body;
  auto wrong = client_.Post("/api/login", {{"username", "load_17"}, {"password", "benchpass2"}});
  ExpectError(wrong, 401, "invalid_credentials");
}

TEST_F(CliUserAddTest, OneAccountWithUsernameAndEmail) {
  const RunResult r =
      UserAdd({"--username", "Zed", "--email", "Zed@Example.com", "--password", "benchpass1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto login =
      client_.Post("/api/login", {{"email", "zed@example.com"}, {"password", "benchpass1"}});
  ASSERT_EQ(login.status, 200) << login.body;
  EXPECT_EQ(login.json["user"]["username"], "Zed");
}

TEST_F(CliUserAddTest, ATakenNameCreatesNothingAndFails) {
  ASSERT_EQ(UserAdd({"--count", "3", "--prefix", "dup", "--password", "benchpass1"}).exit_code, 0);
  // dup_1..dup_3 exist: a batch of 5 collides at its first and creates none of the others.
  const RunResult r = UserAdd({"--count", "5", "--prefix", "dup", "--password", "benchpass1"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("already"), std::string::npos) << r.output;  // taken / registered
  auto found =
      client_.Get("/api/users?search=dup_&limit=100", SignUp(server_, client_, "viewer").token);
  ASSERT_EQ(found.status, 200) << found.body;
  EXPECT_EQ(found.json["users"].size(), 3u) << found.body;
}

TEST_F(CliUserAddTest, BadInputIsRefused) {
  RunResult r = UserAdd({"--count", "2", "--password", "short"});
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("password"), std::string::npos) << r.output;
  r = UserAdd({"--username", "ok_name", "--password", "benchpass1"});  // no email
  EXPECT_EQ(r.exit_code, 2) << r.output;
  r = UserAdd({"--username", "x", "--email", "x@example.com", "--password", "benchpass1"});
  EXPECT_EQ(r.exit_code, 1) << r.output;  // username too short
  r = UserAdd({"--count", "0", "--password", "benchpass1"});
  EXPECT_NE(r.exit_code, 0) << r.output;
}

}  // namespace
}  // namespace mmchat::test
