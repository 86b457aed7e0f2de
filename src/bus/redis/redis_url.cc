#include "bus/redis/redis_url.h"

#include <charconv>

namespace mmchat::bus::redis {
namespace {

bool ParseInt(std::string_view s, int min, int max, int* out) {
  int v = 0;
  auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || end != s.data() + s.size() || v < min || v > max) {
    return false;
  }
  *out = v;
  return true;
}

Status Invalid(const std::string& why) {
  return Status::InvalidRequest("REDIS_URL must look like redis://[:password@]host:port[/db]: " +
                                why);
}

}  // namespace

Result<RedisUrl> ParseRedisUrl(std::string_view url) {
  constexpr std::string_view kScheme = "redis://";
  if (url.substr(0, kScheme.size()) != kScheme) return Invalid("the scheme is not redis://");
  std::string_view rest = url.substr(kScheme.size());
  RedisUrl out;

  // The last '@' ends the credentials: a password may contain '@'.
  if (const size_t at = rest.rfind('@'); at != std::string_view::npos) {
    const std::string_view credentials = rest.substr(0, at);
    rest = rest.substr(at + 1);
    const size_t colon = credentials.find(':');
    if (colon == std::string_view::npos) return Invalid("the password must follow a ':'");
    out.username = credentials.substr(0, colon);
    out.password = credentials.substr(colon + 1);
    if (out.password.empty()) return Invalid("the password is empty");
  }

  std::string_view authority = rest;
  if (const size_t slash = rest.find('/'); slash != std::string_view::npos) {
    authority = rest.substr(0, slash);
    const std::string_view db = rest.substr(slash + 1);
    if (!db.empty() && !ParseInt(db, 0, 1 << 20, &out.db)) {
      return Invalid("the database must be a number");
    }
  }

  std::string_view port;
  if (!authority.empty() && authority.front() == '[') {  // [IPv6]:port
    const size_t close = authority.find(']');
    if (close == std::string_view::npos) return Invalid("an IPv6 address lacks its ']'");
    out.host = authority.substr(1, close - 1);
    const std::string_view after = authority.substr(close + 1);
    if (!after.empty()) {
      if (after.front() != ':') return Invalid("unexpected text after the IPv6 address");
      port = after.substr(1);
      if (port.empty()) return Invalid("the port is empty");
    }
  } else if (const size_t colon = authority.rfind(':'); colon != std::string_view::npos) {
    out.host = authority.substr(0, colon);
    port = authority.substr(colon + 1);
    if (port.empty()) return Invalid("the port is empty");
  } else {
    out.host = authority;
  }
  if (out.host.empty()) return Invalid("the host is missing");
  if (!port.empty() && !ParseInt(port, 1, 65535, &out.port)) {
    return Invalid("the port must be a number from 1 to 65535");
  }
  return out;
}

}  // namespace mmchat::bus::redis
