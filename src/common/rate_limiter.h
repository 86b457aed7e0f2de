// Token buckets by key (a user id, a client address): each key may spend `burst` requests at
// once and regains `per_second` of them every second. Used for API abuse limits.
// Thread-safe. Memory stays bounded: keys whose bucket has refilled are forgotten, since a
// fresh bucket is the same as a full one.
#pragma once

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <mutex>
#include <unordered_map>

#include "common/time.h"

namespace mmchat {

template <typename Key, typename Hash = std::hash<Key>>
class RateLimiter {
 public:
  // per_second <= 0: unlimited (TryTake always allows).
  RateLimiter(double per_second, double burst)
      : per_ms_(per_second / 1000.0), burst_(std::max(burst, 1.0)) {}

  bool enabled() const { return per_ms_ > 0; }

  // Spends one request of `key` at `now_ms` (a monotonic clock). Returns 0 when allowed, or
  // else the milliseconds until one request is available again (nothing is spent).
  int64_t TryTake(const Key& key, TimeMs now_ms) {
    if (!enabled()) return 0;
    std::lock_guard lock(mu_);
    if (buckets_.size() >= prune_at_) Prune(now_ms);
    auto [it, fresh] = buckets_.try_emplace(key, Bucket{burst_, now_ms});
    Bucket& b = it->second;
    if (!fresh) {
      // A clock that went back gives nothing (and takes nothing).
      const TimeMs elapsed = std::max<TimeMs>(0, now_ms - b.at);
      b.tokens = std::min(burst_, b.tokens + static_cast<double>(elapsed) * per_ms_);
      b.at = std::max(b.at, now_ms);
    }
    if (b.tokens >= 1.0) {
      b.tokens -= 1.0;
      return 0;
    }
    return std::max<int64_t>(1, static_cast<int64_t>(std::ceil((1.0 - b.tokens) / per_ms_)));
  }

  size_t keys() const {
    std::lock_guard lock(mu_);
    return buckets_.size();
  }

 private:
  struct Bucket {
    double tokens;
    TimeMs at;  // when `tokens` was last brought up to date
  };

  // Drops the keys that are full again; the next prune comes when the map has doubled.
  void Prune(TimeMs now_ms) {
    std::erase_if(buckets_, [&](const auto& kv) {
      const Bucket& b = kv.second;
      return b.tokens + static_cast<double>(now_ms - b.at) * per_ms_ >= burst_;
    });
    prune_at_ = std::max<size_t>(kMinPruneAt, 2 * buckets_.size());
  }

  static constexpr size_t kMinPruneAt = 1024;
  const double per_ms_;
  const double burst_;
  mutable std::mutex mu_;
  std::unordered_map<Key, Bucket, Hash> buckets_;
  size_t prune_at_ = kMinPruneAt;
};

}  // namespace mmchat
