#include "domain/marks_cache.h"

#include <algorithm>

namespace mmchat::domain {

MarksCache::MarksCache(ConversationStore* conversations, EventBus* bus,
                       std::function<TimeMs()> steady_now, TimeMs ttl_ms, size_t max_entries)
    : conversations_(conversations), kept_(std::move(steady_now), ttl_ms, max_entries) {
  if (bus != nullptr) bus->Subscribe([this](const Event& e) { OnEvent(e); });
}

Result<std::vector<ParticipantMarks>> MarksCache::Get(int64_t conversation_id) {
  if (auto kept = kept_.Peek(conversation_id)) return std::move(*kept);
  const uint64_t ticket = kept_.BeginRead(conversation_id);  // before the read: see Put
  auto marks = conversations_->ListMarks(conversation_id);
  if (!marks.ok()) {
    kept_.EndRead(conversation_id, ticket);
    return marks.status();
  }
  kept_.Put(conversation_id, *marks, ticket);
  return marks;
}

void MarksCache::OnEvent(const Event& e) {
  if (const auto* m = std::get_if<MessageCreated>(&e)) {
    // Sending moved the sender's read marker to the message (ConversationStore).
    Raise(m->message.conversation_id, m->message.sender_id, &ParticipantMarks::read_marker,
          m->message.id);
  } else if (const auto* r = std::get_if<ReadReceipt>(&e)) {
    Raise(r->conversation_id, r->user_id, &ParticipantMarks::read_marker, r->message_id);
  } else if (const auto* d = std::get_if<DeliveryReceipt>(&e)) {
    Raise(d->conversation_id, d->user_id, &ParticipantMarks::delivered_marker, d->message_id);
  } else if (const auto* c = std::get_if<ConversationChanged>(&e)) {
    kept_.Forget(c->conversation.id);
  } else if (const auto* gone = std::get_if<ConversationRemoved>(&e)) {
    kept_.Forget(gone->conversation_id);
  } else if (std::holds_alternative<EventsMissed>(e)) {
    kept_.ForgetAll();  // some news of other nodes was lost: any entry may be stale
  }
}

void MarksCache::Raise(int64_t conversation_id, int64_t user_id, int64_t ParticipantMarks::*marker,
                       int64_t to) {
  kept_.Update(conversation_id, [&](std::vector<ParticipantMarks>& marks) {
    for (auto& p : marks) {
      if (p.user_id != user_id) continue;
      p.*marker = std::max(p.*marker, to);
      return true;
    }
    return false;  // a participant the entry does not know: read them all again
  });
}

}  // namespace mmchat::domain
