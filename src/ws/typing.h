// Typing states: who is typing in which conversation, from this node's clients. A change
// (start, or the stop that ends a state) is published on the bus; the fan-out relays the
// TypingChanged of every node, this one's included, to the other members (ws/fanout.cc). A
// state ends with typing_stop: by the client, by expiry (HubOptions::typing_timeout_ms, looked
// at on the hub's tick), with the connection that started it, or when the typist left the
// conversation.
//
// Thread-safe. Lock order: typing_mu_, then conns_mu_ (fan-out of the announcement), never the
// reverse.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <set>
#include <utility>
#include <vector>

#include "common/rate_limiter.h"
#include "common/status.h"
#include "common/time.h"
#include "domain/events.h"
#include "ws/membership_index.h"

namespace mmchat::ws {

class Connection;

class Typing {
 public:
  // `changes_per_sec`: changes relayed per user and second, twice as many at once (0: no
  // limit).
  Typing(const MembershipIndex& index, domain::EventBus* bus, TimeMs timeout_ms,
         double changes_per_sec);

  // A typing_start or typing_stop frame of `c`.
  Status Change(Connection* c, int64_t conversation_id, bool start);

  // Typing states end: by expiry, with their connection, or when the typist left.
  void Expire(TimeMs now);
  void EndedWith(const Connection* c);
  void Left(int64_t conversation_id, int64_t user_id);

  // The states of every node as the bus told them (each TypingChanged relayed). In a
  // cluster the stop that ends another node's state may be lost, or never sent (the node
  // died): these hand back the states heard started and not ended, and forget them, so that
  // the fan-out ends them itself. All of them after a loss of events; a user's when it went
  // offline. This node's own states are not among them (they end here).
  using Key = std::pair<int64_t, int64_t>;  // conversation, user
  void Heard(const domain::TypingChanged& e);
  std::vector<Key> ForgetHeard();
  std::vector<Key> ForgetHeardOf(int64_t user_id);

 private:
  struct Typist {
    TimeMs deadline = 0;
    Connection* connection = nullptr;  // the one whose close ends it
  };
  void End(const std::function<bool(const Key&, const Typist&)>& which);

  const MembershipIndex& index_;
  domain::EventBus* const bus_;
  const TimeMs timeout_ms_;

  // Lock order: typing_mu_, then conns_mu_ (fan-out of the announcement), never the reverse.
  std::mutex typing_mu_;
  std::map<Key, Typist> typing_;         // guarded by typing_mu_
  RateLimiter<int64_t> typing_limiter_;  // HubOptions::typing_changes_per_sec

  // Taken alone, never with typing_mu_ or conns_mu_.
  std::mutex heard_mu_;
  std::set<Key> heard_;  // guarded by heard_mu_
  std::vector<Key> ForgetHeardIf(const std::function<bool(const Key&)>& which);
};

}  // namespace mmchat::ws
