// Thin RAII wrappers over the SQLite C API: a Connection with a prepared-statement cache and a
// Statement that binds and reads columns. Not thread-safe: a Connection is used by one thread at a
// time (ConnectionPool hands them out).
#pragma once

#include <sqlite3.h>

#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>

#include "common/status.h"

namespace mmchat::store::sqlite {

class Statement {
 public:
  explicit Statement(sqlite3_stmt* stmt) : stmt_(stmt) {}
  ~Statement() { sqlite3_finalize(stmt_); }
  Statement(const Statement&) = delete;
  Statement& operator=(const Statement&) = delete;

  // Parameters are 1-based, as in SQLite.
  Statement& Bind(int i, int64_t v);
  Statement& Bind(int i, std::string_view v);
  Statement& Bind(int i, const std::string& v) { return Bind(i, std::string_view(v)); }
  Statement& Bind(int i, const std::optional<std::string>& v);
  Statement& Bind(int i, const std::optional<int64_t>& v);
  Statement& BindNull(int i);
  // Bytes as a BLOB, not copied: `v` must outlive the next Step.
  Statement& BindBlob(int i, std::string_view v);

  // SQLITE_ROW, SQLITE_DONE or an error code.
  int Step();
  // Makes the statement reusable and drops bindings; called by the cache before each use.
  void Reset();

  int64_t Int(int col) const { return sqlite3_column_int64(stmt_, col); }
  std::string Text(int col) const;
  std::optional<std::string> OptText(int col) const;
  std::optional<int64_t> OptInt(int col) const;
  std::string Blob(int col) const;

  sqlite3_stmt* raw() const { return stmt_; }

 private:
  sqlite3_stmt* stmt_;
};

// A borrowed cached statement, reset when the scope ends so that no half-read SELECT keeps a
// read snapshot (and with it the WAL) pinned.
class ScopedStatement {
 public:
  explicit ScopedStatement(Statement* s) : s_(s) {}
  ScopedStatement(ScopedStatement&& o) noexcept : s_(o.s_) { o.s_ = nullptr; }
  ScopedStatement& operator=(ScopedStatement&&) = delete;
  ~ScopedStatement() {
    if (s_) s_->Reset();
  }
  Statement* operator->() const { return s_; }
  Statement& operator*() const { return *s_; }

 private:
  Statement* s_;
};

class Connection {
 public:
  // Opens `dsn` (a filename or a file: URI) read-write, creating it when missing.
  static Result<std::unique_ptr<Connection>> Open(const std::string& dsn,
                                                  const std::string& synchronous);
  ~Connection();
  Connection(const Connection&) = delete;
  Connection& operator=(const Connection&) = delete;

  // A cached prepared statement for `sql`, ready to bind. One borrower per SQL text at a time.
  Result<ScopedStatement> Prepare(const std::string& sql);
  // Runs one or more statements without results (DDL, pragmas, BEGIN/COMMIT).
  Status Exec(const std::string& sql);
  // The Status for the last error on this connection, for `what` ("insert user").
  Status Error(std::string_view what) const;
  // Steps `st`, a statement that returns no rows, to its end.
  Status Run(Statement& st, std::string_view what) const;
  int64_t LastInsertId() const { return sqlite3_last_insert_rowid(db_); }
  int Changes() const { return sqlite3_changes(db_); }
  sqlite3* raw() const { return db_; }

 private:
  explicit Connection(sqlite3* db) : db_(db) {}

  sqlite3* db_;
  std::unordered_map<std::string, std::unique_ptr<Statement>> cache_;
};

// Commits on Commit(), rolls back on destruction otherwise.
class Transaction {
 public:
  explicit Transaction(Connection* conn) : conn_(conn) {}
  ~Transaction();
  Status Begin();  // BEGIN IMMEDIATE: take the write lock up front, no upgrade deadlocks
  Status Commit();

 private:
  Connection* conn_;
  bool open_ = false;
};

}  // namespace mmchat::store::sqlite
