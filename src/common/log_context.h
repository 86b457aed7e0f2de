// What a log line says beyond its message: the request it was written for, and the structured
// fields of the line itself (an access log line's method, path, status...). Set by the code
// that knows them, around the spdlog calls of this thread; app/logging.cc's formatters write
// them: as `key=value` after the message in text, as members of the line's object in JSON.
//
// Thread-local: spdlog's loggers here are synchronous, so a line is formatted on the thread
// that wrote it, while the scopes below are open. Setting a scope costs two pointer stores.
#pragma once

#include <cstdint>
#include <span>
#include <string_view>
#include <variant>

namespace mmchat::log {

// One structured field of a line: text, an integer or a number.
struct Field {
  std::string_view key;
  std::variant<std::string_view, int64_t, double> value;
};

// The spdlog logger of the access log (a line per HTTP request, app/logging.h): its lines
// below warn may wait up to a second in the output's buffer.
inline constexpr std::string_view kAccessLogger = "access";

namespace detail {
inline thread_local std::string_view request_id;
inline thread_local std::span<const Field> fields;
}  // namespace detail

// The request this thread works for, or empty.
inline std::string_view CurrentRequestId() { return detail::request_id; }
// The fields of the line being written, or none.
inline std::span<const Field> CurrentFields() { return detail::fields; }

// While it lives, every line this thread writes carries `request_id` (which must outlive it).
class RequestScope {
 public:
  explicit RequestScope(std::string_view request_id) : previous_(detail::request_id) {
    detail::request_id = request_id;
  }
  ~RequestScope() { detail::request_id = previous_; }
  RequestScope(const RequestScope&) = delete;
  RequestScope& operator=(const RequestScope&) = delete;

 private:
  std::string_view previous_;
};

// Around one spdlog call: that line carries `fields` (which must outlive it).
class FieldsScope {
 public:
  explicit FieldsScope(std::span<const Field> fields) : previous_(detail::fields) {
    detail::fields = fields;
  }
  ~FieldsScope() { detail::fields = previous_; }
  FieldsScope(const FieldsScope&) = delete;
  FieldsScope& operator=(const FieldsScope&) = delete;

 private:
  std::span<const Field> previous_;
};

}  // namespace mmchat::log
