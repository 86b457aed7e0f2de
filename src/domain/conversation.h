// Conversations, participants and messages as the domain passes them around.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/time.h"

namespace mmchat::domain {

enum class ConversationType { kPrivate, kGroup };
enum class Role { kAdmin, kMember };
enum class MessageStatus { kSent, kDelivered, kRead };

struct Participant {
  int64_t user_id = 0;
  std::string username;
  std::optional<std::string> profile_picture;
  Role role = Role::kMember;
  TimeMs joined_at = 0;
  int64_t read_marker = 0;        // highest message id this user has read
  std::optional<TimeMs> read_at;  // when read_marker last moved
  int64_t delivered_marker = 0;   // highest message id delivered to this user
};

// What a message's status needs of one participant (see MessageStatuses).
struct ParticipantMarks {
  int64_t user_id = 0;
  int64_t read_marker = 0;
  int64_t delivered_marker = 0;
};

// One of a user's conversations as that user stands in it (ConversationStore::ListReaderStates).
struct ReaderState {
  int64_t conversation_id = 0;
  int64_t read_marker = 0;   // the highest message id the user has read
  int64_t unread_count = 0;  // messages from others above the marker
};

// One emoji on a message and who put it there, in reaction order.
struct Reaction {
  std::string emoji;
  std::vector<int64_t> user_ids;

  bool operator==(const Reaction&) const = default;
};

// A file carried by a message (API.md's Attachment; its url is derived from the id).
struct Attachment {
  std::string id;  // the upload's opaque id
  std::optional<std::string> filename;
  std::string content_type;
  int64_t size = 0;
  TimeMs created_at = 0;

  bool operator==(const Attachment&) const = default;
};

struct Message {
  int64_t id = 0;
  int64_t conversation_id = 0;
  int64_t seq = 0;
  int64_t sender_id = 0;
  std::string content;
  std::optional<std::string> client_id;
  TimeMs created_at = 0;
  std::optional<int64_t> reply_to;  // a message of the same conversation
  std::vector<Attachment> attachments;
  std::vector<Reaction> reactions;  // each emoji once, in the order of its first reaction
  std::optional<TimeMs> edited_at;
  std::optional<TimeMs> deleted_at;  // set: content, attachments and reactions are gone
  // The position of the latest change (creation, edit, deletion, reaction), drawn from the
  // counter ids come from: equal to `id` until the message first changes.
  int64_t change_id = 0;
  MessageStatus status = MessageStatus::kSent;  // computed for the reader, never stored
  // The conversation's members_version it committed under (0: not known). Set by the
  // writers of both stores, carried by the cluster bus, never shown to clients.
  int64_t members_version = 0;
};

struct Conversation {
  int64_t id = 0;
  ConversationType type = ConversationType::kGroup;
  std::optional<std::string> name;  // null for private conversations
  int64_t created_by = 0;
  TimeMs created_at = 0;
  TimeMs last_activity = 0;
  // Moves up by one with every membership change (a participant added or removed), in the
  // change's transaction: a cluster node tells a newer member list from an older one by it.
  int64_t members_version = 0;
  std::vector<Participant> participants;  // ordered by joined_at, then user id
  // For one reader (filled in by the domain):
  std::optional<Message> last_message;
  int64_t unread_count = 0;
  int64_t last_read_message_id = 0;

  const Participant* Find(int64_t user_id) const {
    for (const auto& p : participants) {
      if (p.user_id == user_id) return &p;
    }
    return nullptr;
  }
};

struct NewMessage {
  int64_t conversation_id = 0;
  int64_t sender_id = 0;
  std::string content;
  std::optional<std::string> client_id;
  TimeMs created_at = 0;
  std::optional<int64_t> reply_to;
  std::vector<std::string> attachment_ids;  // uploads of the sender's, not yet attached
};

struct AppendResult {
  Message message;
  bool created = true;  // false: a repeated client_id returned the original
};

// What the store did with an append.
enum class AppendOutcome {
  kCreated,         // committed as a new message
  kRepeated,        // the sender's client_id was used before: `message` is the original
  kNoConversation,  // nothing stored
  kNotParticipant,  // nothing stored
  kBadReplyTo,      // reply_to is not a message of the conversation: nothing stored
  kBadAttachment,   // an attachment id is not a free upload of the sender's: nothing stored
};
struct StoredAppend {
  AppendOutcome outcome = AppendOutcome::kCreated;
  Message message;  // kCreated and kRepeated only
};

// A page of messages in ascending id order.
struct MessagePage {
  std::vector<Message> messages;
  bool has_more = false;
};

struct ReadMark {
  int64_t conversation_id = 0;
  int64_t message_id = 0;  // the marker after the call
  TimeMs read_at = 0;
  bool moved = false;
};

struct Watermark {
  int64_t conversation_id = 0;
  int64_t user_id = 0;
  int64_t message_id = 0;
};

}  // namespace mmchat::domain
