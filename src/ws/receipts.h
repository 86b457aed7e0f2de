// Delivery receipts of the messages pushed to this node's connections, batched. A message
// frame that reached a recipient's socket counts as delivered (Written, from the
// connection); the highest id per (conversation, user) waits here until the member's turn
// comes on the hub's tick, and Flush hands it to MessageService::DeliveredLive, which counts
// the deliveries and announces the DeliveryReceipt (relayed by the fan-out) when the watermark
// moved.
//
// Thread-safe.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <utility>
#include <vector>

#include "common/time.h"
#include "domain/message_service.h"
#include "ws/connection.h"
#include "ws/membership_index.h"

namespace mmchat::ws {

class Receipts {
 public:
  // `tick_ms`: how often the hub's tick calls Flush(false).
  Receipts(const MembershipIndex& index, domain::MessageService* messages, TimeMs tick_ms);

  // The first `written` frames of `batch` reached the socket of one of `user_id`'s connections.
  void Written(int64_t user_id, const std::vector<Outgoing>& batch, size_t written);
  // Counts and announces the deliveries made by pushes: those of the members whose turn it is
  // (the tick calls it), or all of them (shutdown, at the end).
  void Flush(bool all = true);

 private:
  using Key = std::pair<int64_t, int64_t>;  // conversation, user

  const MembershipIndex& index_;
  domain::MessageService* const messages_;
  const TimeMs tick_ms_;

  std::mutex delivered_mu_;
  std::map<Key, int64_t> delivered_;  // highest message id pushed; guarded by delivered_mu_
  uint64_t ticks_ = 0;  // ticks so far, for the receipt turns; guarded by delivered_mu_
};

}  // namespace mmchat::ws
