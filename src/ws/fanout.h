// Fan-out of domain events to this node's connections: one std::visit over domain::Event,
// with a handler for every alternative (a new alternative without one does not compile). An
// event is serialized once; recipients come from the in-memory MembershipIndex; each
// recipient connection queues the same shared buffer (ConnectionRegistry::ForEach).
//
// Local and cluster side by side: this node's events come from its own publishers, in
// commit order; other nodes' come from the bus, which may reorder or lose them. In a cluster
// messages go out through the Sequencer (ws/sequencer.h), in id order with holes filled from
// the store; when the bus says it lost events (EventsMissed), what the hub keeps from events
// is read again: the presence replica, the membership index, the messages.
//
// Thread-safe: events come on the publishing threads and the bus's.
#pragma once

#include <boost/asio/any_io_executor.hpp>
#include <cstdint>
#include <memory>
#include <vector>

#include "common/status.h"
#include "common/time.h"
#include "domain/conversation_service.h"
#include "domain/conversation_store.h"
#include "domain/events.h"
#include "domain/user_cache.h"
#include "ws/connection.h"
#include "ws/connection_registry.h"
#include "ws/membership_index.h"
#include "ws/presence_tracker.h"
#include "ws/sequencer.h"
#include "ws/typing.h"

namespace mmchat::ws {

class Fanout {
 public:
  struct Deps {
    ConnectionRegistry& registry;
    MembershipIndex& index;
    PresenceTracker& presence;
    Typing& typing;
    domain::ConversationService* conversations;
    domain::ConversationStore* store;
    domain::UserCache* users;  // null: revocations are not re-checked after a loss
    domain::EventBus* bus;
    boost::asio::any_io_executor workers;  // for calls that touch the database
  };
  // `sequence_messages`: in a cluster, messages go out in id order (HubOptions).
  Fanout(Deps deps, bool sequence_messages);
  ~Fanout();

  // Starts the sequencer (with sequence_messages) and subscribes to the bus.
  Status Start();
  // On the tick: a sequencer repair, on the workers, when one is due.
  void RepairIfDue(TimeMs now);

 private:
  void OnEvent(const domain::Event& event);
  void OnMessage(const domain::Message& m);
  void OnUpdated(const domain::Message& m);
  // One process: a message committed on the writer's thread right after a membership change
  // made on another can come before that change's news. Its members_version says so; then
  // the conversation is read from the store and announced first (as the sequencer does in a
  // cluster). A removal needs none of this: the index drops the member before it is written.
  void CatchUpMembers(const domain::Message& m);
  // Sets the index and sends each connected member its view; false (nothing sent) when the
  // index holds a newer member list.
  bool OnConversationChanged(const domain::Conversation& c);
  // A conversation read from the store, newer than the index's list (its news late or
  // lost): what that news would have done, removals included.
  void OnConversationRead(const domain::Conversation& c);
  // After lost events: the conversations whose members changed meanwhile (MembershipIndex::
  // Stale) are read and announced as their news would have been (OnConversationRead).
  Status CatchUpConversations();
  // `user_id` is no longer a member: its typing there ends, and it is told.
  void OnLeft(int64_t conversation_id, int64_t user_id);
  // The bus lost events of other nodes: what the hub keeps from events is read again.
  void OnEventsMissed();
  // A TokensRevoked may be among what was lost: each user here is read again, and the
  // connections opened with an older token version end (1008), as the news would have ended
  // them. One read per user connected here, on the presence strand.
  void CloseRevoked();
  void SendToMembers(int64_t conversation_id, const Outgoing& out, int64_t except = 0);
  void SendTyping(int64_t conversation_id, int64_t user_id, bool typing);
  // Sends typing_stop for states whose own stop may never come (Typing::ForgetHeard).
  void EndTyping(const std::vector<Typing::Key>& states);

  Deps d_;
  const bool sequence_messages_;
  std::unique_ptr<Sequencer> sequencer_;  // with sequence_messages only
};

}  // namespace mmchat::ws
