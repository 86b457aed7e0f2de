// Recently read users (the profile and the token version), so that checking a token (every
// request, every WebSocket upgrade) and answering a profile (`GET /api/me`, `/api/users/:id`)
// do not read the user's row each time: with PostgreSQL that read is a network round trip and
// a hop to a database thread, most of the cost of a small request.
//
// An entry lives `ttl_ms`. It is forgotten at once on news that the row changed: a profile
// update (UserChanged), a password reset (TokensRevoked), a last connection closing
// (PresenceChanged, which stores last_seen). That news comes from this process's services
// through the bus, and from other processes once the bus joins them (the cluster); until then
// another process's change shows here within `ttl_ms` (docs/API.md, decision 3).
//
// A read that began before a change cannot put its old row back afterwards (expiring_cache.h).
// Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "common/status.h"
#include "common/time.h"
#include "domain/events.h"
#include "domain/expiring_cache.h"
#include "domain/store.h"
#include "domain/user.h"

namespace mmchat::domain {

// What the cache keeps of a user row: no secrets beyond the token version.
struct CachedUser {
  User user;  // `online` is never set here
  int64_t token_version = 0;
};

class UserCache {
 public:
  static constexpr TimeMs kDefaultTtlMs = 5'000;

  // `bus` may be null (no news: entries only expire). `steady_now` is a monotonic clock in
  // ms. At most about `max_entries` users are kept; a shard that fills up starts over.
  UserCache(UserStore* users, EventBus* bus, std::function<TimeMs()> steady_now,
            TimeMs ttl_ms = kDefaultTtlMs, size_t max_entries = 100'000);

  // The user if kept and fresh; nullopt means "read the row" (Find does).
  std::optional<CachedUser> Peek(int64_t id);
  // Read through: the kept user, or the row (then kept). Ok(nullopt) for an unknown id.
  Result<std::optional<CachedUser>> Find(int64_t id);
  // Reads the row whatever is kept, and keeps it.
  Result<std::optional<CachedUser>> Reload(int64_t id);
  // The row changed: drop what is kept, and refuse reads that began before.
  void Forget(int64_t id);
  // Every row may have changed (news was lost): drop everything.
  void ForgetAll();

 private:
  UserStore* users_;
  ExpiringCache<CachedUser> kept_;
};

}  // namespace mmchat::domain
