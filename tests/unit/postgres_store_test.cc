// What only the PostgreSQL store has: its migrations on a connection, start-up's one-line
// reasons when the database cannot be used, the pool healing after a lost connection, and
// libpq parameters. The rules every backend shares are in store_conformance_test.cc.
#include "store/postgres/postgres_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>

#include <chrono>
#include <thread>

#include "chat_fakes.h"
#include "store/postgres/pg_connection.h"
#include "store/postgres/pg_migrations.h"
#include "store/postgres/pg_pool.h"
#include "store_backends.h"

namespace mmchat::store::postgres {
namespace {

using ::testing::HasSubstr;
using ::testing::Not;

class PostgresStoreTest : public ::testing::Test {
 protected:
  test::PostgresBackend backend_;
};

std::unique_ptr<PgConnection> Connect(const std::string& url) {
  auto c = PgConnection::Connect(ConnectOptions{url});
  EXPECT_TRUE(c.ok()) << c.status().message();
  return c.ok() ? std::move(c).value() : nullptr;
}

Result<std::unique_ptr<PostgresStore>> OpenAt(const std::string& url,
                                              std::chrono::milliseconds wait) {
  Options o;
  o.url = url;
  o.startup_wait = wait;
  o.connect_timeout = std::chrono::seconds(2);
  return PostgresStore::Open(o);
}

TEST_F(PostgresStoreTest, MigrateReportsWhatItApplied) {
  auto conn = Connect(backend_.url());
  ASSERT_NE(conn, nullptr);
  int applied = -1;
  ASSERT_TRUE(Migrate(*conn, &applied).ok());
  EXPECT_EQ(applied, LatestSchemaVersion());
  ASSERT_TRUE(Migrate(*conn, &applied).ok());
  EXPECT_EQ(applied, 0);
  EXPECT_EQ(backend_.QueryOne("SELECT COUNT(*) FROM schema_migrations"),
            std::to_string(LatestSchemaVersion()));
}

TEST_F(PostgresStoreTest, StartupNamesAWrongPassword) {
  std::string url = backend_.url();
  const size_t at = url.find('@');
  const size_t colon = url.rfind(':', at);
  ASSERT_NE(at, std::string::npos);
  url = url.substr(0, colon + 1) + "wrong-password" + url.substr(at);
  const auto start = std::chrono::steady_clock::now();
  auto s = OpenAt(url, std::chrono::seconds(30));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("authentication failed"));
  EXPECT_THAT(s.status().message(), Not(HasSubstr("wrong-password")));
  // Not worth waiting for: a wrong password does not fix itself.
  EXPECT_LT(std::chrono::steady_clock::now() - start, std::chrono::seconds(20));
}

TEST_F(PostgresStoreTest, StartupNamesAMissingDatabase) {
  auto s =
      OpenAt(test::WithDatabase(backend_.url(), "no_such_database_here"), std::chrono::seconds(30));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("database missing"));
  EXPECT_THAT(s.status().message(), HasSubstr("no_such_database_here"));
}

TEST_F(PostgresStoreTest, StartupWaitsThenNamesAnUnreachableServer) {
  // A loopback port where nothing listens (port 1 needs root to bind; nobody does).
  const auto start = std::chrono::steady_clock::now();
  auto s = OpenAt("postgresql://mmchat:x@127.0.0.1:1/mmchat", std::chrono::milliseconds(1500));
  ASSERT_FALSE(s.ok());
  EXPECT_THAT(s.status().message(), HasSubstr("unreachable"));
  EXPECT_GE(std::chrono::steady_clock::now() - start, std::chrono::milliseconds(1500));
  EXPECT_EQ(s.status().message().find('\n'), std::string::npos);  // one line
}

TEST_F(PostgresStoreTest, DescribeLeavesThePasswordOut) {
  const std::string d = Describe("postgresql://alice:s3cret@db.example:6543/chat?sslmode=require");
  EXPECT_EQ(d, "postgres db.example:6543/chat");
  EXPECT_THAT(Describe(backend_.url()), Not(HasSubstr("mmchat-test")));
}

