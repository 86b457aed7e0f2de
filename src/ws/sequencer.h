// Messages and their changes go out to this node's connections in the order of their
// positions, whichever node committed them and in whatever order (or not at all) the bus
// brought them: API.md's "messages of one conversation reach each connection in ascending id
// order, and its message_updated events in ascending change_id order", across processes.
//
// A new message's position is its id, a change's its change_id: both come from one counter
// and commit in ascending order (domain/conversation_store.h). So the sequencer keeps one
// number, `delivered`: every position up to it has gone out, or was proven never committed
// (or superseded by a later change of the same message). One above the next position waits
// until the positions between arrive; when that takes longer than `hold_ms` (the bus lost
// them, or their node died between commit and publish), or the bus says it lost events,
// Repair reads what is missing from the store and sends it, in order, each once.
//
// A message also waits until the membership index knows the members it committed under
// (its conversation's members_version, or the conversation at all): a message committed on
// one node right after another node added or removed a member can come over the bus before
// the news of that change. A conversation event releases it (Recheck); after `hold_ms` the
// repair reads the conversation's members from the store instead.
//
// Used in a cluster only: one process's own messages reach the hub in commit order (their
// members are checked by Fanout::CatchUpMembers).
// Thread-safe; `deliver` runs under the sequencer's lock, so the frames of two messages are
// queued in the order of their ids.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <mutex>
#include <vector>

#include "common/status.h"
#include "common/time.h"
#include "domain/conversation.h"
#include "domain/conversation_store.h"
#include "ws/membership_index.h"

namespace mmchat::ws {

struct SequencerOptions {
  TimeMs hold_ms = 250;          // how long a message waits for the ids below it
  int repair_page = 1000;        // messages read from the store at a time
  int64_t max_backlog = 20'000;  // behind by more than this, a repair gives up (too_far_behind)
};

class Sequencer {
 public:
  // `update`: a change of the message (message_updated) rather than the message itself.
  using Deliver = std::function<void(const domain::Message&, bool update)>;
  // A conversation read from the store, newer than the index's list: `learnt` puts it in the
  // index (and may tell its members what their news did not).
  using Learnt = std::function<void(const domain::Conversation&)>;
  // `index` is the one `deliver` sends by.
  Sequencer(domain::ConversationStore* store, MembershipIndex* index, Deliver deliver,
            Learnt learnt, SequencerOptions options = {});

  // Every position up to `last_id` is history: only later ones go out.
  void Start(int64_t last_id);
  // A committed message (or, with `update`, a change of one), from this node or another (any
  // thread): sent now, or held.
  void Offer(const domain::Message& m, bool update, TimeMs now);
  // The index learnt a conversation's members: what waited for them goes out.
  void Recheck(TimeMs now);
  // The bus lost events: the next Repair reads the store whether or not a hole shows.
  void Suspect();
  // Whether a Repair should run now (a hole, or a message waiting for its members, older than
  // hold_ms; or Suspect).
  bool RepairDue(TimeMs now);
  // Reads the missing messages and changes from the store and sends them (on a thread that
  // may block; one Repair at a time). When more than max_backlog are missing it sends none of
  // them, moves on to the newest position, and returns false: the caller ends the connections
  // that missed them, whose clients catch up with `sync`.
  Result<bool> Repair(TimeMs now);

  int64_t delivered() const;

 private:
  struct Item {
    domain::Message message;
    bool update = false;
    int64_t position() const { return update ? message.change_id : message.id; }
  };
  // Sends what is held from delivered_ + 1 on, as far as the positions run without a hole
  // and the index knows each one's members (`force_first`: the first one goes out regardless).
  void DrainLocked(TimeMs now, bool force_first = false);
  void SendLocked(const Item& item);
  // Whether the index holds the members `m` committed under.
  bool Ready(const domain::Message& m) const;
  // Reads the conversations from the store; those newer than the index's go to learnt_.
  Status Refresh(std::vector<int64_t> conversation_ids);

  domain::ConversationStore* store_;
  MembershipIndex* index_;
  const Deliver deliver_;
  const Learnt learnt_;
  const SequencerOptions options_;

  mutable std::mutex mu_;
  int64_t delivered_ = 0;         // guarded by mu_
  std::map<int64_t, Item> held_;  // by position; guarded by mu_
  TimeMs waiting_since_ = 0;      // since when the first held message waits; mu_
  bool suspect_ = false;          // guarded by mu_
  bool repairing_ = false;        // guarded by mu_
};

}  // namespace mmchat::ws
