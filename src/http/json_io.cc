#include "http/json_io.h"

#include <charconv>

namespace mmchat::http {
namespace {

bool ParsePositive(const std::string& s, int64_t* out) {
  if (s.empty()) return false;
  int64_t v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (ec != std::errc() || end != s.data() + s.size() || v <= 0) return false;
  *out = v;
  return true;
}

}  // namespace

Result<std::optional<int64_t>> QueryInt(const Request& req, const char* name) {
  auto v = req.Query(name);
  if (!v) return std::optional<int64_t>();
  int64_t n = 0;
  if (!ParsePositive(*v, &n)) {
    return Status::InvalidRequest(std::string(name) + " must be a positive integer");
  }
  return std::optional<int64_t>(n);
}

Result<int64_t> PathId(const Request& req, const char* name) {
  auto it = req.params.find(name);
  int64_t id = 0;
  if (it == req.params.end() || !ParsePositive(it->second, &id)) {
    return Status::NotFound("not found");
  }
  return id;
}

Response JsonResponse(int status, const Json& body) {
  return RawJsonResponse(status, wire::ToRaw(body));
}

Response RawJsonResponse(int status, RawJson body) {
  Response res;
  res.status = status;
  res.body = std::move(body.text);
  return res;
}

}  // namespace mmchat::http
