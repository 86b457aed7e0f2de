#include "domain/user_service.h"

#include <algorithm>

#include "common/utf8.h"
#include "domain/validation.h"

namespace mmchat::domain {

UserService::UserService(UserStore* users, const PresenceView* presence)
    : users_(users), presence_(presence) {}

Result<User> UserService::Get(int64_t id) {
  auto rec = users_->FindUserById(id);
  if (!rec.ok()) return rec.status();
  if (!rec->has_value()) return Status::NotFound(kUserNotFound);
  User user = std::move((*rec)->user);
  user.online = presence_->IsOnline(user.id);
  return user;
}

Result<User> UserService::UpdateProfile(int64_t id, const ProfileUpdate& update) {
  if (update.username) {
    if (Status s = ValidateUsername(*update.username); !s.ok()) return s;
  }
  if (update.profile_picture && update.profile_picture->has_value()) {
    if (Status s = ValidateProfilePicture(**update.profile_picture); !s.ok()) return s;
  }
  if (update.username || update.profile_picture) {
    if (Status s = users_->UpdateProfile(id, update); !s.ok()) return s;
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
