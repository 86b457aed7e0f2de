// Transport-neutral request and response used between the Beast session and the handlers,
// so that handlers (and fuzzers) never touch Beast types.
#pragma once

#include <cstdint>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace mmchat::http {

struct Request {
  std::string method;                         // "GET", "POST", ...
  std::string path;                           // without the query string
  std::map<std::string, std::string> query;   // percent-decoded
  std::map<std::string, std::string> params;  // path parameters, e.g. "id" for /users/:id
  std::string authorization;                  // the Authorization header, or empty
  // Headers only some routes read (empty when absent).
  std::string content_type;
  std::string range;
  std::string if_none_match;
  std::optional<uint64_t> content_length;  // of a streamed body, when the client sent one
  std::string client_address;              // the peer's IP address, e.g. "203.0.113.7"
  std::string request_id;                  // X-Request-Id (http/request_id.h)
  std::string body;
  int64_t user_id = 0;  // the authenticated caller, set for routes that require a token

  std::optional<std::string> Query(const std::string& key) const {
    auto it = query.find(key);
    if (it == query.end()) return std::nullopt;
    return it->second;
  }
};

struct Response;

// A response body too big to hold whole (a download): produced piece by piece.
class BodySource {
 public:
  virtual ~BodySource() = default;
  // The next piece; empty once every byte was given. May block: it runs off the io threads
  // (Dispatcher::RunBody). An error after the headers went out cuts the response short.
  virtual Result<std::string> Next() = 0;
};

// Where a streamed request body goes (an upload), piece by piece, in order. Every call may
// block: they run off the io threads (Dispatcher::RunBody), one at a time.
class BodySink {
 public:
  virtual ~BodySink() = default;
  // An error ends the request with that error (the rest of the body is not read).
  virtual Status Write(std::string_view piece) = 0;
  // After the last piece: the response.
  virtual Response Finish() = 0;
  // The body did not arrive whole (or Write failed): undo what was kept.
  virtual void Abort() = 0;
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";  // empty: no Content-Type header
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
  // Set: the body comes from here instead, `stream_length` bytes in all.
  std::shared_ptr<BodySource> stream;
  uint64_t stream_length = 0;
  // The route that answered, for the access log (set by the Dispatcher; it outlives the
  // response).
  std::string_view route;
};

// The caller's token. Where `query_allowed` (the WebSocket upgrade, downloads linked from a
// page), `?token=` wins whenever the query has it, even empty; otherwise the bearer token of
// the Authorization header. Empty when there is none.
std::string_view RequestToken(const Request& req, bool query_allowed);

// Splits "a=1&b=x%20y" into a map; '+' is a space. Malformed escapes are kept literally.
std::map<std::string, std::string> ParseQuery(std::string_view query);
// %XX escapes decoded (a malformed one is kept as it is); `+` is a space in a query string,
// itself in a path segment.
std::string PercentDecode(std::string_view s, bool plus_is_space = true);

}  // namespace mmchat::http
