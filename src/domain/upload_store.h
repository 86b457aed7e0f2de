// Storage of uploads (API.md, "Attachments"), implemented by store/<backend>. The bytes live in
// the database in chunks of kUploadChunkBytes, so that every node of a cluster serves every
// upload without a shared filesystem, and no upload is ever held whole in memory. Thread-safe.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "common/time.h"
#include "domain/conversation.h"

namespace mmchat::domain {

// Every chunk but an upload's last holds exactly this many bytes: a byte offset is a chunk
// index and an offset within it.
constexpr int64_t kUploadChunkBytes = 256 * 1024;

struct Upload {
  Attachment file;  // id, filename, content_type, size, created_at
  int64_t uploader = 0;
  // The conversation of the message that carries it, while that message is not deleted.
  std::optional<int64_t> conversation_id;
};

class UploadStore {
 public:
  virtual ~UploadStore() = default;
  // A new upload, not yet complete: invisible until CompleteUpload.
  virtual Status CreateUpload(const Upload& upload) = 0;
  // Chunk `index` (0, 1, 2, ...) of an upload being written, in its own short transaction.
  // The upload's size grows by the chunk's bytes with it, so that PendingUploadBytes counts
  // an upload that is still arriving.
  virtual Status PutUploadChunk(const std::string& id, int64_t index, std::string_view bytes) = 0;
  // Every chunk is in: the upload has its size and may be downloaded and attached.
  virtual Status CompleteUpload(const std::string& id, int64_t size) = 0;
  // The upload and its chunks go (an upload that did not arrive whole).
  virtual Status RemoveUpload(const std::string& id) = 0;
  // A complete upload that was not removed (with the conversation that may read it), or nullopt.
  virtual Result<std::optional<Upload>> FindUpload(const std::string& id) = 0;
  // The bytes of `uploader`'s uploads that no message carries, complete or still arriving.
  virtual Result<int64_t> PendingUploadBytes(int64_t uploader) = 0;
  // The bytes of chunk `index`, or nullopt when there is no such chunk.
  virtual Result<std::optional<std::string>> GetUploadChunk(const std::string& id,
                                                            int64_t index) = 0;
  // Removes, with their chunks, up to `limit` uploads that are either attached to no message
  // and older than `orphaned_before` (complete or not) or carried by a deleted message.
  // Returns how many went.
  virtual Result<int> SweepUploads(TimeMs orphaned_before, int limit) = 0;
};

}  // namespace mmchat::domain
