#include "ws/receipts.h"

#include <algorithm>

namespace mmchat::ws {

namespace {

// Every member's delivery receipt goes to every other member, so a busy conversation of N
// members makes up to N*(N-1) receipt frames per round. A member announces its deliveries at
// most once per period: a second, or longer in large conversations so that the receipts stay
// under about kReceiptFramesPerSec (20 s at 1,000 members). Turns are spread over the ticks
// of the period, so that no tick carries a burst that would hold up messages: by
// conversation, and in conversations over kSharedTurnMembers by member too (in small ones
// the receipts go out together, so that they share socket writes).
constexpr double kReceiptFramesPerSec = 50'000;
constexpr TimeMs kMinReceiptPeriodMs = 1'000;
constexpr TimeMs kMaxReceiptPeriodMs = 60'000;
constexpr size_t kSharedTurnMembers = 32;

// In how many ticks each member of a conversation of `members` gets one turn.
uint64_t ReceiptTurns(size_t members, TimeMs tick_ms) {
  const double n = static_cast<double>(members);
  const auto period = std::clamp<TimeMs>(static_cast<TimeMs>(n * n / kReceiptFramesPerSec * 1000),
                                         kMinReceiptPeriodMs, kMaxReceiptPeriodMs);
  return static_cast<uint64_t>(std::max<TimeMs>(1, period / tick_ms));
}

}  // namespace

Receipts::Receipts(const MembershipIndex& index, domain::MessageService* messages, TimeMs tick_ms)
    : index_(index), messages_(messages), tick_ms_(tick_ms) {}

void Receipts::Written(int64_t user_id, const std::vector<Outgoing>& batch, size_t written) {
  std::lock_guard lock(delivered_mu_);
  for (size_t i = 0; i < written; ++i) {
    const Outgoing& o = batch[i];
    if (o.message_id == 0) continue;
    int64_t& mark = delivered_[{o.conversation_id, user_id}];
    mark = std::max(mark, o.message_id);
  }
}

void Receipts::Flush(bool all) {
  std::vector<std::pair<Key, int64_t>> batch;
  {
    std::lock_guard lock(delivered_mu_);
    const uint64_t tick = all ? 0 : ++ticks_;
    // Entries are ordered by conversation: the turns are worked out once per conversation.
    for (auto it = delivered_.begin(); it != delivered_.end();) {
      const int64_t conversation = it->first.first;
      uint64_t turns = 1;
      bool shared_turn = true;
      if (!all) {
        auto members = index_.MembersOf(conversation);
        const size_t n = members ? members->size() : 0;
        turns = ReceiptTurns(n, tick_ms_);
        shared_turn = n <= kSharedTurnMembers;
      }
      for (; it != delivered_.end() && it->first.first == conversation;) {
        const auto turn = static_cast<uint64_t>(conversation) +
                          (shared_turn ? 0 : static_cast<uint64_t>(it->first.second));
        if ((tick + turn) % turns != 0) {
          ++it;
          continue;
        }
        batch.emplace_back(*it);
        it = delivered_.erase(it);
      }
    }
  }
  for (const auto& [key, id] : batch) messages_->DeliveredLive(key.first, key.second, id);
}

}  // namespace mmchat::ws
