// Delivered watermarks (per user per conversation), kept in memory and written to the store
// in batches: a delivery must not cost a database write per recipient. Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <utility>

#include "common/status.h"
#include "common/time.h"
#include "domain/conversation_store.h"

namespace mmchat::domain {

class DeliveryTracker {
 public:
  // Raises the mark of (conversation, user) to `message_id`; `stored` is the mark the caller
  // read from the store. True when the mark moved (then a delivery receipt is due).
  bool Advance(int64_t conversation_id, int64_t user_id, int64_t message_id, int64_t stored);
  // In a cluster: a mark another node announced (its delivery receipt came over the bus).
  // That node writes it in a batch of its own, so this node's reads of the store may lag it
  // by a flush period: it counts in Effective for `kHeardHoldMs` from `now`.
  void Heard(int64_t conversation_id, int64_t user_id, int64_t message_id, TimeMs now);
  // The mark including progress not yet written (here, or on another node when heard).
  int64_t Effective(int64_t conversation_id, int64_t user_id, int64_t stored) const;
  // Writes the pending marks in one store call; on failure they stay pending.
  Status Flush(ConversationStore* store);

 private:
  using Key = std::pair<int64_t, int64_t>;  // conversation, user
  mutable std::mutex mu_;
  std::map<Key, int64_t> pending_;   // guarded by mu_
  std::map<Key, int64_t> flushing_;  // being written; still counted by Effective. Guarded by mu_
  std::mutex flush_mu_;              // one flush at a time
  struct HeardMark {
    int64_t message_id = 0;
    TimeMs at = 0;
  };
  std::map<Key, HeardMark> heard_;  // guarded by mu_
  TimeMs heard_pruned_at_ = 0;      // guarded by mu_

 public:
  // Several times any node's flush period (a second): long enough for the announcing node's
  // write, short enough to keep the map small.
  static constexpr TimeMs kHeardHoldMs = 10'000;
};

}  // namespace mmchat::domain
