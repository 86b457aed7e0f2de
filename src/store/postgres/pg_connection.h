// Thin RAII wrappers over libpq: Params (text-format parameters), PgResult (a PGresult) and
// PgConnection (one server connection with a prepared-statement cache). Every call runs
// libpq's non-blocking API under a deadline, so a database that stops answering costs a
// bounded wait, never a stuck thread. Statements can be sent in one round trip with
// Pipeline() (libpq's pipeline mode).
//
// Not thread-safe: a PgConnection is used by one thread at a time (PgPool hands them out).
// Errors are logged here with their details; callers get kUnavailable("database error"),
// which API.md turns into 503, and can ask sqlstate() what went wrong.
#pragma once

#include <libpq-fe.h>

#include <chrono>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "common/status.h"

namespace mmchat::store::postgres {

using Clock = std::chrono::steady_clock;

// Parameters of one statement, in libpq's text format; nullopt is NULL.
class Params {
 public:
  Params& Add(int64_t v);
  Params& Add(bool v);
  Params& Add(std::string_view v);
  Params& Add(const char* v) { return Add(std::string_view(v)); }
  Params& Add(const std::string& v) { return Add(std::string_view(v)); }
  Params& Add(const std::optional<std::string>& v);
  Params& AddNull();
  // A bigint[] literal, e.g. {1,2,3}.
  Params& AddArray(const std::vector<int64_t>& v);
  Params& AddArray(const std::vector<std::optional<int64_t>>& v);  // NULL for nullopt
  // A text[] literal: every element quoted, nullopt as NULL.
  Params& AddTextArray(const std::vector<std::optional<std::string>>& v);
  Params& AddTextArray(const std::vector<std::string>& v);
  // Bytes in libpq's binary format (a bytea), NUL bytes and all.
  Params& AddBytes(std::string_view v);

  size_t size() const { return values_.size(); }
  // libpq's arrays; valid while this object lives and is not changed.
  std::vector<const char*> Pointers() const;
  // Lengths and formats (1: binary) of the values, or empty when every value is text.
  std::vector<int> Lengths() const;
  std::vector<int> Formats() const;
  // False when a value holds a NUL byte, which libpq's text format would cut short.
  bool Sendable() const;

 private:
  std::vector<std::optional<std::string>> values_;
  std::vector<bool> binary_;  // parallel to values_, empty while no value is binary
};

// A statement and its parameters, for Pipeline().
struct Statement {
  std::string sql;
  Params params;
};

class PgResult {
 public:
  PgResult() = default;
  explicit PgResult(PGresult* r) : r_(r, PQclear) {}

  int rows() const { return r_ ? PQntuples(r_.get()) : 0; }
  bool IsNull(int row, int col) const { return PQgetisnull(r_.get(), row, col) != 0; }
  int64_t Int(int row, int col) const;
  bool Bool(int row, int col) const;  // 't' or 'f'
  std::string Text(int row, int col) const;
  std::optional<std::string> OptText(int row, int col) const;
  std::optional<int64_t> OptInt(int row, int col) const;
  // A value as its raw bytes (a bytea of a binary-format result), valid while the result is.
  std::string_view Bytes(int row, int col) const;
  // Rows changed by an INSERT, UPDATE or DELETE.
  int64_t Affected() const;

