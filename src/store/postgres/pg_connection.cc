#include "store/postgres/pg_connection.h"

#include <poll.h>
#include <spdlog/spdlog.h>

#include <charconv>
#include <cstdlib>

#include "common/utf8.h"
#include "store/common/statement_count.h"

namespace mmchat::store::postgres {
namespace {

// libpq's messages end with a newline and may run over several lines: the first line, safe
// for a log line.
std::string FirstLine(std::string_view m) { return LogSafe(m.substr(0, m.find('\n'))); }

ConnectFailure Classify(std::string_view message) {
  auto has = [&](std::string_view s) { return message.find(s) != std::string_view::npos; };
  if (has("password authentication failed") || has("authentication failed") ||
      has("no pg_hba.conf entry") || (has("role \"") && has("does not exist")) ||
      has("no password supplied")) {
    return ConnectFailure::kAuthentication;
  }
  if (has("database \"") && has("does not exist")) return ConnectFailure::kNoDatabase;
  if (has("starting up") || has("shutting down") || has("in recovery mode") ||
      has("not yet accepting connections") || has("too many clients")) {
    return ConnectFailure::kStartingUp;
  }
  if (has("Connection refused") || has("timeout expired") || has("could not translate host") ||
      has("No such file or directory") || has("Network is unreachable") ||
      has("No route to host") || has("could not connect") || has("server closed the connection")) {
    return ConnectFailure::kUnreachable;
  }
  return ConnectFailure::kOther;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Params and PgResult
// ---------------------------------------------------------------------------------------------

Params& Params::Add(int64_t v) {
  char buf[24];
  auto [end, ec] = std::to_chars(buf, buf + sizeof buf, v);
  values_.emplace_back(std::string(buf, end));
  return *this;
}

Params& Params::Add(bool v) {
  values_.emplace_back(v ? "t" : "f");
  return *this;
}

Params& Params::Add(std::string_view v) {
  values_.emplace_back(std::string(v));
  return *this;
}

Params& Params::Add(const std::optional<std::string>& v) {
  values_.push_back(v);
  return *this;
}

Params& Params::AddNull() {
  values_.emplace_back(std::nullopt);
  return *this;
}

Params& Params::AddArray(const std::vector<int64_t>& v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s += ',';
    s += std::to_string(v[i]);
  }
  s += '}';
  values_.emplace_back(std::move(s));
  return *this;
}

Params& Params::AddArray(const std::vector<std::optional<int64_t>>& v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s += ',';
    s += v[i] ? std::to_string(*v[i]) : "NULL";
  }
  s += '}';
  values_.emplace_back(std::move(s));
  return *this;
}

Params& Params::AddTextArray(const std::vector<std::optional<std::string>>& v) {
  std::string s = "{";
  for (size_t i = 0; i < v.size(); ++i) {
    if (i > 0) s += ',';
    if (!v[i]) {
      s += "NULL";
      continue;
    }
    s += '"';
    for (char c : *v[i]) {
      if (c == '"' || c == '\\') s += '\\';
      s += c;
    }
    s += '"';
  }
  s += '}';
  values_.emplace_back(std::move(s));
  return *this;
}

Params& Params::AddTextArray(const std::vector<std::string>& v) {
  return AddTextArray(std::vector<std::optional<std::string>>(v.begin(), v.end()));
}

Params& Params::AddBytes(std::string_view v) {
  binary_.resize(values_.size(), false);
  values_.emplace_back(std::string(v));
  binary_.push_back(true);
  return *this;
}

std::vector<int> Params::Lengths() const {
  if (binary_.empty()) return {};
  std::vector<int> out;
  for (const auto& v : values_) out.push_back(v ? static_cast<int>(v->size()) : 0);
  return out;
}

std::vector<int> Params::Formats() const {
  if (binary_.empty()) return {};
  std::vector<int> out(values_.size(), 0);
  for (size_t i = 0; i < binary_.size(); ++i) out[i] = binary_[i] ? 1 : 0;
  return out;
}

std::vector<const char*> Params::Pointers() const {
  std::vector<const char*> out;
  out.reserve(values_.size());
  for (const auto& v : values_) out.push_back(v ? v->c_str() : nullptr);
  return out;
}

bool Params::Sendable() const {
  for (size_t i = 0; i < values_.size(); ++i) {
    const bool binary = i < binary_.size() && binary_[i];
    if (!binary && values_[i] && values_[i]->find('\0') != std::string::npos) return false;
  }
  return true;
}

std::string_view PgResult::Bytes(int row, int col) const {
  return std::string_view(PQgetvalue(r_.get(), row, col),
                          static_cast<size_t>(PQgetlength(r_.get(), row, col)));
}

int64_t PgResult::Int(int row, int col) const {
  const char* v = PQgetvalue(r_.get(), row, col);
  int64_t out = 0;
  std::from_chars(v, v + PQgetlength(r_.get(), row, col), out);
  return out;
}

bool PgResult::Bool(int row, int col) const { return PQgetvalue(r_.get(), row, col)[0] == 't'; }

std::string PgResult::Text(int row, int col) const {
  return std::string(PQgetvalue(r_.get(), row, col),
                     static_cast<size_t>(PQgetlength(r_.get(), row, col)));
}

std::optional<std::string> PgResult::OptText(int row, int col) const {
  if (IsNull(row, col)) return std::nullopt;
  return Text(row, col);
}

std::optional<int64_t> PgResult::OptInt(int row, int col) const {
  if (IsNull(row, col)) return std::nullopt;
  return Int(row, col);
}

int64_t PgResult::Affected() const {
  const char* n = PQcmdTuples(r_.get());
  return n && *n ? std::strtoll(n, nullptr, 10) : 0;
}

// ---------------------------------------------------------------------------------------------
// Connecting
// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<PgConnection>> PgConnection::Connect(const ConnectOptions& options,
                                                            ConnectFailure* failure) {
  const auto deadline = Clock::now() + options.connect_timeout;
  // The URL is expanded by libpq; the keywords after it override only what they name. TCP
  // keepalives find a peer that vanished without closing while the connection is idle.
  const char* keys[] = {"dbname",
                        "application_name",
                        "keepalives",
                        "keepalives_idle",
                        "keepalives_interval",
                        "keepalives_count",
                        nullptr};
  const char* values[] = {options.url.c_str(), "mmchat", "1", "30", "10", "3", nullptr};
  PGconn* conn = PQconnectStartParams(keys, values, /*expand_dbname=*/1);
  // libpq may try several addresses (::1, then 127.0.0.1): the reason is in any of its lines,
  // and the line shown is the one that gave it.
  auto fail = [&](std::string_view whole) -> Result<std::unique_ptr<PgConnection>> {
    const ConnectFailure why = Classify(whole);
    if (failure) *failure = why;
    std::string shown = FirstLine(whole);
    for (size_t at = 0; at < whole.size();) {
      const size_t end = std::min(whole.find('\n', at), whole.size());
      const std::string_view line = whole.substr(at, end - at);
      if (!line.empty() && Classify(line) == why) {
        shown = LogSafe(line);
        break;
      }
      at = end + 1;
    }
    if (conn) PQfinish(conn);
    return Status::Unavailable(shown);
  };
  if (conn == nullptr) return fail("out of memory");
  if (PQstatus(conn) == CONNECTION_BAD) return fail(PQerrorMessage(conn));
  PostgresPollingStatusType st = PGRES_POLLING_WRITING;
  while (st != PGRES_POLLING_OK) {
    if (st == PGRES_POLLING_FAILED) return fail(PQerrorMessage(conn));
    pollfd p{PQsocket(conn), static_cast<short>(st == PGRES_POLLING_READING ? POLLIN : POLLOUT), 0};
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0 || poll(&p, 1, static_cast<int>(left)) == 0) {
      if (failure) *failure = ConnectFailure::kUnreachable;
      PQfinish(conn);
      return Status::Unavailable("timeout expired while connecting");
    }
    st = PQconnectPoll(conn);
  }
  if (PQsetnonblocking(conn, 1) != 0) return fail(PQerrorMessage(conn));
  // Server notices ("relation already exists, skipping") are not for the server's log.
  PQsetNoticeProcessor(
      conn, [](void*, const char*) {}, nullptr);
  std::unique_ptr<PgConnection> out(new PgConnection(conn, options.query_timeout));
  // A process that hangs inside a transaction must not hold its locks (the message writer's
  // among them) forever: the server ends such a session. And a statement this side gave up on
  // (the query timeout) must not run on without anyone waiting: the server ends it first.
  if (Status s = out->Exec("SET idle_in_transaction_session_timeout = '60s'");
      !s.ok() || !(s = out->SetQueryTimeout(options.query_timeout)).ok()) {
    if (failure) *failure = ConnectFailure::kOther;
    return s;
  }
  return out;
}

