// README "Administration": `mmchat user list|show|disable|enable|delete|set-password` and
// `mmchat conversation list --user U`, run as a separate process against the running test
// server's database (either store), which hears of each change through ADMIN_SOCKET.
#include <gtest/gtest.h>
#include <sys/stat.h>

#include <algorithm>
#include <chrono>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "harness.h"
#include "ws_client.h"

namespace mmchat::test {
namespace {

using namespace std::chrono_literals;

std::vector<std::string> Lines(const std::string& text) {
  std::vector<std::string> out;
  std::istringstream in(text);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) out.push_back(line);
  }
  return out;
}

bool Contains(const std::string& haystack, const std::string& needle) {
  return haystack.find(needle) != std::string::npos;
}

std::map<std::string, std::string> CliEnv(const std::filesystem::path& dir) {
  auto env = StoreEnv(dir);
  env["JWT_SECRET"] = "integration-test-secret-0123456789";
  return env;
}

// `mmchat ARGS` in `dir` (the server's working directory, so the default ADMIN_SOCKET).
RunResult Admin(const std::filesystem::path& dir, const std::vector<std::string>& args) {
  return RunBinary(args, CliEnv(dir), dir);
}

class AdminCliTest : public ::testing::Test {
 protected:
  AdminCliTest() : client_(server_.port()) {}

  RunResult Admin(const std::vector<std::string>& args) {
    return mmchat::test::Admin(server_.dir(), args);
  }
  HttpResult Login(const std::string& username, const std::string& password) {
    return client_.Post("/api/login", {{"username", username}, {"password", password}});
  }
  std::string Id(const Account& a) { return std::to_string(a.id); }

  TestServer server_;
  HttpClient client_;
};

TEST_F(AdminCliTest, DisableRefusesLoginRevokesTokensAndClosesSockets) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account viewer = SignUp(server_, client_, "viewer");
  WsClient ws(server_.ws_port(), alice.token);
  ASSERT_TRUE(ws.connected());

  const RunResult r = Admin({"user", "disable", "alice"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "the running server was told")) << r.output;

  EXPECT_EQ(ws.WaitClosed(5s), 1008);  // closed by the server, not by a timeout
  ExpectError(client_.Get("/api/me", alice.token), 401, "unauthorized");
  auto login = Login("alice", "correct horse");
  ExpectError(login, 403, "forbidden");
  EXPECT_TRUE(Contains(login.json["error"]["message"].get<std::string>(), "disabled"))
      << login.body;
  // Only the password's owner learns that the account is disabled.
  ExpectError(Login("alice", "wrong password"), 401, "invalid_credentials");
  WsClient again(server_.ws_port(), alice.token);
  EXPECT_FALSE(again.connected());
  // Its username and email stay taken.
  ExpectError(client_.Post("/api/signup/initiate", {{"username", "alice"},
                                                    {"email", "fresh@example.com"},
                                                    {"password", "correct horse"}}),
              409, "conflict");
  ExpectError(
      client_.Post("/api/signup/initiate",
                   {{"username", "fresh"}, {"email", alice.email}, {"password", "correct horse"}}),
      409, "conflict");
  // A reset is answered as for any email, and mails no code.
  const auto code_before = server_.LatestCode(alice.email);
  EXPECT_EQ(client_.Post("/api/forgot/initiate", {{"email", alice.email}}).status, 202);
  std::this_thread::sleep_for(300ms);
  EXPECT_EQ(server_.LatestCode(alice.email), code_before);
  // Still visible to others (it is still a participant where it was).
  EXPECT_EQ(client_.Get("/api/users/" + Id(alice), viewer.token).status, 200);

  const RunResult shown = Admin({"user", "show", Id(alice), "--json"});
  ASSERT_EQ(shown.exit_code, 0) << shown.output;
  EXPECT_EQ(Json::parse(Lines(shown.output).at(0))["status"], "disabled") << shown.output;

  const RunResult enabled = Admin({"user", "enable", Id(alice)});
  ASSERT_EQ(enabled.exit_code, 0) << enabled.output;
  EXPECT_TRUE(Contains(enabled.output, "the running server was told")) << enabled.output;
  auto back = Login("alice", "correct horse");
  ASSERT_EQ(back.status, 200) << back.body;
  ExpectError(client_.Get("/api/me", alice.token), 401, "unauthorized");  // old tokens stay out
  EXPECT_EQ(client_.Get("/api/me", back.json["token"].get<std::string>()).status, 200);
}

