#include "domain/user_cache.h"

namespace mmchat::domain {

UserCache::UserCache(UserStore* users, EventBus* bus, std::function<TimeMs()> steady_now,
                     TimeMs ttl_ms, size_t max_entries)
    : users_(users),
      steady_now_(std::move(steady_now)),
      ttl_ms_(ttl_ms),
      max_per_shard_(max_entries / kShards + 1) {
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

std::optional<CachedUser> UserCache::Peek(int64_t id) {
  Shard& s = ShardOf(id);
  std::lock_guard lock(s.mu);
  auto it = s.entries.find(id);
  if (it == s.entries.end() || it->second.expires_at <= steady_now_()) return std::nullopt;
  return it->second.value;
}

Result<std::optional<CachedUser>> UserCache::Find(int64_t id) {
  if (auto kept = Peek(id)) return kept;
  return Reload(id);
}

uint64_t UserCache::EpochOf(Shard& s) {
  std::lock_guard lock(s.mu);
  return s.epoch;
}

Result<std::optional<CachedUser>> UserCache::Reload(int64_t id) {
  const uint64_t epoch = EpochOf(ShardOf(id));  // before the read: see Put
  auto rec = users_->FindUserById(id);
  if (!rec.ok()) return rec.status();
  if (!rec->has_value()) return std::optional<CachedUser>();
  CachedUser value{std::move((*rec)->user), (*rec)->token_version};
  value.user.online = false;
  Put(value, epoch);
  return std::optional<CachedUser>(std::move(value));
}

void UserCache::Put(const CachedUser& value, uint64_t epoch) {
  Shard& s = ShardOf(value.user.id);
  std::lock_guard lock(s.mu);
  // A change after the read began moved the epoch (this read is refused); a later one will
  // erase what this puts.
  if (s.epoch != epoch) return;
  if (s.entries.size() >= max_per_shard_ && !s.entries.contains(value.user.id)) s.entries.clear();
  s.entries[value.user.id] = Entry{value, steady_now_() + ttl_ms_};
}

void UserCache::ForgetAll() {
  for (Shard& s : shards_) {
    std::lock_guard lock(s.mu);
    ++s.epoch;
    s.entries.clear();
  }
}

void UserCache::Forget(int64_t id) {
  Shard& s = ShardOf(id);
  std::lock_guard lock(s.mu);
  ++s.epoch;
  s.entries.erase(id);
}

}  // namespace mmchat::domain
