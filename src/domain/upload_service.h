// Uploads and downloads of API.md's "Attachments": the rules on what may be uploaded, who may
// download, and the chunking of the bytes. The bytes stream through in pieces: an upload is
// never held whole in memory. Thread-safe; every call may block on the store.
#pragma once

#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "domain/conversation_service.h"
#include "domain/upload_store.h"

namespace mmchat::domain {

struct UploadInput {
  int64_t uploader = 0;
  std::optional<std::string> filename;
  std::string content_type;
  std::optional<uint64_t> declared_size;  // Content-Length, when the client sent one
};

class UploadService;

// One upload in progress: the body's pieces go in through Write, in order.
class UploadWriter {
 public:
  // Stores every whole chunk the piece completes; kPayloadTooLarge past the limit.
  Status Write(std::string_view piece);
  // The last chunk; the upload becomes visible. Its Attachment.
  Result<Attachment> Finish();
  // The body did not arrive whole: what was stored goes.
  void Abort();

 private:
  friend class UploadService;
  UploadWriter(UploadService* service, int64_t uploader, Attachment file)
      : service_(service), uploader_(uploader), file_(std::move(file)) {}
  Status Flush();

  UploadService* service_;
  int64_t uploader_;
  Attachment file_;
  std::string pending_;  // less than one chunk
  int64_t next_chunk_ = 0;
};

class UploadService {
 public:
  struct Deps {
    UploadStore* uploads;
    ConversationService* access;  // is the caller a participant of the carrying conversation
    std::function<std::string()> new_id;  // an unguessable opaque id
    int64_t max_upload_bytes = 25 * 1024 * 1024;
    // What one user's uploads that no message carries may add up to (0: no limit).
    int64_t max_pending_bytes = 0;
    std::function<TimeMs()> now = NowMs;
  };
  explicit UploadService(Deps deps);

  // Checks the upload's type, filename and declared size (against both limits), and starts it.
  Result<std::unique_ptr<UploadWriter>> Begin(const UploadInput& input);
  // The upload as `caller` may see it: kNotFound for anyone but its uploader and the
  // participants of the conversation whose (not deleted) message carries it.
  Result<Upload> Find(int64_t caller, const std::string& id);
  // The bytes of chunk `index` of a found upload.
  Result<std::string> Chunk(const std::string& id, int64_t index);
  // Uploads attached to no message for a day, and those of deleted messages, go. Returns
  // how many.
  Result<int> Sweep();

  int64_t max_upload_bytes() const { return d_.max_upload_bytes; }

 private:
  friend class UploadWriter;
  // kPayloadTooLarge when `more` bytes would take `uploader` past max_pending_bytes.
  Status CheckPending(int64_t uploader, int64_t more) const;
  Deps d_;
};

// API.md: a `type/subtype` media type (parameters such as `; charset=utf-8` allowed), and a
// filename of 1–255 characters without `/`, `\` or control characters.
Status ValidateContentType(std::string_view content_type);
Status ValidateFilename(std::string_view filename);
// Whether `id` could be an upload id (1–64 of A–Z a–z 0–9 - _): anything else names none.
bool PlausibleUploadId(std::string_view id);
// Whether a download is shown in place (`inline`): the image types browsers render safely.
bool ShownInline(std::string_view content_type);

}  // namespace mmchat::domain
