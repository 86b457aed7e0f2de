// Who is online right now: a user with at least one open real-time connection. The
// WebSocket hub (ws/hub.h) implements it.
#pragma once

#include <cstdint>

namespace mmchat::domain {

class PresenceView {
 public:
  virtual ~PresenceView() = default;
  virtual bool IsOnline(int64_t user_id) const = 0;
};

}  // namespace mmchat::domain
