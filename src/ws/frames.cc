#include "ws/frames.h"

#include "wire/errors.h"

namespace mmchat::ws {

Frame MakeRawFrame(std::string_view type, const RawJson& data) {
  wire::JsonWriter w;
  w.BeginObject();
  w.Key("type").String(type);
  w.Key("data").Raw(data);
  w.EndObject();
  return std::make_shared<const std::string>(w.Take().text);
}

Frame MakeFrame(std::string_view type, const Json& data) {
  return MakeRawFrame(type, wire::ToRaw(data));
}

Frame AnswerFrame(const std::optional<std::string>& ref, const Result<RawJson>& outcome) {
  if (!outcome.ok()) {
    const Status& s = outcome.status();
    Json error = wire::ErrorObject(s);
    // A frame has no Retry-After header: the seconds travel in the error object.
    if (auto retry = s.retry_after_sec()) error["retry_after"] = *retry;
    if (!ref) return MakeFrame("error", error);
    return MakeFrame("ack", {{"ref", *ref}, {"ok", false}, {"error", std::move(error)}});
  }
  if (!ref) return nullptr;
  wire::JsonWriter ack;
  ack.BeginObject();
  ack.Key("ref").String(*ref);
  ack.Key("ok").Bool(true);
  if (!outcome->text.empty()) ack.Key("result").Raw(*outcome);
  ack.EndObject();
  return MakeRawFrame("ack", ack.Take());
}

ClientFrame ParseClientFrame(std::string_view text) {
  ClientFrame f;
  auto body = wire::ParseObject(std::string(text));
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
  auto type = wire::RequiredString(f.body, "type");
  if (!type.ok()) {
    f.error = type.status();
    return f;
  }
  f.type = std::move(type).value();
  return f;
}

}  // namespace mmchat::ws
