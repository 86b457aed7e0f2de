#include "store/sqlite/sqlite_store.h"

#include <spdlog/spdlog.h>

#include <string>
#include <utility>

#include "store/common/rows.h"
#include "store/sqlite/migrations.h"

namespace mmchat::store::sqlite {
namespace {

using domain::CodePurpose;
using domain::PendingCode;
using domain::User;
using domain::UserRecord;

// Maps a UNIQUE violation on users to the conflict API.md names; anything else is an error.
Status UserWriteError(Connection& c, std::string_view what) {
  if (sqlite3_extended_errcode(c.raw()) == SQLITE_CONSTRAINT_UNIQUE) {
    const std::string msg = sqlite3_errmsg(c.raw());
    if (msg.find("users.email") != std::string::npos) {
      return Status::Conflict(domain::kEmailTaken);
    }
    return Status::Conflict(domain::kUsernameTaken);
  }
  return c.Error(what);
}

}  // namespace

// ---------------------------------------------------------------------------------------------
// Opening and connections
// ---------------------------------------------------------------------------------------------

Result<std::unique_ptr<SqliteStore>> SqliteStore::Open(const Options& options) {
  auto writer = Connection::Open(options.dsn, options.synchronous);
  if (!writer.ok()) return writer.status();
  if (Status s = Migrate(writer->get(), nullptr); !s.ok()) return s;
  return std::unique_ptr<SqliteStore>(new SqliteStore(options, std::move(writer).value()));
}

SqliteStore::SqliteStore(Options options, std::unique_ptr<Connection> writer)
    : options_(std::move(options)), writer_(std::move(writer)) {
  message_writer_ = std::make_unique<GroupCommitWriter>(
      [this](const std::vector<Write>& batch) { return CommitBatch(batch); }, "mmchat",
      [this] { return TidySearchIndex(); }, options_.metrics);
}

SqliteStore::~SqliteStore() {
  message_writer_->Stop();  // every accepted append is written and answered
  std::scoped_lock lock(writer_mu_, readers_mu_);
  idle_readers_.clear();
  // Fold the WAL back into the main file so a cleanly stopped server leaves one file.
  if (writer_) writer_->Exec("PRAGMA wal_checkpoint(TRUNCATE)");
  writer_.reset();
}

Status SqliteStore::WithWriter(const std::function<Status(Connection&)>& fn) {
  std::lock_guard lock(writer_mu_);
  return fn(*writer_);
}

Status SqliteStore::WithReader(const std::function<Status(Connection&)>& fn) {
  std::unique_ptr<Connection> conn;
  {
    std::lock_guard lock(readers_mu_);
    if (!idle_readers_.empty()) {
      conn = std::move(idle_readers_.back());
      idle_readers_.pop_back();
    }
  }
  if (!conn) {
    auto opened = Connection::Open(options_.dsn, options_.synchronous);
    if (!opened.ok()) return opened.status();
    conn = std::move(opened).value();
  }
  Status s = fn(*conn);
  std::lock_guard lock(readers_mu_);
  idle_readers_.push_back(std::move(conn));
  return s;
}

Status SqliteStore::Ping() {
  return WithReader([](Connection& c) -> Status {
    auto st = c.Prepare("SELECT 1");
    if (!st.ok()) return st.status();
    return (*st)->Step() == SQLITE_ROW ? Status::Ok() : c.Error("ping");
  });
}

// ---------------------------------------------------------------------------------------------
// Users
// ---------------------------------------------------------------------------------------------

Result<User> SqliteStore::CreateUser(const domain::NewUser& nu) {
  auto users = CreateUsers({nu});
  if (!users.ok()) return users.status();
  return std::move(users->front());
}

Result<std::vector<User>> SqliteStore::CreateUsers(const std::vector<domain::NewUser>& batch) {
  std::vector<User> users;
  users.reserve(batch.size());
  Status s = WithWriter([&](Connection& c) -> Status {
    Transaction tx(&c);
    if (Status b = tx.Begin(); !b.ok()) return b;
    auto st = c.Prepare(
        "INSERT INTO users(username, email, password_hash, created_at) VALUES (?, ?, ?, ?)");
    if (!st.ok()) return st.status();
    for (const auto& nu : batch) {
      (*st)->Reset();
      (*st)->Bind(1, nu.username).Bind(2, nu.email).Bind(3, nu.password_hash);
      (*st)->Bind(4, nu.created_at);
      if ((*st)->Step() != SQLITE_DONE) return UserWriteError(c, "insert user");
      User& user = users.emplace_back();
      user.id = c.LastInsertId();
      user.username = nu.username;
      user.email = nu.email;
      user.created_at = nu.created_at;
    }
    return tx.Commit();
  });
  if (!s.ok()) return s;
  return users;
}

Result<std::optional<UserRecord>> SqliteStore::FindUserWhere(
    const std::string& sql, const std::function<void(Statement&)>& bind) {
  std::optional<UserRecord> out;
  Status s = WithReader([&](Connection& c) -> Status {
    auto st = c.Prepare(sql);
    if (!st.ok()) return st.status();
    bind(**st);
    const int rc = (*st)->Step();
    if (rc == SQLITE_ROW) {
      out = ReadUserRecord(**st);
    } else if (rc != SQLITE_DONE) {
      return c.Error("find user");
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::optional<UserRecord>> SqliteStore::FindUserById(int64_t id) {
  return FindUserWhere(std::string("SELECT ") + kUserColumns + " FROM users WHERE id = ?",
                       [&](Statement& st) { st.Bind(1, id); });
}

Result<std::optional<UserRecord>> SqliteStore::FindUserByEmail(std::string_view email) {
  return FindUserWhere(std::string("SELECT ") + kUserColumns + " FROM users WHERE email = ?",
                       [&](Statement& st) { st.Bind(1, email); });
}

Result<std::optional<UserRecord>> SqliteStore::FindUserByUsername(std::string_view username) {
  return FindUserWhere(std::string("SELECT ") + kUserColumns + " FROM users WHERE username = ?",
                       [&](Statement& st) { st.Bind(1, username); });
}

Result<std::vector<User>> SqliteStore::SearchUsersByPrefix(std::string_view prefix, int limit) {
  std::vector<User> users;
  Status s = WithReader([&](Connection& c) -> Status {
    // A range on the NOCASE unique index instead of LIKE: usernames are ASCII below 0x7F, so
    // every name with the prefix sorts between prefix and prefix + "\x7f".
    auto st = c.Prepare(std::string("SELECT ") + kUserColumns +
                        " FROM users WHERE username >= ?1 AND username < ?2 "
                        "AND status <> 'deleted' ORDER BY username LIMIT ?3");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, prefix).Bind(2, std::string(prefix) + "\x7f").Bind(3, int64_t{limit});
    int rc;
    while ((rc = (*st)->Step()) == SQLITE_ROW) users.push_back(ReadUserRecord(**st).user);
    return rc == SQLITE_DONE ? Status::Ok() : c.Error("search users");
  });
  if (!s.ok()) return s;
  return users;
}

Status SqliteStore::UpdateProfile(int64_t id, const domain::ProfileUpdate& update) {
  return WithWriter([&](Connection& c) -> Status {
    // ?2 / ?4 say whether the field is being set, so one cached statement serves every mix.
    auto st = c.Prepare(
        "UPDATE users SET username = CASE WHEN ?2 THEN ?3 ELSE username END, "
        "profile_picture = CASE WHEN ?4 THEN ?5 ELSE profile_picture END WHERE id = ?1");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, id);
    (*st)->Bind(2, int64_t{update.username.has_value()});
    (*st)->Bind(3, update.username);
    (*st)->Bind(4, int64_t{update.profile_picture.has_value()});
    (*st)->Bind(5, update.profile_picture ? *update.profile_picture : std::nullopt);
    if ((*st)->Step() != SQLITE_DONE) return UserWriteError(c, "update profile");
    return c.Changes() == 1 ? Status::Ok() : Status::NotFound(domain::kUserNotFound);
  });
}

Status SqliteStore::ReplacePassword(int64_t id, const std::string& password_hash) {
  return WithWriter([&](Connection& c) -> Status {
    auto st = c.Prepare(
        "UPDATE users SET password_hash = ?2, token_version = token_version + 1, "
        "failed_logins = 0, failed_window_start = 0 WHERE id = ?1");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, id).Bind(2, password_hash);
    if (Status s = c.Run(**st, "replace password"); !s.ok()) return s;
    return c.Changes() == 1 ? Status::Ok() : Status::NotFound(domain::kUserNotFound);
  });
}

Status SqliteStore::SetLastSeen(int64_t id, TimeMs at) {
  return WithWriter([&](Connection& c) -> Status {
    // Never back: two nodes of a cluster may store a user's last closes out of order. A
    // deleted account's connections close after its erasure: it keeps none.
    auto st = c.Prepare(
        "UPDATE users SET last_seen = CASE WHEN status = 'deleted' THEN NULL "
        "ELSE MAX(COALESCE(last_seen, ?2), ?2) END WHERE id = ?1");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, id).Bind(2, at);
    if (Status s = c.Run(**st, "set last seen"); !s.ok()) return s;
    return c.Changes() == 1 ? Status::Ok() : Status::NotFound(domain::kUserNotFound);
  });
}

Result<std::vector<UserRecord>> SqliteStore::ListUsers(std::string_view prefix, int limit,
                                                       int offset) {
  std::vector<UserRecord> users;
  Status s = WithReader([&](Connection& c) -> Status {
    auto st = c.Prepare(std::string("SELECT ") + kUserColumns +
                        " FROM users WHERE ?1 = '' OR (username >= ?1 AND username < ?2) "
                        "ORDER BY id LIMIT ?3 OFFSET ?4");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, prefix).Bind(2, std::string(prefix) + "\x7f");
    (*st)->Bind(3, int64_t{limit}).Bind(4, int64_t{offset});
    int rc;
    while ((rc = (*st)->Step()) == SQLITE_ROW) users.push_back(ReadUserRecord(**st));
    return rc == SQLITE_DONE ? Status::Ok() : c.Error("list users");
  });
  if (!s.ok()) return s;
  return users;
}

