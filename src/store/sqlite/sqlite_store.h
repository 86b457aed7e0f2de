// The SQLite implementation of the domain's store interfaces.
//
// One writer connection, guarded by a mutex, takes every write; reads use a pool of reader
// connections so that, with WAL, they never wait behind the writer. Messages are appended by
// one writer thread that commits everything queued meanwhile in one transaction (group
// commit). Thread-safe. Accounts live in sqlite_store.cc, conversations and messages in
// sqlite_conversations.cc.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <deque>
#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "domain/conversation_store.h"
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
                          public domain::StoreHealth,
                          public domain::ConversationStore {
 public:
  // Opens the database and applies pending migrations.
  static Result<std::unique_ptr<SqliteStore>> Open(const Options& options);
  ~SqliteStore() override;

  // UserStore
  Result<domain::User> CreateUser(const domain::NewUser& user) override;
  Result<std::vector<domain::User>> CreateUsers(const std::vector<domain::NewUser>& users) override;
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
  Status SetLastSeen(int64_t id, TimeMs at) override;

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

  // ConversationStore
  Result<std::pair<int64_t, bool>> GetOrCreatePrivate(int64_t a, int64_t b, TimeMs now) override;
  Result<int64_t> CreateGroup(const std::string& name, int64_t creator,
                              const std::vector<int64_t>& members, TimeMs now) override;
  Result<std::optional<domain::Conversation>> GetConversation(int64_t id) override;
  Result<std::vector<int64_t>> ListConversationIds(int64_t user_id) override;
  Result<std::vector<std::pair<int64_t, int64_t>>> ListMemberships() override;
  Result<std::optional<domain::Message>> LastMessage(int64_t conversation_id) override;
  Result<int64_t> CountUnread(int64_t conversation_id, int64_t user_id, int64_t after_id) override;
  Status Rename(int64_t conversation_id, const std::string& name, TimeMs now) override;
  Status AddParticipant(int64_t conversation_id, int64_t user_id, domain::Role role,
                        TimeMs now) override;
  Status SetRole(int64_t conversation_id, int64_t user_id, domain::Role role, TimeMs now) override;
  Status RemoveParticipant(int64_t conversation_id, int64_t user_id, TimeMs now) override;
  void AppendMessage(domain::NewMessage message,
                     std::function<void(Result<domain::AppendResult>)> done) override;
  Result<std::optional<domain::Message>> GetMessage(int64_t id) override;
  Result<std::vector<domain::Message>> ListMessages(int64_t conversation_id,
                                                    std::optional<int64_t> before,
                                                    std::optional<int64_t> after,
                                                    int limit) override;
  Result<std::vector<domain::Message>> MessagesSince(int64_t user_id, int64_t since,
                                                     int limit) override;
  Result<domain::ReadMark> MoveReadMarker(int64_t conversation_id, int64_t user_id,
                                          int64_t message_id, TimeMs now) override;
  Status SaveDelivered(const std::vector<domain::Watermark>& marks) override;

  // The largest number of appends committed in one transaction.
  static constexpr size_t kMaxBatch = 512;
  // Appends waiting for the writer to take them, and transactions of appends committed so far
  // (for tests of the group commit).
  size_t QueuedAppends();
  // Waits until every accepted append has been answered (a graceful stop waits for this before
  // it closes the connections that would carry the answers); false after `timeout`.
  bool WaitForAppends(std::chrono::milliseconds timeout);
  uint64_t CommittedBatches() const { return committed_batches_; }

 private:
  struct PendingAppend {
    domain::NewMessage message;
    std::function<void(Result<domain::AppendResult>)> done;
  };

  // A committed (or failed) batch waiting for its callers to be answered.
  struct Answered {
    std::vector<PendingAppend> batch;
    std::vector<Result<domain::AppendResult>> results;
  };

  // The message writer thread: takes whatever is queued (up to kMaxBatch), commits it in one
  // transaction, and hands the batch to the answer thread.
  void WriterLoop();
  // The answer thread: runs the callers' callbacks (acks, event fan-out), batch after batch in
  // commit order, while the writer already commits the next batch.
  void AnswerLoop();
  // One append inside the batch transaction, in its own savepoint so that a failure leaves
  // no trace (no seq gap).
  Result<domain::AppendResult> AppendOne(Connection& c, const domain::NewMessage& m);
  // Runs `fn` in a write transaction (BEGIN IMMEDIATE ... COMMIT).
  Status InTransaction(const std::function<Status(Connection&)>& fn);
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

  std::mutex queue_mu_;
  std::condition_variable queue_cv_;
  std::deque<PendingAppend> queue_;  // guarded by queue_mu_
  bool stopping_ = false;            // guarded by queue_mu_

  // At most this many batches wait for the answer thread; then the writer waits too, so
  // that a fan-out slower than the commits slows the commits instead of piling up.
  static constexpr size_t kMaxWaitingAnswers = 4;
  std::mutex answers_mu_;
  std::condition_variable answers_cv_;       // an answer is waiting, or the writer is done
  std::condition_variable answers_room_cv_;  // the answer thread took one
  std::deque<Answered> answers_;             // guarded by answers_mu_
  std::atomic<uint64_t> committed_batches_{0};
  std::mutex pending_mu_;
  std::condition_variable answered_cv_;
  size_t pending_appends_ = 0;  // guarded by pending_mu_; accepted and not yet answered
  bool writer_done_ = false;    // guarded by answers_mu_; nothing more will be answered

  // Started last, joined first: the writer, then the answer thread after it.
  std::thread writer_thread_;
  std::thread answer_thread_;
};

}  // namespace mmchat::store::sqlite
