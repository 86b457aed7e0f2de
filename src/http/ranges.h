// The HTTP of downloads (RFC 9110): a Range header, If-None-Match, and Content-Disposition.
// Pure functions.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace mmchat::http {

struct ByteRange {
  enum class Kind {
    kWhole,          // no Range, or one this server ignores (another unit, several ranges,
                     // bad syntax): the whole body, 200
    kPart,           // bytes first..last (inclusive): 206
    kUnsatisfiable,  // starts past the end (or asks for nothing): 416
  };
  Kind kind = Kind::kWhole;
  int64_t first = 0;
  int64_t last = 0;
};

// One `bytes=` range of a body of `size` bytes: `a-b`, `a-` or `-n` (the last n bytes).
ByteRange ParseRange(std::string_view header, int64_t size);

// Whether an If-None-Match header holds `etag` (or `*`): weak comparison, as RFC 9110 asks.
bool IfNoneMatchHolds(std::string_view header, std::string_view etag);

// `inline` or `attachment`, with the filename when there is one: a plain-ASCII `filename`
// for old clients and the exact name as RFC 8187's `filename*`.
std::string ContentDisposition(bool shown_inline, const std::optional<std::string>& filename);

}  // namespace mmchat::http