Status SqliteStore::SetUserStatus(int64_t id, domain::UserStatus status) {
  if (status == domain::UserStatus::kDeleted) return Status::InvalidRequest("use EraseUser");
  return WithWriter([&](Connection& c) -> Status {
    auto st = c.Prepare(
        "UPDATE users SET status = ?2, token_version = token_version + "
        "CASE WHEN ?2 = 'disabled' THEN 1 ELSE 0 END WHERE id = ?1 AND status <> 'deleted'");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, id).Bind(2, std::string_view(domain::UserStatusName(status)));
    if (Status s = c.Run(**st, "set user status"); !s.ok()) return s;
    if (c.Changes() == 1) return Status::Ok();
    auto exists = c.Prepare("SELECT 1 FROM users WHERE id = ?");
    if (!exists.ok()) return exists.status();
    (*exists)->Bind(1, id);
    const int rc = (*exists)->Step();
    if (rc == SQLITE_ROW) return Status::Conflict(domain::kUserDeleted);
    return rc == SQLITE_DONE ? Status::NotFound(domain::kUserNotFound) : c.Error("find user");
  });
}

Status SqliteStore::EraseUser(int64_t id) {
  return WithWriter([&](Connection& c) -> Status {
    auto st = c.Prepare(
        "UPDATE users SET username = ?2, email = ?2, password_hash = '', profile_picture = NULL, "
        "last_seen = NULL, status = 'deleted', token_version = token_version + 1, "
        "failed_logins = 0, failed_window_start = 0 WHERE id = ?1");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, id).Bind(2, domain::kDeletedUsernamePrefix + std::to_string(id));
    if ((*st)->Step() != SQLITE_DONE) return UserWriteError(c, "erase user");
    return c.Changes() == 1 ? Status::Ok() : Status::NotFound(domain::kUserNotFound);
  });
}

