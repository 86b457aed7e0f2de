// Who is online right now: a user with at least one open real-time connection. The
// WebSocket hub (ws/hub.h) implements the view.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <vector>

#include "common/status.h"
#include "common/time.h"

namespace mmchat::domain {

class PresenceView {
 public:
  // One user's presence as a reader of that user must see it.
  struct Reading {
    bool online = false;
    // Offline: the time of the last close, when it may be newer than the stored row a
    // reader has (a cluster's directory keeps it for a while); else nullopt.
    std::optional<TimeMs> last_seen;
  };
  virtual ~PresenceView() = default;
  // From memory. In a cluster, the other nodes' part is one bus hop behind: good for lists.
  virtual bool IsOnline(int64_t user_id) const = 0;
  // Exact, even right after an open or a close on another node: an open counts from the 101,
  // and offline comes with that close's time. In a cluster this asks the directory (it
  // blocks: ReadBlocks), and falls back to IsOnline when it cannot.
  virtual Reading Read(int64_t user_id) const { return {IsOnline(user_id), std::nullopt}; }
  virtual bool ReadBlocks() const { return false; }
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
  // `at` is the close's last_seen: a crossing to offline keeps it for readers (Read) until
  // the stored row surely has it.
  virtual Crossing Closed(int64_t user_id, TimeMs at) = 0;
  virtual Result<Snapshot> Online() = 0;
  // One user, over every node: online, or offline with the time kept of its last close.
  virtual Result<PresenceView::Reading> Read(int64_t user_id) = 0;
};

}  // namespace mmchat::domain