 private:
  std::shared_ptr<PGresult> r_;
};

// One row of a result, with the accessors store/common/rows.h reads through.
struct PgRow {
  const PgResult& result;
  int row;
  int64_t Int(int col) const { return result.Int(row, col); }
  std::string Text(int col) const { return result.Text(row, col); }
  std::optional<std::string> OptText(int col) const { return result.OptText(row, col); }
  std::optional<int64_t> OptInt(int col) const { return result.OptInt(row, col); }
};

// Where a connection goes and how long each step may take.
struct ConnectOptions {
  std::string url;  // a libpq connection URI (postgres:// or postgresql://)
  std::chrono::milliseconds connect_timeout{5000};
  std::chrono::milliseconds query_timeout{30000};
};

// Why a connection attempt failed, for start-up's one line.
enum class ConnectFailure { kUnreachable, kAuthentication, kNoDatabase, kStartingUp, kOther };

// How a statement is planned: prepared on first use, its plan cached (after five runs
// PostgreSQL may keep one generic plan for any parameters), or planned for its parameters on
// every run (a search, whose best plan depends on how common its words are).
enum class Planning { kPrepared, kEachRun };
// The format of a result's values: text, or binary (bytea read as its bytes, not as hex).
enum class ResultFormat { kText = 0, kBinary = 1 };

class PgConnection {
 public:
  // Opens a connection within `options.connect_timeout`. On failure, `failure` (when given)
  // says why and the Status message is libpq's, on one line.
  static Result<std::unique_ptr<PgConnection>> Connect(const ConnectOptions& options,
                                                       ConnectFailure* failure = nullptr);
  ~PgConnection();
  PgConnection(const PgConnection&) = delete;
  PgConnection& operator=(const PgConnection&) = delete;

  // Runs one statement, by default as a prepared statement (prepared on this connection on
  // first use).
  Result<PgResult> Query(std::string_view sql, const Params& params = {},
                         Planning planning = Planning::kPrepared,
                         ResultFormat format = ResultFormat::kText);
  // Runs the statements in order in one round trip; the results in the same order. The first
  // error fails the call (later statements of the pipeline are skipped by the server).
  Result<std::vector<PgResult>> Pipeline(const std::vector<Statement>& statements);
  // Runs one or more statements without parameters (DDL, BEGIN, COMMIT) by the simple
  // protocol.
  Status Exec(std::string_view sql);
  // How long each later call may take (the server is told the same, less a margin); for
  // migrations, which may build indexes on big tables.
  Status SetQueryTimeout(std::chrono::milliseconds timeout);

  // The SQLSTATE of the last failed statement ("" when it was no server error).
  const std::string& sqlstate() const { return sqlstate_; }
  // The constraint a failed statement violated, when the server named one.
  const std::string& constraint() const { return constraint_; }
  // The connection can no longer be used (lost, timed out, or left mid-protocol).
  bool broken() const;
  // Looks at an idle connection without a round trip: a server that ended the session (a
  // restart, a crash, an administrator) has closed the socket or said so on it. False when
  // it is broken; called before a connection is handed out again.
  bool StillUp();
  // In a transaction block (or in a failed one).
  bool InTransaction() const;

 private:
  PgConnection(PGconn* conn, std::chrono::milliseconds query_timeout);

  // Prepares `sql` when this connection has not yet; its statement name.
  Result<std::string> Prepared(std::string_view sql);
  // Flushes what libpq buffered and reads until a whole result is in, by `deadline`.
  Status Flush(Clock::time_point deadline);
  Status AwaitResult(Clock::time_point deadline);
  // Waits until the socket can be read (or written too, when `write`) or `deadline` passes.
  Status WaitSocket(bool write, Clock::time_point deadline);
  // Reads every result of the current command; fails on the first error result.
  Result<PgResult> Collect(Clock::time_point deadline);
  // Records and logs a failed result, or a connection error when `r` is null.
  Status Failed(const PGresult* r, std::string_view what);
  Status Lost(std::string_view what);
  void ClearError();

  PGconn* conn_;
  std::chrono::milliseconds query_timeout_;
  std::unordered_map<std::string, std::string> prepared_;  // SQL text -> statement name
  std::string sqlstate_;
  std::string constraint_;
  bool lost_ = false;  // a deadline passed or the protocol broke: never reuse
};

// SQLSTATEs the stores branch on.
inline constexpr std::string_view kUniqueViolation = "23505";
inline constexpr std::string_view kSerializationFailure = "40001";
inline constexpr std::string_view kDeadlockDetected = "40P01";

}  // namespace mmchat::store::postgres
