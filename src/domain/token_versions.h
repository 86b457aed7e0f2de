// The token version of recently seen users, so that checking a token (every request, every
// WebSocket upgrade) does not read the user's row each time: with PostgreSQL that read is a
// network round trip, the largest part of a small request.
//
// Entries live `ttl_ms` and are dropped at once when a user's tokens are revoked by this
// process (a reset) or by news on the bus (AccountService subscribes). A read that began
// before a revocation cannot put its old version back afterwards (the epoch check in Put). A
// token newer than the version kept is checked against the row, so a login right after a
// reset made elsewhere works at once; an older token that another process revoked, or the
// token of a user deleted behind the server's back, keeps working for at most `ttl_ms` (until
// the bus carries revocations between processes: the cluster).
//
// Thread-safe: a few mutex-guarded shards.
#pragma once

#include <array>
#include <atomic>
#include <cstdint>
#include <mutex>
#include <optional>
#include <unordered_map>

#include "common/time.h"

namespace mmchat::domain {

class TokenVersions {
 public:
  // At most about `max_entries` users are kept; a shard that fills up starts over.
  TokenVersions(TimeMs ttl_ms, size_t max_entries);

  // The version seen for `user_id` within the ttl (`now` on a steady clock), if any.
  std::optional<int64_t> Get(int64_t user_id, TimeMs now);
  // The epoch to hand back to Put: read it before reading the user's row.
  uint64_t Epoch() const { return epoch_.load(std::memory_order_acquire); }
  // Keeps `version`, unless a revocation happened since `epoch` was read.
  void Put(int64_t user_id, int64_t version, uint64_t epoch, TimeMs now);
  // Forgets the user's version (its tokens were revoked).
  void Revoke(int64_t user_id);

 private:
  struct Entry {
    int64_t version;
    TimeMs expires_at;
  };
  struct Shard {
    std::mutex mu;
    std::unordered_map<int64_t, Entry> entries;  // guarded by mu
  };
  Shard& ShardOf(int64_t user_id) { return shards_[static_cast<uint64_t>(user_id) % kShards]; }

  static constexpr size_t kShards = 16;
  const TimeMs ttl_ms_;
  const size_t max_per_shard_;
  std::atomic<uint64_t> epoch_{0};
  std::array<Shard, kShards> shards_;
};

}  // namespace mmchat::domain