TEST_F(AdminCliTest, SetPasswordFromStandardInputEndsSessions) {
  const Account bob = SignUp(server_, client_, "bob");
  WsClient ws(server_.ws_port(), bob.token);
  ASSERT_TRUE(ws.connected());

  const RunResult r = RunProgram(
      "/bin/sh",
      {"-c", "printf '%s\\n' 'brand new secret' | \"$0\" user set-password bob@example.com",
       ServerBinary()},
      CliEnv(server_.dir()), server_.dir());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "the running server was told")) << r.output;
  EXPECT_EQ(ws.WaitClosed(5s), 1008);
  ExpectError(Login("bob", "correct horse"), 401, "invalid_credentials");
  EXPECT_EQ(Login("bob", "brand new secret").status, 200);
  ExpectError(client_.Get("/api/me", bob.token), 401, "unauthorized");

  // The API's password rules, and --password for scripts.
  const RunResult weak = Admin({"user", "set-password", "bob", "--password", "short"});
  EXPECT_EQ(weak.exit_code, 1) << weak.output;
  EXPECT_TRUE(Contains(weak.output, "password")) << weak.output;
  ASSERT_EQ(Admin({"user", "set-password", "bob", "--password", "another secret"}).exit_code, 0);
  EXPECT_EQ(Login("bob", "another secret").status, 200);
  // Hashed as signup hashes (Argon2id), never kept in clear.
  const std::string hash =
      QueryStoreOne(server_.dir(), "SELECT password_hash FROM users WHERE id = " + Id(bob));
  EXPECT_EQ(hash.rfind("$argon2id$", 0), 0u) << hash;
}

