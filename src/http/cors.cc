#include "http/cors.h"

#include <algorithm>
#include <regex>

#include "common/strings.h"
#include "http/errors.h"

namespace mmchat::http {
namespace {

// What the API's routes use, and the request headers its clients send: Range and
// If-None-Match for downloads besides API.md's two.
constexpr const char* kAllowedMethods = "GET, POST, PUT, PATCH, DELETE";
constexpr const char* kAllowedHeaders = "Authorization, Content-Type, If-None-Match, Range";
// Response headers a page may read beyond the safelisted ones (Content-Type, Content-Length,
// ...): where an upload is, a download's validators and range, and a 429's wait.
constexpr const char* kExposedHeaders =
    "Location, ETag, Content-Range, Content-Disposition, Accept-Ranges, Retry-After";
// How long a browser may keep a preflight's answer (Chromium keeps at most 2 hours).
constexpr const char* kMaxAgeSec = "600";

}  // namespace

Result<CorsPolicy> CorsPolicy::Parse(std::string_view list) {
  static const std::regex kOrigin(
      R"(https?://([a-z0-9-]+(\.[a-z0-9-]+)*|\[[0-9a-f:.]+\])(:[0-9]{1,5})?)");
  CorsPolicy out;
  if (TrimBlanks(list).empty()) return out;
  size_t at = 0;
  while (at <= list.size()) {
    const size_t comma = std::min(list.find(',', at), list.size());
    const std::string entry = AsciiLower(TrimBlanks(list.substr(at, comma - at)));
    at = comma + 1;
    if (entry == "*") {
      out.any_ = true;
    } else if (std::regex_match(entry, kOrigin)) {
      out.origins_.push_back(entry);
    } else {
      return Status::InvalidRequest(
          "CORS_ALLOWED_ORIGINS: \"" + entry +
          "\" is not an origin (scheme://host[:port], no path or trailing slash) nor *");
    }
  }
  return out;
}

bool CorsPolicy::Allows(std::string_view origin) const {
  if (origin.empty()) return false;
  if (any_) return true;
  const std::string lower = AsciiLower(origin);
  return std::find(origins_.begin(), origins_.end(), lower) != origins_.end();
}

void CorsPolicy::AddHeaders(std::string_view origin,
                            std::vector<std::pair<std::string, std::string>>& headers) const {
  if (!enabled()) return;
  // Caches must not hand one origin's answer to another.
  headers.emplace_back("Vary", "Origin");
  if (!Allows(origin)) return;
  headers.emplace_back("Access-Control-Allow-Origin", std::string(origin));
  headers.emplace_back("Access-Control-Expose-Headers", kExposedHeaders);
}

std::optional<Response> CorsPolicy::Preflight(std::string_view method, std::string_view origin,
                                              std::string_view requested_method) const {
  if (!enabled() || method != "OPTIONS" || origin.empty() || requested_method.empty()) {
    return std::nullopt;
  }
  if (!Allows(origin)) {
    return ErrorResponse(
        Status::Forbidden("origin not allowed: CORS_ALLOWED_ORIGINS does not list it"));
  }
  Response res;
  res.status = 204;
  res.content_type.clear();
  res.headers.emplace_back("Access-Control-Allow-Methods", kAllowedMethods);
  res.headers.emplace_back("Access-Control-Allow-Headers", kAllowedHeaders);
  res.headers.emplace_back("Access-Control-Max-Age", kMaxAgeSec);
  return res;
}

}  // namespace mmchat::http
