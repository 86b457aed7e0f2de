// PostgresStore: conversations, participants, messages (with the group-commit writer's
// batches) and receipt watermarks.
#include <spdlog/spdlog.h>

#include <algorithm>
#include <map>
#include <string>
#include <unordered_map>
#include <utility>

#include "store/common/rows.h"
#include "store/postgres/postgres_store.h"

namespace mmchat::store::postgres {
namespace {

using domain::AppendOutcome;
using domain::Conversation;
using domain::MembershipOutcome;
using domain::Message;
using domain::ReaderState;
using domain::Role;
using domain::StoredAppend;

// Taken first by every transaction that changes a conversation's participants: the message
// writer locks the conversation row before participant rows, so everyone does.
constexpr const char* kLockConversation =
    "SELECT 1 FROM conversations WHERE id = $1 FOR NO KEY UPDATE";
constexpr const char* kTouch =
    "UPDATE conversations SET last_activity = GREATEST(last_activity, $2) WHERE id = $1";
constexpr const char* kTouchMembers =
    "UPDATE conversations SET last_activity = GREATEST(last_activity, $2), "
    "members_version = members_version + 1 WHERE id = $1";

// Marks a change of the conversation; `members` when it changed who takes part.
Status Touch(PgConnection& c, int64_t conversation_id, TimeMs now, bool members = false) {
  auto r = c.Query(members ? kTouchMembers : kTouch, Params().Add(conversation_id).Add(now));
  return r.ok() ? Status::Ok() : r.status();
}

// Locks the conversation's row; false when there is none.
Result<bool> LockConversation(PgConnection& c, int64_t conversation_id) {
  auto r = c.Query(kLockConversation, Params().Add(conversation_id));
  if (!r.ok()) return r.status();
  return r->rows() == 1;
}

// One cluster-wide lock for the message writers of every process sharing the database, held
// from the start of a batch transaction to its end.
const std::string kWriterLock =
    "SELECT pg_advisory_xact_lock(" + std::to_string(kMessageWriterLock) + ")";

// A batch's first round trip. The conversation rows of the batch are locked first, in id
// order (membership changes lock the same row first, so none can commit between the checks
// below and the commit); their seq counters come with them, and a conversation that does
// not come back does not exist.
// The conversations of the changed messages ($2) are locked too: their members cannot change
// between the actor's check and the commit.
constexpr const char* kLockConversations =
    "SELECT id, last_seq, members_version, type FROM conversations "
    "WHERE id = ANY($1::bigint[]) "
    "OR id IN (SELECT conversation_id FROM messages WHERE id = ANY($2::bigint[])) "
    "ORDER BY id "
    "FOR NO KEY UPDATE";
// Then, after the cluster-wide lock, per append in order: is the sender a participant, is
// reply_to a message of the conversation, and the sender's earlier message with this
// client_id, if any. (LATERAL with LIMIT keeps each a probe of an index, whatever the
// statistics of a young table suggest: a hash of the whole table is what they did.)
constexpr const char* kCheckAppends = R"sql(
SELECT p.ok IS NOT NULL, r.ok IS NOT NULL,
       o.id, o.conversation_id, o.seq, o.sender_id, o.content, o.client_id, o.created_at,
       o.reply_to, o.edited_at, o.deleted_at, o.change_id, o.reactions, o.attachments
  FROM unnest($1::bigint[], $2::bigint[], $3::text[], $4::bigint[])
       WITH ORDINALITY AS t(conversation_id, sender_id, client_id, reply_to, n)
  LEFT JOIN LATERAL (SELECT true AS ok FROM participants
                      WHERE conversation_id = t.conversation_id AND user_id = t.sender_id
                      LIMIT 1) p ON true
  LEFT JOIN LATERAL (SELECT true AS ok FROM messages
                      WHERE id = t.reply_to AND conversation_id = t.conversation_id) r ON true
  LEFT JOIN LATERAL (SELECT * FROM messages
                      WHERE sender_id = t.sender_id AND client_id = t.client_id LIMIT 1) o ON true
 ORDER BY t.n
)sql";
// Per change in order (only in a batch with changes): the message as committed, and the
// actor's role in its conversation (NULL: not a participant).
constexpr const char* kCheckChanges = R"sql(
SELECT p.role, m.id, m.conversation_id, m.seq, m.sender_id, m.content, m.client_id,
       m.created_at, m.reply_to, m.edited_at, m.deleted_at, m.change_id, m.reactions,
       m.attachments
  FROM unnest($1::bigint[], $2::bigint[]) WITH ORDINALITY AS t(message_id, actor, n)
  LEFT JOIN messages m ON m.id = t.message_id
  LEFT JOIN participants p ON p.conversation_id = m.conversation_id AND p.user_id = t.actor
 ORDER BY t.n
)sql";
constexpr const char* kLastId = "SELECT last_id FROM id_counters WHERE name = 'messages'";
// The uploads the batch's appends name (only in a batch with attachments), locked: the sweep
// cannot remove one between this check and the commit.
constexpr const char* kLockUploads = R"sql(
SELECT id, uploader, message_id IS NULL, filename, content_type, size, created_at FROM uploads
 WHERE id = ANY($1::text[]) AND complete AND NOT removed
 ORDER BY id FOR UPDATE
)sql";

// The second round trip: every new message in one statement, the counters, and the senders'
// read markers (their rows locked in (conversation, user) order first, as SaveDelivered
// does, so that the two cannot deadlock).
constexpr const char* kInsertMessages = R"sql(
INSERT INTO messages(id, conversation_id, seq, sender_id, content, client_id, created_at,
                     reply_to, attachments, change_id)
