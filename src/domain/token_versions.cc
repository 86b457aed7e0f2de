#include "domain/token_versions.h"

namespace mmchat::domain {

TokenVersions::TokenVersions(TimeMs ttl_ms, size_t max_entries)
    : ttl_ms_(ttl_ms), max_per_shard_(max_entries / kShards + 1) {}

std::optional<int64_t> TokenVersions::Get(int64_t user_id, TimeMs now) {
  Shard& s = ShardOf(user_id);
  std::lock_guard lock(s.mu);
  auto it = s.entries.find(user_id);
  if (it == s.entries.end() || it->second.expires_at <= now) return std::nullopt;
  return it->second.version;
}

void TokenVersions::Put(int64_t user_id, int64_t version, uint64_t epoch, TimeMs now) {
  Shard& s = ShardOf(user_id);
  std::lock_guard lock(s.mu);
  // Checked under the shard's lock, which Revoke takes after moving the epoch: a revocation
  // either comes first (and this read is refused) or erases what this puts.
  if (epoch_.load(std::memory_order_acquire) != epoch) return;
  if (s.entries.size() >= max_per_shard_ && !s.entries.contains(user_id)) s.entries.clear();
  s.entries[user_id] = Entry{version, now + ttl_ms_};
}

void TokenVersions::Revoke(int64_t user_id) {
  epoch_.fetch_add(1, std::memory_order_acq_rel);
  Shard& s = ShardOf(user_id);
  std::lock_guard lock(s.mu);
  s.entries.erase(user_id);
}

}  // namespace mmchat::domain