TEST_F(PostgresStoreTest, TextWithNulIsRefusedNotCutShort) {
  auto conn = Connect(backend_.url());
  ASSERT_NE(conn, nullptr);
  // libpq's text parameters end at a NUL: "a\0b" would silently become "a".
  auto r = conn->Query("SELECT $1::text", Params().Add(std::string("a\0b", 3)));
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kInvalidRequest);
  EXPECT_FALSE(conn->broken());
  auto ok = conn->Query("SELECT $1::text, $2::bigint", Params().Add("plain").Add(int64_t{-7}));
  ASSERT_TRUE(ok.ok());
  EXPECT_EQ(ok->Text(0, 0), "plain");
  EXPECT_EQ(ok->Int(0, 1), -7);
}

TEST_F(PostgresStoreTest, APipelineStopsAtTheFirstErrorAndTheConnectionStaysUsable) {
  auto conn = Connect(backend_.url());
  ASSERT_NE(conn, nullptr);
  auto r = conn->Pipeline({{"SELECT 1", {}}, {"SELECT 1/0", {}}, {"SELECT 3", {}}});
  ASSERT_FALSE(r.ok());
  EXPECT_EQ(r.status().code(), StatusCode::kUnavailable);
  EXPECT_EQ(conn->sqlstate(), "22012");  // division_by_zero
  EXPECT_FALSE(conn->broken());
  auto after = conn->Pipeline({{"SELECT 41 + 1", {}}});
  ASSERT_TRUE(after.ok());
  EXPECT_EQ((*after)[0].Int(0, 0), 42);
}

TEST_F(PostgresStoreTest, ThePoolReplacesAConnectionTheServerEnded) {
  PgPool pool(ConnectOptions{backend_.url()}, 2, std::chrono::seconds(2));
  std::string pid;
  {
    auto lease = pool.Acquire();
    ASSERT_TRUE(lease.ok());
    auto r = (*lease)->Query("SELECT pg_backend_pid()");
    ASSERT_TRUE(r.ok());
    pid = r->Text(0, 0);
  }
  // The server ends that idle session (as a restart or an administrator would), and it is gone.
  EXPECT_EQ(backend_.QueryOne("SELECT pg_terminate_backend(" + pid + ")"), "t");
  for (int i = 0; i < 200 && backend_.QueryOne(
                                 "SELECT count(*) FROM pg_stat_activity WHERE pid = " + pid) != "0";
       ++i) {
    std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // The pool notices before handing it out again: the next caller gets a fresh connection,
  // and no query fails on the dead one.
  auto lease = pool.Acquire();
  ASSERT_TRUE(lease.ok());
  auto fresh = (*lease)->Query("SELECT pg_backend_pid()");
  ASSERT_TRUE(fresh.ok()) << fresh.status().message();
  EXPECT_NE(fresh->Text(0, 0), pid);
}

TEST_F(PostgresStoreTest, TheMessageWriterReconnectsAfterItsConnectionWasEnded) {
  auto s = OpenAt(backend_.url(), std::chrono::seconds(5));
  ASSERT_TRUE(s.ok()) << s.status().message();
  auto& store = **s;
  auto u = store.CreateUser({"alice", "alice@example.com", "h", 1});
  ASSERT_TRUE(u.ok());
  auto g = store.CreateGroup("g", u->id, {}, 1);
  ASSERT_TRUE(g.ok());
  auto send = [&](const std::string& text) {
    test::CallbackWaiter<domain::StoredAppend> w;
    store.AppendMessage({g->id, u->id, text, std::nullopt, 2}, w.Callback());
    return w.Get();
  };
  ASSERT_TRUE(send("one").ok());
  // End every other session of this database: the writer's among them.
  backend_.QueryOne(
      "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = "
      "current_database() AND pid <> pg_backend_pid()");
  // The batch fails before COMMIT on the dead connection and is tried again on a new one.
  auto two = send("two");
  ASSERT_TRUE(two.ok()) << two.status().message();
  EXPECT_EQ(two->message.seq, 2);
  EXPECT_EQ(backend_.QueryOne("SELECT string_agg(content, ',' ORDER BY seq) FROM messages"),
            "one,two");
}

}  // namespace
}  // namespace mmchat::store::postgres
