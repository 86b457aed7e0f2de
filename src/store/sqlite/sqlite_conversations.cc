// SqliteStore: conversations, participants, messages (with the group-commit writer) and
// receipt watermarks.
#include <spdlog/spdlog.h>

#include <string>
#include <unordered_map>
#include <utility>

#include "common/utf8.h"
#include "store/common/rows.h"
#include "store/sqlite/sqlite_store.h"

namespace mmchat::store::sqlite {
namespace {

using domain::Conversation;
using domain::Message;
using domain::ReaderState;
using domain::Role;
using domain::StoredAppend;

// Runs a prepared SELECT of messages and collects every row.
Status CollectMessages(Connection& c, Statement& st, std::vector<Message>* out) {
  int rc;
  while ((rc = st.Step()) == SQLITE_ROW) out->push_back(ReadMessage(st));
  return rc == SQLITE_DONE ? Status::Ok() : c.Error("list messages");
}

// A deleted account (UserStore::EraseUser) joins no conversation.
Result<bool> UserExists(Connection& c, int64_t id) {
  auto st = c.Prepare("SELECT 1 FROM users WHERE id = ? AND status <> 'deleted'");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, id);
  const int rc = (*st)->Step();
  if (rc != SQLITE_ROW && rc != SQLITE_DONE) return c.Error("find user");
  return rc == SQLITE_ROW;
}

Status InsertParticipant(Connection& c, int64_t conversation_id, int64_t user_id, Role role,
                         TimeMs now) {
  auto st = c.Prepare(
      "INSERT INTO participants(conversation_id, user_id, role, joined_at) VALUES (?, ?, ?, ?)");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, conversation_id).Bind(2, user_id).Bind(3, std::string_view(RoleName(role)));
  (*st)->Bind(4, now);
  return c.Run(**st, "add participant");
}

// Marks a change of the conversation; `members` when it changed who takes part.
Status Touch(Connection& c, int64_t conversation_id, TimeMs now, bool members = false) {
  auto st = c.Prepare(members ? "UPDATE conversations SET last_activity = MAX(last_activity, ?), "
                                "members_version = members_version + 1 WHERE id = ?"
                              : "UPDATE conversations SET last_activity = MAX(last_activity, ?) "
                                "WHERE id = ?");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, now).Bind(2, conversation_id);
  return c.Run(**st, "touch conversation");
}

}  // namespace

Status SqliteStore::InTransaction(const std::function<Status(Connection&)>& fn) {
  return WithWriter([&](Connection& c) -> Status {
    Transaction tx(&c);
    if (Status s = tx.Begin(); !s.ok()) return s;
    if (Status s = fn(c); !s.ok()) return s;  // rolled back by ~Transaction
    return tx.Commit();
  });
}

Status SqliteStore::InSnapshot(const std::function<Status(Connection&)>& fn) {
  return WithReader([&](Connection& c) -> Status {
    if (Status st = c.Exec("BEGIN"); !st.ok()) return st;
    Status s = fn(c);
    if (Status end = c.Exec("COMMIT"); s.ok() && !end.ok()) return end;
    return s;
  });
}

// ---------------------------------------------------------------------------------------------
// Conversations
// ---------------------------------------------------------------------------------------------

