#include "store_backends.h"

#include <libpq-fe.h>
#include <sqlite3.h>

#include "store/postgres/postgres_store.h"
#include "store/sqlite/sqlite_store.h"

namespace mmchat::test {
namespace {

// Holds SQLite's write lock from a second connection.
class SqliteWriterBlock final : public WriterBlock {
 public:
  explicit SqliteWriterBlock(const std::string& path) {
    if (sqlite3_open(path.c_str(), &db_) != SQLITE_OK ||
        sqlite3_exec(db_, "BEGIN IMMEDIATE", nullptr, nullptr, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << "cannot take the write lock: " << sqlite3_errmsg(db_);
    }
  }
  ~SqliteWriterBlock() override {
    Release();
    sqlite3_close(db_);
  }
  void Release() override {
    if (!released_) sqlite3_exec(db_, "ROLLBACK", nullptr, nullptr, nullptr);
    released_ = true;
  }

 private:
  sqlite3* db_ = nullptr;
  bool released_ = false;
};

// Holds the message writers' advisory lock from another session.
class PostgresWriterBlock final : public WriterBlock {
 public:
  explicit PostgresWriterBlock(const std::string& url) : conn_(ConnectTo(url)) {
    if (conn_) {
      Rows(conn_.get(),
           "SELECT pg_advisory_lock(" + std::to_string(store::postgres::kMessageWriterLock) + ")");
    }
  }
  ~PostgresWriterBlock() override { Release(); }
  void Release() override { conn_.reset(); }  // the session ends, and its lock with it

 private:
  PgConn conn_;
};

}  // namespace

// ---------------------------------------------------------------------------------------------
// SQLite
// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<store::Store>> SqliteBackend::Open() {
  store::sqlite::Options opts;
  opts.dsn = path_;
  auto s = store::sqlite::SqliteStore::Open(opts);
  if (!s.ok()) return s.status();
  return std::unique_ptr<store::Store>(std::move(s).value());
}

std::string SqliteBackend::QueryOne(const std::string& sql) {
  sqlite3* db = nullptr;
  std::string out;
  if (sqlite3_open(path_.c_str(), &db) != SQLITE_OK) {
    ADD_FAILURE() << sqlite3_errmsg(db);
  } else {
    sqlite3_stmt* st = nullptr;
    if (sqlite3_prepare_v2(db, sql.c_str(), -1, &st, nullptr) != SQLITE_OK) {
      ADD_FAILURE() << sql << ": " << sqlite3_errmsg(db);
    } else if (sqlite3_step(st) == SQLITE_ROW) {
      const auto* t = reinterpret_cast<const char*>(sqlite3_column_text(st, 0));
      out = t ? t : "NULL";
    }
    sqlite3_finalize(st);
  }
  sqlite3_close(db);
  return out;
}

void SqliteBackend::Exec(const std::string& sql) {
  sqlite3* db = nullptr;
  char* err = nullptr;
  if (sqlite3_open(path_.c_str(), &db) != SQLITE_OK ||
      sqlite3_exec(db, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    ADD_FAILURE() << sql << ": " << (err ? err : sqlite3_errmsg(db));
  }
  sqlite3_free(err);
  sqlite3_close(db);
}

std::unique_ptr<WriterBlock> SqliteBackend::BlockWriter() {
  return std::make_unique<SqliteWriterBlock>(path_);
}

// ---------------------------------------------------------------------------------------------
// PostgreSQL
// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<store::Store>> PostgresBackend::Open() {
  if (url().empty()) return Status::Unavailable("no test PostgreSQL");
  store::postgres::Options opts;
  opts.url = url();
  opts.startup_wait = std::chrono::seconds(5);
  auto s = store::postgres::PostgresStore::Open(opts);
  if (!s.ok()) return s.status();
  return std::unique_ptr<store::Store>(std::move(s).value());
}

std::unique_ptr<WriterBlock> PostgresBackend::BlockWriter() {
  return std::make_unique<PostgresWriterBlock>(url());
}

}  // namespace mmchat::test
