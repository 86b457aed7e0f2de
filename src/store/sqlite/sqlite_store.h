// The SQLite implementation of the domain's store interfaces.
//
// One writer connection, guarded by a mutex, takes every write; reads use a pool of reader
// connections so that, with WAL, they never wait behind the writer. Messages are appended by
// the shared GroupCommitWriter (store/common), whose batches commit here in one transaction
// each. Thread-safe. Accounts live in sqlite_store.cc, conversations and messages in
// sqlite_conversations.cc.
#pragma once

#include <functional>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "store/common/store.h"
#include "store/sqlite/connection.h"

namespace mmchat::store::sqlite {

struct Options {
  std::string dsn = "file:chat.db";
  std::string synchronous = "NORMAL";    // NORMAL or FULL
  metrics::Registry* metrics = nullptr;  // the message writer's metrics go here (may be null)
};

class SqliteStore final : public Store {
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
  Result<std::vector<domain::UserRecord>> ListUsers(std::string_view prefix, int limit,
                                                    int offset) override;
  Status SetUserStatus(int64_t id, domain::UserStatus status) override;
  Status EraseUser(int64_t id) override;

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
  Result<domain::CreatedGroup> CreateGroup(const std::string& name, int64_t creator,
                                           const std::vector<int64_t>& members,
                                           TimeMs now) override;
  Result<std::optional<domain::Conversation>> GetConversation(int64_t id) override;
  Result<std::vector<domain::Conversation>> GetConversations(
      const std::vector<int64_t>& ids) override;
  Result<std::vector<domain::ReaderState>> ListReaderStates(int64_t user_id) override;
  Result<std::vector<domain::Membership>> ListMemberships() override;
  Result<std::optional<domain::Message>> LastMessage(int64_t conversation_id) override;
  Result<int64_t> CountUnread(int64_t conversation_id, int64_t user_id, int64_t after_id) override;
  Status Rename(int64_t conversation_id, const std::string& name, TimeMs now) override;
  Result<domain::MembershipOutcome> AddParticipant(int64_t conversation_id, int64_t user_id,
                                                   domain::Role role, TimeMs now) override;
  Result<domain::MembershipOutcome> SetRole(int64_t conversation_id, int64_t user_id,
                                            domain::Role role, TimeMs now) override;
  Result<domain::MembershipOutcome> RemoveParticipant(int64_t conversation_id, int64_t user_id,
                                                      TimeMs now) override;
  void AppendMessage(domain::NewMessage message,
                     std::function<void(Result<domain::StoredAppend>)> done) override;
  Result<std::optional<domain::Message>> GetMessage(int64_t id) override;
  Result<std::vector<domain::Message>> ListMessages(int64_t conversation_id,
                                                    std::optional<int64_t> before,
                                                    std::optional<int64_t> after,
                                                    int limit) override;
  Result<std::vector<domain::Message>> ListMessagesFor(int64_t reader, int64_t conversation_id,
                                                       std::optional<int64_t> before,
                                                       std::optional<int64_t> after,
                                                       int limit) override;
  Result<std::vector<domain::Message>> MessagesSince(int64_t user_id, int64_t since,
                                                     int limit) override;
  void ChangeMessage(domain::MessageChange change,
                     std::function<void(Result<domain::StoredChange>)> done) override;
  Result<std::vector<domain::Message>> MessagesAfter(int64_t after, int limit) override;
  Result<std::vector<domain::Message>> ChangesAfter(int64_t after, int limit) override;
  Result<int64_t> LastMessageId() override;
  Result<std::vector<domain::Message>> SearchMessages(const domain::SearchQuery& query) override;
  Result<std::optional<domain::ReadMark>> MoveReadMarker(int64_t conversation_id, int64_t user_id,
                                                         int64_t message_id, TimeMs now) override;
  Status SaveDelivered(const std::vector<domain::Watermark>& marks) override;

  // UploadStore
  Status CreateUpload(const domain::Upload& upload) override;
  Status PutUploadChunk(const std::string& id, int64_t index, std::string_view bytes) override;
  Status CompleteUpload(const std::string& id, int64_t size) override;
  Result<int64_t> PendingUploadBytes(int64_t uploader) override;
  Status RemoveUpload(const std::string& id) override;
  Result<std::optional<domain::Upload>> FindUpload(const std::string& id) override;
  Result<std::optional<std::string>> GetUploadChunk(const std::string& id, int64_t index) override;
  Result<int> SweepUploads(TimeMs orphaned_before, int limit) override;

  // The message writer, for a graceful stop (WaitForAppends) and tests of the group commit.
  GroupCommitWriter& writer() override { return *message_writer_; }

 private:
  // Commits one batch of appends and changes in one transaction (the GroupCommitWriter's
  // CommitBatch).
  GroupCommitWriter::Committed CommitBatch(const std::vector<Write>& batch);
  // One append inside the batch transaction, in its own savepoint so that a failure leaves
  // no trace (no seq gap); `last_id` is the id counter, moved when a message is created.
  Result<domain::StoredAppend> AppendOne(Connection& c, const domain::NewMessage& m,
                                         int64_t& last_id);
  // One edit, deletion or reaction inside the batch transaction; takes the next position of
  // `last_id` when it changes the message.
  Result<domain::StoredChange> ChangeOne(Connection& c, const domain::MessageChange& change,
                                         int64_t& last_id);
  // Puts the message's new content in the search index in place of the old one.
  Status Reindex(Connection& c, int64_t id, const std::string& old_content,
                 const std::string& new_content);
  // The message writer's upkeep (GroupCommitWriter's Tidy): FTS5 removes a word from the
  // index only by merging the segments that hold it, so after an edit or deletion the
  // segments are merged, a few pages per step, until one is left and the old words are gone.
  bool TidySearchIndex();
  // Deletes an upload and its chunks, in the caller's transaction.
  Status DeleteUpload(Connection& c, const std::string& id);
  // Attaches the sender's uploads to the new message `message_id` (in AppendOne's
  // savepoint); false when one is not a free, complete upload of the sender's.
  Result<bool> AttachUploads(Connection& c, const domain::NewMessage& m, int64_t message_id,
                             std::vector<domain::Attachment>* out);
  // Runs `fn` in a write transaction (BEGIN IMMEDIATE ... COMMIT).
  Status InTransaction(const std::function<Status(Connection&)>& fn);
  // Runs `fn` on a reader in one read transaction: every query sees one snapshot.
  Status InSnapshot(const std::function<Status(Connection&)>& fn);
  explicit SqliteStore(Options options, std::unique_ptr<Connection> writer);
  // ListMessages, or ListMessagesFor when there is a `reader`.
  Result<std::vector<domain::Message>> Page(std::optional<int64_t> reader, int64_t conversation_id,
                                            std::optional<int64_t> before,
                                            std::optional<int64_t> after, int limit);

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

  // An edit or deletion left old words in the search index's segments (writer thread only).
  bool search_unmerged_ = false;

  // Started last, stopped first (it writes through writer_).
  std::unique_ptr<GroupCommitWriter> message_writer_;
};

}  // namespace mmchat::store::sqlite