Result<domain::LoginGate> SqliteStore::BeginLoginAttempt(int64_t id, TimeMs now, TimeMs window_ms,
                                                         int32_t max_failures) {
  domain::LoginGate gate;
  Status s = WithWriter([&](Connection& c) -> Status {
    // ?2 now, ?3 window length, ?4 limit. A window is over when start + length <= now.
    auto st = c.Prepare(
        "UPDATE users SET "
        "failed_logins = CASE WHEN failed_window_start + ?3 <= ?2 THEN 1 "
        "ELSE failed_logins + 1 END, "
        "failed_window_start = CASE WHEN failed_window_start + ?3 <= ?2 THEN ?2 "
        "ELSE failed_window_start END "
        "WHERE id = ?1 AND NOT (failed_logins >= ?4 AND failed_window_start + ?3 > ?2) "
        "RETURNING failed_window_start");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, id).Bind(2, now).Bind(3, window_ms).Bind(4, int64_t{max_failures});
    const int rc = (*st)->Step();
    if (rc == SQLITE_ROW) {
      gate.allowed = true;
      gate.window_start = (*st)->Int(0);
      return Status::Ok();
    }
    if (rc != SQLITE_DONE) return c.Error("begin login attempt");
    // Locked (or no such user): report when the window started.
    auto sel = c.Prepare("SELECT failed_window_start FROM users WHERE id = ?");
    if (!sel.ok()) return sel.status();
    (*sel)->Bind(1, id);
    if ((*sel)->Step() == SQLITE_ROW) gate.window_start = (*sel)->Int(0);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return gate;
}

Status SqliteStore::ClearLoginFailures(int64_t id) {
  return WithWriter([&](Connection& c) -> Status {
    auto st = c.Prepare("UPDATE users SET failed_logins = 0, failed_window_start = 0 WHERE id = ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, id);
    return c.Run(**st, "clear login failures");
  });
}

// ---------------------------------------------------------------------------------------------
// Verification codes
// ---------------------------------------------------------------------------------------------

Result<std::optional<PendingCode>> SqliteStore::FindCode(CodePurpose purpose,
                                                         std::string_view email) {
  std::optional<PendingCode> out;
  // Read on the writer: a code is checked right after it was written, and a reader snapshot
  // must not miss the latest attempt count.
  Status s = WithWriter([&](Connection& c) -> Status {
    auto st = c.Prepare(std::string("SELECT ") + kCodeColumns +
                        ", used FROM verification_codes WHERE purpose = ? AND email = ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, std::string_view(PurposeName(purpose))).Bind(2, email);
    const int rc = (*st)->Step();
    if (rc == SQLITE_DONE) return Status::Ok();
    if (rc != SQLITE_ROW) return c.Error("find code");
    out = ReadCode(**st, purpose, email);
    out->used = (*st)->Int(6) != 0;
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Status SqliteStore::PutCode(const PendingCode& code) {
  return WithWriter([&](Connection& c) -> Status {
    auto st = c.Prepare(
        "INSERT OR REPLACE INTO verification_codes(purpose, email, code_hash, sent_at, "
        "expires_at, attempts, used, username, password_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)");
    if (!st.ok()) return st.status();
    (*st)
        ->Bind(1, std::string_view(PurposeName(code.purpose)))
        .Bind(2, code.email)
        .Bind(3, code.code_hash)
        .Bind(4, code.sent_at)
        .Bind(5, code.expires_at)
        .Bind(6, int64_t{code.attempts})
        .Bind(7, int64_t{code.used})
        .Bind(8, code.username)
        .Bind(9, code.password_hash);
    return c.Run(**st, "put code");
  });
}

Status SqliteStore::DeleteCode(CodePurpose purpose, std::string_view email) {
  return WithWriter([&](Connection& c) -> Status {
    auto st = c.Prepare("DELETE FROM verification_codes WHERE purpose = ? AND email = ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, std::string_view(PurposeName(purpose))).Bind(2, email);
    return c.Run(**st, "delete code");
  });
}

Result<std::optional<PendingCode>> SqliteStore::ReserveCodeAttempt(CodePurpose purpose,
                                                                   std::string_view email,
                                                                   int32_t max_attempts) {
  std::optional<PendingCode> out;
  Status s = WithWriter([&](Connection& c) -> Status {
    auto st = c.Prepare(
        "UPDATE verification_codes SET attempts = attempts + 1 "
        "WHERE purpose = ? AND email = ? AND used = 0 AND attempts < ? "
        "RETURNING " +
        std::string(kCodeColumns));
    if (!st.ok()) return st.status();
    (*st)->Bind(1, std::string_view(PurposeName(purpose))).Bind(2, email);
    (*st)->Bind(3, int64_t{max_attempts});
    const int rc = (*st)->Step();
    if (rc == SQLITE_DONE) return Status::Ok();
    if (rc != SQLITE_ROW) return c.Error("reserve code attempt");
    out = ReadCode(**st, purpose, email);
    // Step to the end so the statement completes before the scope resets it.
    return c.Run(**st, "reserve code attempt");
  });
  if (!s.ok()) return s;
  return out;
}

Status SqliteStore::PurgeCodes(TimeMs sent_before) {
  return WithWriter([&](Connection& c) -> Status {
    auto st = c.Prepare("DELETE FROM verification_codes WHERE sent_at < ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, sent_before);
    return c.Run(**st, "purge codes");
  });
}

Result<bool> SqliteStore::ConsumeCode(CodePurpose purpose, std::string_view email, TimeMs sent_at) {
  bool consumed = false;
  Status s = WithWriter([&](Connection& c) -> Status {
    auto st = c.Prepare(
        "UPDATE verification_codes SET used = 1 "
        "WHERE purpose = ? AND email = ? AND sent_at = ? AND used = 0");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, std::string_view(PurposeName(purpose))).Bind(2, email).Bind(3, sent_at);
    if (Status s = c.Run(**st, "consume code"); !s.ok()) return s;
    consumed = c.Changes() == 1;
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return consumed;
}

// ---------------------------------------------------------------------------------------------
// Settings
// ---------------------------------------------------------------------------------------------

Result<std::string> SqliteStore::GetOrCreateSetting(std::string_view key,
                                                    std::string_view value_if_absent) {
  std::string value;
  Status s = WithWriter([&](Connection& c) -> Status {
    auto ins = c.Prepare("INSERT OR IGNORE INTO settings(key, value) VALUES (?, ?)");
    if (!ins.ok()) return ins.status();
    (*ins)->Bind(1, key).Bind(2, value_if_absent);
    if (Status s = c.Run(**ins, "create setting"); !s.ok()) return s;
    auto sel = c.Prepare("SELECT value FROM settings WHERE key = ?");
    if (!sel.ok()) return sel.status();
    (*sel)->Bind(1, key);
    if ((*sel)->Step() != SQLITE_ROW) return c.Error("read setting");
    value = (*sel)->Text(0);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return value;
}

}  // namespace mmchat::store::sqlite
