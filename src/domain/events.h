// What the domain announces for the real-time transport, and the bus that carries it.
// The WebSocket layer subscribes; it keeps its own membership index from the conversation
// events, so message events carry no recipient lists.
#pragma once

#include <cstdint>
#include <functional>
#include <optional>
#include <utility>
#include <variant>

#include "domain/conversation.h"

namespace mmchat::domain {

struct MessageCreated {
  Message message;
};
// An edit, deletion or reaction: the message as it is now, with its new change_id and its
// status.
struct MessageUpdated {
  Message message;
};
struct ReadReceipt {
  int64_t conversation_id = 0;
  int64_t user_id = 0;
  int64_t message_id = 0;
  TimeMs read_at = 0;
};
struct DeliveryReceipt {
  int64_t conversation_id = 0;
  int64_t user_id = 0;
  int64_t message_id = 0;
  TimeMs delivered_at = 0;
};
// A conversation was created, renamed or changed membership; it carries the participants
// after the change.
struct ConversationChanged {
  Conversation conversation;
};
struct ConversationRemoved {
  int64_t conversation_id = 0;
  int64_t user_id = 0;  // the user who was removed (or left)
};

// A user's first connection opened (online) or its last one closed (offline, with last_seen).
struct PresenceChanged {
  int64_t user_id = 0;
  bool online = false;
  std::optional<TimeMs> last_seen;
  // In a cluster, the order of the user's changes (a later one has a larger number), for
  // nodes that hear them in another order; 0 for a single process.
  int64_t version = 0;
};
// A user started or stopped typing in a conversation (stops include the server's expiry).
struct TypingChanged {
  int64_t conversation_id = 0;
  int64_t user_id = 0;
  bool typing = false;
};

// A password reset revoked every token the user had: connections opened with one must end.
struct TokensRevoked {
  int64_t user_id = 0;
};

// A user's profile (username, picture) changed: what is cached of the user is stale.
struct UserChanged {
  int64_t user_id = 0;
};

// In a cluster: the bus may have lost events of other nodes (it missed numbers, or was
// away). Given by the bus to this node's own subscribers, never sent to other nodes:
// whoever keeps state from events reads it again from the store.
struct EventsMissed {};

using Event = std::variant<MessageCreated, MessageUpdated, ReadReceipt, DeliveryReceipt,
                           ConversationChanged, ConversationRemoved, PresenceChanged, TypingChanged,
                           TokensRevoked, UserChanged, EventsMissed>;

// Which events a subscriber is given: those of every node of a cluster, or only those this
// process published (to count what it did itself). Without a cluster the two are the same.
enum class Reach { kCluster, kThisNode };

// Thread-safe. Publish may be called from any thread; subscribers are called on the
// publishing thread, in publish order, and must not block. In a cluster the events of other
// nodes come on a thread of the bus, one at a time, in the order they arrived; their
// PresenceChanged on another thread of the bus, in order among themselves (versions order
// them against the rest).
class EventBus {
 public:
  virtual ~EventBus() = default;
  virtual void Publish(const Event& event) = 0;
  virtual void Subscribe(std::function<void(const Event&)> subscriber, Reach reach) = 0;
  void Subscribe(std::function<void(const Event&)> subscriber) {
    Subscribe(std::move(subscriber), Reach::kCluster);
  }
};

// Whether the bus joining the nodes of a cluster is up (/readyz reports it).
class BusHealth {
 public:
  virtual ~BusHealth() = default;
  virtual bool Live() const = 0;
};

}  // namespace mmchat::domain
