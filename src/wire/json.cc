#include "wire/json.h"

namespace mmchat::wire {

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

RawJson ToRaw(const Json& value) {
  return RawJson{value.dump(-1, ' ', false, Json::error_handler_t::replace)};
}

}  // namespace mmchat::wire
