// PostgresStore: uploads and their chunks (domain/upload_store.h). Chunks travel as binary
// bytea parameters and results, each in a statement (and transaction) of its own.
#include <string>
#include <vector>

#include "store/postgres/postgres_store.h"

namespace mmchat::store::postgres {
namespace {

constexpr const char* kPutChunk =
    "INSERT INTO upload_chunks(upload_id, idx, data) VALUES ($1, $2, $3)";
constexpr const char* kGrowUpload = "UPDATE uploads SET size = size + $2 WHERE id = $1";

// Removes one upload and its chunks when it is still one to sweep; the row lock keeps a
// message writer from attaching it meanwhile (and waits for one that is).
constexpr const char* kSweepOne = R"sql(
WITH gone AS (
  DELETE FROM uploads WHERE id = $1 AND (removed OR (message_id IS NULL AND created_at < $2))
  RETURNING id),
chunks AS (DELETE FROM upload_chunks WHERE upload_id IN (SELECT id FROM gone))
SELECT count(*) FROM gone
)sql";

}  // namespace

Status PostgresStore::CreateUpload(const domain::Upload& upload) {
  auto r = Query(
      "INSERT INTO uploads(id, uploader, filename, content_type, created_at) "
      "VALUES ($1, $2, $3, $4, $5)",
      Params()
          .Add(upload.file.id)
          .Add(upload.uploader)
          .Add(upload.file.filename)
          .Add(upload.file.content_type)
          .Add(upload.file.created_at));
  return r.ok() ? Status::Ok() : r.status();
}

Status PostgresStore::PutUploadChunk(const std::string& id, int64_t index, std::string_view bytes) {
  return WithConnection([&](PgConnection& c) -> Status {
    // One round trip. Committed without waiting for the WAL flush: CompleteUpload's commit
    // waits for it, and so makes every chunk before it durable too (the WAL is one
    // sequence). A chunk a crash takes belongs to an upload that was never answered. (A
    // flush per chunk cost a third of the upload rate.)
    auto r = c.Pipeline({{"BEGIN", {}},
                         {"SET LOCAL synchronous_commit = off", {}},
                         {kPutChunk, Params().Add(id).Add(index).AddBytes(bytes)},
                         {kGrowUpload, Params().Add(id).Add(static_cast<int64_t>(bytes.size()))},
                         {"COMMIT", {}}});
    if (!r.ok() && !c.broken() && c.InTransaction()) c.Exec("ROLLBACK");
    return r.ok() ? Status::Ok() : r.status();
  });
}

Status PostgresStore::CompleteUpload(const std::string& id, int64_t size) {
  auto r = Query("UPDATE uploads SET complete = true, size = $2 WHERE id = $1",
                 Params().Add(id).Add(size));
  return r.ok() ? Status::Ok() : r.status();
}

Status PostgresStore::RemoveUpload(const std::string& id) {
  return InTransaction([&](PgConnection& c) -> Status {
    auto chunks = c.Query("DELETE FROM upload_chunks WHERE upload_id = $1", Params().Add(id));
    if (!chunks.ok()) return chunks.status();
    auto row = c.Query("DELETE FROM uploads WHERE id = $1", Params().Add(id));
    return row.ok() ? Status::Ok() : row.status();
  });
}

Result<int64_t> PostgresStore::PendingUploadBytes(int64_t uploader) {
  auto r = Query(
      "SELECT COALESCE(SUM(size), 0)::bigint FROM uploads "
      "WHERE uploader = $1 AND message_id IS NULL AND NOT removed",
      Params().Add(uploader));
  if (!r.ok()) return r.status();
  return r->Int(0, 0);
}

Result<std::optional<domain::Upload>> PostgresStore::FindUpload(const std::string& id) {
  auto r = Query(
      "SELECT u.id, u.filename, u.content_type, u.size, u.created_at, u.uploader, "
      "m.conversation_id FROM uploads u "
      "LEFT JOIN messages m ON m.id = u.message_id AND m.deleted_at IS NULL "
      "WHERE u.id = $1 AND u.complete AND NOT u.removed",
      Params().Add(id));
  if (!r.ok()) return r.status();
  std::optional<domain::Upload> out;
  if (r->rows() == 0) return out;
  domain::Upload u;
  u.file.id = r->Text(0, 0);
  u.file.filename = r->OptText(0, 1);
  u.file.content_type = r->Text(0, 2);
  u.file.size = r->Int(0, 3);
  u.file.created_at = r->Int(0, 4);
  u.uploader = r->Int(0, 5);
  u.conversation_id = r->OptInt(0, 6);
  out = std::move(u);
  return out;
}

Result<std::optional<std::string>> PostgresStore::GetUploadChunk(const std::string& id,
                                                                 int64_t index) {
  auto r = Query("SELECT data FROM upload_chunks WHERE upload_id = $1 AND idx = $2",
                 Params().Add(id).Add(index), Planning::kPrepared, ResultFormat::kBinary);
  if (!r.ok()) return r.status();
  std::optional<std::string> out;
  if (r->rows() == 1) out = std::string(r->Bytes(0, 0));
  return out;
}

Result<int> PostgresStore::SweepUploads(TimeMs orphaned_before, int limit) {
  auto found = Query(
      "SELECT id FROM uploads WHERE (message_id IS NULL OR removed) "
      "AND (removed OR created_at < $1) LIMIT $2",
      Params().Add(orphaned_before).Add(int64_t{limit}));
  if (!found.ok()) return found.status();
  int removed = 0;
  for (int i = 0; i < found->rows(); ++i) {
    // One statement per upload: its chunks are up to MAX_UPLOAD_BYTES.
    auto r = Query(kSweepOne, Params().Add(found->Text(i, 0)).Add(orphaned_before));
    if (!r.ok()) return r.status();
    removed += static_cast<int>(r->Int(0, 0));
  }
  return removed;
}

}  // namespace mmchat::store::postgres
