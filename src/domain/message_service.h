// Message use cases of API.md's Messages section: send (group-committed by the store), list,
// read markers and sync; computes statuses and counts deliveries. Thread-safe.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <string>

#include "common/status.h"
#include "domain/conversation.h"
#include "domain/conversation_cache.h"
#include "domain/conversation_service.h"
#include "domain/conversation_store.h"
#include "domain/delivery_tracker.h"
#include "domain/events.h"
#include "domain/send_rate.h"

namespace mmchat::domain {

struct SendInput {
  int64_t conversation_id = 0;
  std::string content;
  std::optional<std::string> client_id;
  std::optional<int64_t> reply_to;
  std::vector<std::string> attachments;  // upload ids
};

struct SearchInput {
  std::string q;
  std::optional<int64_t> conversation_id;
  std::optional<int64_t> before;
  int limit = 0;  // <= 0: the default
};

struct SearchPage {
  std::vector<Message> messages;  // newest first
  bool has_more = false;
};

struct SyncPage {
  std::vector<Message> messages;
  int64_t next_since = 0;
  bool has_more = false;
};

class MessageService {
 public:
  static constexpr int kDefaultPage = 50;
  static constexpr int kMaxPage = 100;
  static constexpr int kDefaultSync = 100;
  static constexpr int kMaxSync = 500;
  static constexpr int kDefaultSearch = 20;
  static constexpr int kMaxSearch = 100;
  static constexpr size_t kMaxSearchLen = 200;
  static constexpr size_t kMaxAttachments = 10;

  struct Deps {
    ConversationStore* conversations;
    ConversationService* access;  // participant checks and conversation loading
    EventBus* bus;
    DeliveryTracker* tracker;
    ConversationCache* cache;  // the participants' markers for statuses
    int max_message_len = 4000;
    std::function<TimeMs()> now = NowMs;
    // Each sender's rate (MSG_RATE_PER_SEC, MSG_RATE_BURST); null: no limit.
    SendRateLimit* send_rate = nullptr;
  };
  explicit MessageService(Deps deps);

  // Calls `done` once: after the commit (from the store's answer thread), at once for
  // invalid input, or for a sender over its rate (kRateLimited with the seconds to wait) as
  // soon as the rate is known (in a cluster, from the bus's thread).
  void Send(int64_t caller, SendInput input, std::function<void(Result<AppendResult>)> done);
  // Edits, deletions and reactions (API.md, "Replies, edits, deletions, reactions"). Each
  // calls `done` once with the message after the call: after the commit (from the store's
  // answer thread), or at once for invalid input. A change that happened is announced
  // (MessageUpdated); one that changed nothing is not.
  using Changed = std::function<void(Result<Message>)>;
  void Edit(int64_t caller, int64_t message_id, std::string content, Changed done);
  void Delete(int64_t caller, int64_t message_id, Changed done);
  // Adds (`add`) or removes the caller's reaction.
  void React(int64_t caller, int64_t message_id, std::string emoji, bool add, Changed done);
  // `limit` <= 0 means the default; values above the maximum are capped.
  Result<MessagePage> List(int64_t caller, int64_t conversation_id, std::optional<int64_t> before,
                           std::optional<int64_t> after, int limit);
  Result<ReadMark> MarkRead(int64_t caller, int64_t conversation_id, int64_t message_id);
  Result<SyncPage> Sync(int64_t caller, int64_t since, int limit);
  // API.md, "Search": messages of the caller's current conversations (or of the one asked
  // for, kForbidden/kNotFound when it is not the caller's) that match, newest first.
  Result<SearchPage> Search(int64_t caller, const SearchInput& input);
  // Messages up to `up_to` were pushed live to one of `user`'s connections: counts them as
  // delivered and announces the receipt when the watermark moved.
  void DeliveredLive(int64_t conversation_id, int64_t user, int64_t up_to);

 private:
  // Counts the returned messages as delivered to `reader` and announces the receipt.
  void Delivered(int64_t conversation_id, const std::vector<ParticipantMarks>& marks,
                 int64_t reader, int64_t up_to);
  // Sets the statuses of `messages` (all of one conversation) and counts them as
  // delivered to `reader`.
  Status ForReader(int64_t reader, int64_t conversation_id, std::vector<Message>& messages);

  void Change(MessageChange change, Changed done);
  // The status of `m` as every reader sees it ("sent" when the markers cannot be read).
  MessageStatus CurrentStatus(const Message& m);
  // Commits a message whose sender may send it.
  void Append(int64_t caller, SendInput input, std::function<void(Result<AppendResult>)> done);

  Deps d_;
};

}  // namespace mmchat::domain
