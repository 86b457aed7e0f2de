// JSON in and out for handlers: body parsing with field errors worded for clients, and JSON
// responses. Field getters return kInvalidRequest naming the field, per API.md.
#pragma once

#include <cstdint>
#include <initializer_list>
#include <nlohmann/json.hpp>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "http/json_writer.h"
#include "http/message.h"

namespace mmchat::http {

using Json = nlohmann::json;

// The request body as a JSON object (invalid JSON, invalid UTF-8 and non-objects are 400).
Result<Json> ParseObject(const std::string& body);

Result<std::string> RequiredString(const Json& obj, const char* field);
// Parses `body` as an object and reads every named string field, in order; the first
// failure (bad JSON, missing or mistyped field) is returned.
Result<std::vector<std::string>> RequiredStrings(const std::string& body,
                                                 std::initializer_list<const char*> fields);
// Absent -> nullopt; present but not a string (null included) -> 400.
Result<std::optional<std::string>> OptionalString(const Json& obj, const char* field);

// A positive integer query parameter; absent -> nullopt.
Result<std::optional<int64_t>> QueryInt(const Request& req, const char* name);
// A positive integer (an id) field of a JSON body.
Result<int64_t> RequiredId(const Json& obj, const char* field);
// The path parameter `name` as a positive id; a non-numeric id is 404 (no such resource).
Result<int64_t> PathId(const Request& req, const char* name);

// Serialized once for the wire; invalid UTF-8 (never stored, see json_writer.h) would become
// U+FFFD rather than throw.
RawJson ToRaw(const Json& value);
Response JsonResponse(int status, const Json& body);
Response RawJsonResponse(int status, RawJson body);

}  // namespace mmchat::http
