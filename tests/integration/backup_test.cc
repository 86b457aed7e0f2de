// Backups and restores (issue 16): `mmchat backup FILE` copies the live SQLite database while a
// server keeps serving it, `mmchat restore FILE` brings a copy back while no server runs; on
// PostgreSQL both point at pg_dump/pg_restore, which are tested here too.
//
// Under load: two WebSocket and two HTTP senders stream messages into three groups; while they
// stream, the backup runs as a subprocess (mmchat backup on SQLite, pg_dump on PostgreSQL).
// Every message acknowledged before it began must be in the copy, with gapless seq per
// conversation, and a server started on the restored database must serve them. The figures
// (how long the backup took, its size, messages acknowledged while it ran) are printed and
// recorded as test properties, not asserted.
//
// The SQLite tests skip in the PostgreSQL run (pg.*), the pg_dump test in the SQLite run.
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <sstream>
#include <string>
#include <thread>
#include <vector>

#include "harness.h"
#include "test_postgres.h"
#include "ws_client.h"

namespace mmchat::test {
namespace {

namespace fs = std::filesystem;

constexpr int kSenders = 4;   // 0 and 1 over WebSocket, 2 and 3 over HTTP
constexpr int kWsWindow = 8;  // message frames in flight per WebSocket sender
// The backup starts once this many messages are acknowledged, so that there is something to
// copy; the deadline only bounds a stalled stream (sanitizers, ctest -j), not a speed.
constexpr int kAckedBeforeBackup = 4000;
constexpr auto kStreamDeadline = std::chrono::seconds(90);

#define SQLITE_ONLY()                                                                      \
  if (OnPostgres()) {                                                                      \
    GTEST_SKIP() << "SQLite only: mmchat backup/restore copy SQLite files; on PostgreSQL " \
                    "they point at pg_dump/pg_restore (BackupPgDumpTest)";                 \
  }

// A message's text: its client_id, padded to a few hundred bytes so the database has some size.
std::string Content(const std::string& client_id) {
  std::string text = "msg " + client_id;
  while (text.size() < 600) text += " lorem ipsum dolor sit amet";
  return text;
}

// Files in `dir` whose name contains `part`.
std::vector<std::string> FilesWith(const fs::path& dir, const std::string& part) {
  std::vector<std::string> out;
  for (const auto& e : fs::directory_iterator(dir)) {
    const std::string name = e.path().filename().string();
    if (name.find(part) != std::string::npos) out.push_back(name);
  }
  return out;
}

std::string ReadAll(const fs::path& p) {
  std::ifstream f(p, std::ios::binary);
  std::stringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// Four senders streaming into `conversations` (each sender takes them in turn) until Stop().
class Streamer {
 public:
  Streamer(uint16_t port, uint16_t ws_port, std::vector<Account> senders,
           std::vector<int64_t> conversations)
      : senders_(std::move(senders)), conversations_(std::move(conversations)) {
    for (int t = 0; t < kSenders; ++t) {
      threads_.emplace_back([this, t, port, ws_port] { t < 2 ? Ws(t, ws_port) : Http(t, port); });
    }
  }
  ~Streamer() { Stop(); }

  void Stop() {
    stop_ = true;
    for (auto& th : threads_) th.join();
    threads_.clear();
  }
  int AckedCount() const { return acked_count_.load(); }
  int Refused() const { return refused_.load(); }
  // client_id -> the acknowledged Message.
  std::map<std::string, Json> AckedMessages() {
    std::lock_guard lock(mu_);
    return acked_;
  }
  // client_id -> sender index, of every message sent or about to be.
  std::map<std::string, int> Attempted() {
    std::lock_guard lock(mu_);
    return attempted_;
  }
  // Waits until `n` messages are acknowledged; false after kStreamDeadline.
  bool WaitAcked(int n) {
    return Eventually([&] { return AckedCount() >= n; },
                      std::chrono::duration_cast<std::chrono::milliseconds>(kStreamDeadline));
  }

 private:
  std::string Attempt(int sender, int i, int64_t* conversation) {
    *conversation = conversations_[static_cast<size_t>(i) % conversations_.size()];
    std::string client_id = "s" + std::to_string(sender) + "-" + std::to_string(i);
    std::lock_guard lock(mu_);
    attempted_[client_id] = sender;
    return client_id;
  }
  void Record(const std::string& client_id, const Json& m) {
    std::lock_guard lock(mu_);
    acked_[client_id] = m;
    ++acked_count_;
  }

  void Ws(int sender, uint16_t port) {
    WsClient ws(port, senders_[sender].token);
    if (!ws.connected()) {
      ADD_FAILURE() << "WebSocket sender " << sender
                    << " could not connect: " << ws.refusal().status << " " << ws.refusal().body;
      return;
    }
    int next = 0, outstanding = 0;
    while (!stop_.load()) {
      while (outstanding < kWsWindow) {
        int64_t conversation = 0;
        const std::string client_id = Attempt(sender, next++, &conversation);
        ++outstanding;
        ws.Send({{"type", "message"},
                 {"ref", client_id},
                 {"conversation_id", conversation},
                 {"content", Content(client_id)},
                 {"client_id", client_id}});
      }
      const Json f = ws.NextOfType("ack", std::chrono::seconds(10));
      if (!f.is_object()) {
        ADD_FAILURE() << "WebSocket sender " << sender << ": no ack within 10 s";
        return;
      }
      --outstanding;
      if (f["data"]["ok"] == true) {
        Record(f["data"]["ref"].get<std::string>(), f["data"]["result"]);
      } else {
        ++refused_;
      }
    }
  }

  void Http(int sender, uint16_t port) {
    HttpClient client(port);
    for (int i = 0; !stop_.load(); ++i) {
      int64_t conversation = 0;
      const std::string client_id = Attempt(sender, i, &conversation);
      try {
        auto r = client.Post("/api/messages",
                             {{"conversation_id", conversation},
                              {"content", Content(client_id)},
                              {"client_id", client_id}},
                             senders_[sender].token);
        if (r.status == 201 || r.status == 200) {
          Record(client_id, r.json);
        } else {
          ++refused_;
        }
      } catch (const std::exception& e) {
        ADD_FAILURE() << "HTTP sender " << sender << ": " << e.what();
        return;
      }
    }
  }

  std::vector<Account> senders_;
  std::vector<int64_t> conversations_;
  std::atomic<bool> stop_{false};
  std::atomic<int> acked_count_{0};
  std::atomic<int> refused_{0};
  std::mutex mu_;
  std::map<std::string, Json> acked_;
  std::map<std::string, int> attempted_;
  std::vector<std::thread> threads_;
};

// A stored message, from the database or the API.
struct Row {
  int64_t id = 0;
  int64_t conversation_id = 0;
  int64_t seq = 0;
  std::string content;
  std::string client_id;
};

// conversation_id -> its messages in seq order.
using Rows = std::map<int64_t, std::vector<Row>>;

// Every row of `sql` on the SQLite file `path` opened read-only (no -wal or -shm needed: a
// backup is one file), first column as text; a failure is a test failure.
std::vector<std::vector<std::string>> QueryFile(const fs::path& path, const std::string& sql) {
  std::vector<std::vector<std::string>> out;
  sqlite3* db = nullptr;
  if (sqlite3_open_v2(path.c_str(), &db, SQLITE_OPEN_READONLY, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << "cannot open " << path << ": " << (db ? sqlite3_errmsg(db) : "");
    sqlite3_close(db);
    return out;
  }
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v2(db, sql.c_str(), -1, &stmt, nullptr) != SQLITE_OK) {
    ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
    sqlite3_close(db);
    return out;
  }
  int rc = 0;
  while ((rc = sqlite3_step(stmt)) == SQLITE_ROW) {
    std::vector<std::string> row;
    for (int c = 0; c < sqlite3_column_count(stmt); ++c) {
      const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(stmt, c));
      row.emplace_back(t ? t : "NULL");
    }
    out.push_back(std::move(row));
  }
  EXPECT_EQ(rc, SQLITE_DONE) << sql << ": " << sqlite3_errmsg(db);
  sqlite3_finalize(stmt);
  sqlite3_close(db);
  return out;
}

Rows RowsOfFile(const fs::path& path) {
  Rows out;
  for (const auto& r : QueryFile(path,
                                 "SELECT id, conversation_id, seq, content, "
                                 "COALESCE(client_id, '') FROM messages "
                                 "ORDER BY conversation_id, seq")) {
    out[std::stoll(r[1])].push_back(
        {std::stoll(r[0]), std::stoll(r[1]), std::stoll(r[2]), r[3], r[4]});
  }
  return out;
}

// Every message of `conversations`, oldest first, through the API of the server on `port`.
Rows RowsOfServer(uint16_t port, const Account& reader, const std::vector<int64_t>& conversations) {
  Rows out;
  HttpClient client(port);
  for (int64_t conversation : conversations) {
    auto& rows = out[conversation];
    int64_t after = 0;
    for (int guard = 0; guard < 100000; ++guard) {
      auto r = client.Get("/api/conversations/" + std::to_string(conversation) +
                              "/messages?limit=100&after=" + std::to_string(after),
                          reader.token);
      EXPECT_EQ(r.status, 200) << r.body;
      if (r.status != 200 || r.json["messages"].empty()) break;
      for (const auto& m : r.json["messages"]) {
        rows.push_back({m["id"].get<int64_t>(), m["conversation_id"].get<int64_t>(),
                        m["seq"].get<int64_t>(), m["content"].get<std::string>(),
                        m["client_id"].is_string() ? m["client_id"].get<std::string>() : ""});
      }
      after = r.json["messages"].back()["id"].get<int64_t>();
      if (!r.json["has_more"].get<bool>()) break;
    }
  }
  return out;
}

// The copy against the stream: per conversation seq is 1..n without a gap and ids increase;
// every message was sent, as sent; every message acknowledged before the backup began is
// there with its id and seq. Returns how many messages the copy holds.
size_t ExpectHolds(const Rows& rows, const std::map<std::string, Json>& acked_before,
                   const std::map<std::string, int>& attempted, const std::string& what) {
  std::map<std::string, Row> by_client_id;
  size_t total = 0;
  for (const auto& [conversation, messages] : rows) {
    int64_t previous_id = 0;
    for (size_t i = 0; i < messages.size(); ++i) {
      const Row& m = messages[i];
      EXPECT_EQ(m.seq, static_cast<int64_t>(i) + 1)
          << what << ": seq gap or duplicate in conversation " << conversation << " at id " << m.id;
      EXPECT_GT(m.id, previous_id) << what;
      previous_id = m.id;
      EXPECT_TRUE(attempted.contains(m.client_id))
          << what << ": a message that was never sent: " << m.id << " " << m.client_id;
      EXPECT_EQ(m.content, Content(m.client_id)) << what << ": " << m.id;
      EXPECT_TRUE(by_client_id.emplace(m.client_id, m).second)
          << what << ": client_id twice: " << m.client_id;
      ++total;
    }
  }
  size_t missing = 0;
  for (const auto& [client_id, m] : acked_before) {
    auto it = by_client_id.find(client_id);
    if (it == by_client_id.end()) {
      if (++missing <= 10) ADD_FAILURE() << what << ": acknowledged message missing: " << m.dump();
      continue;
    }
    EXPECT_EQ(it->second.id, m["id"].get<int64_t>()) << what << ": " << client_id;
    EXPECT_EQ(it->second.seq, m["seq"].get<int64_t>()) << what << ": " << client_id;
    EXPECT_EQ(it->second.conversation_id, m["conversation_id"].get<int64_t>()) << what;
  }
  EXPECT_EQ(missing, 0u) << what << ": acknowledged messages missing";
  return total;
}

// Users and three groups of all of them, on `server`.
struct Groups {
  std::vector<Account> users;
  std::vector<int64_t> conversations;
};

Groups MakeGroups(TestServer& server) {
  Groups s;
  HttpClient client(server.port());
  for (const char* name : {"alice", "bob", "carol", "dave"}) {
    s.users.push_back(SignUp(server, client, name));
  }
  std::vector<int64_t> members;
  for (size_t i = 1; i < s.users.size(); ++i) members.push_back(s.users[i].id);
  for (int g = 0; g < 3; ++g) {
    auto r = client.Post("/api/conversations/group",
                         {{"name", "group " + std::to_string(g)}, {"member_ids", members}},
                         s.users[0].token);
    EXPECT_EQ(r.status, 201) << r.body;
    s.conversations.push_back(r.json["id"].get<int64_t>());
  }
  return s;
}

// Posts `n` messages to `conversation` as `a` over HTTP; their ids.
std::vector<int64_t> Post(HttpClient& client, const Account& a, int64_t conversation, int n,
                          const std::string& prefix) {
  std::vector<int64_t> ids;
  for (int i = 0; i < n; ++i) {
    const std::string client_id = prefix + std::to_string(i);
    auto r = client.Post("/api/messages",
                         {{"conversation_id", conversation},
                          {"content", Content(client_id)},
                          {"client_id", client_id}},
                         a.token);
    EXPECT_EQ(r.status, 201) << r.body;
    ids.push_back(r.json.value("id", int64_t{0}));
  }
  return ids;
}

// A copy (`mmchat backup`, pg_dump) taken while four senders stream into `setup`'s groups, and
// what it must hold: every message acknowledged before it began.
struct CopyUnderLoad {
  RunResult run;
  std::map<std::string, Json> acked_before;  // client_id -> Message
  std::map<std::string, int> attempted;      // client_id -> sender, of every message tried
  double ms = 0;                             // how long `copy` took
  int acked_during = 0;                      // messages acknowledged meanwhile
};
CopyUnderLoad TakeUnderLoad(TestServer& server, const Groups& setup,
                            const std::function<RunResult()>& copy) {
  CopyUnderLoad out;
  Streamer stream(server.port(), server.ws_port(), setup.users, setup.conversations);
  if (!stream.WaitAcked(kAckedBeforeBackup)) {
    ADD_FAILURE() << "only " << stream.AckedCount() << " acknowledged within "
                  << kStreamDeadline.count() << " s";
    return out;
  }
  out.acked_before = stream.AckedMessages();
  const int count_before = static_cast<int>(out.acked_before.size());
  const auto started = std::chrono::steady_clock::now();
  out.run = copy();
  out.ms =
      std::chrono::duration<double, std::milli>(std::chrono::steady_clock::now() - started).count();
  out.acked_during = stream.AckedCount() - count_before;
  stream.Stop();
  EXPECT_EQ(stream.Refused(), 0);
  out.attempted = stream.Attempted();
  return out;
}

// The text of an error printed by the binary, lower-cased.
std::string Lower(std::string s) {
  for (char& c : s) c = static_cast<char>(std::tolower(static_cast<unsigned char>(c)));
  return s;
}

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

TEST(BackupTest, TakenUnderLoadHoldsEveryAcknowledgedMessage) {
  SQLITE_ONLY();
  TestServer server(ServerOptions{.env = kNoAbuseLimits});
  const Groups setup = MakeGroups(server);
  TempDir out;
  const fs::path file = out.path() / "chat-backup.db";

  const CopyUnderLoad copy = TakeUnderLoad(server, setup, [&] {
    return RunBinary({"backup", file.string()}, StoreEnv(server.dir()), out.path());
  });
  const RunResult& r = copy.run;
  ASSERT_EQ(r.exit_code, 0) << r.output;
  const auto& acked_before = copy.acked_before;
  const auto& attempted = copy.attempted;

  // Nothing but the backup was left beside it.
  EXPECT_EQ(FilesWith(out.path(), "chat-backup"), std::vector<std::string>{"chat-backup.db"});
  // One self-contained file: its header says rollback journal (1, 1), not WAL (2, 2).
  const std::string bytes = ReadAll(file);
  ASSERT_GT(bytes.size(), 100u);
  EXPECT_EQ(bytes[18], 1);
  EXPECT_EQ(bytes[19], 1);
  EXPECT_EQ(QueryFile(file, "PRAGMA integrity_check"),
            (std::vector<std::vector<std::string>>{{"ok"}}));
  const size_t in_backup = ExpectHolds(RowsOfFile(file), acked_before, attempted, "backup file");
  EXPECT_GE(in_backup, acked_before.size());

  std::printf(
      "backup under load: %zu messages in the backup (%zu acknowledged before it began), "
      "%lld bytes, %.0f ms (the whole mmchat backup process), %d messages acknowledged while it "
      "ran\n  %s",
      in_backup, acked_before.size(), static_cast<long long>(bytes.size()), copy.ms,
      copy.acked_during, r.output.c_str());
  ::testing::Test::RecordProperty("backup_ms", static_cast<int>(copy.ms));
  ::testing::Test::RecordProperty("backup_bytes", static_cast<int>(bytes.size()));
  ::testing::Test::RecordProperty("acked_before", static_cast<int>(acked_before.size()));
  ::testing::Test::RecordProperty("acked_during", copy.acked_during);

  // Restored into a new place, a server serves exactly what the backup holds.
  TempDir restored;
  const RunResult rr =
      RunBinary({"restore", file.string()}, StoreEnv(restored.path()), restored.path());
  ASSERT_EQ(rr.exit_code, 0) << rr.output;
  EXPECT_EQ(StoreIntegrityCheck(restored.path()), "ok");
  EXPECT_EQ(FilesWith(restored.path(), "chat.db"), std::vector<std::string>{"chat.db"});
  TestServer again(ServerOptions{.env = kNoAbuseLimits, .dir = restored.path()});
  const Rows served = RowsOfServer(again.port(), setup.users[1], setup.conversations);
  EXPECT_EQ(ExpectHolds(served, acked_before, attempted, "restored server"), in_backup);
}

TEST(BackupTest, RestoreIsRefusedWhileAServerRuns) {
  SQLITE_ONLY();
  TestServer server;
  const Groups setup = MakeGroups(server);
  HttpClient client(server.port());
  Post(client, setup.users[0], setup.conversations[0], 3, "before-");
  TempDir out;
  const fs::path file = out.path() / "b.db";
  const RunResult b = RunBinary({"backup", file.string()}, StoreEnv(server.dir()), out.path());
  ASSERT_EQ(b.exit_code, 0) << b.output;
  Post(client, setup.users[0], setup.conversations[0], 2, "after-");

  // The server is idle between requests: its open database is what refuses the restore.
  const RunResult r = RunBinary({"restore", file.string()}, StoreEnv(server.dir()), out.path());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(Lower(r.output).find("in use"), std::string::npos) << r.output;
  EXPECT_NE(Lower(r.output).find("stop"), std::string::npos) << r.output;

  // Nothing changed: the server still serves all five, and writes.
  Post(client, setup.users[0], setup.conversations[0], 1, "later-");
  const Rows rows = RowsOfServer(server.port(), setup.users[1], {setup.conversations[0]});
  ASSERT_EQ(rows.at(setup.conversations[0]).size(), 6u);
  EXPECT_EQ(rows.at(setup.conversations[0]).back().client_id, "later-0");
  EXPECT_EQ(server.Stop(), 0);
  EXPECT_EQ(StoreIntegrityCheck(server.dir()), "ok");
  EXPECT_EQ(QueryStoreOne(server.dir(), "SELECT COUNT(*) FROM messages"), "6");
}

TEST(BackupTest, RestoreWhenStoppedBringsTheBackupBackAndAServerServesIt) {
  SQLITE_ONLY();
  TempDir dir;  // the server's directory, kept across its two runs
  Groups setup;
  std::vector<int64_t> kept;
  TempDir out;
  const fs::path file = out.path() / "b.db";
  {
    TestServer server(ServerOptions{.dir = dir.path()});
    setup = MakeGroups(server);
    HttpClient client(server.port());
    kept = Post(client, setup.users[1], setup.conversations[1], 5, "kept-");
    const RunResult b = RunBinary({"backup", file.string()}, StoreEnv(dir.path()), out.path());
    ASSERT_EQ(b.exit_code, 0) << b.output;
    // After the backup: these and the new account are not in it, and go with the restore.
    Post(client, setup.users[1], setup.conversations[1], 3, "lost-");
    SignUp(server, client, "erin");
    // Stopped hard: the WAL is left beside the file, as after a crash.
    EXPECT_EQ(server.Stop(SIGKILL), 128 + SIGKILL);
  }
  ASSERT_TRUE(fs::exists(dir.path() / "chat.db-wal"));

  const RunResult r = RunBinary({"restore", file.string()}, StoreEnv(dir.path()), out.path());
  ASSERT_EQ(r.exit_code, 0) << r.output;
  EXPECT_NE(r.output.find("restored"), std::string::npos) << r.output;
  EXPECT_EQ(StoreIntegrityCheck(dir.path()), "ok");
  // The killed server's WAL was folded in, and no journal is left behind.
  EXPECT_FALSE(fs::exists(dir.path() / "chat.db-wal"));
  EXPECT_FALSE(fs::exists(dir.path() / "chat.db-journal"));

  TestServer server(ServerOptions{.dir = dir.path()});
  HttpClient client(server.port());
  const Rows rows = RowsOfServer(server.port(), setup.users[0], {setup.conversations[1]});
  const auto& messages = rows.at(setup.conversations[1]);
  ASSERT_EQ(messages.size(), kept.size());
  for (size_t i = 0; i < kept.size(); ++i) {
    EXPECT_EQ(messages[i].id, kept[i]);
    EXPECT_EQ(messages[i].seq, static_cast<int64_t>(i) + 1);
    EXPECT_EQ(messages[i].client_id, "kept-" + std::to_string(i));
  }
  // The accounts are the backup's: alice logs in with her password, erin does not exist.
  auto login = client.Post("/api/login", {{"username", "alice"}, {"password", "correct horse"}});
  EXPECT_EQ(login.status, 200) << login.body;
  auto erin = client.Post("/api/login", {{"username", "erin"}, {"password", "correct horse"}});
  EXPECT_EQ(erin.status, 401) << erin.body;
  // And the conversation goes on from the backup's seq.
  auto next = client.Post("/api/messages",
                          {{"conversation_id", setup.conversations[1]}, {"content", "next"}},
                          setup.users[1].token);
  ASSERT_EQ(next.status, 201) << next.body;
  EXPECT_EQ(next.json["seq"], static_cast<int64_t>(kept.size()) + 1);
  EXPECT_GT(next.json["id"].get<int64_t>(), kept.back());
}

TEST(BackupTest, RefusesToOverwriteAnExistingFileUnlessForced) {
  SQLITE_ONLY();
  TestServer server;
  HttpClient client(server.port());
  SignUp(server, client, "alice");
  TempDir out;
  const fs::path file = out.path() / "b.db";
  std::ofstream(file) << "precious";

  const RunResult r = RunBinary({"backup", file.string()}, StoreEnv(server.dir()), out.path());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("exists"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("--force"), std::string::npos) << r.output;
  EXPECT_EQ(ReadAll(file), "precious");
  EXPECT_EQ(FilesWith(out.path(), "b.db"), std::vector<std::string>{"b.db"});

  const RunResult forced =
      RunBinary({"backup", "--force", file.string()}, StoreEnv(server.dir()), out.path());
  ASSERT_EQ(forced.exit_code, 0) << forced.output;
  EXPECT_EQ(QueryFile(file, "PRAGMA integrity_check"),
            (std::vector<std::vector<std::string>>{{"ok"}}));
  EXPECT_EQ(QueryFile(file, "SELECT username FROM users"),
            (std::vector<std::vector<std::string>>{{"alice"}}));
  EXPECT_EQ(FilesWith(out.path(), "b.db"), std::vector<std::string>{"b.db"});

  // The database itself is never a backup's target, --force or not.
  const RunResult self = RunBinary({"backup", "--force", server.db_path().string()},
                                   StoreEnv(server.dir()), out.path());
  EXPECT_EQ(self.exit_code, 1) << self.output;
  EXPECT_NE(self.output.find("database itself"), std::string::npos) << self.output;
}

TEST(BackupTest, MissingDatabaseOrBackupIsAClearError) {
  SQLITE_ONLY();
  TempDir dir;
  const fs::path db = dir.path() / "missing.db";
  const RunResult r = RunBinary({"backup", (dir.path() / "b.db").string()},
                                {{"SQLITE_DSN", db.string()}}, dir.path());
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("no database"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find(db.string()), std::string::npos) << r.output;
  // Neither the database nor a backup (nor a temporary file) was made.
  EXPECT_EQ(FilesWith(dir.path(), ".db"), std::vector<std::string>{});

  const RunResult missing = RunBinary({"restore", (dir.path() / "nope.db").string()},
                                      {{"SQLITE_DSN", db.string()}}, dir.path());
  EXPECT_EQ(missing.exit_code, 1) << missing.output;
  EXPECT_NE(missing.output.find("no backup file"), std::string::npos) << missing.output;
  EXPECT_FALSE(fs::exists(db));
}

// A damaged backup, one from a newer build and a file that is not MmChat's are refused before
// the database is touched.
TEST(BackupTest, RestoreRefusesADamagedNewerOrForeignFile) {
  SQLITE_ONLY();
  TempDir dir;
  TempDir out;
  const fs::path file = out.path() / "b.db";
  {
    TestServer server(ServerOptions{.env = kNoAbuseLimits, .dir = dir.path()});
    const Groups setup = MakeGroups(server);
    HttpClient client(server.port());
    Post(client, setup.users[0], setup.conversations[0], 50, "m-");
    const RunResult b = RunBinary({"backup", file.string()}, StoreEnv(dir.path()), out.path());
    ASSERT_EQ(b.exit_code, 0) << b.output;
  }  // stopped: what refuses the restores below is the file, not a server
  const std::string count = QueryStoreOne(dir.path(), "SELECT COUNT(*) FROM messages");
  ASSERT_EQ(count, "50");

  // Damaged: the messages table's root page overwritten.
  const fs::path damaged = out.path() / "damaged.db";
  fs::copy_file(file, damaged);
  const auto root =
      QueryFile(damaged, "SELECT rootpage FROM sqlite_schema WHERE name = 'messages'");
  ASSERT_EQ(root.size(), 1u);
  {
    std::fstream f(damaged, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp((std::stoll(root[0][0]) - 1) * 4096);
    const std::string garbage(64, '\x7f');
    f.write(garbage.data(), static_cast<std::streamsize>(garbage.size()));
  }
  const RunResult d = RunBinary({"restore", damaged.string()}, StoreEnv(dir.path()), out.path());
  EXPECT_EQ(d.exit_code, 1) << d.output;
  EXPECT_NE(d.output.find("integrity_check"), std::string::npos) << d.output;

  // Newer: a schema version this build does not know.
  const fs::path newer = out.path() / "newer.db";
  fs::copy_file(file, newer);
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(newer.c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db,
                           "INSERT INTO schema_migrations(version, name, applied_at) "
                           "VALUES (9999, 'future', 0)",
                           nullptr, nullptr, nullptr),
              SQLITE_OK);
    sqlite3_close(db);
  }
  const RunResult n = RunBinary({"restore", newer.string()}, StoreEnv(dir.path()), out.path());
  EXPECT_EQ(n.exit_code, 1) << n.output;
  EXPECT_NE(n.output.find("9999"), std::string::npos) << n.output;
  EXPECT_NE(n.output.find("upgrade"), std::string::npos) << n.output;