TEST_F(AdminCliTest, DeleteErasesTheAccountKeepsItsMessagesAndLeavesConversations) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  auto group = client_.Post("/api/conversations/group",
                            {{"name", "team"}, {"member_ids", {bob.id, carol.id}}}, alice.token);
  ASSERT_EQ(group.status, 201) << group.body;
  const int64_t group_id = group.json["id"];
  auto dm = client_.Post("/api/conversations/private", {{"user_id", bob.id}}, alice.token);
  ASSERT_TRUE(dm.status == 201 || dm.status == 200) << dm.body;
  const int64_t dm_id = dm.json["id"];
  auto sent = client_.Post("/api/messages", {{"conversation_id", group_id}, {"content", "hi all"}},
                           alice.token);
  ASSERT_EQ(sent.status, 201) << sent.body;
  WsClient alice_ws(server_.ws_port(), alice.token);
  WsClient bob_ws(server_.ws_port(), bob.token);
  ASSERT_TRUE(alice_ws.connected());
  ASSERT_TRUE(bob_ws.connected());

  const RunResult r = Admin({"user", "delete", alice.email});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "the running server was told")) << r.output;
  EXPECT_EQ(alice_ws.WaitClosed(5s), 1008);
  // Bob hears that the group lost its admin's place: alice is gone, he is its admin now.
  Json changed = bob_ws.NextWhere(
      [&](Json& f) {
        return f["type"] == "conversation" && f["data"]["id"] == group_id &&
               f["data"]["participants"].size() == 2;
      },
      5s);
  ASSERT_FALSE(changed.is_null());

  ExpectError(client_.Get("/api/users/" + Id(alice), bob.token), 404, "not_found");
  ExpectError(client_.Get("/api/me", alice.token), 401, "unauthorized");
  ExpectError(Login("alice", "correct horse"), 401, "invalid_credentials");
  ExpectError(Login("deleted-" + Id(alice), "correct horse"), 401, "invalid_credentials");
  auto found = client_.Get("/api/users?search=del", bob.token);
  ASSERT_EQ(found.status, 200) << found.body;
  EXPECT_TRUE(found.json["users"].empty()) << found.body;

  auto g = client_.Get("/api/conversations/" + std::to_string(group_id), bob.token);
  ASSERT_EQ(g.status, 200) << g.body;
  std::vector<int64_t> members;
  bool an_admin = false;
  for (const auto& p : g.json["participants"]) {
    members.push_back(p["user_id"]);
    an_admin = an_admin || p["role"] == "admin";
  }
  EXPECT_EQ(members, (std::vector<int64_t>{bob.id, carol.id})) << g.body;
  EXPECT_TRUE(an_admin) << g.body;  // succession, as when an admin leaves
  auto d = client_.Get("/api/conversations/" + std::to_string(dm_id), bob.token);
  ASSERT_EQ(d.status, 200) << d.body;
  // A private conversation keeps its two participants (API.md); the deleted one under its
  // erased name.
  ASSERT_EQ(d.json["participants"].size(), 2u) << d.body;
  for (const auto& p : d.json["participants"]) {
    EXPECT_EQ(p["role"], "member") << d.body;
    if (p["user_id"] == alice.id) {
      EXPECT_EQ(p["username"], "deleted-" + Id(alice)) << d.body;
    }
  }

  // Its messages stay, with its id.
  auto history =
      client_.Get("/api/conversations/" + std::to_string(group_id) + "/messages", bob.token);
  ASSERT_EQ(history.status, 200) << history.body;
  ASSERT_EQ(history.json["messages"].size(), 1u) << history.body;
  EXPECT_EQ(history.json["messages"][0]["sender_id"], alice.id);
  EXPECT_EQ(history.json["messages"][0]["content"], "hi all");

  // Its personal data is gone from the row; the email and username are free again.
  const auto row =
      QueryStore(server_.dir(),
                 "SELECT username, email, password_hash, status, last_seen FROM users WHERE id = " +
                     Id(alice));
  ASSERT_EQ(row.size(), 1u);
  EXPECT_EQ(row[0], (std::vector<std::string>{"deleted-" + Id(alice), "deleted-" + Id(alice), "",
                                              "deleted", "NULL"}));
  // Signup gets past the "taken" check (409) to the resend window of the code it mailed the
  // first time (429); an account can be made with them at once.
  ExpectError(
      client_.Post("/api/signup/initiate",
                   {{"username", "alice"}, {"email", alice.email}, {"password", "correct horse"}}),
      429, "rate_limited");
  const RunResult added = Admin({"user", "add", "--username", "alice", "--email", alice.email,
                                 "--password", "correct horse"});
  ASSERT_EQ(added.exit_code, 0) << added.output;
  auto relogin = Login("alice", "correct horse");
  ASSERT_EQ(relogin.status, 200) << relogin.body;
  EXPECT_NE(relogin.json["user"]["id"], alice.id);
  // A deleted account joins no conversation.
  ExpectError(client_.Post("/api/conversations/private", {{"user_id", alice.id}}, bob.token), 404,
              "not_found");
  ExpectError(client_.Post("/api/conversations/" + std::to_string(group_id) + "/participants",
                           {{"user_id", alice.id}}, bob.token),
              404, "not_found");
  ExpectError(client_.Post("/api/conversations/group",
                           {{"name", "again"}, {"member_ids", {alice.id}}}, bob.token),
              404, "not_found");

  // What cannot be undone is refused.
  const RunResult enable = Admin({"user", "enable", Id(alice)});
  EXPECT_EQ(enable.exit_code, 1) << enable.output;
  EXPECT_TRUE(Contains(enable.output, "deleted")) << enable.output;
  EXPECT_EQ(Admin({"user", "delete", Id(alice)}).exit_code, 1);
  // Nobody may take the reserved names.
  ExpectError(client_.Post("/api/signup/initiate", {{"username", "deleted-999"},
                                                    {"email", "d999@example.com"},
                                                    {"password", "correct horse"}}),
              400, "invalid_request");
}

