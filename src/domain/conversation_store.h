// Storage of conversations, participants and messages, implemented by store/<backend>.
//
// The store offers atomic primitives and reports what happened as plain outcomes; the rules
// and the words clients read live in the domain (conversation_service.cc, message_service.cc).
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
#include "domain/message_change.h"
#include "domain/search.h"

namespace mmchat::domain {

// What a membership primitive did.
enum class MembershipOutcome {
  kDone,
  kNoSuchUser,          // the user to add (or a group member) does not exist
  kAlreadyParticipant,  // AddParticipant: nothing changed
  kNotParticipant,      // SetRole, RemoveParticipant: nothing changed
  kWouldLeaveNoAdmin,   // SetRole: the demotion would leave the group without an admin
};

// One participant of one conversation, with the conversation's members_version.
struct Membership {
  int64_t conversation_id = 0;
  int64_t user_id = 0;
  int64_t members_version = 0;

  auto operator<=>(const Membership&) const = default;
};

struct CreatedGroup {
  MembershipOutcome outcome = MembershipOutcome::kDone;  // kDone or kNoSuchUser
  int64_t id = 0;                                        // the new group (kDone)
  int64_t missing_user = 0;                              // the unknown member (kNoSuchUser)
};

class ConversationStore {
 public:
  virtual ~ConversationStore() = default;

  // The private conversation of the pair, created when missing; `created` says which. At most
  // one exists per pair, also when several processes race to create it.
  virtual Result<std::pair<int64_t, bool>> GetOrCreatePrivate(int64_t a, int64_t b, TimeMs now) = 0;
  // A group whose creator is its first admin; members join as members. Nothing is created
  // when a member id is not a user (kNoSuchUser).
  virtual Result<CreatedGroup> CreateGroup(const std::string& name, int64_t creator,
                                           const std::vector<int64_t>& members, TimeMs now) = 0;
  // With its participants (usernames and pictures joined in); nullopt when there is none.
  virtual Result<std::optional<Conversation>> GetConversation(int64_t id) = 0;
  // Those of `ids` that exist, in no particular order, each with its participants and its
  // last message (status not set), read from one snapshot in a fixed number of queries
  // however many ids there are.
  virtual Result<std::vector<Conversation>> GetConversations(const std::vector<int64_t>& ids) = 0;
  // Every conversation of the user with the user's read marker and unread count, in one
  // query however many there are, in no particular order.
  virtual Result<std::vector<ReaderState>> ListReaderStates(int64_t user_id) = 0;
  // Every membership, read in one snapshot: loads the real-time layer's index at start.
  virtual Result<std::vector<Membership>> ListMemberships() = 0;
  virtual Result<std::optional<Message>> LastMessage(int64_t conversation_id) = 0;
  // Messages from others than `user_id` with id above `after_id`.
  virtual Result<int64_t> CountUnread(int64_t conversation_id, int64_t user_id,
                                      int64_t after_id) = 0;

  virtual Status Rename(int64_t conversation_id, const std::string& name, TimeMs now) = 0;
  // kDone, kNoSuchUser or kAlreadyParticipant.
  virtual Result<MembershipOutcome> AddParticipant(int64_t conversation_id, int64_t user_id,
                                                   Role role, TimeMs now) = 0;
  // kDone, kNotParticipant, or kWouldLeaveNoAdmin: a demotion happens only when another
  // admin remains, checked atomically with the change (concurrent demotions cannot both pass).
  virtual Result<MembershipOutcome> SetRole(int64_t conversation_id, int64_t user_id, Role role,
                                            TimeMs now) = 0;
  // kDone or kNotParticipant. When no admin remains, the remaining participant with the
  // earliest joined_at (then lowest user id) becomes admin, in the same transaction.
  virtual Result<MembershipOutcome> RemoveParticipant(int64_t conversation_id, int64_t user_id,
                                                      TimeMs now) = 0;

  // Commits the message (seq = last + 1, the sender's read marker moves to it) and calls
  // `done` after the commit, from the answer thread, in commit order. `id` increases in
  // commit order across every process sharing the database. A repeated (sender, client_id)
  // returns the original (kRepeated); a missing conversation, a sender who is not a
  // participant or a reply_to that is not a message of the conversation stores nothing.
  virtual void AppendMessage(NewMessage message,
                             std::function<void(Result<StoredAppend>)> done) = 0;
  // Applies an edit, deletion or reaction through the same writer (and batches) as appends:
  // the message and the actor's membership are read in the transaction, ApplyChange decides,
  // and a change takes the next position of the id counter as its change_id. `done` is
  // called after the commit, from the answer thread, in commit order with the appends.
  virtual void ChangeMessage(MessageChange change,
                             std::function<void(Result<StoredChange>)> done) = 0;
  virtual Result<std::optional<Message>> GetMessage(int64_t id) = 0;
  // Up to `limit` messages in ascending id order: the newest ones (no cursor), the newest
  // below `before`, or the oldest above `after`.
  virtual Result<std::vector<Message>> ListMessages(int64_t conversation_id,
                                                    std::optional<int64_t> before,
                                                    std::optional<int64_t> after, int limit) = 0;
  // The same, read only if `reader` is a participant, checked in the same read: no messages
  // also when it is not (the caller tells the two apart, e.g. with GetConversation).
  virtual Result<std::vector<Message>> ListMessagesFor(int64_t reader, int64_t conversation_id,
                                                       std::optional<int64_t> before,
                                                       std::optional<int64_t> after, int limit) = 0;
  // Up to `limit` messages with change_id above `since` from the user's conversations, in
  // ascending change_id order (created or changed since).
  virtual Result<std::vector<Message>> MessagesSince(int64_t user_id, int64_t since, int limit) = 0;
  // For a node of a cluster catching up on what the bus did not bring: up to `limit`
  // messages of every conversation with id above `after`, in id order; up to `limit` changed
  // messages (change_id above both `after` and their id) in change_id order; and the highest
  // position (id or change_id) given out so far. Positions commit in ascending order, so one
  // missing below one that is there was never committed, or was superseded by a later change.
  virtual Result<std::vector<Message>> MessagesAfter(int64_t after, int limit) = 0;
  virtual Result<std::vector<Message>> ChangesAfter(int64_t after, int limit) = 0;
  virtual Result<int64_t> LastMessageId() = 0;
  // Search (domain/search.h): the messages that match, newest first. Deleted messages never
  // match; edits and deletions change what matches in their own transaction.
  virtual Result<std::vector<Message>> SearchMessages(const SearchQuery& query) = 0;

  // Moves the read marker up to `message_id` (never down), stamping read_at = `now` when it
  // moves; returns the marker after the call, or nullopt when the user is not a participant.
  virtual Result<std::optional<ReadMark>> MoveReadMarker(int64_t conversation_id, int64_t user_id,
                                                         int64_t message_id, TimeMs now) = 0;
  // Moves delivered markers forward (never down), in one transaction.
  virtual Status SaveDelivered(const std::vector<Watermark>& marks) = 0;
};

}  // namespace mmchat::domain
