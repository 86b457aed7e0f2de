// Each node's WebSocket connections per user, in Redis, for the cluster-wide
// WS_MAX_CONNS_PER_USER (domain/connection_tally.h):
//
//   mmchat:conns:<node>   HASH  user -> that node's connections of the user
//
// A node writes its own hash only: the count itself after each change (so a lost write is
// made good by the next one), and the whole hash again every `resync` and a second after a
// write was lost (Redis away, restarted, or this node reaped: redis_presence.cc deletes a
// dead node's hash). An upgrade sums the user's counts on the nodes that are alive
// (mmchat:nodes). Until a lost write is made good, other nodes may count fewer of this
// node's connections than there are, never more: the bound is then looser, never tighter.
#pragma once

#include <atomic>
#include <boost/asio/steady_timer.hpp>
#include <chrono>
#include <cstdint>
#include <functional>
#include <string>
#include <utility>
#include <vector>

#include "bus/redis/redis_bus.h"
#include "domain/connection_tally.h"

namespace mmchat::bus::redis {

class RedisConnectionTally final : public domain::ConnectionTally {
 public:
  using Counts = std::vector<std::pair<int64_t, size_t>>;  // user -> connections here

  RedisConnectionTally(RedisBus* bus, std::string node,
                       std::chrono::milliseconds resync = std::chrono::seconds(5),
                       std::chrono::milliseconds call_timeout = std::chrono::milliseconds(500));
  // Its timer runs on the bus's thread: the bus stops first.
  ~RedisConnectionTally() override;

  // Starts the rewrites, on the bus's thread; `local` gives every count of this node.
  void Start(std::function<Counts()> local);
  // Takes this node's counts out (a clean stop, after its connections closed).
  void Leave();

  void Set(int64_t user, size_t count) override;
  size_t OnOtherNodes(int64_t user) override;

 private:
  void Tick();
  void Rewrite();

  RedisBus* bus_;
  const std::string node_;
  const std::string key_;
  const std::chrono::milliseconds resync_;
  const std::chrono::milliseconds call_timeout_;
  std::function<Counts()> local_;
  boost::asio::steady_timer timer_;                     // on the bus's thread
  std::chrono::steady_clock::time_point last_rewrite_;  // on the bus's thread
  bool stopped_ = false;                                // on the bus's thread
  std::atomic<bool> lost_{true};      // a write may have been lost: rewrite (at start: write all)
  std::atomic<uint64_t> changes_{0};  // Set calls so far
};

}  // namespace mmchat::bus::redis
