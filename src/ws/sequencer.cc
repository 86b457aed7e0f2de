#include "ws/sequencer.h"

#include <algorithm>

namespace mmchat::ws {

Sequencer::Sequencer(domain::ConversationStore* store, MembershipIndex* index, Deliver deliver,
                     Learnt learnt, SequencerOptions options)
    : store_(store),
      index_(index),
      deliver_(std::move(deliver)),
      learnt_(std::move(learnt)),
      options_(options) {}

void Sequencer::Start(int64_t last_id) {
  std::lock_guard lock(mu_);
  delivered_ = std::max(delivered_, last_id);
}

int64_t Sequencer::delivered() const {
  std::lock_guard lock(mu_);
  return delivered_;
}

void Sequencer::SendLocked(const Item& item) {
  deliver_(item.message, item.update);
  delivered_ = item.position();
}

bool Sequencer::Ready(const domain::Message& m) const {
  const auto version = index_->Version(m.conversation_id);
  return version && *version >= m.members_version;
}

void Sequencer::DrainLocked(TimeMs now, bool force_first) {
  const int64_t before = delivered_;
  while (!held_.empty() && held_.begin()->first <= delivered_ + 1) {
    auto first = held_.begin();
    if (first->first == delivered_ + 1) {
      if (!force_first && !Ready(first->second.message)) break;  // waits for its members
      force_first = false;
      SendLocked(first->second);
    }
    held_.erase(first);  // sent now, or a duplicate of one sent before
  }
  // What is still held waits for a new hole, from now.
  if (delivered_ != before && !held_.empty()) waiting_since_ = now;
}

void Sequencer::Offer(const domain::Message& m, bool update, TimeMs now) {
  const Item item{m, update};
  const int64_t at = item.position();
  std::lock_guard lock(mu_);
  if (at <= delivered_) return;  // sent already (a repair found it first)
  if (at == delivered_ + 1 && Ready(m)) {
    SendLocked(item);
    DrainLocked(now);
    return;
  }
  if (held_.empty()) waiting_since_ = now;
  held_.emplace(at, item);
  if (at == delivered_ + 1) DrainLocked(now);  // a duplicate may be held already
}

void Sequencer::Recheck(TimeMs now) {
  std::lock_guard lock(mu_);
  DrainLocked(now);
}

Status Sequencer::Refresh(std::vector<int64_t> conversation_ids) {
  std::sort(conversation_ids.begin(), conversation_ids.end());
  conversation_ids.erase(std::unique(conversation_ids.begin(), conversation_ids.end()),
                         conversation_ids.end());
  if (conversation_ids.empty()) return Status::Ok();
  auto conversations = store_->GetConversations(conversation_ids);
  if (!conversations.ok()) return conversations.status();
  for (const auto& c : *conversations) {
    const auto held = index_->Version(c.id);
    if (!held || *held < c.members_version) learnt_(c);
  }
  return Status::Ok();
}

void Sequencer::Suspect() {
  std::lock_guard lock(mu_);
  suspect_ = true;
}

bool Sequencer::RepairDue(TimeMs now) {
  std::lock_guard lock(mu_);
  if (repairing_) return false;
  return suspect_ || (!held_.empty() && now - waiting_since_ >= options_.hold_ms);
}

Result<bool> Sequencer::Repair(TimeMs now) {
  int64_t from = 0;
  {
    std::lock_guard lock(mu_);
    if (repairing_) return true;
    repairing_ = true;
    suspect_ = false;
    from = delivered_;
  }
  auto done = [&](Result<bool> r) {
    std::lock_guard lock(mu_);
    repairing_ = false;
    if (!r.ok()) suspect_ = true;  // try again at the next chance
    return r;
  };
  // The next message waiting for its members: read them, then it goes out.
  std::optional<int64_t> waiting;
  {
    std::lock_guard lock(mu_);
    if (!held_.empty() && held_.begin()->first == delivered_ + 1) {
      waiting = held_.begin()->second.message.conversation_id;
    }
  }
  if (waiting) {
    if (Status s = Refresh({*waiting}); !s.ok()) return done(s);
    std::lock_guard lock(mu_);
    if (!held_.empty() && held_.begin()->first == delivered_ + 1) DrainLocked(now, true);
    from = delivered_;
  }
  for (;;) {
    // The highest position first: every one up to it has committed, so what the pages below
    // do not hold up to there was never committed, or was superseded by a later change.
    auto last = store_->LastMessageId();
    if (!last.ok()) return done(last.status());
    if (*last - from > options_.max_backlog) {
      std::lock_guard lock(mu_);
      delivered_ = std::max(delivered_, *last);
      DrainLocked(now);
      repairing_ = false;
      return false;
    }
    auto created = store_->MessagesAfter(from, options_.repair_page);
    if (!created.ok()) return done(created.status());
    auto changed = store_->ChangesAfter(from, options_.repair_page);
    if (!changed.ok()) return done(changed.status());
    // A full page ends where it ends: positions above its last may hold more of its kind.
    int64_t covered = *last;
    bool full = false;
    if (static_cast<int>(created->size()) == options_.repair_page) {
      covered = std::min(covered, created->back().id);
      full = true;
    }
    if (static_cast<int>(changed->size()) == options_.repair_page) {
      covered = std::min(covered, changed->back().change_id);
      full = true;
    }
    // A message read now comes in its current state, changes included; the change goes out
    // at its own position too (a client upserts by id).
    std::vector<Item> items;
    for (const auto& m : *created) items.push_back({m, false});
    for (const auto& m : *changed) items.push_back({m, true});
    std::sort(items.begin(), items.end(),
              [](const Item& a, const Item& b) { return a.position() < b.position(); });
    // Their members as they are now (a page does not say which version each committed
    // under; the current one is at least that).
    std::vector<int64_t> conversations;
    for (const auto& item : items) conversations.push_back(item.message.conversation_id);
    if (Status s = Refresh(std::move(conversations)); !s.ok()) return done(s);
    {
      std::lock_guard lock(mu_);
      for (const auto& item : items) {
        if (item.position() <= delivered_ || item.position() > covered) continue;
        // Positions below this one that are not on the pages were never committed.
        SendLocked(item);
      }
      delivered_ = std::max(delivered_, covered);
      DrainLocked(now);
      from = delivered_;
    }
    if (!full) return done(true);
  }
}

}  // namespace mmchat::ws
