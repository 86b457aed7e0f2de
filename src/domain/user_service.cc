#include "domain/user_service.h"

#include <algorithm>

#include "common/utf8.h"
#include "domain/validation.h"

namespace mmchat::domain {

UserService::UserService(UserStore* users, const PresenceView* presence, UserCache* cache,
                         EventBus* bus)
    : users_(users), presence_(presence), cache_(cache), bus_(bus) {}

// Presence is read before the row: a user stays online to readers until the last close's
// last_seen is stored (or, in a cluster, kept by the directory, which answers with it), so
// "offline" read first means the row read after has that time, or the reading does.
Result<User> UserService::Answer(const PresenceView::Reading& presence,
                                 std::optional<CachedUser> found) {
  if (!found || found->user.status == UserStatus::kDeleted) return Status::NotFound(kUserNotFound);
  User user = std::move(found->user);
  user.online = presence.online;
  if (presence.last_seen && (!user.last_seen || *user.last_seen < *presence.last_seen)) {
    user.last_seen = presence.last_seen;  // the row here may not have it yet
  }
  return user;
}

Result<User> UserService::Get(int64_t id) {
  const auto presence = presence_->Read(id);
  auto found = cache_->Find(id);
  if (!found.ok()) return found.status();
  return Answer(presence, std::move(found).value());
}

std::optional<Result<User>> UserService::GetCached(int64_t id) {
  if (presence_->ReadBlocks()) return std::nullopt;  // not on an io thread
  const auto presence = presence_->Read(id);
  auto kept = cache_->Peek(id);
  if (!kept) return std::nullopt;
  return Answer(presence, std::move(kept));
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
