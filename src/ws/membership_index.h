// Who takes part in which conversation, in memory, so that fan-out never asks the database.
// Loaded once at start and kept current from conversation events. Thread-safe: readers get
// immutable member lists (shared, never copied per message); writers replace a list whole.
#pragma once

#include <cstdint>
#include <memory>
#include <optional>
#include <shared_mutex>
#include <unordered_map>
#include <utility>
#include <vector>

namespace mmchat::ws {

class MembershipIndex {
 public:
  using Members = std::shared_ptr<const std::vector<int64_t>>;

  // Replaces the whole index with (conversation id, user id) pairs.
  void Load(const std::vector<std::pair<int64_t, int64_t>>& memberships);
  // The same, unless a change was applied since `changes()` read `changes` (the snapshot
  // may then be older than it): false, and nothing replaced.
  bool LoadIfUnchanged(const std::vector<std::pair<int64_t, int64_t>>& memberships,
                       std::optional<uint64_t> changes);
  uint64_t changes() const;
  // The members of one conversation after a change.
  void Set(int64_t conversation_id, std::vector<int64_t> members);
  void Remove(int64_t conversation_id, int64_t user_id);

  // The conversation's members, or null when the conversation is unknown.
  Members MembersOf(int64_t conversation_id) const;
  // Every user who shares at least one conversation with `user_id` (not the user itself).
  std::vector<int64_t> PeersOf(int64_t user_id) const;

 private:
  void Link(int64_t conversation_id, const std::vector<int64_t>& members);
  void Unlink(int64_t conversation_id, const std::vector<int64_t>& members);

  mutable std::shared_mutex mu_;
  uint64_t changes_ = 0;                          // Set and Remove calls so far; guarded by mu_
  std::unordered_map<int64_t, Members> members_;  // guarded by mu_
  std::unordered_map<int64_t, std::vector<int64_t>> conversations_;  // user -> conv ids; mu_
};

}  // namespace mmchat::ws
