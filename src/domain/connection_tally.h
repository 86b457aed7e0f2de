// In a cluster: a user's WebSocket connections on the other nodes, so that
// WS_MAX_CONNS_PER_USER bounds a user's connections over the whole deployment
// (bus/redis/redis_connection_tally.h). The hub tells it this node's count of a user after
// each change, and asks it at each upgrade.
#pragma once

#include <cstddef>
#include <cstdint>

namespace mmchat::domain {

class ConnectionTally {
 public:
  virtual ~ConnectionTally() = default;
  // This node now holds `count` connections of `user`. Does not block; called in the order
  // of the changes.
  virtual void Set(int64_t user, size_t count) = 0;
  // The user's connections on the other live nodes; 0 when that cannot be known now (the
  // bus is away): then each node bounds its own connections only. May block briefly.
  virtual size_t OnOtherNodes(int64_t user) = 0;
};

}  // namespace mmchat::domain
