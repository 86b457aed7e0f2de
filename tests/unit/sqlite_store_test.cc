// What only the SQLite store has: its migrations on a connection, WAL, file paths. The rules
// every backend shares are in store_conformance_test.cc.
#include "store/sqlite/sqlite_store.h"

#include <gmock/gmock.h>
#include <gtest/gtest.h>
#include <sqlite3.h>

#include <memory>
#include <string>
#include <vector>

#include "fakes.h"
#include "store/sqlite/connection.h"
#include "store/sqlite/migrations.h"

namespace mmchat::store::sqlite {
namespace {

using ::testing::ElementsAre;
using ::testing::HasSubstr;

// A raw SQLite handle for looking behind the store's back.
class RawDb {
 public:
  explicit RawDb(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK) ADD_FAILURE() << sqlite3_errmsg(db_);
  }
  ~RawDb() { sqlite3_close(db_); }

  // The first column of every row of `sql`, as text.
  std::vector<std::string> Column(const std::string& sql) {
    std::vector<std::string> out;
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db_, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db_);
      return out;
    }
    while (sqlite3_step(st) == SQLITE_ROW) {
      const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      out.push_back(t ? t : "NULL");
    }
    sqlite3_finalize(st);
    return out;
  }
  std::string One(const std::string& sql) {
    auto c = Column(sql);
    return c.empty() ? "" : c[0];
  }
  void Exec(const std::string& sql) {
    char* err = nullptr;
    if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << (err ? err : "?");
    }
    sqlite3_free(err);
  }

 private:
  sqlite3* db_ = nullptr;
};

class SqliteStoreTest : public ::testing::Test {
 protected:
  void SetUp() override { store_ = OpenStore(); }

  std::unique_ptr<SqliteStore> OpenStore() {
    Options opts;
    opts.dsn = path_;
    auto s = SqliteStore::Open(opts);
    EXPECT_TRUE(s.ok()) << s.status().message();
    return s.ok() ? std::move(s).value() : nullptr;
  }

  test::TempDir dir_;
  const std::string path_ = dir_.File("store.db");
  std::unique_ptr<SqliteStore> store_;
};

// ---------------------------------------------------------------------------------------------
// Opening and migrations
// ---------------------------------------------------------------------------------------------

TEST_F(SqliteStoreTest, MigrationsAppliedOnceAndReopenIsANoOp) {
  ASSERT_NE(store_, nullptr);
  store_.reset();
  store_ = OpenStore();
  ASSERT_NE(store_, nullptr);
  store_.reset();

  RawDb db(path_);
  const int latest = LatestSchemaVersion();
  ASSERT_GE(latest, 1);
  EXPECT_EQ(db.One("SELECT COUNT(*) FROM schema_migrations"), std::to_string(latest));
  EXPECT_EQ(db.One("SELECT COUNT(DISTINCT version) FROM schema_migrations"),
            std::to_string(latest));
  EXPECT_EQ(db.One("SELECT MAX(version) FROM schema_migrations"), std::to_string(latest));
  EXPECT_EQ(db.One("SELECT MIN(version) FROM schema_migrations"), "1");
  // The tables of migration 1 exist.
  EXPECT_THAT(db.Column("SELECT name FROM sqlite_master WHERE type = 'table' AND name IN "
                        "('users', 'verification_codes', 'settings') ORDER BY name"),
              ElementsAre("settings", "users", "verification_codes"));
}

TEST_F(SqliteStoreTest, MigrateReportsWhatItApplied) {
  store_.reset();
  auto conn = Connection::Open(dir_.File("fresh.db"), "NORMAL");
  ASSERT_TRUE(conn.ok()) << conn.status().message();
  int applied = -1;
  ASSERT_TRUE(Migrate(conn->get(), &applied).ok());
  EXPECT_EQ(applied, LatestSchemaVersion());
  ASSERT_TRUE(Migrate(conn->get(), &applied).ok());
  EXPECT_EQ(applied, 0);
}

TEST_F(SqliteStoreTest, JournalModeIsWal) {
  RawDb db(path_);
  EXPECT_EQ(db.One("PRAGMA journal_mode"), "wal");
}

TEST_F(SqliteStoreTest, UnopenablePathIsAnError) {
  Options opts;
  opts.dsn = dir_.File("no/such/dir/x.db");
  auto s = SqliteStore::Open(opts);
  ASSERT_FALSE(s.ok());
  EXPECT_EQ(s.status().code(), StatusCode::kUnavailable);
}

}  // namespace
}  // namespace mmchat::store::sqlite
