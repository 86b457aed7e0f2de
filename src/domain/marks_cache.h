// Each conversation's participants with their read and delivered markers, as recently read:
// what message statuses need, so that a history page or a sync does not read the
// participants every time (with PostgreSQL, most of a page's database work).
//
// Never used to decide who may read a conversation: the store checks that in the same read
// as the messages (ConversationStore::ListMessagesFor). A marker kept here may lag the stored
// one for a moment, which only shows a status one step behind (a client gets the receipt as
// an event anyway).
//
// An entry lives `ttl_ms`. Receipts and sends (a send reads up to itself) move its markers
// forward; a membership change drops it;
// a loss of news (EventsMissed) drops everything. That news comes from this process's
// services and, in a cluster, from every node through the bus. Thread-safe.
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

class MarksCache {
 public:
  static constexpr TimeMs kDefaultTtlMs = 5'000;

  // `bus` may be null (no news: entries only expire). `steady_now` is a monotonic clock in ms.
  MarksCache(ConversationStore* conversations, EventBus* bus, std::function<TimeMs()> steady_now,
             TimeMs ttl_ms = kDefaultTtlMs, size_t max_entries = 100'000);

  // The participants' markers (none for a conversation that does not exist), read through.
  Result<std::vector<ParticipantMarks>> Get(int64_t conversation_id);

 private:
  void OnEvent(const Event& e);
  // Moves one participant's marker forward in a kept entry.
  void Raise(int64_t conversation_id, int64_t user_id, int64_t ParticipantMarks::*marker,
             int64_t to);

  ConversationStore* conversations_;
  ExpiringCache<std::vector<ParticipantMarks>> kept_;
};

}  // namespace mmchat::domain
