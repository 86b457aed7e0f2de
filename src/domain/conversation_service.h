// Conversation use cases of API.md's Conversations section: private and group conversations,
// participants and roles, with every permission rule; publishes conversation events.
// Thread-safe; every call is a few indexed store reads or one write transaction.
#pragma once

#include <array>
#include <cstdint>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "domain/conversation.h"
#include "domain/conversation_cache.h"
#include "domain/conversation_store.h"
#include "domain/delivery_tracker.h"
#include "domain/events.h"
#include "domain/store.h"

namespace mmchat::domain {

// The statuses of messages of one conversation for readers, from the other participants'
// watermarks ("read" when every other participant has read it, "delivered" when it reached
// all of them, else "sent"). The watermarks are looked up once, at construction, so that a
// page of messages does not cost a tracker lookup per message and participant.
class MessageStatuses {
 public:
  MessageStatuses(int64_t conversation_id, const std::vector<ParticipantMarks>& marks,
                  const DeliveryTracker& tracker);
  MessageStatuses(const Conversation& c, const DeliveryTracker& tracker);
  MessageStatus Of(const Message& m) const;

 private:
  struct Marks {
    int64_t user_id;
    int64_t read;
    int64_t delivered;  // read counts as delivered
  };
  std::vector<Marks> marks_;
};

// What MessageStatuses needs of a loaded conversation.
std::vector<ParticipantMarks> MarksOf(const Conversation& c);

// The status of one message (see MessageStatuses).
MessageStatus StatusOf(const Message& m, const Conversation& c, const DeliveryTracker& tracker);

// The answers to a caller who may not see a conversation, worded once: kNotFound when it does
// not exist, kForbidden when the caller is not (or no longer) a participant.
Status ConversationNotFound();
Status NotAParticipant();

class ConversationService {
 public:
  struct Deps {
    ConversationStore* conversations;
    UserStore* users;
    EventBus* bus;
    DeliveryTracker* tracker;
    ConversationCache* cache;  // what the conversation list shows of each conversation
    std::function<TimeMs()> now = NowMs;
  };
  explicit ConversationService(Deps deps);

  // The conversation and whether it was created now.
  Result<std::pair<Conversation, bool>> CreatePrivate(int64_t caller, int64_t other);
  Result<Conversation> CreateGroup(int64_t caller, const std::string& name,
                                   const std::vector<int64_t>& member_ids);
  Result<std::vector<Conversation>> List(int64_t caller);
  Result<Conversation> Get(int64_t caller, int64_t id);
  Result<Conversation> Rename(int64_t caller, int64_t id, const std::string& name);
  Result<Conversation> AddParticipant(int64_t caller, int64_t id, int64_t user_id,
                                      std::optional<Role> role);
  Result<Conversation> SetRole(int64_t caller, int64_t id, int64_t user_id, Role role);
  Status RemoveParticipant(int64_t caller, int64_t id, int64_t user_id);
  // For `mmchat user delete`: the user leaves every conversation it takes part in, private
  // ones too, each as RemoveParticipant removes (admin succession, events to the others).
  // Returns the ids of the conversations it left.
  Result<std::vector<int64_t>> LeaveAll(int64_t user_id);
  // News from another process (the command line) that `user_id` left conversation `id`:
  // published as RemoveParticipant publishes its own removals.
  void AnnounceLeft(int64_t id, int64_t user_id);

  // The conversation if the caller takes part: kNotFound when it does not exist, kForbidden
  // when the caller is not (or no longer) a participant. Used by the message use cases too.
  Result<Conversation> LoadForParticipant(int64_t caller, int64_t id);

  // Fills the reader's fields: last_message (with status), unread_count, last_read_message_id.
  // The real-time layer uses it to give each recipient of a `conversation` event its own view.
  Result<Conversation> ForReader(Conversation c, int64_t reader);

 private:
  // Loads a group the caller administers (404 / 403 / 400 for a private one).
  Result<Conversation> LoadForAdmin(int64_t caller, int64_t id, bool* is_admin);
  // Reloads after a change, announces it and returns the caller's view.
  Result<Conversation> Changed(int64_t caller, int64_t id);
  // Removes a participant (checked by the caller) under LockChanges(id), with its events.
  Status RemoveLocked(int64_t id, int64_t user_id);
  // Changes of one conversation run one at a time, from the checks to the announcement, so
  // that announcements leave in the order of the writes (the real-time layer keeps its
  // membership index from them). Striped: unrelated conversations rarely wait.
  std::unique_lock<std::mutex> LockChanges(int64_t id);

  Deps d_;
  std::array<std::mutex, 64> change_mu_;
};

}  // namespace mmchat::domain
