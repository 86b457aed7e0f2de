// The JSON text frames of API.md's WebSocket section. Server frames are serialized once into
// an immutable shared buffer that every recipient connection queues; a Status becomes an
// `ack` or `error` frame here and nowhere else.
#pragma once

#include <memory>
#include <optional>
#include <string>
#include <string_view>

#include "common/status.h"
#include "wire/json.h"

namespace mmchat::ws {

using Json = wire::Json;
using Frame = std::shared_ptr<const std::string>;

using wire::RawJson;

// {"type": type, "data": data}
Frame MakeRawFrame(std::string_view type, const RawJson& data);
Frame MakeFrame(std::string_view type, const Json& data);

// The answer to a client frame: with a `ref`, an `ack` (ok, with `result` unless the outcome
// is an empty text, or the error object); without one, an `error` event for failures and
// nothing on success.
Frame AnswerFrame(const std::optional<std::string>& ref, const Result<RawJson>& outcome);

// A client frame: a JSON object with a string `type` and an optional string `ref`. When
// parsing fails, `error` says why (and `ref` is kept if it could be read).
struct ClientFrame {
  Json body;
  std::string type;
  std::optional<std::string> ref;
  Status error;
};
ClientFrame ParseClientFrame(std::string_view text);

}  // namespace mmchat::ws
