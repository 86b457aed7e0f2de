// CORS_ALLOWED_ORIGINS (API.md, Configuration): which other origins' pages may call the API
// from a browser. Tokens travel in the Authorization header (or `?token=`), never in a
// cookie, so there is no credentials mode: an allowed origin is echoed back, with
// `Vary: Origin`, and every other origin gets no CORS headers, which the browser refuses.
#pragma once

#include <optional>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"
#include "http/message.h"

namespace mmchat::http {

class CorsPolicy {
 public:
  CorsPolicy() = default;  // off: no CORS headers, and preflights are requests like others

  // "https://app.example.com,http://localhost:5173", or "*" for any origin; empty: off. An
  // entry that is not an origin (scheme://host[:port], no path, no trailing slash) is an
  // error naming it: a browser would never send it, and nothing would ever match.
  static Result<CorsPolicy> Parse(std::string_view list);

  bool enabled() const { return any_ || !origins_.empty(); }
  bool Allows(std::string_view origin) const;

  // The headers of an answer to a request that came with `origin` (its Origin header, empty
  // when none); nothing when CORS is off.
  void AddHeaders(std::string_view origin,
                  std::vector<std::pair<std::string, std::string>>& headers) const;

  // The answer to a preflight (OPTIONS with an Origin and an Access-Control-Request-Method
  // header): `204` with what is allowed for a listed origin, `403` for any other (AddHeaders
  // still to come). nullopt when CORS is off or the request is not a preflight.
  std::optional<Response> Preflight(std::string_view method, std::string_view origin,
                                    std::string_view requested_method) const;

 private:
  bool any_ = false;
  std::vector<std::string> origins_;  // lower case
};

}  // namespace mmchat::http