SELECT *, id FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[], $5::text[],
                         $6::text[], $7::bigint[], $8::bigint[], $9::text[]) AS t(id)
)sql";
// The uploads the new messages carry.
constexpr const char* kAttachUploads = R"sql(
UPDATE uploads u SET message_id = v.message_id
  FROM unnest($1::text[], $2::bigint[]) AS v(id, message_id)
 WHERE u.id = v.id
)sql";
// The uploads of deleted messages can no longer be downloaded; the sweep removes their bytes.
constexpr const char* kRemoveAttachments =
    "UPDATE uploads SET removed = true WHERE message_id = ANY($1::bigint[])";
// The changed messages as they stand after the batch.
constexpr const char* kUpdateMessages = R"sql(
UPDATE messages m SET content = v.content, edited_at = v.edited_at, deleted_at = v.deleted_at,
       reactions = v.reactions, change_id = v.change_id, attachments = v.attachments
  FROM unnest($1::bigint[], $2::text[], $3::bigint[], $4::bigint[], $5::text[], $6::bigint[],
              $7::text[])
       AS v(id, content, edited_at, deleted_at, reactions, change_id, attachments)
 WHERE m.id = v.id
)sql";
constexpr const char* kAdvanceConversations = R"sql(
UPDATE conversations c SET last_seq = v.last_seq,
       last_activity = GREATEST(c.last_activity, v.activity)
  FROM unnest($1::bigint[], $2::bigint[], $3::bigint[]) AS v(id, last_seq, activity)
 WHERE c.id = v.id
)sql";
constexpr const char* kAdvanceLastId =
    "UPDATE id_counters SET last_id = $1 WHERE name = 'messages'";
constexpr const char* kLockSenders = R"sql(
SELECT 1 FROM participants
 WHERE (conversation_id, user_id) IN (SELECT * FROM unnest($1::bigint[], $2::bigint[]))
 ORDER BY conversation_id, user_id FOR NO KEY UPDATE
)sql";
constexpr const char* kMoveSendersMarkers = R"sql(
UPDATE participants p SET read_marker = v.mark, read_at = v.at
  FROM unnest($1::bigint[], $2::bigint[], $3::bigint[], $4::bigint[]) AS v(c, u, mark, at)
 WHERE p.conversation_id = v.c AND p.user_id = v.u AND p.read_marker < v.mark
)sql";

constexpr const char* kMoveReadMarker =
    "UPDATE participants SET read_marker = $3, read_at = $4 "
    "WHERE conversation_id = $1 AND user_id = $2 AND read_marker < $3";

}  // namespace

// ---------------------------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------------------------

Result<std::pair<int64_t, bool>> PostgresStore::GetOrCreatePrivate(int64_t a, int64_t b,
                                                                   TimeMs now) {
  const std::string key = std::to_string(std::min(a, b)) + ":" + std::to_string(std::max(a, b));
  std::pair<int64_t, bool> out{0, false};
  Status s = InTransaction([&](PgConnection& c) -> Status {
    // pair_key is unique: of racing creators (in any process) one inserts, the others wait
    // for its commit and then find its row.
    auto ins = c.Query(
        "INSERT INTO conversations(type, name, created_by, created_at, last_activity, pair_key) "
        "VALUES ('private', NULL, $1, $2, $2, $3) ON CONFLICT (pair_key) DO NOTHING RETURNING id",
        Params().Add(a).Add(now).Add(key));
    if (!ins.ok()) return ins.status();
    if (ins->rows() == 0) {
      auto found = c.Query("SELECT id FROM conversations WHERE pair_key = $1", Params().Add(key));
      if (!found.ok()) return found.status();
      if (found->rows() != 1) return Status::Unavailable("database error");
      out = {found->Int(0, 0), false};
      return Status::Ok();
    }
    out = {ins->Int(0, 0), true};
    auto parts = c.Query(
        "INSERT INTO participants(conversation_id, user_id, role, joined_at) "
        "VALUES ($1::bigint, $2::bigint, 'member', $4::bigint), ($1, $3::bigint, 'member', $4)",
        Params().Add(out.first).Add(a).Add(b).Add(now));
    return parts.ok() ? Status::Ok() : parts.status();
  });
  if (!s.ok()) return s;
  return out;
}

