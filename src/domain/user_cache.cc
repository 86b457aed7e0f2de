#include "domain/user_cache.h"

namespace mmchat::domain {

UserCache::UserCache(UserStore* users, EventBus* bus, std::function<TimeMs()> steady_now,
                     TimeMs ttl_ms, size_t max_entries)
    : users_(users), kept_(std::move(steady_now), ttl_ms, max_entries) {
  if (bus == nullptr) return;
  bus->Subscribe([this](const Event& e) {
    if (const auto* c = std::get_if<UserChanged>(&e)) {
      Forget(c->user_id);
    } else if (const auto* r = std::get_if<TokensRevoked>(&e)) {
      Forget(r->user_id);
    } else if (const auto* p = std::get_if<PresenceChanged>(&e); p != nullptr && !p->online) {
      Forget(p->user_id);  // last_seen was stored
    } else if (std::holds_alternative<EventsMissed>(e)) {
      ForgetAll();  // some news of other nodes was lost: any entry may be stale
    }
  });
}

std::optional<CachedUser> UserCache::Peek(int64_t id) { return kept_.Peek(id); }

Result<std::optional<CachedUser>> UserCache::Find(int64_t id) {
  if (auto kept = Peek(id)) return kept;
  return Reload(id);
}

Result<std::optional<CachedUser>> UserCache::Reload(int64_t id) {
  const uint64_t ticket = kept_.BeginRead(id);  // before the read: see ExpiringCache::Put
  auto rec = users_->FindUserById(id);
  if (!rec.ok() || !rec->has_value()) kept_.EndRead(id, ticket);
  if (!rec.ok()) return rec.status();
  if (!rec->has_value()) return std::optional<CachedUser>();
  CachedUser value{std::move((*rec)->user), (*rec)->token_version};
  value.user.online = false;
  kept_.Put(id, value, ticket);
  return std::optional<CachedUser>(std::move(value));
}

void UserCache::ForgetAll() { kept_.ForgetAll(); }

void UserCache::Forget(int64_t id) { kept_.Forget(id); }

}  // namespace mmchat::domain
