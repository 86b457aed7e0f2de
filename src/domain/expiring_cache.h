// A map from an id to a value read from the store, each entry kept `ttl_ms`, shared by the
// domain's read-through caches (user_cache.h, marks_cache.h).
//
// A read that began before a change must not put its old value back afterwards: a reader
// calls BeginRead(id) before reading the store and hands its ticket to Put, which refuses the
// value when news of that id (Update, Forget) came in between. Thread-safe: a few
// mutex-guarded shards; a shard that fills up starts over.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <unordered_map>
#include <utility>

#include "common/time.h"

namespace mmchat::domain {

template <typename Value>
class ExpiringCache {
 public:
  // `steady_now` is a monotonic clock in ms. At most about `max_entries` are kept.
  ExpiringCache(std::function<TimeMs()> steady_now, TimeMs ttl_ms, size_t max_entries)
      : steady_now_(std::move(steady_now)),
        ttl_ms_(ttl_ms),
        max_per_shard_(max_entries / kShards + 1) {}

  // The value if kept and fresh.
  std::optional<Value> Peek(int64_t id) {
    Shard& s = ShardOf(id);
    std::lock_guard lock(s.mu);
    auto it = s.entries.find(id);
    if (it == s.entries.end() || !it->second.value || it->second.expires_at <= steady_now_()) {
      return std::nullopt;
    }
    return it->second.value;
  }

  // Called before reading the store; see Put.
  uint64_t BeginRead(int64_t id) {
    Shard& s = ShardOf(id);
    std::lock_guard lock(s.mu);
    if (s.entries.size() >= max_per_shard_ && !s.entries.contains(id)) s.entries.clear();
    return s.entries[id].ticket = ++s.tickets;  // a later read of the same id supersedes this
  }

  // Keeps `value` read after BeginRead gave `ticket`, unless news of the id came since (it
  // may be newer than what was read) or a later read of it began.
  void Put(int64_t id, Value value, uint64_t ticket) {
    Shard& s = ShardOf(id);
    std::lock_guard lock(s.mu);
    auto it = s.entries.find(id);
    if (it == s.entries.end() || it->second.ticket != ticket) return;
    it->second.value = std::move(value);
    it->second.expires_at = steady_now_() + ttl_ms_;
  }

  // The read that `ticket` began found nothing to keep (no row, an error): drops its
  // placeholder, so that lookups of ids that do not exist do not crowd the shard.
  void EndRead(int64_t id, uint64_t ticket) {
    Shard& s = ShardOf(id);
    std::lock_guard lock(s.mu);
    auto it = s.entries.find(id);
    if (it != s.entries.end() && it->second.ticket == ticket && !it->second.value) {
      s.entries.erase(it);
    }
  }

  // Changes a kept value in place (news that only moves it forward); `change` returns false
  // when it cannot apply the news, and the value is then forgotten. A read in flight may
  // have missed the news: it is refused.
  void Update(int64_t id, const std::function<bool(Value&)>& change) {
    Shard& s = ShardOf(id);
    std::lock_guard lock(s.mu);
    auto it = s.entries.find(id);
    if (it == s.entries.end()) return;  // nothing kept, no read in flight
    if (it->second.value && change(*it->second.value)) {
      it->second.ticket = 0;
    } else {
      s.entries.erase(it);
    }
  }

  // The value changed: drop it, and refuse reads that began before.
  void Forget(int64_t id) {
    Shard& s = ShardOf(id);
    std::lock_guard lock(s.mu);
    s.entries.erase(id);
  }

  // Every value may have changed (news was lost): drop everything.
  void ForgetAll() {
    for (Shard& s : shards_) {
      std::lock_guard lock(s.mu);
      s.entries.clear();
    }
  }

 private:
  struct Entry {
    std::optional<Value> value;  // none while only a read is in flight
    TimeMs expires_at = 0;
    uint64_t ticket = 0;  // of the read allowed to Put; 0: none
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<int64_t, Entry> entries;  // guarded by mu
    uint64_t tickets = 0;                        // guarded by mu; the last one given
  };
  static constexpr size_t kShards = 16;
  Shard& ShardOf(int64_t id) { return shards_[static_cast<uint64_t>(id) % kShards]; }

  std::function<TimeMs()> steady_now_;
  const TimeMs ttl_ms_;
  const size_t max_per_shard_;
  std::array<Shard, kShards> shards_;
};

}  // namespace mmchat::domain
