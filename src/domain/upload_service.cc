#include "domain/upload_service.h"

#include <algorithm>
#include <array>

#include "common/utf8.h"
#include "domain/validation.h"

namespace mmchat::domain {
namespace {

constexpr TimeMs kOrphanAfterMs = 24 * 60 * 60 * 1000;  // API.md: a day
constexpr int kSweepBatch = 100;

// RFC 9110's token characters, of which a media type's type and subtype are made.
bool TokenChar(char c) {
  static constexpr std::string_view kSpecials = "!#$%&'*+-.^_`|~";
  return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
         kSpecials.find(c) != std::string_view::npos;
}

bool Token(std::string_view s) { return !s.empty() && std::all_of(s.begin(), s.end(), TokenChar); }

Status UploadNotFound() { return Status::NotFound("no such upload"); }

}  // namespace

Status ValidateContentType(std::string_view content_type) {
  const auto bad = [] {
    return Status::InvalidRequest("Content-Type must be a media type such as image/png");
  };
  if (content_type.empty() || content_type.size() > 255) return bad();
  const size_t semicolon = content_type.find(';');
  const std::string_view essence = content_type.substr(0, semicolon);
  const size_t slash = essence.find('/');
  if (slash == std::string_view::npos || !Token(essence.substr(0, slash)) ||
      !Token(essence.substr(slash + 1))) {
    return bad();
  }
  // Parameters (`; charset=utf-8`) are kept as sent: printable ASCII only, as a header, and
  // no comma or quote: browsers read `image/png;x=,text/html` as text/html, while the type
  // before the `;` decides what is shown inline (ShownInline).
  for (char c : content_type.substr(essence.size())) {
    if (c < 0x20 || c > 0x7E || c == ',' || c == '"' || c == '\\') return bad();
  }
  return Status::Ok();
}

Status ValidateFilename(std::string_view filename) {
  if (Status s = ValidateText("filename", filename, 1, 255); !s.ok()) return s;
  for (size_t i = 0; i < filename.size();) {
    uint32_t c = 0;
    i += Utf8Decode(filename, i, &c);
    if (c == '/' || c == '\\' || c < 0x20 || (c >= 0x7F && c <= 0x9F)) {
      return Status::InvalidRequest("filename must not contain '/', '\\' or control characters");
    }
  }
  return Status::Ok();
}

bool PlausibleUploadId(std::string_view id) {
  return !id.empty() && id.size() <= 64 && std::all_of(id.begin(), id.end(), [](char c) {
    return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '-' ||
           c == '_';
  });
}

bool ShownInline(std::string_view content_type) {
  static constexpr std::array<std::string_view, 4> kImages = {"image/png", "image/jpeg",
                                                              "image/gif", "image/webp"};
  const std::string essence = AsciiLower(content_type.substr(0, content_type.find(';')));
  return std::find(kImages.begin(), kImages.end(), essence) != kImages.end();
}

// ---------------------------------------------------------------------------------------------
// UploadWriter
// ---------------------------------------------------------------------------------------------

Status UploadWriter::Write(std::string_view piece) {
  if (file_.size + static_cast<int64_t>(piece.size()) > service_->d_.max_upload_bytes) {
    return Status::PayloadTooLarge("an upload is at most " +
                                   std::to_string(service_->d_.max_upload_bytes) + " bytes");
  }
  file_.size += static_cast<int64_t>(piece.size());
  while (!piece.empty()) {
    const size_t take =
        std::min(piece.size(), static_cast<size_t>(kUploadChunkBytes) - pending_.size());
    pending_.append(piece.substr(0, take));
    piece.remove_prefix(take);
    if (pending_.size() == static_cast<size_t>(kUploadChunkBytes)) {
      if (Status s = Flush(); !s.ok()) return s;
    }
  }
  return Status::Ok();
}

Status UploadWriter::Flush() {
  // Checked per chunk, after the chunks stored so far (this upload's and any other arriving
  // at once) count: uploads running side by side pass the limit by less than a chunk each.
  if (Status s = service_->CheckPending(uploader_, static_cast<int64_t>(pending_.size()));
      !s.ok()) {
    return s;
  }
  Status s = service_->d_.uploads->PutUploadChunk(file_.id, next_chunk_, pending_);
  if (!s.ok()) return s;
  ++next_chunk_;
  pending_.clear();
  return Status::Ok();
}

Result<Attachment> UploadWriter::Finish() {
  if (!pending_.empty()) {
    if (Status s = Flush(); !s.ok()) return s;
  }
  if (Status s = service_->d_.uploads->CompleteUpload(file_.id, file_.size); !s.ok()) return s;
  return file_;
}

void UploadWriter::Abort() {
  // When this fails too, the sweep takes the incomplete upload after a day.
  (void)service_->d_.uploads->RemoveUpload(file_.id);
}

// ---------------------------------------------------------------------------------------------
// UploadService
// ---------------------------------------------------------------------------------------------

UploadService::UploadService(Deps deps) : d_(std::move(deps)) {}

Result<std::unique_ptr<UploadWriter>> UploadService::Begin(const UploadInput& input) {
  if (Status s = ValidateContentType(input.content_type); !s.ok()) return s;
  if (input.filename) {
    if (Status s = ValidateFilename(*input.filename); !s.ok()) return s;
  }
  if (input.declared_size && *input.declared_size > static_cast<uint64_t>(d_.max_upload_bytes)) {
    return Status::PayloadTooLarge("an upload is at most " + std::to_string(d_.max_upload_bytes) +
                                   " bytes");
  }
  Upload upload;
  upload.file.id = d_.new_id();
  upload.file.filename = input.filename;
  upload.file.content_type = input.content_type;
  upload.file.created_at = d_.now();
  upload.uploader = input.uploader;
  if (input.declared_size) {
    if (Status s = CheckPending(input.uploader, static_cast<int64_t>(*input.declared_size));
        !s.ok()) {
      return s;
    }
  }
  if (Status s = d_.uploads->CreateUpload(upload); !s.ok()) return s;
  return std::unique_ptr<UploadWriter>(
      new UploadWriter(this, input.uploader, std::move(upload.file)));
}

Status UploadService::CheckPending(int64_t uploader, int64_t more) const {
  if (d_.max_pending_bytes <= 0) return Status::Ok();
  auto pending = d_.uploads->PendingUploadBytes(uploader);
  if (!pending.ok()) return pending.status();
  if (*pending + more <= d_.max_pending_bytes) return Status::Ok();
  return Status::PayloadTooLarge("uploads not yet sent in a message are at most " +
                                 std::to_string(d_.max_pending_bytes) +
                                 " bytes per user: send or wait for the ones you have");
}

Result<Upload> UploadService::Find(int64_t caller, const std::string& id) {
  if (!PlausibleUploadId(id)) return UploadNotFound();
  auto found = d_.uploads->FindUpload(id);
  if (!found.ok()) return found.status();
  if (!*found) return UploadNotFound();
  if ((*found)->uploader == caller) return std::move(**found);
  // For anyone else the upload does not exist, not even as a 403.
  if (!(*found)->conversation_id) return UploadNotFound();
  auto conversation = d_.access->LoadForParticipant(caller, *(*found)->conversation_id);
  if (!conversation.ok()) {
    if (conversation.status().code() == StatusCode::kUnavailable) return conversation.status();
    return UploadNotFound();
  }
  return std::move(**found);
}

Result<std::string> UploadService::Chunk(const std::string& id, int64_t index) {
  auto chunk = d_.uploads->GetUploadChunk(id, index);
  if (!chunk.ok()) return chunk.status();
  // Removed while being downloaded (its message deleted, and swept).
  if (!*chunk) return UploadNotFound();
  return std::move(**chunk);
}

Result<int> UploadService::Sweep() {
  int total = 0;
  for (;;) {
    auto swept = d_.uploads->SweepUploads(d_.now() - kOrphanAfterMs, kSweepBatch);
    if (!swept.ok()) return swept.status();
    total += *swept;
    if (*swept < kSweepBatch) return total;
  }
}

}  // namespace mmchat::domain
