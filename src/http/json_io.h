// JSON in and out for handlers: the body helpers of wire/json.h (shared with the WebSocket
// layer), query and path parameters, and JSON responses. Getters return kInvalidRequest
// naming the parameter, per API.md.
#pragma once

#include <cstdint>
#include <optional>

#include "common/status.h"
#include "http/message.h"
#include "wire/json.h"

namespace mmchat::http {

using wire::Json;
using wire::OptionalString;
using wire::ParseObject;
using wire::RawJson;
using wire::RequiredId;
using wire::RequiredString;
using wire::RequiredStrings;

// A positive integer query parameter; absent -> nullopt.
Result<std::optional<int64_t>> QueryInt(const Request& req, const char* name);
// The path parameter `name` as a positive id; a non-numeric id is 404 (no such resource).
Result<int64_t> PathId(const Request& req, const char* name);

Response JsonResponse(int status, const Json& body);
Response RawJsonResponse(int status, RawJson body);

}  // namespace mmchat::http