TEST_F(AdminCliTest, ListShowAndConversationList) {
  const Account alice = SignUp(server_, client_, "alice");
  const Account bob = SignUp(server_, client_, "bob");
  const Account carol = SignUp(server_, client_, "carol");
  auto group = client_.Post("/api/conversations/group",
                            {{"name", "Book club"}, {"member_ids", {bob.id}}}, alice.token);
  ASSERT_EQ(group.status, 201) << group.body;
  auto dm = client_.Post("/api/conversations/private", {{"user_id", carol.id}}, alice.token);
  ASSERT_TRUE(dm.status == 201 || dm.status == 200) << dm.body;
  ASSERT_EQ(
      client_
          .Post("/api/messages",
                {{"conversation_id", group.json["id"]}, {"content", "first chapter"}}, bob.token)
          .status,
      201);
  ASSERT_EQ(Admin({"user", "disable", "carol"}).exit_code, 0);

  RunResult r = Admin({"user", "list"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  auto lines = Lines(r.output);
  ASSERT_EQ(lines.size(), 3u) << r.output;
  EXPECT_EQ(lines[0].rfind(Id(alice) + "\talice\talice@example.com\t", 0), 0u) << lines[0];
  EXPECT_TRUE(lines[0].ends_with("\tactive")) << lines[0];
  EXPECT_TRUE(lines[2].ends_with("\tdisabled")) << lines[2];

  r = Admin({"user", "list", "--json", "--limit", "1", "--offset", "1"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  lines = Lines(r.output);
  ASSERT_EQ(lines.size(), 1u) << r.output;
  Json j = Json::parse(lines[0]);
  EXPECT_EQ(j["id"], bob.id);
  EXPECT_EQ(j["username"], "bob");
  EXPECT_EQ(j["email"], "bob@example.com");
  EXPECT_EQ(j["status"], "active");
  EXPECT_TRUE(j["created_at"].is_string());

  r = Admin({"user", "list", "--search", "CA"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  lines = Lines(r.output);
  ASSERT_EQ(lines.size(), 1u) << r.output;
  EXPECT_TRUE(Contains(lines[0], "\tcarol\t")) << lines[0];

  r = Admin({"user", "show", "alice"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "alice@example.com")) << r.output;
  EXPECT_TRUE(Contains(r.output, "status:          active")) << r.output;
  EXPECT_TRUE(Contains(r.output, "conversations:   2")) << r.output;
  r = Admin({"user", "show", "bob@example.com", "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  j = Json::parse(Lines(r.output).at(0));
  EXPECT_EQ(j["id"], bob.id);
  EXPECT_EQ(j["conversations"], 1);
  EXPECT_TRUE(j.contains("last_seen"));

  r = Admin({"conversation", "list", "--user", "alice"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  lines = Lines(r.output);
  ASSERT_EQ(lines.size(), 2u) << r.output;
  const std::string group_line = std::to_string(group.json["id"].get<int64_t>()) + "\tgroup\t";
  const std::string dm_line =
      std::to_string(dm.json["id"].get<int64_t>()) + "\tprivate\tcarol\t2\t-";
  EXPECT_EQ(lines[0].rfind(group_line + "Book club\t2\t", 0), 0u) << r.output;
  EXPECT_FALSE(lines[0].ends_with("\t-")) << r.output;  // it has a last message
  EXPECT_EQ(lines[1], dm_line) << r.output;
  r = Admin({"conversation", "list", "--user", Id(bob), "--json"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  lines = Lines(r.output);
  ASSERT_EQ(lines.size(), 1u) << r.output;
  j = Json::parse(lines[0]);
  EXPECT_EQ(j["name"], "Book club");
  EXPECT_EQ(j["type"], "group");
  EXPECT_EQ(j["members"], 2);
  EXPECT_TRUE(j["last_message_at"].is_string());
}

TEST_F(AdminCliTest, AnUnknownUserIsAClearError) {
  for (const std::vector<std::string>& args :
       {std::vector<std::string>{"user", "show", "nobody"},
        {"user", "disable", "424242"},
        {"user", "delete", "ghost@example.com"},
        {"user", "set-password", "nobody", "--password", "long enough"},
        {"conversation", "list", "--user", "nobody"}}) {
    const RunResult r = Admin(args);
    EXPECT_EQ(r.exit_code, 1) << args[1] << ": " << r.output;
    EXPECT_TRUE(Contains(r.output, "no user")) << r.output;
  }
}

TEST_F(AdminCliTest, TheSocketIsPrivate) {
  struct stat st {};
  ASSERT_EQ(lstat((server_.dir() / "mmchat.sock").c_str(), &st), 0);
  EXPECT_TRUE(S_ISSOCK(st.st_mode));
  EXPECT_EQ(st.st_mode & 0777, 0600u);
}

// A command's standard output is its answer alone: its log (here the JWT_SECRET warning, the
// secret being left unset) goes to standard error, so `user list | cut -f2` and `--tokens -`
// stay clean.
TEST_F(AdminCliTest, OutputIsTheAnswerAndTheLogGoesToStandardError) {
  auto stdout_of = [&](const std::vector<std::string>& args) {
    std::vector<std::string> sh = {"-c", "exec \"$0\" \"$@\" 2>/dev/null", ServerBinary()};
    sh.insert(sh.end(), args.begin(), args.end());
    return RunProgram("/bin/sh", sh, StoreEnv(server_.dir()), server_.dir());
  };
  const RunResult add = stdout_of({"user", "add", "--count", "3", "--prefix", "quiet", "--password",
                                   "correct horse", "--tokens", "-"});
  ASSERT_EQ(add.exit_code, 0) << add.output;
  const auto tokens = Lines(add.output);
  EXPECT_EQ(tokens.size(), 3u) << add.output;
  for (const auto& line : tokens) {
    EXPECT_TRUE(std::regex_match(line, std::regex(R"(\d+ quiet_\d+ [A-Za-z0-9_.-]+)"))) << line;
  }
  const RunResult list = stdout_of({"user", "list", "--search", "quiet"});
  ASSERT_EQ(list.exit_code, 0) << list.output;
  const auto rows = Lines(list.output);
  EXPECT_EQ(rows.size(), 3u) << list.output;
  for (const auto& row : rows) {
    EXPECT_EQ(std::count(row.begin(), row.end(), '\t'), 4) << row;
    EXPECT_TRUE(Contains(row, "\tquiet_")) << row;
  }
  // The log is still written, to standard error.
  const RunResult both = RunBinary({"user", "list"}, StoreEnv(server_.dir()), server_.dir());
  EXPECT_TRUE(Contains(both.output, "JWT_SECRET is not set")) << both.output;
}

// Without a running server the change is stored all the same, and the command says so; a
// socket file left by a killed server is replaced by the next one.
TEST(AdminCliNoServerTest, ChangesTheStoreAndSaysSo) {
  const TempDir scratch;  // outlives the servers below
  const auto& dir = scratch.path();
  Account alice;
  {
    ServerOptions options;
    options.dir = dir;
    TestServer server(options);
    HttpClient client(server.port());
    alice = SignUp(server, client, "alice");
    EXPECT_EQ(server.Stop(SIGKILL), 128 + SIGKILL);  // leaves its socket file behind
  }
  ASSERT_TRUE(std::filesystem::exists(dir / "mmchat.sock"));
  const RunResult r = Admin(dir, {"user", "disable", "alice"});
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(Contains(r.output, "no server is running here")) << r.output;
  EXPECT_EQ(QueryStoreOne(dir, "SELECT status FROM users WHERE id = " + std::to_string(alice.id)),
            "disabled");

  ServerOptions options;
  options.dir = dir;
  TestServer server(options);
  EXPECT_TRUE(server.WaitForLog("admin socket listening on mmchat.sock")) << server.Log();
  HttpClient client(server.port());
  ExpectError(client.Post("/api/login", {{"username", "alice"}, {"password", "correct horse"}}),
              403, "forbidden");
  ExpectError(client.Get("/api/me", alice.token), 401, "unauthorized");
  const RunResult enabled = Admin(dir, {"user", "enable", "alice"});
  EXPECT_TRUE(Contains(enabled.output, "the running server was told")) << enabled.output;

  // A second server pointed at a live server's socket serves without one.
  ServerOptions second;
  second.env["ADMIN_SOCKET"] = (dir / "mmchat.sock").string();
  TestServer other(second);
  EXPECT_TRUE(other.WaitForLog("another server answers")) << other.Log();
  EXPECT_EQ(HttpClient(other.port()).Get("/healthz").status, 200);
  EXPECT_EQ(other.Stop(SIGTERM), 0);
  // Its stop did not take the live server's socket away.
  EXPECT_TRUE(std::filesystem::exists(dir / "mmchat.sock"));
  EXPECT_EQ(server.Stop(SIGTERM), 0);
  EXPECT_FALSE(std::filesystem::exists(dir / "mmchat.sock"));  // removed at a clean stop
}

}  // namespace
}  // namespace mmchat::test