Result<domain::CreatedGroup> PostgresStore::CreateGroup(const std::string& name, int64_t creator,
                                                        const std::vector<int64_t>& members,
                                                        TimeMs now) {
  domain::CreatedGroup out;
  Status s = InTransaction([&](PgConnection& c) -> Status {
    auto missing = c.Query(
        "SELECT m FROM unnest($1::bigint[]) WITH ORDINALITY AS t(m, n) "
        "WHERE NOT EXISTS (SELECT 1 FROM users WHERE id = t.m AND status <> 'deleted') "
        "ORDER BY n LIMIT 1",
        Params().AddArray(members));
    if (!missing.ok()) return missing.status();
    if (missing->rows() == 1) {
      out = {MembershipOutcome::kNoSuchUser, 0, missing->Int(0, 0)};
      return Status::Ok();
    }
    auto ins = c.Query(
        "INSERT INTO conversations(type, name, created_by, created_at, last_activity) "
        "VALUES ('group', $1, $2, $3, $3) RETURNING id",
        Params().Add(name).Add(creator).Add(now));
    if (!ins.ok()) return ins.status();
    out.id = ins->Int(0, 0);
    std::vector<int64_t> everyone{creator};
    everyone.insert(everyone.end(), members.begin(), members.end());
    auto parts = c.Query(
        "INSERT INTO participants(conversation_id, user_id, role, joined_at) "
        "SELECT $1::bigint, u, CASE WHEN u = $2::bigint THEN 'admin' ELSE 'member' END, "
        "$3::bigint "
        "FROM unnest($4::bigint[]) AS u",
        Params().Add(out.id).Add(creator).Add(now).AddArray(everyone));
    return parts.ok() ? Status::Ok() : parts.status();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::optional<Conversation>> PostgresStore::GetConversation(int64_t id) {
  // One statement, so one snapshot: the row with its participants joined in.
  auto r = Query(std::string("SELECT ") + kConversationColumns + ", " + kParticipantColumns +
                     " FROM conversations c LEFT JOIN participants p ON p.conversation_id = c.id "
                     "LEFT JOIN users u ON u.id = p.user_id WHERE c.id = $1",
                 Params().Add(id));
  if (!r.ok()) return r.status();
  if (r->rows() == 0) return std::optional<Conversation>();
  Conversation conv = ReadConversation(PgRow{*r, 0});
  for (int i = 0; i < r->rows(); ++i) {
    if (!r->IsNull(i, kConversationColumnCount)) {
      conv.participants.push_back(ReadParticipant(PgRow{*r, i}, kConversationColumnCount));
    }
  }
  SortParticipants(conv.participants);
  return std::optional<Conversation>(std::move(conv));
}

Result<std::vector<ReaderState>> PostgresStore::ListReaderStates(int64_t user_id) {
  // The unread count reads the messages index from the marker on.
  auto r = Query(
      "SELECT me.conversation_id, me.read_marker, (SELECT count(*) FROM messages u "
      "WHERE u.conversation_id = me.conversation_id AND u.id > me.read_marker "
      "AND u.sender_id <> me.user_id AND u.deleted_at IS NULL) "
      "FROM participants me WHERE me.user_id = $1",
      Params().Add(user_id));
  if (!r.ok()) return r.status();
  std::vector<ReaderState> out;
  out.reserve(static_cast<size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) out.push_back({r->Int(i, 0), r->Int(i, 1), r->Int(i, 2)});
  return out;
}

Result<std::vector<Conversation>> PostgresStore::GetConversations(const std::vector<int64_t>& ids) {
  std::vector<Conversation> out;
  if (ids.empty()) return out;
  Status s = WithConnection([&](PgConnection& c) -> Status {
    // Two queries on one snapshot, in one round trip.
    auto r = c.Pipeline({
        {"BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY", {}},
        // 1. The conversations with their last message (seq = last_seq).
        {std::string("SELECT ") + kConversationColumns + ", " + kJoinedMessageColumns +
             " FROM conversations c "
             "LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq "
             "WHERE c.id = ANY($1::bigint[])",
         Params().AddArray(ids)},
        // 2. Their participants, all at once.
        {std::string("SELECT p.conversation_id, ") + kParticipantColumns +
             " FROM participants p JOIN users u ON u.id = p.user_id "
             "WHERE p.conversation_id = ANY($1::bigint[])",
         Params().AddArray(ids)},
        {"COMMIT", {}},
    });
    if (!r.ok()) {
      if (!c.broken() && c.InTransaction()) c.Exec("ROLLBACK");
      return r.status();
    }
    const PgResult& convs = (*r)[1];
    const PgResult& parts = (*r)[2];
    std::unordered_map<int64_t, size_t> index;
    for (int i = 0; i < convs.rows(); ++i) {
      Conversation conv = ReadConversation(PgRow{convs, i});
      if (!convs.IsNull(i, kConversationColumnCount)) {
        conv.last_message = ReadMessage(PgRow{convs, i}, kConversationColumnCount);
      }
      index[conv.id] = out.size();
      out.push_back(std::move(conv));
    }
    for (int i = 0; i < parts.rows(); ++i) {
      auto it = index.find(parts.Int(i, 0));
      if (it != index.end())
        out[it->second].participants.push_back(ReadParticipant(PgRow{parts, i}, 1));
    }
    for (auto& conv : out) SortParticipants(conv.participants);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<domain::Membership>> PostgresStore::ListMemberships() {
  auto r = Query(kListMemberships);
  if (!r.ok()) return r.status();
  std::vector<domain::Membership> out;
  out.reserve(static_cast<size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) out.push_back(ReadMembership(PgRow{*r, i}));
  return out;
}

Result<std::optional<Message>> PostgresStore::LastMessage(int64_t conversation_id) {
  auto r = ListMessages(conversation_id, std::nullopt, std::nullopt, 1);
  if (!r.ok()) return r.status();
  if (r->empty()) return std::optional<Message>();
  return std::optional<Message>(std::move(r->back()));
}

Result<int64_t> PostgresStore::CountUnread(int64_t conversation_id, int64_t user_id,
                                           int64_t after_id) {
  auto r = Query(
      "SELECT count(*) FROM messages WHERE conversation_id = $1 AND id > $2 AND sender_id <> $3 "
      "AND deleted_at IS NULL",
      Params().Add(conversation_id).Add(after_id).Add(user_id));
  if (!r.ok()) return r.status();
  return r->Int(0, 0);
}

Status PostgresStore::Rename(int64_t conversation_id, const std::string& name, TimeMs now) {
  auto r = Query(
      "UPDATE conversations SET name = $2, last_activity = GREATEST(last_activity, $3) "
      "WHERE id = $1",
      Params().Add(conversation_id).Add(name).Add(now));
  return r.ok() ? Status::Ok() : r.status();
}

Result<MembershipOutcome> PostgresStore::AddParticipant(int64_t conversation_id, int64_t user_id,
                                                        Role role, TimeMs now) {
  auto out = MembershipOutcome::kDone;
  Status s = InTransaction([&](PgConnection& c) -> Status {
    auto locked = LockConversation(c, conversation_id);
    if (!locked.ok()) return locked.status();
    // A deleted account (UserStore::EraseUser) joins no conversation.
    auto user =
        c.Query("SELECT 1 FROM users WHERE id = $1 AND status <> 'deleted'", Params().Add(user_id));
    if (!user.ok()) return user.status();
    if (user->rows() == 0) {
      out = MembershipOutcome::kNoSuchUser;
      return Status::Ok();
    }
    auto ins = c.Query(
        "INSERT INTO participants(conversation_id, user_id, role, joined_at) "
        "VALUES ($1, $2, $3, $4) ON CONFLICT DO NOTHING",
        Params().Add(conversation_id).Add(user_id).Add(RoleName(role)).Add(now));
    if (!ins.ok()) return ins.status();
    if (ins->Affected() == 0) {
      out = MembershipOutcome::kAlreadyParticipant;
      return Status::Ok();
    }
    return Touch(c, conversation_id, now, /*members=*/true);
  });
  if (!s.ok()) return s;
  return out;
}

Result<MembershipOutcome> PostgresStore::SetRole(int64_t conversation_id, int64_t user_id,
                                                 Role role, TimeMs now) {
  auto out = MembershipOutcome::kDone;
  Status s = InTransaction([&](PgConnection& c) -> Status {
    // With the row locked, concurrent role changes of this conversation run one at a time:
    // two demotions cannot both see the other admin.
    auto locked = LockConversation(c, conversation_id);
    if (!locked.ok()) return locked.status();
    auto member = c.Query("SELECT 1 FROM participants WHERE conversation_id = $1 AND user_id = $2",
                          Params().Add(conversation_id).Add(user_id));
    if (!member.ok()) return member.status();
    if (member->rows() == 0) {
      out = MembershipOutcome::kNotParticipant;
      return Status::Ok();
    }
    // A demotion needs another admin.
    auto up = c.Query(
        "UPDATE participants SET role = $3 WHERE conversation_id = $1 AND user_id = $2 "
        "AND ($3 = 'admin' OR EXISTS (SELECT 1 FROM participants WHERE conversation_id = $1 "
        "AND role = 'admin' AND user_id <> $2))",
        Params().Add(conversation_id).Add(user_id).Add(RoleName(role)));
    if (!up.ok()) return up.status();
    if (up->Affected() == 0) {
      out = MembershipOutcome::kWouldLeaveNoAdmin;
      return Status::Ok();
    }
    return Touch(c, conversation_id, now);
  });
  if (!s.ok()) return s;
  return out;
}

Result<MembershipOutcome> PostgresStore::RemoveParticipant(int64_t conversation_id, int64_t user_id,
                                                           TimeMs now) {
  auto out = MembershipOutcome::kDone;
  Status s = InTransaction([&](PgConnection& c) -> Status {
    auto locked = LockConversation(c, conversation_id);
    if (!locked.ok()) return locked.status();
    // The removal and the promotion touch two participant rows: lock them all in user order
    // first, the order SaveDelivered takes them in, so that the two cannot deadlock.
    auto rows =
        c.Query("SELECT 1 FROM participants WHERE conversation_id = $1 ORDER BY user_id FOR UPDATE",
                Params().Add(conversation_id));
    if (!rows.ok()) return rows.status();
    auto del = c.Query("DELETE FROM participants WHERE conversation_id = $1 AND user_id = $2",
                       Params().Add(conversation_id).Add(user_id));
    if (!del.ok()) return del.status();
    if (del->Affected() == 0) {
      out = MembershipOutcome::kNotParticipant;
      return Status::Ok();
    }
    // A group without an admin promotes its longest-standing member.
    auto promote = c.Query(
        "UPDATE participants SET role = 'admin' WHERE conversation_id = $1 "
        "AND NOT EXISTS (SELECT 1 FROM participants WHERE conversation_id = $1 AND role = 'admin') "
        "AND user_id = (SELECT user_id FROM participants WHERE conversation_id = $1 "
        "ORDER BY joined_at, user_id LIMIT 1)",
        Params().Add(conversation_id));
    if (!promote.ok()) return promote.status();
    return Touch(c, conversation_id, now, /*members=*/true);
  });
  if (!s.ok()) return s;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Messages: the group-commit writer's batches
// ---------------------------------------------------------------------------------------------

void PostgresStore::AppendMessage(domain::NewMessage message,
                                  std::function<void(Result<StoredAppend>)> done) {
  message_writer_->Append(std::move(message), std::move(done));
}

void PostgresStore::ChangeMessage(domain::MessageChange change,
                                  std::function<void(Result<domain::StoredChange>)> done) {
  message_writer_->Change(std::move(change), std::move(done));
}

// Why ids increase in commit order across processes: every batch transaction of every process
// takes the same advisory lock before it reads the id counter, and holds it until it ends. A
// transaction-level lock is released only after the commit is visible, so the next holder
// reads a counter that covers every id already committed and gives out ids above them: a
// reader that sees an id sees every lower one that will ever commit. The lock is taken once
// per batch, not per message. Changes take their change_id from the same counter, so the
// same holds for change_ids.
Result<PostgresStore::Batch> PostgresStore::WriteBatch(PgConnection& c,
                                                       const std::vector<Write>& batch) {
  std::vector<int64_t> conversation_ids, senders, changed_ids, actors;
  std::vector<std::string> upload_ids;
  std::vector<std::optional<std::string>> client_ids;
  std::vector<std::optional<int64_t>> reply_tos;
  for (const Write& w : batch) {
    if (const auto* m = std::get_if<domain::NewMessage>(&w)) {
      conversation_ids.push_back(m->conversation_id);
      senders.push_back(m->sender_id);
      client_ids.push_back(m->client_id);
      reply_tos.push_back(m->reply_to);
      upload_ids.insert(upload_ids.end(), m->attachment_ids.begin(), m->attachment_ids.end());
    } else {
      const auto& change = std::get<domain::MessageChange>(w);
      changed_ids.push_back(change.message_id);
      actors.push_back(change.actor);
    }
  }
  std::vector<int64_t> distinct = conversation_ids;
  std::sort(distinct.begin(), distinct.end());
  distinct.erase(std::unique(distinct.begin(), distinct.end()), distinct.end());

  // The conversation rows before the cluster-wide lock: a writer waiting for a row (held by a
  // membership change) does not hold up the writers of other conversations meanwhile. Every
  // writer takes both kinds of locks in one order, so writers cannot deadlock.
  std::vector<Statement> first = {
      {"BEGIN", {}},
      {kLockConversations, Params().AddArray(distinct).AddArray(changed_ids)},
      {kWriterLock, {}},
      {kCheckAppends, Params()
                          .AddArray(conversation_ids)
                          .AddArray(senders)
                          .AddTextArray(client_ids)
                          .AddArray(reply_tos)},
      {kLastId, {}}};
  const size_t changes_at = first.size();
  if (!changed_ids.empty())
    first.push_back({kCheckChanges, Params().AddArray(changed_ids).AddArray(actors)});
  const size_t uploads_at = first.size();
  if (!upload_ids.empty()) first.push_back({kLockUploads, Params().AddTextArray(upload_ids)});
  auto checked = c.Pipeline(first);
  if (!checked.ok()) return checked.status();
  const PgResult& seqs = (*checked)[1];
  const PgResult& checks = (*checked)[3];
  if (checks.rows() != static_cast<int>(conversation_ids.size()) || (*checked)[4].rows() != 1 ||
      (!changed_ids.empty() &&
       (*checked)[changes_at].rows() != static_cast<int>(changed_ids.size()))) {
    return Status::Unavailable("database error");
  }
  Batch out;
  out.last_id = (*checked)[4].Int(0, 0);
  std::map<int64_t, int64_t> last_seq;         // of the conversations that exist
  std::map<int64_t, int64_t> members_version;  // locked: no membership change meanwhile
  std::map<int64_t, bool> group;
  // The free uploads named, and whose they are; each leaves the map once attached.
  struct FreeUpload {
    int64_t uploader = 0;
    domain::Attachment file;
  };
  std::map<std::string, FreeUpload> free_uploads;
  if (!upload_ids.empty()) {
    const PgResult& uploads = (*checked)[uploads_at];
    for (int i = 0; i < uploads.rows(); ++i) {
      if (!uploads.Bool(i, 2)) continue;  // attached to a message already
      FreeUpload u;
      u.uploader = uploads.Int(i, 1);
      u.file.id = uploads.Text(i, 0);
      u.file.filename = uploads.OptText(i, 3);
      u.file.content_type = uploads.Text(i, 4);
      u.file.size = uploads.Int(i, 5);
      u.file.created_at = uploads.Int(i, 6);
      free_uploads.emplace(u.file.id, std::move(u));
    }
  }
  for (int i = 0; i < seqs.rows(); ++i) {
    last_seq[seqs.Int(i, 0)] = seqs.Int(i, 1);
    members_version[seqs.Int(i, 0)] = seqs.Int(i, 2);
    group[seqs.Int(i, 0)] = seqs.Text(i, 3) == "group";
  }

  // The rules, in batch order. An append (the same as SqliteStore::AppendOne's, in SQL there):
  // the conversation, then membership, then a repeated client_id (an earlier message, or an
  // earlier append of this batch), then reply_to, and only then a new message with the next
  // seq and id. A change: ApplyChange on the message as the batch left it so far.
  std::map<std::pair<int64_t, std::string>, size_t> first_with_client_id;
  std::map<int64_t, Message> seen;  // the changed messages as the batch left them so far
  int append_row = 0, change_row = 0;
  for (const Write& w : batch) {
    if (const auto* change = std::get_if<domain::MessageChange>(&w)) {
      const PgResult& rows = (*checked)[changes_at];
      const int row = change_row++;
      if (rows.IsNull(row, 1)) {
        out.results.push_back(domain::StoredChange{domain::ChangeOutcome::kNoMessage, {}});
        continue;
      }
      const int64_t id = rows.Int(row, 1);
      auto [it, fresh] = seen.try_emplace(id);
      if (fresh) it->second = ReadMessage(PgRow{rows, row}, 1);
      Message m = it->second;  // applied to a copy: a refused change leaves no trace
      m.members_version = members_version[m.conversation_id];
      domain::ChangeActor actor;
      actor.participant = !rows.IsNull(row, 0);
      actor.group_admin =
          actor.participant && rows.Text(row, 0) == "admin" && group[m.conversation_id];
      const auto outcome = domain::ApplyChange(*change, actor, m);
      if (outcome == domain::ChangeOutcome::kChanged) {
        m.change_id = ++out.last_id;
        it->second = m;
        out.changed[id] = m;
      }
      if (outcome == domain::ChangeOutcome::kChanged ||
          outcome == domain::ChangeOutcome::kUnchanged) {
        out.results.push_back(domain::StoredChange{outcome, std::move(m)});
      } else {
        out.results.push_back(domain::StoredChange{outcome, {}});
      }
      continue;
    }
    const auto& m = std::get<domain::NewMessage>(w);
    const int row = append_row++;
    if (!last_seq.contains(m.conversation_id)) {
      out.results.push_back(StoredAppend{AppendOutcome::kNoConversation, {}});
      continue;
    }
    if (!checks.Bool(row, 0)) {
      out.results.push_back(StoredAppend{AppendOutcome::kNotParticipant, {}});
      continue;
    }
    if (!checks.IsNull(row, 2)) {
      out.results.push_back(
          StoredAppend{AppendOutcome::kRepeated, ReadMessage(PgRow{checks, row}, 2)});
      continue;
    }
    if (m.client_id) {
      auto [it, fresh] = first_with_client_id.emplace(std::make_pair(m.sender_id, *m.client_id),
                                                      out.results.size());
      if (!fresh) {
        const Message original = std::get<StoredAppend>(out.results[it->second]).message;
        out.results.push_back(StoredAppend{AppendOutcome::kRepeated, original});
        continue;
      }
    }
    if (m.reply_to && !checks.Bool(row, 1)) {
      if (m.client_id) first_with_client_id.erase({m.sender_id, *m.client_id});
      out.results.push_back(StoredAppend{AppendOutcome::kBadReplyTo, {}});
      continue;
    }
    std::vector<domain::Attachment> attachments;
    for (const std::string& id : m.attachment_ids) {
      auto it = free_uploads.find(id);
      if (it == free_uploads.end() || it->second.uploader != m.sender_id) break;
      attachments.push_back(it->second.file);
    }
    if (attachments.size() != m.attachment_ids.size()) {
      if (m.client_id) first_with_client_id.erase({m.sender_id, *m.client_id});
      out.results.push_back(StoredAppend{AppendOutcome::kBadAttachment, {}});
      continue;
    }
    for (const std::string& id : m.attachment_ids) free_uploads.erase(id);
    Message stored;
    stored.id = ++out.last_id;
    stored.change_id = stored.id;
    stored.conversation_id = m.conversation_id;
    stored.seq = ++last_seq[m.conversation_id];
    stored.sender_id = m.sender_id;
    stored.content = m.content;
    stored.client_id = m.client_id;
    stored.reply_to = m.reply_to;
    stored.attachments = std::move(attachments);
    stored.created_at = m.created_at;
    stored.members_version = members_version[m.conversation_id];
    out.results.push_back(StoredAppend{AppendOutcome::kCreated, std::move(stored)});
  }
  return out;
}

std::vector<Statement> PostgresStore::CommitStatements(const Batch& batch) {
  std::vector<int64_t> ids, conversations, seqs, senders, times;
  std::vector<std::optional<std::string>> contents, client_ids, attachments;
  std::vector<std::optional<int64_t>> reply_tos;
  std::vector<std::string> attached_uploads;
  std::vector<int64_t> attached_to;
  std::map<int64_t, std::pair<int64_t, TimeMs>> counters;  // conversation -> last seq, activity
  std::map<std::pair<int64_t, int64_t>, std::pair<int64_t, TimeMs>> markers;  // -> id, at
  for (const Written& w : batch.results) {
    const auto* a = std::get_if<StoredAppend>(&w);
    if (a == nullptr || a->outcome != AppendOutcome::kCreated) continue;
    const Message& m = a->message;
    ids.push_back(m.id);
    conversations.push_back(m.conversation_id);
    seqs.push_back(m.seq);
    senders.push_back(m.sender_id);
    contents.push_back(m.content);
    client_ids.push_back(m.client_id);
    times.push_back(m.created_at);
    reply_tos.push_back(m.reply_to);
    attachments.push_back(EncodeAttachments(m.attachments));
    for (const auto& a : m.attachments) {
      attached_uploads.push_back(a.id);
      attached_to.push_back(m.id);
    }
    auto& counter = counters[m.conversation_id];
    counter = {m.seq, std::max(counter.second, m.created_at)};
    markers[{m.conversation_id, m.sender_id}] = {m.id, m.created_at};  // ids ascend
  }
  std::vector<Statement> round;
  if (!ids.empty()) {
    round.push_back({kInsertMessages, Params()
                                          .AddArray(ids)
                                          .AddArray(conversations)
                                          .AddArray(seqs)
                                          .AddArray(senders)
                                          .AddTextArray(contents)
                                          .AddTextArray(client_ids)
                                          .AddArray(times)
                                          .AddArray(reply_tos)
                                          .AddTextArray(attachments)});
    if (!attached_uploads.empty()) {
      round.push_back(
          {kAttachUploads, Params().AddTextArray(attached_uploads).AddArray(attached_to)});
    }
    std::vector<int64_t> counter_ids, last_seqs, activities;
    for (const auto& [id, counter] : counters) {
      counter_ids.push_back(id);
      last_seqs.push_back(counter.first);
      activities.push_back(counter.second);
    }
    round.push_back({kAdvanceConversations,
                     Params().AddArray(counter_ids).AddArray(last_seqs).AddArray(activities)});
    std::vector<int64_t> mark_conversations, mark_users, mark_ids, mark_times;
    for (const auto& [key, mark] : markers) {  // in (conversation, user) order
      mark_conversations.push_back(key.first);
      mark_users.push_back(key.second);
      mark_ids.push_back(mark.first);
      mark_times.push_back(mark.second);
    }
    round.push_back({kLockSenders, Params().AddArray(mark_conversations).AddArray(mark_users)});
    round.push_back({kMoveSendersMarkers, Params()
                                              .AddArray(mark_conversations)
                                              .AddArray(mark_users)
                                              .AddArray(mark_ids)
                                              .AddArray(mark_times)});
  }
  std::vector<int64_t> changed_ids, change_ids, newly_deleted;
  std::vector<std::optional<int64_t>> edited, deleted;
  std::vector<std::optional<std::string>> changed_contents, reactions, changed_attachments;
  for (const auto& [id, m] : batch.changed) {
    changed_ids.push_back(id);
    changed_contents.push_back(m.content);
    edited.push_back(m.edited_at);
    deleted.push_back(m.deleted_at);
    reactions.push_back(EncodeReactions(m.reactions));
    changed_attachments.push_back(EncodeAttachments(m.attachments));
    change_ids.push_back(m.change_id);
    // A deletion's change is its last: nothing changes a deleted message.
    if (m.deleted_at) newly_deleted.push_back(id);
  }
  if (!changed_ids.empty()) {
    round.push_back({kUpdateMessages, Params()
                                          .AddArray(changed_ids)
                                          .AddTextArray(changed_contents)
                                          .AddArray(edited)
                                          .AddArray(deleted)
                                          .AddTextArray(reactions)
                                          .AddArray(change_ids)
                                          .AddTextArray(changed_attachments)});
    if (!newly_deleted.empty()) {
      round.push_back({kRemoveAttachments, Params().AddArray(newly_deleted)});
    }
  }
  if (!ids.empty() || !changed_ids.empty()) {
    round.push_back({kAdvanceLastId, Params().Add(batch.last_id)});
  }
  round.push_back({"COMMIT", {}});
  return round;
}

GroupCommitWriter::Committed PostgresStore::CommitBatch(const std::vector<Write>& batch) {
  GroupCommitWriter::Committed out;
  Status failed = Status::Unavailable("database error");
  // A batch that failed before COMMIT left nothing behind: it is tried once more on a fresh
  // connection when the old one was lost (a database restart) or lost a deadlock.
  for (int attempt = 0; attempt < 2; ++attempt) {
    if (!writer_conn_ || !writer_conn_->StillUp()) {
      auto conn = pool_.Open();
      if (!conn.ok()) {
        failed = conn.status();
        break;
      }
      writer_conn_ = std::move(conn).value();
      // Every statement of the writer finds rows by key. A young table's statistics can make a
      // hash of the whole table look cheaper (seen with messages: the plan stuck while the
      // table grew); on this connection, only index probes.
      if (Status s = writer_conn_->Exec(
              "SET enable_seqscan = off; SET enable_hashjoin = off; SET enable_mergejoin = off");
          !s.ok()) {
        failed = s;
        break;
      }
    }
    PgConnection& c = *writer_conn_;
    auto written = WriteBatch(c, batch);
    if (written.ok()) {
      auto committed = c.Pipeline(CommitStatements(*written));
      if (committed.ok()) {
        out.committed = true;
        out.results.assign(written->results.begin(), written->results.end());
        return out;
      }
      // Lost during COMMIT: the outcome is unknown, so it is not tried again; the senders
      // hear an error, and a retry with their client_id finds what did commit.
      if (!c.broken()) c.Exec("ROLLBACK");
      failed = committed.status();
      break;
    }
    failed = written.status();
    const bool retry =
        c.broken() || c.sqlstate() == kDeadlockDetected || c.sqlstate() == kSerializationFailure;
    if (!c.broken()) c.Exec("ROLLBACK");
    if (!retry) break;
  }
  out.results.assign(batch.size(), failed);
  return out;
}

// ---------------------------------------------------------------------------------------------
// Messages: reading
// ---------------------------------------------------------------------------------------------

Result<std::vector<Message>> PostgresStore::Messages(std::string_view sql, const Params& params,
                                                     Planning planning) {
  auto r = Query(sql, params, planning);
  if (!r.ok()) return r.status();
  std::vector<Message> out;
  out.reserve(static_cast<size_t>(r->rows()));
  for (int i = 0; i < r->rows(); ++i) out.push_back(ReadMessage(PgRow{*r, i}));
  return out;
}

Result<std::optional<Message>> PostgresStore::GetMessage(int64_t id) {
  auto rows = Messages(std::string("SELECT ") + kMessageColumns + " FROM messages WHERE id = $1",
                       Params().Add(id));
  if (!rows.ok()) return rows.status();
  if (rows->empty()) return std::optional<Message>();
  return std::optional<Message>(std::move(rows->front()));
}

Result<std::vector<Message>> PostgresStore::ListMessages(int64_t conversation_id,
                                                         std::optional<int64_t> before,
                                                         std::optional<int64_t> after, int limit) {
  return Page(std::nullopt, conversation_id, before, after, limit);
}

Result<std::vector<Message>> PostgresStore::ListMessagesFor(int64_t reader, int64_t conversation_id,
                                                            std::optional<int64_t> before,
                                                            std::optional<int64_t> after,
                                                            int limit) {
  return Page(reader, conversation_id, before, after, limit);
}

Result<std::vector<Message>> PostgresStore::Page(std::optional<int64_t> reader,
                                                 int64_t conversation_id,
                                                 std::optional<int64_t> before,
                                                 std::optional<int64_t> after, int limit) {
  // Every variant walks the (conversation_id, id) index from the cursor. The reader's check
  // does not depend on the row, so PostgreSQL runs it once (an InitPlan on the key).
  std::string sql = std::string("SELECT ") + kMessageColumns + " FROM messages " +
                    (after ? "WHERE conversation_id = $1 AND id > $2 "
                           : "WHERE conversation_id = $1 AND id < $2 ");
  if (reader) {
    sql += "AND EXISTS (SELECT 1 FROM participants WHERE conversation_id = $1 AND user_id = $4) ";
  }
  sql += after ? "ORDER BY id LIMIT $3" : "ORDER BY id DESC LIMIT $3";
  const int64_t cursor = after ? *after : before.value_or(INT64_MAX);
  Params params;
  params.Add(conversation_id).Add(cursor).Add(int64_t{limit});
  if (reader) params.Add(*reader);
  auto rows = Messages(sql, params);
  if (!rows.ok()) return rows.status();
  if (!after) std::reverse(rows->begin(), rows->end());  // always ascending
  return rows;
}

Result<std::vector<Message>> PostgresStore::MessagesSince(int64_t user_id, int64_t since,
                                                          int limit) {
  // At most `limit` from each of the user's conversations, each read from its index, then
  // the first `limit` of those: bounded, however old `since` and however big the table.
  return Messages("SELECT m.* FROM participants p CROSS JOIN LATERAL (" +
                      SinceQuery("conversation_id = p.conversation_id", "$2", "$3") +
                      ") m WHERE p.user_id = $1 ORDER BY m.change_id LIMIT $3",
                  Params().Add(user_id).Add(since).Add(int64_t{limit}));
}

Result<std::vector<Message>> PostgresStore::MessagesAfter(int64_t after, int limit) {
  return Messages(std::string("SELECT ") + kMessageColumns +
                      " FROM messages WHERE id > $1 ORDER BY id LIMIT $2",
                  Params().Add(after).Add(int64_t{limit}));
}

Result<std::vector<Message>> PostgresStore::ChangesAfter(int64_t after, int limit) {
  return Messages(std::string("SELECT ") + kMessageColumns +
                      " FROM messages WHERE change_id > $1 AND change_id > id "
                      "ORDER BY change_id LIMIT $2",
                  Params().Add(after).Add(int64_t{limit}));
}

Result<std::vector<Message>> PostgresStore::SearchMessages(const domain::SearchQuery& query) {
  // A tsquery: each word quoted, all of them required, the last a prefix.
  std::string words;
  for (const std::string& w : query.words) {
    if (!words.empty()) words += " & ";
    words += '\'';
    for (char ch : w) {
      if (ch == '\'' || ch == '\\') words += ch;  // doubled inside a quoted lexeme
      words += ch;
    }
    words += '\'';
  }
  if (words.empty()) return std::vector<Message>{};
  words += ":*";
  // The index finds the matches; they are sorted newest first and kept when they lie in one
  // of the user's conversations (and the asked one).
  std::string sql = std::string("SELECT ") + kMessageColumns +
                    " FROM messages WHERE search @@ "
                    "to_tsquery('simple'::regconfig, mmchat_unaccent($1)) AND id < $2 "
                    "AND conversation_id IN "
                    "(SELECT conversation_id FROM participants WHERE user_id = $3) ";
  Params params;
  params.Add(words).Add(query.before.value_or(INT64_MAX)).Add(query.user);
  params.Add(int64_t{query.limit});
  if (query.conversation_id) {
    sql += "AND conversation_id = $5 ";
    params.Add(*query.conversation_id);
  }
  // Planned for its words each time: a cached generic plan cannot tell a common word (walk
  // the newest messages) from a rare one (take the index's few matches).
  return Messages(sql + "ORDER BY id DESC LIMIT $4", params, Planning::kEachRun);
}

Result<int64_t> PostgresStore::LastMessageId() {
  auto r = Query(kLastId);
  if (!r.ok()) return r.status();
  return r->rows() == 1 ? r->Int(0, 0) : 0;
}

// ---------------------------------------------------------------------------------------------
// Receipts
// ---------------------------------------------------------------------------------------------

Result<std::optional<domain::ReadMark>> PostgresStore::MoveReadMarker(int64_t conversation_id,
                                                                      int64_t user_id,
                                                                      int64_t message_id,
                                                                      TimeMs now) {
  std::optional<domain::ReadMark> out;
  Status s = WithConnection([&](PgConnection& c) -> Status {
    // One implicit transaction, one round trip: move, then read what is there now.
    auto r = c.Pipeline(
        {{kMoveReadMarker, Params().Add(conversation_id).Add(user_id).Add(message_id).Add(now)},
         {"SELECT read_marker, read_at FROM participants WHERE conversation_id = $1 "
          "AND user_id = $2",
          Params().Add(conversation_id).Add(user_id)}});
    if (!r.ok()) return r.status();
    const PgResult& mark = (*r)[1];
    if (mark.rows() == 0) return Status::Ok();  // not a participant
    out = domain::ReadMark{conversation_id, mark.Int(0, 0), mark.OptInt(0, 1).value_or(now),
                           (*r)[0].Affected() == 1};
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Status PostgresStore::SaveDelivered(const std::vector<domain::Watermark>& marks) {
  if (marks.empty()) return Status::Ok();
  // In (conversation, user) order, like the message writer's read markers: two transactions
  // that update the same rows take their locks in the same order and cannot deadlock.
  std::vector<domain::Watermark> sorted = marks;
  std::sort(sorted.begin(), sorted.end(), [](const auto& x, const auto& y) {
    return std::tie(x.conversation_id, x.user_id) < std::tie(y.conversation_id, y.user_id);
  });
  std::vector<Statement> round;
  round.reserve(sorted.size() + 2);
  round.push_back({"BEGIN", {}});
  for (const auto& m : sorted) {
    round.push_back(
        {"UPDATE participants SET delivered_marker = GREATEST(delivered_marker, $3) "
         "WHERE conversation_id = $1 AND user_id = $2",
         Params().Add(m.conversation_id).Add(m.user_id).Add(m.message_id)});
  }
  round.push_back({"COMMIT", {}});
  return WithConnection([&](PgConnection& c) -> Status {
    auto r = c.Pipeline(round);
    if (!r.ok() && !c.broken() && c.InTransaction()) c.Exec("ROLLBACK");
    return r.ok() ? Status::Ok() : r.status();
  });
}

}  // namespace mmchat::store::postgres
