// The PostgreSQL implementation of the domain's store interfaces, for deployments where
// several server processes share one database (DATABASE_URL).
//
// Reads and single writes borrow a connection from a bounded pool (PgPool); each is one
// statement, or a few pipelined in one round trip. Messages are appended by the shared
// GroupCommitWriter on a connection of its own: each batch is one transaction, two round trips
// of set-based statements, that first takes a cluster-wide advisory lock and then draws the
// batch's ids from a counter row, so batches of every process commit one after another in id
// order (WriteBatch explains why that keeps `id` increasing in commit order). Transactions that
// lock a conversation's row and its participants lock the row first, and the writer updates
// participants in a fixed order, so that they cannot deadlock.
//
// Thread-safe. Accounts live in postgres_store.cc, conversations and messages in
// postgres_conversations.cc.
#pragma once

#include <chrono>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "store/common/store.h"
#include "store/postgres/pg_pool.h"

namespace mmchat::store::postgres {

struct Options {
  std::string url;  // a libpq connection URI
  size_t pool_size = 16;
  // Start-up retries an unreachable database this long before it gives up.
  std::chrono::milliseconds startup_wait{30'000};
  std::chrono::milliseconds connect_timeout{5'000};
  std::chrono::milliseconds query_timeout{30'000};
  // The message writer's and the pool's metrics go here (may be null).
  metrics::Registry* metrics = nullptr;
};

// The advisory lock every process's message writer takes first in each batch transaction
// (a constant no other user of the database takes: "mmch" + "msgs").
inline constexpr int64_t kMessageWriterLock = 7885410475093811571;

// "postgres host:port/dbname" for logs: the URL without its password.
std::string Describe(const std::string& url);

class PostgresStore final : public Store {
 public:
  // Connects (waiting up to startup_wait for a database that is not up yet) and applies
  // pending migrations. The Status message is one line naming the problem: unreachable,
  // authentication failed, database missing, or schema newer than this binary.
  static Result<std::unique_ptr<PostgresStore>> Open(const Options& options);
  ~PostgresStore() override;

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
  Result<std::vector<domain::Message>> MessagesAfter(int64_t after, int limit) override;
  void ChangeMessage(domain::MessageChange change,
                     std::function<void(Result<domain::StoredChange>)> done) override;
  Result<std::vector<domain::Message>> ChangesAfter(int64_t after, int limit) override;
  Result<int64_t> LastMessageId() override;
  Result<std::vector<domain::Message>> SearchMessages(const domain::SearchQuery& query) override;
  Result<std::optional<domain::ReadMark>> MoveReadMarker(int64_t conversation_id, int64_t user_id,
                                                         int64_t message_id, TimeMs now) override;
  Status SaveDelivered(const std::vector<domain::Watermark>& marks) override;

  GroupCommitWriter& writer() override { return *message_writer_; }

  // UploadStore
  Status CreateUpload(const domain::Upload& upload) override;
  Status PutUploadChunk(const std::string& id, int64_t index, std::string_view bytes) override;
  Status CompleteUpload(const std::string& id, int64_t size) override;
  Result<int64_t> PendingUploadBytes(int64_t uploader) override;
  Status RemoveUpload(const std::string& id) override;
  Result<std::optional<domain::Upload>> FindUpload(const std::string& id) override;
  Result<std::optional<std::string>> GetUploadChunk(const std::string& id, int64_t index) override;
  Result<int> SweepUploads(TimeMs orphaned_before, int limit) override;

 private:
  explicit PostgresStore(const Options& options);
  // ListMessages, or ListMessagesFor when there is a `reader`.
  Result<std::vector<domain::Message>> Page(std::optional<int64_t> reader, int64_t conversation_id,
                                            std::optional<int64_t> before,
                                            std::optional<int64_t> after, int limit);

  // Runs `fn` on a pooled connection.
  Status WithConnection(const std::function<Status(PgConnection&)>& fn);
  // Runs `fn` in a read-write transaction on a pooled connection; rolled back on failure.
  Status InTransaction(const std::function<Status(PgConnection&)>& fn);
  // One statement on a pooled connection.
  Result<PgResult> Query(std::string_view sql, const Params& params = {},
                         Planning planning = Planning::kPrepared,
                         ResultFormat format = ResultFormat::kText);
  Result<std::optional<domain::UserRecord>> FindUserWhere(std::string_view sql,
                                                          const Params& params);
  Result<std::vector<domain::Message>> Messages(std::string_view sql, const Params& params,
                                                Planning planning = Planning::kPrepared);

  // A batch checked and numbered, not yet written.
  struct Batch {
    std::vector<Written> results;  // one per write, in order
    // The changed messages as they stand after the batch, by id.
    std::map<int64_t, domain::Message> changed;
    int64_t last_id = 0;  // the id counter after the batch
  };
  // The message writer's side: one batch in one transaction (GroupCommitWriter's CommitBatch).
  GroupCommitWriter::Committed CommitBatch(const std::vector<Write>& batch);
  // First round trip: BEGIN, the locks, the checks; decides each write's outcome and each new
  // message's seq and id, each change's change_id. A failure leaves nothing committed.
  Result<Batch> WriteBatch(PgConnection& c, const std::vector<Write>& batch);
  // Second round trip: the new messages, counters and read markers, then COMMIT.
  static std::vector<Statement> CommitStatements(const Batch& batch);

  PgPool pool_;
  std::unique_ptr<PgConnection> writer_conn_;  // used by the writer thread only
  // Started last, stopped first.
  std::unique_ptr<GroupCommitWriter> message_writer_;
};

}  // namespace mmchat::store::postgres
