// Profile and user look-up use cases of API.md's "Users and profile" section.
// Thread-safe; every call is a quick indexed store read or write.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"
#include "domain/events.h"
#include "domain/presence.h"
#include "domain/store.h"
#include "domain/user.h"
#include "domain/user_cache.h"

namespace mmchat::domain {

struct LastSeen {
  int64_t user_id = 0;
  bool online = false;
  std::optional<TimeMs> last_seen;
};

class UserService {
 public:
  static constexpr int kDefaultSearchLimit = 20;
  static constexpr int kMaxSearchLimit = 100;

  // Reads users through `cache`; tells `bus` of profile changes (the cache hears them there).
  UserService(UserStore* users, const PresenceView* presence, UserCache* cache, EventBus* bus);

  Result<User> Get(int64_t id);
  // Get from memory alone, or nullopt when it needs the database or the cluster's presence
  // directory (then call Get).
  std::optional<Result<User>> GetCached(int64_t id);
  Result<User> UpdateProfile(int64_t id, const ProfileUpdate& update);
  // `limit` <= 0 means the default; larger than the maximum is capped.
  Result<std::vector<User>> Search(std::string_view prefix, int limit);
  Result<LastSeen> GetLastSeen(int64_t id);

 private:
  // The answer for a user that exists (`found`) or not, `presence` as read before the row.
  Result<User> Answer(const PresenceView::Reading& presence, std::optional<CachedUser> found);

  UserStore* users_;
  const PresenceView* presence_;
  UserCache* cache_;
  EventBus* bus_;
};

}  // namespace mmchat::domain
