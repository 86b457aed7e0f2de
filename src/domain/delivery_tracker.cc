#include "domain/delivery_tracker.h"

#include <algorithm>
#include <vector>

namespace mmchat::domain {

bool DeliveryTracker::Advance(int64_t conversation_id, int64_t user_id, int64_t message_id,
                              int64_t stored) {
  std::lock_guard lock(mu_);
  // A mark being written still counts (as in Effective): never announce less than it.
  if (auto f = flushing_.find({conversation_id, user_id}); f != flushing_.end()) {
    stored = std::max(stored, f->second);
  }
  auto [it, inserted] = pending_.try_emplace({conversation_id, user_id}, stored);
  if (!inserted) it->second = std::max(it->second, stored);
  if (message_id <= it->second) {
    if (inserted) pending_.erase(it);  // nothing new to write
    return false;
  }
  it->second = message_id;
  return true;
}

void DeliveryTracker::Heard(int64_t conversation_id, int64_t user_id, int64_t message_id,
                            TimeMs now) {
  std::lock_guard lock(mu_);
  HeardMark& h = heard_[{conversation_id, user_id}];
  h.message_id = std::max(h.message_id, message_id);
  h.at = now;
  if (now - heard_pruned_at_ < kHeardHoldMs) return;
  heard_pruned_at_ = now;
  std::erase_if(heard_, [now](const auto& e) { return now - e.second.at >= kHeardHoldMs; });
}

int64_t DeliveryTracker::Effective(int64_t conversation_id, int64_t user_id, int64_t stored) const {
  std::lock_guard lock(mu_);
  int64_t mark = stored;
  if (auto it = pending_.find({conversation_id, user_id}); it != pending_.end()) {
    mark = std::max(mark, it->second);
  }
  if (auto it = flushing_.find({conversation_id, user_id}); it != flushing_.end()) {
    mark = std::max(mark, it->second);
  }
  if (auto it = heard_.find({conversation_id, user_id}); it != heard_.end()) {
    mark = std::max(mark, it->second.message_id);
  }
  return mark;
}

Status DeliveryTracker::Flush(ConversationStore* store) {
  std::lock_guard flush_lock(flush_mu_);
  std::map<Key, int64_t> batch;
  {
    std::lock_guard lock(mu_);
    batch.swap(pending_);
    flushing_ = batch;
  }
  if (batch.empty()) return Status::Ok();
  std::vector<Watermark> marks;
  marks.reserve(batch.size());
  for (const auto& [key, id] : batch) marks.push_back({key.first, key.second, id});
  Status s = store->SaveDelivered(marks);
  std::lock_guard lock(mu_);
  flushing_.clear();
  if (!s.ok()) {
    // Put them back (keeping any newer progress) so the next flush retries.
    for (const auto& [key, id] : batch) {
      auto [it, inserted] = pending_.try_emplace(key, id);
      if (!inserted) it->second = std::max(it->second, id);
    }
  }
  return s;
}

}  // namespace mmchat::domain
