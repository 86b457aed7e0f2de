// The client JSON both transports stand on (REST bodies and WebSocket frames): parsing with
// field errors worded for clients (kInvalidRequest naming the field, per API.md) and
// serialization. The objects of API.md are in wire/views.h.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "domain/message_service.h"
#include "wire/json_writer.h"

namespace mmchat::wire {

using Json = nlohmann::json;

// The text as a JSON object (invalid JSON, invalid UTF-8 and non-objects are 400).
Result<Json> ParseObject(const std::string& body);

Result<std::string> RequiredString(const Json& obj, const char* field);
// Parses `body` as an object and reads every named string field, in order; the first
// failure (bad JSON, missing or mistyped field) is returned.
Result<std::vector<std::string>> RequiredStrings(const std::string& body,
                                                 std::initializer_list<const char*> fields);
// Absent -> nullopt; present but not a string (null included) -> 400.
Result<std::optional<std::string>> OptionalString(const Json& obj, const char* field);
// A positive integer (an id) field of a JSON object.
Result<int64_t> RequiredId(const Json& obj, const char* field);

// A message to send, as POST /api/messages and the WebSocket `message` frame carry it:
// conversation_id, content, and the optional client_id, reply_to and attachments (null is
// the same as absent).
Result<domain::SendInput> ReadSendInput(const Json& body);

// Serialized once for the wire; invalid UTF-8 (never stored, see json_writer.h) would become
// U+FFFD rather than throw.
RawJson ToRaw(const Json& value);

}  // namespace mmchat::wire
