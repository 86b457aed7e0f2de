#include "domain/presence_service.h"

namespace mmchat::domain {

PresenceService::PresenceService(UserStore* users, UserCache* cache, EventBus* bus,
                                 std::function<TimeMs()> now)
    : users_(users), cache_(cache), bus_(bus), now_(std::move(now)) {}

Status PresenceService::WentOnline(int64_t user_id, int64_t version) {
  auto rec = users_->FindUserById(user_id);
  if (!rec.ok()) return rec.status();
  if (!rec->has_value()) return Status::NotFound(kUserNotFound);
  bus_->Publish(PresenceChanged{user_id, true, (*rec)->user.last_seen, version});
  return Status::Ok();
}

Status PresenceService::WentOffline(int64_t user_id, const std::function<void()>& stored,
                                    int64_t version, std::optional<TimeMs> when) {
  const TimeMs at = when.value_or(now_());
  // Announced even when the write fails: the user is offline either way.
  Status s = users_->SetLastSeen(user_id, at);
  if (cache_ != nullptr) cache_->Forget(user_id);
  if (stored) stored();
  bus_->Publish(PresenceChanged{user_id, false, at, version});
  return s;
}

}  // namespace mmchat::domain
