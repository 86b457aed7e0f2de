// Who is online right now. The WebSocket hub implements it; until a transport reports
// connections, nobody is online.
#pragma once

#include <cstdint>

namespace mmchat::domain {

class PresenceView {
 public:
  virtual ~PresenceView() = default;
  virtual bool IsOnline(int64_t user_id) const = 0;
};

// Used when no real-time transport is wired in.
class NobodyOnline final : public PresenceView {
 public:
  bool IsOnline(int64_t) const override { return false; }
};

}  // namespace mmchat::domain
