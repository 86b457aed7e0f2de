// Edits, deletions and reactions (API.md, "Replies, edits, deletions, reactions"): what a
// change request is, what the store did with it, and the one function that applies the rules
// to a message. The stores call ApplyChange inside their write transaction, on the message as
// committed, so the rules hold however many changes race.
#pragma once

#include <cstdint>
#include <string>

#include "common/time.h"
#include "domain/conversation.h"

namespace mmchat::domain {

// At most this many distinct emoji on one message.
inline constexpr size_t kMaxReactionEmoji = 20;

struct MessageChange {
  enum class Kind { kEdit, kDelete, kReact, kUnreact };
  Kind kind = Kind::kEdit;
  int64_t message_id = 0;
  int64_t actor = 0;
  std::string text;  // the new content (kEdit) or the emoji (kReact, kUnreact)
  TimeMs at = 0;
};

enum class ChangeOutcome {
  kChanged,           // committed with a new change_id
  kUnchanged,         // allowed, but there was nothing to change: no new change_id
  kNoMessage,         // no such message
  kNotParticipant,    // the actor is not in the message's conversation
  kNotAllowed,        // not the sender (edit), nor a group admin (delete)
  kDeleted,           // an edit or reaction on a deleted message
  kTooManyReactions,  // a new emoji on a message that has kMaxReactionEmoji already
  kEmptyContent,      // an edit to "" of a message without attachments
};

// What the store did; `message` is the message after the call (kChanged, kUnchanged).
struct StoredChange {
  ChangeOutcome outcome = ChangeOutcome::kChanged;
  Message message;
};

// Who the actor is in the message's conversation, read in the change's transaction.
struct ChangeActor {
  bool participant = false;
  bool group_admin = false;  // an admin of a group (private conversations have none)
};

// Applies `change` to `m` when the rules allow it and returns what happened; the change_id is
// the caller's to set on kChanged. Content is validated before (MessageService).
ChangeOutcome ApplyChange(const MessageChange& change, const ChangeActor& actor, Message& m);

}  // namespace mmchat::domain
