// Streams JSON text out with RapidJSON's writer, for the views on hot paths (message pages,
// conversation lists, pushed messages): each field is written straight into one buffer, with
// no tree of nodes to allocate, sort and free, which was most of a 200-conversation list's CPU
// with nlohmann-json. Everything else builds nlohmann-json values (wire/json.h).
#pragma once

#include <rapidjson/stringbuffer.h>
#include <rapidjson/writer.h>

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

#include "common/time.h"

namespace mmchat::wire {

// A JSON value already serialized, embedded as it is where a writer or a frame needs a value.
// An empty text means "no value" where that is allowed (an ack without a result).
struct RawJson {
  std::string text;
};

// Strings must be valid UTF-8: every string the server writes was validated on the way in
// (wire/json.h, domain/validation.h), so the writer does not check again.
class JsonWriter {
 public:
  JsonWriter& Key(std::string_view key) {
    w_.Key(key.data(), static_cast<rapidjson::SizeType>(key.size()));
    return *this;
  }
  void String(std::string_view s) {
    w_.String(s.data(), static_cast<rapidjson::SizeType>(s.size()));
  }
  void OptionalString(const std::optional<std::string>& s) { s ? String(*s) : Null(); }
  void Int(int64_t n) { w_.Int64(n); }
  void OptionalInt(const std::optional<int64_t>& n) { n ? Int(*n) : Null(); }
  void Bool(bool b) { w_.Bool(b); }
  void Null() { w_.Null(); }
  // RFC 3339 with milliseconds, as every time in API.md.
  void Time(TimeMs t) {
    char text[kRfc3339Length];
    FormatRfc3339(t, text);
    String({text, kRfc3339Length});
  }
  void OptionalTime(const std::optional<TimeMs>& t) { t ? Time(*t) : Null(); }
  void Raw(const RawJson& value) {
    w_.RawValue(value.text.data(), value.text.size(), rapidjson::kObjectType);
  }

  void BeginObject() { w_.StartObject(); }
  void EndObject() { w_.EndObject(); }
  void BeginArray() { w_.StartArray(); }
  void EndArray() { w_.EndArray(); }

  // The text written so far, as one value.
  RawJson Take() const { return RawJson{std::string(buffer_.GetString(), buffer_.GetSize())}; }

 private:
  rapidjson::StringBuffer buffer_;
  rapidjson::Writer<rapidjson::StringBuffer> w_{buffer_};
};

}  // namespace mmchat::wire