PgConnection::PgConnection(PGconn* conn, std::chrono::milliseconds query_timeout)
    : conn_(conn), query_timeout_(query_timeout) {}

PgConnection::~PgConnection() { PQfinish(conn_); }

bool PgConnection::broken() const { return lost_ || PQstatus(conn_) != CONNECTION_OK; }

bool PgConnection::StillUp() {
  if (broken()) return false;
  // Nothing to read: nobody closed it. Something: news to take in (a setting changed), or a
  // goodbye: a FATAL message, which libpq takes as a notice while idle, then the end of the
  // stream, which only the next read sees.
  for (int reads = 0; reads < 4 && !lost_; ++reads) {
    pollfd p{PQsocket(conn_), POLLIN, 0};
    if (poll(&p, 1, 0) <= 0) break;
    if (PQconsumeInput(conn_) == 0) lost_ = true;
  }
  return !broken();
}

bool PgConnection::InTransaction() const {
  const auto t = PQtransactionStatus(conn_);
  return t == PQTRANS_INTRANS || t == PQTRANS_INERROR || t == PQTRANS_ACTIVE;
}

// ---------------------------------------------------------------------------------------------
// Waiting on the socket
// ---------------------------------------------------------------------------------------------

Status PgConnection::WaitSocket(bool write, Clock::time_point deadline) {
  pollfd p{PQsocket(conn_), static_cast<short>(POLLIN | (write ? POLLOUT : 0)), 0};
  for (;;) {
    const auto left =
        std::chrono::duration_cast<std::chrono::milliseconds>(deadline - Clock::now()).count();
    if (left <= 0) return Lost("timed out");
    const int n = poll(&p, 1, static_cast<int>(left));
    if (n > 0) return Status::Ok();
    if (n < 0 && errno != EINTR) return Lost("poll failed");
  }
}

