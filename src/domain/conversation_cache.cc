#include "domain/conversation_cache.h"

#include <algorithm>

#include "domain/conversation_service.h"

namespace mmchat::domain {

ConversationCache::ConversationCache(ConversationStore* conversations, EventBus* bus,
                                     std::function<TimeMs()> steady_now, TimeMs ttl_ms,
                                     size_t max_participants)
    : conversations_(conversations),
      kept_(std::move(steady_now), ttl_ms, max_participants,
            [](const Conversation& c) { return c.participants.size(); }) {
  if (bus != nullptr) bus->Subscribe([this](const Event& e) { OnEvent(e); });
}

Result<std::vector<Conversation>> ConversationCache::GetMany(const std::vector<int64_t>& ids) {
  std::vector<Conversation> out;
  out.reserve(ids.size());
  std::vector<int64_t> missing;
  for (int64_t id : ids) {
    if (!kept_.Read(id, [&](const Conversation& c) { out.push_back(c); })) missing.push_back(id);
  }
  if (missing.empty()) return out;
  auto read = Reload(missing);
  if (!read.ok()) return read.status();
  for (Conversation& c : *read) out.push_back(std::move(c));
  return out;
}

Result<std::vector<Conversation>> ConversationCache::Reload(const std::vector<int64_t>& ids) {
  std::vector<uint64_t> tickets;
  tickets.reserve(ids.size());
  for (int64_t id : ids) tickets.push_back(kept_.BeginRead(id));  // before the read: see Put
  auto read = conversations_->GetConversations(ids);
  std::vector<bool> found(ids.size(), false);
  if (read.ok()) {
    for (const Conversation& c : *read) {
      const size_t i = static_cast<size_t>(std::find(ids.begin(), ids.end(), c.id) - ids.begin());
      if (i == ids.size()) continue;
      found[i] = true;
      kept_.Put(c.id, c, tickets[i]);
    }
  }
  for (size_t i = 0; i < ids.size(); ++i) {
    if (!found[i]) kept_.EndRead(ids[i], tickets[i]);
  }
  return read;
}

Result<std::vector<ParticipantMarks>> ConversationCache::Marks(int64_t conversation_id) {
  std::vector<ParticipantMarks> marks;
  if (kept_.Read(conversation_id, [&](const Conversation& c) { marks = MarksOf(c); })) return marks;
  auto read = Reload({conversation_id});
  if (!read.ok()) return read.status();
  if (!read->empty()) marks = MarksOf(read->front());
  return marks;
}

void ConversationCache::OnEvent(const Event& e) {
  if (const auto* m = std::get_if<MessageCreated>(&e)) {
    const Message& msg = m->message;
    kept_.Update(msg.conversation_id, [&](Conversation& c) {
      Participant* sender = nullptr;
      for (auto& p : c.participants) {
        if (p.user_id == msg.sender_id) sender = &p;
      }
      if (sender == nullptr) return false;  // a participant the entry does not know
      // Sending moved the sender's read marker to the message (ConversationStore).
      sender->read_marker = std::max(sender->read_marker, msg.id);
      if (!c.last_message || c.last_message->id < msg.id) {
        c.last_message = msg;
        c.last_message->status = MessageStatus::kSent;  // computed per answer
        c.last_activity = std::max(c.last_activity, msg.created_at);
      }
      return true;
    });
  } else if (const auto* u = std::get_if<MessageUpdated>(&e)) {
    // An edit, deletion or reaction of the last message shows in the conversation list.
    const Message& msg = u->message;
    kept_.Update(msg.conversation_id, [&](Conversation& c) {
      if (!c.last_message || c.last_message->id != msg.id ||
          c.last_message->change_id >= msg.change_id) {
        return true;  // not the last message, or news the entry has already
      }
      c.last_message = msg;
      c.last_message->status = MessageStatus::kSent;  // computed per answer
      return true;
    });
  } else if (const auto* r = std::get_if<ReadReceipt>(&e)) {
    Raise(r->conversation_id, r->user_id, &Participant::read_marker, r->message_id);
  } else if (const auto* d = std::get_if<DeliveryReceipt>(&e)) {
    Raise(d->conversation_id, d->user_id, &Participant::delivered_marker, d->message_id);
  } else if (const auto* c = std::get_if<ConversationChanged>(&e)) {
    kept_.Forget(c->conversation.id);
  } else if (const auto* gone = std::get_if<ConversationRemoved>(&e)) {
    kept_.Forget(gone->conversation_id);
  } else if (const auto* u = std::get_if<UserChanged>(&e)) {
    // A username or picture shown in every conversation of the user.
    kept_.ForgetIf([id = u->user_id](const Conversation& c) { return c.Find(id) != nullptr; });
  } else if (std::holds_alternative<EventsMissed>(e)) {
    kept_.ForgetAll();  // some news of other nodes was lost: any entry may be stale
  }
}

void ConversationCache::Raise(int64_t conversation_id, int64_t user_id,
                              int64_t Participant::*marker, int64_t to) {
  kept_.Update(conversation_id, [&](Conversation& c) {
    for (auto& p : c.participants) {
      if (p.user_id != user_id) continue;
      p.*marker = std::max(p.*marker, to);
      return true;
    }
    return false;  // a participant the entry does not know: read them all again
  });
}

}  // namespace mmchat::domain
