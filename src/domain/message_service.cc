#include "domain/message_service.h"

#include <algorithm>
#include <map>

#include "domain/search.h"
#include "domain/upload_service.h"
#include "domain/validation.h"

namespace mmchat::domain {

MessageService::MessageService(Deps deps) : d_(std::move(deps)) {}

void MessageService::Send(int64_t caller, SendInput input,
                          std::function<void(Result<AppendResult>)> done) {
  // A message with attachments may say nothing.
  const size_t min_content = input.attachments.empty() ? 1 : 0;
  if (Status s = ValidateText("content", input.content, min_content,
                              static_cast<size_t>(d_.max_message_len));
      !s.ok()) {
    return done(s);
  }
  if (input.attachments.size() > kMaxAttachments) {
    return done(Status::InvalidRequest("attachments: at most " + std::to_string(kMaxAttachments) +
                                       " per message"));
  }
  std::vector<std::string> ids = input.attachments;
  for (const auto& id : ids) {
    // Not an id this server hands out (a store must not even be asked: NUL, huge strings).
    if (!PlausibleUploadId(id)) {
      return done(Status::InvalidRequest(
          "attachments: each must be an upload of yours not attached to another message"));
    }
  }
  std::sort(ids.begin(), ids.end());
  if (std::adjacent_find(ids.begin(), ids.end()) != ids.end()) {
    return done(Status::InvalidRequest("attachments: an upload is attached only once"));
  }
  if (input.client_id) {
    if (Status s = ValidateText("client_id", *input.client_id, 1, 64); !s.ok()) return done(s);
  }
  if (d_.send_rate == nullptr) return Append(caller, std::move(input), std::move(done));
  // After validation, so that only what would be stored counts against the sender.
  d_.send_rate->Acquire(caller, [this, caller, input = std::move(input),
                                 done = std::move(done)](int64_t wait_ms) mutable {
    if (wait_ms > 0) {
      return done(Status::RateLimited("too many messages; slow down", (wait_ms + 999) / 1000));
    }
    Append(caller, std::move(input), std::move(done));
  });
}

void MessageService::Append(int64_t caller, SendInput input,
                            std::function<void(Result<AppendResult>)> done) {
  NewMessage m;
  m.conversation_id = input.conversation_id;
  m.sender_id = caller;
  m.content = std::move(input.content);
  m.client_id = std::move(input.client_id);
  m.reply_to = input.reply_to;
  m.attachment_ids = std::move(input.attachments);
  m.created_at = d_.now();
  d_.conversations->AppendMessage(
      std::move(m), [this, caller, done = std::move(done)](Result<StoredAppend> stored) {
        if (!stored.ok()) return done(stored.status());
        switch (stored->outcome) {
          case AppendOutcome::kNoConversation:
            return done(ConversationNotFound());
          case AppendOutcome::kNotParticipant:
            return done(NotAParticipant());
          case AppendOutcome::kBadReplyTo:
            return done(Status::InvalidRequest("reply_to must be a message of this conversation"));
          case AppendOutcome::kBadAttachment:
            return done(Status::InvalidRequest(
                "attachments: each must be an upload of yours not attached to another message"));
          case AppendOutcome::kCreated:
            // Announced from the answer thread in commit order: ids reach subscribers ascending.
            d_.bus->Publish(MessageCreated{stored->message});
            return done(AppendResult{std::move(stored->message), true});
          case AppendOutcome::kRepeated: {
            // A retry returns the original, whose status may have moved on since (rare path).
            AppendResult r{std::move(stored->message), false};
            auto c = d_.access->LoadForParticipant(caller, r.message.conversation_id);
            if (c.ok()) r.message.status = StatusOf(r.message, *c, *d_.tracker);
            return done(std::move(r));
          }
        }
      });
}

void MessageService::Edit(int64_t caller, int64_t message_id, std::string content, Changed done) {
  // Empty only for a message with attachments: the store checks that (ApplyChange).
  if (Status s = ValidateText("content", content, 0, static_cast<size_t>(d_.max_message_len));
      !s.ok()) {
    return done(s);
  }
  Change({MessageChange::Kind::kEdit, message_id, caller, std::move(content), d_.now()},
         std::move(done));
}

void MessageService::Delete(int64_t caller, int64_t message_id, Changed done) {
  Change({MessageChange::Kind::kDelete, message_id, caller, "", d_.now()}, std::move(done));
}

void MessageService::React(int64_t caller, int64_t message_id, std::string emoji, bool add,
                           Changed done) {
  if (Status s = ValidateEmoji(emoji); !s.ok()) return done(s);
  Change({add ? MessageChange::Kind::kReact : MessageChange::Kind::kUnreact, message_id, caller,
          std::move(emoji), d_.now()},
         std::move(done));
}

void MessageService::Change(MessageChange change, Changed done) {
  const MessageChange::Kind kind = change.kind;
  d_.conversations->ChangeMessage(std::move(change), [this, kind, done = std::move(done)](
                                                         Result<StoredChange> stored) {
    if (!stored.ok()) return done(stored.status());
    switch (stored->outcome) {
      case ChangeOutcome::kNoMessage:
        return done(Status::NotFound("message not found"));
      case ChangeOutcome::kNotParticipant:
        return done(NotAParticipant());
      case ChangeOutcome::kNotAllowed:
        return done(Status::Forbidden(kind == MessageChange::Kind::kEdit
                                          ? "only the sender may edit a message"
                                          : "only the sender or a group admin may delete "
                                            "a message"));
      case ChangeOutcome::kDeleted:
        return done(Status::Conflict("the message was deleted"));
      case ChangeOutcome::kTooManyReactions:
        return done(Status::InvalidRequest("a message holds at most " +
                                           std::to_string(kMaxReactionEmoji) + " different emoji"));
      case ChangeOutcome::kEmptyContent:
        return done(Status::InvalidRequest(
            "content must be at least 1 character for a message without attachments"));
      case ChangeOutcome::kChanged:
      case ChangeOutcome::kUnchanged:
        break;
    }
    Message m = std::move(stored->message);
    m.status = CurrentStatus(m);
    // Announced from the answer thread in commit order: change_ids reach subscribers
    // ascending.
    if (stored->outcome == ChangeOutcome::kChanged) d_.bus->Publish(MessageUpdated{m});
    done(std::move(m));
  });
}

MessageStatus MessageService::CurrentStatus(const Message& m) {
  auto marks = d_.cache->Marks(m.conversation_id);
  if (!marks.ok()) return MessageStatus::kSent;
  return MessageStatuses(m.conversation_id, *marks, *d_.tracker).Of(m);
}

Result<MessagePage> MessageService::List(int64_t caller, int64_t conversation_id,
                                         std::optional<int64_t> before,
                                         std::optional<int64_t> after, int limit) {
  if (before && after) return Status::InvalidRequest("use either before or after, not both");
  if (limit <= 0) limit = kDefaultPage;
  limit = std::min(limit, kMaxPage);
  // The membership check is part of the read: one round trip for the usual page.
  auto rows = d_.conversations->ListMessagesFor(caller, conversation_id, before, after, limit + 1);
  if (!rows.ok()) return rows.status();
  if (rows->empty()) {
    // No messages, or not the caller's to read: the conversation says which.
    auto c = d_.access->LoadForParticipant(caller, conversation_id);
    if (!c.ok()) return c.status();
    // Joined since the first read: read again as a participant.
    rows = d_.conversations->ListMessagesFor(caller, conversation_id, before, after, limit + 1);
    if (!rows.ok()) return rows.status();
  }
  MessagePage page;
  page.messages = std::move(rows).value();
  if (static_cast<int>(page.messages.size()) > limit) {
    page.has_more = true;
    // The extra row lies beyond the page in the direction of travel.
    if (after) {
      page.messages.pop_back();
    } else {
      page.messages.erase(page.messages.begin());
    }
  }
  if (Status s = ForReader(caller, conversation_id, page.messages); !s.ok()) return s;
  return page;
}

Status MessageService::ForReader(int64_t reader, int64_t conversation_id,
                                 std::vector<Message>& messages) {
  if (messages.empty()) return Status::Ok();
  auto marks = d_.cache->Marks(conversation_id);
  if (!marks.ok()) return marks.status();
  int64_t newest = 0;  // sync pages come in change_id order, not id order
  for (const auto& m : messages) newest = std::max(newest, m.id);
  Delivered(conversation_id, *marks, reader, newest);
  const MessageStatuses statuses(conversation_id, *marks, *d_.tracker);
  for (auto& m : messages) m.status = statuses.Of(m);
  return Status::Ok();
}

Result<ReadMark> MessageService::MarkRead(int64_t caller, int64_t conversation_id,
                                          int64_t message_id) {
  auto c = d_.access->LoadForParticipant(caller, conversation_id);
  if (!c.ok()) return c.status();
  auto m = d_.conversations->GetMessage(message_id);
  if (!m.ok()) return m.status();
  if (!m->has_value() || (*m)->conversation_id != conversation_id) {
    return Status::NotFound("message not found in this conversation");
  }
  auto mark = d_.conversations->MoveReadMarker(conversation_id, caller, message_id, d_.now());
  if (!mark.ok()) return mark.status();
  if (!mark->has_value()) return NotAParticipant();  // removed since the check above
  const ReadMark& now = **mark;
  if (now.moved) {
    d_.bus->Publish(ReadReceipt{conversation_id, caller, now.message_id, now.read_at});
  }
  return now;
}

Result<SyncPage> MessageService::Sync(int64_t caller, int64_t since, int limit) {
  if (limit <= 0) limit = kDefaultSync;
  limit = std::min(limit, kMaxSync);
  auto rows = d_.conversations->MessagesSince(caller, since, limit + 1);
  if (!rows.ok()) return rows.status();
  SyncPage page;
  page.messages = std::move(rows).value();
  if (static_cast<int>(page.messages.size()) > limit) {
    page.has_more = true;
    page.messages.pop_back();
  }
  page.next_since = page.messages.empty() ? since : page.messages.back().change_id;

  // Statuses and deliveries per conversation, each conversation's markers read once.
  std::map<int64_t, std::vector<Message>> by_conversation;
  for (auto& m : page.messages) by_conversation[m.conversation_id].push_back(std::move(m));
  page.messages.clear();
  for (auto& [id, messages] : by_conversation) {
    if (Status s = ForReader(caller, id, messages); !s.ok()) return s;
    page.messages.insert(page.messages.end(), std::make_move_iterator(messages.begin()),
                         std::make_move_iterator(messages.end()));
  }
  std::sort(page.messages.begin(), page.messages.end(),
            [](const Message& a, const Message& b) { return a.change_id < b.change_id; });
  return page;
}

Result<SearchPage> MessageService::Search(int64_t caller, const SearchInput& input) {
  if (Status s = ValidateText("q", input.q, 1, kMaxSearchLen); !s.ok()) return s;
  SearchQuery query;
  query.user = caller;
  query.words = SearchWords(input.q);
  query.conversation_id = input.conversation_id;
  query.before = input.before;
  query.limit = std::min(input.limit <= 0 ? kDefaultSearch : input.limit, kMaxSearch) + 1;
  if (input.conversation_id) {
    // Someone else's conversation is an error, not an empty result.
    auto c = d_.access->LoadForParticipant(caller, *input.conversation_id);
    if (!c.ok()) return c.status();
  }
  auto rows = d_.conversations->SearchMessages(query);
  if (!rows.ok()) return rows.status();
  SearchPage page;
  page.messages = std::move(rows).value();
  if (static_cast<int>(page.messages.size()) == query.limit) {
    page.has_more = true;
    page.messages.pop_back();
  }
  for (auto& m : page.messages) m.status = CurrentStatus(m);
  return page;
}

void MessageService::DeliveredLive(int64_t conversation_id, int64_t user, int64_t up_to) {
  // Pushed messages are newer than anything stored for this user, so the stored mark is not
  // needed to decide whether the watermark moved.
  if (d_.tracker->Advance(conversation_id, user, up_to, 0)) {
    d_.bus->Publish(DeliveryReceipt{conversation_id, user, up_to, d_.now()});
  }
}

void MessageService::Delivered(int64_t conversation_id, const std::vector<ParticipantMarks>& marks,
                               int64_t reader, int64_t up_to) {
  for (const auto& me : marks) {
    if (me.user_id != reader) continue;
    if (d_.tracker->Advance(conversation_id, reader, up_to,
                            std::max(me.delivered_marker, me.read_marker))) {
      d_.bus->Publish(DeliveryReceipt{conversation_id, reader, up_to, d_.now()});
    }
    return;
  }
}

}  // namespace mmchat::domain