Status PgConnection::Flush(Clock::time_point deadline) {
  for (;;) {
    const int r = PQflush(conn_);
    if (r == 0) return Status::Ok();
    if (r < 0) return Lost("send failed");
    // Reading while the send buffer is full keeps a server that answers early from blocking.
    if (Status s = WaitSocket(true, deadline); !s.ok()) return s;
    if (PQconsumeInput(conn_) == 0) return Lost("receive failed");
  }
}

Status PgConnection::AwaitResult(Clock::time_point deadline) {
  while (PQisBusy(conn_)) {
    if (Status s = WaitSocket(false, deadline); !s.ok()) return s;
    if (PQconsumeInput(conn_) == 0) return Lost("receive failed");
  }
  return Status::Ok();
}

Status PgConnection::SetQueryTimeout(std::chrono::milliseconds timeout) {
  query_timeout_ = timeout;
  const auto statement_ms = std::max<int64_t>(1000, timeout.count() - 2000);
  return Exec("SET statement_timeout = " + std::to_string(statement_ms));
}

void PgConnection::ClearError() {
  sqlstate_.clear();
  constraint_.clear();
}

Status PgConnection::Lost(std::string_view what) {
  lost_ = true;
  sqlstate_.clear();
  constraint_.clear();
  spdlog::error("postgres: {}: {}", what, FirstLine(PQerrorMessage(conn_)));
  return Status::Unavailable("database error");
}

Status PgConnection::Failed(const PGresult* r, std::string_view what) {
  if (r == nullptr) return Lost(what);
  const char* state = PQresultErrorField(r, PG_DIAG_SQLSTATE);
  const char* constraint = PQresultErrorField(r, PG_DIAG_CONSTRAINT_NAME);
  sqlstate_ = state ? state : "";
  constraint_ = constraint ? constraint : "";
  // A unique violation is an answer the caller expects (a taken name): not worth an error line.
  if (sqlstate_ != kUniqueViolation) {
    spdlog::error("postgres {}: {} ({})", what, FirstLine(PQresultErrorMessage(r)), sqlstate_);
  }
  return Status::Unavailable("database error");
}

// ---------------------------------------------------------------------------------------------
// Statements
// ---------------------------------------------------------------------------------------------

Result<PgResult> PgConnection::Collect(Clock::time_point deadline) {
  PgResult out;
  Status error;
  for (;;) {
    if (Status s = AwaitResult(deadline); !s.ok()) return s;
    PGresult* r = PQgetResult(conn_);
    if (r == nullptr) break;
    const auto st = PQresultStatus(r);
    if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && error.ok()) {
      error = Failed(r, "statement");
    }
    out = PgResult(r);
  }
  if (!error.ok()) return error;
  return out;
}

Result<std::string> PgConnection::Prepared(std::string_view sql) {
  const std::string key(sql);
  if (auto it = prepared_.find(key); it != prepared_.end()) return it->second;
  const std::string name = "s" + std::to_string(prepared_.size() + 1);
  const auto deadline = Clock::now() + query_timeout_;
  if (PQsendPrepare(conn_, name.c_str(), key.c_str(), 0, nullptr) == 0) return Lost("prepare");
  if (Status s = Flush(deadline); !s.ok()) return s;
  auto r = Collect(deadline);
  if (!r.ok()) return r.status();
  prepared_.emplace(key, name);
  return name;
}

