#include "store/sqlite/migrations.h"

#include <spdlog/spdlog.h>

#include <string>
#include <vector>

#include "common/time.h"

namespace mmchat::store::sqlite {
namespace {

struct Migration {
  int version;
  const char* name;
  const char* sql;
};

// Append only: never edit a migration that has shipped; add a new one instead.
const std::vector<Migration>& Migrations() {
  static const std::vector<Migration> kAll = {
      {1, "accounts", R"sql(
CREATE TABLE users (
  id                  INTEGER PRIMARY KEY,
  username            TEXT    NOT NULL COLLATE NOCASE UNIQUE,
  email               TEXT    NOT NULL COLLATE NOCASE UNIQUE,
  password_hash       TEXT    NOT NULL,
  profile_picture     TEXT,
  created_at          INTEGER NOT NULL,
  last_seen           INTEGER,
  token_version       INTEGER NOT NULL DEFAULT 0,
  failed_logins       INTEGER NOT NULL DEFAULT 0,
  failed_window_start INTEGER NOT NULL DEFAULT 0
);

-- One pending code per purpose and email; kept after use so the resend window holds.
CREATE TABLE verification_codes (
  purpose       TEXT    NOT NULL CHECK (purpose IN ('signup', 'reset')),
  email         TEXT    NOT NULL,
  code_hash     TEXT    NOT NULL,
  sent_at       INTEGER NOT NULL,
  expires_at    INTEGER NOT NULL,
  attempts      INTEGER NOT NULL DEFAULT 0,
  used          INTEGER NOT NULL DEFAULT 0,
  username      TEXT,
  password_hash TEXT,
  PRIMARY KEY (purpose, email)
) WITHOUT ROWID;
CREATE INDEX verification_codes_sent_at ON verification_codes(sent_at);

CREATE TABLE settings (
  key   TEXT PRIMARY KEY,
  value TEXT NOT NULL
) WITHOUT ROWID;
)sql"},
      {2, "conversations", R"sql(
CREATE TABLE conversations (
  id            INTEGER PRIMARY KEY,
  type          TEXT    NOT NULL CHECK (type IN ('private', 'group')),
  name          TEXT,
  created_by    INTEGER NOT NULL REFERENCES users(id),
  created_at    INTEGER NOT NULL,
  last_activity INTEGER NOT NULL,  -- creation, rename, membership change or last message
  last_seq      INTEGER NOT NULL DEFAULT 0,
  -- "min:max" of the two user ids of a private conversation: one per pair, even under races.
  pair_key      TEXT UNIQUE
);

CREATE TABLE participants (
  conversation_id INTEGER NOT NULL REFERENCES conversations(id),
  user_id         INTEGER NOT NULL REFERENCES users(id),
  role            TEXT    NOT NULL CHECK (role IN ('admin', 'member')),
  joined_at       INTEGER NOT NULL,
  read_marker     INTEGER NOT NULL DEFAULT 0,  -- highest message id read
  read_at         INTEGER,                     -- when read_marker last moved
  delivered_marker INTEGER NOT NULL DEFAULT 0, -- highest message id delivered
  PRIMARY KEY (conversation_id, user_id)
) WITHOUT ROWID;
CREATE INDEX participants_by_user ON participants(user_id, conversation_id);

CREATE TABLE messages (
  id              INTEGER PRIMARY KEY,  -- global, increasing in commit order (one writer)
  conversation_id INTEGER NOT NULL REFERENCES conversations(id),
  seq             INTEGER NOT NULL,
  sender_id       INTEGER NOT NULL REFERENCES users(id),
  content         TEXT    NOT NULL,
  client_id       TEXT,
  created_at      INTEGER NOT NULL,
  UNIQUE (conversation_id, seq)
);
CREATE INDEX messages_by_conversation ON messages(conversation_id, id);
CREATE UNIQUE INDEX messages_client_id ON messages(sender_id, client_id)
  WHERE client_id IS NOT NULL;
)sql"},
      // Counts membership changes (domain::Conversation::members_version).
      {3, "members_version", R"sql(
ALTER TABLE conversations ADD COLUMN members_version INTEGER NOT NULL DEFAULT 0;
)sql"},
      // Replies, edits, deletions and reactions. Ids and change_ids come from one counter,
      // read and moved by the message writer only (SqliteStore::CommitBatch).
      {4, "message_changes", R"sql(
ALTER TABLE messages ADD COLUMN reply_to INTEGER;
ALTER TABLE messages ADD COLUMN edited_at INTEGER;
ALTER TABLE messages ADD COLUMN deleted_at INTEGER;
ALTER TABLE messages ADD COLUMN change_id INTEGER NOT NULL DEFAULT 0;
ALTER TABLE messages ADD COLUMN reactions TEXT;  -- JSON, store/common/reactions.h
UPDATE messages SET change_id = id;
-- The changed messages by change_id, per conversation for sync and all of them for a
-- cluster's repair; the others are in id order already. A new message (change_id = id) is
-- in neither: sending costs no more index.
CREATE INDEX messages_changed_by_conversation ON messages(conversation_id, change_id)
  WHERE change_id > id;
CREATE INDEX messages_changed ON messages(change_id) WHERE change_id > id;
CREATE TABLE id_counters (
  name    TEXT    PRIMARY KEY,
  last_id INTEGER NOT NULL
) WITHOUT ROWID;
INSERT INTO id_counters SELECT 'messages', COALESCE(MAX(id), 0) FROM messages;
)sql"},
      // Search (API.md): a contentless FTS5 index of every message's current content, keyed
      // by message id. unicode61 folds case and diacritics and splits on every character that
      // is not a letter or digit (domain/search.h). The message writer keeps it in step with
      // sends, edits and deletions in their transaction (SqliteStore::AppendOne, ChangeOne).
      // Segments merge 16 at a time instead of 4: each commit writes a segment, and merging
      // them 4 by 4 cost a third of the persisted messages/s (BENCHMARKS.md). No prefix
      // indexes: they halve a prefix search's p99 but cost a fifth of the sends/s.
      {5, "message_search", R"sql(
CREATE VIRTUAL TABLE message_search USING fts5(
  content, content = '', columnsize = 0, tokenize = 'unicode61 remove_diacritics 2');
INSERT INTO message_search(message_search, rank) VALUES ('automerge', 16);
INSERT INTO message_search(rowid, content) SELECT id, content FROM messages;
)sql"},
      // Attachments (API.md): uploads and their bytes in chunks of 256 KiB
      // (domain/upload_store.h), so that no upload is ever whole in memory. A message keeps
      // its attachments' metadata in its row (JSON, store/common/reactions.h); the upload's
      // message_id says which message holds it. `removed`: its message was deleted, and the
      // sweep takes it (SqliteStore::SweepUploads), as it takes uploads attached to nothing.
      {6, "uploads", R"sql(
ALTER TABLE messages ADD COLUMN attachments TEXT;
CREATE TABLE uploads (
  id           TEXT    PRIMARY KEY,
  uploader     INTEGER NOT NULL,
  filename     TEXT,
  content_type TEXT    NOT NULL,
  size         INTEGER NOT NULL DEFAULT 0,
  created_at   INTEGER NOT NULL,
  complete     INTEGER NOT NULL DEFAULT 0,
  message_id   INTEGER,
  removed      INTEGER NOT NULL DEFAULT 0
);
CREATE INDEX uploads_by_message ON uploads(message_id) WHERE message_id IS NOT NULL;
CREATE INDEX uploads_to_sweep ON uploads(created_at) WHERE message_id IS NULL OR removed = 1;
CREATE TABLE upload_chunks (
  upload_id TEXT    NOT NULL,
  idx       INTEGER NOT NULL,
  data      BLOB    NOT NULL,
  PRIMARY KEY (upload_id, idx)
);
)sql"},
      // An administrator's state of an account (domain::UserStatus): 'active', 'disabled'
      // (cannot log in) or 'deleted' (personal data erased; `mmchat user delete`).
      {7, "user_status", R"sql(
ALTER TABLE users ADD COLUMN status TEXT NOT NULL DEFAULT 'active'
  CHECK (status IN ('active', 'disabled', 'deleted'));
)sql"},
      // A user's uploads that no message carries, summed for MAX_PENDING_UPLOAD_BYTES.
      {8, "pending_uploads", R"sql(
CREATE INDEX uploads_pending ON uploads(uploader) WHERE message_id IS NULL AND removed = 0;
)sql"},
  };
  return kAll;
}

Result<int> CurrentVersion(Connection* conn) {
  if (Status s = conn->Exec("CREATE TABLE IF NOT EXISTS schema_migrations ("
                            "version INTEGER PRIMARY KEY, name TEXT NOT NULL, "
                            "applied_at INTEGER NOT NULL)");
      !s.ok()) {
    return s;
  }
  auto stmt = conn->Prepare("SELECT COALESCE(MAX(version), 0) FROM schema_migrations");
  if (!stmt.ok()) return stmt.status();
  if ((*stmt)->Step() != SQLITE_ROW) return conn->Error("read schema version");
  return static_cast<int>((*stmt)->Int(0));
}

}  // namespace

int LatestSchemaVersion() { return Migrations().back().version; }

Status Migrate(Connection* conn, int* applied) {
  if (applied) *applied = 0;
  auto current = CurrentVersion(conn);
  if (!current.ok()) return current.status();
  if (*current > LatestSchemaVersion()) {
    return Status::Unavailable("database schema version " + std::to_string(*current) +
                               " is newer than this mmchat supports (" +
                               std::to_string(LatestSchemaVersion()) + "); upgrade mmchat");
  }
  for (const Migration& m : Migrations()) {
    if (m.version <= *current) continue;
    Transaction tx(conn);
    if (Status s = tx.Begin(); !s.ok()) return s;
    // Another process may have migrated between our check and our lock.
    auto again = CurrentVersion(conn);
    if (!again.ok()) return again.status();
    if (m.version <= *again) continue;
    if (Status s = conn->Exec(m.sql); !s.ok()) return s;
    auto ins = conn->Prepare(
        "INSERT INTO schema_migrations(version, name, applied_at) "
        "VALUES (?, ?, ?)");
    if (!ins.ok()) return ins.status();
    (*ins)->Bind(1, int64_t{m.version}).Bind(2, std::string_view(m.name)).Bind(3, NowMs());
    if ((*ins)->Step() != SQLITE_DONE) return conn->Error("record migration");
    if (Status s = tx.Commit(); !s.ok()) return s;
    spdlog::info("applied migration {} ({})", m.version, m.name);
    if (applied) ++*applied;
  }
  return Status::Ok();
}

}  // namespace mmchat::store::sqlite
