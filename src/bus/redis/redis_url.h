// REDIS_URL (API.md, Configuration): redis://[[user]:password@]host[:port][/db].
#pragma once

#include <string>
#include <string_view>

#include "common/status.h"

namespace mmchat::bus::redis {

struct RedisUrl {
  std::string host;  // a name or an address ([...] around an IPv6 one is removed)
  int port = 6379;
  std::string username;  // Redis 6 ACL user; empty: the default user
  std::string password;  // empty: no AUTH
  int db = 0;
};

// kInvalidRequest with a message naming what is wrong (never echoing the password).
Result<RedisUrl> ParseRedisUrl(std::string_view url);

}  // namespace mmchat::bus::redis
