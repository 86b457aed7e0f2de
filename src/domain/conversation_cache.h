// Conversations as recently read: each one's row, participants (usernames, pictures, roles,
// read and delivered markers) and last message. The conversation list and message statuses
// take them from here, so that they do not read the participants every time: with
// PostgreSQL that was most of their database work.
//
// Never decides who may read a conversation or whose list holds it: the store does, in the
// same read as the messages (ConversationStore::ListMessagesFor) or as the list's reader
// states (ListReaderStates). A kept value may lag the store for a moment: a marker (a status
// one step behind, while the receipt is on its way) or another node's newest message.
//
// News keeps the entries current: a send sets the last message and moves the sender's read
// marker, receipts move markers forward; a membership change or a rename drops the entry, a
// profile change drops the entries of the user's conversations, a loss of news (EventsMissed)
// drops everything. That news comes from this process's services and, in a cluster, from
// every node through the bus. An entry lives `ttl_ms`; a read that began before news of its
// id is not kept (expiring_cache.h). Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <vector>

#include "common/status.h"
#include "common/time.h"
#include "domain/conversation.h"
#include "domain/conversation_store.h"
#include "domain/events.h"
#include "domain/expiring_cache.h"

namespace mmchat::domain {

class ConversationCache {
 public:
  static constexpr TimeMs kDefaultTtlMs = 5'000;
  // What is kept is bounded by participants (about 150 bytes each), whatever the sizes of
  // the conversations.
  static constexpr size_t kDefaultMaxParticipants = 500'000;

  // `bus` may be null (no news: entries only expire). `steady_now` is a monotonic clock in ms.
  ConversationCache(ConversationStore* conversations, EventBus* bus,
                    std::function<TimeMs()> steady_now, TimeMs ttl_ms = kDefaultTtlMs,
                    size_t max_participants = kDefaultMaxParticipants);

  // Those of `ids` that exist, in no particular order, each with its participants and last
  // message (status not set): the kept ones, and the rest read in one store call.
  Result<std::vector<Conversation>> GetMany(const std::vector<int64_t>& ids);
  // The same, all read from the store whatever is kept (and then kept).
  Result<std::vector<Conversation>> Reload(const std::vector<int64_t>& ids);
  // The participants' markers (none for a conversation that does not exist), read through.
  Result<std::vector<ParticipantMarks>> Marks(int64_t conversation_id);

 private:
  void OnEvent(const Event& e);
  // Moves one participant's marker forward in a kept entry.
  void Raise(int64_t conversation_id, int64_t user_id, int64_t Participant::*marker, int64_t to);

  ConversationStore* conversations_;
  ExpiringCache<Conversation> kept_;
};

}  // namespace mmchat::domain
