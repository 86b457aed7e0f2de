// The per-user message rate (MSG_RATE_PER_SEC, MSG_RATE_BURST) as a port: one process counts
// a user's messages itself (LocalSendRate); a cluster counts them over every node
// (bus/redis/redis_send_rate.h), so sending through two nodes does not double the rate.
#pragma once

#include <cstdint>
#include <functional>

#include "common/rate_limiter.h"
#include "common/time.h"

namespace mmchat::domain {

class SendRateLimit {
 public:
  virtual ~SendRateLimit() = default;
  // Counts one message of `user` and calls `done(0)`, or, over the rate, calls `done` with
  // the milliseconds until one is allowed (nothing counted). `done` runs once, on this thread
  // or another.
  virtual void Acquire(int64_t user, std::function<void(int64_t wait_ms)> done) = 0;
};

// One process's token buckets. Thread-safe.
class LocalSendRate final : public SendRateLimit {
 public:
  // `steady_now`: a clock that never jumps with NTP.
  LocalSendRate(double per_second, double burst, std::function<TimeMs()> steady_now = SteadyMs)
      : limiter_(per_second, burst), steady_now_(std::move(steady_now)) {}

  // 0, or the milliseconds to wait (as Acquire, at once).
  int64_t TryTake(int64_t user) { return limiter_.TryTake(user, steady_now_()); }
  void Acquire(int64_t user, std::function<void(int64_t)> done) override { done(TryTake(user)); }

 private:
  RateLimiter<int64_t> limiter_;
  std::function<TimeMs()> steady_now_;
};

}  // namespace mmchat::domain