Result<std::pair<int64_t, bool>> SqliteStore::GetOrCreatePrivate(int64_t a, int64_t b, TimeMs now) {
  const std::string key = std::to_string(std::min(a, b)) + ":" + std::to_string(std::max(a, b));
  std::pair<int64_t, bool> out{0, false};
  Status s = InTransaction([&](Connection& c) -> Status {
    // Under the writer lock, so "look, then create" cannot race with itself.
    auto find = c.Prepare("SELECT id FROM conversations WHERE pair_key = ?");
    if (!find.ok()) return find.status();
    (*find)->Bind(1, key);
    if ((*find)->Step() == SQLITE_ROW) {
      out = {(*find)->Int(0), false};
      return Status::Ok();
    }
    auto ins = c.Prepare(
        "INSERT INTO conversations(type, name, created_by, created_at, last_activity, pair_key) "
        "VALUES ('private', NULL, ?, ?, ?, ?)");
    if (!ins.ok()) return ins.status();
    (*ins)->Bind(1, a).Bind(2, now).Bind(3, now).Bind(4, key);
    if (Status st = c.Run(**ins, "create private conversation"); !st.ok()) return st;
    out = {c.LastInsertId(), true};
    for (int64_t user : {a, b}) {
      if (Status st = InsertParticipant(c, out.first, user, Role::kMember, now); !st.ok()) {
        return st;
      }
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<domain::CreatedGroup> SqliteStore::CreateGroup(const std::string& name, int64_t creator,
                                                      const std::vector<int64_t>& members,
                                                      TimeMs now) {
  domain::CreatedGroup out;
  Status s = InTransaction([&](Connection& c) -> Status {
    for (int64_t m : members) {
      auto exists = UserExists(c, m);
      if (!exists.ok()) return exists.status();
      if (!*exists) {
        out = {domain::MembershipOutcome::kNoSuchUser, 0, m};
        return Status::Ok();  // nothing written yet: the commit is empty
      }
    }
    auto ins = c.Prepare(
        "INSERT INTO conversations(type, name, created_by, created_at, last_activity) "
        "VALUES ('group', ?, ?, ?, ?)");
    if (!ins.ok()) return ins.status();
    (*ins)->Bind(1, name).Bind(2, creator).Bind(3, now).Bind(4, now);
    if (Status st = c.Run(**ins, "create group"); !st.ok()) return st;
    out.id = c.LastInsertId();
    if (Status st = InsertParticipant(c, out.id, creator, Role::kAdmin, now); !st.ok()) return st;
    for (int64_t m : members) {
      if (Status st = InsertParticipant(c, out.id, m, Role::kMember, now); !st.ok()) return st;
    }
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::optional<Conversation>> SqliteStore::GetConversation(int64_t id) {
  std::optional<Conversation> out;
  Status s = InSnapshot([&](Connection& c) -> Status {
    auto st = c.Prepare(std::string("SELECT ") + kConversationColumns +
                        " FROM conversations c WHERE c.id = ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, id);
    const int rc = (*st)->Step();
    if (rc == SQLITE_DONE) return Status::Ok();
    if (rc != SQLITE_ROW) return c.Error("get conversation");
    Conversation conv = ReadConversation(**st);
    auto ps = c.Prepare(std::string("SELECT ") + kParticipantColumns +
                        " FROM participants p JOIN users u ON u.id = p.user_id "
                        "WHERE p.conversation_id = ?");
    if (!ps.ok()) return ps.status();
    (*ps)->Bind(1, id);
    int prc;
    while ((prc = (*ps)->Step()) == SQLITE_ROW) conv.participants.push_back(ReadParticipant(**ps));
    if (prc != SQLITE_DONE) return c.Error("list participants");
    SortParticipants(conv.participants);
    out = std::move(conv);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<Conversation>> SqliteStore::GetConversations(const std::vector<int64_t>& ids) {
  std::vector<Conversation> out;
  if (ids.empty()) return out;
  // The ids as one JSON array, so that any number of them is one statement (json_each).
  std::string array = "[";
  for (int64_t id : ids) array += std::to_string(id) + ",";
  array.back() = ']';
  Status s = InSnapshot([&](Connection& c) -> Status {
    // 1. The conversations with their last message (seq = last_seq).
    auto st =
        c.Prepare(std::string("SELECT ") + kConversationColumns + ", " + kJoinedMessageColumns +
                  " FROM conversations c "
                  "LEFT JOIN messages m ON m.conversation_id = c.id AND m.seq = c.last_seq "
                  "WHERE c.id IN (SELECT value FROM json_each(?))");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, array);
    std::unordered_map<int64_t, size_t> index;
    int rc;
    while ((rc = (*st)->Step()) == SQLITE_ROW) {
      Conversation conv = ReadConversation(**st);
      if ((*st)->OptInt(kConversationColumnCount)) {
        conv.last_message = ReadMessage(**st, kConversationColumnCount);
      }
      index[conv.id] = out.size();
      out.push_back(std::move(conv));
    }
    if (rc != SQLITE_DONE) return c.Error("get conversations");
    // 2. Their participants, all at once.
    auto ps = c.Prepare(std::string("SELECT p.conversation_id, ") + kParticipantColumns +
                        " FROM participants p JOIN users u ON u.id = p.user_id "
                        "WHERE p.conversation_id IN (SELECT value FROM json_each(?))");
    if (!ps.ok()) return ps.status();
    (*ps)->Bind(1, array);
    while ((rc = (*ps)->Step()) == SQLITE_ROW) {
      auto it = index.find((*ps)->Int(0));
      if (it != index.end()) out[it->second].participants.push_back(ReadParticipant(**ps, 1));
    }
    if (rc != SQLITE_DONE) return c.Error("list participants");
    for (auto& conv : out) SortParticipants(conv.participants);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<ReaderState>> SqliteStore::ListReaderStates(int64_t user_id) {
  std::vector<ReaderState> out;
  Status s = WithReader([&](Connection& c) -> Status {
    // The unread count reads the messages index from the marker on.
    auto st = c.Prepare(
        "SELECT me.conversation_id, me.read_marker, (SELECT COUNT(*) FROM messages u "
        "WHERE u.conversation_id = me.conversation_id AND u.id > me.read_marker "
        "AND u.sender_id != me.user_id AND u.deleted_at IS NULL) "
        "FROM participants me WHERE me.user_id = ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, user_id);
    int rc;
    while ((rc = (*st)->Step()) == SQLITE_ROW) {
      out.push_back({(*st)->Int(0), (*st)->Int(1), (*st)->Int(2)});
    }
    return rc == SQLITE_DONE ? Status::Ok() : c.Error("list reader states");
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::vector<domain::Membership>> SqliteStore::ListMemberships() {
  std::vector<domain::Membership> out;
  Status s = WithReader([&](Connection& c) -> Status {
    auto st = c.Prepare(kListMemberships);
    if (!st.ok()) return st.status();
    int rc;
    while ((rc = (*st)->Step()) == SQLITE_ROW) out.push_back(ReadMembership(**st));
    return rc == SQLITE_DONE ? Status::Ok() : c.Error("list memberships");
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::optional<Message>> SqliteStore::LastMessage(int64_t conversation_id) {
  auto r = ListMessages(conversation_id, std::nullopt, std::nullopt, 1);
  if (!r.ok()) return r.status();
  if (r->empty()) return std::optional<Message>();
  return std::optional<Message>(std::move(r->back()));
}

Result<int64_t> SqliteStore::CountUnread(int64_t conversation_id, int64_t user_id,
                                         int64_t after_id) {
  int64_t n = 0;
  Status s = WithReader([&](Connection& c) -> Status {
    auto st = c.Prepare(
        "SELECT COUNT(*) FROM messages WHERE conversation_id = ? AND id > ? AND sender_id != ? "
        "AND deleted_at IS NULL");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, conversation_id).Bind(2, after_id).Bind(3, user_id);
    if ((*st)->Step() != SQLITE_ROW) return c.Error("count unread");
    n = (*st)->Int(0);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return n;
}

Status SqliteStore::Rename(int64_t conversation_id, const std::string& name, TimeMs now) {
  return InTransaction([&](Connection& c) -> Status {
    auto st = c.Prepare("UPDATE conversations SET name = ? WHERE id = ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, name).Bind(2, conversation_id);
    if (Status r = c.Run(**st, "rename"); !r.ok()) return r;
    return Touch(c, conversation_id, now);
  });
}

Result<domain::MembershipOutcome> SqliteStore::AddParticipant(int64_t conversation_id,
                                                              int64_t user_id, Role role,
                                                              TimeMs now) {
  auto out = domain::MembershipOutcome::kDone;
  Status s = InTransaction([&](Connection& c) -> Status {
    auto exists = UserExists(c, user_id);
    if (!exists.ok()) return exists.status();
    if (!*exists) {
      out = domain::MembershipOutcome::kNoSuchUser;
      return Status::Ok();
    }
    auto st = c.Prepare(
        "INSERT INTO participants(conversation_id, user_id, role, joined_at) VALUES (?, ?, ?, ?) "
        "ON CONFLICT DO NOTHING");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, conversation_id).Bind(2, user_id).Bind(3, std::string_view(RoleName(role)));
    (*st)->Bind(4, now);
    if (Status r = c.Run(**st, "add participant"); !r.ok()) return r;
    if (c.Changes() == 0) {
      out = domain::MembershipOutcome::kAlreadyParticipant;
      return Status::Ok();
    }
    return Touch(c, conversation_id, now, /*members=*/true);
  });
  if (!s.ok()) return s;
  return out;
}

Result<domain::MembershipOutcome> SqliteStore::SetRole(int64_t conversation_id, int64_t user_id,
                                                       Role role, TimeMs now) {
  auto out = domain::MembershipOutcome::kDone;
  Status s = InTransaction([&](Connection& c) -> Status {
    auto member = c.Prepare("SELECT 1 FROM participants WHERE conversation_id = ? AND user_id = ?");
    if (!member.ok()) return member.status();
    (*member)->Bind(1, conversation_id).Bind(2, user_id);
    const int rc = (*member)->Step();
    if (rc == SQLITE_DONE) {
      out = domain::MembershipOutcome::kNotParticipant;
      return Status::Ok();
    }
    if (rc != SQLITE_ROW) return c.Error("find participant");
    // ?4: a demotion needs another admin, checked in this write transaction.
    auto st = c.Prepare(
        "UPDATE participants SET role = ?1 WHERE conversation_id = ?2 AND user_id = ?3 "
        "AND (?1 = 'admin' OR EXISTS (SELECT 1 FROM participants WHERE conversation_id = ?2 "
        "AND role = 'admin' AND user_id != ?3))");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, std::string_view(RoleName(role))).Bind(2, conversation_id).Bind(3, user_id);
    if (Status r = c.Run(**st, "set role"); !r.ok()) return r;
    if (c.Changes() == 0) {
      out = domain::MembershipOutcome::kWouldLeaveNoAdmin;
      return Status::Ok();
    }
    return Touch(c, conversation_id, now);
  });
  if (!s.ok()) return s;
  return out;
}

Result<domain::MembershipOutcome> SqliteStore::RemoveParticipant(int64_t conversation_id,
                                                                 int64_t user_id, TimeMs now) {
  auto out = domain::MembershipOutcome::kDone;
  Status s = InTransaction([&](Connection& c) -> Status {
    auto del = c.Prepare("DELETE FROM participants WHERE conversation_id = ? AND user_id = ?");
    if (!del.ok()) return del.status();
    (*del)->Bind(1, conversation_id).Bind(2, user_id);
    if (Status r = c.Run(**del, "remove participant"); !r.ok()) return r;
    if (c.Changes() == 0) {
      out = domain::MembershipOutcome::kNotParticipant;
      return Status::Ok();
    }
    // A group without an admin promotes its longest-standing member.
    auto promote = c.Prepare(
        "UPDATE participants SET role = 'admin' WHERE conversation_id = ?1 "
        "AND NOT EXISTS (SELECT 1 FROM participants WHERE conversation_id = ?1 AND role = 'admin') "
        "AND user_id = (SELECT user_id FROM participants WHERE conversation_id = ?1 "
        "ORDER BY joined_at, user_id LIMIT 1)");
    if (!promote.ok()) return promote.status();
    (*promote)->Bind(1, conversation_id);
    if (Status r = c.Run(**promote, "promote admin"); !r.ok()) return r;
    return Touch(c, conversation_id, now, /*members=*/true);
  });
  if (!s.ok()) return s;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Messages: the group-commit writer
// ---------------------------------------------------------------------------------------------

void SqliteStore::AppendMessage(domain::NewMessage message,
                                std::function<void(Result<StoredAppend>)> done) {
  message_writer_->Append(std::move(message), std::move(done));
}

void SqliteStore::ChangeMessage(domain::MessageChange change,
                                std::function<void(Result<domain::StoredChange>)> done) {
  message_writer_->Change(std::move(change), std::move(done));
}

GroupCommitWriter::Committed SqliteStore::CommitBatch(const std::vector<Write>& batch) {
  GroupCommitWriter::Committed out;
  out.results.reserve(batch.size());
  Status committed = InTransaction([&](Connection& c) -> Status {
    // The one counter of ids and change_ids: this writer is the only one that moves it.
    auto counter = c.Prepare("SELECT last_id FROM id_counters WHERE name = 'messages'");
    if (!counter.ok()) return counter.status();
    if ((*counter)->Step() != SQLITE_ROW) return c.Error("read id counter");
    const int64_t first_id = (*counter)->Int(0);
    (*counter)->Reset();
    int64_t last_id = first_id;
    for (const Write& w : batch) {
      if (const auto* m = std::get_if<domain::NewMessage>(&w)) {
        auto r = AppendOne(c, *m, last_id);
        out.results.push_back(r.ok() ? Result<Written>(std::move(*r)) : r.status());
      } else {
        auto r = ChangeOne(c, std::get<domain::MessageChange>(w), last_id);
        out.results.push_back(r.ok() ? Result<Written>(std::move(*r)) : r.status());
      }
      // SQLite may roll the whole transaction back by itself (disk full, I/O error). Then
      // later writes would run outside it and commit on their own: fail the batch instead.
      if (sqlite3_get_autocommit(c.raw())) return c.Error("batch aborted");
    }
    if (last_id == first_id) return Status::Ok();
    auto up = c.Prepare("UPDATE id_counters SET last_id = ? WHERE name = 'messages'");
    if (!up.ok()) return up.status();
    (*up)->Bind(1, last_id);
    return c.Run(**up, "move id counter");
  });
  out.committed = committed.ok();
  // Nobody hears "ok" unless the commit happened.
  if (!committed.ok()) out.results.assign(batch.size(), committed);
  return out;
}

Result<StoredAppend> SqliteStore::AppendOne(Connection& c, const domain::NewMessage& m,
                                            int64_t& last_id) {
  auto member = c.Prepare(
      "SELECT (SELECT 1 FROM conversations WHERE id = ?1), "
      "(SELECT 1 FROM participants WHERE conversation_id = ?1 AND user_id = ?2), "
      "(SELECT 1 FROM messages WHERE id = ?3 AND conversation_id = ?1)");
  if (!member.ok()) return member.status();
  (*member)->Bind(1, m.conversation_id).Bind(2, m.sender_id).Bind(3, m.reply_to.value_or(0));
  if ((*member)->Step() != SQLITE_ROW) return c.Error("check participant");
  if (!(*member)->OptInt(0)) return StoredAppend{domain::AppendOutcome::kNoConversation, {}};
  if (!(*member)->OptInt(1)) return StoredAppend{domain::AppendOutcome::kNotParticipant, {}};

  if (m.client_id) {
    auto dup = c.Prepare(std::string("SELECT ") + kMessageColumns +
                         " FROM messages WHERE sender_id = ? AND client_id = ?");
    if (!dup.ok()) return dup.status();
    (*dup)->Bind(1, m.sender_id).Bind(2, *m.client_id);
    const int rc = (*dup)->Step();
    if (rc == SQLITE_ROW) return StoredAppend{domain::AppendOutcome::kRepeated, ReadMessage(**dup)};
    if (rc != SQLITE_DONE) return c.Error("find client_id");
  }
  // After the client_id: a retry of a stored message is answered whatever it says.
  if (m.reply_to && !(*member)->OptInt(2)) {
    return StoredAppend{domain::AppendOutcome::kBadReplyTo, {}};
  }

  if (Status s = c.Exec("SAVEPOINT append"); !s.ok()) return s;
  auto fail = [&](Status s) -> Result<StoredAppend> {
    c.Exec("ROLLBACK TO append; RELEASE append");
    return s;
  };
  auto seq = c.Prepare(
      "UPDATE conversations SET last_seq = last_seq + 1, last_activity = MAX(last_activity, ?) "
      "WHERE id = ? RETURNING last_seq, members_version");
  if (!seq.ok()) return fail(seq.status());
  (*seq)->Bind(1, m.created_at).Bind(2, m.conversation_id);
  if ((*seq)->Step() != SQLITE_ROW) return fail(c.Error("next seq"));
  Message out;
  out.id = last_id + 1;
  out.change_id = out.id;
  out.seq = (*seq)->Int(0);
  out.members_version = (*seq)->Int(1);
  (*seq)->Step();  // complete the statement

  if (!m.attachment_ids.empty()) {
    auto attached = AttachUploads(c, m, out.id, &out.attachments);
    if (!attached.ok()) return fail(attached.status());
    if (!*attached) {
      c.Exec("ROLLBACK TO append; RELEASE append");
      return StoredAppend{domain::AppendOutcome::kBadAttachment, {}};
    }
  }
  auto ins = c.Prepare(
      "INSERT INTO messages(id, conversation_id, seq, sender_id, content, client_id, "
      "created_at, reply_to, change_id, attachments) "
      "VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?1, ?9)");
  if (!ins.ok()) return fail(ins.status());
  (*ins)->Bind(1, out.id).Bind(2, m.conversation_id).Bind(3, out.seq).Bind(4, m.sender_id);
  (*ins)->Bind(5, m.content).Bind(6, m.client_id).Bind(7, m.created_at).Bind(8, m.reply_to);
  (*ins)->Bind(9, EncodeAttachments(out.attachments));
  if (Status s = c.Run(**ins, "insert message"); !s.ok()) return fail(s);
  if (Status s = Reindex(c, out.id, "", m.content); !s.ok()) return fail(s);

  // Sending moves the sender's read marker to the new message.
  auto read = c.Prepare(
      "UPDATE participants SET read_marker = ?1, read_at = ?2 "
      "WHERE conversation_id = ?3 AND user_id = ?4 AND read_marker < ?1");
  if (!read.ok()) return fail(read.status());
  (*read)->Bind(1, out.id).Bind(2, m.created_at).Bind(3, m.conversation_id).Bind(4, m.sender_id);
  if (Status s = c.Run(**read, "move read marker"); !s.ok()) return fail(s);
  if (Status s = c.Exec("RELEASE append"); !s.ok()) return fail(s);

  last_id = out.id;
  out.conversation_id = m.conversation_id;
  out.sender_id = m.sender_id;
  out.content = m.content;
  out.client_id = m.client_id;
  out.reply_to = m.reply_to;
  out.created_at = m.created_at;
  return StoredAppend{domain::AppendOutcome::kCreated, std::move(out)};
}

Result<bool> SqliteStore::AttachUploads(Connection& c, const domain::NewMessage& m,
                                        int64_t message_id, std::vector<domain::Attachment>* out) {
  auto st = c.Prepare(
      "UPDATE uploads SET message_id = ?1 WHERE id = ?2 AND uploader = ?3 AND complete = 1 "
      "AND removed = 0 AND message_id IS NULL "
      "RETURNING filename, content_type, size, created_at");
  if (!st.ok()) return st.status();
  for (const std::string& id : m.attachment_ids) {
    (*st)->Reset();
    (*st)->Bind(1, message_id).Bind(2, id).Bind(3, m.sender_id);
    const int rc = (*st)->Step();
    if (rc == SQLITE_DONE) return false;
    if (rc != SQLITE_ROW) return c.Error("attach upload");
    domain::Attachment a;
    a.id = id;
    a.filename = (*st)->OptText(0);
    a.content_type = (*st)->Text(1);
    a.size = (*st)->Int(2);
    a.created_at = (*st)->Int(3);
    out->push_back(std::move(a));
    if (Status s = c.Run(**st, "attach upload"); !s.ok()) return s;
  }
  return true;
}

Result<domain::StoredChange> SqliteStore::ChangeOne(Connection& c,
                                                    const domain::MessageChange& change,
                                                    int64_t& last_id) {
  using domain::ChangeOutcome;
  // The message, the actor's place in its conversation, and the conversation's version.
  auto st = c.Prepare(std::string("SELECT ") + kJoinedMessageColumns +
                      ", p.role, cv.type, cv.members_version FROM messages m "
                      "JOIN conversations cv ON cv.id = m.conversation_id "
                      "LEFT JOIN participants p ON p.conversation_id = m.conversation_id "
                      "AND p.user_id = ?2 WHERE m.id = ?1");
  if (!st.ok()) return st.status();
  (*st)->Bind(1, change.message_id).Bind(2, change.actor);
  const int rc = (*st)->Step();
  if (rc == SQLITE_DONE) return domain::StoredChange{ChangeOutcome::kNoMessage, {}};
  if (rc != SQLITE_ROW) return c.Error("read message");
  Message m = ReadMessage(**st);
  const std::string old_content = m.content;
  const std::optional<std::string> role = (*st)->OptText(kMessageColumnCount);
  domain::ChangeActor actor;
  actor.participant = role.has_value();
  actor.group_admin = role == "admin" && (*st)->Text(kMessageColumnCount + 1) == "group";
  m.members_version = (*st)->Int(kMessageColumnCount + 2);
  (*st)->Reset();

  const ChangeOutcome outcome = domain::ApplyChange(change, actor, m);
  if (outcome != ChangeOutcome::kChanged) {
    if (outcome != ChangeOutcome::kUnchanged) m = Message{};
    return domain::StoredChange{outcome, std::move(m)};
  }
  m.change_id = last_id + 1;
  auto up = c.Prepare(
      "UPDATE messages SET content = ?2, edited_at = ?3, deleted_at = ?4, reactions = ?5, "
      "change_id = ?6, attachments = ?7 WHERE id = ?1");
  if (!up.ok()) return up.status();
  (*up)->Bind(1, m.id).Bind(2, m.content).Bind(3, m.edited_at).Bind(4, m.deleted_at);
  (*up)->Bind(5, EncodeReactions(m.reactions)).Bind(6, m.change_id);
  (*up)->Bind(7, EncodeAttachments(m.attachments));
  if (Status s = c.Run(**up, "change message"); !s.ok()) return s;
  if (Status s = Reindex(c, m.id, old_content, m.content); !s.ok()) return s;
  if (change.kind == domain::MessageChange::Kind::kDelete) {
    // Its uploads can no longer be downloaded; the sweep removes their bytes.
    auto gone = c.Prepare("UPDATE uploads SET removed = 1 WHERE message_id = ?");
    if (!gone.ok()) return gone.status();
    (*gone)->Bind(1, m.id);
    if (Status s = c.Run(**gone, "remove attachments"); !s.ok()) return s;
  }
  last_id = m.change_id;
  return domain::StoredChange{ChangeOutcome::kChanged, std::move(m)};
}

Status SqliteStore::Reindex(Connection& c, int64_t id, const std::string& old_content,
                            const std::string& new_content) {
  if (old_content == new_content) return Status::Ok();
  if (!old_content.empty()) {
    // A contentless index forgets a row only when told its exact old text.
    auto del = c.Prepare(
        "INSERT INTO message_search(message_search, rowid, content) VALUES ('delete', ?, ?)");
    if (!del.ok()) return del.status();
    (*del)->Bind(1, id).Bind(2, old_content);
    if (Status s = c.Run(**del, "unindex message"); !s.ok()) return s;
    search_unmerged_ = true;
  }
  if (new_content.empty()) return Status::Ok();
  auto ins = c.Prepare("INSERT INTO message_search(rowid, content) VALUES (?, ?)");
  if (!ins.ok()) return ins.status();
  (*ins)->Bind(1, id).Bind(2, new_content);
  return c.Run(**ins, "index message");
}

bool SqliteStore::TidySearchIndex() {
  if (!search_unmerged_) return false;
  Status s = WithWriter([&](Connection& c) -> Status {
    // A negative page count merges whatever segments there are, up to that many pages a step;
    // a step that changes (almost) nothing means one segment is left.
    const int before = sqlite3_total_changes(c.raw());
    if (Status r = c.Exec("INSERT INTO message_search(message_search, rank) VALUES ('merge', -64)");
        !r.ok()) {
      return r;
    }
    if (sqlite3_total_changes(c.raw()) - before < 2) search_unmerged_ = false;
    return Status::Ok();
  });
  if (!s.ok()) {
    spdlog::warn("merging the search index: {}", s.message());
    return false;  // tried again after the next batch
  }
  return search_unmerged_;
}

// ---------------------------------------------------------------------------------------------
// Messages: reading
// ---------------------------------------------------------------------------------------------

Result<std::optional<Message>> SqliteStore::GetMessage(int64_t id) {
  std::vector<Message> rows;
  Status s = WithReader([&](Connection& c) -> Status {
    auto st = c.Prepare(std::string("SELECT ") + kMessageColumns + " FROM messages WHERE id = ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, id);
    return CollectMessages(c, **st, &rows);
  });
  if (!s.ok()) return s;
  if (rows.empty()) return std::optional<Message>();
  return std::optional<Message>(std::move(rows.front()));
}

Result<std::vector<Message>> SqliteStore::ListMessages(int64_t conversation_id,
                                                       std::optional<int64_t> before,
                                                       std::optional<int64_t> after, int limit) {
  return Page(std::nullopt, conversation_id, before, after, limit);
}

Result<std::vector<Message>> SqliteStore::ListMessagesFor(int64_t reader, int64_t conversation_id,
                                                          std::optional<int64_t> before,
                                                          std::optional<int64_t> after, int limit) {
  return Page(reader, conversation_id, before, after, limit);
}

Result<std::vector<Message>> SqliteStore::Page(std::optional<int64_t> reader,
                                               int64_t conversation_id,
                                               std::optional<int64_t> before,
                                               std::optional<int64_t> after, int limit) {
  std::vector<Message> rows;
  Status s = WithReader([&](Connection& c) -> Status {
    // Every variant walks the (conversation_id, id) index from the cursor. The reader's check
    // does not depend on the row, so SQLite runs it once, on the participants' key.
    std::string sql = std::string("SELECT ") + kMessageColumns + " FROM messages " +
                      (after ? "WHERE conversation_id = ?1 AND id > ?2 "
                             : "WHERE conversation_id = ?1 AND id < ?2 ");
    if (reader) {
      sql += "AND EXISTS (SELECT 1 FROM participants WHERE conversation_id = ?1 AND user_id = ?4) ";
    }
    sql += after ? "ORDER BY id LIMIT ?3" : "ORDER BY id DESC LIMIT ?3";
    Result<ScopedStatement> st = c.Prepare(sql);
    if (!st.ok()) return st.status();
    const int64_t cursor = after ? *after : before.value_or(INT64_MAX);
    (*st)->Bind(1, conversation_id).Bind(2, cursor).Bind(3, int64_t{limit});
    if (reader) (*st)->Bind(4, *reader);
    return CollectMessages(c, **st, &rows);
  });
  if (!s.ok()) return s;
  if (!after) std::reverse(rows.begin(), rows.end());  // always ascending
  return rows;
}

Result<std::vector<Message>> SqliteStore::MessagesSince(int64_t user_id, int64_t since, int limit) {
  std::vector<Message> rows;
  Status s = WithReader([&](Connection& c) -> Status {
    // Unchanged messages (change_id = id) in id order, changed ones from their partial
    // index, merged: no index on every message's change_id (SinceQuery in rows.h).
    auto st = c.Prepare(SinceQuery(
        "conversation_id IN (SELECT conversation_id FROM participants WHERE user_id = ?1)", "?2",
        "?3"));
    if (!st.ok()) return st.status();
    (*st)->Bind(1, user_id).Bind(2, since).Bind(3, int64_t{limit});
    return CollectMessages(c, **st, &rows);
  });
  if (!s.ok()) return s;
  return rows;
}

Result<std::vector<Message>> SqliteStore::MessagesAfter(int64_t after, int limit) {
  std::vector<Message> rows;
  Status s = WithReader([&](Connection& c) -> Status {
    auto st = c.Prepare(std::string("SELECT ") + kMessageColumns +
                        " FROM messages WHERE id > ? ORDER BY id LIMIT ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, after).Bind(2, int64_t{limit});
    return CollectMessages(c, **st, &rows);
  });
  if (!s.ok()) return s;
  return rows;
}

Result<std::vector<Message>> SqliteStore::ChangesAfter(int64_t after, int limit) {
  std::vector<Message> rows;
  Status s = WithReader([&](Connection& c) -> Status {
    auto st = c.Prepare(std::string("SELECT ") + kMessageColumns +
                        " FROM messages WHERE change_id > ? AND change_id > id "
                        "ORDER BY change_id LIMIT ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, after).Bind(2, int64_t{limit});
    return CollectMessages(c, **st, &rows);
  });
  if (!s.ok()) return s;
  return rows;
}

Result<std::vector<Message>> SqliteStore::SearchMessages(const domain::SearchQuery& query) {
  // FTS5's query syntax: each word a quoted string, which must all occur; the last a prefix.
  std::string match;
  for (const std::string& w : query.words) {
    if (!match.empty()) match += ' ';
    match += '"';
    for (char ch : w) match += ch == '"' ? std::string("\"\"") : std::string(1, ch);
    match += '"';
  }
  if (match.empty()) return std::vector<Message>{};
  match += '*';
  std::vector<Message> rows;
  Status s = WithReader([&](Connection& c) -> Status {
    // The index hands out its hits newest first; each is kept when it lies in one of the
    // user's conversations (and the asked one), until the page is full.
    std::string sql = std::string("SELECT ") + kJoinedMessageColumns +
                      " FROM message_search JOIN messages m ON m.id = message_search.rowid "
                      "WHERE message_search MATCH ?1 AND message_search.rowid < ?2 "
                      "AND m.conversation_id IN "
                      "(SELECT conversation_id FROM participants WHERE user_id = ?3) ";
    if (query.conversation_id) sql += "AND m.conversation_id = ?5 ";
    sql += "ORDER BY message_search.rowid DESC LIMIT ?4";
    auto st = c.Prepare(sql);
    if (!st.ok()) return st.status();
    (*st)->Bind(1, match).Bind(2, query.before.value_or(INT64_MAX)).Bind(3, query.user);
    (*st)->Bind(4, int64_t{query.limit});
    if (query.conversation_id) (*st)->Bind(5, *query.conversation_id);
    return CollectMessages(c, **st, &rows);
  });
  if (!s.ok()) return s;
  return rows;
}

Result<int64_t> SqliteStore::LastMessageId() {
  int64_t out = 0;
  Status s = WithReader([&](Connection& c) -> Status {
    auto st = c.Prepare("SELECT last_id FROM id_counters WHERE name = 'messages'");
    if (!st.ok()) return st.status();
    if ((*st)->Step() != SQLITE_ROW) return c.Error("last message id");
    out = (*st)->Int(0);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

// ---------------------------------------------------------------------------------------------
// Receipts
// ---------------------------------------------------------------------------------------------

Result<std::optional<domain::ReadMark>> SqliteStore::MoveReadMarker(int64_t conversation_id,
                                                                    int64_t user_id,
                                                                    int64_t message_id,
                                                                    TimeMs now) {
  std::optional<domain::ReadMark> out;
  Status s = InTransaction([&](Connection& c) -> Status {
    auto up = c.Prepare(
        "UPDATE participants SET read_marker = ?1, read_at = ?2 "
        "WHERE conversation_id = ?3 AND user_id = ?4 AND read_marker < ?1");
    if (!up.ok()) return up.status();
    (*up)->Bind(1, message_id).Bind(2, now).Bind(3, conversation_id).Bind(4, user_id);
    if (Status r = c.Run(**up, "move read marker"); !r.ok()) return r;
    const bool moved = c.Changes() == 1;
    auto sel = c.Prepare(
        "SELECT read_marker, read_at FROM participants WHERE conversation_id = ? AND user_id = ?");
    if (!sel.ok()) return sel.status();
    (*sel)->Bind(1, conversation_id).Bind(2, user_id);
    const int rc = (*sel)->Step();
    if (rc == SQLITE_DONE) return Status::Ok();  // not a participant
    if (rc != SQLITE_ROW) return c.Error("read marker");
    out = domain::ReadMark{conversation_id, (*sel)->Int(0), (*sel)->OptInt(1).value_or(now), moved};
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Status SqliteStore::SaveDelivered(const std::vector<domain::Watermark>& marks) {
  return InTransaction([&](Connection& c) -> Status {
    auto st = c.Prepare(
        "UPDATE participants SET delivered_marker = MAX(delivered_marker, ?) "
        "WHERE conversation_id = ? AND user_id = ?");
    if (!st.ok()) return st.status();
    for (const auto& m : marks) {
      (*st)->Reset();
      (*st)->Bind(1, m.message_id).Bind(2, m.conversation_id).Bind(3, m.user_id);
      if (Status r = c.Run(**st, "save delivered"); !r.ok()) return r;
    }
    return Status::Ok();
  });
}

}  // namespace mmchat::store::sqlite
