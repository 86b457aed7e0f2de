// Who takes part in which conversation, in memory, so that fan-out never asks the database.
// Loaded once at start and kept current from conversation events. Thread-safe: readers get
// immutable member lists (shared, never copied per message); writers replace a list whole.
//
// Each conversation's list has the members_version it was read at (domain::Conversation): a
// list older than the one held is ignored, so news of two changes heard out of order leaves
// the newer, and a cluster node can tell whether it knows the members a message committed
// under (ws/sequencer.h).
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "domain/conversation_store.h"

namespace mmchat::ws {

class MembershipIndex {
 public:
  using Members = std::shared_ptr<const std::vector<int64_t>>;

  // Replaces the whole index (at start).
  void Load(const std::vector<domain::Membership>& memberships);
  // The conversations whose list in `memberships` (read from the store) is newer than the
  // index's: known at a higher version, unknown to the index, or with no members left where
  // the index still has some. Ascending.
  std::vector<int64_t> Stale(const std::vector<domain::Membership>& memberships) const;
  // The members of one conversation after a change, read at `version`; ignored (false) when
  // the index holds a newer list.
  bool Set(int64_t conversation_id, std::vector<int64_t> members, int64_t version);
  // Ahead of the change's news (the removal is announced before it is written): the version
  // stays, so messages committed after the removal wait for that news (ws/sequencer.h).
  void Remove(int64_t conversation_id, int64_t user_id);

  // The members_version of the conversation's list, or nullopt when it is unknown.
  std::optional<int64_t> Version(int64_t conversation_id) const;

  // The conversation's members, or null when the conversation is unknown.
  Members MembersOf(int64_t conversation_id) const;
  // Every user who shares at least one conversation with `user_id` (not the user itself).
  std::vector<int64_t> PeersOf(int64_t user_id) const;

 private:
  void Link(int64_t conversation_id, const std::vector<int64_t>& members);
  void Unlink(int64_t conversation_id, const std::vector<int64_t>& members);

  mutable std::shared_mutex mu_;
  std::unordered_map<int64_t, Members> members_;   // guarded by mu_
  std::unordered_map<int64_t, int64_t> versions_;  // conversation -> members_version; mu_
  std::unordered_map<int64_t, std::vector<int64_t>> conversations_;  // user -> conv ids; mu_
};

}  // namespace mmchat::ws
