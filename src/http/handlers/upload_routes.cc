// /api/uploads: API.md's Attachments section. Uploads are streamed into the store piece by
// piece (Router::AddUpload), downloads streamed out of it (BodySource): neither is ever whole
// in memory. The HTTP of a download (ETag, Range, the headers that keep an uploaded file from
// running as a page of this origin) lives here; who may download lives in the domain.
#include <algorithm>

#include "domain/upload_service.h"
#include "http/errors.h"
#include "http/handlers/routes.h"
#include "http/json_io.h"
#include "http/ranges.h"
#include "wire/views.h"

namespace mmchat::http {
namespace {

using domain::kUploadChunkBytes;

// The upload's body goes to an UploadWriter; its Attachment is the answer.
class UploadSink final : public BodySink {
 public:
  explicit UploadSink(std::unique_ptr<domain::UploadWriter> writer) : writer_(std::move(writer)) {}
  Status Write(std::string_view piece) override { return writer_->Write(piece); }
  Response Finish() override {
    auto file = writer_->Finish();
    if (!file.ok()) {
      writer_->Abort();
      return ErrorResponse(file.status());
    }
    Response res = RawJsonResponse(201, wire::AttachmentText(*file));
    res.headers.emplace_back("Location", wire::UploadUrl(file->id));
    return res;
  }
  void Abort() override { writer_->Abort(); }

 private:
  std::unique_ptr<domain::UploadWriter> writer_;
};

// Bytes [next, end) of an upload, a chunk at a time.
class UploadSource final : public BodySource {
 public:
  UploadSource(domain::UploadService* uploads, std::string id, int64_t first, int64_t end)
      : uploads_(uploads), id_(std::move(id)), next_(first), end_(end) {}

  Result<std::string> Next() override {
    if (next_ >= end_) return std::string();
    auto chunk = uploads_->Chunk(id_, next_ / kUploadChunkBytes);
    if (!chunk.ok()) return chunk.status();
    const auto skip = static_cast<size_t>(next_ % kUploadChunkBytes);
    if (chunk->size() <= skip) return Status::Internal("an upload's chunk is short");
    const size_t take = std::min(chunk->size() - skip, static_cast<size_t>(end_ - next_));
    next_ += static_cast<int64_t>(take);
    if (skip == 0 && take == chunk->size()) return std::move(chunk).value();
    return chunk->substr(skip, take);
  }

 private:
  domain::UploadService* uploads_;
  const std::string id_;
  int64_t next_;
  const int64_t end_;
};

Response Download(domain::UploadService* uploads, const Request& req) {
  auto found = uploads->Find(req.user_id, req.params.at("id"));
  if (!found.ok()) return ErrorResponse(found.status());
  const domain::Attachment& file = found->file;
  // Uploads never change: the id is a strong validator.
  const std::string etag = "\"" + file.id + "\"";
  std::vector<std::pair<std::string, std::string>> headers = {
      {"ETag", etag},
      {"X-Content-Type-Options", "nosniff"},
      {"Content-Security-Policy", "sandbox"},
      {"Cache-Control", "private, no-cache"},
      {"Accept-Ranges", "bytes"},
  };
  if (IfNoneMatchHolds(req.if_none_match, etag)) {
    Response res;
    res.status = 304;
    res.content_type.clear();
    res.headers = std::move(headers);
    return res;
  }
  headers.emplace_back("Content-Disposition",
                       ContentDisposition(domain::ShownInline(file.content_type), file.filename));
  const ByteRange range = ParseRange(req.range, file.size);
  if (range.kind == ByteRange::Kind::kUnsatisfiable) {
    Response res = ErrorResponse(Status::InvalidRequest("Range is past the end of the upload (" +
                                                        std::to_string(file.size) + " bytes)"));
    res.status = 416;
    res.headers.emplace_back("Content-Range", "bytes */" + std::to_string(file.size));
    return res;
  }
  Response res;
  res.content_type = file.content_type;
  res.headers = std::move(headers);
  int64_t first = 0, end = file.size;
  if (range.kind == ByteRange::Kind::kPart) {
    first = range.first;
    end = range.last + 1;
    res.status = 206;
    res.headers.emplace_back("Content-Range", "bytes " + std::to_string(range.first) + "-" +
                                                  std::to_string(range.last) + "/" +
                                                  std::to_string(file.size));
  }
  res.stream = std::make_shared<UploadSource>(uploads, file.id, first, end);
  res.stream_length = static_cast<uint64_t>(end - first);
  return res;
}

}  // namespace

void AddUploadRoutes(Router& router, domain::UploadService* uploads) {
  router.AddUpload(
      "POST", "/api/uploads",
      [uploads](Request& req) -> Result<std::shared_ptr<BodySink>> {
        auto writer = uploads->Begin({.uploader = req.user_id,
                                      .filename = req.Query("filename"),
                                      .content_type = req.content_type,
                                      .declared_size = req.content_length});
        if (!writer.ok()) return writer.status();
        return std::shared_ptr<BodySink>(std::make_shared<UploadSink>(std::move(writer).value()));
      },
      {.auth = true, .max_body = static_cast<uint64_t>(uploads->max_upload_bytes())});
  router.Add("GET", "/api/uploads/:id", [uploads](Request& req) { return Download(uploads, req); },
             {.auth = true, .query_token = true});
}

}  // namespace mmchat::http
