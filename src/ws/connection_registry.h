// Every WebSocket connection of this node from the upgrade to its end, by user (the owning
// references), and the users whose last connection is still closing. Local and cluster side
// by side: a user's first and last connection here start a presence transition
// (ws/presence_tracker.h); in a cluster each change of a user's count goes to the connection
// tally, and the cap on connections per user counts those on the other nodes too.
//
// Fan-out reads the map under a shared lock while frames are queued (ForEach, SendToUsers);
// sockets are only written on connection strands. Thread-safe.
//
// Lock order: Typing's typing_mu_, then conns_mu_ (fan-out of the announcement), never the
// reverse.
#pragma once

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <memory>
#include <shared_mutex>
#include <unordered_map>
#include <utility>
#include <vector>

#include "domain/connection_tally.h"
#include "ws/connection.h"
#include "ws/presence_tracker.h"

namespace mmchat::ws {

class ConnectionRegistry {
 public:
  // `tally`: in a cluster, the users' connections on other nodes (null: this node's only).
  ConnectionRegistry(PresenceTracker& presence, domain::ConnectionTally* tally);

  // Registers `c`; false, and nothing registered, once Stop was called.
  bool Add(const std::shared_ptr<Connection>& c);
  void Remove(Connection* c);
  // From now on nothing is registered: a connection is either in a later Snapshot or never
  // registered.
  void Stop();
  bool stopping() const { return stopping_; }
  // True when every connection ended within `timeout`.
  bool WaitUntilEmpty(std::chrono::milliseconds timeout);

  // Whether `user_id` holds `max` connections or more: here, and in a cluster (a Redis round
  // trip) on the other nodes.
  bool AtCap(int64_t user_id, size_t max) const;
  // A connection here, or a last one whose last_seen is not stored yet.
  bool OnlineHere(int64_t user_id) const;
  // Every registered connection (for the sweep and shutdown).
  std::vector<std::shared_ptr<Connection>> Snapshot() const;
  // The users with a connection here; and each with its number of connections.
  std::vector<int64_t> LocalUsers() const;
  std::vector<std::pair<int64_t, size_t>> LocalConnectionCounts() const;
  // Those of `users` with a connection here.
  std::vector<int64_t> Connected(const std::vector<int64_t>& users) const;

  // Calls f(user, connection) for every connection of `users`, under the shared lock.
  template <typename F>
  void ForEach(const std::vector<int64_t>& users, F&& f) const {
    std::shared_lock lock(conns_mu_);
    for (int64_t u : users) {
      auto it = by_user_.find(u);
      if (it == by_user_.end()) continue;
      for (const auto& c : it->second) f(u, c);
    }
  }
  // Queues `out` to every connection of `users`, except the user `except`.
  void SendToUsers(const std::vector<int64_t>& users, const Outgoing& out,
                   int64_t except = 0) const;

 private:
  PresenceTracker& presence_;
  domain::ConnectionTally* const tally_;
  std::atomic<bool> stopping_{false};

  mutable std::shared_mutex conns_mu_;
  std::condition_variable_any all_ended_;
  // Every connection from the upgrade to its end, by user (the owning references).
  std::unordered_map<int64_t, std::vector<std::shared_ptr<Connection>>> by_user_;  // conns_mu_
  // Users whose last connection closed and whose last_seen is not stored yet (how many such
  // closes are pending): still online to readers, so that nobody sees "offline" with an old
  // last_seen (API.md: last_seen is set when the last connection closes).
  std::unordered_map<int64_t, int> closing_;  // guarded by conns_mu_
};

}  // namespace mmchat::ws
