// Who is online right now: a user with at least one open real-time connection. The
// WebSocket hub (ws/hub.h) implements the view.
#pragma once

#include <cstdint>
#include <string>
#include <vector>

#include "common/status.h"

namespace mmchat::domain {

class PresenceView {
 public:
  virtual ~PresenceView() = default;
  virtual bool IsOnline(int64_t user_id) const = 0;
};

// In a cluster: a user's connections counted over every node (bus/redis/redis_presence.h).
// The hub calls it, one call at a time, when a user's first connection on this node opens
// and when its last one there closes; the answer says whether that was the first anywhere
// (or the last), and the version of that change. Unreachable, it answers as if this node
// were alone (crossed, version 0), and sets things right when it is back.
class PresenceDirectory {
 public:
  struct Crossing {
    bool crossed = false;
    int64_t version = 0;
  };
  // Users online anywhere in the cluster, at `version`.
  struct Snapshot {
    int64_t version = 0;
    std::vector<int64_t> online;
    std::string epoch;  // changes when the directory lost its memory (versions start over)
  };
  virtual ~PresenceDirectory() = default;
  virtual Crossing Opened(int64_t user_id) = 0;
  virtual Crossing Closed(int64_t user_id) = 0;
  virtual Result<Snapshot> Online() = 0;
};

}  // namespace mmchat::domain
