// Transport-neutral request and response used between the Beast session and the handlers,
// so that handlers (and fuzzers) never touch Beast types.
#pragma once

#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <utility>
#include <vector>

namespace mmchat::http {

struct Request {
  std::string method;                         // "GET", "POST", ...
  std::string path;                           // without the query string
  std::map<std::string, std::string> query;   // percent-decoded
  std::map<std::string, std::string> params;  // path parameters, e.g. "id" for /users/:id
  std::string authorization;                  // the Authorization header, or empty
  std::string client_address;                 // the peer's IP address, e.g. "203.0.113.7"
  std::string body;
  int64_t user_id = 0;  // the authenticated caller, set for routes that require a token

  std::optional<std::string> Query(const std::string& key) const {
    auto it = query.find(key);
    if (it == query.end()) return std::nullopt;
    return it->second;
  }
};

struct Response {
  int status = 200;
  std::string content_type = "application/json";
  std::string body;
  std::vector<std::pair<std::string, std::string>> headers;  // extra headers
};

// Splits "a=1&b=x%20y" into a map; '+' is a space. Malformed escapes are kept literally.
std::map<std::string, std::string> ParseQuery(std::string_view query);
// %XX escapes decoded (a malformed one is kept as it is); `+` is a space in a query string,
// itself in a path segment.
std::string PercentDecode(std::string_view s, bool plus_is_space = true);

}  // namespace mmchat::http
