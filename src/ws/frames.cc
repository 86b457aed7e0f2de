#include "ws/frames.h"

#include "http/errors.h"

namespace mmchat::ws {

Frame MakeFrame(std::string_view type, const Json& data) {
  Json frame = {{"type", type}, {"data", data}};
  return std::make_shared<const std::string>(frame.dump());
}

Frame AnswerFrame(const std::optional<std::string>& ref, const Result<Json>& outcome) {
  if (!outcome.ok()) {
    const Status& s = outcome.status();
    Json error = {{"code", http::ErrorCodeFor(s.code())}, {"message", s.message()}};
    // A frame has no Retry-After header: the seconds travel in the error object.
    if (auto retry = s.retry_after_sec()) error["retry_after"] = *retry;
    if (!ref) return MakeFrame("error", error);
    return MakeFrame("ack", {{"ref", *ref}, {"ok", false}, {"error", std::move(error)}});
  }
  if (!ref) return nullptr;
  Json ack = {{"ref", *ref}, {"ok", true}};
  if (!outcome->is_null()) ack["result"] = *outcome;
  return MakeFrame("ack", ack);
}

ClientFrame ParseClientFrame(std::string_view text) {
  ClientFrame f;
  auto body = http::ParseObject(std::string(text));
  if (!body.ok()) {
    f.error = Status::InvalidRequest("frame must be a JSON object");
    return f;
  }
  f.body = std::move(body).value();
  if (auto it = f.body.find("ref"); it != f.body.end()) {
    if (!it->is_string()) {
      f.error = Status::InvalidRequest("ref must be a string");
      return f;
    }
    f.ref = it->get<std::string>();
  }
  auto type = http::RequiredString(f.body, "type");
  if (!type.ok()) {
    f.error = type.status();
    return f;
  }
  f.type = std::move(type).value();
  return f;
}

}  // namespace mmchat::ws
