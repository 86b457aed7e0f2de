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

Result<Json> ParseObject(const std::string& body) {
  // nlohmann's parser rejects invalid UTF-8 inside strings; no exceptions escape.
  Json j = Json::parse(body, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded()) return Status::InvalidRequest("body is not valid JSON");
  if (!j.is_object()) return Status::InvalidRequest("body must be a JSON object");
  return j;
}

Result<std::string> RequiredString(const Json& obj, const char* field) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) {
    return Status::InvalidRequest(std::string(field) + " is required");
  }
  if (!it->is_string()) return Status::InvalidRequest(std::string(field) + " must be a string");
  return it->get<std::string>();
}

Result<std::vector<std::string>> RequiredStrings(const std::string& body,
                                                 std::initializer_list<const char*> fields) {
  auto obj = ParseObject(body);
  if (!obj.ok()) return obj.status();
  std::vector<std::string> out;
  for (const char* f : fields) {
    auto v = RequiredString(*obj, f);
    if (!v.ok()) return v.status();
    out.push_back(std::move(v).value());
  }
  return out;
}

Result<std::optional<std::string>> OptionalString(const Json& obj, const char* field) {
  auto it = obj.find(field);
  if (it == obj.end()) return std::optional<std::string>();
  if (!it->is_string()) return Status::InvalidRequest(std::string(field) + " must be a string");
  return std::optional<std::string>(it->get<std::string>());
}

Result<int64_t> RequiredId(const Json& obj, const char* field) {
  auto it = obj.find(field);
  if (it == obj.end() || it->is_null()) {
    return Status::InvalidRequest(std::string(field) + " is required");
  }
  if (!it->is_number_integer() || it->get<int64_t>() <= 0) {
    return Status::InvalidRequest(std::string(field) + " must be a positive integer");
  }
  return it->get<int64_t>();
}

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

RawJson ToRaw(const Json& value) {
  return RawJson{value.dump(-1, ' ', false, Json::error_handler_t::replace)};
}

Response JsonResponse(int status, const Json& body) { return RawJsonResponse(status, ToRaw(body)); }

Response RawJsonResponse(int status, RawJson body) {
  Response res;
  res.status = status;
  res.body = std::move(body.text);
  return res;
}

}  // namespace mmchat::http
