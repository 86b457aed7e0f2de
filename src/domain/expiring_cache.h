// A map from an id to a value read from the store, each entry kept `ttl_ms`, shared by the
// domain's read-through caches (user_cache.h, conversation_cache.h).
//
// A read that began before a change must not put its old value back afterwards: a reader
// calls BeginRead(id) before reading the store and hands its ticket to Put (or EndRead),
// which refuses the value when news of that id (Update, Forget) came in between. Reads that
// overlap do not spoil each other: under steady load some read of a busy id is always in
// flight, and one that had to wait for the others to end would never be kept. Thread-safe: a few
// mutex-guarded shards; a shard that fills up starts over. "Full" counts weight: one per
// entry, or what `weigh` says of a value (a conversation weighs its participants), so that
// the memory held stays bounded whatever the values' sizes.
#pragma once

#include <algorithm>
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
  using Weigh = std::function<size_t(const Value&)>;

  // `steady_now` is a monotonic clock in ms. At most about `max_weight` is kept: that many
  // entries, or that much of what `weigh` gives (each entry weighs at least 1).
  ExpiringCache(std::function<TimeMs()> steady_now, TimeMs ttl_ms, size_t max_weight,
                Weigh weigh = nullptr)
      : steady_now_(std::move(steady_now)),
        ttl_ms_(ttl_ms),
        max_per_shard_(max_weight / kShards + 1),
        weigh_(std::move(weigh)) {}

  // The value if kept and fresh.
  std::optional<Value> Peek(int64_t id) {
    std::optional<Value> out;
    Read(id, [&](const Value& v) { out = v; });
    return out;
  }

  // Calls `use` with the value, under the shard's lock, if kept and fresh (no copy); `use`
  // must be quick and must not call the cache. Returns whether it did.
  template <typename Use>
  bool Read(int64_t id, Use&& use) {
    Shard& s = ShardOf(id);
    std::lock_guard lock(s.mu);
    auto it = s.entries.find(id);
    if (it == s.entries.end() || !it->second.value || it->second.expires_at <= steady_now_()) {
      return false;
    }
    use(*it->second.value);
    return true;
  }

  // Called before reading the store; every call ends in one Put or EndRead.
  uint64_t BeginRead(int64_t id) {
    Shard& s = ShardOf(id);
    std::lock_guard lock(s.mu);
    auto it = s.entries.find(id);
    if (it == s.entries.end()) {
      if (s.weight >= max_per_shard_) Clear(s);
      it = s.entries.emplace(id, Entry{.valid_from = s.tickets + 1}).first;
      s.weight += 1;
    }
    ++it->second.reads;
    return ++s.tickets;
  }

  // Keeps `value` read after BeginRead gave `ticket`, unless news of the id came since (it
  // may be newer than what was read) or a read that began later was kept already.
  void Put(int64_t id, Value value, uint64_t ticket) {
    Shard& s = ShardOf(id);
    std::lock_guard lock(s.mu);
    auto it = s.entries.find(id);
    if (it == s.entries.end()) return;  // forgotten meanwhile
    Entry& e = it->second;
    if (e.reads > 0) --e.reads;
    if (ticket < e.valid_from || ticket < e.value_ticket) return;
    e.value = std::move(value);
    e.value_ticket = ticket;
    Reweigh(s, e);
    e.expires_at = steady_now_() + ttl_ms_;
  }

  // The read that `ticket` began found nothing to keep (no row, an error): once no read of
  // the id is in flight, drops the placeholder, so that lookups of ids that do not exist do
  // not crowd the shard.
  void EndRead(int64_t id, uint64_t ticket) {
    (void)ticket;  // kept for symmetry with Put: every BeginRead ends in one of the two
    Shard& s = ShardOf(id);
    std::lock_guard lock(s.mu);
    auto it = s.entries.find(id);
    if (it == s.entries.end()) return;
    if (it->second.reads > 0) --it->second.reads;
    if (!it->second.value && it->second.reads == 0) Erase(s, it);
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
      it->second.valid_from = s.tickets + 1;  // reads in flight may have missed the news
      Reweigh(s, it->second);                 // the change may have made it bigger
    } else {
      Erase(s, it);
    }
  }

  // The value changed: drop it, and refuse reads that began before.
  void Forget(int64_t id) {
    Shard& s = ShardOf(id);
    std::lock_guard lock(s.mu);
    if (auto it = s.entries.find(id); it != s.entries.end()) Erase(s, it);
  }

  // Drops every value `stale` says may have changed, and every read in flight (it cannot be
  // told whether it read before the change). Walks the whole cache: for rare news.
  void ForgetIf(const std::function<bool(const Value&)>& stale) {
    for (Shard& s : shards_) {
      std::lock_guard lock(s.mu);
      for (auto it = s.entries.begin(); it != s.entries.end();) {
        if (!it->second.value || stale(*it->second.value)) {
          it = Erase(s, it);
        } else {
          ++it;
        }
      }
    }
  }

  // Every value may have changed (news was lost): drop everything.
  void ForgetAll() {
    for (Shard& s : shards_) {
      std::lock_guard lock(s.mu);
      Clear(s);
    }
  }

 private:
  struct Entry {
    std::optional<Value> value;  // none while only reads are in flight
    TimeMs expires_at = 0;
    uint64_t valid_from = 0;    // the first ticket that began after the last news
    uint64_t value_ticket = 0;  // of the read that put the value
    uint32_t reads = 0;         // in flight
    size_t weight = 1;
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<int64_t, Entry> entries;  // guarded by mu
    size_t weight = 0;                           // guarded by mu; of every entry
    uint64_t tickets = 0;                        // guarded by mu; the last one given
  };
  using Iterator = typename std::unordered_map<int64_t, Entry>::iterator;
  static constexpr size_t kShards = 16;
  Shard& ShardOf(int64_t id) { return shards_[static_cast<uint64_t>(id) % kShards]; }

  // Weighs the entry's value again (s.mu held).
  void Reweigh(Shard& s, Entry& e) {
    const size_t weight = weigh_ && e.value ? std::max<size_t>(1, weigh_(*e.value)) : 1;
    s.weight = s.weight - e.weight + weight;
    e.weight = weight;
  }
  Iterator Erase(Shard& s, Iterator it) {
    s.weight -= it->second.weight;
    return s.entries.erase(it);
  }
  void Clear(Shard& s) {
    s.entries.clear();
    s.weight = 0;
  }

  std::function<TimeMs()> steady_now_;
  const TimeMs ttl_ms_;
  const size_t max_per_shard_;
  const Weigh weigh_;
  std::array<Shard, kShards> shards_;
};

}  // namespace mmchat::domain
