// The SQLite implementation of the domain's store interfaces.
//
// One writer connection, guarded by a mutex, takes every write; reads use a pool of reader
// connections so that, with WAL, they never wait behind the writer. Thread-safe.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "domain/store.h"
#include "store/sqlite/connection.h"

namespace mmchat::store::sqlite {

struct Options {
  std::string dsn = "file:chat.db";
  std::string synchronous = "NORMAL";  // NORMAL or FULL
};

class SqliteStore final : public domain::UserStore,
                          public domain::CodeStore,
                          public domain::SettingsStore,
                          public domain::StoreHealth {
 public:
  // Opens the database and applies pending migrations.
  static Result<std::unique_ptr<SqliteStore>> Open(const Options& options);
  ~SqliteStore() override;

  // UserStore
  Result<domain::User> CreateUser(const domain::NewUser& user) override;
  Result<std::optional<domain::UserRecord>> FindUserById(int64_t id) override;
  Result<std::optional<domain::UserRecord>> FindUserByEmail(std::string_view email) override;
  Result<std::optional<domain::UserRecord>> FindUserByUsername(std::string_view username) override;
  Result<std::vector<domain::User>> SearchUsersByPrefix(std::string_view prefix,
                                                        int limit) override;
  Status UpdateProfile(int64_t id, const domain::ProfileUpdate& update) override;
  Status ReplacePassword(int64_t id, const std::string& password_hash) override;
  Result<domain::LoginGate> BeginLoginAttempt(int64_t id, TimeMs now, TimeMs window_ms,
                                              int32_t max_failures) override;
  Status ClearLoginFailures(int64_t id) override;

  // CodeStore
  Result<std::optional<domain::PendingCode>> FindCode(domain::CodePurpose purpose,
                                                      std::string_view email) override;
  Status PutCode(const domain::PendingCode& code) override;
  Status DeleteCode(domain::CodePurpose purpose, std::string_view email) override;
  Result<std::optional<domain::PendingCode>> ReserveCodeAttempt(domain::CodePurpose purpose,
                                                                std::string_view email,
                                                                int32_t max_attempts) override;
  Status PurgeCodes(TimeMs sent_before) override;
  Result<bool> ConsumeCode(domain::CodePurpose purpose, std::string_view email,
                           TimeMs sent_at) override;

  // SettingsStore
  Result<std::string> GetOrCreateSetting(std::string_view key,
                                         std::string_view value_if_absent) override;

  // StoreHealth
  Status Ping() override;

 private:
  explicit SqliteStore(Options options, std::unique_ptr<Connection> writer);

  // Runs `fn` on the writer connection, holding the writer lock.
  Status WithWriter(const std::function<Status(Connection&)>& fn);
  // Runs `fn` on a pooled reader connection.
  Status WithReader(const std::function<Status(Connection&)>& fn);
  Result<std::optional<domain::UserRecord>> FindUserWhere(
      const std::string& sql, const std::function<void(Statement&)>& bind);

  const Options options_;

  std::mutex writer_mu_;
  std::unique_ptr<Connection> writer_;  // guarded by writer_mu_

  std::mutex readers_mu_;
  std::vector<std::unique_ptr<Connection>> idle_readers_;  // guarded by readers_mu_
};

}  // namespace mmchat::store::sqlite
