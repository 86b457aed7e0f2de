// Storage of conversations, participants and messages, implemented by store/<backend>.
// Thread-safe. AppendMessage is asynchronous: the backend commits many concurrent appends in
// one transaction (group commit) and calls back only after the commit.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "domain/conversation.h"

namespace mmchat::domain {

class ConversationStore {
 public:
  virtual ~ConversationStore() = default;

  // The private conversation of the pair, created when missing; `created` says which.
  virtual Result<std::pair<int64_t, bool>> GetOrCreatePrivate(int64_t a, int64_t b, TimeMs now) = 0;
  // A group whose creator is its first admin; members join as members. kNotFound when a member
  // id is not a user.
  virtual Result<int64_t> CreateGroup(const std::string& name, int64_t creator,
                                      const std::vector<int64_t>& members, TimeMs now) = 0;
  // With its participants (usernames and pictures joined in); nullopt when there is none.
  virtual Result<std::optional<Conversation>> GetConversation(int64_t id) = 0;
  // The user's conversations, newest activity first.
  virtual Result<std::vector<int64_t>> ListConversationIds(int64_t user_id) = 0;
  // Every (conversation id, user id) membership: loads the real-time layer's index at start.
  virtual Result<std::vector<std::pair<int64_t, int64_t>>> ListMemberships() = 0;
  virtual Result<std::optional<Message>> LastMessage(int64_t conversation_id) = 0;
  // Messages from others with id above `after_id`.
  virtual Result<int64_t> CountUnread(int64_t conversation_id, int64_t user_id,
                                      int64_t after_id) = 0;

  virtual Status Rename(int64_t conversation_id, const std::string& name, TimeMs now) = 0;
  // kConflict when already a participant; kNotFound when the user does not exist.
  virtual Status AddParticipant(int64_t conversation_id, int64_t user_id, Role role,
                                TimeMs now) = 0;
  // kNotFound when not a participant; kInvalidRequest (nothing changed) when a demotion would
  // leave the conversation without an admin.
  virtual Status SetRole(int64_t conversation_id, int64_t user_id, Role role, TimeMs now) = 0;
  // Removes the participant; when no admin remains, the member with the earliest joined_at
  // becomes admin, in the same transaction.
  virtual Status RemoveParticipant(int64_t conversation_id, int64_t user_id, TimeMs now) = 0;

  // Commits the message (seq = last + 1, the sender's read marker moves to it) and calls
  // `done` after the commit, from the writer thread. A repeated (sender, client_id) returns the
  // original with created = false. kForbidden when the sender is not a participant.
  virtual void AppendMessage(NewMessage message,
                             std::function<void(Result<AppendResult>)> done) = 0;
  virtual Result<std::optional<Message>> GetMessage(int64_t id) = 0;
  // Up to `limit` messages in ascending id order: the newest ones (no cursor), the newest
  // below `before`, or the oldest above `after`.
  virtual Result<std::vector<Message>> ListMessages(int64_t conversation_id,
                                                    std::optional<int64_t> before,
                                                    std::optional<int64_t> after, int limit) = 0;
  // Up to `limit` messages with id above `since` from the user's conversations, ascending.
  virtual Result<std::vector<Message>> MessagesSince(int64_t user_id, int64_t since, int limit) = 0;

  // Moves the read marker up to `message_id` (never down), stamping read_at = `now` when it
  // moves; returns the marker after the call.
  virtual Result<ReadMark> MoveReadMarker(int64_t conversation_id, int64_t user_id,
                                          int64_t message_id, TimeMs now) = 0;
  // Moves delivered markers forward (never down), in one transaction.
  virtual Status SaveDelivered(const std::vector<Watermark>& marks) = 0;
};

}  // namespace mmchat::domain
