#include "store/sqlite/connection.h"

#include <spdlog/spdlog.h>

#include "store/common/statement_count.h"

namespace mmchat::store::sqlite {

// ---------------------------------------------------------------------------------------------
// Statement
// ---------------------------------------------------------------------------------------------

Statement& Statement::Bind(int i, int64_t v) {
  sqlite3_bind_int64(stmt_, i, v);
  return *this;
}

Statement& Statement::Bind(int i, std::string_view v) {
  sqlite3_bind_text(stmt_, i, v.data(), static_cast<int>(v.size()), SQLITE_TRANSIENT);
  return *this;
}

Statement& Statement::Bind(int i, const std::optional<std::string>& v) {
  return v ? Bind(i, std::string_view(*v)) : BindNull(i);
}

Statement& Statement::Bind(int i, const std::optional<int64_t>& v) {
  return v ? Bind(i, *v) : BindNull(i);
}

Statement& Statement::BindNull(int i) {
  sqlite3_bind_null(stmt_, i);
  return *this;
}

int Statement::Step() {
  if (!sqlite3_stmt_busy(stmt_)) CountStatement();  // a new execution, not its next row
  return sqlite3_step(stmt_);
}

void Statement::Reset() {
  sqlite3_reset(stmt_);
  sqlite3_clear_bindings(stmt_);
}

Statement& Statement::BindBlob(int i, std::string_view v) {
  sqlite3_bind_blob64(stmt_, i, v.data(), v.size(), SQLITE_STATIC);
  return *this;
}

std::string Statement::Blob(int col) const {
  const auto* p = static_cast<const char*>(sqlite3_column_blob(stmt_, col));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
}

std::string Statement::Text(int col) const {
  const auto* p = reinterpret_cast<const char*>(sqlite3_column_text(stmt_, col));
  return p ? std::string(p, static_cast<size_t>(sqlite3_column_bytes(stmt_, col))) : std::string();
}

std::optional<std::string> Statement::OptText(int col) const {
  if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
  return Text(col);
}

std::optional<int64_t> Statement::OptInt(int col) const {
  if (sqlite3_column_type(stmt_, col) == SQLITE_NULL) return std::nullopt;
  return Int(col);
}

// ---------------------------------------------------------------------------------------------
// Connection
// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<Connection>> Connection::Open(const std::string& dsn,
                                                     const std::string& synchronous) {
  sqlite3* db = nullptr;
  const int flags =
      SQLITE_OPEN_READWRITE | SQLITE_OPEN_CREATE | SQLITE_OPEN_URI | SQLITE_OPEN_NOMUTEX;
  const int rc = sqlite3_open_v2(dsn.c_str(), &db, flags, nullptr);
  if (rc != SQLITE_OK) {
    std::string msg = db ? sqlite3_errmsg(db) : sqlite3_errstr(rc);
    sqlite3_close(db);
    return Status::Unavailable("cannot open database " + dsn + ": " + msg);
  }
  std::unique_ptr<Connection> conn(new Connection(db));
  // WAL lets readers proceed while the writer commits; the busy timeout makes a writer wait
  // for another process's lock instead of failing at once. secure_delete overwrites what a
  // deletion or an edit frees: a deleted message's text does not stay in the file's free space.
  Status s = conn->Exec(
      "PRAGMA journal_mode=WAL; PRAGMA foreign_keys=ON; PRAGMA secure_delete=ON; "
      "PRAGMA busy_timeout=5000; PRAGMA synchronous=" +
      synchronous + ";");
  if (!s.ok()) return s;
  return conn;
}

Connection::~Connection() {
  cache_.clear();  // statements must be finalized before the close
  sqlite3_close(db_);
}

Result<ScopedStatement> Connection::Prepare(const std::string& sql) {
  auto it = cache_.find(sql);
  if (it != cache_.end()) return ScopedStatement(it->second.get());
  sqlite3_stmt* stmt = nullptr;
  if (sqlite3_prepare_v3(db_, sql.c_str(), static_cast<int>(sql.size()), SQLITE_PREPARE_PERSISTENT,
                         &stmt, nullptr) != SQLITE_OK) {
    return Error("prepare");
  }
  auto [pos, _] = cache_.emplace(sql, std::make_unique<Statement>(stmt));
  return ScopedStatement(pos->second.get());
}

Status Connection::Exec(const std::string& sql) {
  CountStatement();
  char* err = nullptr;
  if (sqlite3_exec(db_, sql.c_str(), nullptr, nullptr, &err) != SQLITE_OK) {
    std::string msg = err ? err : "unknown error";
    sqlite3_free(err);
    spdlog::error("sqlite: {}", msg);
    return Status::Unavailable("database error");
  }
  return Status::Ok();
}

Status Connection::Error(std::string_view what) const {
  // The details go to the log only; clients get a generic message (API.md: no internals).
  spdlog::error("sqlite {}: {} ({})", what, sqlite3_errmsg(db_), sqlite3_extended_errcode(db_));
  return Status::Unavailable("database error");
}

Status Connection::Run(Statement& st, std::string_view what) const {
  return st.Step() == SQLITE_DONE ? Status::Ok() : Error(what);
}

// ---------------------------------------------------------------------------------------------
// Transaction
// ---------------------------------------------------------------------------------------------

Transaction::~Transaction() {
  if (open_) conn_->Exec("ROLLBACK");
}

Status Transaction::Begin() {
  Status s = conn_->Exec("BEGIN IMMEDIATE");
  open_ = s.ok();
  return s;
}

Status Transaction::Commit() {
  Status s = conn_->Exec("COMMIT");
  if (s.ok()) open_ = false;
  return s;
}

}  // namespace mmchat::store::sqlite
