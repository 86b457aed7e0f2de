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

Result<domain::SendInput> ReadSendInput(const Json& body) {
  domain::SendInput in;
  auto conversation = RequiredId(body, "conversation_id");
  if (!conversation.ok()) return conversation.status();
  in.conversation_id = *conversation;
  // A message with attachments may say nothing, and then leave `content` out.
  const auto attachments = body.find("attachments");
  const bool has_attachments =
      attachments != body.end() && attachments->is_array() && !attachments->empty();
  if (auto it = body.find("content"); !has_attachments || (it != body.end() && !it->is_null())) {
    auto content = RequiredString(body, "content");
    if (!content.ok()) return content.status();
    in.content = std::move(content).value();
  }
  if (auto it = body.find("client_id"); it != body.end() && !it->is_null()) {
    if (!it->is_string()) return Status::InvalidRequest("client_id must be a string");
    in.client_id = it->get<std::string>();
  }
  if (auto it = body.find("reply_to"); it != body.end() && !it->is_null()) {
    auto id = RequiredId(body, "reply_to");
    if (!id.ok()) return id.status();
    in.reply_to = *id;
  }
  if (auto it = body.find("attachments"); it != body.end() && !it->is_null()) {
    if (!it->is_array()) return Status::InvalidRequest("attachments must be an array of ids");
    for (const auto& id : *it) {
      if (!id.is_string()) return Status::InvalidRequest("attachments must be an array of ids");
      in.attachments.push_back(id.get<std::string>());
    }
  }
  return in;
}

RawJson ToRaw(const Json& value) {
  return RawJson{value.dump(-1, ' ', false, Json::error_handler_t::replace)};
}

}  // namespace mmchat::wire
