// SqliteStore: uploads and their chunks (domain/upload_store.h). Each chunk is written in a
// short transaction of its own on the writer connection, so that a 25 MiB upload never holds
// the write lock for long: sends commit between its chunks.
#include <string>
#include <vector>

#include "store/sqlite/sqlite_store.h"

namespace mmchat::store::sqlite {

Status SqliteStore::CreateUpload(const domain::Upload& upload) {
  return InTransaction([&](Connection& c) -> Status {
    auto st = c.Prepare(
        "INSERT INTO uploads(id, uploader, filename, content_type, created_at) "
        "VALUES (?, ?, ?, ?, ?)");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, upload.file.id).Bind(2, upload.uploader).Bind(3, upload.file.filename);
    (*st)->Bind(4, upload.file.content_type).Bind(5, upload.file.created_at);
    return c.Run(**st, "create upload");
  });
}

Status SqliteStore::PutUploadChunk(const std::string& id, int64_t index, std::string_view bytes) {
  return InTransaction([&](Connection& c) -> Status {
    auto st = c.Prepare("INSERT INTO upload_chunks(upload_id, idx, data) VALUES (?, ?, ?)");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, id).Bind(2, index).BindBlob(3, bytes);
    if (Status s = c.Run(**st, "write upload chunk"); !s.ok()) return s;
    auto grow = c.Prepare("UPDATE uploads SET size = size + ? WHERE id = ?");
    if (!grow.ok()) return grow.status();
    (*grow)->Bind(1, static_cast<int64_t>(bytes.size())).Bind(2, id);
    return c.Run(**grow, "count upload chunk");
  });
}

Status SqliteStore::CompleteUpload(const std::string& id, int64_t size) {
  return InTransaction([&](Connection& c) -> Status {
    auto st = c.Prepare("UPDATE uploads SET complete = 1, size = ? WHERE id = ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, size).Bind(2, id);
    return c.Run(**st, "complete upload");
  });
}

Status SqliteStore::RemoveUpload(const std::string& id) {
  return InTransaction([&](Connection& c) { return DeleteUpload(c, id); });
}

Status SqliteStore::DeleteUpload(Connection& c, const std::string& id) {
  auto chunks = c.Prepare("DELETE FROM upload_chunks WHERE upload_id = ?");
  if (!chunks.ok()) return chunks.status();
  (*chunks)->Bind(1, id);
  if (Status s = c.Run(**chunks, "remove upload chunks"); !s.ok()) return s;
  auto row = c.Prepare("DELETE FROM uploads WHERE id = ?");
  if (!row.ok()) return row.status();
  (*row)->Bind(1, id);
  return c.Run(**row, "remove upload");
}

Result<int64_t> SqliteStore::PendingUploadBytes(int64_t uploader) {
  int64_t out = 0;
  Status s = WithReader([&](Connection& c) -> Status {
    auto st = c.Prepare(
        "SELECT COALESCE(SUM(size), 0) FROM uploads "
        "WHERE uploader = ? AND message_id IS NULL AND removed = 0");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, uploader);
    if ((*st)->Step() != SQLITE_ROW) return c.Error("sum pending uploads");
    out = (*st)->Int(0);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::optional<domain::Upload>> SqliteStore::FindUpload(const std::string& id) {
  std::optional<domain::Upload> out;
  Status s = WithReader([&](Connection& c) -> Status {
    auto st = c.Prepare(
        "SELECT u.id, u.filename, u.content_type, u.size, u.created_at, u.uploader, "
        "m.conversation_id FROM uploads u "
        "LEFT JOIN messages m ON m.id = u.message_id AND m.deleted_at IS NULL "
        "WHERE u.id = ? AND u.complete = 1 AND u.removed = 0");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, id);
    const int rc = (*st)->Step();
    if (rc == SQLITE_DONE) return Status::Ok();
    if (rc != SQLITE_ROW) return c.Error("find upload");
    domain::Upload u;
    u.file.id = (*st)->Text(0);
    u.file.filename = (*st)->OptText(1);
    u.file.content_type = (*st)->Text(2);
    u.file.size = (*st)->Int(3);
    u.file.created_at = (*st)->Int(4);
    u.uploader = (*st)->Int(5);
    u.conversation_id = (*st)->OptInt(6);
    out = std::move(u);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<std::optional<std::string>> SqliteStore::GetUploadChunk(const std::string& id,
                                                               int64_t index) {
  std::optional<std::string> out;
  Status s = WithReader([&](Connection& c) -> Status {
    auto st = c.Prepare("SELECT data FROM upload_chunks WHERE upload_id = ? AND idx = ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, id).Bind(2, index);
    const int rc = (*st)->Step();
    if (rc == SQLITE_DONE) return Status::Ok();
    if (rc != SQLITE_ROW) return c.Error("read upload chunk");
    out = (*st)->Blob(0);
    return Status::Ok();
  });
  if (!s.ok()) return s;
  return out;
}

Result<int> SqliteStore::SweepUploads(TimeMs orphaned_before, int limit) {
  std::vector<std::string> ids;
  Status s = WithReader([&](Connection& c) -> Status {
    auto st = c.Prepare(
        "SELECT id FROM uploads WHERE (message_id IS NULL OR removed = 1) "
        "AND (removed = 1 OR created_at < ?) LIMIT ?");
    if (!st.ok()) return st.status();
    (*st)->Bind(1, orphaned_before).Bind(2, int64_t{limit});
    int rc;
    while ((rc = (*st)->Step()) == SQLITE_ROW) ids.push_back((*st)->Text(0));
    return rc == SQLITE_DONE ? Status::Ok() : c.Error("find uploads to sweep");
  });
  if (!s.ok()) return s;
  int removed = 0;
  for (const auto& id : ids) {
    // One transaction per upload (its chunks are up to MAX_UPLOAD_BYTES): sends commit
    // between them. Checked again under the write lock: attached meanwhile, it stays.
    Status gone = InTransaction([&](Connection& c) -> Status {
      auto still = c.Prepare(
          "SELECT 1 FROM uploads WHERE id = ? AND (removed = 1 OR "
          "(message_id IS NULL AND created_at < ?))");
      if (!still.ok()) return still.status();
      (*still)->Bind(1, id).Bind(2, orphaned_before);
      const int rc = (*still)->Step();
      if (rc == SQLITE_DONE) return Status::Ok();
      if (rc != SQLITE_ROW) return c.Error("check upload to sweep");
      (*still)->Reset();
      ++removed;
      return DeleteUpload(c, id);
    });
    if (!gone.ok()) return gone;
  }
  return removed;
}

}  // namespace mmchat::store::sqlite
