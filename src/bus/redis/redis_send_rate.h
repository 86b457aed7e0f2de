// The per-user message rate over every node of a cluster: GCRA (the generic cell rate
// algorithm, one number per user: when the user's next message is due) in a Lua script on
// Redis's own clock, so that nodes whose clocks differ agree. Keys: mmchat:rate:msg:<user>,
// which expire once the user is back to a full burst.
//
// While Redis is away (or does not answer), each node counts alone with `fallback`, as
// API.md says for a cluster without its bus: sending is never refused for Redis's sake.
#pragma once

#include <cstdint>
#include <functional>

#include "bus/redis/redis_bus.h"
#include "domain/send_rate.h"

namespace mmchat::bus::redis {

class RedisSendRate final : public domain::SendRateLimit {
 public:
  // `per_second` > 0; `burst` messages may go at once.
  RedisSendRate(RedisBus* bus, double per_second, double burst, domain::LocalSendRate* fallback);

  // `done` runs on the bus's thread (or at once, when the bus is not live).
  void Acquire(int64_t user, std::function<void(int64_t wait_ms)> done) override;

 private:
  RedisBus* bus_;
  const int64_t interval_us_;   // between two messages at the rate
  const int64_t tolerance_us_;  // how far ahead of now the next due time may be
  domain::LocalSendRate* fallback_;
};

}  // namespace mmchat::bus::redis
