// Presence over the nodes of a cluster (API.md: a user is online while it has a connection
// on any node; the connections of a node that died count as closed within
// CLUSTER_NODE_TTL_SEC). Redis holds, atomically updated by Lua scripts:
//
//   mmchat:nodes          ZSET  node -> the time (Redis's clock, ms) it stops counting
//   mmchat:node:<node>    SET   users with a connection on that node
//   mmchat:online         HASH  user -> number of nodes where it has a connection
//   mmchat:presence:seq   the version of the latest change (PresenceChanged::version)
//   mmchat:presence:epoch named by the first registration after Redis lost its data
//   mmchat:seen:<user>    the time of the user's last close, kept a minute (for Read)
//
// A node renews its entry every TTL/3. Every node looks for expired nodes every half second;
// the script that finds one removes it and hands each user whose count fell to 0 to exactly
// that caller, with the dead node's last renewal as last_seen: no user stays online after
// its node died, and none goes offline twice. A node that finds itself removed (cut off
// longer than the TTL) registers again with the users it has now, and the differences come
// back as crossings. So does a node that could not reach Redis for a while.
//
// Opened, Closed, Online and Read block (at most `call_timeout`): call them on a thread that may.
#pragma once

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <functional>
#include <mutex>
#include <optional>
#include <string>
#include <unordered_map>

#include "bus/redis/redis_bus.h"
#include "domain/presence.h"

namespace mmchat::bus::redis {

struct RedisPresenceOptions {
  std::chrono::milliseconds ttl{15'000};  // CLUSTER_NODE_TTL_SEC
  std::chrono::milliseconds reap_interval{500};
  // Longer than the connection's own command deadline (2 s), which ends the connection: a
  // call that gives up has then surely not run, and the bus's resubscription repairs.
  std::chrono::milliseconds call_timeout{2500};
};

class RedisPresence final : public domain::PresenceDirectory {
 public:
  // (user, last_seen, version) of a user whose last node was found dead, or whose count this
  // node's registration brought to 0; and the users it brought to 1.
  using Gone = std::function<void(int64_t, TimeMs, int64_t)>;
  using Back = std::function<void(int64_t, int64_t)>;
  RedisPresence(RedisBus* bus, std::string node, RedisPresenceOptions options);
  // Its timers run on the bus's thread: the bus stops first.
  ~RedisPresence() override;

  // Starts renewing and reaping, on the bus's thread. `local_users` answers which users have
  // a connection on this node now. `in_turn` runs a task in turn with the hub's calls of
  // Opened and Closed (one at a time, in order): registrations and the crossings found by
  // reaping run there, and call `gone` and `back`.
  void Start(std::function<std::vector<int64_t>()> local_users,
             std::function<void(std::function<void()>)> in_turn, Gone gone, Back back);
  // Takes this node out at once (a clean stop, after its connections closed), and stops.
  void Leave();

  Crossing Opened(int64_t user_id) override;
  Crossing Closed(int64_t user_id, TimeMs at) override;
  Result<Snapshot> Online() override;
  Result<domain::PresenceView::Reading> Read(int64_t user_id) override;

 private:
  Crossing Change(const char* script, int64_t user_id, std::optional<TimeMs> closed_at);
  // Redis's count of this node is wrong or gone: a registration runs in turn.
  void OutOfStep();
  // In turn: this node's set replaced with the users it has now; the crossings reported.
  void Register();
  // A reap's answer, reported (in turn).
  void TellGone(const Reply& reaped);
  // On the bus's thread: renewal and reaping.
  void Renew();
  void Reap();
  void ScheduleRenew(std::chrono::milliseconds after);

  RedisBus* bus_;
  const std::string node_;
  const RedisPresenceOptions options_;
  std::function<std::vector<int64_t>()> local_users_;
  std::function<void(std::function<void()>)> in_turn_;
  Gone gone_;
  Back back_;

  // Changes could not reach Redis since the last registration: register again.
  std::atomic<bool> out_of_step_{true};  // the first renewal registers
  std::atomic<bool> register_queued_{false};
  // Users announced offline while Redis could not hear it, with when: the registration that
  // tells Redis announces them again with that time, not its own.
  std::mutex offline_mu_;
  std::unordered_map<int64_t, TimeMs> offline_unheard_;  // guarded by offline_mu_

  boost::asio::steady_timer renew_timer_;  // on the bus's thread
  boost::asio::steady_timer reap_timer_;
  bool stopped_ = false;  // on the bus's thread
};

}  // namespace mmchat::bus::redis
