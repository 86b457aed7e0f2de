#include "store/postgres/postgres_store.h"

#include <spdlog/spdlog.h>

#include <string>
#include <thread>
#include <unordered_map>
#include <utility>

#include "common/utf8.h"
#include "store/common/rows.h"
#include "store/postgres/pg_migrations.h"

namespace mmchat::store::postgres {
namespace {

using domain::CodePurpose;
using domain::PendingCode;
using domain::User;
using domain::UserRecord;

// How long a caller waits for a pooled connection when all are in use.
constexpr auto kPoolWait = std::chrono::seconds(5);
// Users inserted per statement by CreateUsers (all in one transaction).
constexpr size_t kUsersPerInsert = 5000;

// Maps a failed user write: a unique violation is the conflict API.md names.
Status UserWriteError(const PgConnection& c, Status failed) {
  if (c.sqlstate() != kUniqueViolation) return failed;
  if (c.constraint() == "users_email_key") return Status::Conflict(domain::kEmailTaken);
  return Status::Conflict(domain::kUsernameTaken);
}

// The one line start-up prints when the database cannot be used.
std::string StartupProblem(ConnectFailure why, const std::string& detail) {
  switch (why) {
    case ConnectFailure::kAuthentication:
      return "database authentication failed (DATABASE_URL): " + detail;
    case ConnectFailure::kNoDatabase:
      return "database missing (DATABASE_URL): " + detail;
    case ConnectFailure::kUnreachable:
    case ConnectFailure::kStartingUp:
      return "database unreachable (DATABASE_URL): " + detail;
    case ConnectFailure::kOther:
      break;
  }
  return "database connection failed (DATABASE_URL): " + detail;
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Opening and connections
// ---------------------------------------------------------------------------------------------

std::string Describe(const std::string& url) {
  char* err = nullptr;
  PQconninfoOption* opts = PQconninfoParse(url.c_str(), &err);
  if (opts == nullptr) {
    PQfreemem(err);
    return "postgres (unparsable DATABASE_URL)";
  }
  std::string host = "localhost", port = "5432", db;
  for (PQconninfoOption* o = opts; o->keyword != nullptr; ++o) {
    if (o->val == nullptr) continue;
    const std::string_view k = o->keyword;
    if (k == "host" || k == "hostaddr") host = o->val;
    if (k == "port") port = o->val;
    if (k == "dbname") db = o->val;
  }
  PQconninfoFree(opts);
  return LogSafe("postgres " + host + ":" + port + "/" + db);
}

Result<std::unique_ptr<PostgresStore>> PostgresStore::Open(const Options& options) {
  const ConnectOptions copt{options.url, options.connect_timeout, options.query_timeout};
  const auto deadline = Clock::now() + options.startup_wait;
  bool said_waiting = false;
  std::unique_ptr<PgConnection> conn;
  for (;;) {
    ConnectFailure why = ConnectFailure::kOther;
    auto c = PgConnection::Connect(copt, &why);
    if (c.ok()) {
      conn = std::move(c).value();
      break;
    }
    const bool transient =
        why == ConnectFailure::kUnreachable || why == ConnectFailure::kStartingUp;
    if (!transient || Clock::now() >= deadline) {
      return Status::Unavailable(StartupProblem(why, c.status().message()));
    }
    if (!said_waiting) {
      spdlog::warn("waiting up to {} s for the database: {}",
                   std::chrono::duration_cast<std::chrono::seconds>(options.startup_wait).count(),
                   c.status().message());
      said_waiting = true;
    }
    std::this_thread::sleep_for(std::chrono::milliseconds(250));
  }
  // Text is UTF-8 end to end (decision 10): a database in another encoding would turn valid
  // text into errors, or keep what it cannot show.
  auto encoding = conn->Query(
      "SELECT pg_encoding_to_char(encoding) FROM pg_database "
      "WHERE datname = current_database()");
  if (!encoding.ok()) return Status::Unavailable("cannot read the database's encoding");
  if (encoding->Text(0, 0) != "UTF8") {
    return Status::Unavailable("database encoding is " + encoding->Text(0, 0) +
                               "; MmChat needs a UTF8 database (createdb -E UTF8)");
  }
  if (Status s = Migrate(*conn); !s.ok()) return s;
  return std::unique_ptr<PostgresStore>(new PostgresStore(options));
}

PostgresStore::PostgresStore(const Options& options)
    : pool_(ConnectOptions{options.url, options.connect_timeout, options.query_timeout},
            options.pool_size, kPoolWait, options.metrics) {
  message_writer_ = std::make_unique<GroupCommitWriter>(
      [this](const std::vector<Write>& batch) { return CommitBatch(batch); }, "mmchat", nullptr,
      options.metrics);
}

PostgresStore::~PostgresStore() {
  message_writer_->Stop();  // every accepted append is written and answered
}

Status PostgresStore::WithConnection(const std::function<Status(PgConnection&)>& fn) {
  auto lease = pool_.Acquire();
  if (!lease.ok()) return lease.status();
  return fn(**lease);
}

Status PostgresStore::InTransaction(const std::function<Status(PgConnection&)>& fn) {
  return WithConnection([&](PgConnection& c) -> Status {
    if (Status s = c.Exec("BEGIN"); !s.ok()) return s;
    Status s = fn(c);
    if (s.ok()) s = c.Exec("COMMIT");
    if (!s.ok() && !c.broken()) c.Exec("ROLLBACK");
    return s;
  });
}

Result<PgResult> PostgresStore::Query(std::string_view sql, const Params& params, Planning planning,
                                      ResultFormat format) {
  PgResult out;
  Status s = WithConnection([&](PgConnection& c) -> Status {
    auto r = c.Query(sql, params, planning, format);
    if (!r.ok()) return r.status();
    out = std::move(r).value();
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Status PostgresStore::Ping() {
  // A short wait for a connection: readiness is about the database, not a busy pool.
  auto lease = pool_.Acquire(std::chrono::seconds(1));
  if (!lease.ok()) return lease.status();
  auto r = (*lease)->Query("SELECT 1");
  return r.ok() ? Status::Ok() : r.status();
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

Result<User> PostgresStore::CreateUser(const domain::NewUser& nu) {
  auto users = CreateUsers({nu});
  if (!users.ok()) return users.status();
  return std::move(users->front());
}

Result<std::vector<User>> PostgresStore::CreateUsers(const std::vector<domain::NewUser>& batch) {
  std::vector<User> users;
  users.reserve(batch.size());
  Status s = InTransaction([&](PgConnection& c) -> Status {
    for (size_t from = 0; from < batch.size(); from += kUsersPerInsert) {
      const size_t to = std::min(batch.size(), from + kUsersPerInsert);
      std::vector<std::string> names, emails, hashes;
      std::vector<int64_t> times;
      for (size_t i = from; i < to; ++i) {
        names.push_back(batch[i].username);
        emails.push_back(batch[i].email);
        hashes.push_back(batch[i].password_hash);
        times.push_back(batch[i].created_at);
      }
      // WITH ORDINALITY numbers the rows, so the ids come back in the batch's order.
      auto r = c.Query(
          "WITH input AS (SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::bigint[]) "
          "WITH ORDINALITY AS t(username, email, password_hash, created_at, n)), "
          "ins AS (INSERT INTO users(username, email, password_hash, created_at) "
          "SELECT username, email, password_hash, created_at FROM input ORDER BY n "
          "RETURNING id, username) "
          "SELECT ins.id FROM ins JOIN input ON input.username = ins.username ORDER BY input.n",
          Params().AddTextArray(names).AddTextArray(emails).AddTextArray(hashes).AddArray(times));
      if (!r.ok()) return UserWriteError(c, r.status());
      for (size_t i = from; i < to; ++i) {
        User& u = users.emplace_back();
        u.id = r->Int(static_cast<int>(i - from), 0);
        u.username = batch[i].username;
        u.email = batch[i].email;
        u.created_at = batch[i].created_at;
      }
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return users;
}

Result<std::optional<UserRecord>> PostgresStore::FindUserWhere(std::string_view sql,
                                                               const Params& params) {
  auto r = Query(sql, params);
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return std::optional<UserRecord>();
  return std::optional<UserRecord>(ReadUserRecord(PgRow{*r, 0}));
}

Result<std::optional<UserRecord>> PostgresStore::FindUserById(int64_t id) {
  return FindUserWhere(std::string("SELECT ") + kUserColumns + " FROM users WHERE id = $1",
                       Params().Add(id));
}

Result<std::optional<UserRecord>> PostgresStore::FindUserByEmail(std::string_view email) {
  return FindUserWhere(std::string("SELECT ") + kUserColumns +
                           " FROM users WHERE lower(email COLLATE \"C\") = "
                           "lower($1::text COLLATE \"C\")",
                       Params().Add(email));
}

Result<std::optional<UserRecord>> PostgresStore::FindUserByUsername(std::string_view username) {
  return FindUserWhere(std::string("SELECT ") + kUserColumns +
                           " FROM users WHERE lower(username COLLATE \"C\") = "
                           "lower($1::text COLLATE \"C\")",
                       Params().Add(username));
}

Result<std::vector<User>> PostgresStore::SearchUsersByPrefix(std::string_view prefix, int limit) {
  // A range on the case-folded unique index instead of LIKE: usernames are ASCII below 0x7F,
  // so every name with the prefix sorts between prefix and prefix || E'\x7f'.
  auto r = Query(std::string("SELECT ") + kUserColumns +
                     " FROM users WHERE lower(username COLLATE \"C\") >= lower($1::text COLLATE "
                     "\"C\") AND lower(username COLLATE \"C\") < lower($1::text COLLATE \"C\") "
                     "|| chr(127) AND status <> 'deleted' "
                     "ORDER BY lower(username COLLATE \"C\") LIMIT $2",
                 Params().Add(prefix).Add(int64_t{limit}));
  if (!r.ok()) return r.status();
  std::vector<User> users;
  for (int i = 0; i < r->rows(); ++i) users.push_back(ReadUserRecord(PgRow{*r, i}).user);
  return users;
}

Status PostgresStore::UpdateProfile(int64_t id, const domain::ProfileUpdate& update) {
  return WithConnection([&](PgConnection& c) -> Status {
    // $2 / $4 say whether the field is being set, so one statement serves every mix.
    auto r = c.Query(
        "UPDATE users SET username = CASE WHEN $2::boolean THEN $3::text ELSE username END, "
        "profile_picture = CASE WHEN $4::boolean THEN $5::text ELSE profile_picture END "
        "WHERE id = $1",
        Params()
            .Add(id)
            .Add(update.username.has_value())
            .Add(update.username)
            .Add(update.profile_picture.has_value())
            .Add(update.profile_picture ? *update.profile_picture : std::nullopt));
    if (!r.ok()) return UserWriteError(c, r.status());
    return r->Affected() == 1 ? Status::Ok() : Status::NotFound(domain::kUserNotFound);
  });
}

Status PostgresStore::ReplacePassword(int64_t id, const std::string& password_hash) {
  auto r = Query(
      "UPDATE users SET password_hash = $2, token_version = token_version + 1, "
      "failed_logins = 0, failed_window_start = 0 WHERE id = $1",
      Params().Add(id).Add(password_hash));
  if (!r.ok()) return r.status();
  return r->Affected() == 1 ? Status::Ok() : Status::NotFound(domain::kUserNotFound);
}

Status PostgresStore::SetLastSeen(int64_t id, TimeMs at) {
  // Never back: two nodes of a cluster may store a user's last closes out of order. A
  // deleted account's connections close after its erasure: it keeps none.
  auto r = Query(
      "UPDATE users SET last_seen = CASE WHEN status = 'deleted' THEN NULL "
      "ELSE GREATEST(last_seen, $2) END WHERE id = $1",
      Params().Add(id).Add(at));
  if (!r.ok()) return r.status();
  return r->Affected() == 1 ? Status::Ok() : Status::NotFound(domain::kUserNotFound);
}

Result<std::vector<UserRecord>> PostgresStore::ListUsers(std::string_view prefix, int limit,
                                                         int offset) {
  auto r = Query(std::string("SELECT ") + kUserColumns +
                     " FROM users WHERE $1::text = '' OR (lower(username COLLATE \"C\") >= "
                     "lower($1::text COLLATE \"C\") AND lower(username COLLATE \"C\") < "
                     "lower($1::text COLLATE \"C\") || chr(127)) ORDER BY id LIMIT $2 OFFSET $3",
                 Params().Add(prefix).Add(int64_t{limit}).Add(int64_t{offset}));
  if (!r.ok()) return r.status();
  std::vector<UserRecord> users;
  for (int i = 0; i < r->rows(); ++i) users.push_back(ReadUserRecord(PgRow{*r, i}));
  return users;
}

Status PostgresStore::SetUserStatus(int64_t id, domain::UserStatus status) {
  if (status == domain::UserStatus::kDeleted) return Status::InvalidRequest("use EraseUser");
  // One statement: the update, and whether the row exists at all.
  auto r = Query(
      "WITH upd AS (UPDATE users SET status = $2::text, token_version = token_version + "
      "CASE WHEN $2::text = 'disabled' THEN 1 ELSE 0 END WHERE id = $1 AND status <> 'deleted' "
      "RETURNING id) "
      "SELECT (SELECT count(*) FROM upd), (SELECT count(*) FROM users WHERE id = $1)",
      Params().Add(id).Add(domain::UserStatusName(status)));
  if (!r.ok()) return r.status();
  if (r->Int(0, 0) == 1) return Status::Ok();
  return r->Int(0, 1) == 1 ? Status::Conflict(domain::kUserDeleted)
                           : Status::NotFound(domain::kUserNotFound);
}

Status PostgresStore::EraseUser(int64_t id) {
  return WithConnection([&](PgConnection& c) -> Status {
    auto r = c.Query(
        "UPDATE users SET username = $2, email = $2, password_hash = '', profile_picture = NULL, "
        "last_seen = NULL, status = 'deleted', token_version = token_version + 1, "
        "failed_logins = 0, failed_window_start = 0 WHERE id = $1",
        Params().Add(id).Add(domain::kDeletedUsernamePrefix + std::to_string(id)));
    if (!r.ok()) return UserWriteError(c, r.status());
    return r->Affected() == 1 ? Status::Ok() : Status::NotFound(domain::kUserNotFound);
  });
}

Result<domain::LoginGate> PostgresStore::BeginLoginAttempt(int64_t id, TimeMs now, TimeMs window_ms,
                                                           int32_t max_failures) {
  // $2 now, $3 window length, $4 limit. A window is over when start + length <= now. The
  // row lock of the UPDATE makes concurrent attempts count one after another.
  auto r = Query(
      "UPDATE users SET "
      "failed_logins = CASE WHEN failed_window_start + $3::bigint <= $2::bigint THEN 1 "
      "ELSE failed_logins + 1 END, "
      "failed_window_start = CASE WHEN failed_window_start + $3::bigint <= $2::bigint THEN "
      "$2::bigint ELSE failed_window_start END "
      "WHERE id = $1 AND NOT (failed_logins >= $4::integer AND "
      "failed_window_start + $3::bigint > $2::bigint) "
      "RETURNING failed_window_start",
      Params().Add(id).Add(now).Add(window_ms).Add(int64_t{max_failures}));
  if (!r.ok()) return r.status();
  domain::LoginGate gate;
  if (r->rows() == 1) {
    gate.allowed = true;
    gate.window_start = r->Int(0, 0);
    return gate;
  }
  // Locked (or no such user): report when the window started.
  auto start = Query("SELECT failed_window_start FROM users WHERE id = $1", Params().Add(id));
  if (!start.ok()) return start.status();
  if (start->rows() == 1) gate.window_start = start->Int(0, 0);
  return gate;
}

Status PostgresStore::ClearLoginFailures(int64_t id) {
  auto r = Query("UPDATE users SET failed_logins = 0, failed_window_start = 0 WHERE id = $1",
                 Params().Add(id));
  return r.ok() ? Status::Ok() : r.status();
}

// ---------------------------------------------------------------------------------------------
// Verification codes
// ---------------------------------------------------------------------------------------------

Result<std::optional<PendingCode>> PostgresStore::FindCode(CodePurpose purpose,
                                                           std::string_view email) {
  auto r = Query(std::string("SELECT ") + kCodeColumns +
                     ", used FROM verification_codes WHERE purpose = $1 AND email = $2",
                 Params().Add(PurposeName(purpose)).Add(email));
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return std::optional<PendingCode>();
  PendingCode code = ReadCode(PgRow{*r, 0}, purpose, email);
  code.used = r->Bool(0, 6);
  return std::optional<PendingCode>(std::move(code));
}

Status PostgresStore::PutCode(const PendingCode& code) {
  auto r = Query(
      "INSERT INTO verification_codes(purpose, email, code_hash, sent_at, expires_at, attempts, "
      "used, username, password_hash) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9) "
      "ON CONFLICT (purpose, email) DO UPDATE SET code_hash = EXCLUDED.code_hash, "
      "sent_at = EXCLUDED.sent_at, expires_at = EXCLUDED.expires_at, "
      "attempts = EXCLUDED.attempts, used = EXCLUDED.used, username = EXCLUDED.username, "
      "password_hash = EXCLUDED.password_hash",
      Params()
          .Add(PurposeName(code.purpose))
          .Add(code.email)
          .Add(code.code_hash)
          .Add(code.sent_at)
          .Add(code.expires_at)
          .Add(int64_t{code.attempts})
          .Add(code.used)
          .Add(code.username)
          .Add(code.password_hash));
  return r.ok() ? Status::Ok() : r.status();
}

Status PostgresStore::DeleteCode(CodePurpose purpose, std::string_view email) {
  auto r = Query("DELETE FROM verification_codes WHERE purpose = $1 AND email = $2",
                 Params().Add(PurposeName(purpose)).Add(email));
  return r.ok() ? Status::Ok() : r.status();
}

Result<std::optional<PendingCode>> PostgresStore::ReserveCodeAttempt(CodePurpose purpose,
                                                                     std::string_view email,
                                                                     int32_t max_attempts) {
  auto r = Query(
      "UPDATE verification_codes SET attempts = attempts + 1 "
      "WHERE purpose = $1 AND email = $2 AND NOT used AND attempts < $3 "
      "RETURNING " +
          std::string(kCodeColumns),
      Params().Add(PurposeName(purpose)).Add(email).Add(int64_t{max_attempts}));
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return std::optional<PendingCode>();
  return std::optional<PendingCode>(ReadCode(PgRow{*r, 0}, purpose, email));
}

Status PostgresStore::PurgeCodes(TimeMs sent_before) {
  auto r = Query("DELETE FROM verification_codes WHERE sent_at < $1", Params().Add(sent_before));
  return r.ok() ? Status::Ok() : r.status();
}

Result<bool> PostgresStore::ConsumeCode(CodePurpose purpose, std::string_view email,
                                        TimeMs sent_at) {
  auto r = Query(
      "UPDATE verification_codes SET used = true "
      "WHERE purpose = $1 AND email = $2 AND sent_at = $3 AND NOT used",
      Params().Add(PurposeName(purpose)).Add(email).Add(sent_at));
  if (!r.ok()) return r.status();
  return r->Affected() == 1;
}

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

Result<std::string> PostgresStore::GetOrCreateSetting(std::string_view key,
                                                      std::string_view value_if_absent) {
  std::string value;
  Status s = WithConnection([&](PgConnection& c) -> Status {
    // One round trip; the SELECT sees the row whoever inserted it first.
    auto r = c.Pipeline({{"INSERT INTO settings(key, value) VALUES ($1, $2) ON CONFLICT DO NOTHING",
                          Params().Add(key).Add(value_if_absent)},
                         {"SELECT value FROM settings WHERE key = $1", Params().Add(key)}});
    if (!r.ok()) return r.status();
    if ((*r)[1].rows() != 1) return Status::Unavailable("database error");
    value = (*r)[1].Text(0, 0);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return value;
}

}  // namespace mmchat::store::postgres