  // Foreign: a sound SQLite database that is not MmChat's.
  const fs::path foreign = out.path() / "foreign.db";
  {
    sqlite3* db = nullptr;
    ASSERT_EQ(sqlite3_open(foreign.c_str(), &db), SQLITE_OK);
    EXPECT_EQ(sqlite3_exec(db, "CREATE TABLE t(x)", nullptr, nullptr, nullptr), SQLITE_OK);
    sqlite3_close(db);
  }
  const RunResult f = RunBinary({"restore", foreign.string()}, StoreEnv(dir.path()), out.path());
  EXPECT_EQ(f.exit_code, 1) << f.output;
  EXPECT_NE(f.output.find("not an MmChat database"), std::string::npos) << f.output;

  // The database was not touched.
  EXPECT_EQ(StoreIntegrityCheck(dir.path()), "ok");
  EXPECT_EQ(QueryStoreOne(dir.path(), "SELECT COUNT(*) FROM messages"), count);
}

// ---------------------------------------------------------------------------------------------
// Either store
// ---------------------------------------------------------------------------------------------

TEST(BackupTest, OnPostgresBothPointAtPgDumpAndPgRestore) {
  TempDir dir;
  // No server needs to answer: the commands stop before connecting.
  const std::map<std::string, std::string> env = {
      {"DATABASE_URL", "postgres://mmchat@127.0.0.1:1/mmchat"}};
  const RunResult b = RunBinary({"backup", (dir.path() / "b.db").string()}, env, dir.path());
  EXPECT_EQ(b.exit_code, 2) << b.output;
  EXPECT_NE(b.output.find("pg_dump"), std::string::npos) << b.output;
  EXPECT_NE(b.output.find("Backups"), std::string::npos) << b.output;
  std::ofstream(dir.path() / "r.db") << "x";
  const RunResult r = RunBinary({"restore", (dir.path() / "r.db").string()}, env, dir.path());
  EXPECT_EQ(r.exit_code, 2) << r.output;
  EXPECT_NE(r.output.find("pg_restore"), std::string::npos) << r.output;
  EXPECT_FALSE(fs::exists(dir.path() / "b.db"));
  EXPECT_FALSE(fs::exists(dir.path() / "chat.db"));
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL: pg_dump while serving, pg_restore into a fresh database
// ---------------------------------------------------------------------------------------------

// Debian's PostgreSQL 15 client programs (the version the test server runs), else PATH's.
std::string PgProgram(const std::string& name) {
  const fs::path debian = fs::path("/usr/lib/postgresql/15/bin") / name;
  if (fs::exists(debian)) return debian.string();
  for (const char* dir : {"/usr/bin", "/usr/local/bin"}) {
    if (fs::exists(fs::path(dir) / name)) return (fs::path(dir) / name).string();
  }
  return name;
}

TEST(BackupPgDumpTest, DumpTakenWhileServingRestoresEveryAcknowledgedMessage) {
  if (!OnPostgres()) GTEST_SKIP() << "PostgreSQL only (the pg.* run)";
  TestServer server(ServerOptions{.env = kNoAbuseLimits});
  const Groups setup = MakeGroups(server);
  TempDir out;
  const fs::path dump = out.path() / "mmchat.dump";
  const std::string url = StoreEnv(server.dir()).at("DATABASE_URL");

  const CopyUnderLoad copy = TakeUnderLoad(server, setup, [&] {
    return RunProgram(PgProgram("pg_dump"), {"-Fc", "-f", dump.string(), url}, {}, out.path());
  });
  ASSERT_EQ(copy.run.exit_code, 0) << copy.run.output;
  const auto& acked_before = copy.acked_before;
  const auto& attempted = copy.attempted;
  std::error_code ec;
  const auto size = fs::file_size(dump, ec);
  ASSERT_FALSE(ec);

  // Into a fresh database, as the README says: owned by a role that is not a superuser (as
  // the service's is), which restores it and then serves it.
  const std::string admin_url = TestPostgresUrl();
  ASSERT_FALSE(admin_url.empty());
  const std::string role = UniqueDatabaseName("mmchat_owner");
  const std::string name = UniqueDatabaseName("mmchat_restored");
  QueryAt(admin_url, "CREATE ROLE " + role + " LOGIN PASSWORD 'restore-pw'");
  QueryAt(admin_url, "CREATE DATABASE " + name + " OWNER " + role);
  ASSERT_FALSE(::testing::Test::HasFailure());
  const std::string with_db = WithDatabase(admin_url, name);
  const size_t user_at = with_db.find("://") + 3;
  const std::string restored_url = with_db.substr(0, user_at) + role + ":restore-pw" +
                                   with_db.substr(with_db.find('@', user_at));
  const RunResult r = RunProgram(
      PgProgram("pg_restore"),
      {"--no-owner", "--single-transaction", "--exit-on-error", "-d", restored_url, dump.string()},
      {}, out.path());
  EXPECT_EQ(r.exit_code, 0) << r.output;
  size_t served_total = 0;
  if (r.exit_code == 0) {
    TestServer again(
        ServerOptions{.env = {{"DATABASE_URL", restored_url}, {"MSG_RATE_PER_SEC", "0"}}});
    const Rows served = RowsOfServer(again.port(), setup.users[1], setup.conversations);
    served_total = ExpectHolds(served, acked_before, attempted, "restored PostgreSQL server");
    EXPECT_GE(served_total, acked_before.size());
    // Sequences came back too: a new message follows the restored ones.
    HttpClient client(again.port());
    const int64_t conversation = setup.conversations[0];
    auto next =
        client.Post("/api/messages", {{"conversation_id", conversation}, {"content", "next"}},
                    setup.users[0].token);
    ASSERT_EQ(next.status, 201) << next.body;
    EXPECT_EQ(next.json["seq"].get<int64_t>(),
              static_cast<int64_t>(served.at(conversation).size()) + 1);
    int64_t max_id = 0;
    for (const auto& [c, rows] : served) {
      for (const auto& m : rows) max_id = std::max(max_id, m.id);
    }
    EXPECT_GT(next.json["id"].get<int64_t>(), max_id);
  }
  if (!::testing::Test::HasFailure()) {
    DropTestDatabase(name);
    QueryAt(admin_url, "DROP ROLE " + role);
  }

  std::printf(
      "pg_dump under load: %zu messages in the dump (%zu acknowledged before it began), "
      "%lld bytes (-Fc, compressed), %.0f ms, %d messages acknowledged while it ran\n",
      served_total, acked_before.size(), static_cast<long long>(size), copy.ms, copy.acked_during);
  ::testing::Test::RecordProperty("dump_ms", static_cast<int>(copy.ms));
  ::testing::Test::RecordProperty("dump_bytes", static_cast<int>(size));
  ::testing::Test::RecordProperty("acked_during", copy.acked_during);
}

}  // namespace
}  // namespace mmchat::test
