#include "domain/user_service.h"

#include <algorithm>

#include "common/utf8.h"
#include "domain/validation.h"

namespace mmchat::domain {

UserService::UserService(UserStore* users, const PresenceView* presence, UserCache* cache,
                         EventBus* bus)
    : users_(users), presence_(presence), cache_(cache), bus_(bus) {}

// Online is asked before the row is read: a user stays online to readers until the last
// close's last_seen is stored, so "offline" read first means the row read after has it.
Result<User> UserService::Answer(bool online, std::optional<CachedUser> found) {
  if (!found) return Status::NotFound(kUserNotFound);
  User user = std::move(found->user);
  user.online = online;
  return user;
}

Result<User> UserService::Get(int64_t id) {
  const bool online = presence_->IsOnline(id);
  auto found = cache_->Find(id);
  if (!found.ok()) return found.status();
  return Answer(online, std::move(found).value());
}

std::optional<Result<User>> UserService::GetCached(int64_t id) {
  const bool online = presence_->IsOnline(id);
  auto kept = cache_->Peek(id);
  if (!kept) return std::nullopt;
  return Answer(online, std::move(kept));
}

Result<User> UserService::UpdateProfile(int64_t id, const ProfileUpdate& update) {
  if (update.username) {
    if (Status s = ValidateUsername(*update.username); !s.ok()) return s;
  }
  if (update.profile_picture && update.profile_picture->has_value()) {
    if (Status s = ValidateProfilePicture(**update.profile_picture); !s.ok()) return s;
  }
  if (update.username || update.profile_picture) {
    const Status s = users_->UpdateProfile(id, update);
    // Even after an error: the write may have committed before the connection was lost.
    cache_->Forget(id);
    bus_->Publish(UserChanged{id});  // for the caches of other processes
    if (!s.ok()) return s;
  }
  return Get(id);
}

Result<std::vector<User>> UserService::Search(std::string_view prefix, int limit) {
  if (Status s = ValidateText("search", prefix, 1, 32); !s.ok()) return s;
  if (limit <= 0) limit = kDefaultSearchLimit;
  limit = std::min(limit, kMaxSearchLimit);
  auto users = users_->SearchUsersByPrefix(prefix, limit);
  if (!users.ok()) return users.status();
  for (User& u : *users) u.online = presence_->IsOnline(u.id);
  return users;
}

Result<LastSeen> UserService::GetLastSeen(int64_t id) {
  auto user = Get(id);
  if (!user.ok()) return user.status();
  return LastSeen{user->id, user->online, user->last_seen};
}

}  // namespace mmchat::domain
