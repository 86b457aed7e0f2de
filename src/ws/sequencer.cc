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

void Sequencer::SendLocked(const domain::Message& m) {
  deliver_(m);
  delivered_ = m.id;
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
      if (!force_first && !Ready(first->second)) break;  // waits for its members
      force_first = false;
      SendLocked(first->second);
    }
    held_.erase(first);  // sent now, or a duplicate of one sent before
  }
  // What is still held waits for a new hole, from now.
  if (delivered_ != before && !held_.empty()) waiting_since_ = now;
}

void Sequencer::Offer(const domain::Message& m, TimeMs now) {
  std::lock_guard lock(mu_);
  if (m.id <= delivered_) return;  // sent already (a repair found it first)
  if (m.id == delivered_ + 1 && Ready(m)) {
    SendLocked(m);
    DrainLocked(now);
    return;
  }
  if (held_.empty()) waiting_since_ = now;
  held_.emplace(m.id, m);
  if (m.id == delivered_ + 1) DrainLocked(now);  // a duplicate may be held already
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
      waiting = held_.begin()->second.conversation_id;
    }
  }
  if (waiting) {
    if (Status s = Refresh({*waiting}); !s.ok()) return done(s);
    std::lock_guard lock(mu_);
    if (!held_.empty() && held_.begin()->first == delivered_ + 1) DrainLocked(now, true);
    from = delivered_;
  }
  for (;;) {
    // The highest id first: every id up to it has committed, so what the page below does not
    // hold up to there was never committed.
    auto last = store_->LastMessageId();
    if (!last.ok()) return done(last.status());
    if (*last - from > options_.max_backlog) {
      std::lock_guard lock(mu_);
      delivered_ = std::max(delivered_, *last);
      DrainLocked(now);
      repairing_ = false;
      return false;
    }
    auto page = store_->MessagesAfter(from, options_.repair_page);
    if (!page.ok()) return done(page.status());
    const bool full = static_cast<int>(page->size()) == options_.repair_page;
    // Their members as they are now (a page does not say which version each committed
    // under; the current one is at least that).
    std::vector<int64_t> conversations;
    for (const auto& m : *page) conversations.push_back(m.conversation_id);
    if (Status s = Refresh(std::move(conversations)); !s.ok()) return done(s);
    {
      std::lock_guard lock(mu_);
      for (const auto& m : *page) {
        if (m.id <= delivered_) continue;
        // Ids below m.id that are not on the page were never committed.
        SendLocked(m);
      }
      if (!full) delivered_ = std::max(delivered_, *last);
      DrainLocked(now);
      from = delivered_;
    }
    if (!full) return done(true);
  }
}

}  // namespace mmchat::ws