Result<PgResult> PgConnection::Query(std::string_view sql, const Params& params, Planning planning,
                                     ResultFormat format) {
  ClearError();
  if (broken()) return Status::Unavailable("database error");
  if (!params.Sendable()) return Status::InvalidRequest("text must not contain U+0000");
  const auto values = params.Pointers();
  const auto lengths = params.Lengths();
  const auto formats = params.Formats();
  const int* length_data = lengths.empty() ? nullptr : lengths.data();
  const int* format_data = formats.empty() ? nullptr : formats.data();
  const int n = static_cast<int>(values.size());
  const int result_format = static_cast<int>(format);
  if (planning == Planning::kEachRun) {
    CountStatement();
    if (PQsendQueryParams(conn_, std::string(sql).c_str(), n, nullptr, values.data(), length_data,
                          format_data, result_format) == 0) {
      return Lost("send");
    }
  } else {
    auto name = Prepared(sql);
    if (!name.ok()) return name.status();
    CountStatement();
    if (PQsendQueryPrepared(conn_, name->c_str(), n, values.data(), length_data, format_data,
                            result_format) == 0) {
      return Lost("send");
    }
  }
  const auto deadline = Clock::now() + query_timeout_;
  if (Status s = Flush(deadline); !s.ok()) return s;
  return Collect(deadline);
}

Status PgConnection::Exec(std::string_view sql) {
  ClearError();
  if (broken()) return Status::Unavailable("database error");
  CountStatement();
  const auto deadline = Clock::now() + query_timeout_;
  if (PQsendQuery(conn_, std::string(sql).c_str()) == 0) return Lost("send");
  if (Status s = Flush(deadline); !s.ok()) return s;
  auto r = Collect(deadline);
  return r.ok() ? Status::Ok() : r.status();
}

Result<std::vector<PgResult>> PgConnection::Pipeline(const std::vector<Statement>& statements) {
  ClearError();
  if (broken()) return Status::Unavailable("database error");
  std::vector<std::string> names;
  names.reserve(statements.size());
  for (const auto& st : statements) {
    if (!st.params.Sendable()) return Status::InvalidRequest("text must not contain U+0000");
    auto name = Prepared(st.sql);
    if (!name.ok()) return name.status();
    names.push_back(std::move(name).value());
  }
  const auto deadline = Clock::now() + query_timeout_;
  if (PQenterPipelineMode(conn_) == 0) return Lost("enter pipeline mode");
  for (size_t i = 0; i < statements.size(); ++i) {
    const Params& params = statements[i].params;
    const auto values = params.Pointers();
    const auto lengths = params.Lengths();
    const auto formats = params.Formats();
    CountStatement();
    if (PQsendQueryPrepared(conn_, names[i].c_str(), static_cast<int>(values.size()), values.data(),
                            lengths.empty() ? nullptr : lengths.data(),
                            formats.empty() ? nullptr : formats.data(), 0) == 0) {
      return Lost("send");
    }
  }
  if (PQpipelineSync(conn_) == 0) return Lost("pipeline sync");
  if (Status s = Flush(deadline); !s.ok()) return s;

  // Each statement's results end with a null; the sync point ends the pipeline. After an
  // error the server skips the rest: those come back PGRES_PIPELINE_ABORTED.
  std::vector<PgResult> out;
  out.reserve(statements.size());
  Status error;
  for (size_t i = 0; i < statements.size(); ++i) {
    PgResult last;
    for (;;) {
      if (Status s = AwaitResult(deadline); !s.ok()) return s;
      PGresult* r = PQgetResult(conn_);
      if (r == nullptr) break;
      const auto st = PQresultStatus(r);
      if (st != PGRES_COMMAND_OK && st != PGRES_TUPLES_OK && st != PGRES_PIPELINE_ABORTED &&
          error.ok()) {
        error = Failed(r, "pipelined statement");
      }
      last = PgResult(r);
    }
    out.push_back(std::move(last));
  }
  if (Status s = AwaitResult(deadline); !s.ok()) return s;
  PGresult* sync = PQgetResult(conn_);
  const bool synced = sync != nullptr && PQresultStatus(sync) == PGRES_PIPELINE_SYNC;
  PQclear(sync);
  if (!synced || PQexitPipelineMode(conn_) == 0) return Lost("pipeline end");
  if (!error.ok()) return error;
  return out;
}

}  // namespace mmchat::store::postgres
