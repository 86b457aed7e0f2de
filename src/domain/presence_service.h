// Online status and last seen (API.md's `presence` event and /api/users/:id/last-seen). The
// real-time transport counts connections and calls in when a user's first one opens or last
// one closes; this stores last_seen and announces the change. Thread-safe; the transport must
// call it in the order the transitions happened.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>

#include "common/status.h"
#include "common/time.h"
#include "domain/events.h"
#include "domain/store.h"
#include "domain/user_cache.h"

namespace mmchat::domain {

class PresenceService {
 public:
  // `cache` (may be null) forgets a user whose last_seen is stored.
  PresenceService(UserStore* users, UserCache* cache, EventBus* bus,
                  std::function<TimeMs()> now = NowMs);

  // The first connection opened: announces online, with the last_seen stored before.
  // `version` orders the announcements of one user in a cluster (PresenceChanged).
  Status WentOnline(int64_t user_id, int64_t version = 0);
  // The last connection closed: stores last_seen (`at`, else now), forgets the cached row,
  // calls `stored` (the transport stops counting the user online), then announces offline.
  // In that order, a reader that sees the user offline also sees this last_seen.
  Status WentOffline(int64_t user_id, const std::function<void()>& stored = {}, int64_t version = 0,
                     std::optional<TimeMs> at = std::nullopt);

 private:
  UserStore* users_;
  UserCache* cache_;
  EventBus* bus_;
  std::function<TimeMs()> now_;
};

}  // namespace mmchat::domain
